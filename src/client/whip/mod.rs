//! WHIP publisher (RFC 9725): offers send-only H.264 + Opus, then paces a
//! [`SyntheticMedia`] source in real time.

mod keyframe_requests;
mod offer;
mod pacer;

pub use offer::{H264_FMTP, OFFERED_H264_PT, OFFERED_OPUS_PT};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use keyframe_requests::KeyframeRequestCounters;
use pacer::{PaceFlags, PacedTrack, SendState, pace};

use super::media::SyntheticMedia;
use super::{
    ClientError, CloseOnDrop, ConnectOptions, KindCounters, Result, StateHandler, TrackKind,
    build_peer_connection, complete_offer, count_between, delete_resource, http_client, lock,
    parse_url, post_offer,
};

/// How a [`WhipPublisher`] connects and what it records.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Local sockets and timeouts.
    pub connect: ConnectOptions,
    /// Keep every sent RTP payload per kind (see [`WhipPublisher::sent_payloads`]) so tests can
    /// check that viewers receive byte-identical payloads. Cheap: payloads are shared `Bytes`,
    /// but the list grows for as long as the publisher runs.
    pub record_payloads: bool,
    /// Keep the send instant and size of every packet so [`WhipPublisher::sent_between`] can
    /// say how much was sent during a viewer's lifetime. About 16 bytes per packet.
    pub record_send_log: bool,
    /// Restart the files from the beginning when they end (RTP timestamps and sequence
    /// numbers keep increasing). When false, sending stops after one pass.
    pub loop_media: bool,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            connect: ConnectOptions::default(),
            record_payloads: false,
            record_send_log: true,
            loop_media: true,
        }
    }
}

/// A snapshot of a publisher's counters.
#[derive(Debug, Clone)]
pub struct PublisherStats {
    /// Video packets/bytes handed to the WebRTC stack.
    pub video: KindCounters,
    /// Audio packets/bytes handed to the WebRTC stack.
    pub audio: KindCounters,
    /// Picture Loss Indications received from the server (keyframe requests). The source has
    /// a keyframe every second anyway, so they are only counted.
    pub plis_received: u64,
    /// Full Intra Requests received from the server.
    pub firs_received: u64,
    /// SSRC of the video stream (chosen by the publisher).
    pub video_ssrc: u32,
    /// SSRC of the audio stream.
    pub audio_ssrc: u32,
    /// Negotiated H.264 payload type actually used on the wire.
    pub video_payload_type: u8,
    /// Negotiated Opus payload type actually used on the wire.
    pub audio_payload_type: u8,
    /// When the WHIP `POST` was sent.
    pub posted_at: Instant,
    /// When the peer connection reached `connected`.
    pub connected_at: Instant,
    /// When the first RTP packet was written.
    pub first_packet_at: Option<Instant>,
    /// Whether the pacing task is still running.
    pub sending: bool,
    /// Why sending stopped early, if it did (e.g. the connection closed).
    pub send_error: Option<String>,
}

/// A WHIP session publishing synthetic H.264 + Opus.
///
/// Created by [`WhipPublisher::connect`]; media flows from a background task on the current
/// tokio runtime until [`stop`](Self::stop) (or drop).
pub struct WhipPublisher {
    /// The local peer connection; closed by `stop`.
    pc: Arc<dyn PeerConnection>,
    /// Holds the connection-state watch channels alive.
    _handler: Arc<StateHandler>,
    /// HTTP client reused for the `DELETE`.
    http: reqwest::Client,
    /// The session resource URL (resolved `Location`).
    location: reqwest::Url,
    /// Bearer token repeated on `DELETE`.
    bearer_token: Option<String>,
    /// Counters and logs written by the pacer.
    state: Arc<Mutex<SendState>>,
    /// PLI/FIR counts written by the RTCP interceptor.
    requests: Arc<KeyframeRequestCounters>,
    /// The pacing task; aborted by `stop_sending`/`stop`/drop.
    pacer: Mutex<Option<JoinHandle<()>>>,
    /// Video SSRC, reported in stats (viewers may see it rewritten).
    video_ssrc: u32,
    /// Audio SSRC, reported in stats.
    audio_ssrc: u32,
    /// Negotiated H.264 payload type, reported in stats.
    video_pt: u8,
    /// Negotiated Opus payload type, reported in stats.
    audio_pt: u8,
    /// When the `POST` was sent, reported in stats.
    posted_at: Instant,
    /// When the connection came up, reported in stats.
    connected_at: Instant,
    /// Set once `stop` has run, so it is idempotent and drop does not close twice.
    closed: AtomicBool,
}

impl WhipPublisher {
    /// Publishes `media` to the WHIP endpoint `url`.
    ///
    /// Builds a peer connection with send-only H.264 (packetization-mode=1,
    /// profile-level-id=42e01f) and Opus transceivers, waits for ICE gathering to complete,
    /// `POST`s the offer as `application/sdp` (with `Authorization: Bearer` when a token is
    /// given), requires `201 Created` with a `Location`, applies the answer, waits for the
    /// connection, and then starts pacing the media in real time with the negotiated payload
    /// types. Must be called inside a tokio runtime; the pacer runs on it.
    pub async fn connect(
        url: &str,
        bearer_token: Option<&str>,
        media: SyntheticMedia,
        opts: PublisherOptions,
    ) -> Result<WhipPublisher> {
        let endpoint = parse_url(url)?;
        let http = http_client(&opts.connect)?;

        let (video_codec, audio_codec) = offer::codecs();
        let requests = Arc::new(KeyframeRequestCounters::default());
        let (media_engine, registry) =
            offer::media_engine(&video_codec, &audio_codec, requests.clone())?;

        let handler = StateHandler::new(None);
        let pc = build_peer_connection(media_engine, registry, &handler, &opts.connect.udp_addrs)
            .await?;
        let mut guard = CloseOnDrop::new(pc.clone(), None);

        let result = Self::negotiate_and_start(
            pc.clone(),
            handler,
            &endpoint,
            http,
            bearer_token,
            media,
            &opts,
            requests,
            video_codec,
            audio_codec,
        )
        .await;
        match result {
            Ok(_) => guard.disarm(),
            Err(_) => guard.close().await,
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn negotiate_and_start(
        pc: Arc<dyn PeerConnection>,
        handler: Arc<StateHandler>,
        endpoint: &reqwest::Url,
        http: reqwest::Client,
        bearer_token: Option<&str>,
        media: SyntheticMedia,
        opts: &PublisherOptions,
        requests: Arc<KeyframeRequestCounters>,
        video_codec: RTCRtpCodec,
        audio_codec: RTCRtpCodec,
    ) -> Result<WhipPublisher> {
        let stream_id = format!("feiyan-whip-{:08x}", rand::random::<u32>());
        let video_ssrc = rand::random::<u32>();
        let mut audio_ssrc = rand::random::<u32>();
        while audio_ssrc == video_ssrc {
            audio_ssrc = rand::random::<u32>();
        }
        let make_track = |kind: RtpCodecKind, ssrc: u32, codec: RTCRtpCodec| {
            Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                stream_id.clone(),
                format!("{stream_id}-{kind}"),
                format!("synthetic {kind}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec,
                    ..Default::default()
                }],
            )))
        };
        let video_track = make_track(RtpCodecKind::Video, video_ssrc, video_codec);
        let audio_track = make_track(RtpCodecKind::Audio, audio_ssrc, audio_codec);
        let mut senders = Vec::new();
        for track in [&video_track, &audio_track] {
            let transceiver = pc
                .add_transceiver_from_track(
                    track.clone() as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![stream_id.clone()],
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(ClientError::webrtc("adding a send-only transceiver"))?;
            let sender = transceiver
                .sender()
                .await
                .map_err(ClientError::webrtc("reading the transceiver's sender"))?
                .ok_or_else(|| {
                    ClientError::Negotiation("send-only transceiver has no sender".to_owned())
                })?;
            senders.push(sender);
        }

        let offer_sdp = complete_offer(pc.as_ref(), &handler, opts.connect.gather_timeout).await?;

        let posted_at = Instant::now();
        let resource = post_offer(&http, endpoint, bearer_token, offer_sdp).await?;
        let session = async {
            let answer = RTCSessionDescription::answer(resource.answer_sdp.clone())
                .map_err(ClientError::webrtc("parsing the SDP answer"))?;
            pc.set_remote_description(answer)
                .await
                .map_err(ClientError::webrtc("applying the SDP answer"))?;
            let video_pt = negotiated_payload_type(&senders[0], MIME_TYPE_H264).await?;
            let audio_pt = negotiated_payload_type(&senders[1], MIME_TYPE_OPUS).await?;
            handler.wait_connected(opts.connect.connect_timeout).await?;
            Ok::<_, ClientError>((video_pt, audio_pt))
        }
        .await;
        let (video_pt, audio_pt) = match session {
            Ok(pts) => pts,
            Err(e) => {
                // Do not leave a half-open session on the server.
                let _ = delete_resource(&http, &resource.location, bearer_token).await;
                return Err(e);
            }
        };
        let connected_at = Instant::now();

        let state = Arc::new(Mutex::new(SendState {
            sending: true,
            ..Default::default()
        }));
        let pacer = tokio::spawn(pace(
            media,
            PacedTrack {
                track: video_track,
                ssrc: video_ssrc,
                payload_type: video_pt,
            },
            PacedTrack {
                track: audio_track,
                ssrc: audio_ssrc,
                payload_type: audio_pt,
            },
            state.clone(),
            PaceFlags {
                record_payloads: opts.record_payloads,
                record_send_log: opts.record_send_log,
                loop_media: opts.loop_media,
            },
        ));

        Ok(WhipPublisher {
            pc,
            _handler: handler,
            http,
            location: resource.location,
            bearer_token: bearer_token.map(str::to_owned),
            state,
            requests,
            pacer: Mutex::new(Some(pacer)),
            video_ssrc,
            audio_ssrc,
            video_pt,
            audio_pt,
            posted_at,
            connected_at,
            closed: AtomicBool::new(false),
        })
    }

    /// The session resource URL returned in `Location` (resolved to an absolute URL).
    pub fn location(&self) -> &str {
        self.location.as_str()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PublisherStats {
        let s = lock(&self.state);
        PublisherStats {
            video: s.video,
            audio: s.audio,
            plis_received: self.requests.plis.load(Ordering::Relaxed),
            firs_received: self.requests.firs.load(Ordering::Relaxed),
            video_ssrc: self.video_ssrc,
            audio_ssrc: self.audio_ssrc,
            video_payload_type: self.video_pt,
            audio_payload_type: self.audio_pt,
            posted_at: self.posted_at,
            connected_at: self.connected_at,
            first_packet_at: s.first_packet_at,
            sending: s.sending,
            send_error: s.send_error.clone(),
        }
    }

    /// Every payload sent so far for `kind`, in send order. Empty unless
    /// [`PublisherOptions::record_payloads`] was set.
    pub fn sent_payloads(&self, kind: TrackKind) -> Vec<Bytes> {
        let s = lock(&self.state);
        match kind {
            TrackKind::Video => s.video_payloads.clone(),
            TrackKind::Audio => s.audio_payloads.clone(),
        }
    }

    /// Packets and bytes of `kind` written at or after `from` and before `to` (`None`: up to
    /// now). Zero unless [`PublisherOptions::record_send_log`] was set.
    pub fn sent_between(
        &self,
        kind: TrackKind,
        from: Instant,
        to: Option<Instant>,
    ) -> KindCounters {
        let s = lock(&self.state);
        let log = match kind {
            TrackKind::Video => &s.video_log,
            TrackKind::Audio => &s.audio_log,
        };
        count_between(log, from, to)
    }

    /// Stops pacing media but keeps the session (and the peer connection) open, e.g. to let
    /// in-flight packets reach viewers before their counters are read.
    pub fn stop_sending(&self) {
        if let Some(task) = self.pacer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        lock(&self.state).sending = false;
    }

    /// Ends the session: stops the media, `DELETE`s the session resource and closes the peer
    /// connection. The connection is closed even if the `DELETE` fails; that error is returned.
    /// Calling it again does nothing. Counters stay readable afterwards.
    pub async fn stop(&self) -> Result<()> {
        self.stop_sending();
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let deleted =
            delete_resource(&self.http, &self.location, self.bearer_token.as_deref()).await;
        let closed = self.pc.close().await;
        deleted?;
        closed.map_err(ClientError::webrtc("closing the peer connection"))
    }
}

impl Drop for WhipPublisher {
    fn drop(&mut self) {
        self.stop_sending();
        if !self.closed.load(Ordering::SeqCst)
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let pc = self.pc.clone();
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Finds the payload type the answer gave the codec with `mime` on this sender.
async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>, mime: &str) -> Result<u8> {
    let params = sender.get_parameters().await.map_err(ClientError::webrtc(
        "reading the negotiated sender parameters",
    ))?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
        .ok_or_else(|| {
            let offered: Vec<String> = params
                .rtp_parameters
                .codecs
                .iter()
                .map(|c| format!("{}/{}", c.rtp_codec.mime_type, c.payload_type))
                .collect();
            ClientError::Negotiation(format!(
                "the answer did not accept {mime} (negotiated: {offered:?})"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A caller that gives up during the POST (a timeout around `connect`) must not leave
    /// the publisher's peer connection holding its socket.
    #[tokio::test]
    async fn a_connect_dropped_during_the_post_releases_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (h264, ogg) =
            super::super::media::make_test_media(dir.path(), Duration::from_secs(1), 300)
                .expect("ffmpeg makes test media");
        let media = SyntheticMedia::load(&h264, &ogg).unwrap();
        crate::client::silent_endpoint::assert_giving_up_releases_the_socket(
            "/whip/st-1",
            |url| async move {
                WhipPublisher::connect(&url, Some("key"), media, PublisherOptions::default()).await
            },
        )
        .await;
    }
}

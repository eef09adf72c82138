//! The WHEP viewer's stack on webrtc-rs's async peer connection: one receive task per
//! remote track, spawned on the current runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::task::JoinHandle;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use super::offer::{recvonly, viewer_media_engine};
use super::options::ViewerOptions;
use super::record::ReceiveRecord;
use crate::client::{
    ClientError, Result, StateHandler, TrackCallback, TrackKind, build_peer_connection,
    complete_offer, lock,
};

/// A webrtc-rs peer connection with receive-only transceivers and its gathered offer.
pub(super) struct WebRtcSession {
    /// The local peer connection; closed by the viewer, or by the caller on failure.
    pub(super) pc: Arc<dyn PeerConnection>,
    /// Keeps the state channels alive and exposes the connection state.
    pub(super) handler: Arc<StateHandler>,
    /// The complete offer, for the `POST`.
    pub(super) offer_sdp: String,
    /// The remote video track once it opens, for sending RTCP about it.
    pub(super) video_track: VideoTrackSlot,
}

/// Where the receive task puts the remote video track when it opens.
pub(super) type VideoTrackSlot = Arc<Mutex<Option<Arc<dyn TrackRemote>>>>;

/// Builds the peer connection, whose tracks are received into `state` by tasks pushed to
/// `tasks`, and gathers its offer.
pub(super) async fn offer(
    opts: &ViewerOptions,
    state: &Arc<Mutex<ReceiveRecord>>,
    tasks: &Arc<Mutex<Vec<JoinHandle<()>>>>,
) -> Result<WebRtcSession> {
    let (media_engine, registry) = viewer_media_engine(opts.video_codecs)?;
    let video_track = VideoTrackSlot::default();
    let on_track: TrackCallback = {
        let state = state.clone();
        let tasks = tasks.clone();
        let video_track = video_track.clone();
        let runtime = tokio::runtime::Handle::current();
        let request_keyframe = opts.request_keyframe_on_start;
        Arc::new(move |track: Arc<dyn TrackRemote>| {
            let task = runtime.spawn(receive(
                track,
                state.clone(),
                request_keyframe,
                video_track.clone(),
            ));
            lock(&tasks).push(task);
        })
    };
    let handler = StateHandler::new(Some(on_track));
    let pc =
        build_peer_connection(media_engine, registry, &handler, &opts.connect.udp_addrs).await?;
    let offer_sdp = async {
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            pc.add_transceiver_from_kind(kind, Some(recvonly()))
                .await
                .map_err(ClientError::webrtc("adding a receive-only transceiver"))?;
        }
        complete_offer(pc.as_ref(), &handler, opts.connect.gather_timeout).await
    }
    .await;
    match offer_sdp {
        Ok(offer_sdp) => Ok(WebRtcSession {
            pc,
            handler,
            offer_sdp,
            video_track,
        }),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

/// Applies the answer and, with `wait_connected` set to a timeout, waits for the connection
/// and records when it came up in `state`.
pub(super) async fn answer(
    session: &WebRtcSession,
    answer_sdp: String,
    wait_connected: Option<Duration>,
    state: &Mutex<ReceiveRecord>,
) -> Result<()> {
    let answer = RTCSessionDescription::answer(answer_sdp)
        .map_err(ClientError::webrtc("parsing the SDP answer"))?;
    session
        .pc
        .set_remote_description(answer)
        .await
        .map_err(ClientError::webrtc("applying the SDP answer"))?;
    if let Some(timeout) = wait_connected {
        session.handler.wait_connected(timeout).await?;
        lock(state).connected_at = Some(Instant::now());
    }
    Ok(())
}

/// Receive loop for one remote track.
async fn receive(
    track: Arc<dyn TrackRemote>,
    state: Arc<Mutex<ReceiveRecord>>,
    request_keyframe: bool,
    video_track: VideoTrackSlot,
) {
    let kind = match track.kind().await {
        RtpCodecKind::Audio => TrackKind::Audio,
        RtpCodecKind::Video => TrackKind::Video,
        _ => return,
    };
    if kind == TrackKind::Video {
        *lock(&video_track) = Some(track.clone());
    }
    let ssrc = track.ssrcs().await.first().copied();
    let codec = match ssrc {
        Some(ssrc) => track.codec(ssrc).await.map(|c| c.mime_type),
        None => None,
    };
    lock(&state).on_track_open(kind, codec);
    if request_keyframe
        && kind == TrackKind::Video
        && let Some(media_ssrc) = ssrc
    {
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!(error = %e, "WHEP viewer could not send PLI");
        }
    }
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let now = Instant::now();
                lock(&state).on_packet(kind, now, &packet);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

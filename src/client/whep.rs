//! WHEP viewer: offers receive-only audio + video and records what arrives.
//!
//! Everything is recorded per kind from the RTP packets the WebRTC stack hands up: counts,
//! optionally every payload (for byte-identity checks against a publisher), sequence-number
//! continuity, and the timeline a viewer cares about — `POST`, first RTP packet, first
//! *complete* keyframe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::packet::Packet as RtpPacket;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, RTCSessionDescription, Registry, register_default_interceptors,
};

use super::media::{
    AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, h264_payload_info, vp8_payload_is_keyframe,
    vp8_payload_starts_frame,
};
use super::{
    ClientError, CloseOnDrop, ConnectOptions, KindCounters, MediaKind, Result, StateHandler,
    TrackCallback, build_peer_connection, complete_offer, count_between, delete_resource,
    http_client, lock, parse_url, post_offer,
};

/// How a [`WhepViewer`] connects and what it records.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Local sockets and timeouts.
    pub connect: ConnectOptions,
    /// Keep every received RTP payload per kind (see [`WhepViewer::received_payloads`]) for
    /// byte-identity checks. Memory grows with the session.
    pub record_payloads: bool,
    /// Keep the arrival instant and size of every packet so
    /// [`WhepViewer::received_between`] can count packets inside a time window. About 16 bytes
    /// per packet.
    pub record_arrival_log: bool,
    /// Keep `(RTP timestamp, arrival instant)` of every video picture completed in order
    /// (its marker-bit packet), for end-to-end latency figures (see
    /// [`WhepViewer::video_frame_log`]). About 24 bytes per picture.
    pub record_frame_log: bool,
    /// Wait for ICE + DTLS to reach `connected` before `connect` returns. When false, `connect`
    /// returns as soon as the answer is applied.
    pub wait_connected: bool,
    /// Send one PLI when the video track opens, as a browser does when it has no keyframe.
    /// Off by default, so time-to-first-keyframe measures what the server does on its own.
    pub request_keyframe_on_start: bool,
    /// The WebRTC stack to run on.
    pub stack: ViewerStack,
    /// Offer `a=setup:active` (to be the DTLS client) instead of `actpass`, as some players
    /// do. Light stack only; the server then finishes its handshake first.
    pub offer_dtls_client: bool,
}

impl Default for ViewerOptions {
    fn default() -> Self {
        Self {
            connect: ConnectOptions::default(),
            record_payloads: false,
            record_arrival_log: true,
            record_frame_log: false,
            wait_connected: true,
            request_keyframe_on_start: false,
            stack: ViewerStack::WebRtc,
            offer_dtls_client: false,
        }
    }
}

/// Receive-side record of one track (audio or video).
#[derive(Debug, Clone, Default)]
pub struct TrackStats {
    /// Packets and payload bytes received (duplicates included).
    pub counters: KindCounters,
    /// Negotiated codec MIME type, e.g. `video/H264`, once the track opened.
    pub codec: Option<String>,
    /// Payload type of the most recent packet.
    pub payload_type: Option<u8>,
    /// SSRC of the first packet.
    pub first_ssrc: Option<u32>,
    /// How many times the SSRC changed mid-stream (a server switching sources without
    /// renegotiation shows up here).
    pub ssrc_changes: u64,
    /// Forward jumps in the sequence number (each counts once however many packets it skips).
    pub seq_gaps: u64,
    /// Sequence numbers skipped over by those jumps: packets never seen (unless they arrive
    /// late, which is counted in `seq_late`).
    pub seq_missing: u64,
    /// Packets older than the newest seen (reordered or retransmitted late).
    pub seq_late: u64,
    /// Packets repeating the newest sequence number.
    pub seq_duplicates: u64,
    /// In-order packets whose RTP timestamp went backwards.
    pub timestamp_regressions: u64,
    /// When the first packet arrived.
    pub first_at: Option<Instant>,
    /// When the most recent packet arrived.
    pub last_at: Option<Instant>,
}

impl TrackStats {
    /// True when the stream was one SSRC with no sequence gaps, no reordering or duplicates,
    /// and non-decreasing timestamps, i.e. what a viewer of a clean relay should see.
    pub fn is_continuous(&self) -> bool {
        self.ssrc_changes == 0
            && self.seq_gaps == 0
            && self.seq_late == 0
            && self.seq_duplicates == 0
            && self.timestamp_regressions == 0
    }
}

/// A snapshot of what a viewer has received.
#[derive(Debug, Clone)]
pub struct ViewerStats {
    /// When the WHEP `POST` was sent (the start of every "time to ..." measurement).
    pub posted_at: Instant,
    /// When the `201 Created` answer arrived.
    pub answered_at: Instant,
    /// When the peer connection reached `connected`, if it has.
    pub connected_at: Option<Instant>,
    /// When the first RTP packet of any kind arrived.
    pub first_rtp_at: Option<Instant>,
    /// When the first complete keyframe had fully arrived: for H.264 an access unit with an
    /// IDR slice (type 5, also found inside STAP-A and FU-A), an SPS seen at or before it, all
    /// of its packets contiguous from a NAL start, completed by the packet with the marker
    /// bit; for VP8 a key frame received the same way.
    pub first_keyframe_at: Option<Instant>,
    /// Whether the frame of the very first video packet is a keyframe (H.264: contains an
    /// IDR or SPS; VP8: key frame), i.e. whether the server started this viewer on a
    /// decodable picture. False until the first video packet.
    pub first_video_frame_is_keyframe: bool,
    /// Number of complete keyframes received.
    pub keyframes_completed: u64,
    /// The video track.
    pub video: TrackStats,
    /// The audio track.
    pub audio: TrackStats,
}

impl ViewerStats {
    /// Time from `POST` to the first complete keyframe.
    pub fn time_to_first_keyframe(&self) -> Option<Duration> {
        self.first_keyframe_at
            .map(|t| t.saturating_duration_since(self.posted_at))
    }

    /// Time from `POST` to the first RTP packet.
    pub fn time_to_first_rtp(&self) -> Option<Duration> {
        self.first_rtp_at
            .map(|t| t.saturating_duration_since(self.posted_at))
    }

    /// Stats for one kind.
    pub fn track(&self, kind: MediaKind) -> &TrackStats {
        match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        }
    }
}

/// Video codecs the keyframe detector understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VideoCodec {
    /// RFC 6184 payloads: IDR found in single NAL units, STAP-A/B and FU-A/B.
    H264,
    /// RFC 7741 payloads: key frames found from the payload descriptor and frame header.
    Vp8,
    /// No keyframe detection.
    Other,
}

impl VideoCodec {
    pub(super) fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
            VideoCodec::H264
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            VideoCodec::Vp8
        } else {
            VideoCodec::Other
        }
    }
}

/// Per-kind receive state: counters plus the continuity tracker.
#[derive(Debug, Default)]
pub(super) struct TrackState {
    /// The counters handed out by `stats()`.
    pub(super) stats: TrackStats,
    /// SSRC of the newest in-order packet, to detect source switches.
    last_ssrc: Option<u32>,
    /// Sequence number of the newest in-order packet, to classify the next one.
    last_seq: Option<u16>,
    /// Timestamp of the newest in-order packet, to detect regressions.
    last_ts: u32,
    /// Every payload, when payload recording is on (byte-identity checks).
    payloads: Vec<Bytes>,
    /// `(arrival instant, payload length)` per packet, for `received_between`.
    arrivals: Vec<(Instant, u32)>,
}

impl TrackState {
    /// Updates continuity counters; returns true when the packet is the next in-order one
    /// (or starts the stream), false for late/duplicate packets.
    fn observe(&mut self, now: Instant, packet: &RtpPacket, flags: RecordFlags) -> bool {
        let h = &packet.header;
        let s = &mut self.stats;
        s.counters.add(packet.payload.len());
        s.payload_type = Some(h.payload_type);
        s.first_at.get_or_insert(now);
        s.last_at = Some(now);
        s.first_ssrc.get_or_insert(h.ssrc);
        if flags.record_payloads {
            self.payloads.push(packet.payload.clone());
        }
        if flags.record_arrival_log {
            self.arrivals.push((now, packet.payload.len() as u32));
        }
        let in_order = match (self.last_ssrc, self.last_seq) {
            (Some(ssrc), Some(last)) if ssrc == h.ssrc => {
                let delta = h.sequence_number.wrapping_sub(last);
                if delta == 0 {
                    s.seq_duplicates += 1;
                    false
                } else if delta < 0x8000 {
                    if delta > 1 {
                        s.seq_gaps += 1;
                        s.seq_missing += u64::from(delta - 1);
                    }
                    if (h.timestamp.wrapping_sub(self.last_ts) as i32) < 0 {
                        s.timestamp_regressions += 1;
                    }
                    true
                } else {
                    s.seq_late += 1;
                    false
                }
            }
            (Some(_), _) => {
                s.ssrc_changes += 1;
                true
            }
            (None, _) => true,
        };
        if in_order {
            self.last_ssrc = Some(h.ssrc);
            self.last_seq = Some(h.sequence_number);
            self.last_ts = h.timestamp;
        }
        in_order
    }
}

/// Reassembly-free keyframe detector: follows frames by RTP timestamp and marker bit.
#[derive(Debug, Default)]
struct FrameTracker {
    /// Timestamp of the frame being received.
    current_ts: Option<u32>,
    /// The current frame's first packet began a NAL unit / VP8 frame.
    clean_start: bool,
    /// No sequence gap inside the current frame so far.
    contiguous: bool,
    /// The current frame contains keyframe data.
    has_key: bool,
    /// The current frame (H.264) contains an SPS.
    has_sps: bool,
    /// An SPS has been seen in an earlier frame.
    sps_seen: bool,
    /// Sequence number of the previous in-order video packet.
    prev_seq: Option<u16>,
    /// Timestamp of the very first video packet.
    first_frame_ts: Option<u32>,
}

/// Recording switches copied from [`ViewerOptions`].
#[derive(Debug, Clone, Copy)]
struct RecordFlags {
    /// See [`ViewerOptions::record_payloads`].
    record_payloads: bool,
    /// See [`ViewerOptions::record_arrival_log`].
    record_arrival_log: bool,
    /// See [`ViewerOptions::record_frame_log`].
    record_frame_log: bool,
}

impl From<&ViewerOptions> for RecordFlags {
    fn from(opts: &ViewerOptions) -> Self {
        Self {
            record_payloads: opts.record_payloads,
            record_arrival_log: opts.record_arrival_log,
            record_frame_log: opts.record_frame_log,
        }
    }
}

/// Everything the receive tasks write.
#[derive(Debug)]
pub(super) struct ViewerState {
    /// What to record besides counters.
    flags: RecordFlags,
    /// Codec of the video track, which decides how keyframes are recognised.
    pub(super) video_codec: VideoCodec,
    /// See [`ViewerStats::first_rtp_at`].
    first_rtp_at: Option<Instant>,
    /// See [`ViewerStats::first_keyframe_at`].
    first_keyframe_at: Option<Instant>,
    /// See [`ViewerStats::first_video_frame_is_keyframe`].
    first_video_frame_is_keyframe: bool,
    /// See [`ViewerStats::keyframes_completed`].
    keyframes_completed: u64,
    /// See [`ViewerStats::connected_at`].
    pub(super) connected_at: Option<Instant>,
    /// Video receive state.
    pub(super) video: TrackState,
    /// Audio receive state.
    pub(super) audio: TrackState,
    /// Keyframe detection across video packets.
    frames: FrameTracker,
    /// See [`ViewerOptions::record_frame_log`].
    frame_log: Vec<(u32, Instant)>,
}

impl ViewerState {
    fn new(flags: RecordFlags) -> Self {
        Self {
            flags,
            video_codec: VideoCodec::Other,
            first_rtp_at: None,
            first_keyframe_at: None,
            first_video_frame_is_keyframe: false,
            keyframes_completed: 0,
            connected_at: None,
            video: TrackState::default(),
            audio: TrackState::default(),
            frames: FrameTracker::default(),
            frame_log: Vec::new(),
        }
    }

    pub(super) fn on_packet(&mut self, kind: MediaKind, now: Instant, packet: &RtpPacket) {
        self.first_rtp_at.get_or_insert(now);
        let flags = self.flags;
        match kind {
            MediaKind::Audio => {
                self.audio.observe(now, packet, flags);
            }
            MediaKind::Video => {
                if self.video.observe(now, packet, flags) {
                    self.on_video_in_order(now, packet);
                }
            }
        }
    }

    fn on_video_in_order(&mut self, now: Instant, packet: &RtpPacket) {
        let h = &packet.header;
        let payload = &packet.payload[..];
        let (is_key, starts, has_sps) = match self.video_codec {
            VideoCodec::H264 => {
                let info = h264_payload_info(payload);
                (info.has_idr, info.starts_nal, info.has_sps)
            }
            VideoCodec::Vp8 => (
                vp8_payload_is_keyframe(payload),
                vp8_payload_starts_frame(payload),
                false,
            ),
            VideoCodec::Other => (false, false, false),
        };
        let f = &mut self.frames;
        let follows_prev = f
            .prev_seq
            .is_none_or(|p| h.sequence_number == p.wrapping_add(1));
        if f.current_ts != Some(h.timestamp) {
            f.current_ts = Some(h.timestamp);
            f.clean_start = starts;
            f.contiguous = true;
            f.has_key = false;
            f.has_sps = false;
        } else if !follows_prev {
            f.contiguous = false;
        }
        f.prev_seq = Some(h.sequence_number);
        f.has_key |= is_key;
        f.has_sps |= has_sps;

        let first_ts = *f.first_frame_ts.get_or_insert(h.timestamp);
        if first_ts == h.timestamp && (is_key || has_sps) {
            self.first_video_frame_is_keyframe = true;
        }

        if h.marker {
            if self.flags.record_frame_log {
                self.frame_log.push((h.timestamp, now));
            }
            let decodable = match self.video_codec {
                VideoCodec::H264 => f.sps_seen || f.has_sps,
                _ => true,
            };
            if f.has_key && f.clean_start && f.contiguous && decodable {
                self.keyframes_completed += 1;
                self.first_keyframe_at.get_or_insert(now);
            }
            f.sps_seen |= f.has_sps;
            // The next packet starts a new frame even if it reuses the timestamp.
            f.current_ts = None;
        }
    }
}

/// The codecs a viewer offers (Opus; H.264 constrained-baseline and baseline with
/// packetization-mode=1; VP8) with rtc's default interceptors: NACK and PLI feedback on
/// video, receiver reports and transport-wide congestion control, as a browser sends.
pub(super) fn viewer_media_engine() -> Result<(MediaEngine, Registry)> {
    let mut media_engine = MediaEngine::default();
    let codecs = [
        (
            MIME_TYPE_OPUS,
            AUDIO_CLOCK_RATE,
            2,
            "minptime=10;useinbandfec=1",
            111,
            RtpCodecKind::Audio,
        ),
        (
            MIME_TYPE_H264,
            VIDEO_CLOCK_RATE,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
            RtpCodecKind::Video,
        ),
        (
            MIME_TYPE_H264,
            VIDEO_CLOCK_RATE,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            106,
            RtpCodecKind::Video,
        ),
        (
            MIME_TYPE_VP8,
            VIDEO_CLOCK_RATE,
            0,
            "",
            96,
            RtpCodecKind::Video,
        ),
    ];
    for (mime, clock_rate, channels, fmtp, payload_type, kind) in codecs {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: mime.to_owned(),
                        clock_rate,
                        channels,
                        sdp_fmtp_line: fmtp.to_owned(),
                        rtcp_feedback: vec![],
                    },
                    payload_type,
                },
                kind,
            )
            .map_err(ClientError::webrtc("registering codecs"))?;
    }
    // Adds NACK/PLI feedback to the video codecs, receiver reports and TWCC.
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .map_err(ClientError::webrtc("registering interceptors"))?;
    Ok((media_engine, registry))
}

/// A receive-only transceiver, one per kind a viewer offers.
pub(super) fn recvonly() -> RTCRtpTransceiverInit {
    RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Recvonly,
        streams: vec![],
        send_encodings: vec![],
    }
}

/// Which WebRTC stack a [`WhepViewer`] runs on. Both speak the same protocol (ICE, DTLS,
/// SRTP, receiver reports, NACK).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ViewerStack {
    /// webrtc-rs's async peer connection, with its tasks and channels per connection.
    #[default]
    WebRtc,
    /// rtc's sans-IO peer connection driven by one task (see [`super::light`]): a
    /// fraction of the client CPU, for benchmarks that run hundreds of viewers on the
    /// server's machine.
    Light,
}

/// The running peer connection of a viewer.
enum Stack {
    /// See [`ViewerStack::WebRtc`].
    WebRtc {
        /// The local peer connection; closed by `close`.
        pc: Arc<dyn PeerConnection>,
        /// Keeps the state channels alive and exposes the connection state.
        handler: Arc<StateHandler>,
    },
    /// See [`ViewerStack::Light`]; its driver task is in `tasks`.
    Light {
        /// Tells the driver to close the connection and stop.
        stop: Mutex<Option<oneshot::Sender<()>>>,
        /// `Some(true)` once connected, `Some(false)` once failed or closed.
        connected: watch::Receiver<Option<bool>>,
    },
}

/// A WHEP session receiving audio + video.
pub struct WhepViewer {
    /// The peer connection and how to close it.
    stack: Stack,
    /// HTTP client reused for the `DELETE`.
    http: reqwest::Client,
    /// The session resource URL (resolved `Location`).
    location: reqwest::Url,
    /// Bearer token repeated on `DELETE`.
    bearer_token: Option<String>,
    /// Written by the receive tasks.
    state: Arc<Mutex<ViewerState>>,
    /// Receive tasks, aborted on close/drop.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// When the `POST` was sent.
    posted_at: Instant,
    /// When the answer arrived.
    answered_at: Instant,
    /// Set once `close` has run, so it is idempotent and drop does not close twice.
    closed: AtomicBool,
}

/// A viewer with its offer made and not yet sent ([`WhepViewer::prepare`]).
pub struct PreparedViewer {
    /// Taken by [`PreparedViewer::connect`]; still here on drop means never sent.
    offer: Option<Offer>,
    parts: Parts,
}

/// What a prepared viewer keeps beside its peer connection.
struct Parts {
    opts: ViewerOptions,
    http: reqwest::Client,
    state: Arc<Mutex<ViewerState>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// A prepared peer connection of either stack.
enum Offer {
    Light(Box<super::light::Session>),
    WebRtc {
        pc: Arc<dyn PeerConnection>,
        handler: Arc<StateHandler>,
        offer_sdp: String,
    },
}

/// The webrtc-rs peer connection with receive-only transceivers and its gathered offer.
async fn webrtc_offer(
    opts: &ViewerOptions,
    state: &Arc<Mutex<ViewerState>>,
    tasks: &Arc<Mutex<Vec<JoinHandle<()>>>>,
) -> Result<Offer> {
    let (media_engine, registry) = viewer_media_engine()?;
    let on_track: TrackCallback = {
        let state = state.clone();
        let tasks = tasks.clone();
        let runtime = tokio::runtime::Handle::current();
        let request_keyframe = opts.request_keyframe_on_start;
        Arc::new(move |track: Arc<dyn TrackRemote>| {
            let task = runtime.spawn(receive(track, state.clone(), request_keyframe));
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
        Ok(offer_sdp) => Ok(Offer::WebRtc {
            pc,
            handler,
            offer_sdp,
        }),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

impl PreparedViewer {
    /// `POST`s the prepared offer to the WHEP endpoint `url` and continues as
    /// [`WhepViewer::connect`] does.
    pub async fn connect(mut self, url: &str, bearer_token: Option<&str>) -> Result<WhepViewer> {
        let offer = self
            .offer
            .take()
            .ok_or_else(|| ClientError::Negotiation("this offer was already sent".to_owned()))?;
        match offer {
            Offer::Light(session) => self.parts.connect_light(*session, url, bearer_token).await,
            Offer::WebRtc {
                pc,
                handler,
                offer_sdp,
            } => {
                // Closes the peer connection if this future is dropped part-way (a caller's
                // timeout during the POST, say), as on an error.
                let mut guard = CloseOnDrop::new(pc.clone(), Some(self.parts.tasks.clone()));
                let viewer = self
                    .parts
                    .connect_webrtc(&pc, &handler, offer_sdp, url, bearer_token)
                    .await;
                match viewer {
                    Ok(_) => guard.disarm(),
                    Err(_) => guard.close().await,
                }
                viewer
            }
        }
    }
}

impl Parts {
    /// [`PreparedViewer::connect`] on rtc's sans-IO peer connection.
    async fn connect_light(
        &self,
        mut session: super::light::Session,
        url: &str,
        bearer_token: Option<&str>,
    ) -> Result<WhepViewer> {
        let endpoint = parse_url(url)?;
        let posted_at = Instant::now();
        let resource = post_offer(
            &self.http,
            &endpoint,
            bearer_token,
            session.offer_sdp.clone(),
        )
        .await?;
        let answered_at = Instant::now();
        if let Err(e) = super::light::answer(&mut session, resource.answer_sdp.clone()) {
            let _ = delete_resource(&self.http, &resource.location, bearer_token).await;
            return Err(e);
        }
        let (connected_tx, mut connected_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let driver = tokio::spawn(super::light::drive(
            session,
            self.state.clone(),
            self.opts.request_keyframe_on_start,
            connected_tx,
            stop_rx,
        ));
        lock(&self.tasks).push(driver);
        let viewer = self.viewer(
            Stack::Light {
                stop: Mutex::new(Some(stop_tx)),
                connected: connected_rx.clone(),
            },
            resource.location,
            bearer_token,
            [posted_at, answered_at],
        );
        if self.opts.wait_connected {
            let after = self.opts.connect.connect_timeout;
            let outcome = tokio::time::timeout(after, connected_rx.wait_for(Option::is_some))
                .await
                .map(|r| r.map(|c| *c == Some(true)).unwrap_or(false));
            let failed = match outcome {
                Ok(true) => None,
                Ok(false) => Some(ClientError::Negotiation(
                    "the peer connection failed before connecting (ICE or DTLS)".to_owned(),
                )),
                Err(_) => Some(ClientError::Timeout {
                    what: "ICE + DTLS to connect",
                    after,
                }),
            };
            if let Some(e) = failed {
                let _ = viewer.close().await;
                return Err(e);
            }
        }
        Ok(viewer)
    }

    /// [`PreparedViewer::connect`] on webrtc-rs's async peer connection; the caller closes
    /// `pc` when this fails.
    async fn connect_webrtc(
        &self,
        pc: &Arc<dyn PeerConnection>,
        handler: &Arc<StateHandler>,
        offer_sdp: String,
        url: &str,
        bearer_token: Option<&str>,
    ) -> Result<WhepViewer> {
        let endpoint = parse_url(url)?;
        let posted_at = Instant::now();
        let resource = post_offer(&self.http, &endpoint, bearer_token, offer_sdp).await?;
        let answered_at = Instant::now();
        let applied = async {
            let answer = RTCSessionDescription::answer(resource.answer_sdp.clone())
                .map_err(ClientError::webrtc("parsing the SDP answer"))?;
            pc.set_remote_description(answer)
                .await
                .map_err(ClientError::webrtc("applying the SDP answer"))?;
            if self.opts.wait_connected {
                handler
                    .wait_connected(self.opts.connect.connect_timeout)
                    .await?;
                lock(&self.state).connected_at = Some(Instant::now());
            }
            Ok::<_, ClientError>(())
        }
        .await;
        if let Err(e) = applied {
            let _ = delete_resource(&self.http, &resource.location, bearer_token).await;
            return Err(e);
        }
        Ok(self.viewer(
            Stack::WebRtc {
                pc: pc.clone(),
                handler: handler.clone(),
            },
            resource.location,
            bearer_token,
            [posted_at, answered_at],
        ))
    }

    /// The viewer of an answered offer; `[posted_at, answered_at]`.
    fn viewer(
        &self,
        stack: Stack,
        location: reqwest::Url,
        bearer_token: Option<&str>,
        [posted_at, answered_at]: [Instant; 2],
    ) -> WhepViewer {
        WhepViewer {
            stack,
            http: self.http.clone(),
            location,
            bearer_token: bearer_token.map(str::to_owned),
            state: self.state.clone(),
            tasks: self.tasks.clone(),
            posted_at,
            answered_at,
            closed: AtomicBool::new(false),
        }
    }
}

impl Drop for PreparedViewer {
    /// An offer never sent: webrtc-rs's peer connection has tasks to stop (the light one
    /// is only a socket and memory).
    fn drop(&mut self) {
        if let Some(Offer::WebRtc { pc, .. }) = self.offer.take() {
            drop(CloseOnDrop::new(pc, Some(self.parts.tasks.clone())));
        }
    }
}

impl WhepViewer {
    /// Starts viewing the WHEP endpoint `url`: [`WhepViewer::prepare`], then
    /// [`PreparedViewer::connect`].
    ///
    /// Builds a peer connection with receive-only audio and video transceivers (Opus; H.264
    /// constrained-baseline and baseline with packetization-mode=1, and VP8), waits for ICE
    /// gathering, `POST`s the offer (with `Authorization: Bearer` when a token is given),
    /// requires `201 Created` with a `Location`, applies the answer and, unless disabled,
    /// waits for the connection. Must be called inside a tokio runtime; the receive tasks run
    /// on it.
    pub async fn connect(
        url: &str,
        bearer_token: Option<&str>,
        opts: ViewerOptions,
    ) -> Result<WhepViewer> {
        parse_url(url)?;
        Self::prepare(opts).await?.connect(url, bearer_token).await
    }

    /// Makes a viewer's peer connection and its complete offer without sending it.
    ///
    /// A benchmark prepares its whole audience this way before the first `POST`: in a
    /// real audience each browser makes its own offer on its own device, so the offers
    /// should not compete with the server for the benchmark machine's CPU.
    pub async fn prepare(opts: ViewerOptions) -> Result<PreparedViewer> {
        let http = http_client(&opts.connect)?;
        let state = Arc::new(Mutex::new(ViewerState::new(RecordFlags::from(&opts))));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let offer = match opts.stack {
            ViewerStack::Light => Offer::Light(Box::new(super::light::offer(&opts).await?)),
            ViewerStack::WebRtc => webrtc_offer(&opts, &state, &tasks).await?,
        };
        Ok(PreparedViewer {
            offer: Some(offer),
            parts: Parts {
                opts,
                http,
                state,
                tasks,
            },
        })
    }

    /// The session resource URL returned in `Location` (resolved to an absolute URL).
    pub fn location(&self) -> &str {
        self.location.as_str()
    }

    /// A snapshot of what has been received so far.
    pub fn stats(&self) -> ViewerStats {
        let connected = match &self.stack {
            Stack::WebRtc { handler, .. } => {
                *handler.connection.borrow()
                    == webrtc::peer_connection::RTCPeerConnectionState::Connected
            }
            Stack::Light { connected, .. } => *connected.borrow() == Some(true),
        };
        let mut s = lock(&self.state);
        if connected && s.connected_at.is_none() {
            // Approximation when `wait_connected` was off: first time a snapshot saw it.
            s.connected_at = Some(Instant::now());
        }
        ViewerStats {
            posted_at: self.posted_at,
            answered_at: self.answered_at,
            connected_at: s.connected_at,
            first_rtp_at: s.first_rtp_at,
            first_keyframe_at: s.first_keyframe_at,
            first_video_frame_is_keyframe: s.first_video_frame_is_keyframe,
            keyframes_completed: s.keyframes_completed,
            video: s.video.stats.clone(),
            audio: s.audio.stats.clone(),
        }
    }

    /// Every payload received so far for `kind`, in arrival order. Empty unless
    /// [`ViewerOptions::record_payloads`] was set.
    pub fn received_payloads(&self, kind: MediaKind) -> Vec<Bytes> {
        let s = lock(&self.state);
        match kind {
            MediaKind::Audio => s.audio.payloads.clone(),
            MediaKind::Video => s.video.payloads.clone(),
        }
    }

    /// `(RTP timestamp, arrival instant)` of every video picture completed so far, in
    /// arrival order. Empty unless [`ViewerOptions::record_frame_log`] was set.
    pub fn video_frame_log(&self) -> Vec<(u32, Instant)> {
        lock(&self.state).frame_log.clone()
    }

    /// Packets and bytes of `kind` that arrived at or after `from` and before `to` (`None`: up
    /// to now). Zero unless [`ViewerOptions::record_arrival_log`] was set.
    pub fn received_between(
        &self,
        kind: MediaKind,
        from: Instant,
        to: Option<Instant>,
    ) -> KindCounters {
        let s = lock(&self.state);
        let log = match kind {
            MediaKind::Audio => &s.audio.arrivals,
            MediaKind::Video => &s.video.arrivals,
        };
        count_between(log, from, to)
    }

    /// Ends the session: `DELETE`s the session resource and closes the peer connection. The
    /// connection is closed even if the `DELETE` fails; that error is returned. Calling it
    /// again does nothing. Counters stay readable afterwards.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let deleted =
            delete_resource(&self.http, &self.location, self.bearer_token.as_deref()).await;
        let closed = match &self.stack {
            Stack::WebRtc { pc, .. } => pc.close().await,
            Stack::Light { stop, .. } => {
                // The driver closes the connection (DTLS close_notify) and ends.
                if let Some(stop) = lock(stop).take() {
                    let _ = stop.send(());
                }
                let driver = lock(&self.tasks).pop();
                if let Some(mut driver) = driver {
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut driver).await;
                    driver.abort();
                }
                Ok(())
            }
        };
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        deleted?;
        closed.map_err(ClientError::webrtc("closing the peer connection"))
    }
}

impl Drop for WhepViewer {
    fn drop(&mut self) {
        if let Stack::Light { stop, .. } = &self.stack
            && let Some(stop) = lock(stop).take()
            && stop.send(()).is_ok()
        {
            // The driver closes the connection (DTLS close_notify) and ends by itself.
            return;
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if !self.closed.load(Ordering::SeqCst)
            && let Stack::WebRtc { pc, .. } = &self.stack
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let pc = pc.clone();
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Receive loop for one remote track.
async fn receive(
    track: Arc<dyn TrackRemote>,
    state: Arc<Mutex<ViewerState>>,
    request_keyframe: bool,
) {
    let kind = match track.kind().await {
        RtpCodecKind::Audio => MediaKind::Audio,
        RtpCodecKind::Video => MediaKind::Video,
        _ => return,
    };
    let ssrc = track.ssrcs().await.first().copied();
    let codec = match ssrc {
        Some(ssrc) => track.codec(ssrc).await.map(|c| c.mime_type),
        None => None,
    };
    {
        let mut s = lock(&state);
        if kind == MediaKind::Video {
            s.video_codec = codec
                .as_deref()
                .map_or(VideoCodec::Other, VideoCodec::from_mime);
            s.video.stats.codec = codec.clone();
        } else {
            s.audio.stats.codec = codec.clone();
        }
    }
    if request_keyframe
        && kind == MediaKind::Video
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

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            header: Header {
                version: 2,
                marker,
                payload_type: 102,
                sequence_number: seq,
                timestamp: ts,
                ssrc: 42,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// A caller that gives up during the POST (a timeout around `connect`) must not leave
    /// a webrtc-rs peer connection holding its socket.
    #[tokio::test]
    async fn a_connect_dropped_during_the_post_releases_its_socket() {
        let prepared = WhepViewer::prepare(ViewerOptions::default()).await.unwrap();
        assert!(matches!(prepared.offer, Some(Offer::WebRtc { .. })));
        crate::client::silent_endpoint::assert_giving_up_releases_the_socket(
            "/whep/st-1",
            |url| async move { prepared.connect(&url, None).await },
        )
        .await;
    }

    fn viewer(codec: VideoCodec) -> ViewerState {
        let mut s = ViewerState::new(RecordFlags {
            record_payloads: true,
            record_arrival_log: true,
            record_frame_log: true,
        });
        s.video_codec = codec;
        s
    }

    const STAP_SPS_PPS: &[u8] = &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
    const FU_IDR_START: &[u8] = &[0x7c, 0x85, 1];
    const FU_IDR_MID: &[u8] = &[0x7c, 0x05, 2];
    const FU_IDR_END: &[u8] = &[0x7c, 0x45, 3];
    const P_SLICE: &[u8] = &[0x41, 0x9a, 0];

    #[test]
    fn h264_keyframe_completes_on_marker() {
        let mut v = viewer(VideoCodec::H264);
        let t = Instant::now();
        v.on_packet(MediaKind::Video, t, &pkt(10, 1000, false, STAP_SPS_PPS));
        v.on_packet(MediaKind::Video, t, &pkt(11, 1000, false, FU_IDR_START));
        v.on_packet(MediaKind::Video, t, &pkt(12, 1000, false, FU_IDR_MID));
        assert!(
            v.first_keyframe_at.is_none(),
            "not complete before the marker"
        );
        v.on_packet(MediaKind::Video, t, &pkt(13, 1000, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_some());
        assert!(v.first_video_frame_is_keyframe);
        assert_eq!(v.keyframes_completed, 1);
        assert!(v.video.stats.is_continuous());
        assert_eq!(v.video.payloads.len(), 4);
    }

    #[test]
    fn joining_mid_gop_is_not_a_keyframe_start() {
        let mut v = viewer(VideoCodec::H264);
        let t = Instant::now();
        // First frame is a P-frame.
        v.on_packet(MediaKind::Video, t, &pkt(1, 0, true, P_SLICE));
        assert!(!v.first_video_frame_is_keyframe);
        // A keyframe with a lost middle fragment is not complete.
        v.on_packet(MediaKind::Video, t, &pkt(2, 3000, false, STAP_SPS_PPS));
        v.on_packet(MediaKind::Video, t, &pkt(3, 3000, false, FU_IDR_START));
        v.on_packet(MediaKind::Video, t, &pkt(5, 3000, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_none());
        assert_eq!(v.video.stats.seq_gaps, 1);
        assert_eq!(v.video.stats.seq_missing, 1);
        // The next whole one is.
        v.on_packet(MediaKind::Video, t, &pkt(6, 6000, false, STAP_SPS_PPS));
        v.on_packet(MediaKind::Video, t, &pkt(7, 6000, false, FU_IDR_START));
        v.on_packet(MediaKind::Video, t, &pkt(8, 6000, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_some());
        assert!(!v.first_video_frame_is_keyframe);
    }

    #[test]
    fn keyframe_starting_mid_fragment_is_ignored() {
        let mut v = viewer(VideoCodec::H264);
        let t = Instant::now();
        // Joined in the middle of an IDR's FU-A sequence (SPS seen earlier doesn't help).
        v.on_packet(MediaKind::Video, t, &pkt(20, 0, false, FU_IDR_MID));
        v.on_packet(MediaKind::Video, t, &pkt(21, 0, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_none());
        assert!(
            v.first_video_frame_is_keyframe,
            "first frame carries IDR data"
        );
    }

    #[test]
    fn continuity_counters() {
        let mut v = viewer(VideoCodec::Other);
        let t = Instant::now();
        for (seq, ts) in [
            (65534u16, 10u32),
            (65535, 20),
            (0, 30),
            (0, 30),
            (3, 40),
            (2, 35),
        ] {
            v.on_packet(MediaKind::Audio, t, &pkt(seq, ts, false, &[1]));
        }
        let a = &v.audio.stats;
        assert_eq!(a.counters.packets, 6);
        assert_eq!(a.seq_duplicates, 1);
        assert_eq!(a.seq_gaps, 1);
        assert_eq!(a.seq_missing, 2);
        assert_eq!(a.seq_late, 1);
        assert!(!a.is_continuous());
        let mut other = pkt(4, 50, false, &[1]);
        other.header.ssrc = 7;
        v.on_packet(MediaKind::Audio, t, &other);
        assert_eq!(v.audio.stats.ssrc_changes, 1);
    }

    #[test]
    fn vp8_keyframe_detection_in_stream() {
        let mut v = viewer(VideoCodec::Vp8);
        let t = Instant::now();
        v.on_packet(MediaKind::Video, t, &pkt(1, 0, false, &[0x10, 0x50, 0x01]));
        v.on_packet(MediaKind::Video, t, &pkt(2, 0, true, &[0x00, 0xaa]));
        assert!(v.first_keyframe_at.is_some());
        assert!(v.first_video_frame_is_keyframe);
    }
}

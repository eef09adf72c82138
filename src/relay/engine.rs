//! The engine task: one UDP socket, all peer connections, the channel hub and fan-out.
//!
//! Datagrams are routed to peers by source address, or for a first STUN check by the
//! ufrag in its USERNAME. Every peer is a sans-IO `RTCPeerConnection`; after feeding it
//! input the engine drains its outputs (events, RTP/RTCP, datagrams) and schedules its
//! next timeout in a heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use rtc::crypto::RTCCryptoProvider;
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::feedback::DeliverFeedback;
use super::media::{
    GopCache, HealthAction, RetransmitBuffer, Rewriter, VideoCodec, ViewerHealth, starts_keyframe,
};
use super::srtp::{GcmRtp, KeyTap, Rollover, SenderReportInput};
use super::stun;
use super::{
    Accepted, ChannelStatus, Command, LiveBoard, LocalInput, LocalPublisher, LocalTracks,
    RelayCounters, RelayError, ViewerInfo,
};
use crate::catalog::{AudienceEvent, AudienceSink, now_ms};
use crate::config::SOURCE_QUALITY;
use crate::config::{RelayConfig, WebRtcConfig};
use crate::ids::{ChannelName, SessionId, ViewerId};
use crate::media::MediaKind;

/// Internal key of a peer connection.
type PeerKey = u64;

/// A peer is serviced at least this often even if its stack asks for nothing, so a
/// deadline that moved earlier after a write is never missed for long.
const MAX_TIMER: Duration = Duration::from_millis(200);

/// Delay between a viewer connecting and the keyframe-group replay when the viewer is the
/// DTLS client (see `replay_at`).
const REPLAY_DELAY: Duration = Duration::from_millis(30);

/// How often each viewer gets sender reports (lip sync, RFC 3550 §6.4.1).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A peer that has not connected within this time is removed (its session closed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after connecting a viewer is detached from its peer connection (see
/// [`Engine::detach`]): long enough for the last DTLS flight and the first RTCP to pass
/// (a viewer whose RTCP has not arrived yet is tried again a second later).
const DETACH_AFTER: Duration = Duration::from_secs(2);

/// How often a detached viewer's timer runs (consent expiry, keyframe replay).
const DETACHED_TICK: Duration = Duration::from_secs(1);

/// Internal key of a local (server-side) publisher.
pub(super) type LocalId = u64;

/// The live session a source publishes.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub(crate) id: SessionId,
    pub(crate) title: String,
    pub(crate) started_at_ms: i64,
}

/// A server-side source: RTMP ingest, a pull source or film playout.
struct LocalState {
    channel: ChannelName,
    session: SessionInfo,
    /// Set when a viewer asks for a keyframe; the source's encoder reads and clears it.
    keyframe_wanted: Arc<AtomicBool>,
}

struct TrackIn {
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    receiver_id: RTCRtpReceiverId,
    media_ssrc: u32,
}

struct PublisherState {
    session: SessionId,
    title: String,
    started_at_ms: i64,
    /// Audio/video sections in the offer: the channel goes live when all have opened.
    expected_tracks: usize,
    tracks: HashMap<String, TrackIn>,
}

struct TrackOut {
    sender_id: RTCRtpSenderId,
    rewriter: Rewriter,
    /// Rollover counter of its SSRC, for the GCM fast path.
    rollover: Rollover,
    /// Packets and payload octets sent, for sender reports.
    packets: u32,
    octets: u32,
}

struct ViewerState {
    info: ViewerInfo,
    video: Option<TrackOut>,
    audio: Option<TrackOut>,
    connected: bool,
    /// When to replay the keyframe group to this viewer. Live video waits until the replay
    /// is done. As the DTLS client (our answer's `setup:active`) the engine is connected
    /// only once the viewer's last flight arrived, so the viewer has its SRTP keys and the
    /// replay goes at once. When the viewer offered `setup:active` it finishes after us and
    /// a busy one drops packets that beat its keys: the replay waits `REPLAY_DELAY`.
    replay_at: Option<Instant>,
    /// Its receiver reports' loss, deciding keyframe skips and drops.
    health: ViewerHealth,
    /// Video is withheld until the next keyframe (set when its link is losing too much).
    skip_video: bool,
    /// The attendance row of the session being watched, if one is live.
    row: Option<ViewerId>,
    /// Which of the channel's video streams it watches (0 is the source).
    rendition: usize,
    /// Our SRTP context for this viewer, from its key tap once DTLS is done; media then
    /// bypasses rtc's per-packet pipeline (see [`super::srtp`]).
    srtp: Option<Box<rtc::srtp::context::Context>>,
    /// The AES-GCM fast path for its RTP when that profile was negotiated (every browser
    /// offers it); RTCP and the other profile go through `srtp`.
    gcm: Option<GcmRtp>,
    /// When to send the next sender reports.
    next_report: Option<Instant>,
    /// Our ICE password, to answer its consent checks once detached.
    pwd: String,
    /// When to detach it from its peer connection (see [`Engine::detach`]).
    detach_at: Option<Instant>,
    /// Whether rtc has handed us RTCP from it: its SRTP keys work, so its side of the
    /// DTLS handshake is done too.
    rtcp_seen: bool,
    /// Set once detached: the engine answers its STUN and reads its RTCP itself.
    detached: Option<Detached>,
}

/// What a viewer needs once its `RTCPeerConnection` is gone. The connection's state (session
/// descriptions, ICE agent, DTLS endpoint, transceivers, interceptors, statistics) was about
/// 90 KB of heap per viewer; its media already went out through the engine's own SRTP.
struct Detached {
    /// Decrypts the viewer's SRTCP (receiver reports, NACK, PLI).
    srtcp: Box<rtc::srtp::context::Context>,
    /// When it last sent a signed consent check or RTCP; silent for the configured
    /// disconnected + failed timeouts, it is removed as a failed connection would be.
    heard: Instant,
}

enum Role {
    Publisher(PublisherState),
    Viewer(Box<ViewerState>),
}

struct Peer {
    /// The sans-IO peer connection; `None` once a viewer is detached.
    pc: Option<Box<RTCPeerConnection>>,
    channel: ChannelName,
    resource: String,
    ufrag: String,
    role: Role,
    remotes: Vec<SocketAddr>,
    created: Instant,
    /// The timeout currently scheduled in the heap for this peer.
    scheduled: Option<Instant>,
    closing: bool,
    /// Whether ICE and DTLS ever completed; peers that never connect are removed.
    ever_connected: bool,
    /// The viewer's SRTP key tap (viewers only).
    tap: Option<Arc<KeyTap>>,
    /// Where rtc last sent a datagram for this peer: the selected ICE pair's remote.
    send_to: Option<SocketAddr>,
}

/// One video stream of a channel: the source (index 0) or a lower rendition, each with
/// its own keyframe group for fast start and its own retransmission buffer.
struct VideoStream {
    name: String,
    gop: GopCache,
    /// Recent video packets, answering every viewer's NACKs.
    rtx: RetransmitBuffer,
}

impl VideoStream {
    fn new(name: &str, gop_max: usize) -> VideoStream {
        VideoStream {
            name: name.to_string(),
            gop: GopCache::new(gop_max),
            rtx: RetransmitBuffer::default(),
        }
    }

    fn clear(&mut self) {
        self.gop.clear();
        self.rtx.clear();
    }
}

struct Channel {
    publisher: Option<PeerKey>,
    /// A server-side source (RTMP, pull, playout) publishing instead of a WebRTC peer.
    local: Option<LocalId>,
    live: bool,
    video_codec: Option<RTCRtpCodec>,
    audio_codec: Option<RTCRtpCodec>,
    video_kind: Option<VideoCodec>,
    /// The source video (0) and the renditions the live source sends beside it.
    streams: Vec<VideoStream>,
    gop_max: usize,
    viewers: FxHashSet<PeerKey>,
    connected_viewers: usize,
    peak: i64,
    last_pli: Option<Instant>,
}

impl Channel {
    fn new(gop_max: usize) -> Channel {
        Channel {
            publisher: None,
            local: None,
            live: false,
            video_codec: None,
            audio_codec: None,
            video_kind: None,
            streams: vec![VideoStream::new(SOURCE_QUALITY, gop_max)],
            gop_max,
            viewers: FxHashSet::default(),
            connected_viewers: 0,
            peak: 0,
            last_pli: None,
        }
    }

    /// What `?quality=` accepts now.
    fn qualities(&self) -> Vec<String> {
        self.streams.iter().map(|s| s.name.clone()).collect()
    }
}

/// The relay engine. Created by [`super::start`].
pub struct Engine {
    socket: UdpSocket,
    local_addr: SocketAddr,
    /// The address our ICE host candidates carry and incoming datagrams are tagged with.
    candidate_addr: SocketAddr,
    advertised: Vec<IpAddr>,
    webrtc: WebRtcConfig,
    relay: RelayConfig,
    audience: AudienceSink,
    commands: mpsc::Receiver<Command>,
    board: Arc<LiveBoard>,
    /// Boxed: a `Peer` is several KB, and a map holding them inline keeps that much for
    /// every empty slot and copies them all when it grows.
    /// Keyed by the engine's own numbers, so Fx hashing (a multiply) is safe and is done
    /// for every viewer of every packet fanned out.
    peers: FxHashMap<PeerKey, Box<Peer>>,
    by_addr: HashMap<SocketAddr, PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    by_resource: HashMap<String, PeerKey>,
    channels: HashMap<ChannelName, Channel>,
    timers: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    next_key: PeerKey,
    locals: HashMap<LocalId, LocalState>,
    /// Packets from every local source, each stream ending with `LocalInput::End`.
    local_inputs: SelectAll<BoxStream<'static, (LocalId, LocalInput)>>,
    outbox: Outbox,
    /// Publisher packets read in this turn of the loop, fanned out together at the top of
    /// the next (before the outbox is sent), so that each viewer's share of a frame is one
    /// run of datagrams that [`send_batch`] can hand the kernel as one segmented send.
    pending_media: Vec<(PeerKey, Vec<(RtpCodecKind, rtp::Packet)>)>,
    /// Whether sends may use UDP segmentation offload (`UDP_SEGMENT`); turned off for
    /// good when the kernel or interface refuses it (`EIO`).
    gso: bool,
    /// Signs the answers to detached viewers' consent checks.
    crypto: Arc<dyn RTCCryptoProvider>,
    /// The DTLS certificate of every peer connection, made once at start (as SFUs do; its
    /// fingerprint is in every answer): left to itself, rtc makes a key pair and a signed
    /// certificate for each connection, a large share of what a join costs here.
    certificate: RTCCertificate,
}

/// Datagrams waiting for the socket, and a buffer reused to marshal each packet.
#[derive(Default)]
struct Outbox {
    datagrams: Vec<(BytesMut, SocketAddr)>,
    scratch: Vec<u8>,
}

fn media_engine() -> Result<MediaEngine, RelayError> {
    let mut engine = MediaEngine::default();
    let video_fb = vec![
        RTCPFeedback {
            typ: "goog-remb".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
    ];
    let video = |mime: &str, fmtp: &str, pt: u8| RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: video_fb.clone(),
        },
        payload_type: pt,
    };
    let codecs = [
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            125,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            102,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
            127,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032",
            123,
        ),
        video("video/VP8", "", 96),
    ];
    let internal = |e: rtc::shared::error::Error| RelayError::Internal(e.to_string());
    for codec in codecs {
        engine
            .register_codec(codec, RtpCodecKind::Video)
            .map_err(internal)?;
    }
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "audio/opus".into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    Ok(engine)
}

/// A self-signed ECDSA P-256 DTLS certificate with a random name (as rtc makes them).
fn new_certificate(crypto: &dyn RTCCryptoProvider) -> Result<RTCCertificate, String> {
    let params = CertificateParams::new(vec![random_token(16)]).map_err(|e| e.to_string())?;
    RTCCertificate::generate(
        crypto.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        params,
    )
    .map_err(|e| e.to_string())
}

/// Whether the kernel knows `UDP_SEGMENT` (Linux 4.18+). An older one would ignore the
/// option on a send and put a whole run of packets in one datagram, so ask first.
#[cfg(target_os = "linux")]
fn segmentation_supported(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for the kernel to write an int and its size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn segmentation_supported(_socket: &UdpSocket) -> bool {
    false
}

/// The DTLS role our answer takes: the client, unless the offer says `setup:active`.
fn answering_dtls_role(offer: &str) -> RTCDtlsRole {
    if offer.lines().any(|l| l.trim() == "a=setup:active") {
        RTCDtlsRole::Server
    } else {
        RTCDtlsRole::Client
    }
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Counts the audio/video sections of an offer that send media to us.
fn sending_sections(sdp: &str) -> usize {
    let mut count = 0;
    let mut in_media = false;
    let mut sends = true;
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            if in_media && sends {
                count += 1;
            }
            in_media = rest.starts_with("audio") || rest.starts_with("video");
            sends = true;
        } else if line == "a=recvonly" || line == "a=inactive" {
            sends = false;
        }
    }
    if in_media && sends {
        count += 1;
    }
    count
}

fn check_offer_text(sdp: &str) -> Result<(), RelayError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(RelayError::BadOffer(
            "the body is not an SDP offer (it must start with v=0)".into(),
        ));
    }
    if !sdp
        .lines()
        .any(|l| l.starts_with("m=audio") || l.starts_with("m=video"))
    {
        return Err(RelayError::BadOffer(
            "the offer has no audio or video section".into(),
        ));
    }
    if !sdp.contains("a=ice-ufrag:") || !sdp.contains("a=fingerprint:") {
        return Err(RelayError::BadOffer(
            "the offer lacks ICE credentials or a DTLS fingerprint".into(),
        ));
    }
    for line in sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"))
    {
        let (algorithm, value) = line.split_once(' ').unwrap_or((line, ""));
        let bytes = match algorithm.to_ascii_lowercase().as_str() {
            "sha-1" => 20,
            "sha-224" => 28,
            "sha-256" => 32,
            "sha-384" => 48,
            "sha-512" => 64,
            _ => 0,
        };
        let well_formed = value
            .trim()
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
            && value.trim().split(':').count() == bytes;
        if bytes == 0 || !well_formed {
            return Err(RelayError::BadOffer(format!(
                "malformed DTLS fingerprint {line:?}: expected e.g. sha-256 followed by 32 hex bytes"
            )));
        }
    }
    Ok(())
}

impl Engine {
    pub(super) fn bind(
        webrtc: &WebRtcConfig,
        relay: &RelayConfig,
        audience: AudienceSink,
        commands: mpsc::Receiver<Command>,
        board: Arc<LiveBoard>,
    ) -> std::io::Result<Engine> {
        use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
        let domain = if webrtc.udp_bind.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(SockProtocol::UDP))?;
        // Large buffers: one socket carries every viewer's media.
        let _ = socket.set_send_buffer_size(8 << 20);
        let _ = socket.set_recv_buffer_size(8 << 20);
        socket.set_nonblocking(true)?;
        socket.bind(&webrtc.udp_bind.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local_addr = socket.local_addr()?;
        let advertised = webrtc.advertised_ips.clone();
        let candidate_ip = advertised
            .first()
            .copied()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        info!(%local_addr, ?advertised, "media UDP socket bound");
        let crypto =
            rtc::crypto::default_provider().map_err(|e| std::io::Error::other(e.to_string()))?;
        let certificate =
            new_certificate(crypto.as_ref()).map_err(|e| std::io::Error::other(e.to_string()))?;
        let gso = webrtc.udp_segmentation && segmentation_supported(&socket);
        if webrtc.udp_segmentation && !gso {
            info!("this kernel has no UDP segmentation (Linux 4.18+): one send per datagram");
        }
        Ok(Engine {
            crypto,
            certificate,
            socket,
            local_addr,
            candidate_addr: SocketAddr::new(
                candidate_ip,
                webrtc.advertised_port.unwrap_or(local_addr.port()),
            ),
            advertised,
            webrtc: webrtc.clone(),
            relay: relay.clone(),
            audience,
            commands,
            board,
            peers: FxHashMap::default(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_resource: HashMap::new(),
            channels: HashMap::new(),
            timers: BinaryHeap::new(),
            next_key: 1,
            locals: HashMap::new(),
            local_inputs: SelectAll::new(),
            outbox: Outbox::default(),
            pending_media: Vec::new(),
            gso,
        })
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until a `Shutdown` command or until every handle is dropped.
    pub async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            self.audience.flush();
            self.flush_media();
            self.flush_outbox().await;
            let deadline = self
                .timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.handle_command(command),
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, from)) => self.handle_datagram(&buf[..n], from),
                        Err(err) => debug!(?err, "media socket receive error"),
                    }
                    // Drain what else is waiting before servicing timers.
                    for _ in 0..64 {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.handle_datagram(&buf[..n], from),
                            Err(_) => break,
                        }
                    }
                }
                Some((id, input)) = self.local_inputs.next(), if !self.local_inputs.is_empty() => {
                    self.handle_local(id, input);
                    // Take what else is queued without waiting.
                    for _ in 0..64 {
                        match self.local_inputs.next().now_or_never() {
                            Some(Some((id, input))) => self.handle_local(id, input),
                            _ => break,
                        }
                    }
                }
                _ = sleep => {}
            }
            self.run_timers();
        }
    }

    async fn shutdown(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.remove_peer(key, "server shutting down");
        }
        let locals: Vec<LocalId> = self.locals.keys().copied().collect();
        for id in locals {
            self.end_local(id, "server shutting down");
        }
        self.audience.flush();
        self.flush_outbox().await;
    }

    /// Fans out the publisher packets read since the last turn of the loop.
    fn flush_media(&mut self) {
        for (publisher, packets) in std::mem::take(&mut self.pending_media) {
            self.fan_out(publisher, packets);
        }
    }

    async fn flush_outbox(&mut self) {
        if self.outbox.datagrams.is_empty() {
            return;
        }
        let mut sent = 0u64;
        let mut dropped = 0u64;
        let mut segmented = 0u64;
        let datagrams = std::mem::take(&mut self.outbox.datagrams);
        let mut rest: &[(BytesMut, SocketAddr)] = &datagrams;
        while !rest.is_empty() {
            let attempt = |gso: bool| {
                self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                    send_batch(&self.socket, rest, gso)
                })
            };
            let mut result = attempt(self.gso);
            if let Err(err) = &result
                && self.gso
                && err.kind() != std::io::ErrorKind::WouldBlock
            {
                // The same datagrams one by one: a kernel or interface without UDP
                // segmentation (no checksum offload) says EIO, and then for good.
                if err.raw_os_error() == Some(libc::EIO) {
                    warn!(%err, "UDP segmentation refused; sending datagrams one by one");
                    self.gso = false;
                }
                result = attempt(false);
            }
            match result {
                Ok((n, in_runs)) => {
                    sent += n as u64;
                    segmented += in_runs as u64;
                    rest = &rest[n..];
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    // The shared socket buffer is full: wait briefly for room, then
                    // drop rather than stall every other viewer.
                    let ready =
                        tokio::time::timeout(Duration::from_millis(20), self.socket.writable())
                            .await;
                    if !matches!(ready, Ok(Ok(()))) {
                        dropped += 1;
                        rest = &rest[1..];
                    }
                }
                Err(_) => {
                    // Unreachable peers (ICMP errors) are handled by ICE timeouts.
                    dropped += 1;
                    rest = &rest[1..];
                }
            }
        }
        RelayCounters::add(&self.board.counters.datagrams_sent, sent);
        RelayCounters::add(&self.board.counters.datagrams_dropped, dropped);
        RelayCounters::add(&self.board.counters.datagrams_segmented, segmented);
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish {
                channel,
                offer,
                session,
                title,
                started_at_ms,
                reply,
            } => {
                let result = self.accept_publisher(channel, offer, session, title, started_at_ms);
                let _ = reply.send(result);
            }
            Command::View {
                channel,
                offer,
                viewer,
                reply,
            } => {
                let result = self.accept_viewer(channel, offer, viewer);
                let _ = reply.send(result);
            }
            Command::Delete {
                channel,
                resource,
                publisher,
                reply,
            } => {
                let found = self.by_resource.get(&resource).copied().filter(|key| {
                    self.peers.get(key).is_some_and(|p| {
                        p.channel == channel && matches!(p.role, Role::Publisher(_)) == publisher
                    })
                });
                let result = match found {
                    Some(key) => {
                        self.remove_peer(key, "deleted by client");
                        Ok(())
                    }
                    None => Err(RelayError::UnknownResource(resource)),
                };
                let _ = reply.send(result);
            }
            Command::PublishLocal {
                channel,
                session,
                tracks,
                reply,
            } => {
                let result = self.accept_local(channel, session, tracks);
                let _ = reply.send(result);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// A peer connection; for a viewer also the key tap its forwarded media is protected
    /// with.
    fn new_peer_connection(
        &self,
        ufrag: &str,
        pwd: &str,
        viewer: bool,
        offer: &str,
    ) -> Result<(Box<RTCPeerConnection>, Option<Arc<KeyTap>>), RelayError> {
        let internal = |e: rtc::shared::error::Error| RelayError::Internal(e.to_string());
        let mut media = media_engine()?;
        let mut settings = SettingEngineBuilder::new();
        let mut tap = None;
        let registry = if viewer {
            // A viewer only receives: its media goes out on the engine's own SRTP path and
            // sender reports are built by the engine; its NACKs are answered from the
            // channel's retransmission buffer. The chain only hands its RTCP to us.
            let key_tap = KeyTap::new().map_err(|e| RelayError::Internal(e.to_string()))?;
            settings = settings
                .with_crypto_provider(key_tap.clone())
                .with_srtp_protection_profiles(super::srtp::viewer_profiles());
            tap = Some(key_tap);
            Registry::new().with(Slot::from(14_000), DeliverFeedback::default())
        } else {
            register_default_interceptors(Registry::new(), &mut media).map_err(internal)?
        };
        // Answer `setup:active` (RFC 5763 §5: the answerer should be the DTLS client): the
        // handshake then starts from here the moment ICE is up (see `service`), instead of
        // waiting for the offerer's ClientHello, which a webrtc-rs offerer sends only on its
        // next ICE tick (up to 200 ms later). An offerer that insists on being the client
        // (`setup:active`) gets `passive`: rtc would answer `active` to it too, and two DTLS
        // clients never connect.
        let settings = settings
            .with_answering_dtls_role(answering_dtls_role(offer))
            .with_lite(self.webrtc.ice_lite)
            .with_ice_credentials(ufrag.to_string(), pwd.to_string())
            .with_ice_timeouts(
                Some(Duration::from_secs(self.webrtc.disconnected_timeout_secs)),
                Some(Duration::from_secs(self.webrtc.failed_timeout_secs)),
                Some(Duration::from_secs(2)),
            )
            .build();
        RTCPeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_certificates(vec![self.certificate()?])
                    .build(),
            )
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map(|pc| (Box::new(pc), tap))
            .map_err(internal)
    }

    /// The shared DTLS certificate, or a new one when it expires within a day (rtc dates
    /// its certificates two days ahead on 32-bit ARM).
    fn certificate(&self) -> Result<RTCCertificate, RelayError> {
        let day = Duration::from_secs(24 * 3600);
        if self.certificate.expires > std::time::SystemTime::now() + day {
            return Ok(self.certificate.clone());
        }
        new_certificate(self.crypto.as_ref()).map_err(RelayError::Internal)
    }

    /// Applies the offer, adds our host candidates and returns the answer SDP.
    fn negotiate(&self, pc: &mut RTCPeerConnection, offer: String) -> Result<String, RelayError> {
        let offer = RTCSessionDescription::offer(offer)
            .map_err(|e| RelayError::BadOffer(format!("cannot parse the SDP: {e}")))?;
        pc.set_remote_description(Instant::now(), offer)
            .map_err(|e| RelayError::BadOffer(format!("the offer cannot be applied: {e}")))?;
        for ip in &self.advertised {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: ip.to_string(),
                    port: self.candidate_addr.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host()
            .map_err(|e| RelayError::Internal(e.to_string()))?;
            let init = RTCIceCandidate::from(&candidate)
                .to_json()
                .map_err(|e| RelayError::Internal(e.to_string()))?;
            pc.add_local_candidate(init)
                .map_err(|e| RelayError::Internal(e.to_string()))?;
        }
        let answer = pc
            .create_answer(None)
            .map_err(|e| RelayError::BadOffer(format!("no answer possible for this offer: {e}")))?;
        pc.set_local_description(Instant::now(), answer)
            .map_err(|e| RelayError::Internal(e.to_string()))?;
        let answer = pc
            .local_description()
            .ok_or_else(|| RelayError::Internal("no local description".into()))?;
        Ok(answer.sdp)
    }

    fn insert_peer(&mut self, peer: Peer) -> PeerKey {
        let key = self.next_key;
        self.next_key += 1;
        self.by_ufrag.insert(peer.ufrag.clone(), key);
        self.by_resource.insert(peer.resource.clone(), key);
        self.peers.insert(key, Box::new(peer));
        self.service(key);
        key
    }

    fn accept_publisher(
        &mut self,
        channel: ChannelName,
        offer: String,
        session: SessionId,
        title: String,
        started_at_ms: i64,
    ) -> Result<Accepted, RelayError> {
        check_offer_text(&offer)?;
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.publisher.is_some() || c.local.is_some())
        {
            return Err(RelayError::Busy(channel.to_string()));
        }
        let expected_tracks = sending_sections(&offer);
        if expected_tracks == 0 {
            return Err(RelayError::BadOffer(
                "the offer sends no audio or video (all sections are recvonly or inactive)".into(),
            ));
        }
        let ufrag = random_token(16);
        let (mut pc, _) = self.new_peer_connection(&ufrag, &random_token(32), false, &offer)?;
        let answer = self.negotiate(&mut pc, offer)?;
        if !answer.lines().any(|l| {
            (l.starts_with("m=audio") || l.starts_with("m=video"))
                && !l.starts_with("m=audio 0")
                && !l.starts_with("m=video 0")
        }) {
            return Err(RelayError::BadOffer(
                "no offered codec is supported; publish H.264 (packetization-mode=1), VP8 or Opus"
                    .into(),
            ));
        }
        let resource = random_token(24);
        info!(%channel, %session, %resource, "publisher accepted");
        let peer = Peer {
            pc: Some(pc),
            channel: channel.clone(),
            resource: resource.clone(),
            ufrag,
            role: Role::Publisher(PublisherState {
                session,
                title,
                started_at_ms,
                expected_tracks,
                tracks: HashMap::new(),
            }),
            remotes: Vec::new(),
            created: Instant::now(),
            scheduled: None,
            closing: false,
            ever_connected: false,
            tap: None,
            send_to: None,
        };
        let key = self.insert_peer(peer);
        let max = self.relay.gop_cache_max_packets;
        let ch = self
            .channels
            .entry(channel)
            .or_insert_with(|| Channel::new(max));
        ch.publisher = Some(key);
        ch.peak = ch.connected_viewers as i64;
        Ok(Accepted { resource, answer })
    }

    fn accept_viewer(
        &mut self,
        channel: ChannelName,
        offer: String,
        info: ViewerInfo,
    ) -> Result<Accepted, RelayError> {
        let (video_codec, audio_codec, count, rendition) = match self.channels.get(&channel) {
            Some(ch) if ch.live => {
                let rendition = match info.quality.as_deref() {
                    None | Some("") => 0,
                    Some(asked) => {
                        ch.streams
                            .iter()
                            .position(|s| s.name == asked)
                            .ok_or_else(|| RelayError::UnknownQuality {
                                channel: channel.to_string(),
                                asked: asked.to_string(),
                                offered: ch.qualities(),
                            })?
                    }
                };
                (
                    ch.video_codec.clone(),
                    ch.audio_codec.clone(),
                    ch.viewers.len(),
                    rendition,
                )
            }
            _ => return Err(RelayError::NotLive(channel.to_string())),
        };
        check_offer_text(&offer)?;
        if count >= self.relay.max_viewers_per_channel {
            return Err(RelayError::Full(channel.to_string(), count));
        }
        let ufrag = random_token(16);
        let pwd = random_token(32);
        let (mut pc, tap) = self.new_peer_connection(&ufrag, &pwd, true, &offer)?;
        let stream_id = format!("feiyan-{channel}");
        let mut add = |kind: RtpCodecKind,
                       codec: &RTCRtpCodec|
         -> Result<(RTCRtpSenderId, u32), RelayError> {
            let ssrc = rand::random::<u32>();
            let label = if kind == RtpCodecKind::Video {
                "video"
            } else {
                "audio"
            };
            let track = MediaStreamTrack::new(
                stream_id.clone(),
                format!("{label}-{ssrc}"),
                label.to_string(),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec.clone(),
                    ..Default::default()
                }],
            );
            let id = pc
                .add_track(track)
                .map_err(|e| RelayError::Internal(e.to_string()))?;
            Ok((id, ssrc))
        };
        let video = video_codec
            .as_ref()
            .map(|c| add(RtpCodecKind::Video, c).map(|s| (s, c.clone())))
            .transpose()?;
        let audio = audio_codec
            .as_ref()
            .map(|c| add(RtpCodecKind::Audio, c).map(|s| (s, c.clone())))
            .transpose()?;
        let answer = self.negotiate(&mut pc, offer)?;
        let mut out_track =
            |slot: Option<((RTCRtpSenderId, u32), RTCRtpCodec)>| -> Option<TrackOut> {
                let ((sender_id, ssrc), codec) = slot?;
                let mut sender = pc.rtp_sender(sender_id)?;
                let params = sender.get_parameters();
                let pt =
                    params
                        .rtp_parameters
                        .codecs
                        .iter()
                        .find(|c| {
                            c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type)
                                && c.rtp_codec.sdp_fmtp_line == codec.sdp_fmtp_line
                        })
                        .or_else(|| {
                            params.rtp_parameters.codecs.iter().find(|c| {
                                c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type)
                            })
                        })?
                        .payload_type;
                Some(TrackOut {
                    sender_id,
                    rewriter: Rewriter::new(ssrc, pt, codec.clock_rate),
                    rollover: Rollover::default(),
                    packets: 0,
                    octets: 0,
                })
            };
        let video_out = out_track(video.clone());
        let audio_out = out_track(audio.clone());
        if video_out.is_none() && audio_out.is_none() {
            let wanted: Vec<String> = video
                .iter()
                .chain(audio.iter())
                .map(|(_, c)| c.mime_type.clone())
                .collect();
            return Err(RelayError::BadOffer(format!(
                "the offer accepts none of this channel's codecs ({}); offer recvonly audio/video with them",
                wanted.join(", ")
            )));
        }
        let resource = random_token(24);
        debug!(%channel, %resource, "viewer accepted");
        let peer = Peer {
            pc: Some(pc),
            channel: channel.clone(),
            resource: resource.clone(),
            ufrag,
            role: Role::Viewer(Box::new(ViewerState {
                info,
                video: video_out,
                audio: audio_out,
                connected: false,
                replay_at: None,
                health: ViewerHealth::default(),
                skip_video: false,
                row: None,
                rendition,
                srtp: None,
                gcm: None,
                next_report: None,
                pwd,
                detach_at: None,
                rtcp_seen: false,
                detached: None,
            })),
            remotes: Vec::new(),
            created: Instant::now(),
            scheduled: None,
            closing: false,
            ever_connected: false,
            tap,
            send_to: None,
        };
        let key = self.insert_peer(peer);
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.viewers.insert(key);
        }
        Ok(Accepted { resource, answer })
    }

    fn accept_local(
        &mut self,
        channel: ChannelName,
        session: SessionInfo,
        tracks: LocalTracks,
    ) -> Result<LocalPublisher, RelayError> {
        if tracks.video.is_none() && tracks.audio.is_none() {
            return Err(RelayError::BadOffer("a source needs audio or video".into()));
        }
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.publisher.is_some() || c.local.is_some())
        {
            return Err(RelayError::Busy(channel.to_string()));
        }
        let id = self.next_key;
        self.next_key += 1;
        let (tx, rx) = mpsc::channel::<LocalInput>(1024);
        let keyframe_wanted = Arc::new(AtomicBool::new(false));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|input| (input, rx))
        })
        .chain(futures::stream::once(async { LocalInput::End }))
        .map(move |input| (id, input))
        .boxed();
        self.local_inputs.push(stream);
        self.locals.insert(
            id,
            LocalState {
                channel: channel.clone(),
                session: session.clone(),
                keyframe_wanted: keyframe_wanted.clone(),
            },
        );
        let max = self.relay.gop_cache_max_packets;
        let ch = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| Channel::new(max));
        ch.local = Some(id);
        ch.peak = ch.connected_viewers as i64;
        info!(%channel, session = %session.id, "local source publishing");
        self.go_live(
            &channel,
            tracks.video,
            tracks.audio,
            tracks.renditions,
            session,
        );
        Ok(LocalPublisher {
            tx,
            keyframe_wanted,
        })
    }

    fn handle_local(&mut self, id: LocalId, input: LocalInput) {
        match input {
            LocalInput::Packet(kind, rendition, packet) => {
                let Some(channel) = self.locals.get(&id).map(|l| l.channel.clone()) else {
                    return;
                };
                let kind = match kind {
                    MediaKind::Audio => RtpCodecKind::Audio,
                    MediaKind::Video => RtpCodecKind::Video,
                };
                self.fan_out_channel(&channel, usize::from(rendition), vec![(kind, packet)]);
            }
            LocalInput::End => self.end_local(id, "source ended"),
        }
    }

    fn end_local(&mut self, id: LocalId, why: &str) {
        let Some(local) = self.locals.remove(&id) else {
            return;
        };
        info!(channel = %local.channel, session = %local.session.id, why, "local source ended");
        let ours = self
            .channels
            .get_mut(&local.channel)
            .filter(|ch| ch.local == Some(id))
            .map(|ch| ch.local = None)
            .is_some();
        self.end_session(&local.channel, local.session.id, ours);
        let idle = self
            .channels
            .get(&local.channel)
            .is_some_and(|c| c.publisher.is_none() && c.local.is_none() && c.viewers.is_empty());
        if idle {
            self.channels.remove(&local.channel);
            self.board.set(&local.channel, None);
        }
    }

    /// Ends a live session: its row, and the attendance rows of its viewers, who stay
    /// connected (a publisher may come back) but stop attending this session.
    fn end_session(&mut self, channel: &ChannelName, session: SessionId, was_live_source: bool) {
        let at_ms = now_ms();
        self.audience
            .push(AudienceEvent::SessionEnded { session, at_ms });
        let viewers: Vec<PeerKey> = match self.channels.get_mut(channel) {
            Some(ch) if was_live_source => {
                ch.live = false;
                ch.streams.iter_mut().for_each(VideoStream::clear);
                ch.peak = 0;
                ch.last_pli = None;
                ch.viewers.iter().copied().collect()
            }
            _ => Vec::new(),
        };
        for vkey in viewers {
            if let Some(Peer {
                role: Role::Viewer(v),
                ..
            }) = self.peers.get_mut(&vkey).map(Box::as_mut)
            {
                if let Some(id) = v.row.take() {
                    self.audience.push(AudienceEvent::ViewerLeft { id, at_ms });
                }
                for track in [&mut v.video, &mut v.audio].into_iter().flatten() {
                    track.rewriter.resync();
                }
            }
        }
        if was_live_source {
            self.publish_status(channel, None);
        }
    }

    fn handle_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let mut key = self.by_addr.get(&from).copied();
        if stun::is_stun(data)
            && let Some(ufrag) = stun::local_ufrag(data)
            && let Some(&owner) = self.by_ufrag.get(ufrag)
            && key != Some(owner)
        {
            key = Some(owner);
            self.by_addr.insert(from, owner);
            if let Some(peer) = self.peers.get_mut(&owner) {
                peer.remotes.push(from);
            }
        }
        let Some(key) = key else {
            RelayCounters::add(&self.board.counters.datagrams_unrouted, 1);
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(pc) = peer.pc.as_deref_mut() else {
            self.detached_datagram(key, data, from);
            return;
        };
        let message = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.candidate_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(err) = pc.handle_read(message) {
            debug!(?err, channel = %peer.channel, "peer rejected a datagram");
        }
        self.service(key);
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        let consent_timeout = self.consent_timeout();
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded entry
            }
            peer.scheduled = None;
            if let Some(pc) = peer.pc.as_deref_mut()
                && let Err(err) = pc.handle_timeout(now)
            {
                debug!(?err, "peer timeout handling failed");
            }
            let (replay_due, detach_due, silent) = match &peer.role {
                Role::Viewer(v) => (
                    v.replay_at.is_some_and(|t| t <= now),
                    v.detach_at.is_some_and(|t| t <= now),
                    v.detached
                        .as_ref()
                        .is_some_and(|d| now.duration_since(d.heard) > consent_timeout),
                ),
                Role::Publisher(_) => (false, false, false),
            };
            let never_connected =
                !peer.ever_connected && now.duration_since(peer.created) > CONNECT_TIMEOUT;
            if replay_due {
                self.replay_keyframe_group(key);
            }
            if never_connected {
                self.remove_peer(key, "never connected");
                continue;
            }
            if silent {
                self.remove_peer(key, "no consent checks or RTCP from the viewer");
                continue;
            }
            if detach_due {
                self.detach(key);
            }
            self.service(key);
        }
    }

    /// Drains a peer's outputs and reschedules its timer.
    fn service(&mut self, key: PeerKey) {
        let mut rtp_in: Vec<(RtpCodecKind, rtp::Packet)> = Vec::new();
        let mut feedback = Feedback::default();
        let mut state_change: Option<RTCPeerConnectionState> = None;
        let mut opened: Vec<TrackIn> = Vec::new();
        {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(pc) = peer.pc.as_deref_mut() else {
                self.drain_writes(key);
                return;
            };
            let mut ice_up = false;
            while let Some(event) = pc.poll_event() {
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                        debug!(channel = %peer.channel, %state, "peer state");
                        state_change = Some(state);
                    }
                    RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                        RTCIceConnectionState::Connected,
                    ) => ice_up = true,
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        if let Some(receiver) = pc.rtp_receiver(init.receiver_id) {
                            let track = receiver.track();
                            let kind = track.kind();
                            let codec = track.codec(init.ssrc).cloned();
                            if let Some(codec) = codec {
                                opened.push(TrackIn {
                                    kind,
                                    codec,
                                    receiver_id: init.receiver_id,
                                    media_ssrc: init.ssrc,
                                });
                            }
                        }
                        let _ = init.track_id;
                    }
                    _ => {}
                }
            }
            if ice_up {
                // The DTLS client's ClientHello is queued when the selected pair's event
                // passes through, but rtc hands it out only from a timeout: run one now.
                // The STUN answer that completes the peer's ICE goes out first: a peer
                // drops DTLS that arrives before its ICE is connected.
                take_writes(peer, &mut self.outbox);
                if let Some(pc) = peer.pc.as_deref_mut()
                    && let Err(err) = pc.handle_timeout(Instant::now())
                {
                    debug!(?err, "peer timeout handling failed");
                }
            }
            let Some(pc) = peer.pc.as_deref_mut() else {
                return;
            };
            while let Some(message) = pc.poll_read() {
                match message.message {
                    RTCMessage::RtpPacket(track_id, packet) => {
                        if let Role::Publisher(p) = &peer.role {
                            if let Some(t) = p.tracks.get(&track_id) {
                                rtp_in.push((t.kind, packet));
                            } else if let Some(t) =
                                opened.iter().find(|t| t.media_ssrc == packet.header.ssrc)
                            {
                                rtp_in.push((t.kind, packet));
                            }
                        }
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        if let Role::Viewer(v) = &mut peer.role {
                            v.rtcp_seen = true;
                            feedback.read(v, &packets);
                        }
                    }
                    _ => {}
                }
            }
        }
        if !opened.is_empty() {
            self.tracks_opened(key, opened);
        }
        if !rtp_in.is_empty() {
            match self.pending_media.last_mut() {
                Some((last, packets)) if *last == key => packets.extend(rtp_in),
                _ => self.pending_media.push((key, rtp_in)),
            }
        }
        if !self.apply_feedback(key, feedback) {
            return;
        }
        match state_change {
            Some(RTCPeerConnectionState::Connected) => self.peer_connected(key),
            Some(RTCPeerConnectionState::Failed) | Some(RTCPeerConnectionState::Closed) => {
                self.remove_peer(key, "connection failed or closed");
                return;
            }
            _ => {}
        }
        self.drain_writes(key);
    }

    /// Answers a viewer's NACK from the channel's retransmission buffer.
    fn retransmit(&mut self, key: PeerKey, seqs: &[u16]) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(ch) = self.channels.get(&peer.channel) else {
            return;
        };
        let Role::Viewer(v) = &mut peer.role else {
            return;
        };
        let Some(stream) = ch.streams.get(v.rendition) else {
            return;
        };
        let Some(track) = v.video.as_ref() else {
            return;
        };
        let packets: Vec<rtp::Packet> = seqs
            .iter()
            .filter_map(|&seq| {
                let (ssrc, source_seq) = track.rewriter.source_seq(seq)?;
                stream.rtx.get(ssrc, source_seq).cloned()
            })
            .collect();
        let now = Instant::now();
        let mut resent = 0u64;
        for packet in &packets {
            if write_to_viewer(peer, RtpCodecKind::Video, packet, now, &mut self.outbox) {
                resent += 1;
            }
        }
        RelayCounters::add(&self.board.counters.retransmissions, resent);
    }

    /// Applies a viewer's reported loss; returns false when the viewer was dropped.
    fn viewer_health(&mut self, key: PeerKey, fraction_lost: u8) -> bool {
        let Some(Peer {
            role: Role::Viewer(v),
            channel,
            ..
        }) = self.peers.get_mut(&key).map(Box::as_mut)
        else {
            return true;
        };
        match v.health.on_report(fraction_lost, Instant::now()) {
            HealthAction::Keep => true,
            HealthAction::SkipToKeyframe => {
                debug!(%channel, fraction_lost, "lossy viewer skips to the next keyframe");
                v.skip_video = true;
                RelayCounters::add(&self.board.counters.viewers_skipped, 1);
                let channel = channel.clone();
                self.request_keyframe(&channel);
                true
            }
            HealthAction::Drop => {
                RelayCounters::add(&self.board.counters.viewers_dropped, 1);
                self.remove_peer(key, "link lost too much for too long");
                false
            }
        }
    }

    fn drain_writes(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        take_writes(peer, &mut self.outbox);
        let now = Instant::now();
        let mut next = match peer.pc.as_deref_mut() {
            Some(pc) => pc
                .poll_timeout()
                .unwrap_or(now + MAX_TIMER)
                .min(now + MAX_TIMER),
            None => now + DETACHED_TICK,
        };
        if let Role::Viewer(v) = &peer.role {
            for at in [v.replay_at, v.detach_at].into_iter().flatten() {
                next = next.min(at);
            }
        }
        if peer.scheduled.is_none_or(|s| next < s) {
            peer.scheduled = Some(next);
            self.timers.push(Reverse((next, key)));
        }
    }

    fn tracks_opened(&mut self, key: PeerKey, opened: Vec<TrackIn>) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Role::Publisher(state) = &mut peer.role else {
            return;
        };
        let channel = peer.channel.clone();
        for track in opened {
            info!(%channel, mime = %track.codec.mime_type, ssrc = track.media_ssrc, "publisher track open");
            let track_id = peer
                .pc
                .as_deref_mut()
                .and_then(|pc| pc.rtp_receiver(track.receiver_id))
                .map(|r| r.track().track_id().clone())
                .unwrap_or_default();
            state.tracks.insert(track_id, track);
        }
        if state.tracks.len() < state.expected_tracks {
            return;
        }
        let video = state
            .tracks
            .values()
            .find(|t| t.kind == RtpCodecKind::Video)
            .map(|t| t.codec.clone());
        let audio = state
            .tracks
            .values()
            .find(|t| t.kind == RtpCodecKind::Audio)
            .map(|t| t.codec.clone());
        let session = SessionInfo {
            id: state.session,
            title: state.title.clone(),
            started_at_ms: state.started_at_ms,
        };
        self.go_live(&channel, video, audio, Vec::new(), session);
    }

    /// Marks a channel live with its source's codecs; connected viewers (a publisher
    /// change) start attending the new session.
    fn go_live(
        &mut self,
        channel: &ChannelName,
        video: Option<RTCRtpCodec>,
        audio: Option<RTCRtpCodec>,
        renditions: Vec<String>,
        session: SessionInfo,
    ) {
        let channel = channel.clone();
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        if ch.live {
            return;
        }
        // Viewers that stayed connected keep their negotiated codec; warn when a new
        // publisher sends a different one (those viewers will not decode it).
        if let (Some(old), Some(new)) = (&ch.video_codec, &video)
            && !old.mime_type.eq_ignore_ascii_case(&new.mime_type)
            && !ch.viewers.is_empty()
        {
            warn!(%channel, old = %old.mime_type, new = %new.mime_type, "publisher changed video codec; connected viewers must reconnect");
        }
        ch.video_kind = video.as_ref().map(|c| VideoCodec::from_mime(&c.mime_type));
        ch.video_codec = video;
        ch.audio_codec = audio;
        ch.live = true;
        ch.streams.truncate(1);
        ch.streams[0].clear();
        let gop_max = ch.gop_max;
        ch.streams.extend(
            renditions
                .iter()
                .map(|name| VideoStream::new(name, gop_max)),
        );
        let streams = ch.streams.len();
        info!(%channel, session = %session.id, ?renditions, "channel live");
        // Connected viewers (publisher switch) now watch the new session; a viewer of a
        // rendition the new source does not send falls back to the source video.
        let viewers: Vec<PeerKey> = ch.viewers.iter().copied().collect();
        for vkey in viewers {
            if let Some(Peer {
                role: Role::Viewer(v),
                ..
            }) = self.peers.get_mut(&vkey).map(Box::as_mut)
                && v.rendition >= streams
            {
                v.rendition = 0;
                if let Some(track) = v.video.as_mut() {
                    track.rewriter.resync();
                }
            }
            self.open_viewer_row(vkey);
        }
        self.publish_status(
            &channel,
            Some((session.id, session.title, session.started_at_ms)),
        );
        self.request_keyframe(&channel);
    }

    fn session_of(&self, channel: &ChannelName) -> Option<(SessionId, String, i64)> {
        let ch = self.channels.get(channel)?;
        if !ch.live {
            return None;
        }
        if let Some(local) = ch.local.and_then(|id| self.locals.get(&id)) {
            let s = &local.session;
            return Some((s.id, s.title.clone(), s.started_at_ms));
        }
        let publisher = self.peers.get(&ch.publisher?)?;
        match &publisher.role {
            Role::Publisher(p) => Some((p.session, p.title.clone(), p.started_at_ms)),
            Role::Viewer(_) => None,
        }
    }

    fn publish_status(&self, channel: &ChannelName, session: Option<(SessionId, String, i64)>) {
        let (viewers, qualities) = self
            .channels
            .get(channel)
            .map(|c| (c.connected_viewers, c.qualities()))
            .unwrap_or_default();
        let status = match session {
            Some((session, title, started_at_ms)) => ChannelStatus {
                live: true,
                session_id: Some(session),
                title,
                started_at_ms,
                viewers,
                qualities,
            },
            None => ChannelStatus {
                live: false,
                session_id: None,
                title: String::new(),
                started_at_ms: 0,
                viewers,
                qualities: Vec::new(),
            },
        };
        self.board.set(channel, Some(status));
    }

    /// Opens an attendance row for a connected viewer when its channel has a live session.
    fn open_viewer_row(&mut self, vkey: PeerKey) {
        let Some(channel) = self.peers.get(&vkey).map(|p| p.channel.clone()) else {
            return;
        };
        let Some((session, _, _)) = self.session_of(&channel) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&vkey) else {
            return;
        };
        let Role::Viewer(v) = &mut peer.role else {
            return;
        };
        if !v.connected || v.row.is_some() {
            return;
        }
        let id = self.audience.viewer_id();
        v.row = Some(id);
        self.audience.push(AudienceEvent::ViewerJoined {
            id,
            session,
            at_ms: now_ms(),
            terminal: v.info.terminal,
            viewer_key: v.info.viewer_key.clone(),
            client_hash: v.info.client_hash.clone(),
        });
        if let Some(ch) = self.channels.get_mut(&channel) {
            let now_watching = ch.connected_viewers as i64;
            if now_watching > ch.peak {
                ch.peak = now_watching;
                self.audience.push(AudienceEvent::Peak {
                    session,
                    peak: now_watching,
                });
            }
        }
    }

    fn peer_connected(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.ever_connected = true;
        let channel = peer.channel.clone();
        let Role::Viewer(v) = &mut peer.role else {
            info!(%channel, "publisher connected");
            return;
        };
        if v.connected {
            return;
        }
        v.connected = true;
        v.srtp = peer
            .tap
            .as_ref()
            .and_then(|tap| tap.local_context())
            .map(Box::new);
        v.gcm = peer.tap.as_ref().and_then(|tap| tap.local_gcm());
        if v.srtp.is_none() {
            warn!(%channel, "no SRTP keys seen for a viewer; its media goes through rtc's pipeline");
        }
        if let Some(to) = selected_remote(peer) {
            peer.send_to = Some(to);
        }
        // Our own answer says which side we are: `passive` only when the viewer offered
        // `setup:active` and so finishes its handshake after us.
        let engine_is_dtls_server = peer
            .pc
            .as_deref()
            .and_then(|pc| pc.local_description())
            .is_some_and(|d| d.sdp.contains("a=setup:passive"));
        let replay_delay = if engine_is_dtls_server {
            REPLAY_DELAY
        } else {
            Duration::ZERO
        };
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.connected_viewers += 1;
        }
        self.open_viewer_row(key);
        let session = self.session_of(&channel);
        self.publish_status(&channel, session);
        // Fast start: the latest keyframe group is replayed shortly (see `replay_at`).
        if let Some(Peer {
            role: Role::Viewer(v),
            ..
        }) = self.peers.get_mut(&key).map(Box::as_mut)
        {
            v.replay_at = Some(Instant::now() + replay_delay);
            if self.webrtc.ice_lite {
                v.detach_at = Some(Instant::now() + DETACH_AFTER);
            }
        }
    }

    /// Sends the channel's cached keyframe group to one viewer so its first picture is
    /// whole; live video to it starts after this.
    fn replay_keyframe_group(&mut self, key: PeerKey) {
        let Some(channel) = self.peers.get(&key).map(|p| p.channel.clone()) else {
            return;
        };
        let rendition = match self.peers.get(&key).map(|p| &p.role) {
            Some(Role::Viewer(v)) => v.rendition,
            _ => 0,
        };
        let cached: Vec<rtp::Packet> = self
            .channels
            .get(&channel)
            .and_then(|c| c.streams.get(rendition))
            .map(|s| s.gop.packets().to_vec())
            .unwrap_or_default();
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let Role::Viewer(v) = &mut peer.role {
            v.replay_at = None;
        }
        if cached.is_empty() {
            self.request_keyframe(&channel);
            return;
        }
        let now = Instant::now();
        for packet in &cached {
            write_to_viewer(peer, RtpCodecKind::Video, packet, now, &mut self.outbox);
        }
        RelayCounters::add(&self.board.counters.packets_out, cached.len() as u64);
    }

    fn fan_out(&mut self, publisher: PeerKey, packets: Vec<(RtpCodecKind, rtp::Packet)>) {
        let Some(channel) = self.peers.get(&publisher).map(|p| p.channel.clone()) else {
            return;
        };
        if self
            .channels
            .get(&channel)
            .is_some_and(|ch| ch.publisher == Some(publisher))
        {
            self.fan_out_channel(&channel, 0, packets);
        }
    }

    /// Sends a live source's packets to every connected viewer of the channel: audio to
    /// all, video to the viewers of `rendition`.
    fn fan_out_channel(
        &mut self,
        channel: &ChannelName,
        rendition: usize,
        packets: Vec<(RtpCodecKind, rtp::Packet)>,
    ) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        if !ch.live {
            return;
        }
        RelayCounters::add(&self.board.counters.packets_in, packets.len() as u64);
        if let (Some(kind), Some(stream)) = (ch.video_kind, ch.streams.get_mut(rendition)) {
            for (k, packet) in &packets {
                if *k == RtpCodecKind::Video {
                    stream.gop.push(kind, packet);
                    stream.rtx.push(packet);
                }
            }
        }
        let video_kind = ch.video_kind.unwrap_or(VideoCodec::Other);
        let viewers: Vec<PeerKey> = ch.viewers.iter().copied().collect();
        let now = Instant::now();
        let mut delivered = 0u64;
        for vkey in viewers {
            let Some(peer) = self.peers.get_mut(&vkey) else {
                continue;
            };
            let (mut video_waits, other_rendition) = match &peer.role {
                Role::Viewer(v) if v.connected => (v.replay_at.is_some(), v.rendition != rendition),
                _ => continue,
            };
            for (kind, packet) in &packets {
                if *kind == RtpCodecKind::Video && other_rendition {
                    continue;
                }
                if *kind == RtpCodecKind::Video
                    && let Role::Viewer(v) = &mut peer.role
                    && v.skip_video
                {
                    if starts_keyframe(video_kind, &packet.payload) {
                        // Resume on a clean picture; the skipped packets leave no gap.
                        v.skip_video = false;
                        if let Some(track) = v.video.as_mut() {
                            track.rewriter.resync();
                        }
                    } else {
                        video_waits = true;
                    }
                }
                if video_waits && *kind == RtpCodecKind::Video {
                    continue;
                }
                if write_to_viewer(peer, *kind, packet, now, &mut self.outbox) {
                    delivered += 1;
                }
            }
            report_to_viewer(peer, now, &mut self.outbox);
            // On the fast path rtc has nothing to send for forwarded media; walking its
            // write pipeline for every viewer and packet would cost more than the media.
            if matches!(&peer.role, Role::Viewer(v) if v.srtp.is_none()) {
                take_writes(peer, &mut self.outbox);
            }
        }
        RelayCounters::add(&self.board.counters.packets_out, delivered);
    }

    fn request_keyframe(&mut self, channel: &ChannelName) {
        let min_interval = Duration::from_millis(self.relay.pli_min_interval_ms);
        let now = Instant::now();
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        if ch
            .last_pli
            .is_some_and(|t| now.duration_since(t) < min_interval)
        {
            return;
        }
        if let Some(local) = ch.local.and_then(|id| self.locals.get(&id)) {
            ch.last_pli = Some(now);
            local.keyframe_wanted.store(true, Ordering::Relaxed);
            RelayCounters::add(&self.board.counters.plis_forwarded, 1);
            return;
        }
        let Some(pkey) = ch.publisher else {
            return;
        };
        ch.last_pli = Some(now);
        let Some(peer) = self.peers.get_mut(&pkey) else {
            return;
        };
        let Role::Publisher(p) = &peer.role else {
            return;
        };
        let targets: Vec<(RTCRtpReceiverId, u32)> = p
            .tracks
            .values()
            .filter(|t| t.kind == RtpCodecKind::Video)
            .map(|t| (t.receiver_id, t.media_ssrc))
            .collect();
        for (receiver_id, media_ssrc) in targets {
            if let Some(mut receiver) = peer
                .pc
                .as_deref_mut()
                .and_then(|pc| pc.rtp_receiver(receiver_id))
            {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if receiver.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                    RelayCounters::add(&self.board.counters.plis_forwarded, 1);
                }
            }
        }
        self.drain_writes(pkey);
    }

    /// How long a detached viewer may stay silent: what makes a peer connection fail.
    fn consent_timeout(&self) -> Duration {
        Duration::from_secs(self.webrtc.disconnected_timeout_secs + self.webrtc.failed_timeout_secs)
    }

    /// Drops a connected viewer's `RTCPeerConnection` and serves it from the engine alone:
    /// its media already goes out through the engine's SRTP, its consent checks are
    /// answered with [`stun::consent_answer`] (we are ICE-lite: the only checks are the
    /// viewer's), its SRTCP is opened with the remote key the tap saw, and a DTLS alert
    /// (its close_notify) ends it. Kept on rtc's pipeline when any key is missing.
    fn detach(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key).map(Box::as_mut) else {
            return;
        };
        let Role::Viewer(v) = &mut peer.role else {
            return;
        };
        v.detach_at = None;
        if v.srtp.is_none() || peer.send_to.is_none() || peer.closing {
            return;
        }
        // Until the viewer's RTCP shows its side of DTLS is done (when it is the DTLS
        // client, our last flight may still need a retransmission), rtc keeps it.
        if !v.rtcp_seen {
            v.detach_at = Some(Instant::now() + DETACHED_TICK);
            return;
        }
        let Some(srtcp) = peer.tap.as_ref().and_then(|tap| tap.remote_context()) else {
            debug!(channel = %peer.channel, "no remote SRTP key seen; the viewer stays on rtc");
            return;
        };
        v.detached = Some(Detached {
            srtcp: Box::new(srtcp),
            heard: Instant::now(),
        });
        take_writes(peer, &mut self.outbox);
        // Dropped, not closed: closing would send the viewer a DTLS close_notify.
        peer.pc = None;
        peer.tap = None;
        RelayCounters::add(&self.board.counters.viewers_detached, 1);
        debug!(channel = %peer.channel, "viewer detached from its peer connection");
    }

    /// A datagram for a detached viewer: a consent check, its SRTCP, or a DTLS record.
    fn detached_datagram(&mut self, key: PeerKey, data: &[u8], from: SocketAddr) {
        let Some(Peer {
            role: Role::Viewer(v),
            ..
        }) = self.peers.get_mut(&key).map(Box::as_mut)
        else {
            return;
        };
        let Some(detached) = v.detached.as_mut() else {
            return;
        };
        let mut feedback = Feedback::default();
        match data.first().copied().unwrap_or(0) {
            // RFC 7983 demultiplexing: STUN.
            0..=3 => {
                if let Some(answer) = stun::consent_answer(data, from, &v.pwd, self.crypto.crypto())
                {
                    detached.heard = Instant::now();
                    self.outbox
                        .datagrams
                        .push((BytesMut::from(&answer[..]), from));
                }
                return;
            }
            // DTLS: after the handshake only an alert can matter, and any alert (the
            // viewer's close_notify, or a fatal one) ends the connection.
            20..=63 => {
                if data[0] == 21 {
                    self.remove_peer(key, "the viewer closed its connection");
                }
                return;
            }
            // RTP or RTCP (RFC 5761: RTCP packet types 192..=223).
            128..=191 if data.get(1).is_some_and(|pt| (192..=223).contains(pt)) => {
                let Ok(mut plain) = detached.srtcp.decrypt_rtcp(data) else {
                    debug!("a detached viewer's SRTCP did not authenticate");
                    return;
                };
                detached.heard = Instant::now();
                if let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut plain) {
                    feedback.read(v, &packets);
                }
            }
            _ => return,
        }
        self.apply_feedback(key, feedback);
    }

    /// Acts on what a viewer's RTCP asked: a keyframe from the publisher, retransmissions,
    /// and its loss reports; returns false when the viewer was dropped for its losses.
    fn apply_feedback(&mut self, key: PeerKey, feedback: Feedback) -> bool {
        if feedback.keyframe
            && let Some(channel) = self.peers.get(&key).map(|p| p.channel.clone())
        {
            self.request_keyframe(&channel);
        }
        if !feedback.nacked.is_empty() {
            self.retransmit(key, &feedback.nacked);
        }
        for fraction_lost in feedback.losses {
            if !self.viewer_health(key, fraction_lost) {
                return false;
            }
        }
        true
    }

    fn remove_peer(&mut self, key: PeerKey, why: &str) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        if !peer.closing {
            peer.closing = true;
            if let Some(pc) = peer.pc.as_deref_mut() {
                let _ = pc.close();
            }
            take_writes(&mut peer, &mut self.outbox);
        }
        self.by_ufrag.remove(&peer.ufrag);
        self.by_resource.remove(&peer.resource);
        for addr in &peer.remotes {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        let channel = peer.channel.clone();
        let at_ms = now_ms();
        match peer.role {
            Role::Publisher(p) => {
                info!(%channel, session = %p.session, why, "publisher ended");
                let ours = self
                    .channels
                    .get_mut(&channel)
                    .filter(|ch| ch.publisher == Some(key))
                    .map(|ch| ch.publisher = None)
                    .is_some();
                self.end_session(&channel, p.session, ours);
            }
            Role::Viewer(v) => {
                debug!(%channel, why, "viewer left");
                if let Some(id) = v.row {
                    self.audience.push(AudienceEvent::ViewerLeft { id, at_ms });
                }
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.viewers.remove(&key);
                    if v.connected {
                        ch.connected_viewers = ch.connected_viewers.saturating_sub(1);
                    }
                }
                let session = self.session_of(&channel);
                self.publish_status(&channel, session);
            }
        }
        let idle = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.publisher.is_none() && c.local.is_none() && c.viewers.is_empty());
        if idle {
            self.channels.remove(&channel);
            self.board.set(&channel, None);
        }
    }
}

/// What a viewer's RTCP asks of us.
#[derive(Default)]
struct Feedback {
    /// A PLI or FIR: the publisher should send a keyframe.
    keyframe: bool,
    /// Video sequence numbers it is missing.
    nacked: Vec<u16>,
    /// The fraction lost of each of its receiver reports on our video.
    losses: Vec<u8>,
}

impl Feedback {
    fn read(&mut self, v: &ViewerState, packets: &[Box<dyn rtc::rtcp::packet::Packet>]) {
        let video_ssrc = v.video.as_ref().map(|t| t.rewriter.ssrc());
        for p in packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                self.keyframe = true;
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                if Some(nack.media_ssrc) == video_ssrc {
                    self.nacked
                        .extend(nack.nacks.iter().flat_map(|n| n.packet_list()));
                }
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                self.losses.extend(
                    rr.reports
                        .iter()
                        .filter(|r| Some(r.ssrc) == video_ssrc)
                        .map(|r| r.fraction_lost),
                );
            }
        }
    }
}

/// Rewrites and writes one packet to a viewer; returns whether it was handed to SRTP.
/// Sends one packet to a viewer: rewritten, protected with the engine's SRTP context and
/// queued for the socket; through rtc's pipeline only while that context is missing.
fn write_to_viewer(
    peer: &mut Peer,
    kind: RtpCodecKind,
    packet: &rtp::Packet,
    now: Instant,
    out: &mut Outbox,
) -> bool {
    let Role::Viewer(v) = &mut peer.role else {
        return false;
    };
    let track = match kind {
        RtpCodecKind::Video => v.video.as_mut(),
        RtpCodecKind::Audio => v.audio.as_mut(),
        _ => None,
    };
    let Some(track) = track else {
        return false;
    };
    let rewritten = track.rewriter.rewrite(packet, now);
    track.packets = track.packets.wrapping_add(1);
    track.octets = track.octets.wrapping_add(rewritten.payload.len() as u32);
    if let Some(to) = peer.send_to
        && let Some(gcm) = v.gcm.as_mut()
    {
        return match gcm.protect(&rewritten.header, &rewritten.payload, &mut track.rollover) {
            Some(datagram) => {
                out.datagrams.push((datagram, to));
                true
            }
            None => false,
        };
    }
    if let (Some(context), Some(to)) = (v.srtp.as_mut(), peer.send_to) {
        return match super::srtp::protect_rtp(context, &rewritten, &mut out.scratch) {
            Some(datagram) => {
                out.datagrams.push((datagram, to));
                true
            }
            None => false,
        };
    }
    match peer
        .pc
        .as_deref_mut()
        .and_then(|pc| pc.rtp_sender(track.sender_id))
    {
        Some(mut sender) => sender.write_rtp(now, rewritten).is_ok(),
        None => false,
    }
}

/// Sends the viewer's sender reports when they are due (about once a second).
fn report_to_viewer(peer: &mut Peer, now: Instant, out: &mut Outbox) {
    let Role::Viewer(v) = &mut peer.role else {
        return;
    };
    if v.srtp.is_none() || v.next_report.is_some_and(|at| now < at) {
        return;
    }
    v.next_report = Some(now + SENDER_REPORT_INTERVAL);
    // Follow the selected pair if ICE changed it (e.g. the viewer's network changed).
    if let Some(to) = selected_remote(peer) {
        peer.send_to = Some(to);
    }
    let Role::Viewer(v) = &mut peer.role else {
        return;
    };
    let (Some(context), Some(to)) = (v.srtp.as_mut(), peer.send_to) else {
        return;
    };
    let tracks: Vec<SenderReportInput> = [v.video.as_ref(), v.audio.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(SenderReportInput {
                ssrc: t.rewriter.ssrc(),
                rtp_time: t.rewriter.rtp_time_at(now)?,
                packets: t.packets,
                octets: t.octets,
            })
        })
        .collect();
    if let Some(datagram) =
        super::srtp::sender_report(context, &tracks, std::time::SystemTime::now())
    {
        out.datagrams.push((datagram, to));
    }
}

/// Moves what rtc wants sent for `peer` to the outbox, noting where its DTLS goes: rtc
/// sends everything but STUN to the selected ICE pair, while STUN answers go to whichever
/// address checked.
fn take_writes(peer: &mut Peer, out: &mut Outbox) {
    let Some(pc) = peer.pc.as_deref_mut() else {
        return;
    };
    while let Some(w) = pc.poll_write() {
        if !matches!(w.message.first(), Some(0..=3)) {
            peer.send_to = Some(w.transport.peer_addr);
        }
        out.datagrams.push((w.message, w.transport.peer_addr));
    }
}

/// The remote address of the viewer's selected ICE candidate pair, when it is an IP.
fn selected_remote(peer: &mut Peer) -> Option<SocketAddr> {
    let Role::Viewer(v) = &peer.role else {
        return None;
    };
    let sender_id = v.video.as_ref().or(v.audio.as_ref())?.sender_id;
    let sender = peer.pc.as_deref_mut()?.rtp_sender(sender_id)?;
    let pair = sender
        .transport()?
        .ice_transport()
        .get_selected_candidate_pair()?;
    let ip: IpAddr = pair.remote().address.parse().ok()?;
    Some(SocketAddr::new(ip, pair.remote().port))
}

/// Consecutive datagrams to one address that the kernel can send as one: all of one size
/// but the last, which may be shorter (what `UDP_SEGMENT` splits a buffer back into).
/// Returns how many of `datagrams` lead such a run, at most `max` and `MAX_GSO_BYTES`.
fn segment_run(datagrams: &[(BytesMut, SocketAddr)], max: usize) -> usize {
    /// Under the 65,507 bytes of a UDP datagram, which a segmented send also obeys.
    const MAX_GSO_BYTES: usize = 60_000;
    let Some((first, to)) = datagrams.first() else {
        return 0;
    };
    let size = first.len();
    let mut bytes = size;
    let mut n = 1;
    for (data, addr) in &datagrams[1..datagrams.len().min(max)] {
        if addr != to || data.len() > size || bytes + data.len() > MAX_GSO_BYTES {
            break;
        }
        bytes += data.len();
        n += 1;
        if data.len() < size {
            break;
        }
    }
    n
}

/// Sends as many of `datagrams` as the socket takes in one `sendmmsg(2)` call (up to 64
/// messages), returning how many datagrams went and how many of those in segmented sends.
/// One system call per batch instead of per datagram: with hundreds of viewers the engine
/// sends tens of thousands of datagrams a second. With `gso`, each run of datagrams to one
/// viewer ([`segment_run`], a frame's packets) is one message the kernel segments
/// (`UDP_SEGMENT`, Linux 4.18): one trip through the IP stack and the interface instead
/// of one per packet.
///
/// Public for `feiyan-udp-floor`, which measures what this costs the kernel with no relay
/// work around it.
#[cfg(target_os = "linux")]
pub fn send_batch(
    socket: &impl std::os::fd::AsRawFd,
    datagrams: &[(BytesMut, SocketAddr)],
    gso: bool,
) -> std::io::Result<(usize, usize)> {
    const BATCH: usize = 64;
    /// The kernel's most segments in one send (`UDP_MAX_SEGMENTS`).
    const MAX_SEGMENTS: usize = 64;
    // Runs of datagrams, one message each: (first, count).
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
    let mut at = 0;
    while at < datagrams.len() && runs.len() < BATCH {
        let n = if gso {
            segment_run(&datagrams[at..], MAX_SEGMENTS)
        } else {
            1
        };
        runs.push((at, n));
        at += n;
    }
    let addrs: Vec<socket2::SockAddr> = runs
        .iter()
        .map(|&(first, _)| socket2::SockAddr::from(datagrams[first].1))
        .collect();
    let mut iovs: Vec<libc::iovec> = datagrams[..at]
        .iter()
        .map(|(data, _)| libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        })
        .collect();
    // One control buffer per message (8-byte aligned, as cmsghdr needs), holding the
    // segment size of a run.
    let mut controls: Vec<[u64; 4]> = vec![[0; 4]; runs.len()];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of::<[u64; 4]>());
    let iov_base = iovs.as_mut_ptr();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(runs.len());
    for ((&(first, n), addr), control) in runs.iter().zip(&addrs).zip(&mut controls) {
        // SAFETY: an all-zero msghdr is valid (no control data, no flags).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len();
        // SAFETY: `first + n <= iovs.len()`: the runs cover `datagrams[..at]`.
        hdr.msg_iov = unsafe { iov_base.add(first) };
        hdr.msg_iovlen = n as _;
        if n > 1 {
            hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = space as _;
            // SAFETY: the control buffer is aligned and `space` bytes long, room for one
            // header with a u16 of data; CMSG_FIRSTHDR points into it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                let size = datagrams[first].0.len() as u16;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, size);
            }
        }
        msgs.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: every pointer in `msgs` points into `iovs`, `addrs`, `controls` and
    // `datagrams`, which outlive the call; the kernel only reads them (and writes
    // `msg_len`).
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let runs = &runs[..sent as usize];
    Ok((
        runs.iter().map(|&(_, n)| n).sum(),
        runs.iter().map(|&(_, n)| n).filter(|&n| n > 1).sum(),
    ))
}

#[cfg(not(target_os = "linux"))]
fn send_batch(
    socket: &UdpSocket,
    datagrams: &[(BytesMut, SocketAddr)],
    _gso: bool,
) -> std::io::Result<(usize, usize)> {
    let (data, to) = &datagrams[0];
    socket.try_send_to(data, *to).map(|_| (1, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_viewers_datagrams_are_segmentable() {
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let d = |len: usize, to| (BytesMut::from(&vec![0u8; len][..]), to);
        // A frame of three packets to a, then audio to a, then b.
        let batch = vec![d(1200, a), d(1200, a), d(700, a), d(90, a), d(1200, b)];
        assert_eq!(segment_run(&batch, 64), 3);
        assert_eq!(segment_run(&batch[2..], 64), 2);
        assert_eq!(segment_run(&batch[3..], 64), 1);
        assert_eq!(segment_run(&batch, 2), 2);
        // A longer datagram after a shorter one starts a new run.
        assert_eq!(segment_run(&[d(90, a), d(1200, a)], 64), 1);
        // At most about 60,000 bytes in one send.
        let many: Vec<_> = (0..64).map(|_| d(1200, a)).collect();
        assert_eq!(segment_run(&many, 64), 50);
        assert_eq!(segment_run(&[], 64), 0);
    }

    #[test]
    fn an_offer_that_insists_on_dtls_client_gets_a_passive_answer() {
        assert_eq!(
            answering_dtls_role("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=setup:active\r\n"),
            RTCDtlsRole::Server
        );
        for setup in ["a=setup:actpass", "a=setup:passive"] {
            let offer = format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{setup}\r\n");
            assert_eq!(answering_dtls_role(&offer), RTCDtlsRole::Client, "{setup}");
        }
    }

    #[test]
    fn counts_sending_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert_eq!(sending_sections(sdp), 2);
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=recvonly\r\nm=video 9 X 96\r\na=sendrecv\r\nm=application 9 X\r\n";
        assert_eq!(sending_sections(sdp), 1);
    }

    #[test]
    fn offer_text_checks_explain_themselves() {
        let err = check_offer_text("hello").unwrap_err().to_string();
        assert!(err.contains("v=0"), "{err}");
        let err = check_offer_text("v=0\r\ns=-\r\n").unwrap_err().to_string();
        assert!(err.contains("no audio or video"), "{err}");
    }
}

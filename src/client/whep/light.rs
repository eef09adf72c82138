//! A WHEP viewer on rtc's sans-IO peer connection, driven by one task.
//!
//! The same protocol as the default viewer (ICE, DTLS, SRTP, receiver reports and NACKs
//! from rtc's default interceptors), without webrtc-rs's async plumbing: the default
//! viewer runs several tasks and channels per connection, and with hundreds of viewers in
//! one benchmark process on the server's machine that plumbing, not the server, decides
//! how fast viewers join (see `feiyan-bench --client`). Here one task owns the socket and
//! the peer connection: a datagram in, the packets out, the next timer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

use super::offer::{recvonly, viewer_media_engine};
use super::options::ViewerOptions;
use super::record::ReceiveRecord;
use crate::client::{ClientError, Result, TrackKind, lock};

/// Largest datagram read (a UDP payload on any link).
const RECV_BUFFER: usize = 65_536;

/// A peer connection with its offer made, and the socket it offered.
pub(crate) struct LightSession {
    /// The bound socket's address (the host candidate in the offer).
    pub(crate) local: SocketAddr,
    /// The offer, for the `POST`.
    pub(crate) offer_sdp: String,
    /// Starts the driver once the answer is in.
    pub(crate) pc: Box<RTCPeerConnection>,
    /// The socket the driver will own.
    pub(crate) socket: UdpSocket,
}

/// One self-signed certificate for every light viewer of the process (a browser also keeps
/// its certificates between connections); made on first use.
fn certificate() -> Result<RTCCertificate> {
    static CERT: OnceLock<std::result::Result<RTCCertificate, String>> = OnceLock::new();
    CERT.get_or_init(|| {
        let crypto = rtc::crypto::default_provider().map_err(|e| e.to_string())?;
        let params =
            CertificateParams::new(vec!["feiyan-bench".to_owned()]).map_err(|e| e.to_string())?;
        RTCCertificate::generate(
            crypto.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )
        .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| ClientError::Negotiation(format!("cannot make a DTLS certificate: {e}")))
}

/// Binds the socket, builds the peer connection with receive-only audio and video and
/// returns the complete offer (one host candidate: the socket's address).
pub(crate) async fn offer(opts: &ViewerOptions) -> Result<LightSession> {
    let Some(&bind) = opts.connect.udp_addrs.first() else {
        return Err(ClientError::Negotiation(
            "the light viewer needs a local UDP address to bind".to_owned(),
        ));
    };
    if bind.ip().is_unspecified() {
        return Err(ClientError::Negotiation(format!(
            "the light viewer needs a concrete local IP to offer, not {bind}"
        )));
    }
    let socket = UdpSocket::bind(bind).await.map_err(|e| ClientError::Io {
        path: format!("UDP socket {bind}"),
        source: e,
    })?;
    let local = socket.local_addr().map_err(|e| ClientError::Io {
        path: format!("UDP socket {bind}"),
        source: e,
    })?;
    let (media, registry) = viewer_media_engine(opts.video_codecs)?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_certificates(vec![certificate()?])
                .build(),
        )
        .with_setting_engine(SettingEngineBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(ClientError::webrtc("creating the peer connection"))?;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        pc.add_transceiver_from_kind(kind, Some(recvonly()))
            .map_err(ClientError::webrtc("adding a receive-only transceiver"))?;
    }
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(ClientError::webrtc("making the host candidate"))?;
    let init = RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(ClientError::webrtc("making the host candidate"))?;
    pc.add_local_candidate(init)
        .map_err(ClientError::webrtc("adding the host candidate"))?;
    let offer = pc
        .create_offer(None)
        .map_err(ClientError::webrtc("creating the offer"))?;
    pc.set_local_description(Instant::now(), offer)
        .map_err(ClientError::webrtc("applying the offer"))?;
    let mut offer_sdp = pc
        .local_description()
        .ok_or_else(|| ClientError::Negotiation("no local description after the offer".into()))?
        .sdp;
    if opts.offer_dtls_client {
        // The answer's `setup:passive` then makes this side the DTLS client.
        offer_sdp = offer_sdp.replace("a=setup:actpass", "a=setup:active");
    }
    Ok(LightSession {
        local,
        offer_sdp,
        pc: Box::new(pc),
        socket,
    })
}

/// Applies the answer to the session's peer connection.
pub(crate) fn answer(session: &mut LightSession, answer_sdp: String) -> Result<()> {
    let answer = RTCSessionDescription::answer(answer_sdp)
        .map_err(ClientError::webrtc("parsing the SDP answer"))?;
    session
        .pc
        .set_remote_description(Instant::now(), answer)
        .map_err(ClientError::webrtc("applying the SDP answer"))
}

/// Runs the peer connection until `stop` fires or the connection fails or closes; records
/// every RTP packet into `state` and reports `connected` on `connected`.
pub(crate) async fn drive(
    session: LightSession,
    state: Arc<Mutex<ReceiveRecord>>,
    request_keyframe: bool,
    connected: watch::Sender<Option<bool>>,
    mut stop: oneshot::Receiver<()>,
) {
    let LightSession {
        local,
        mut pc,
        socket,
        ..
    } = session;
    let mut buf = vec![0u8; RECV_BUFFER];
    // Track id -> kind, from the track-open events.
    let mut tracks: Vec<(String, TrackKind)> = Vec::new();
    loop {
        if !service(
            &mut pc,
            &socket,
            &state,
            &mut tracks,
            request_keyframe,
            &connected,
        ) {
            return;
        }
        let deadline = pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        // Timers that are due go first: a steady stream of datagrams must not hold back
        // receiver reports, NACKs or ICE keepalives.
        if deadline <= Instant::now() {
            if let Err(e) = pc.handle_timeout(Instant::now()) {
                tracing::debug!(error = %e, "light viewer timeout handling failed");
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = &mut stop => {
                let _ = pc.close();
                flush(&mut pc, &socket);
                return;
            }
            ready = socket.readable() => {
                if ready.is_err() {
                    let _ = connected.send(Some(false));
                    return;
                }
                // Everything queued, then one pass over what the stack wants done (its
                // events first: a track opens with its first packet).
                loop {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => {
                            let message = TaggedBytesMut {
                                now: Instant::now(),
                                transport: TransportContext {
                                    local_addr: local,
                                    peer_addr: from,
                                    ecn: None,
                                    transport_protocol: TransportProtocol::UDP,
                                },
                                message: BytesMut::from(&buf[..n]),
                            };
                            if let Err(e) = pc.handle_read(message) {
                                tracing::debug!(error = %e, "light viewer dropped a datagram");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "light viewer receive failed");
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if let Err(e) = pc.handle_timeout(Instant::now()) {
                    tracing::debug!(error = %e, "light viewer timeout handling failed");
                }
            }
        }
    }
}

/// Handles the stack's events, reads and writes; false once the connection is over.
fn service(
    pc: &mut RTCPeerConnection,
    socket: &UdpSocket,
    state: &Mutex<ReceiveRecord>,
    tracks: &mut Vec<(String, TrackKind)>,
    request_keyframe: bool,
    connected: &watch::Sender<Option<bool>>,
) -> bool {
    let mut ice_up = false;
    while let Some(event) = pc.poll_event() {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) => match s {
                RTCPeerConnectionState::Connected => {
                    lock(state).connected_at.get_or_insert_with(Instant::now);
                    let _ = connected.send(Some(true));
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    let _ = connected.send(Some(false));
                    return false;
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Connected,
            ) => ice_up = true,
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(mut receiver) = pc.rtp_receiver(init.receiver_id) else {
                    continue;
                };
                let kind = match receiver.track().kind() {
                    RtpCodecKind::Audio => TrackKind::Audio,
                    RtpCodecKind::Video => TrackKind::Video,
                    _ => continue,
                };
                let codec = receiver
                    .track()
                    .codec(init.ssrc)
                    .map(|c| c.mime_type.clone());
                lock(state).on_track_open(kind, codec);
                if request_keyframe && kind == TrackKind::Video {
                    let pli = PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: init.ssrc,
                    };
                    if let Err(e) = receiver.write_rtcp(Instant::now(), vec![Box::new(pli)]) {
                        tracing::debug!(error = %e, "light viewer could not send PLI");
                    }
                }
                tracks.push((init.track_id.to_string(), kind));
            }
            _ => {}
        }
    }
    if ice_up {
        // As the DTLS client (an answer with `setup:passive`), rtc hands out the
        // ClientHello only from a timeout; the STUN answer goes out first.
        flush(pc, socket);
        if let Err(e) = pc.handle_timeout(Instant::now()) {
            tracing::debug!(error = %e, "light viewer timeout handling failed");
        }
    }
    drain_reads(pc, state, tracks);
    flush(pc, socket);
    true
}

/// Records the RTP packets the stack has decrypted.
fn drain_reads(
    pc: &mut RTCPeerConnection,
    state: &Mutex<ReceiveRecord>,
    tracks: &[(String, TrackKind)],
) {
    while let Some(message) = pc.poll_read() {
        if let RTCMessage::RtpPacket(track_id, packet) = message.message {
            let kind = tracks
                .iter()
                .find(|(id, _)| id.as_str() == track_id.as_str())
                .map(|&(_, kind)| kind);
            if let Some(kind) = kind {
                // Stamped with when the datagram was read, not when it is recorded.
                lock(state).on_packet(kind, message.now, &packet);
            }
        }
    }
}

/// Sends what the stack has queued. A full socket buffer drops the datagram, as the
/// network would; the stack's retransmissions and NACKs deal with it.
fn flush(pc: &mut RTCPeerConnection, socket: &UdpSocket) {
    while let Some(w) = pc.poll_write() {
        if let Err(e) = socket.try_send_to(&w.message, w.transport.peer_addr) {
            tracing::debug!(error = %e, "light viewer send failed");
        }
    }
}

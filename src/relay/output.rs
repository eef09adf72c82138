//! Per-viewer output: each viewer's header rewrite, SRTP context and sender reports, and
//! [`Fanout`], through which the hub's media reaches them. Also what a viewer's RTCP asks
//! of us ([`Feedback`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;

use super::hub::{Deliver, PeerKey};
use super::media::Rewriter;
use super::peers::{Peer, PeerTable, Role};
use super::srtp::{GcmRtp, Rollover, SenderReportInput};
use super::udp::Outbox;
use crate::media::MediaKind;

/// At most this many distinct sequence numbers of one RTCP datagram from a viewer are
/// answered: one packet of NACK pairs names up to 17 numbers per 4 bytes, thousands in
/// all, and a link that loses more than this between two NACKs is better served by the
/// next keyframe.
pub const MAX_NACKED_PER_RTCP: usize = 64;

/// How often each viewer gets sender reports (lip sync, RFC 3550 §6.4.1).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// One forwarded track of a viewer.
pub(super) struct TrackOut {
    pub(super) sender_id: RTCRtpSenderId,
    pub(super) rewriter: Rewriter,
    /// Rollover counter of its SSRC, for the GCM fast path.
    pub(super) rollover: Rollover,
    /// Packets and payload octets sent, for sender reports.
    pub(super) packets: u32,
    pub(super) octets: u32,
}

impl TrackOut {
    pub(super) fn new(
        sender_id: RTCRtpSenderId,
        ssrc: u32,
        payload_type: u8,
        clock_rate: u32,
    ) -> TrackOut {
        TrackOut {
            sender_id,
            rewriter: Rewriter::new(ssrc, payload_type, clock_rate),
            rollover: Rollover::default(),
            packets: 0,
            octets: 0,
        }
    }
}

/// A viewer's output state.
pub(super) struct ViewerOutput {
    pub(super) video: Option<TrackOut>,
    pub(super) audio: Option<TrackOut>,
    /// Our SRTP context for this viewer, from its key tap once DTLS is done; media then
    /// bypasses rtc's per-packet pipeline (see [`super::srtp`]).
    pub(super) srtp: Option<Box<rtc::srtp::context::Context>>,
    /// The AES-GCM fast path for its RTP when that profile was negotiated (every browser
    /// offers it); RTCP and the other profile go through `srtp`.
    pub(super) gcm: Option<GcmRtp>,
    /// When to send the next sender reports.
    pub(super) next_report: Option<Instant>,
    /// Our ICE password, to answer its consent checks once detached.
    pub(super) pwd: String,
    /// When to detach it from its peer connection (see `Engine::detach`).
    pub(super) detach_at: Option<Instant>,
    /// Whether rtc has handed us RTCP from it: its SRTP keys work, so its side of the
    /// DTLS handshake is done too.
    pub(super) rtcp_seen: bool,
    /// Set once detached: the engine answers its STUN and reads its RTCP itself.
    pub(super) detached: Option<Detached>,
    /// Whether its connection is up (media goes to connected viewers only).
    pub(super) connected: bool,
}

impl ViewerOutput {
    pub(super) fn new(
        video: Option<TrackOut>,
        audio: Option<TrackOut>,
        pwd: String,
    ) -> ViewerOutput {
        ViewerOutput {
            video,
            audio,
            srtp: None,
            gcm: None,
            next_report: None,
            pwd,
            detach_at: None,
            rtcp_seen: false,
            detached: None,
            connected: false,
        }
    }

    fn track(&mut self, kind: MediaKind) -> Option<&mut TrackOut> {
        match kind {
            MediaKind::Video => self.video.as_mut(),
            MediaKind::Audio => self.audio.as_mut(),
        }
    }

    /// Maps NACKed sequence numbers of its video to the source's `(ssrc, seq)`.
    pub(super) fn nacked_sources(&self, seqs: &[u16]) -> Vec<(u32, u16)> {
        let Some(track) = self.video.as_ref() else {
            return Vec::new();
        };
        seqs.iter()
            .filter_map(|&seq| track.rewriter.source_seq(seq))
            .collect()
    }
}

/// What a viewer needs once its `RTCPeerConnection` is gone. The connection's state (session
/// descriptions, ICE agent, DTLS endpoint, transceivers, interceptors, statistics) was most
/// of a viewer's heap; its media already went out through the engine's own SRTP.
pub(super) struct Detached {
    /// Decrypts the viewer's SRTCP (receiver reports, NACK, PLI).
    pub(super) srtcp: Box<rtc::srtp::context::Context>,
    /// When it last sent a signed consent check or RTCP; silent for the configured
    /// disconnected + failed timeouts, it is removed as a failed connection would be.
    pub(super) heard: Instant,
}

/// What a viewer's RTCP asks of us.
#[derive(Default)]
pub(super) struct Feedback {
    /// A PLI or FIR: the publisher should send a keyframe.
    pub(super) keyframe: bool,
    /// Video sequence numbers it is missing: distinct, at most [`MAX_NACKED_PER_RTCP`].
    pub(super) nacked: Vec<u16>,
    /// Distinct numbers it NACKed beyond those.
    pub(super) nacked_over_cap: u64,
    /// The fraction lost of each of its receiver reports on our video.
    pub(super) losses: Vec<u8>,
}

impl Feedback {
    pub(super) fn read(
        &mut self,
        v: &ViewerOutput,
        packets: &[Box<dyn rtc::rtcp::packet::Packet>],
    ) {
        let video_ssrc = v.video.as_ref().map(|t| t.rewriter.ssrc());
        // Which sequence numbers this datagram already named (one bit each).
        let mut named = [0u64; 1024];
        for p in packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                self.keyframe = true;
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                if Some(nack.media_ssrc) == video_ssrc {
                    for seq in nack.nacks.iter().flat_map(|pair| *pair) {
                        let (word, bit) = (usize::from(seq >> 6), 1u64 << (seq & 63));
                        if named[word] & bit != 0 {
                            continue;
                        }
                        named[word] |= bit;
                        if self.nacked.len() < MAX_NACKED_PER_RTCP {
                            self.nacked.push(seq);
                        } else {
                            self.nacked_over_cap += 1;
                        }
                    }
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

/// The hub's media on its way to viewers: rewritten, protected and queued for the socket.
pub(super) struct Fanout<'a> {
    pub(super) peers: &'a mut PeerTable,
    pub(super) outbox: &'a mut Outbox,
    pub(super) now: Instant,
}

impl Deliver for Fanout<'_> {
    fn send(&mut self, viewer: PeerKey, kind: MediaKind, packet: &rtp::Packet) -> bool {
        match self.peers.get_mut(viewer) {
            Some(peer) => write_to_viewer(peer, kind, packet, self.now, self.outbox),
            None => false,
        }
    }

    fn resend(&mut self, viewer: PeerKey, packet: &rtp::Packet) -> bool {
        match self.peers.get_mut(viewer) {
            Some(peer) => resend_to_viewer(peer, packet, self.now, self.outbox),
            None => false,
        }
    }

    fn resync(&mut self, viewer: PeerKey, kind: Option<MediaKind>) {
        let Some(v) = self.peers.get_mut(viewer).and_then(Peer::viewer) else {
            return;
        };
        for k in [MediaKind::Video, MediaKind::Audio] {
            if kind.is_none_or(|want| want == k)
                && let Some(track) = v.track(k)
            {
                track.rewriter.resync();
            }
        }
    }

    fn done(&mut self, viewer: PeerKey) {
        let Some(peer) = self.peers.get_mut(viewer) else {
            return;
        };
        report_to_viewer(peer, self.now, self.outbox);
        // On the fast path rtc has nothing to send for forwarded media; walking its write
        // pipeline for every viewer and packet would cost more than the media.
        if matches!(&peer.role, Role::Viewer(v) if v.srtp.is_none()) {
            take_writes(peer, self.outbox);
        }
    }
}

/// Sends one packet to a viewer: rewritten, protected with the engine's SRTP context and
/// queued for the socket; through rtc's pipeline only while that context is missing.
/// Returns whether it went.
pub(super) fn write_to_viewer(
    peer: &mut Peer,
    kind: MediaKind,
    packet: &rtp::Packet,
    now: Instant,
    out: &mut Outbox,
) -> bool {
    let Role::Viewer(v) = &mut peer.role else {
        return false;
    };
    if !v.connected {
        return false;
    }
    let track = match kind {
        MediaKind::Video => v.video.as_mut(),
        MediaKind::Audio => v.audio.as_mut(),
    };
    let Some(track) = track else {
        return false;
    };
    let rewritten = track.rewriter.rewrite(packet, now);
    send_rewritten(peer, kind, rewritten, now, out)
}

/// Sends a video packet to a viewer again, exactly as it was first sent to it (see
/// [`super::media::Rewriter::resent`]); false when it never was.
fn resend_to_viewer(peer: &mut Peer, packet: &rtp::Packet, now: Instant, out: &mut Outbox) -> bool {
    let Role::Viewer(v) = &mut peer.role else {
        return false;
    };
    if !v.connected {
        return false;
    }
    let Some(rewritten) = v.video.as_ref().and_then(|t| t.rewriter.resent(packet)) else {
        return false;
    };
    send_rewritten(peer, MediaKind::Video, rewritten, now, out)
}

/// Counts, protects and queues a packet already rewritten for the viewer.
fn send_rewritten(
    peer: &mut Peer,
    kind: MediaKind,
    rewritten: rtp::Packet,
    now: Instant,
    out: &mut Outbox,
) -> bool {
    let send_to = peer.send_to;
    let Role::Viewer(v) = &mut peer.role else {
        return false;
    };
    let ViewerOutput {
        video,
        audio,
        srtp,
        gcm,
        ..
    } = v.as_mut();
    let Some(track) = (match kind {
        MediaKind::Video => video.as_mut(),
        MediaKind::Audio => audio.as_mut(),
    }) else {
        return false;
    };
    track.packets = track.packets.wrapping_add(1);
    track.octets = track.octets.wrapping_add(rewritten.payload.len() as u32);
    if let Some(to) = send_to
        && let Some(gcm) = gcm.as_mut()
    {
        return match gcm.protect(&rewritten.header, &rewritten.payload, &mut track.rollover) {
            Some(datagram) => {
                out.datagrams.push((datagram, to));
                true
            }
            None => false,
        };
    }
    if let (Some(context), Some(to)) = (srtp.as_mut(), send_to) {
        return match super::srtp::protect_rtp(context, &rewritten, &mut out.scratch) {
            Some(datagram) => {
                out.datagrams.push((datagram, to));
                true
            }
            None => false,
        };
    }
    let sender_id = track.sender_id;
    match peer
        .pc
        .as_deref_mut()
        .and_then(|pc| pc.rtp_sender(sender_id))
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
    let send_to = peer.send_to;
    let Role::Viewer(v) = &mut peer.role else {
        return;
    };
    let (Some(context), Some(to)) = (v.srtp.as_mut(), send_to) else {
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
    // The wall clock is an input of the report itself (its NTP timestamp).
    if let Some(datagram) = super::srtp::sender_report(context, &tracks, SystemTime::now()) {
        out.datagrams.push((datagram, to));
    }
}

/// Moves what rtc wants sent for `peer` to the outbox, noting where its DTLS goes: rtc
/// sends everything but STUN to the selected ICE pair, while STUN answers go to whichever
/// address checked.
pub(super) fn take_writes(peer: &mut Peer, out: &mut Outbox) {
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
pub(super) fn selected_remote(peer: &mut Peer) -> Option<SocketAddr> {
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

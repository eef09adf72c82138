//! What a WHEP viewer records of the RTP it receives, on either stack.
//!
//! Everything is recorded per kind from the RTP packets the WebRTC stack hands up: counts,
//! optionally every payload (for byte-identity checks against a publisher), sequence-number
//! continuity, and the timeline a viewer cares about — first RTP packet, first *complete*
//! keyframe.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8};
use rtc::rtp::packet::Packet as RtpPacket;

use super::options::ViewerOptions;
use crate::client::media::{h264_payload_info, vp8_payload_is_keyframe, vp8_payload_starts_frame};
use crate::client::{KindCounters, TrackKind, count_between};

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
    /// Sequence number of the newest in-order packet (what a NACK names).
    pub newest_seq: Option<u16>,
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
    pub fn track(&self, kind: TrackKind) -> &TrackStats {
        match kind {
            TrackKind::Audio => &self.audio,
            TrackKind::Video => &self.video,
        }
    }
}

/// The RTP payload formats of video the keyframe detector can read, from the negotiated
/// codec: which payload headers say where a picture starts and whether it is a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoPayloadFormat {
    /// RFC 6184 payloads: IDR found in single NAL units, STAP-A/B and FU-A/B.
    H264,
    /// RFC 7741 payloads: key frames found from the payload descriptor and frame header.
    Vp8,
    /// No keyframe detection.
    Other,
}

impl VideoPayloadFormat {
    fn from_mime(mime: &str) -> Self {
        if mime.eq_ignore_ascii_case(MIME_TYPE_H264) {
            VideoPayloadFormat::H264
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) {
            VideoPayloadFormat::Vp8
        } else {
            VideoPayloadFormat::Other
        }
    }
}

/// Per-kind receive state: counters plus the continuity tracker.
#[derive(Debug, Default)]
struct TrackState {
    /// The counters handed out by `stats()`.
    stats: TrackStats,
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
            s.newest_seq = Some(h.sequence_number);
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

/// A viewer's record of what it received: everything the receive tasks (webrtc-rs) or the
/// driver (light) write, and what [`ViewerStats`] and the payload and arrival logs are read
/// from.
#[derive(Debug)]
pub(super) struct ReceiveRecord {
    /// What to record besides counters.
    flags: RecordFlags,
    /// Payload format of the video track, which decides how keyframes are recognised.
    video_format: VideoPayloadFormat,
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
    video: TrackState,
    /// Audio receive state.
    audio: TrackState,
    /// Keyframe detection across video packets.
    frames: FrameTracker,
    /// See [`ViewerOptions::record_frame_log`].
    frame_log: Vec<(u32, Instant)>,
    /// See [`ViewerOptions::forward`].
    forward: Option<tokio::sync::mpsc::Sender<(TrackKind, RtpPacket)>>,
}

impl ReceiveRecord {
    fn new(flags: RecordFlags) -> Self {
        Self {
            flags,
            video_format: VideoPayloadFormat::Other,
            first_rtp_at: None,
            first_keyframe_at: None,
            first_video_frame_is_keyframe: false,
            keyframes_completed: 0,
            connected_at: None,
            video: TrackState::default(),
            audio: TrackState::default(),
            frames: FrameTracker::default(),
            frame_log: Vec::new(),
            forward: None,
        }
    }

    /// The record of a viewer started with `opts`.
    pub(super) fn for_options(opts: &ViewerOptions) -> Self {
        let mut record = Self::new(RecordFlags::from(opts));
        record.forward = opts.forward.clone();
        record
    }

    /// Notes the codec of a track that has just opened; the video codec decides how
    /// keyframes are recognised.
    pub(super) fn on_track_open(&mut self, kind: TrackKind, codec: Option<String>) {
        match kind {
            TrackKind::Video => {
                self.video_format = codec
                    .as_deref()
                    .map_or(VideoPayloadFormat::Other, VideoPayloadFormat::from_mime);
                self.video.stats.codec = codec;
            }
            TrackKind::Audio => self.audio.stats.codec = codec,
        }
    }

    /// What has been received so far, for a viewer that posted its offer at `posted_at` and
    /// had its answer at `answered_at`.
    pub(super) fn stats(&self, posted_at: Instant, answered_at: Instant) -> ViewerStats {
        ViewerStats {
            posted_at,
            answered_at,
            connected_at: self.connected_at,
            first_rtp_at: self.first_rtp_at,
            first_keyframe_at: self.first_keyframe_at,
            first_video_frame_is_keyframe: self.first_video_frame_is_keyframe,
            keyframes_completed: self.keyframes_completed,
            video: self.video.stats.clone(),
            audio: self.audio.stats.clone(),
        }
    }

    /// Every payload of `kind` recorded so far, in arrival order.
    pub(super) fn payloads(&self, kind: TrackKind) -> Vec<Bytes> {
        self.track(kind).payloads.clone()
    }

    /// `(RTP timestamp, arrival instant)` of every video picture completed so far.
    pub(super) fn frame_log(&self) -> Vec<(u32, Instant)> {
        self.frame_log.clone()
    }

    /// Packets and bytes of `kind` that arrived in `[from, to)` (`None`: up to now).
    pub(super) fn received_between(
        &self,
        kind: TrackKind,
        from: Instant,
        to: Option<Instant>,
    ) -> KindCounters {
        count_between(&self.track(kind).arrivals, from, to)
    }

    fn track(&self, kind: TrackKind) -> &TrackState {
        match kind {
            TrackKind::Audio => &self.audio,
            TrackKind::Video => &self.video,
        }
    }

    pub(super) fn on_packet(&mut self, kind: TrackKind, now: Instant, packet: &RtpPacket) {
        self.first_rtp_at.get_or_insert(now);
        if let Some(forward) = &self.forward {
            let _ = forward.try_send((kind, packet.clone()));
        }
        let flags = self.flags;
        match kind {
            TrackKind::Audio => {
                self.audio.observe(now, packet, flags);
            }
            TrackKind::Video => {
                if self.video.observe(now, packet, flags) {
                    self.on_video_in_order(now, packet);
                }
            }
        }
    }

    fn on_video_in_order(&mut self, now: Instant, packet: &RtpPacket) {
        let h = &packet.header;
        let payload = &packet.payload[..];
        let (is_key, starts, has_sps) = match self.video_format {
            VideoPayloadFormat::H264 => {
                let info = h264_payload_info(payload);
                (info.has_idr, info.starts_nal, info.has_sps)
            }
            VideoPayloadFormat::Vp8 => (
                vp8_payload_is_keyframe(payload),
                vp8_payload_starts_frame(payload),
                false,
            ),
            VideoPayloadFormat::Other => (false, false, false),
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
            let decodable = match self.video_format {
                VideoPayloadFormat::H264 => f.sps_seen || f.has_sps,
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

    fn viewer(format: VideoPayloadFormat) -> ReceiveRecord {
        let mut s = ReceiveRecord::new(RecordFlags {
            record_payloads: true,
            record_arrival_log: true,
            record_frame_log: true,
        });
        s.video_format = format;
        s
    }

    const STAP_SPS_PPS: &[u8] = &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
    const FU_IDR_START: &[u8] = &[0x7c, 0x85, 1];
    const FU_IDR_MID: &[u8] = &[0x7c, 0x05, 2];
    const FU_IDR_END: &[u8] = &[0x7c, 0x45, 3];
    const P_SLICE: &[u8] = &[0x41, 0x9a, 0];

    #[test]
    fn h264_keyframe_completes_on_marker() {
        let mut v = viewer(VideoPayloadFormat::H264);
        let t = Instant::now();
        v.on_packet(TrackKind::Video, t, &pkt(10, 1000, false, STAP_SPS_PPS));
        v.on_packet(TrackKind::Video, t, &pkt(11, 1000, false, FU_IDR_START));
        v.on_packet(TrackKind::Video, t, &pkt(12, 1000, false, FU_IDR_MID));
        assert!(
            v.first_keyframe_at.is_none(),
            "not complete before the marker"
        );
        v.on_packet(TrackKind::Video, t, &pkt(13, 1000, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_some());
        assert!(v.first_video_frame_is_keyframe);
        assert_eq!(v.keyframes_completed, 1);
        assert!(v.video.stats.is_continuous());
        assert_eq!(v.video.payloads.len(), 4);
    }

    #[test]
    fn joining_mid_gop_is_not_a_keyframe_start() {
        let mut v = viewer(VideoPayloadFormat::H264);
        let t = Instant::now();
        // First frame is a P-frame.
        v.on_packet(TrackKind::Video, t, &pkt(1, 0, true, P_SLICE));
        assert!(!v.first_video_frame_is_keyframe);
        // A keyframe with a lost middle fragment is not complete.
        v.on_packet(TrackKind::Video, t, &pkt(2, 3000, false, STAP_SPS_PPS));
        v.on_packet(TrackKind::Video, t, &pkt(3, 3000, false, FU_IDR_START));
        v.on_packet(TrackKind::Video, t, &pkt(5, 3000, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_none());
        assert_eq!(v.video.stats.seq_gaps, 1);
        assert_eq!(v.video.stats.seq_missing, 1);
        // The next whole one is.
        v.on_packet(TrackKind::Video, t, &pkt(6, 6000, false, STAP_SPS_PPS));
        v.on_packet(TrackKind::Video, t, &pkt(7, 6000, false, FU_IDR_START));
        v.on_packet(TrackKind::Video, t, &pkt(8, 6000, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_some());
        assert!(!v.first_video_frame_is_keyframe);
    }

    #[test]
    fn keyframe_starting_mid_fragment_is_ignored() {
        let mut v = viewer(VideoPayloadFormat::H264);
        let t = Instant::now();
        // Joined in the middle of an IDR's FU-A sequence (SPS seen earlier doesn't help).
        v.on_packet(TrackKind::Video, t, &pkt(20, 0, false, FU_IDR_MID));
        v.on_packet(TrackKind::Video, t, &pkt(21, 0, true, FU_IDR_END));
        assert!(v.first_keyframe_at.is_none());
        assert!(
            v.first_video_frame_is_keyframe,
            "first frame carries IDR data"
        );
    }

    #[test]
    fn continuity_counters() {
        let mut v = viewer(VideoPayloadFormat::Other);
        let t = Instant::now();
        for (seq, ts) in [
            (65534u16, 10u32),
            (65535, 20),
            (0, 30),
            (0, 30),
            (3, 40),
            (2, 35),
        ] {
            v.on_packet(TrackKind::Audio, t, &pkt(seq, ts, false, &[1]));
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
        v.on_packet(TrackKind::Audio, t, &other);
        assert_eq!(v.audio.stats.ssrc_changes, 1);
    }

    #[test]
    fn vp8_keyframe_detection_in_stream() {
        let mut v = viewer(VideoPayloadFormat::Vp8);
        let t = Instant::now();
        v.on_packet(TrackKind::Video, t, &pkt(1, 0, false, &[0x10, 0x50, 0x01]));
        v.on_packet(TrackKind::Video, t, &pkt(2, 0, true, &[0x00, 0xaa]));
        assert!(v.first_keyframe_at.is_some());
        assert!(v.first_video_frame_is_keyframe);
    }
}

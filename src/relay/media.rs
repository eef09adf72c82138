//! Media-level helpers of the relay that need no IO: keyframe detection in RTP payloads,
//! the per-channel keyframe-group cache and the per-viewer header rewriter.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::rtp;

/// Video codecs the relay understands well enough to find keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (RFC 6184, packetization-mode 1).
    H264,
    /// VP8 (RFC 7741).
    Vp8,
    /// Anything else: forwarded, but never treated as a keyframe start.
    Other,
}

impl VideoCodec {
    /// From an SDP mime type such as `video/H264`.
    pub fn from_mime(mime: &str) -> VideoCodec {
        let mime = mime.to_ascii_lowercase();
        if mime.ends_with("/h264") {
            VideoCodec::H264
        } else if mime.ends_with("/vp8") {
            VideoCodec::Vp8
        } else {
            VideoCodec::Other
        }
    }
}

/// Whether this RTP payload starts a keyframe (H.264: carries an SPS or the first
/// fragment of an IDR slice; VP8: first packet of a key frame).
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::H264 => h264_starts_keyframe(payload),
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::Other => false,
    }
}

fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        5 | 7 => true,
        // STAP-A: 2-byte sizes then NAL units.
        24 => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                if size == 0 || rest.len() < 2 + size {
                    return false;
                }
                if matches!(rest[2] & 0x1f, 5 | 7) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        // FU-A: start bit set and the fragmented NAL is IDR.
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        _ => false,
    }
}

fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&desc) = payload.first() else {
        return false;
    };
    let start = desc & 0x10 != 0;
    let partition = desc & 0x0f;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if desc & 0x80 != 0 {
        let Some(&ext) = payload.get(i) else {
            return false;
        };
        i += 1;
        if ext & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = payload.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    // VP8 payload header: P bit (bit 0) is 0 for key frames.
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// The latest keyframe group of a channel's video: every packet since the last keyframe
/// start, so a new viewer's first picture is a complete keyframe.
#[derive(Debug, Default)]
pub struct GopCache {
    packets: Vec<rtp::Packet>,
    /// Whether `packets` begins at a keyframe (false after overflow until the next one).
    valid: bool,
    /// Timestamp of the keyframe that began the group: packets of the same frame that
    /// carry the start flag again (e.g. SPS then IDR) do not restart it.
    keyframe_ts: Option<u32>,
    max_packets: usize,
}

impl GopCache {
    /// A cache holding at most `max_packets`.
    pub fn new(max_packets: usize) -> GopCache {
        GopCache {
            packets: Vec::new(),
            valid: false,
            keyframe_ts: None,
            max_packets,
        }
    }

    /// Records a video packet. Returns true when it started a new keyframe group.
    pub fn push(&mut self, codec: VideoCodec, packet: &rtp::Packet) -> bool {
        let keyframe = starts_keyframe(codec, &packet.payload);
        let new_group = keyframe && self.keyframe_ts != Some(packet.header.timestamp);
        if new_group {
            self.packets.clear();
            self.valid = true;
            self.keyframe_ts = Some(packet.header.timestamp);
        }
        if self.valid {
            if self.packets.len() >= self.max_packets {
                self.packets = Vec::new();
                self.valid = false;
            } else {
                self.packets.push(packet.clone());
            }
        }
        new_group
    }

    /// The cached group, empty when none is usable.
    pub fn packets(&self) -> &[rtp::Packet] {
        if self.valid { &self.packets } else { &[] }
    }

    /// Forgets everything (publisher left).
    pub fn clear(&mut self) {
        self.packets.clear();
        self.valid = false;
        self.keyframe_ts = None;
    }
}

/// The channel's recent video packets, for answering viewers' NACKs: one buffer per
/// channel instead of one per viewer, holding the shared packets.
#[derive(Debug)]
pub struct RetransmitBuffer {
    slots: Vec<Option<rtp::Packet>>,
    /// The stream's rate, measured on the packets pushed (for viewers' budgets).
    rate: StreamRate,
}

/// A video stream's payload rate, measured over windows of about a second of its RTP
/// timestamps (90 kHz for every video codec), so it needs no clock.
#[derive(Debug, Default)]
struct StreamRate {
    /// The first RTP timestamp of the window being measured, and its payload bytes.
    window: Option<(u32, u64)>,
    /// Bytes a second over the last whole window.
    bytes_per_sec: u64,
}

impl StreamRate {
    const CLOCK: u64 = 90_000;

    fn push(&mut self, timestamp: u32, bytes: usize) {
        let Some((start, sum)) = self.window.as_mut() else {
            self.window = Some((timestamp, bytes as u64));
            return;
        };
        *sum += bytes as u64;
        let elapsed = u64::from(timestamp.wrapping_sub(*start));
        if elapsed >= Self::CLOCK {
            // A timestamp jump (a new source, a backwards step) is no measurement.
            if elapsed <= 10 * Self::CLOCK {
                self.bytes_per_sec = *sum * Self::CLOCK / elapsed;
            }
            self.window = Some((timestamp, 0));
        }
    }
}

impl Default for RetransmitBuffer {
    /// 512 packets: about 4 s of 1 Mbps video.
    fn default() -> Self {
        RetransmitBuffer::new(512)
    }
}

impl RetransmitBuffer {
    /// A buffer of `size` packets (rounded up to a power of two).
    pub fn new(size: usize) -> RetransmitBuffer {
        RetransmitBuffer {
            slots: vec![None; size.max(1).next_power_of_two()],
            rate: StreamRate::default(),
        }
    }

    fn slot(&self, seq: u16) -> usize {
        seq as usize & (self.slots.len() - 1)
    }

    /// Remembers a packet (replacing the one `size` sequence numbers older).
    pub fn push(&mut self, packet: &rtp::Packet) {
        let i = self.slot(packet.header.sequence_number);
        self.slots[i] = Some(packet.clone());
        self.rate
            .push(packet.header.timestamp, packet.payload.len());
    }

    /// The stream's payload rate in bytes a second, measured on the packets pushed over
    /// the last second or so (0 until then).
    pub fn bytes_per_sec(&self) -> u64 {
        self.rate.bytes_per_sec
    }

    /// The source packet `seq` of stream `ssrc`, if still held.
    pub fn get(&self, ssrc: u32, seq: u16) -> Option<&rtp::Packet> {
        self.slots[self.slot(seq)]
            .as_ref()
            .filter(|p| p.header.ssrc == ssrc && p.header.sequence_number == seq)
    }

    /// Forgets everything (the source changed).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.rate = StreamRate::default();
    }
}

/// One viewer's retransmission budget: a token bucket in bytes, refilled at about twice
/// its stream's rate (never less than [`RetransmitBudget::FLOOR`]) and holding half a
/// second of that. A viewer NACKing everything gets no more than that, whatever it asks.
/// Time is an input.
#[derive(Debug, Default)]
pub struct RetransmitBudget {
    /// Bytes it may still be sent, as of `at`.
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` before the first retransmission
    /// (the bucket starts full).
    at: Option<Instant>,
}

impl RetransmitBudget {
    /// The budget's rate as a multiple of the stream's.
    pub const FACTOR: u64 = 2;
    /// The least budget in bytes a second (512 kbit/s): a stream just started or a still
    /// picture has little rate to measure, and its losses still need answers.
    pub const FLOOR: u64 = 64_000;
    /// How much of a second's budget may be spent at once.
    const BURST: f64 = 0.5;

    /// Takes `bytes` from the budget of a viewer of a stream of `stream_rate` bytes a
    /// second at `now`; false (and nothing taken) when they would exceed it.
    pub fn take(&mut self, bytes: usize, stream_rate: u64, now: Instant) -> bool {
        let rate = (stream_rate * Self::FACTOR).max(Self::FLOOR) as f64;
        let full = rate * Self::BURST;
        self.tokens = match self.at {
            Some(at) => {
                (self.tokens + rate * now.saturating_duration_since(at).as_secs_f64()).min(full)
            }
            None => full,
        };
        self.at = Some(now);
        if self.tokens < bytes as f64 {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

/// What to do about a viewer whose receiver reports show heavy loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthAction {
    /// Nothing.
    Keep,
    /// Stop its video until the next keyframe, so it recovers from a clean picture instead
    /// of retransmitting a backlog its link cannot carry.
    SkipToKeyframe,
    /// Disconnect it: its link has not carried the stream for a long time.
    Drop,
}

/// Tracks one viewer's reported loss. Time is an input, so tests need no sleeping.
#[derive(Debug, Default)]
pub struct ViewerHealth {
    /// Since when reports have been lossy, if they are.
    lossy_since: Option<Instant>,
    /// When the viewer was last sent to the next keyframe.
    last_skip: Option<Instant>,
}

impl ViewerHealth {
    /// Loss fraction (of 256) above which a report counts as lossy: 25 %.
    pub const LOSSY: u8 = 64;
    /// Minimum time between two keyframe skips.
    pub const SKIP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
    /// How long a viewer may stay lossy before it is dropped.
    pub const DROP_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

    /// Takes one receiver report's `fraction_lost` (0..=255 meaning 0..100 %).
    pub fn on_report(&mut self, fraction_lost: u8, now: Instant) -> HealthAction {
        if fraction_lost < Self::LOSSY {
            self.lossy_since = None;
            return HealthAction::Keep;
        }
        let since = *self.lossy_since.get_or_insert(now);
        if now.duration_since(since) >= Self::DROP_AFTER {
            return HealthAction::Drop;
        }
        if self
            .last_skip
            .is_none_or(|t| now.duration_since(t) >= Self::SKIP_INTERVAL)
        {
            self.last_skip = Some(now);
            return HealthAction::SkipToKeyframe;
        }
        HealthAction::Keep
    }
}

/// Rewrites one forwarded stream's RTP headers for one viewer so its sequence numbers and
/// timestamps stay continuous across publisher changes (a new publisher's packets follow
/// the old ones as if nothing happened), with the viewer's SSRC and payload type.
#[derive(Debug)]
pub struct Rewriter {
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    source_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    last_at: Option<Instant>,
    /// The last few runs of outgoing numbers, newest last, each with its own mapping: a
    /// NACK for a number sent before a resync is answered with the packet once sent
    /// under it, never with whatever the current mapping puts there (same SSRC, rollover
    /// and sequence number with other bytes would reuse an AES-GCM nonce).
    runs: VecDeque<Run>,
}

/// A run of outgoing sequence numbers sent with one mapping from one source stream.
#[derive(Debug, Clone, Copy)]
struct Run {
    source_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The newest outgoing number of the run.
    last_out: u16,
    /// How many numbers it covers (up to and including `last_out`), saturating.
    covered: u32,
}

impl Run {
    /// Whether `out_seq` was sent in this run.
    fn holds(&self, out_seq: u16) -> bool {
        u32::from(self.last_out.wrapping_sub(out_seq)) < self.covered.min(0x8000)
    }
}

impl Rewriter {
    /// A rewriter sending as `ssrc` with `payload_type` at `clock_rate` Hz.
    pub fn new(ssrc: u32, payload_type: u8, clock_rate: u32) -> Rewriter {
        Rewriter {
            ssrc,
            payload_type,
            clock_rate: clock_rate.max(1),
            source_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            last_out_seq: 0,
            last_out_ts: 0,
            last_at: None,
            runs: VecDeque::new(),
        }
    }

    /// Runs kept for answering NACKs: resyncs are seconds apart, the channel's buffer
    /// holds a few seconds.
    const RUNS: usize = 8;

    /// Makes the next packet re-anchor the mapping (after skipping packets or a source
    /// change), so the viewer sees no gap in sequence numbers.
    pub fn resync(&mut self) {
        self.source_ssrc = None;
    }

    /// The SSRC this viewer's stream is sent with.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP timestamp of this stream at `now`, extrapolated from the last packet sent
    /// (for sender reports); `None` before the first packet.
    pub fn rtp_time_at(&self, now: Instant) -> Option<u32> {
        let last_at = self.last_at?;
        let elapsed = now.saturating_duration_since(last_at).as_secs_f64();
        Some(
            self.last_out_ts
                .wrapping_add((elapsed * f64::from(self.clock_rate)) as u32),
        )
    }

    /// The source stream and sequence number of the packet sent under an outgoing
    /// sequence number, for answering a NACK; `None` when nothing this rewriter still
    /// remembers was sent under it.
    pub fn source_seq(&self, out_seq: u16) -> Option<(u32, u16)> {
        self.runs
            .iter()
            .rev()
            .find(|run| run.holds(out_seq))
            .map(|run| (run.source_ssrc, out_seq.wrapping_sub(run.seq_offset)))
    }

    /// `packet` again exactly as it was sent before (same outgoing sequence number and
    /// timestamp), whatever resyncs came since; `None` when it was never sent. Changes
    /// nothing: a retransmission neither anchors nor advances the stream.
    pub fn resent(&self, packet: &rtp::Packet) -> Option<rtp::Packet> {
        let header = &packet.header;
        let run = self.runs.iter().rev().find(|run| {
            run.source_ssrc == header.ssrc
                && run.holds(header.sequence_number.wrapping_add(run.seq_offset))
        })?;
        Some(self.outgoing(packet, run.seq_offset, run.ts_offset))
    }

    /// The outgoing header for `packet` received at `now`. Payload is untouched (shared).
    pub fn rewrite(&mut self, packet: &rtp::Packet, now: Instant) -> rtp::Packet {
        let header = &packet.header;
        if self.source_ssrc != Some(header.ssrc) {
            match self.last_at {
                Some(last_at) => {
                    let next_seq = self.last_out_seq.wrapping_add(1);
                    let elapsed = now.saturating_duration_since(last_at).as_secs_f64();
                    let advance = ((elapsed * self.clock_rate as f64) as u32).max(1);
                    let next_ts = self.last_out_ts.wrapping_add(advance);
                    self.seq_offset = next_seq.wrapping_sub(header.sequence_number);
                    self.ts_offset = next_ts.wrapping_sub(header.timestamp);
                }
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
            self.source_ssrc = Some(header.ssrc);
        }
        let seq = header.sequence_number.wrapping_add(self.seq_offset);
        let ts = header.timestamp.wrapping_add(self.ts_offset);
        let anchored = self.runs.back().is_some_and(|run| {
            run.source_ssrc == header.ssrc
                && run.seq_offset == self.seq_offset
                && run.ts_offset == self.ts_offset
        });
        if !anchored {
            if self.runs.len() == Self::RUNS {
                self.runs.pop_front();
            }
            self.runs.push_back(Run {
                source_ssrc: header.ssrc,
                seq_offset: self.seq_offset,
                ts_offset: self.ts_offset,
                last_out: seq,
                covered: 1,
            });
        }
        // Track the newest output only; out-of-order older packets keep their slot.
        let newer = self.last_at.is_none() || seq.wrapping_sub(self.last_out_seq) < 0x8000;
        if newer {
            self.last_out_seq = seq;
            self.last_out_ts = ts;
            self.last_at = Some(now);
            if let Some(run) = self.runs.back_mut() {
                let step = u32::from(seq.wrapping_sub(run.last_out));
                run.covered = run.covered.saturating_add(step);
                run.last_out = seq;
            }
        }
        self.outgoing(packet, self.seq_offset, self.ts_offset)
    }

    /// `packet` with this viewer's header under a mapping.
    fn outgoing(&self, packet: &rtp::Packet, seq_offset: u16, ts_offset: u32) -> rtp::Packet {
        let header = &packet.header;
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                padding: false,
                extension: false,
                marker: header.marker,
                payload_type: self.payload_type,
                sequence_number: header.sequence_number.wrapping_add(seq_offset),
                timestamp: header.timestamp.wrapping_add(ts_offset),
                ssrc: self.ssrc,
                csrc: Vec::new(),
                extension_profile: 0,
                extensions: Vec::new(),
                extensions_padding: 0,
            },
            payload: packet.payload.clone(),
        }
    }
}

/// An RTP packet with only the fields a relay source sets.
pub fn packet(
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: bytes::Bytes,
) -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            marker,
            ..Default::default()
        },
        payload,
    }
}

/// H.264 constrained baseline, packetization-mode 1: what every browser decodes.
pub fn h264_codec() -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: "video/H264".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .into(),
        rtcp_feedback: vec![],
    }
}

/// VP8 (RFC 7741).
pub fn vp8_codec() -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Opus 48 kHz stereo.
pub fn opus_codec() -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn pkt(ssrc: u32, seq: u16, ts: u32, payload: &'static [u8]) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                ssrc,
                sequence_number: seq,
                timestamp: ts,
                payload_type: 96,
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn h264_keyframe_starts_in_single_stap_and_fu() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 1, 2]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 1]));
        // STAP-A with SPS (7) and PPS (8).
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]
        ));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0, 1, 0x41]));
        // FU-A start of IDR, middle of IDR, start of non-IDR.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x81, 0]));
        assert!(!starts_keyframe(VideoCodec::H264, &[]));
        // Truncated STAP-A must not panic.
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0, 9, 0x67]));
    }

    #[test]
    fn vp8_keyframe_detection() {
        // S=1, PID=0, no extension; payload header P=0.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x00]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x01]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x00]));
        // X=1, I=1 with 15-bit picture id.
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0x80, 0x81, 0x02, 0x00]
        ));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90]));
    }

    #[test]
    fn retransmit_buffer_finds_recent_packets_only() {
        let mut buf = RetransmitBuffer::new(4);
        for seq in 10..16 {
            buf.push(&pkt(5, seq, 0, b"x"));
        }
        assert!(buf.get(5, 15).is_some());
        assert!(buf.get(5, 12).is_some());
        assert!(buf.get(5, 11).is_none(), "overwritten by 15");
        assert!(buf.get(6, 15).is_none(), "other stream");
        buf.clear();
        assert!(buf.get(5, 15).is_none());
    }

    #[test]
    fn nacked_sequence_numbers_map_back_to_the_source() {
        let t0 = Instant::now();
        let mut rw = Rewriter::new(9, 96, 90_000);
        rw.rewrite(&pkt(1, 500, 0, b"a"), t0);
        rw.rewrite(&pkt(2, 9_000, 0, b"b"), t0 + Duration::from_millis(20));
        let out = rw.rewrite(&pkt(2, 9_001, 3_000, b"c"), t0 + Duration::from_millis(40));
        assert_eq!(rw.source_seq(out.header.sequence_number), Some((2, 9_001)));
    }

    #[test]
    fn a_number_sent_before_a_resync_keeps_its_packet() {
        let t0 = Instant::now();
        let mut rw = Rewriter::new(9, 96, 90_000);
        let before: Vec<_> = (100..=110u16)
            .map(|seq| rw.rewrite(&pkt(1, seq, u32::from(seq) * 3_000, b"a"), t0))
            .collect();
        // Skipped to the keyframe at 150: the viewer's numbering goes on at 111.
        rw.resync();
        let key = rw.rewrite(&pkt(1, 150, 450_000, b"k"), t0);
        assert_eq!(key.header.sequence_number, 111);
        // 105 was sent as source 105, not as what the new mapping puts there (144).
        assert_eq!(rw.source_seq(105), Some((1, 105)));
        assert_eq!(rw.source_seq(111), Some((1, 150)));
        let again = rw.resent(&pkt(1, 105, 315_000, b"a")).unwrap();
        assert_eq!(again.header, before[5].header);
        assert_eq!(rw.resent(&key_packet()).unwrap().header, key.header);
        // Numbers never sent, and skipped packets, are not sent at all.
        assert_eq!(rw.source_seq(112), None);
        assert!(rw.resent(&pkt(1, 120, 360_000, b"s")).is_none());
        assert!(rw.resent(&pkt(1, 111, 333_000, b"s")).is_none());
        assert!(rw.resent(&pkt(2, 105, 315_000, b"a")).is_none());
        // A retransmission neither anchors nor advances the stream.
        let next = rw.rewrite(&pkt(1, 151, 450_000, b"n"), t0);
        assert_eq!(next.header.sequence_number, 112);

        fn key_packet() -> rtp::Packet {
            pkt(1, 150, 450_000, b"k")
        }
    }

    #[test]
    fn the_retransmission_budget_is_twice_the_stream_with_a_floor() {
        let t0 = Instant::now();
        let mut budget = RetransmitBudget::default();
        // 200 kB/s of stream: 400 kB/s of budget, half a second of it at once.
        assert!(budget.take(200_000, 200_000, t0));
        assert!(!budget.take(1_000, 200_000, t0));
        assert!(budget.take(40_000, 200_000, t0 + Duration::from_millis(100)));
        assert!(!budget.take(1_000, 200_000, t0 + Duration::from_millis(100)));
        // A stream with no measured rate yet still gets the floor.
        let mut budget = RetransmitBudget::default();
        assert!(budget.take(RetransmitBudget::FLOOR as usize / 2, 0, t0));
        assert!(!budget.take(1, 0, t0));
    }

    #[test]
    fn the_buffer_measures_its_streams_rate_on_rtp_time() {
        let mut buf = RetransmitBuffer::new(64);
        assert_eq!(buf.bytes_per_sec(), 0);
        // 100 packets of 1,000 bytes over 2 s of 90 kHz timestamps.
        for i in 0..=100u32 {
            buf.push(&rtp::Packet {
                header: rtp::header::Header {
                    sequence_number: i as u16,
                    timestamp: i * 1_800,
                    ssrc: 1,
                    ..Default::default()
                },
                payload: Bytes::from(vec![0u8; 1_000]),
            });
        }
        let rate = buf.bytes_per_sec();
        assert!((45_000..=55_000).contains(&rate), "{rate}");
    }

    #[test]
    fn lossy_viewers_skip_then_drop() {
        let t0 = Instant::now();
        let mut h = ViewerHealth::default();
        assert_eq!(h.on_report(10, t0), HealthAction::Keep);
        assert_eq!(h.on_report(100, t0), HealthAction::SkipToKeyframe);
        assert_eq!(
            h.on_report(100, t0 + Duration::from_secs(1)),
            HealthAction::Keep
        );
        assert_eq!(
            h.on_report(100, t0 + Duration::from_secs(2)),
            HealthAction::SkipToKeyframe
        );
        // Recovery resets the clock.
        assert_eq!(
            h.on_report(0, t0 + Duration::from_secs(3)),
            HealthAction::Keep
        );
        let t1 = t0 + Duration::from_secs(4);
        h.on_report(200, t1);
        assert_eq!(
            h.on_report(200, t1 + Duration::from_secs(15)),
            HealthAction::Drop
        );
    }

    #[test]
    fn gop_cache_keeps_only_the_latest_group() {
        let mut cache = GopCache::new(100);
        assert!(!cache.push(VideoCodec::H264, &pkt(1, 1, 0, &[0x41])));
        assert!(
            cache.packets().is_empty(),
            "nothing before the first keyframe"
        );
        assert!(cache.push(VideoCodec::H264, &pkt(1, 2, 10, &[0x67])));
        assert!(
            !cache.push(VideoCodec::H264, &pkt(1, 3, 10, &[0x65])),
            "same frame"
        );
        cache.push(VideoCodec::H264, &pkt(1, 4, 20, &[0x41]));
        assert_eq!(cache.packets().len(), 3);
        assert!(cache.push(VideoCodec::H264, &pkt(1, 5, 30, &[0x65])));
        assert_eq!(cache.packets().len(), 1);
        assert_eq!(cache.packets()[0].header.sequence_number, 5);
    }

    #[test]
    fn gop_cache_overflow_drops_the_group() {
        let mut cache = GopCache::new(2);
        cache.push(VideoCodec::H264, &pkt(1, 1, 0, &[0x65]));
        cache.push(VideoCodec::H264, &pkt(1, 2, 1, &[0x41]));
        cache.push(VideoCodec::H264, &pkt(1, 3, 2, &[0x41]));
        assert!(cache.packets().is_empty());
        cache.push(VideoCodec::H264, &pkt(1, 4, 3, &[0x65]));
        assert_eq!(cache.packets().len(), 1);
    }

    #[test]
    fn rewriter_keeps_sequence_and_time_continuous_across_sources() {
        let t0 = Instant::now();
        let mut rw = Rewriter::new(777, 102, 90_000);
        let a = rw.rewrite(&pkt(1, 100, 5_000, b"a"), t0);
        let b = rw.rewrite(&pkt(1, 101, 8_000, b"b"), t0 + Duration::from_millis(33));
        assert_eq!((a.header.ssrc, a.header.payload_type), (777, 102));
        assert_eq!(
            b.header.sequence_number,
            a.header.sequence_number.wrapping_add(1)
        );
        // A new publisher with unrelated numbering one second later.
        let c = rw.rewrite(
            &pkt(2, 60_000, 1_000_000, b"c"),
            t0 + Duration::from_millis(1_033),
        );
        assert_eq!(
            c.header.sequence_number,
            b.header.sequence_number.wrapping_add(1)
        );
        let dt = c.header.timestamp.wrapping_sub(b.header.timestamp);
        assert!(
            (89_000..=91_000).contains(&dt),
            "timestamp advanced by wall time: {dt}"
        );
        assert_eq!(&c.payload[..], b"c");
        // A retransmission of an older packet maps into its own slot.
        let d = rw.rewrite(
            &pkt(2, 60_001, 1_003_000, b"d"),
            t0 + Duration::from_millis(1_066),
        );
        let old = rw.rewrite(
            &pkt(2, 59_999, 997_000, b"o"),
            t0 + Duration::from_millis(1_070),
        );
        assert_eq!(
            old.header.sequence_number,
            c.header.sequence_number.wrapping_sub(1)
        );
        assert_eq!(
            d.header.sequence_number,
            c.header.sequence_number.wrapping_add(1)
        );
    }
}

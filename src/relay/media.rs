//! Media-level helpers of the relay that need no IO: keyframe detection in RTP payloads,
//! the per-channel keyframe-group cache and the per-viewer header rewriter.

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
        }
    }

    /// Makes the next packet re-anchor the mapping (after skipping packets or a source
    /// change), so the viewer sees no gap in sequence numbers.
    pub fn resync(&mut self) {
        self.source_ssrc = None;
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
        // Track the newest output only; retransmitted older packets keep their slot.
        let newer = self.last_at.is_none() || seq.wrapping_sub(self.last_out_seq) < 0x8000;
        if newer {
            self.last_out_seq = seq;
            self.last_out_ts = ts;
            self.last_at = Some(now);
        }
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                padding: false,
                extension: false,
                marker: header.marker,
                payload_type: self.payload_type,
                sequence_number: seq,
                timestamp: ts,
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

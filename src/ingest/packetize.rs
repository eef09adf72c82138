//! Encoded media -> RTP packets for a [`crate::relay::LocalPublisher`]: H.264 per RFC 6184
//! (packetization-mode 1: single NAL, STAP-A for SPS+PPS, FU-A for large slices) with the
//! marker bit on the last packet of each picture, Opus per RFC 7587, one packet per frame.

use bytes::Bytes;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::packetizer::Payloader;

pub use crate::relay::media::packet;

/// Largest RTP payload: room under a 1280-byte datagram for headers, extensions and SRTP.
pub const MAX_PAYLOAD: usize = 1100;
/// Payload type written into video packets (the relay rewrites it per viewer).
pub const VIDEO_PT: u8 = 102;
/// Payload type written into audio packets (rewritten per viewer).
pub const AUDIO_PT: u8 = 111;

/// Per-source RTP state: sequence numbers, SSRCs and timestamp offsets of both tracks.
pub struct RtpPacketizer {
    /// Keeps SPS/PPS between calls to aggregate them with the following slice.
    payloader: H264Payloader,
    /// Set when the video is VP8 (RFC 7741) instead of H.264.
    vp8: Option<Vp8Payloader>,
    video_seq: u16,
    audio_seq: u16,
    video_ssrc: u32,
    audio_ssrc: u32,
    /// Random starting points, as RFC 3550 asks, so timestamps reveal nothing and wrap
    /// is exercised.
    video_ts_offset: u32,
    audio_ts_offset: u32,
}

impl Default for RtpPacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpPacketizer {
    /// Fresh state with random SSRCs, sequence numbers and timestamp offsets.
    pub fn new() -> RtpPacketizer {
        RtpPacketizer {
            payloader: H264Payloader::default(),
            vp8: None,
            video_seq: rand::random(),
            audio_seq: rand::random(),
            video_ssrc: rand::random(),
            audio_ssrc: rand::random(),
            video_ts_offset: rand::random(),
            audio_ts_offset: rand::random(),
        }
    }

    /// Like [`RtpPacketizer::new`], for VP8 video (frames, RFC 7741 payload descriptors).
    pub fn vp8() -> RtpPacketizer {
        RtpPacketizer {
            vp8: Some(Vp8Payloader::default()),
            ..RtpPacketizer::new()
        }
    }

    /// Packetizes one access unit (Annex-B H.264, or a VP8 frame) presented at `pts_90k`.
    pub fn video(&mut self, access_unit: &Bytes, pts_90k: i64) -> Vec<rtp::Packet> {
        let payloads = match &mut self.vp8 {
            Some(vp8) => vp8.payload(MAX_PAYLOAD, access_unit),
            None => self.payloader.payload(MAX_PAYLOAD, access_unit),
        }
        .unwrap_or_default();
        let ts = self.video_ts_offset.wrapping_add(pts_90k as u32);
        let n = payloads.len();
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let seq = self.video_seq;
                self.video_seq = self.video_seq.wrapping_add(1);
                packet(VIDEO_PT, self.video_ssrc, seq, ts, i + 1 == n, payload)
            })
            .collect()
    }

    /// Packetizes one Opus packet presented at `pts_48k`.
    pub fn audio(&mut self, payload: Bytes, pts_48k: i64) -> rtp::Packet {
        let seq = self.audio_seq;
        self.audio_seq = self.audio_seq.wrapping_add(1);
        let ts = self.audio_ts_offset.wrapping_add(pts_48k as u32);
        packet(AUDIO_PT, self.audio_ssrc, seq, ts, false, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_pictures_fragment_with_one_marker_and_one_timestamp() {
        let mut p = RtpPacketizer::new();
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend(std::iter::repeat_n(0x11u8, 5000));
        let packets = p.video(&Bytes::from(au), 3000);
        assert!(packets.len() >= 5, "{} packets", packets.len());
        assert_eq!(packets.iter().filter(|p| p.header.marker).count(), 1);
        assert!(packets.last().is_some_and(|p| p.header.marker));
        let ts = packets[0].header.timestamp;
        assert!(packets.iter().all(|p| p.header.timestamp == ts));
        assert!(packets.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
        for w in packets.windows(2) {
            assert_eq!(
                w[1].header.sequence_number,
                w[0].header.sequence_number.wrapping_add(1)
            );
        }
        let next = p.video(&Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9a]), 6000);
        assert_eq!(next[0].header.timestamp.wrapping_sub(ts), 3000);
    }
}

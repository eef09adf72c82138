//! A synthetic, looping media source: H.264 from an Annex-B file and Opus from an Ogg file,
//! packetized into RTP payloads once, up front.
//!
//! Packetizing ahead of time (with `rtc`'s [`H264Payloader`]) means the publisher knows the
//! exact payload bytes it puts on the wire, which is what byte-identity checks on the viewer
//! side compare against. It also keeps the per-packet cost of a publisher tiny, so a benchmark
//! measures the server rather than the source.
//!
//! The module also holds the small codec inspectors the viewer uses to find keyframes in RTP
//! payloads (H.264 per RFC 6184, VP8 per RFC 7741).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;

use super::{ClientError, Result};

/// RTP clock rate of H.264 and every other video codec in WebRTC.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// RTP clock rate of Opus (always 48 kHz on the wire, whatever the input rate).
pub const AUDIO_CLOCK_RATE: u32 = 48_000;
/// Default largest RTP payload, in bytes. It leaves room under a 1280-byte datagram for the
/// RTP header, header extensions added by interceptors and the SRTP auth tag.
pub const DEFAULT_MAX_PAYLOAD: usize = 1100;
/// Default frame rate assumed for the Annex-B file, which carries no timestamps itself.
pub const DEFAULT_FPS: u32 = 30;
/// Opus bitrate used by [`make_test_media`].
pub const TEST_AUDIO_KBPS: u32 = 64;

/// H.264 NAL unit type of an IDR slice (a keyframe).
pub const NAL_IDR: u8 = 5;
/// H.264 NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// H.264 NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// RTP aggregation packet type STAP-A (RFC 6184 §5.7.1).
pub const NAL_STAP_A: u8 = 24;
/// RTP aggregation packet type STAP-B (RFC 6184 §5.7.1).
pub const NAL_STAP_B: u8 = 25;
/// RTP fragmentation unit type FU-A (RFC 6184 §5.8).
pub const NAL_FU_A: u8 = 28;
/// RTP fragmentation unit type FU-B (RFC 6184 §5.8).
pub const NAL_FU_B: u8 = 29;

/// One H.264 access unit (one picture), ready to send.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// The RTP payloads of this frame in send order. They share one RTP timestamp and the last
    /// one carries the marker bit.
    pub payloads: Vec<Bytes>,
    /// How far the RTP timestamp advances after this frame, in 90 kHz ticks; also how long the
    /// pacer waits before the next frame.
    pub duration: u32,
    /// Whether the access unit contains an IDR slice, so tests can tell where keyframes are.
    pub is_keyframe: bool,
}

/// One Opus packet, ready to send (Opus packets are sent one per RTP packet, unchanged).
#[derive(Debug, Clone)]
pub struct AudioPacket {
    /// The Opus packet, which is also the RTP payload.
    pub payload: Bytes,
    /// Its duration in 48 kHz samples, from the Opus TOC byte; the RTP timestamp advance.
    pub duration: u32,
}

/// A looping audio + video source held in memory, already split into RTP payloads.
///
/// Cloning is cheap (the frames are shared), so one source can feed several publishers.
#[derive(Debug, Clone)]
pub struct SyntheticMedia {
    /// Video access units in decode order (the source has no B-frames, so also display order).
    video: Arc<[VideoFrame]>,
    /// Opus packets in order.
    audio: Arc<[AudioPacket]>,
}

impl SyntheticMedia {
    /// Loads an H.264 Annex-B file and an Ogg Opus file with the default frame rate
    /// ([`DEFAULT_FPS`]) and payload size ([`DEFAULT_MAX_PAYLOAD`]).
    pub fn load(h264_path: &Path, ogg_path: &Path) -> Result<Self> {
        Self::load_with(h264_path, ogg_path, DEFAULT_FPS, DEFAULT_MAX_PAYLOAD)
    }

    /// Loads the two files with an explicit frame rate (Annex-B has no timestamps) and
    /// largest RTP payload size.
    pub fn load_with(
        h264_path: &Path,
        ogg_path: &Path,
        fps: u32,
        max_payload: usize,
    ) -> Result<Self> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| ClientError::Io {
                path: p.display().to_string(),
                source,
            })
        };
        Self::from_bytes(&read(h264_path)?, &read(ogg_path)?, fps, max_payload)
    }

    /// Builds the source from in-memory file contents.
    pub fn from_bytes(h264: &[u8], ogg: &[u8], fps: u32, max_payload: usize) -> Result<Self> {
        if fps == 0 || fps > VIDEO_CLOCK_RATE {
            return Err(ClientError::InvalidMedia(format!(
                "frame rate {fps} is out of range"
            )));
        }
        // The payloader needs room for a STAP-A of SPS + PPS and for FU-A progress.
        if max_payload < 100 {
            return Err(ClientError::InvalidMedia(format!(
                "max RTP payload {max_payload} is too small"
            )));
        }
        let frame_ticks = VIDEO_CLOCK_RATE / fps;
        let nals = split_annexb(h264);
        let access_units = group_access_units(&nals);
        let mut payloader = H264Payloader::default();
        let mut video = Vec::with_capacity(access_units.len());
        for au in &access_units {
            let payloads = packetize_access_unit(&mut payloader, au, max_payload)?;
            if payloads.is_empty() {
                continue;
            }
            video.push(VideoFrame {
                payloads,
                duration: frame_ticks,
                is_keyframe: au.iter().any(|n| nal_type(n) == NAL_IDR),
            });
        }
        if video.is_empty() {
            return Err(ClientError::InvalidMedia(
                "no H.264 pictures found in the Annex-B input".to_owned(),
            ));
        }
        if !video[0].is_keyframe {
            return Err(ClientError::InvalidMedia(
                "the H.264 input does not start with an IDR picture".to_owned(),
            ));
        }

        let mut audio = Vec::new();
        for payload in ogg_opus_packets(ogg)? {
            let duration = opus_packet_duration(&payload).ok_or_else(|| {
                ClientError::InvalidMedia("malformed Opus packet (bad TOC byte)".to_owned())
            })?;
            audio.push(AudioPacket { payload, duration });
        }
        if audio.is_empty() {
            return Err(ClientError::InvalidMedia(
                "no Opus audio packets in the Ogg input".to_owned(),
            ));
        }
        Ok(Self {
            video: video.into(),
            audio: audio.into(),
        })
    }

    /// The video frames, in send order.
    pub fn video_frames(&self) -> &[VideoFrame] {
        &self.video
    }

    /// The audio packets, in send order.
    pub fn audio_packets(&self) -> &[AudioPacket] {
        &self.audio
    }

    /// Length of one pass over the video file.
    pub fn video_duration(&self) -> Duration {
        let ticks: u64 = self.video.iter().map(|f| u64::from(f.duration)).sum();
        Duration::from_micros(ticks * 1_000_000 / u64::from(VIDEO_CLOCK_RATE))
    }

    /// Length of one pass over the audio file.
    pub fn audio_duration(&self) -> Duration {
        let samples: u64 = self.audio.iter().map(|p| u64::from(p.duration)).sum();
        Duration::from_micros(samples * 1_000_000 / u64::from(AUDIO_CLOCK_RATE))
    }
}

/// Splits an H.264 Annex-B byte stream into NAL units (without start codes).
///
/// Accepts 3- and 4-byte start codes; bytes before the first start code are ignored and
/// trailing zero bytes (the `zero_byte` of a following 4-byte start code, or padding) are
/// trimmed from each unit.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    fn push<'a>(nals: &mut Vec<&'a [u8]>, mut nal: &'a [u8]) {
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    let mut nals = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                push(&mut nals, &data[s..i]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push(&mut nals, &data[s.min(data.len())..]);
    }
    nals
}

/// The `nal_unit_type` of a NAL unit (low five bits of its first byte); 0 for an empty slice.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

fn is_vcl(nal_type: u8) -> bool {
    (1..=5).contains(&nal_type)
}

/// Groups NAL units into access units (pictures) following H.264 §7.4.1.2.3.
///
/// A new access unit starts at an access unit delimiter, SPS, PPS, SEI or types 14–18 that
/// follow a slice, or at a slice whose `first_mb_in_slice` is 0 following a slice. Leading
/// non-slice units stay with the picture they precede; trailing ones without a slice are
/// dropped.
pub fn group_access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut aus = Vec::new();
    let mut current: Vec<&'a [u8]> = Vec::new();
    let mut seen_vcl = false;
    for &nal in nals {
        let t = nal_type(nal);
        let starts_new = if is_vcl(t) {
            // first_mb_in_slice is ue(v); a value of 0 is coded as the single bit '1'.
            seen_vcl && nal.get(1).is_some_and(|b| b & 0x80 != 0)
        } else {
            seen_vcl && matches!(t, 6..=9 | 14..=18)
        };
        if starts_new {
            aus.push(std::mem::take(&mut current));
            seen_vcl = false;
        }
        current.push(nal);
        seen_vcl |= is_vcl(t);
    }
    if seen_vcl {
        aus.push(current);
    }
    aus
}

/// Packetizes one access unit into RTP payloads (single NAL units, STAP-A for SPS+PPS, FU-A
/// for large slices) using `rtc`'s RFC 6184 payloader.
///
/// The payloader keeps SPS/PPS between calls to put them in front of the next slice, so use
/// one payloader per stream and feed it access units in order.
pub fn packetize_access_unit(
    payloader: &mut H264Payloader,
    au: &[&[u8]],
    max_payload: usize,
) -> Result<Vec<Bytes>> {
    let len: usize = au.iter().map(|n| n.len() + 4).sum();
    let mut annexb = BytesMut::with_capacity(len);
    for nal in au {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(nal);
    }
    payloader
        .payload(max_payload, &annexb.freeze())
        .map_err(|e| ClientError::InvalidMedia(format!("H.264 packetization failed: {e}")))
}

/// Extracts the Opus audio packets of the first logical stream of an Ogg file (RFC 7845),
/// skipping the `OpusHead` and `OpusTags` header packets.
///
/// Packets are reassembled from the page segment tables, so packets spanning pages and pages
/// holding many packets both work.
pub fn ogg_opus_packets(data: &[u8]) -> Result<Vec<Bytes>> {
    let bad = |what: String| ClientError::InvalidMedia(format!("Ogg: {what}"));
    let mut packets = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut serial: Option<u32> = None;
    let mut pos = 0usize;
    while pos < data.len() {
        let header = data
            .get(pos..pos + 27)
            .ok_or_else(|| bad(format!("truncated page header at byte {pos}")))?;
        if &header[..4] != b"OggS" {
            return Err(bad(format!("no page signature at byte {pos}")));
        }
        let page_serial = u32::from_le_bytes([header[14], header[15], header[16], header[17]]);
        let segments = usize::from(header[26]);
        let table = data
            .get(pos + 27..pos + 27 + segments)
            .ok_or_else(|| bad(format!("truncated segment table at byte {pos}")))?;
        let body_len: usize = table.iter().map(|&s| usize::from(s)).sum();
        let body_start = pos + 27 + segments;
        let body = data
            .get(body_start..body_start + body_len)
            .ok_or_else(|| bad(format!("truncated page body at byte {pos}")))?;
        pos = body_start + body_len;
        match serial {
            None => serial = Some(page_serial),
            Some(s) if s != page_serial => continue,
            Some(_) => {}
        }
        let mut off = 0usize;
        for &seg in table {
            let seg = usize::from(seg);
            partial.extend_from_slice(&body[off..off + seg]);
            off += seg;
            if seg < 255 {
                packets.push(Bytes::from(std::mem::take(&mut partial)));
            }
        }
    }
    if packets.len() < 2 || !packets[0].starts_with(b"OpusHead") {
        return Err(bad("not an Opus stream (no OpusHead)".to_owned()));
    }
    if !packets[1].starts_with(b"OpusTags") {
        return Err(bad("OpusTags header missing".to_owned()));
    }
    Ok(packets
        .into_iter()
        .skip(2)
        .filter(|p| !p.is_empty())
        .collect())
}

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1).
///
/// Returns `None` for an empty packet, or a code-3 packet without its frame-count byte.
pub fn opus_packet_duration(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame_samples: u32 = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(frame_samples * frames)
}

/// What an H.264 RTP payload (RFC 6184) carries, as far as keyframe detection cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct H264PayloadInfo {
    /// Contains (a fragment of) an IDR slice, NAL type 5.
    pub has_idr: bool,
    /// Contains a sequence parameter set, NAL type 7.
    pub has_sps: bool,
    /// Begins a NAL unit: a single NAL unit, an aggregation packet, or the first fragment of
    /// an FU-A/FU-B. A frame can only start with such a packet.
    pub starts_nal: bool,
}

/// Inspects an H.264 RTP payload: single NAL units, STAP-A/STAP-B aggregates (every member)
/// and FU-A/FU-B fragments (the type of the fragmented unit).
pub fn h264_payload_info(payload: &[u8]) -> H264PayloadInfo {
    let mut info = H264PayloadInfo::default();
    let mut note = |t: u8| {
        info.has_idr |= t == NAL_IDR;
        info.has_sps |= t == NAL_SPS;
    };
    let t = nal_type(payload);
    match t {
        1..=23 => {
            note(t);
            info.starts_nal = true;
        }
        NAL_STAP_A | NAL_STAP_B => {
            // STAP-B carries a 16-bit decoding order number before the first unit.
            let mut off = if t == NAL_STAP_A { 1 } else { 3 };
            while let Some(size) = payload.get(off..off + 2) {
                let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                off += 2;
                match payload.get(off..off + size) {
                    Some(unit) if size > 0 => note(nal_type(unit)),
                    _ => break,
                }
                off += size;
            }
            info.starts_nal = true;
        }
        NAL_FU_A | NAL_FU_B => {
            if let Some(fu_header) = payload.get(1) {
                note(fu_header & 0x1f);
                info.starts_nal = fu_header & 0x80 != 0;
            }
        }
        _ => {}
    }
    info
}

/// Whether a VP8 RTP payload (RFC 7741) is the first packet of a keyframe: the start of
/// partition 0 with the inverse key-frame flag `P` of the VP8 frame header cleared.
pub fn vp8_payload_is_keyframe(payload: &[u8]) -> bool {
    vp8_keyframe_flag(payload).unwrap_or(false)
}

/// Whether a VP8 RTP payload starts a frame (`S` bit set, partition index 0).
pub fn vp8_payload_starts_frame(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|b| b & 0x10 != 0 && b & 0x07 == 0)
}

fn vp8_keyframe_flag(payload: &[u8]) -> Option<bool> {
    let first = *payload.first()?;
    if !vp8_payload_starts_frame(payload) {
        return Some(false);
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(i)?;
        i += 1;
        if ext & 0x80 != 0 {
            // PictureID: 7 or 15 bits, the M bit says which.
            i += if *payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            i += 1; // TID / Y / KEYIDX
        }
    }
    Some(*payload.get(i)? & 0x01 == 0)
}

/// Creates a test H.264 file and an Ogg Opus file with the ffmpeg CLI and returns their paths
/// (`test.h264`, `test.ogg` in `dir`).
///
/// Video: `testsrc` 640x360 at 30 fps, constrained baseline, no B-frames, an IDR every 30
/// frames (1 s), capped at `video_kbps`. Audio: a 440 Hz sine, 48 kHz, Opus at
/// [`TEST_AUDIO_KBPS`]. Both are `duration` long. Blocking: call it from `spawn_blocking` or
/// before starting the async work.
pub fn make_test_media(
    dir: &Path,
    duration: Duration,
    video_kbps: u32,
) -> Result<(PathBuf, PathBuf)> {
    make_test_media_sized(dir, duration, video_kbps, (640, 360))
}

/// [`make_test_media`] with a picture of `size` (width, height) instead of 640x360.
pub fn make_test_media_sized(
    dir: &Path,
    duration: Duration,
    video_kbps: u32,
    size: (u32, u32),
) -> Result<(PathBuf, PathBuf)> {
    let video = dir.join("test.h264");
    let source = format!("testsrc=size={}x{}:rate=30", size.0, size.1);
    let audio = dir.join("test.ogg");
    let secs = format!("{:.3}", duration.as_secs_f64());
    let kbps = format!("{video_kbps}k");
    let video_args = [
        "-f",
        "lavfi",
        "-i",
        &source,
        "-t",
        &secs,
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-bf",
        "0",
        "-g",
        "30",
        "-keyint_min",
        "30",
        "-sc_threshold",
        "0",
        "-b:v",
        &kbps,
        "-maxrate",
        &kbps,
        "-bufsize",
        &kbps,
        "-f",
        "h264",
    ];
    run_ffmpeg(&video_args, &video)?;
    let abps = format!("{TEST_AUDIO_KBPS}k");
    let audio_args = [
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &secs,
        "-c:a",
        "libopus",
        "-b:a",
        &abps,
        "-f",
        "ogg",
    ];
    run_ffmpeg(&audio_args, &audio)?;
    Ok((video, audio))
}

fn run_ffmpeg(args: &[&str], output_path: &Path) -> Result<()> {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .arg(output_path)
        .output()
        .map_err(|e| ClientError::Ffmpeg(format!("cannot run `ffmpeg` (is it on PATH?): {e}")))?;
    if !output.status.success() {
        return Err(ClientError::Ffmpeg(format!(
            "writing {}: {}: {}",
            output_path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_split_handles_3_and_4_byte_start_codes() {
        let data = [
            0xff, 0xfe, // garbage before the first start code
            0, 0, 0, 1, 0x67, 0x42, 0x00, // SPS, 4-byte start code
            0, 0, 1, 0x68, 0xce, // PPS, 3-byte start code
            0, 0, 0, 1, 0x65, 0x88, 0x00, 0x01,
            0x02, // IDR containing "00 01" not after "00 00"
            0, 0, // trailing zeros
        ];
        let nals = split_annexb(&data);
        assert_eq!(nals.len(), 3);
        assert_eq!(nals[0], &[0x67, 0x42][..]);
        assert_eq!(nals[1], &[0x68, 0xce][..]);
        assert_eq!(nals[2], &[0x65, 0x88, 0x00, 0x01, 0x02][..]);
        assert!(split_annexb(&[1, 2, 3]).is_empty());
        assert!(split_annexb(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn access_units_group_parameter_sets_with_their_picture() {
        let sps: &[u8] = &[0x67, 0x42];
        let pps: &[u8] = &[0x68, 0xce];
        let sei: &[u8] = &[0x06, 0x05];
        let idr: &[u8] = &[0x65, 0x88]; // first_mb_in_slice = 0
        let p1: &[u8] = &[0x41, 0x9a]; // first_mb_in_slice = 0
        let p1_second_slice: &[u8] = &[0x41, 0x40]; // first_mb_in_slice != 0
        let p2: &[u8] = &[0x41, 0x9b];
        let aus = group_access_units(&[sps, pps, sei, idr, p1, p1_second_slice, p2, sps]);
        assert_eq!(aus.len(), 3);
        assert_eq!(aus[0], vec![sps, pps, sei, idr]);
        assert_eq!(aus[1], vec![p1, p1_second_slice]);
        assert_eq!(aus[2], vec![p2]);
    }

    #[test]
    fn h264_keyframe_detection_single_stap_fu() {
        // Single NAL units.
        assert!(h264_payload_info(&[0x65, 0x88]).has_idr);
        assert!(!h264_payload_info(&[0x41, 0x9a]).has_idr);
        assert!(h264_payload_info(&[0x67, 0x42]).has_sps);

        // STAP-A with SPS + PPS only: SPS but no IDR.
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
        let info = h264_payload_info(&stap);
        assert!(info.has_sps && !info.has_idr && info.starts_nal);

        // STAP-A with SPS, PPS and a small IDR.
        let stap_idr = [
            0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 3, 0x65, 0x88, 0x80,
        ];
        assert!(h264_payload_info(&stap_idr).has_idr);

        // STAP-A whose length field overruns the payload: inspected members only.
        let stap_bad = [0x78, 0, 2, 0x67, 0x42, 0, 9, 0x65];
        let info = h264_payload_info(&stap_bad);
        assert!(info.has_sps && !info.has_idr);

        // FU-A start, middle and end fragments of an IDR (NRI 3, type 28; FU type 5).
        let fu_start = [0x7c, 0x85, 0xaa];
        let fu_mid = [0x7c, 0x05, 0xbb];
        let fu_end = [0x7c, 0x45, 0xcc];
        assert!(h264_payload_info(&fu_start).has_idr && h264_payload_info(&fu_start).starts_nal);
        assert!(h264_payload_info(&fu_mid).has_idr && !h264_payload_info(&fu_mid).starts_nal);
        assert!(h264_payload_info(&fu_end).has_idr);

        // FU-A of a non-IDR slice.
        assert!(!h264_payload_info(&[0x5c, 0x81, 0x00]).has_idr);

        // Degenerate input.
        assert_eq!(h264_payload_info(&[]), H264PayloadInfo::default());
        assert_eq!(h264_payload_info(&[0x7c]), H264PayloadInfo::default());
    }

    #[test]
    fn payloader_output_is_recognised_as_keyframe() {
        let big_idr: Vec<u8> = std::iter::once(0x65u8)
            .chain((0..3000u32).map(|i| (i % 251) as u8 | 1))
            .collect();
        let au: Vec<&[u8]> = vec![
            &[0x67, 0x42, 0xc0, 0x1e],
            &[0x68, 0xce, 0x3c, 0x80],
            &big_idr,
        ];
        let mut payloader = H264Payloader::default();
        let payloads = packetize_access_unit(&mut payloader, &au, 1000).expect("packetizes");
        assert!(payloads.len() >= 4, "STAP-A + at least 3 FU-A");
        assert_eq!(nal_type(&payloads[0]), NAL_STAP_A);
        assert!(h264_payload_info(&payloads[0]).has_sps);
        assert!(payloads[1..].iter().all(|p| nal_type(p) == NAL_FU_A));
        assert!(payloads[1..].iter().all(|p| h264_payload_info(p).has_idr));
        assert!(payloads.iter().all(|p| p.len() <= 1000));
    }

    #[test]
    fn ffmpeg_test_media_loads() {
        let dir = std::env::temp_dir().join(format!(
            "feiyan-media-test-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let made = make_test_media(&dir, Duration::from_secs(2), 300);
        let media = made.and_then(|(v, a)| SyntheticMedia::load(&v, &a));
        let _ = std::fs::remove_dir_all(&dir);
        let media = media.expect("ffmpeg test media loads (is ffmpeg installed?)");
        let frames = media.video_frames();
        assert_eq!(frames.len(), 60);
        let keyframes: Vec<usize> = (0..frames.len())
            .filter(|&i| frames[i].is_keyframe)
            .collect();
        assert_eq!(keyframes, vec![0, 30]);
        assert!(frames.iter().all(|f| f.duration == 3000));
        assert!(
            frames
                .iter()
                .flat_map(|f| &f.payloads)
                .all(|p| p.len() <= DEFAULT_MAX_PAYLOAD)
        );
        // Keyframes start with the SPS/PPS STAP-A.
        assert!(h264_payload_info(&frames[30].payloads[0]).has_sps);
        assert!(media.audio_packets().iter().all(|p| p.duration == 960));
        let audio = media.audio_duration().as_secs_f64();
        assert!((1.9..2.2).contains(&audio), "audio lasts {audio} s");
        assert_eq!(media.video_duration(), Duration::from_secs(2));
    }

    #[test]
    fn vp8_keyframe_detection() {
        // S=1, PID=0, no extensions, P=0 (keyframe).
        assert!(vp8_payload_is_keyframe(&[0x10, 0x50, 0x01]));
        // Same but P=1 (interframe).
        assert!(!vp8_payload_is_keyframe(&[0x10, 0x51, 0x01]));
        // X=1 with I (15-bit picture id), L and T/K extensions, then a keyframe header.
        assert!(vp8_payload_is_keyframe(&[
            0x90, 0xf0, 0x80, 0x01, 0x07, 0x20, 0x50
        ]));
        // Not the start of a frame.
        assert!(!vp8_payload_is_keyframe(&[0x00, 0x50]));
        // Truncated.
        assert!(!vp8_payload_is_keyframe(&[0x90, 0x80]));
        assert!(!vp8_payload_is_keyframe(&[]));
    }

    #[test]
    fn opus_toc_durations() {
        assert_eq!(opus_packet_duration(&[0xfc]), Some(960)); // CELT FB 20 ms, 1 frame
        assert_eq!(opus_packet_duration(&[0xfd, 0]), Some(1920)); // 2 frames
        assert_eq!(opus_packet_duration(&[0x18]), Some(2880)); // SILK 60 ms
        assert_eq!(opus_packet_duration(&[0xe3, 0x03]), Some(360)); // CELT 2.5 ms x3
        assert_eq!(opus_packet_duration(&[0xe3]), None);
        assert_eq!(opus_packet_duration(&[]), None);
    }

    fn ogg_page(serial: u32, seq: u32, header_type: u8, segments: &[u8], body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.push(0);
        page.push(header_type);
        page.extend_from_slice(&0u64.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&seq.to_le_bytes());
        page.extend_from_slice(&0u32.to_le_bytes()); // CRC is not checked
        page.push(segments.len() as u8);
        page.extend_from_slice(segments);
        page.extend_from_slice(body);
        page
    }

    #[test]
    fn ogg_packets_are_reassembled_across_pages() {
        let head = b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0".to_vec();
        let tags = b"OpusTags\0\0\0\0\0\0\0\0".to_vec();
        let long: Vec<u8> = std::iter::once(0xfc)
            .chain(std::iter::repeat_n(7, 299))
            .collect();
        let mut file = ogg_page(1, 0, 2, &[head.len() as u8], &head);
        file.extend(ogg_page(1, 1, 0, &[tags.len() as u8], &tags));
        // Page 2: a short packet, then the first 255 bytes of the long one.
        let mut body = vec![0xfc, 1, 2];
        body.extend_from_slice(&long[..255]);
        file.extend(ogg_page(1, 2, 0, &[3, 255], &body));
        // A page of another logical stream is ignored.
        file.extend(ogg_page(9, 0, 2, &[2], &[0xaa, 0xbb]));
        // Page 3: the rest of the long packet (continued), then one more.
        let mut body = long[255..].to_vec();
        body.extend_from_slice(&[0xfc, 9]);
        file.extend(ogg_page(1, 3, 1, &[45, 2], &body));
        let packets = ogg_opus_packets(&file).expect("parses");
        assert_eq!(packets.len(), 3);
        assert_eq!(&packets[0][..], &[0xfc, 1, 2]);
        assert_eq!(&packets[1][..], &long[..]);
        assert_eq!(&packets[2][..], &[0xfc, 9]);

        assert!(ogg_opus_packets(b"not ogg at all, definitely not").is_err());
        assert!(ogg_opus_packets(&file[..40]).is_err());
    }
}

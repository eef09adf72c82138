//! Decoding what a WHEP viewer received, with a real decoder (ffmpeg-next).

use std::path::Path;

use bytes::Bytes;
use feiyan::client::{TrackKind, WhepViewer};
use ffmpeg_next as ffmpeg;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

/// Depacketizes received RTP payloads into one Annex-B stream.
pub fn annexb(payloads: &[Bytes]) -> Vec<u8> {
    let mut depacketizer = H264Packet::default();
    let mut out = Vec::new();
    for p in payloads {
        if let Ok(data) = depacketizer.depacketize(p) {
            out.extend_from_slice(&data);
        }
    }
    out
}

/// What decoding a received H.264 stream found.
pub struct Decoded {
    pub frames: usize,
    pub b_frames: usize,
    /// The decoder's reorder delay (0 when the stream needs no reordering).
    pub delay: i32,
    pub width: u32,
    pub height: u32,
}

/// Decodes an Annex-B H.264 file.
pub fn decode_h264(path: &Path) -> Decoded {
    ffmpeg::init().unwrap();
    let mut input = ffmpeg::format::input(path).expect("received H.264 opens");
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .expect("a video stream");
    let index = stream.index();
    let mut decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
        .unwrap()
        .decoder()
        .video()
        .unwrap();
    let (mut frames, mut b_frames, mut size) = (0, 0, (0, 0));
    let mut frame = ffmpeg::frame::Video::empty();
    let mut count = |decoder: &mut ffmpeg::decoder::Video| {
        while decoder.receive_frame(&mut frame).is_ok() {
            frames += 1;
            size = (frame.width(), frame.height());
            if frame.kind() == ffmpeg::picture::Type::B {
                b_frames += 1;
            }
        }
    };
    for (s, packet) in input.packets() {
        if s.index() == index && decoder.send_packet(&packet).is_ok() {
            count(&mut decoder);
        }
    }
    let _ = decoder.send_eof();
    count(&mut decoder);
    // SAFETY: reading an integer field of an open decoder context.
    let delay = unsafe { (*decoder.as_ptr()).has_b_frames };
    Decoded {
        frames,
        b_frames,
        delay,
        width: size.0,
        height: size.1,
    }
}

/// Depacketizes a viewer's video, writes it into `dir` and decodes it.
pub async fn decode_received(viewer: &WhepViewer, dir: &Path, name: &str) -> Decoded {
    let payloads = viewer.received_payloads(TrackKind::Video);
    let h264 = dir.join(format!("{name}.h264"));
    std::fs::write(&h264, annexb(&payloads)).unwrap();
    tokio::task::spawn_blocking(move || decode_h264(&h264))
        .await
        .unwrap()
}

/// Decodes the VP8 a viewer received (RFC 7741 payloads) with FFmpeg's VP8 decoder:
/// frames are cut where a payload starts one (`S` set, partition 0).
pub fn decode_vp8(payloads: &[Bytes]) -> Decoded {
    use rtc::rtp::codec::vp8::Vp8Packet;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut depacketizer = Vp8Packet::default();
    for payload in payloads {
        let Ok(data) = depacketizer.depacketize(payload) else {
            continue;
        };
        if feiyan::client::media::vp8_payload_starts_frame(payload) || frames.is_empty() {
            frames.push(Vec::new());
        }
        if let Some(frame) = frames.last_mut() {
            frame.extend_from_slice(&data);
        }
    }
    ffmpeg::init().unwrap();
    let codec = ffmpeg::decoder::find(ffmpeg::codec::Id::VP8).expect("FFmpeg has VP8");
    let mut decoder = ffmpeg::codec::Context::new_with_codec(codec)
        .decoder()
        .video()
        .expect("VP8 decoder opens");
    let (mut decoded, mut size) = (0, (0, 0));
    let mut frame = ffmpeg::frame::Video::empty();
    for data in frames {
        let packet = ffmpeg::Packet::copy(&data);
        if decoder.send_packet(&packet).is_ok() {
            while decoder.receive_frame(&mut frame).is_ok() {
                decoded += 1;
                size = (frame.width(), frame.height());
            }
        }
    }
    Decoded {
        frames: decoded,
        b_frames: 0,
        delay: 0,
        width: size.0,
        height: size.1,
    }
}

/// Checks what one viewer of a quality got: it started on a keyframe, and its video
/// decodes at `size` with at least `min_frames` pictures. Returns the decode for further
/// checks.
pub async fn assert_quality(
    viewer: &WhepViewer,
    dir: &Path,
    name: &str,
    size: (u32, u32),
    min_frames: usize,
) -> Decoded {
    assert!(
        viewer.stats().first_video_frame_is_keyframe,
        "the {name} viewer started on a keyframe"
    );
    let decoded = decode_received(viewer, dir, name).await;
    assert_eq!(
        (decoded.width, decoded.height),
        size,
        "the {name} viewer gets its picture size"
    );
    assert!(
        decoded.frames >= min_frames,
        "{name}: decoded {} frames",
        decoded.frames
    );
    decoded
}

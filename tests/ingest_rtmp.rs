//! RTMP ingest end to end: the ffmpeg CLI pushes H.264 with B-frames + AAC 44.1 kHz over
//! RTMP; a webrtc-rs WHEP viewer receives Opus and H.264 without B-frames, which this test
//! decodes with ffmpeg-next. Bad input (garbage bytes, a wrong key) closes that connection
//! only.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{live_session, start_server, wait_until};
use feiyan::catalog::now_ms;
use feiyan::client::{MediaKind, ViewerOptions, WhepViewer};
use feiyan::transcode::RenditionSpec;
use ffmpeg_next as ffmpeg;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Makes the clips with scripts/make-test-media.sh (the ffmpeg CLI) into `dir`.
fn make_media(dir: &Path, secs: u32) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-media.sh");
    let status = Command::new(script)
        .arg(dir)
        .arg(secs.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("scripts/make-test-media.sh runs");
    assert!(status.success(), "make-test-media.sh failed");
    dir.join("h264-bframes-aac.flv")
}

fn push_rtmp(file: &Path, url: &str) -> std::process::Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(file)
        .args(["-c", "copy", "-f", "flv"])
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts")
}

/// Depacketizes received RTP payloads into one Annex-B stream.
fn annexb(payloads: &[Bytes]) -> Vec<u8> {
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
struct Decoded {
    frames: usize,
    b_frames: usize,
    /// The decoder's reorder delay (0 when the stream needs no reordering).
    delay: i32,
    width: u32,
    height: u32,
}

/// Decodes an Annex-B H.264 file.
fn decode_h264(path: &Path) -> Decoded {
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
async fn decode_received(viewer: &WhepViewer, dir: &Path, name: &str) -> Decoded {
    let payloads = viewer.received_payloads(MediaKind::Video);
    let h264 = dir.join(format!("{name}.h264"));
    std::fs::write(&h264, annexb(&payloads)).unwrap();
    tokio::task::spawn_blocking(move || decode_h264(&h264))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_push_with_b_frames_reaches_a_whep_viewer_as_h264_without_b_frames_and_opus() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 6);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!(
        "rtmp://{rtmp}/live/{channel}?key={}&title=RTMP%E6%B5%8B%E8%AF%95",
        t.station.stream_key
    );
    let mut ffmpeg_push = push_rtmp(&clip, &url);

    let mut session = None;
    for _ in 0..200 {
        session = live_session(&t.base, &channel).await;
        if session.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let session = session.expect("the RTMP push makes the channel live");
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("viewer connects");

    let status = tokio::task::spawn_blocking(move || ffmpeg_push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg pushed the whole clip: {status}");

    // The push ended: the session ends once the transcoder drained.
    let catalog = t.server.catalog.clone();
    assert!(
        wait_until(Duration::from_secs(8), || {
            let catalog = catalog.clone();
            async move {
                let s = catalog.session_summary(session, now_ms()).await.unwrap();
                s.is_some_and(|s| !s.live)
            }
        })
        .await,
        "session ended after the push"
    );
    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.kind, "lecture");
    assert_eq!(summary.source, "rtmp");
    assert_eq!(summary.title, "RTMP测试");

    let stats = viewer.stats();
    assert_eq!(stats.video.codec.as_deref(), Some("video/H264"));
    assert_eq!(stats.audio.codec.as_deref(), Some("audio/opus"));
    assert!(
        stats.first_video_frame_is_keyframe,
        "the viewer started on a keyframe"
    );
    // ~5 s watched of Opus at 50 packets/s.
    assert!(
        stats.audio.counters.packets > 150,
        "audio packets: {}",
        stats.audio.counters.packets
    );

    let decoded = decode_received(&viewer, dir.path(), "received").await;
    // The viewer joined within a second of going live; the clip is 6 s at 30 fps.
    assert!(decoded.frames >= 120, "decoded {} frames", decoded.frames);
    assert_eq!(decoded.b_frames, 0, "no B-frames reach WebRTC");
    assert_eq!(decoded.delay, 0, "the decoder needs no reordering");
    viewer.close().await.ok();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_keys_close_only_their_connection() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 2);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();

    // Not RTMP at all: the server closes the connection.
    let mut sock = tokio::net::TcpStream::connect(rtmp).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    sock.write_all(&[0x55u8; 4000]).await.ok();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed.ok(), Some(true), "garbage connection closed");

    // A wrong key: ffmpeg is refused and the channel never goes live.
    let wrong = format!("rtmp://{rtmp}/live/{channel}?key=fy_wrong");
    let mut refused = push_rtmp(&clip, &wrong);
    let status = tokio::task::spawn_blocking(move || refused.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "ffmpeg with a wrong key fails");
    assert!(live_session(&t.base, &channel).await.is_none());

    // The server carries on: the right key goes live.
    let right = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut push = push_rtmp(&clip, &right);
    let base = t.base.clone();
    let ch = channel.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (base, ch) = (base.clone(), ch.clone());
            async move { live_session(&base, &ch).await.is_some() }
        })
        .await,
        "a correct push after bad ones goes live"
    );
    let _ = tokio::task::spawn_blocking(move || push.wait()).await;
    t.server.shutdown().await;
}

/// A channel with a rendition ladder: the source H.264 (baseline, so passed through) plus
/// a 180p rung and a 720p rung (which must not upscale the 360p source). Each viewer gets
/// the picture size it asked for with `?quality=`, all count in one session, and an
/// unknown quality is refused with the list of offered ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_choose_a_rendition_with_the_quality_parameter() {
    let t = common::start_server_with(|c| {
        c.ingest.renditions = vec![
            RenditionSpec {
                name: "180p".into(),
                height: 180,
                video_kbps: 250,
            },
            RenditionSpec {
                name: "720p".into(),
                height: 720,
                video_kbps: 1200,
            },
        ];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 6);
    let clip = dir.path().join("h264-baseline-aac.mp4");
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut ffmpeg_push = push_rtmp(&clip, &url);
    let session = common::wait_live(&t.base, &channel).await;

    let status: serde_json::Value = reqwest::get(format!("{}/api/channels/{channel}", t.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["qualities"],
        serde_json::json!(["source", "180p", "720p"])
    );

    let whep = format!("{}/whep/{channel}", t.base);
    let refused = reqwest::Client::new()
        .post(format!("{whep}?quality=1080p"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let reason = refused.text().await.unwrap();
    assert!(
        reason.contains("1080p") && reason.contains("source, 180p, 720p"),
        "the refusal names the offered qualities: {reason}"
    );

    let options = || ViewerOptions {
        record_payloads: true,
        ..Default::default()
    };
    let (low_url, high_url) = (
        format!("{whep}?quality=180p"),
        format!("{whep}?quality=720p"),
    );
    let (source, low, high) = tokio::join!(
        WhepViewer::connect(&whep, None, options()),
        WhepViewer::connect(&low_url, None, options()),
        WhepViewer::connect(&high_url, None, options()),
    );
    let (source, low, high) = (
        source.expect("source viewer"),
        low.expect("180p viewer"),
        high.expect("720p viewer"),
    );
    let pushed = tokio::task::spawn_blocking(move || ffmpeg_push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(pushed.success(), "ffmpeg pushed the whole clip: {pushed}");
    let catalog = t.server.catalog.clone();
    assert!(
        wait_until(Duration::from_secs(8), || {
            let catalog = catalog.clone();
            async move {
                let s = catalog.session_summary(session, now_ms()).await.unwrap();
                s.is_some_and(|s| !s.live)
            }
        })
        .await,
        "session ended after the push"
    );

    for (viewer, name, size) in [
        (&source, "source", (640, 360)),
        (&low, "180p", (320, 180)),
        (&high, "720p", (640, 360)),
    ] {
        let stats = viewer.stats();
        assert!(
            stats.first_video_frame_is_keyframe,
            "the {name} viewer started on a keyframe"
        );
        assert!(
            stats.audio.counters.packets > 150,
            "{name} viewer gets audio"
        );
        let decoded = decode_received(viewer, dir.path(), name).await;
        assert_eq!(
            (decoded.width, decoded.height),
            size,
            "the {name} viewer gets its picture size"
        );
        assert!(
            decoded.frames >= 120,
            "{name}: decoded {} frames",
            decoded.frames
        );
    }
    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.peak_viewers, 3,
        "all renditions count in one session"
    );
    for viewer in [source, low, high] {
        viewer.close().await.ok();
    }
    t.server.shutdown().await;
}

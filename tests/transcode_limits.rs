//! Transcode limits (issue 23, item 10): a source whose picture size changes mid-stream is
//! rescaled to the size its viewers already decode; sources over the configured input size
//! or frame rate are refused with the reason; past `[ingest] max_transcodes` a publisher is
//! refused and a film class waits for a free slot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::decode::decode_received;
use common::{live_session, start_server_with, wait_until};
use feiyan::audience::now_ms;
use feiyan::client::{ViewerOptions, WhepViewer};
use feiyan::config::VideoMode;

fn ff(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// An Annex-B H.264 clip of `secs` seconds at `size` and `fps` (ultrafast: no B-frames,
/// so the tests choose transcoding with `[ingest] video`).
fn h264_clip(dir: &Path, name: &str, size: &str, fps: u32, secs: u32) -> PathBuf {
    let out = dir.join(name);
    let src = format!("testsrc=size={size}:rate={fps}:duration={secs}");
    ff(&[
        "-f",
        "lavfi",
        "-i",
        &src,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        &fps.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-f",
        "h264",
        out.to_str().unwrap(),
    ]);
    out
}

/// Publishes an Annex-B H.264 file (video only) in real time over RTMP with the ffmpeg CLI.
fn push_h264(file: &Path, fps: u32, url: &str) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "h264", "-framerate", &fps.to_string(), "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts")
}

fn rtmp_url(t: &common::TestServer, channel: &str, key: &str) -> String {
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    format!("rtmp://{rtmp}/live/{channel}?key={key}")
}

async fn wait_exit(mut child: std::process::Child, within: Duration) -> Option<bool> {
    tokio::task::spawn_blocking(move || {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    })
    .await
    .unwrap()
}

/// A publisher switches from 320x240 to 160x120 in-band (a new SPS, as an encoder whose
/// operator changes the output size does): the transcode goes on, rescaling to the size
/// its encoder was opened at, and the viewer decodes the whole lecture at one size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_resolution_change_is_rescaled_and_the_lecture_goes_on() {
    let t = start_server_with(|c| c.ingest.video = VideoMode::Transcode).await;
    let dir = tempfile::tempdir().unwrap();
    let big = h264_clip(dir.path(), "big.h264", "320x240", 30, 3);
    let small = h264_clip(dir.path(), "small.h264", "160x120", 30, 3);
    let both = dir.path().join("switch.h264");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes.extend_from_slice(&std::fs::read(&small).unwrap());
    std::fs::write(&both, bytes).unwrap();

    let channel = t.station.channel.to_string();
    let push = push_h264(&both, 30, &rtmp_url(&t, &channel, &t.station.stream_key));
    assert!(
        wait_until(Duration::from_secs(10), || async {
            live_session(&t.base, &channel).await.is_some()
        })
        .await,
        "the RTMP push makes the channel live"
    );
    let live_at = std::time::Instant::now();
    let session = live_session(&t.base, &channel).await.unwrap();
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
    let catalog = t.server.catalog.clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let catalog = catalog.clone();
            async move {
                let s = catalog.session_summary(session, now_ms()).await.unwrap();
                s.is_some_and(|s| !s.live)
            }
        })
        .await,
        "the session ended"
    );
    let lasted = live_at.elapsed();
    assert!(
        lasted >= Duration::from_millis(4500),
        "the session lasted the whole 6 s clip, not up to the switch at 3 s: {lasted:?}"
    );
    assert_eq!(
        wait_exit(push, Duration::from_secs(5)).await,
        Some(true),
        "ffmpeg pushed the whole clip"
    );
    let decoded = decode_received(&viewer, dir.path(), "received").await;
    // 6 s at 30 fps, joined within a second of going live: most of it after the switch.
    assert!(
        decoded.frames >= 130,
        "decoded {} frames (the switch is at 90)",
        decoded.frames
    );
    assert_eq!(
        (decoded.width, decoded.height),
        (320, 240),
        "the viewer's stream keeps its size"
    );
    viewer.close().await.ok();
    t.server.shutdown().await;
}

/// Pushes `file` and says whether the channel went live within `within`; the push is
/// left running (or returned finished) for the caller.
async fn goes_live(
    t: &common::TestServer,
    channel: &str,
    push: std::process::Child,
    within: Duration,
) -> (bool, std::process::Child) {
    let live = wait_until(within, || async {
        live_session(&t.base, channel).await.is_some()
    })
    .await;
    (live, push)
}

fn stop(mut push: std::process::Child) {
    let _ = push.kill();
    let _ = push.wait();
}

/// `[ingest] max_input_width/height/fps`: a transcoded source over the size or the frame
/// rate is refused before a session opens (its connection closed, the reason logged);
/// a portrait source within the limit turned round goes live; passthrough is not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_over_the_input_limits_are_refused_and_passthrough_is_not_limited() {
    let limits = |c: &mut feiyan::config::Config| {
        c.ingest.max_input_width = 320;
        c.ingest.max_input_height = 240;
        c.ingest.max_input_fps = 30;
    };
    let t = start_server_with(|c| {
        limits(c);
        c.ingest.video = VideoMode::Transcode;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let url = rtmp_url(&t, &channel, &t.station.stream_key);
    let large = h264_clip(dir.path(), "large.h264", "640x480", 30, 4);
    let fast = h264_clip(dir.path(), "fast.h264", "320x240", 50, 4);
    let portrait = h264_clip(dir.path(), "portrait.h264", "240x320", 30, 4);

    for (clip, fps, what) in [(&large, 30, "640x480"), (&fast, 50, "50 fps")] {
        let (live, push) = goes_live(
            &t,
            &channel,
            push_h264(clip, fps, &url),
            Duration::from_secs(4),
        )
        .await;
        assert!(!live, "a {what} source over the limits is refused");
        assert_eq!(
            wait_exit(push, Duration::from_secs(8)).await,
            Some(false),
            "the {what} publisher's connection is closed"
        );
    }
    let (live, push) = goes_live(
        &t,
        &channel,
        push_h264(&portrait, 30, &url),
        Duration::from_secs(8),
    )
    .await;
    assert!(live, "a 240x320 portrait source fits a 320x240 limit");
    stop(push);
    assert!(
        wait_until(Duration::from_secs(8), || async {
            live_session(&t.base, &channel).await.is_none()
        })
        .await
    );

    t.server.shutdown().await;

    // H.264 without B-frames is passed through under `auto`: no decode, no limit.
    let t = start_server_with(limits).await;
    let channel = t.station.channel.to_string();
    let url = rtmp_url(&t, &channel, &t.station.stream_key);
    let (live, push) = goes_live(
        &t,
        &channel,
        push_h264(&large, 30, &url),
        Duration::from_secs(8),
    )
    .await;
    assert!(live, "a 640x480 source without B-frames is passed through");
    stop(push);
    t.server.shutdown().await;
}

/// `[ingest] max_transcodes = 1`: while one RTMP lecture is transcoded, a second
/// publisher that needs a transcode is refused and a film class that needs one waits; the
/// film class starts once the lecture ends and gives the slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_transcodes_a_publisher_is_refused_and_a_film_class_waits_for_a_slot() {
    let t = start_server_with(|c| {
        c.ingest.max_transcodes = 1;
        c.ingest.video = VideoMode::Transcode;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clip = h264_clip(dir.path(), "lecture.h264", "320x240", 30, 30);
    let catalog = t.server.catalog.clone();
    let second = catalog
        .add_station("测试中心", "测试所", "第二站")
        .await
        .unwrap();
    let third = catalog
        .add_station("测试中心", "测试所", "第三站")
        .await
        .unwrap();

    let channel = t.station.channel.to_string();
    let (live, first) = goes_live(
        &t,
        &channel,
        push_h264(&clip, 30, &rtmp_url(&t, &channel, &t.station.stream_key)),
        Duration::from_secs(10),
    )
    .await;
    assert!(live, "the first transcoded lecture goes live");

    let other = second.channel.to_string();
    let (live, push) = goes_live(
        &t,
        &other,
        push_h264(&clip, 30, &rtmp_url(&t, &other, &second.stream_key)),
        Duration::from_secs(4),
    )
    .await;
    assert!(!live, "a second transcode is refused");
    assert_eq!(wait_exit(push, Duration::from_secs(8)).await, Some(false));

    // A film class on the third station, due now, needs a transcode too.
    common::rtmp::make_media(dir.path(), 3);
    let film =
        feiyan::ingest::playout::probe_film(&dir.path().join("h264-bframes-aac.mp4")).unwrap();
    let film_id = catalog.import_film(&film, now_ms()).await.unwrap();
    let screening = catalog
        .schedule_screening(third.channel.as_str(), film_id, now_ms(), now_ms())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = catalog.screening(screening.id).await.unwrap();
    assert_eq!(
        waiting.session_id, None,
        "the film class waits while the slot is taken: {waiting:?}"
    );
    assert!(
        !matches!(waiting.status, feiyan::catalog::ScreeningStatus::Failed),
        "waiting is not failing: {waiting:?}"
    );

    stop(first);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let catalog = catalog.clone();
            async move {
                catalog
                    .screening(screening.id)
                    .await
                    .unwrap()
                    .session_id
                    .is_some()
            }
        })
        .await,
        "the film class starts once the lecture gives its slot back"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            live_session(&t.base, third.channel.as_str())
                .await
                .is_some()
        })
        .await,
        "the film class is live"
    );
    t.server.shutdown().await;
}

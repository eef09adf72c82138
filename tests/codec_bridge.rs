//! Codec bridges, encoded on demand on a `fy-tc-bridge` thread from the channel's access
//! units:
//! - a viewer whose browser has no H.264 (it offers VP8 only) watches an H.264 channel fed
//!   over RTMP (`[ingest] vp8_rendition = "on-demand"`, the default): it starts on a
//!   keyframe and decodes VP8 with a real decoder, is counted in the one session, and the
//!   encode stops 10 s after it leaves;
//! - an H.264-only viewer watches a channel a browser (Chromium) publishes in VP8 over WHIP
//!   (`h264_from_vp8 = "on-demand"`): it decodes H.264 made from it, which is made from the
//!   start of the session because live HLS carries it (the ffmpeg CLI decodes that too).

mod common;

use std::time::Duration;

use common::cdp::Browser;
use common::decode::{decode_received, decode_vp8};
use common::pages::publish_canvas;
use common::rtmp::{make_media, push_rtmp};
use common::{start_server, wait_live, wait_until};
use feiyan::client::{TrackKind, VideoCodecs, ViewerOptions, WhepViewer};
use feiyan::config::H264FromVp8;

/// Connects a webrtc-rs viewer that takes only `codecs` (recording what it receives) and
/// waits for its first video packet; prints how long that took, as `who`.
async fn watch(whep: &str, codecs: VideoCodecs, who: &str) -> WhepViewer {
    let started = std::time::Instant::now();
    let options = ViewerOptions {
        video_codecs: codecs,
        record_payloads: true,
        record_frame_log: true,
        ..Default::default()
    };
    let viewer = WhepViewer::connect(whep, None, options)
        .await
        .unwrap_or_else(|e| panic!("{who} is answered (201): {e}"));
    let arrived = wait_until(Duration::from_secs(10), || async {
        viewer.stats().video.counters.packets > 0
    })
    .await;
    assert!(arrived, "video reaches the {who}");
    println!("{who}: POST to first video packet {:?}", started.elapsed());
    viewer
}

/// Threads of this process named `fy-tc-bridge` (the bridge and its codecs' workers).
fn bridge_threads() -> usize {
    common::thread_names()
        .iter()
        .filter(|name| name.as_str() == "fy-tc-bridge")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_only_viewer_of_an_h264_channel_gets_a_vp8_bridge_that_stops_when_it_leaves() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 30);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut ffmpeg_push = push_rtmp(&clip, &url);
    let session = wait_live(&t.base, &channel).await;
    assert_eq!(bridge_threads(), 0, "no bridge before anyone needs it");

    let whep = format!("{}/whep/{channel}", t.base);
    let viewer = watch(&whep, VideoCodecs::Vp8Only, "VP8 viewer").await;
    // The codec's own worker threads inherit the name.
    assert!(bridge_threads() >= 1, "a bridge encodes while it watches");
    // About 4 s of pictures (the machine may be busy: wait for them, not a time).
    let received = wait_until(Duration::from_secs(20), || async {
        viewer.video_frame_log().len() >= 100
    })
    .await;
    assert!(received, "the VP8 viewer receives pictures");
    let stats = viewer.stats();
    assert!(
        stats.first_video_frame_is_keyframe,
        "the VP8 viewer started on a keyframe"
    );
    let decoded = decode_vp8(&viewer.received_payloads(TrackKind::Video));
    assert_eq!(
        (decoded.width, decoded.height),
        (640, 360),
        "VP8 at the source's size"
    );
    assert!(
        decoded.frames >= 60,
        "decoded {} VP8 frames in 4 s",
        decoded.frames
    );
    assert!(stats.audio.counters.packets > 100, "and Opus audio");
    let peak = common::session_peak(&t.server, session).await;
    assert_eq!(peak, 1, "counted in the session");

    // A second VP8 viewer joins the running bridge: it starts from the bridge's cached
    // keyframe group, with no new encode.
    let joined = std::time::Instant::now();
    let second = WhepViewer::connect(
        &whep,
        None,
        ViewerOptions {
            video_codecs: VideoCodecs::Vp8Only,
            ..Default::default()
        },
    )
    .await
    .expect("a second VP8-only viewer is answered");
    assert!(
        wait_until(Duration::from_secs(5), || async {
            second.stats().video.counters.packets > 0
        })
        .await,
        "VP8 reaches the second viewer"
    );
    println!(
        "second VP8 viewer (bridge running): POST to first video packet {:?}",
        joined.elapsed()
    );
    assert!(second.stats().first_video_frame_is_keyframe);
    second.close().await.ok();

    // It leaves; the lecture goes on. The bridge stops about 10 s later.
    viewer.close().await.ok();
    let left = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || async { bridge_threads() == 0 }).await,
        "the bridge thread is gone after the last VP8 viewer left"
    );
    let after = left.elapsed();
    println!("bridge stopped {after:?} after the viewer left");
    assert!(
        after >= Duration::from_secs(9),
        "it waited for other viewers: {after:?}"
    );
    let _ = ffmpeg_push.kill();
    let _ = ffmpeg_push.wait();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_only_viewer_of_a_vp8_whip_publisher_decodes_h264_made_from_it() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let browser = Browser::launch("vp8-publish", &[]).await;
    let page = browser.new_page().await;
    let whip = format!("{}/whip/{channel}", t.base);
    let answer = publish_canvas(&page, &whip, &t.station.stream_key, "video/VP8", false).await;
    assert!(
        answer.contains("VP8/90000"),
        "the publisher sends VP8: {answer}"
    );
    let session = wait_live(&t.base, &channel).await;
    // Live HLS carries H.264: the bridge starts with the session.
    assert!(
        wait_until(Duration::from_secs(10), || async { bridge_threads() >= 1 }).await,
        "H.264 is made for live HLS from the start"
    );

    let dir = tempfile::tempdir().unwrap();
    let whep = format!("{}/whep/{channel}", t.base);
    let viewer = watch(&whep, VideoCodecs::H264Only, "H.264 viewer of VP8").await;
    assert!(bridge_threads() >= 1, "a bridge encodes while it watches");
    let received = wait_until(Duration::from_secs(20), || async {
        viewer.video_frame_log().len() >= 60
    })
    .await;
    assert!(received, "the H.264 viewer receives pictures");
    assert!(
        viewer.stats().first_video_frame_is_keyframe,
        "the H.264 viewer started on a keyframe"
    );
    let decoded = decode_received(&viewer, dir.path(), "from-vp8").await;
    println!(
        "decoded {} H.264 frames of {}x{}",
        decoded.frames, decoded.width, decoded.height
    );
    // Chromium may send the canvas smaller under CPU pressure; its shape stays.
    assert!(decoded.width >= 320, "{}x{}", decoded.width, decoded.height);
    assert_eq!(decoded.width * 9, decoded.height * 16, "16:9 as published");
    assert!(
        decoded.frames >= 30,
        "decoded {} frames in 4 s",
        decoded.frames
    );
    assert_eq!(decoded.b_frames, 0);
    let peak = common::session_peak(&t.server, session).await;
    assert_eq!(peak, 1, "counted in the session");

    // The same H.264 is the channel's live HLS, which the ffmpeg CLI decodes.
    let hls = format!("{}/hls/{channel}/index.m3u8", t.base);
    let listed = wait_until(Duration::from_secs(20), || async {
        match reqwest::get(&hls).await {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default().contains("#EXTINF"),
            _ => false,
        }
    })
    .await;
    assert!(listed, "the VP8 channel's HLS has segments");
    let hls_url = reqwest::get(&hls).await.unwrap().url().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i", &hls_url])
            .args(["-t", "3", "-map", "0:v", "-f", "framecrc", "-"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert!(
        out.status.success() && frames >= 30,
        "ffmpeg decoded {frames} frames of the HLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    viewer.close().await.ok();
    drop(browser);
    t.server.shutdown().await;
}

/// `h264_from_vp8 = "always"`: a VP8 publisher's H.264 runs from the start of its session
/// (for HLS and recording), before and without any viewer needing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_always_a_vp8_publisher_gets_h264_for_its_whole_session() {
    let t = common::start_server_with(|c| c.ingest.h264_from_vp8 = H264FromVp8::Always).await;
    let channel = t.station.channel.to_string();
    let browser = Browser::launch("vp8-always", &[]).await;
    let page = browser.new_page().await;
    let whip = format!("{}/whip/{channel}", t.base);
    publish_canvas(&page, &whip, &t.station.stream_key, "video/VP8", false).await;
    wait_live(&t.base, &channel).await;
    assert!(
        wait_until(Duration::from_secs(10), || async { bridge_threads() >= 1 }).await,
        "the H.264 encode starts with the session"
    );
    // Nobody watches it for longer than an on-demand bridge would wait: it keeps running.
    tokio::time::sleep(BRIDGE_IDLE_AND_MORE).await;
    assert!(bridge_threads() >= 1, "it runs for the whole session");
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions {
            video_codecs: VideoCodecs::H264Only,
            ..Default::default()
        },
    )
    .await
    .expect("an H.264-only viewer is answered");
    assert!(
        wait_until(Duration::from_secs(5), || async {
            viewer.stats().video.counters.packets > 0
        })
        .await,
        "H.264 arrives"
    );
    viewer.close().await.ok();
    drop(browser);
    t.server.shutdown().await;
}

/// A little longer than an on-demand bridge runs with nobody watching (10 s).
const BRIDGE_IDLE_AND_MORE: Duration = Duration::from_secs(12);

/// A VP8-only viewer stays through a publisher's reconnect within the grace: it is given a
/// bridge of the returning publisher's video on the same connection, and decodes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_only_viewer_keeps_its_video_across_a_publisher_reconnect() {
    let t = common::start_server_with(|c| c.hls.reconnect_grace_secs = 20).await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 30);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut first = push_rtmp(&clip, &url);
    let session = wait_live(&t.base, &channel).await;
    let whep = format!("{}/whep/{channel}", t.base);
    let viewer = watch(&whep, VideoCodecs::Vp8Only, "VP8 viewer").await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            viewer.video_frame_log().len() >= 50
        })
        .await,
        "VP8 before the reconnect"
    );

    // The encoder drops; the channel waits; it comes back in the same session.
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            common::live_session(&t.base, &channel).await.is_none()
        })
        .await,
        "the channel is off air while the encoder is away"
    );
    let before = viewer.received_payloads(TrackKind::Video).len();
    let frames_before = viewer.video_frame_log().len();
    let mut second = push_rtmp(&clip, &url);
    assert_eq!(
        wait_live(&t.base, &channel).await,
        session,
        "the same session"
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            viewer.video_frame_log().len() >= frames_before + 60
        })
        .await,
        "VP8 pictures reach the same viewer after the reconnect"
    );
    let after = viewer.received_payloads(TrackKind::Video).split_off(before);
    let decoded = decode_vp8(&after);
    assert_eq!(
        (decoded.width, decoded.height),
        (640, 360),
        "VP8 after the reconnect"
    );
    assert!(
        decoded.frames >= 40,
        "decoded {} VP8 frames",
        decoded.frames
    );
    let _ = second.kill();
    let _ = second.wait();
    viewer.close().await.ok();
    t.server.shutdown().await;
}

//! End to end with real browsers, driven over the DevTools protocol (`common::cdp`, with the
//! page helpers in `common::pages`): a headless Chromium opens the served `/publish` page,
//! types the stream key and presses 开始直播 (WHIP from its fake camera and microphone); a
//! second headless Chromium opens the `/watch` page (WHEP) and decodes video and audio. The
//! tests read the pages' peer connections (`getStats()`) and video elements over CDP; the
//! pages carry no test hooks. Killing the viewer's browser (no DELETE is sent) must bring the
//! server's viewer count back to 0 once ICE times out. A browser publisher ramps up on the
//! server's transport-cc feedback, and the watch page plays the rendition it asks for. The
//! pages' CSP and HTTPS on a LAN name are in `browser_pages.rs`.
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing
//! browser fails the test; it is never skipped.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pages::{Ctx, Tab, num, publish_state, start_publishing, watch_state};
use common::start_server;
use feiyan::config::Config;
use serde_json::Value;

/// Records (for the notes) when the watch page's video first plays; test-side, set before
/// the page's own scripts run.
const FIRST_PLAYING: &str = "document.addEventListener('playing', () => { \
    if (window.__feiyanFirstPlaying === undefined) \
      Object.defineProperty(window, '__feiyanFirstPlaying', { value: performance.now() }); \
  }, true);";

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_and_chromium_watches() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let mut ctx = Ctx::new(&t.base, &channel);

    // 1. Publish from the first browser: type the key, press 开始直播.
    ctx.publisher = Some(Tab::open("publish").await);
    start_publishing(
        ctx.publish_page(),
        &t.base,
        &channel,
        &t.station.stream_key,
        "浏览器测试",
    )
    .await;
    ctx.wait_publishing(Duration::from_secs(20)).await;
    let info = ctx.info().await;
    assert_eq!(info["title"], "浏览器测试", "api: {info}");
    // The server is ICE-lite by default, so the watch page below posts its offer without
    // waiting for ICE gathering (no candidates in it) and still connects.
    assert_eq!(info["ice_lite"], true, "api: {info}");
    println!(
        "[{:.1}s] live; publish page {}",
        ctx.t(),
        publish_state(ctx.publish_page()).await
    );

    // 2. Watch from a second browser.
    ctx.viewer = Some(Tab::watch(&t.base, &channel, "", Some(FIRST_PLAYING)).await);
    let watch_started = ctx.t();
    ctx.wait_for(
        "the watch page to decode video (>30 frames) and audio (>20 packets), connected, \
         showing frames, with the viewer counted",
        Duration::from_secs(30),
        async |c: &Ctx| {
            let state = watch_state(c.watch_page()).await;
            let info = c.info().await;
            let viewers = info["viewers"].as_u64().unwrap_or(0);
            if num(&state, "/pc/inbound/video/framesDecoded") > 30
                && num(&state, "/pc/inbound/audio/packetsReceived") > 20
                && num(&state, "/view/videoWidth") > 0
                && state["view"]["currentTime"].as_f64().unwrap_or(0.0) > 0.0
                && state["view"]["paused"] == false
                && state["view"]["status"] == "playing"
                && viewers >= 1
            {
                Ok(())
            } else {
                Err(format!("watch page {state}; api {info}"))
            }
        },
    )
    .await;
    let watch = watch_state(ctx.watch_page()).await;
    println!(
        "[{:.1}s] playing {:.1} s after the viewer started: {watch}; api {}",
        ctx.t(),
        ctx.t() - watch_started,
        ctx.info().await
    );
    // Join timing in the page (a figure for the notes, not a bound: tests do not time).
    let timing = ctx
        .watch_page()
        .evaluate(
            "(() => { const e = performance.getEntriesByType('resource') \
               .find((r) => r.name.includes('/whep/')); \
             return e ? { answerMs: Math.round(e.responseEnd - e.startTime), \
               playingMs: Math.round((window.__feiyanFirstPlaying || NaN) - e.startTime) } : null; })()",
        )
        .await
        .unwrap_or(Value::Null);
    println!("chromium join: WHEP POST -> answer, -> video playing: {timing}");
    assert_eq!(
        watch["pc"]["connectionState"], "connected",
        "watch page: {watch}"
    );

    // 2b. Two seconds after connecting, the server drops the viewer's peer connection and
    //     answers its consent checks itself. Chromium stops counting a connection as
    //     writable after about 15 s of unanswered checks, so 25 s more of playing, still
    //     connected, shows the answers are right.
    let detached = || {
        t.server
            .relay
            .board()
            .counters
            .viewers_detached
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    ctx.wait_for(
        "the server to detach the viewer from its peer connection",
        Duration::from_secs(10),
        async |_: &Ctx| {
            if detached() >= 1 {
                Ok(())
            } else {
                Err("not detached yet".to_string())
            }
        },
    )
    .await;
    let frames_at_detach = num(
        &watch_state(ctx.watch_page()).await,
        "/pc/inbound/video/framesDecoded",
    );
    tokio::time::sleep(Duration::from_secs(25)).await;
    let watch = watch_state(ctx.watch_page()).await;
    println!(
        "[{:.1}s] 25 s after the viewer was detached: {watch}",
        ctx.t()
    );
    if watch["pc"]["connectionState"] != "connected"
        || num(&watch, "/pc/inbound/video/framesDecoded") < frames_at_detach + 100
    {
        ctx.fail(&format!(
            "the detached viewer stopped playing ({frames_at_detach} frames at detach): {watch}"
        ))
        .await;
    }

    // 3. Kill the viewer's browser outright: no DELETE, so only ICE can notice. The ICE
    //    agent goes `disconnected` after `disconnected_timeout_secs` of silence and `failed`
    //    `failed_timeout_secs` later (5 + 15 s by default); then the server drops the peer.
    let ice = Config::default().webrtc;
    let removal_bound =
        Duration::from_secs(ice.disconnected_timeout_secs + ice.failed_timeout_secs + 5);
    let mut viewer = ctx.viewer.take().expect("viewer open");
    viewer.browser.kill().await;
    drop(viewer);
    let killed_at = ctx.t();
    println!("[{killed_at:.1}s] watch chromium killed");
    let publish_before = num(
        &publish_state(ctx.publish_page()).await,
        "/pc/outbound/video/packetsSent",
    );
    ctx.wait_for(
        "the server to drop the killed viewer (viewers back to 0)",
        removal_bound,
        async |c: &Ctx| {
            let info = c.info().await;
            if info["viewers"].as_u64() == Some(0) {
                Ok(())
            } else {
                Err(format!("api {info}"))
            }
        },
    )
    .await;
    println!(
        "[{:.1}s] viewer removed {:.1} s after the kill",
        ctx.t(),
        ctx.t() - killed_at
    );

    // 4. The publisher was not disturbed: still live and still sending.
    let info = ctx.info().await;
    if info["live"].as_bool() != Some(true) {
        ctx.fail(&format!(
            "channel no longer live after the viewer left: {info}"
        ))
        .await;
    }
    ctx.wait_for(
        "the publisher to keep sending after the viewer left",
        Duration::from_secs(5),
        async |c: &Ctx| {
            let state = publish_state(c.publish_page()).await;
            if num(&state, "/pc/outbound/video/packetsSent") > publish_before
                && state["pc"]["connectionState"] == "connected"
            {
                Ok(())
            } else {
                Err(format!(
                    "publish page {state} (video packetsSent was {publish_before})"
                ))
            }
        },
    )
    .await;
    println!(
        "[{:.1}s] done; final publish page {}",
        ctx.t(),
        publish_state(ctx.publish_page()).await
    );

    if let Some(mut tab) = ctx.publisher.take() {
        tab.browser.kill().await;
    }
    t.server.shutdown().await;
}

/// The relay's counter of transport-cc feedback packets sent to publishers, from `/metrics`.
async fn twcc_feedback_sent(http: &reqwest::Client, base: &str) -> u64 {
    let text = async {
        http.get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await
    }
    .await
    .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("feiyan_twcc_feedback_sent_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A browser publisher gets congestion feedback: the answer negotiates transport-wide
/// congestion control (the header extension and `transport-cc` feedback), the server sends
/// that feedback (`/metrics`), Chromium's send-side bandwidth estimate rises, and the publish
/// page's encoder targets more than 2 Mbit/s within 15 s of going live. The time to a
/// 1280-wide frame is printed: a figure for the notes, not a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publisher_ramps_on_transport_cc_feedback() {
    const TWCC_URI: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let mut ctx = Ctx::new(&t.base, &channel);
    ctx.publisher = Some(Tab::open("publish").await);
    let pressed = Instant::now();
    start_publishing(
        ctx.publish_page(),
        &t.base,
        &channel,
        &t.station.stream_key,
        "拥塞反馈",
    )
    .await;
    ctx.wait_publishing(Duration::from_secs(20)).await;
    let live_at = Instant::now();
    println!(
        "live {:.1} s after 开始直播 was pressed",
        (live_at - pressed).as_secs_f64()
    );

    // Negotiated: the answer's video section carries the extension and the feedback type.
    let state = publish_state(ctx.publish_page()).await;
    let answer = state["pc"]["remoteSdp"].as_str().unwrap_or_default();
    let video = answer
        .split("\r\nm=")
        .find(|m| m.starts_with("video") && !m.starts_with("video 0"))
        .unwrap_or_default();
    if !video.contains(TWCC_URI) || !video.contains(" transport-cc") {
        ctx.fail(&format!(
            "the answer's video section does not negotiate transport-cc:\n{answer}"
        ))
        .await;
    }

    // Ramp: the encoder's target and the browser's estimate, every half second.
    let mut curve: Vec<String> = Vec::new();
    let mut wide_at: Option<f64> = None;
    let mut target_reached: Option<f64> = None;
    let mut estimate = 0;
    let mut peak_estimate = 0;
    while live_at.elapsed() < Duration::from_secs(30) {
        let s = publish_state(ctx.publish_page()).await;
        let since = live_at.elapsed().as_secs_f64();
        let target = num(&s, "/pc/outbound/video/targetBitrate");
        let width = num(&s, "/pc/outbound/video/frameWidth");
        estimate = num(&s, "/pc/availableOutgoingBitrate");
        peak_estimate = peak_estimate.max(estimate);
        curve.push(format!(
            "{since:.1}s target {} kbps, estimate {} kbps, {}x{} ({})",
            target / 1000,
            estimate / 1000,
            width,
            num(&s, "/pc/outbound/video/frameHeight"),
            s["pc"]["outbound"]["video"]["qualityLimitationReason"]
                .as_str()
                .unwrap_or("-")
        ));
        if width >= 1280 && wide_at.is_none() {
            wide_at = Some(since);
        }
        if target > 2_000_000 && target_reached.is_none() {
            target_reached = Some(since);
        }
        if target_reached.is_some() && wide_at.is_some() && since > 5.0 {
            break;
        }
        if let Some(dead) = ctx.check_browsers() {
            ctx.fail(&dead).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("publish ramp after going live:\n  {}", curve.join("\n  "));
    println!(
        "target > 2 Mbit/s after {target_reached:?} s; first 1280-wide frame after {wide_at:?} s"
    );
    let sent = twcc_feedback_sent(&ctx.http, &t.base).await;
    println!(
        "transport-cc feedback packets sent: {sent}; browser estimate {estimate} bit/s (peak {peak_estimate})"
    );
    if sent == 0 {
        ctx.fail("the server sent no transport-cc feedback").await;
    }
    // Chromium's send-side estimate starts at 300 kbit/s and moves only on feedback: that
    // it rose is what shows the feedback works (on a machine busy with other tests its
    // delay-based detector may lower it again for a moment, as on a busy network).
    if peak_estimate < 2_000_000 {
        ctx.fail("Chromium's send-side estimate (availableOutgoingBitrate) stayed under 2 Mbit/s")
            .await;
    }
    if !target_reached.is_some_and(|at| at <= 15.0) {
        ctx.fail("the publish page's video target bitrate did not exceed 2 Mbit/s within 15 s")
            .await;
    }

    if let Some(mut tab) = ctx.publisher.take() {
        tab.browser.kill().await;
    }
    t.server.shutdown().await;
}

/// The watch page honours `?quality=`: with a rendition ladder on the channel (fed by the
/// ffmpeg CLI over RTMP), Chromium plays the 180p rendition and the page offers all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_watches_the_rendition_it_asks_for() {
    let t = common::start_server_with(|c| {
        c.ingest.renditions = vec![
            feiyan::config::RenditionSpec {
                name: "180p".into(),
                height: 180,
                video_kbps: 250,
            },
            feiyan::config::RenditionSpec {
                name: "270p".into(),
                height: 270,
                video_kbps: 400,
            },
        ];
    })
    .await;
    let channel = t.station.channel.to_string();
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let mut push = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(format!(
            "rtmp://{rtmp}/live/{channel}?key={}",
            t.station.stream_key
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts");
    let mut ctx = Ctx::new(&t.base, &channel);
    ctx.wait_for(
        "the RTMP push to make the channel live with its ladder",
        Duration::from_secs(20),
        async |c: &Ctx| {
            let info = c.info().await;
            if info["live"].as_bool() == Some(true)
                && info["qualities"].as_array().map(Vec::len) == Some(3)
            {
                Ok(())
            } else {
                Err(format!("api {info}"))
            }
        },
    )
    .await;
    ctx.viewer = Some(Tab::watch(&t.base, &channel, "?quality=180p", None).await);
    ctx.wait_for(
        "the watch page to decode the 180p rendition and offer all three qualities",
        Duration::from_secs(30),
        async |c: &Ctx| {
            let state = watch_state(c.watch_page()).await;
            if num(&state, "/pc/inbound/video/framesDecoded") > 30
                && num(&state, "/view/videoHeight") == 180
                && num(&state, "/view/qualityChoices") == 3
                && state["view"]["quality"] == "180p"
            {
                Ok(())
            } else {
                Err(format!("watch page {state}"))
            }
        },
    )
    .await;
    let watch = watch_state(ctx.watch_page()).await;
    assert_eq!(watch["view"]["videoWidth"], 320, "watch page: {watch}");
    if let Some(mut tab) = ctx.viewer.take() {
        tab.browser.kill().await;
    }
    push.kill().await.ok();
    t.server.shutdown().await;
}

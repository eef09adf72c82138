//! HLS in a real browser: the watch page falls back to HLS when WebRTC cannot connect, with
//! the browser's own HLS player and with hls.js, and the TV page plays HLS first. Playback is
//! read with `getVideoPlaybackQuality()` (`Page::video_playback`), what the page fetched
//! with the DevTools Network domain (`Page::requests`).
//!
//! The server advertises 192.0.2.1 (TEST-NET-1, never routed) as its WebRTC address, so no
//! browser viewer can reach it over WebRTC. The publisher, a canvas in another Chromium,
//! reaches the server on loopback: the test rewrites its WHIP answer's candidates (as a
//! station on the server's LAN would reach it by another address than the public one).
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing
//! browser fails the test; it is never skipped. hls.js must have been fetched by
//! `scripts/deps.sh` (the default `[http] vendor_dir`).

mod common;

use std::time::Duration;

use common::TestServer;
use common::cdp::Page;
use common::pages::{Ctx, Tab, assert_no_csp_violation, num, publish_canvas_mapped};
use common::start_server_with;
use serde_json::{Value, json};

/// Where the server says its WebRTC media is: TEST-NET-1, unreachable by design.
const UNREACHABLE: &str = "192.0.2.1";

/// Run in every document before the page's scripts: this browser has no HLS player of its
/// own (as Firefox and most desktop browsers), so the pages must load hls.js. Chromium 156
/// plays HLS natively (`canPlayType` says "maybe"); this hides that.
const NO_NATIVE_HLS: &str = r#"(() => {
  const canPlay = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(String(type)) ? '' : canPlay.call(this, type);
  };
})();"#;

/// A server whose advertised WebRTC address no viewer can reach, with a canvas publisher
/// live on its one channel.
async fn live_channel_without_webrtc_viewers() -> (TestServer, Ctx) {
    let t =
        start_server_with(|c| c.webrtc.advertised_ips = vec![UNREACHABLE.parse().unwrap()]).await;
    let channel = t.station.channel.to_string();
    let mut ctx = Ctx::new(&t.base, &channel);
    let publisher = Tab::open("publish").await;
    publish_canvas_mapped(
        &publisher.page,
        &format!("{}/whip/{channel}", t.base),
        &t.station.stream_key,
        "video/H264",
        false,
        |answer| answer.replace(UNREACHABLE, "127.0.0.1"),
    )
    .await;
    ctx.publisher = Some(publisher);
    ctx.wait_publishing(Duration::from_secs(30)).await;
    (t, ctx)
}

/// A fresh browser on `path`, recording its requests from the first one.
async fn open_viewer(base: &str, path: &str, no_native_hls: bool) -> Tab {
    let tab = Tab::open("viewer").await;
    tab.page.record_requests().await.expect("Network domain on");
    if no_native_hls {
        tab.page
            .send(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": NO_NATIVE_HLS }),
            )
            .await
            .expect("script installed before the page's own");
    }
    tab.page
        .navigate(&format!("{base}{path}"))
        .await
        .expect("page loads");
    tab
}

/// The page's requests and answers that concern HLS, hls.js and WHEP, for failure reports.
fn media_requests(page: &Page) -> Vec<Value> {
    page.requests()
        .into_iter()
        .filter(|r| {
            let url = r["url"].as_str().unwrap_or("");
            url.contains("/hls/")
                || url.contains("/assets/vendor/")
                || url.contains("/whep/")
                || r.get("failed").is_some()
        })
        .collect()
}

/// The page's `fy_dev` cookie, as its script reads it.
async fn device_cookie(page: &Page) -> String {
    let cookies = page.evaluate("document.cookie").await.expect("cookies");
    cookies
        .as_str()
        .unwrap_or("")
        .split("; ")
        .find_map(|c| c.strip_prefix("fy_dev="))
        .unwrap_or_else(|| panic!("no fy_dev cookie in {cookies}"))
        .to_string()
}

/// Waits until the viewer's `<video>` has shown more than 30 frames, then checks that
/// playback goes on: within ten seconds `currentTime` is at least two seconds further,
/// with more frames shown and the element not paused. (A low-latency player near the live
/// edge may rebuffer for a moment on a loaded two-core machine; it must then play on.)
/// `mode_js` is what the page shows as its mode; it must say HLS.
async fn assert_hls_plays(ctx: &mut Ctx, mode_js: &str) {
    let mode_js = mode_js.to_string();
    let first = ctx
        .wait_for(
            "the page to play HLS (more than 30 frames)",
            Duration::from_secs(60),
            async |c: &Ctx| {
                let page = c.watch_page();
                let playback = page.video_playback("video").await.unwrap_or(Value::Null);
                let mode = page.evaluate(&mode_js).await.unwrap_or(Value::Null);
                if num(&playback, "/totalVideoFrames") > 30
                    && mode.as_str().is_some_and(|m| m.contains("HLS"))
                {
                    Ok(playback)
                } else {
                    Err(format!(
                        "playback {playback}; mode {mode}; requests {}",
                        json!(media_requests(page))
                    ))
                }
            },
        )
        .await;
    let t0 = first["currentTime"].as_f64().unwrap_or(0.0);
    let frames0 = num(&first, "/totalVideoFrames");
    let later = ctx
        .wait_for(
            "HLS playback to go on (currentTime 2 s further)",
            Duration::from_secs(10),
            async |c: &Ctx| {
                let page = c.watch_page();
                let now = page.video_playback("video").await.unwrap_or(Value::Null);
                let t1 = now["currentTime"].as_f64().unwrap_or(0.0);
                if t1 >= t0 + 2.0
                    && num(&now, "/totalVideoFrames") > frames0
                    && now["paused"] == false
                {
                    Ok(now)
                } else {
                    Err(format!(
                        "from {first} to {now}; requests {}",
                        json!(media_requests(page))
                    ))
                }
            },
        )
        .await;
    println!("HLS playback: {first} -> {later}");
}

/// The page asked for the channel's playlist with its device id, and never connected
/// over WebRTC.
async fn assert_hls_with_vid(ctx: &Ctx) {
    let page = ctx.watch_page();
    let vid = device_cookie(page).await;
    let playlist = format!("{}/hls/{}/index.m3u8?vid={vid}", ctx.base, ctx.channel);
    let requests = page.requests();
    assert!(
        requests.iter().any(|r| r["url"] == playlist.as_str()),
        "no request for {playlist}: {}",
        json!(media_requests(page))
    );
    let pcs = page.peer_connection_stats().await.unwrap_or(json!([]));
    assert!(
        !pcs.as_array()
            .is_some_and(|a| a.iter().any(|pc| pc["connectionState"] == "connected")),
        "a WebRTC connection to {UNREACHABLE} connected: {pcs}"
    );
}

fn fetched_ok(page: &Page, path: &str) -> bool {
    page.requests()
        .iter()
        .any(|r| r["status"] == 200 && r["url"].as_str().is_some_and(|u| u.ends_with(path)))
}

const WATCH_MODE: &str = "document.getElementById('status').textContent";

/// The watch page in a browser that plays HLS itself: WebRTC cannot connect, so after a few
/// seconds the page plays `/hls/{c}/index.m3u8?vid=<its fy_dev>` in the `<video>` element
/// and says so ("播放中 · HLS"); it never loads hls.js. No CSP violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_page_falls_back_to_native_hls() {
    let (t, mut ctx) = live_channel_without_webrtc_viewers().await;
    ctx.viewer = Some(open_viewer(&t.base, &format!("/watch/{}", ctx.channel), false).await);
    assert_hls_plays(&mut ctx, WATCH_MODE).await;
    assert_hls_with_vid(&ctx).await;
    let page = ctx.watch_page();
    assert!(
        !page
            .requests()
            .iter()
            .any(|r| r["url"].as_str().is_some_and(|u| u.contains("hls.min.js"))),
        "hls.js loaded although the browser plays HLS: {}",
        json!(media_requests(page))
    );
    assert_no_csp_violation(page, "the watch page playing HLS").await;
    ctx.viewer.take();
    ctx.publisher.take();
    t.server.shutdown().await;
}

/// The same in a browser without HLS of its own: the page loads
/// `/assets/vendor/hls.min.js` (only now) and plays through it, Media Source and a worker
/// under the strict CSP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_page_falls_back_to_hls_js() {
    let (t, mut ctx) = live_channel_without_webrtc_viewers().await;
    ctx.viewer = Some(open_viewer(&t.base, &format!("/watch/{}", ctx.channel), true).await);
    assert_hls_plays(&mut ctx, WATCH_MODE).await;
    assert_hls_with_vid(&ctx).await;
    let page = ctx.watch_page();
    assert!(
        fetched_ok(page, "/assets/vendor/hls.min.js"),
        "hls.js not fetched: {}",
        json!(media_requests(page))
    );
    assert_no_csp_violation(page, "the watch page playing HLS with hls.js").await;
    ctx.viewer.take();
    ctx.publisher.take();
    t.server.shutdown().await;
}

/// The TV page plays HLS first (and shows "HLS"), with the title at 48 px or more, focus
/// on the first control with a visible ring, and the remote's keys: → moves to 静音/开启声音,
/// OK toggles the sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tv_page_plays_hls() {
    let (t, mut ctx) = live_channel_without_webrtc_viewers().await;
    ctx.viewer = Some(open_viewer(&t.base, &format!("/tv/{}", ctx.channel), false).await);
    assert_hls_plays(&mut ctx, "document.getElementById('mode').textContent").await;
    assert_hls_with_vid(&ctx).await;
    let page = ctx.watch_page();
    let look = page
        .evaluate(
            "(() => { const h = getComputedStyle(document.getElementById('title')); \
             const f = document.activeElement; const s = getComputedStyle(f); \
             return { title: parseFloat(h.fontSize), focused: f.id, \
               outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) }; })()",
        )
        .await
        .unwrap();
    assert!(look["title"].as_f64().unwrap_or(0.0) >= 48.0, "{look}");
    assert_eq!(look["focused"], "play", "{look}");
    assert!(
        look["outline"] != "none" && look["outlineWidth"].as_f64().unwrap_or(0.0) >= 4.0,
        "{look}"
    );
    let muted = "document.getElementById('video').muted";
    let before = page.evaluate(muted).await.unwrap();
    for key in [("ArrowRight", 39), ("Enter", 13)] {
        press(page, key.0, key.1).await;
    }
    let after = page
        .evaluate("({ focused: document.activeElement.id, muted: document.getElementById('video').muted })")
        .await
        .unwrap();
    assert_eq!(after["focused"], "mute", "{after}");
    assert_ne!(
        after["muted"], before,
        "OK on 静音 toggles the sound: {after}"
    );
    assert_no_csp_violation(page, "the TV page").await;
    ctx.viewer.take();
    ctx.publisher.take();
    t.server.shutdown().await;
}

/// A remote control's key press, as the browser gets it.
async fn press(page: &Page, key: &str, code: u32) {
    for kind in ["keyDown", "keyUp"] {
        let mut params = json!({
            "type": kind, "key": key, "code": key,
            "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code,
        });
        if key == "Enter" && kind == "keyDown" {
            params["text"] = json!("\r");
        }
        page.send("Input.dispatchKeyEvent", params)
            .await
            .expect("key sent");
    }
}

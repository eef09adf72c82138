//! End to end with real browsers, driven over the DevTools protocol (`common::cdp`): a
//! headless Chromium opens the served `/publish` page, types the stream key and presses
//! 开始直播 (WHIP from its fake camera and microphone); a second headless Chromium opens the
//! `/watch` page (WHEP) and decodes video and audio. The tests read the pages' peer
//! connections (`getStats()`) and video elements over CDP; the pages carry no test hooks.
//! Killing the viewer's browser (no DELETE is sent) must bring the server's viewer count
//! back to 0 once ICE times out. Every page answers with the CSP header and Chromium sees no
//! CSP violation on any of them while publishing, watching and logging in.
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing
//! browser fails the test; it is never skipped.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cdp::{Browser, Page};
use common::start_server;
use feiyan::catalog::Scope;
use feiyan::config::Config;
use serde_json::{Value, json};

/// A browser and the one page a test drives in it.
struct Tab {
    browser: Browser,
    page: Page,
}

impl Tab {
    async fn open(name: &str) -> Tab {
        let browser = Browser::launch(name, &[]).await;
        let page = browser.new_page().await;
        Tab { browser, page }
    }

    /// A fresh browser on the watch page of `channel` (`query` after it, e.g.
    /// `?quality=180p`), with `on_new_document` run in every document before the page's own
    /// scripts.
    async fn watch(base: &str, channel: &str, query: &str, on_new_document: Option<&str>) -> Tab {
        let tab = Tab::open("watch").await;
        if let Some(source) = on_new_document {
            tab.page
                .send(
                    "Page.addScriptToEvaluateOnNewDocument",
                    json!({ "source": source }),
                )
                .await
                .expect("script installed before the page's own");
        }
        tab.page
            .navigate(&format!("{base}/watch/{channel}{query}"))
            .await
            .expect("watch page loads");
        tab
    }
}

fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .map(|f| f as u64)
        .unwrap_or(0)
}

/// A JavaScript string literal.
fn js_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// Opens the publish page, types the key and title as a person would, and presses 开始直播.
async fn start_publishing(page: &Page, base: &str, channel: &str, key: &str, title: &str) {
    page.navigate(&format!("{base}/publish/{channel}"))
        .await
        .expect("publish page loads");
    page.evaluate(&format!(
        "(() => {{ document.getElementById('key').value = {}; \
         document.getElementById('title').value = {}; \
         document.getElementById('start').click(); }})()",
        js_str(key),
        js_str(title)
    ))
    .await
    .expect("the publish form is filled and submitted");
}

/// What the watch page shows: its video element and quality menu.
const WATCH_VIEW: &str = "(() => { \
    const v = document.getElementById('video'); \
    const box = document.getElementById('quality-box'); \
    const sel = document.getElementById('quality'); \
    return { videoWidth: v.videoWidth, videoHeight: v.videoHeight, currentTime: v.currentTime, \
      paused: v.paused, status: document.body.getAttribute('data-status'), \
      qualityChoices: box.hidden ? 0 : sel.options.length, quality: sel.value || 'source' }; })()";

/// Records (for the notes) when the watch page's video first plays; test-side, set before
/// the page's own scripts run.
const FIRST_PLAYING: &str = "document.addEventListener('playing', () => { \
    if (window.__feiyanFirstPlaying === undefined) \
      Object.defineProperty(window, '__feiyanFirstPlaying', { value: performance.now() }); \
  }, true);";

/// Watch page state: `{pc: <connected peer connection stats or null>, view: WATCH_VIEW}`.
async fn watch_state(page: &Page) -> Value {
    let pc = page
        .connected_peer_stats()
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let view = page
        .evaluate(WATCH_VIEW)
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    json!({ "pc": pc, "view": view })
}

/// Publish page state: its connected peer connection's stats and the page's status.
async fn publish_state(page: &Page) -> Value {
    let pc = page
        .connected_peer_stats()
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let status = page
        .evaluate("document.body.getAttribute('data-status')")
        .await
        .unwrap_or_else(|e| json!(e.to_string()));
    json!({ "pc": pc, "status": status })
}

async fn channel_info(http: &reqwest::Client, base: &str, channel: &str) -> Value {
    let res = async {
        http.get(format!("{base}/api/channels/{channel}"))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    }
    .await;
    res.unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

/// Everything needed to explain a failure.
struct Ctx {
    started: Instant,
    http: reqwest::Client,
    base: String,
    channel: String,
    publisher: Option<Tab>,
    viewer: Option<Tab>,
}

impl Ctx {
    fn new(base: &str, channel: &str) -> Ctx {
        Ctx {
            started: Instant::now(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            base: base.to_string(),
            channel: channel.to_string(),
            publisher: None,
            viewer: None,
        }
    }

    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    async fn info(&self) -> Value {
        channel_info(&self.http, &self.base, &self.channel).await
    }

    fn publish_page(&self) -> &Page {
        &self.publisher.as_ref().expect("publisher open").page
    }

    fn watch_page(&self) -> &Page {
        &self.viewer.as_ref().expect("viewer open").page
    }

    /// Fails early if a browser died on its own.
    fn check_browsers(&mut self) -> Option<String> {
        for tab in [self.publisher.as_mut(), self.viewer.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(status) = tab.browser.exited() {
                return Some(format!(
                    "{} chromium exited on its own: {status}",
                    tab.browser.name
                ));
            }
        }
        None
    }

    async fn fail(&self, msg: &str) -> ! {
        // Let the stderr readers catch up with a browser that just died.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let info = self.info().await;
        let mut out = format!(
            "\n==== browser test failed at {:.1} s: {msg}\napi /api/channels/{}: {info}\n",
            self.t(),
            self.channel
        );
        if let Some(tab) = &self.publisher {
            out.push_str(&format!(
                "publish page: {}\n",
                publish_state(&tab.page).await
            ));
        }
        if let Some(tab) = &self.viewer {
            out.push_str(&format!("watch page: {}\n", watch_state(&tab.page).await));
        }
        for tab in [self.publisher.as_ref(), self.viewer.as_ref()]
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "---- {} chromium stderr (last lines):\n{}\n",
                tab.browser.name,
                tab.browser.stderr_tail()
            ));
        }
        eprintln!("{out}");
        panic!("{msg} (diagnostics above)");
    }

    /// Polls `check` every 250 ms until it yields `Ok`, a browser dies, or `timeout` passes.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut(&Ctx) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(dead) = self.check_browsers() {
                self.fail(&format!("{dead} while waiting for {what}")).await;
            }
            let last = match check(self).await {
                Ok(v) => return v,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {:.0} s waiting for {what}; last state: {last}",
                    timeout.as_secs_f64()
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the publish page is live and sending video and audio.
    async fn wait_publishing(&mut self, timeout: Duration) {
        self.wait_for(
            "the channel to go live and the publish page to send video and audio",
            timeout,
            async |c: &Ctx| {
                let info = c.info().await;
                let state = publish_state(c.publish_page()).await;
                if info["live"].as_bool() == Some(true)
                    && num(&state, "/pc/outbound/video/packetsSent") > 0
                    && num(&state, "/pc/outbound/audio/packetsSent") > 0
                {
                    Ok(())
                } else {
                    Err(format!("api {info}; publish page {state}"))
                }
            },
        )
        .await;
    }
}

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
    while live_at.elapsed() < Duration::from_secs(30) {
        let s = publish_state(ctx.publish_page()).await;
        let since = live_at.elapsed().as_secs_f64();
        let target = num(&s, "/pc/outbound/video/targetBitrate");
        let width = num(&s, "/pc/outbound/video/frameWidth");
        estimate = num(&s, "/pc/availableOutgoingBitrate");
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
    println!("transport-cc feedback packets sent: {sent}; browser estimate {estimate} bit/s");
    if sent == 0 {
        ctx.fail("the server sent no transport-cc feedback").await;
    }
    // Chromium's send-side estimate starts at 300 kbit/s and moves only on feedback.
    if estimate < 2_000_000 {
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

/// The exact policy every page must carry (built by `feiyan::http::security`).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Fails with the page's violations, if any.
async fn assert_no_csp_violation(page: &Page, what: &str) {
    let violations = page.csp_violations().await.expect("violations readable");
    assert!(
        violations.is_empty(),
        "CSP violations on {what}:\n{}",
        violations.join("\n")
    );
}

/// Every page answers with the CSP header (and the other security headers), holds no
/// inline script or style, and a Chromium session that publishes, watches, lists the live
/// channel and logs into the dashboard sees no CSP violation on any page. The publish page
/// ignores `?key=` and `?autostart=`, and keeps the key only while 记住密钥 is ticked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_holds_a_strict_csp_in_chromium() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let key = t.station.stream_key.clone();
    let http = reqwest::Client::new();

    // 1. The headers, and no inline script, style or handler in the HTML.
    for path in [
        "/".to_string(),
        format!("/watch/{channel}"),
        format!("/publish/{channel}"),
        "/admin".to_string(),
        "/assets/feiyan.js".to_string(),
        "/assets/feiyan.css".to_string(),
        "/assets/index.js".to_string(),
        "/assets/watch.js".to_string(),
        "/assets/publish.js".to_string(),
        "/assets/admin.js".to_string(),
        "/assets/admin.css".to_string(),
    ] {
        let r = http
            .get(format!("{}{path}", t.base))
            .send()
            .await
            .expect("page answers");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(
            h["referrer-policy"], "strict-origin-when-cross-origin",
            "{path}"
        );
        let ct = h["content-type"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        if path.ends_with(".js") {
            assert!(ct.starts_with("text/javascript"), "{path}: {ct}");
        } else if path.ends_with(".css") {
            assert!(ct.starts_with("text/css"), "{path}: {ct}");
        } else {
            assert!(ct.starts_with("text/html"), "{path}: {ct}");
            let lower = body.to_ascii_lowercase();
            assert_eq!(
                lower.matches("<script").count(),
                lower.matches("<script src=\"/assets/").count(),
                "{path}: every script comes from /assets/"
            );
            assert!(!lower.contains("<style"), "{path}: an inline <style>");
            assert!(
                !lower.contains(" style="),
                "{path}: an inline style attribute"
            );
            for handler in [
                " onclick=",
                " onload=",
                " onsubmit=",
                " onchange=",
                " oninput=",
            ] {
                assert!(!lower.contains(handler), "{path}: an inline {handler}");
            }
        }
    }

    // 2. The publish page: a link can neither fill the key nor start publishing.
    let publisher = Tab::open("publish").await;
    let page = &publisher.page;
    page.navigate(&format!(
        "{}/publish/{channel}?key={key}&autostart=1&title=x",
        t.base
    ))
    .await
    .expect("publish page loads");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let form = page
        .evaluate(
            "({ key: document.getElementById('key').value, \
               remember: document.getElementById('remember-key').checked, \
               status: document.body.getAttribute('data-status') })",
        )
        .await
        .unwrap();
    assert_eq!(form["key"], "", "the key came from the URL: {form}");
    assert_eq!(form["status"], "idle", "the page started by itself: {form}");
    assert_eq!(form["remember"], false, "{form}");
    assert_eq!(
        page.peer_connection_stats().await.unwrap(),
        json!([]),
        "no peer connection before 开始直播"
    );
    assert_no_csp_violation(page, "the publish page (idle)").await;

    // 3. Publish with 记住密钥 ticked: the key is kept; unticking removes it.
    page.navigate(&format!("{}/publish/{channel}", t.base))
        .await
        .expect("publish page loads");
    page.evaluate(&format!(
        "(() => {{ document.getElementById('key').value = {}; \
         document.getElementById('remember-key').click(); \
         document.getElementById('start').click(); }})()",
        js_str(&key)
    ))
    .await
    .unwrap();
    let mut ctx = Ctx::new(&t.base, &channel);
    ctx.publisher = Some(publisher);
    ctx.wait_publishing(Duration::from_secs(20)).await;
    let page = ctx.publish_page();
    let store = format!(
        "localStorage.getItem({})",
        js_str(&format!("feiyan.streamKey.{channel}"))
    );
    assert_eq!(
        page.evaluate(&store).await.unwrap(),
        json!(key),
        "key kept when ticked"
    );
    page.evaluate("document.getElementById('remember-key').click()")
        .await
        .unwrap();
    assert_eq!(
        page.evaluate(&store).await.unwrap(),
        Value::Null,
        "key removed when unticked"
    );
    assert_no_csp_violation(page, "the publish page (live)").await;

    // 4. Watch, then the live list, then the dashboard, in one tab of a second browser.
    ctx.viewer = Some(Tab::watch(&t.base, &channel, "", None).await);
    ctx.wait_for(
        "the watch page to decode video",
        Duration::from_secs(30),
        async |c: &Ctx| {
            let state = watch_state(c.watch_page()).await;
            if num(&state, "/pc/inbound/video/framesDecoded") > 10
                && num(&state, "/view/videoWidth") > 0
            {
                Ok(())
            } else {
                Err(format!("watch page {state}"))
            }
        },
    )
    .await;
    assert_no_csp_violation(ctx.watch_page(), "the watch page (playing)").await;

    ctx.watch_page()
        .navigate(&format!("{}/", t.base))
        .await
        .expect("home page loads");
    let watch_href = format!("/watch/{channel}");
    ctx.wait_for(
        "the home page to list the live channel",
        Duration::from_secs(10),
        async |c: &Ctx| {
            let hrefs = c
                .watch_page()
                .evaluate(
                    "Array.from(document.querySelectorAll('#list a.card'), (a) => a.getAttribute('href'))",
                )
                .await
                .unwrap_or(Value::Null);
            if hrefs.as_array().is_some_and(|a| a.iter().any(|h| h == &json!(watch_href))) {
                Ok(())
            } else {
                Err(format!("cards: {hrefs}"))
            }
        },
    )
    .await;
    assert_no_csp_violation(ctx.watch_page(), "the home page").await;

    t.server
        .catalog
        .add_account("city", "secret-password", Scope::City)
        .await
        .expect("admin account added");
    let admin = ctx.watch_page();
    admin
        .navigate(&format!("{}/admin", t.base))
        .await
        .expect("dashboard loads");
    admin
        .evaluate(
            "(() => { document.getElementById('user').value = 'city'; \
             document.getElementById('pass').value = 'secret-password'; \
             document.querySelector('#loginForm button').click(); })()",
        )
        .await
        .unwrap();
    ctx.wait_for(
        "the dashboard to log in and draw its figures, chart, bars and sessions",
        Duration::from_secs(15),
        async |c: &Ctx| {
            let view = c
                .watch_page()
                .evaluate(
                    "({ app: !document.getElementById('app').classList.contains('hidden'), \
                       who: document.getElementById('who').textContent, \
                       figures: document.querySelectorAll('#figures .figure').length, \
                       chart: document.querySelectorAll('#chart svg').length, \
                       bars: document.querySelectorAll('#terminals .term-bar').length, \
                       sessions: document.getElementById('sessions').textContent.length, \
                       error: document.getElementById('error').textContent })",
                )
                .await
                .unwrap_or(Value::Null);
            if view["app"] == true
                && num(&view, "/figures") == 6
                && num(&view, "/chart") == 1
                && num(&view, "/bars") == 4
                && num(&view, "/sessions") > 0
                && view["error"] == ""
            {
                Ok(())
            } else {
                Err(format!("dashboard {view}"))
            }
        },
    )
    .await;
    assert_no_csp_violation(ctx.watch_page(), "the dashboard (logged in)").await;

    // 5. The detector is not blind: an inline style and an inline script, added to a page
    //    by hand, are refused and reported.
    let probe = ctx.viewer.as_ref().unwrap().browser.new_page().await;
    probe
        .navigate(&format!("{}/", t.base))
        .await
        .expect("home page loads");
    probe
        .evaluate(
            "(() => { document.body.setAttribute('style', 'color: red'); \
             const s = document.createElement('script'); s.textContent = 'window.x = 1'; \
             document.head.append(s); })()",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = probe.csp_violations().await.unwrap();
    for directive in ["style-src", "script-src"] {
        assert!(
            seen.iter()
                .any(|v| v.starts_with("event:") && v.contains(directive)),
            "{directive} violation not seen: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|v| v.starts_with("log:")),
        "no CSP log entry: {seen:?}"
    );
    println!("the probe's violations, as reported: {seen:#?}");

    for tab in [ctx.viewer.take(), ctx.publisher.take()]
        .into_iter()
        .flatten()
    {
        let mut tab = tab;
        tab.browser.kill().await;
    }
    t.server.shutdown().await;
}

/// The page's own view of `/api/channels/{channel}`, fetched by the page (so over the same
/// HTTPS connection setup the resident's browser uses).
async fn channel_info_from(page: &Page, channel: &str) -> Value {
    page.evaluate(&format!(
        "fetch('/api/channels/' + {}).then(r => r.json())",
        js_str(channel)
    ))
    .await
    .unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

/// A station on a LAN: HTTPS with the server's self-signed certificate, reached by a name
/// that is not localhost (getUserMedia needs a secure context there). Chromium trusts the
/// certificate by the SPKI hash the server prints; one browser publishes from
/// `/publish/{channel}`, another watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_and_watches_over_https_on_a_lan_name() {
    let t = common::start_server_with(|c| {
        c.http.tls = feiyan::config::TlsMode::SelfSigned;
        c.http.tls_names = vec!["station.feiyan.test".into()];
    })
    .await;
    let channel = t.station.channel.to_string();
    let prints = t.server.tls.as_ref().expect("TLS on").fingerprints();
    let base = format!("https://station.feiyan.test:{}", t.server.http_addr.port());
    let trust = format!(
        "--ignore-certificate-errors-spki-list={}",
        prints.spki_sha256
    );
    let args = [
        trust.as_str(),
        "--host-resolver-rules=MAP station.feiyan.test 127.0.0.1",
    ];

    let publisher = Browser::launch("https-publish", &args).await;
    let publish = publisher.new_page().await;
    start_publishing(
        &publish,
        &base,
        &channel,
        &t.station.stream_key,
        "HTTPS 测试",
    )
    .await;
    let secure = publish
        .evaluate("[location.protocol, window.isSecureContext]")
        .await
        .unwrap();
    assert_eq!(secure, json!(["https:", true]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = publish_state(&publish).await;
        let info = channel_info_from(&publish, &channel).await;
        if info["live"] == true && num(&state, "/pc/outbound/video/packetsSent") > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not live over HTTPS: api {info}; publish page {state}; chromium: {}",
            publisher.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let watcher = Browser::launch("https-watch", &args).await;
    let watch = watcher.new_page().await;
    watch
        .navigate(&format!("{base}/watch/{channel}"))
        .await
        .expect("watch page loads over HTTPS");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = watch_state(&watch).await;
        if num(&state, "/pc/inbound/video/framesDecoded") > 30
            && num(&state, "/pc/inbound/audio/packetsReceived") > 20
            && state["view"]["status"] == "playing"
        {
            println!("watching over HTTPS: {state}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not playing over HTTPS: {state}; chromium: {}",
            watcher.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_no_csp_violation(&publish, "publish over HTTPS").await;
    assert_no_csp_violation(&watch, "watch over HTTPS").await;
    let info = channel_info_from(&watch, &channel).await;
    assert!(info["viewers"].as_u64().unwrap_or(0) >= 1, "{info}");
    drop((watcher, publisher));
    t.server.shutdown().await;
}

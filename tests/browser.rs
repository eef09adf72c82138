//! End to end with real browsers: a headless Chromium publishes its fake camera and microphone
//! through the served `/publish` page (WHIP), a second headless Chromium plays the channel
//! through the served `/watch` page (WHEP) and decodes video and audio. Both pages POST their
//! `getStats()` summaries to a small collector run by this test. Killing the viewer's browser
//! (no DELETE is sent) must bring the server's viewer count back to 0 once ICE times out.
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing
//! browser fails the test; it is never skipped.

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::start_server;
use feiyan::config::Config;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use warp::Filter;
use warp::http::StatusCode;

const STDERR_TAIL_LINES: usize = 40;

// ---------------------------------------------------------------------------------------------
// Report collector
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Reports {
    latest: HashMap<String, Value>,
    count: HashMap<String, u64>,
    bad: u64,
}

type SharedReports = Arc<Mutex<Reports>>;

/// Serves `POST /report` (JSON with a `page` field) and answers CORS preflights, on
/// 127.0.0.1 with an ephemeral port. Returns the report URL.
async fn start_collector(reports: SharedReports) -> String {
    let preflight = warp::options().map(|| {
        let reply = warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT);
        let reply = warp::reply::with_header(reply, "access-control-allow-origin", "*");
        let reply = warp::reply::with_header(reply, "access-control-allow-headers", "content-type");
        warp::reply::with_header(reply, "access-control-allow-methods", "POST")
    });
    let post = warp::post()
        .and(warp::path("report"))
        .and(warp::path::end())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| {
            let mut r = reports.lock().unwrap();
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) => {
                    let page = v["page"].as_str().unwrap_or("?").to_string();
                    *r.count.entry(page.clone()).or_default() += 1;
                    r.latest.insert(page, v);
                }
                Err(_) => r.bad += 1,
            }
            let reply = warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT);
            warp::reply::with_header(reply, "access-control-allow-origin", "*")
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector binds");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(preflight.or(post)).incoming(listener).run());
    format!("http://{addr}/report")
}

fn latest(reports: &SharedReports, page: &str) -> Value {
    reports
        .lock()
        .unwrap()
        .latest
        .get(page)
        .cloned()
        .unwrap_or(Value::Null)
}

fn num(v: &Value, field: &str) -> u64 {
    v[field].as_f64().map(|f| f as u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------------

fn chromium_path() -> PathBuf {
    let path = std::env::var_os("FEIYAN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {} — this test needs a real browser. Install it \
         (`apt-get install -y chromium`) or set FEIYAN_CHROMIUM to its path.",
        path.display()
    );
    path
}

/// A headless Chromium in its own process group (so the renderer, GPU and network
/// processes die with it) and its own profile directory.
struct Browser {
    name: &'static str,
    child: tokio::process::Child,
    pid: i32,
    stderr: Arc<Mutex<VecDeque<String>>>,
    killed: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(name: &'static str, chromium: &std::path::Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = tokio::process::Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            // Chromium's default mDNS (.local) host candidates stay on, as in real
            // browsers: the server learns the real address from the browser's checks.
            "--autoplay-policy=no-user-gesture-required",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--remote-debugging-port=0",
            // Page console messages (JS errors, failed fetches) go to stderr too.
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({name}): {e}", chromium.display()));
        let pid = child.id().expect("chromium pid") as i32;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let pipe = child.stderr.take().expect("stderr piped");
        let tail = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match lines.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        // No D-Bus and no sound card in a headless test box: that noise
                        // would fill the tail.
                        if line.contains(":dbus/")
                            || line.contains("D-Bus")
                            || line.starts_with("ALSA lib ")
                        {
                            continue;
                        }
                        let mut t = tail.lock().unwrap();
                        if t.len() == STDERR_TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            }
        });
        println!("[browser] started {name} chromium (pid {pid}): {url}");
        Browser {
            name,
            child,
            pid,
            stderr,
            killed: false,
            _profile: profile,
        }
    }

    /// `Some(status)` if the browser exited (and we did not kill it).
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) if !self.killed => Some(status.to_string()),
            _ => None,
        }
    }

    /// SIGKILL to the whole process group: the page gets no chance to send a DELETE.
    async fn kill(&mut self) {
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn kill_group(&mut self) {
        if !self.killed && self.pid > 1 {
            // SAFETY: plain syscall; the group is the one this test created for this child.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
        self.killed = true;
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap();
        if t.is_empty() {
            return "    (no stderr output)".into();
        }
        t.iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    res.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// Everything needed to explain a failure.
struct Ctx {
    started: Instant,
    http: reqwest::Client,
    base: String,
    channel: String,
    reports: SharedReports,
    publisher: Option<Browser>,
    viewer: Option<Browser>,
}

impl Ctx {
    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    async fn info(&self) -> Value {
        channel_info(&self.http, &self.base, &self.channel).await
    }

    /// Fails early if a browser died on its own.
    fn check_browsers(&mut self) -> Option<String> {
        for b in [self.publisher.as_mut(), self.viewer.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(status) = b.exited() {
                return Some(format!("{} chromium exited on its own: {status}", b.name));
            }
        }
        None
    }

    async fn fail(&self, msg: &str) -> ! {
        // Let the stderr readers catch up with a browser that just died.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let info = self.info().await;
        let (pub_report, watch_report, counts, bad) = {
            let r = self.reports.lock().unwrap();
            (
                r.latest.get("publish").cloned().unwrap_or(Value::Null),
                r.latest.get("watch").cloned().unwrap_or(Value::Null),
                format!("{:?}", r.count),
                r.bad,
            )
        };
        let mut out = format!(
            "\n==== browser test failed at {:.1} s: {msg}\n\
             api /api/channels/{}: {info}\n\
             reports received: {counts} (unparsable: {bad})\n\
             last publish report: {pub_report}\n\
             last watch report:   {watch_report}\n",
            self.t(),
            self.channel
        );
        for b in [self.publisher.as_ref(), self.viewer.as_ref()]
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "---- {} chromium stderr (last {STDERR_TAIL_LINES} lines):\n{}\n",
                b.name,
                b.stderr_tail()
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
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_and_chromium_watches() {
    let chromium = chromium_path();
    let t = start_server().await;
    let reports: SharedReports = Arc::default();
    let report_url = start_collector(reports.clone()).await;
    let channel = t.station.channel.to_string();
    let mut ctx = Ctx {
        started: Instant::now(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        base: t.base.clone(),
        channel: channel.clone(),
        reports: reports.clone(),
        publisher: None,
        viewer: None,
    };

    // 1. Publish from the first browser.
    let publish_url = format!(
        "{}/publish/{}?key={}&title={}&autostart=1&report={}",
        t.base,
        enc(&channel),
        enc(&t.station.stream_key),
        enc("浏览器测试"),
        enc(&report_url)
    );
    ctx.publisher = Some(Browser::launch("publish", &chromium, &publish_url));
    ctx.wait_for(
        "the channel to go live and the publish page to send video and audio",
        Duration::from_secs(20),
        async |c: &Ctx| {
            let info = c.info().await;
            let rep = latest(&c.reports, "publish");
            let live = info["live"].as_bool() == Some(true);
            if live && num(&rep, "packetsSent") > 0 && num(&rep, "audioPacketsSent") > 0 {
                Ok(())
            } else {
                Err(format!("api {info}; publish report {rep}"))
            }
        },
    )
    .await;
    println!(
        "[{:.1}s] live; publish report {}",
        ctx.t(),
        latest(&reports, "publish")
    );

    // 2. Watch from a second browser.
    let watch_url = format!(
        "{}/watch/{}?report={}",
        t.base,
        enc(&channel),
        enc(&report_url)
    );
    ctx.viewer = Some(Browser::launch("watch", &chromium, &watch_url));
    let watch_started = ctx.t();
    ctx.wait_for(
        "the watch page to decode video (>30 frames) and audio (>20 packets), connected, with the viewer counted",
        Duration::from_secs(30),
        async |c: &Ctx| {
            let rep = latest(&c.reports, "watch");
            let info = c.info().await;
            let viewers = info["viewers"].as_u64().unwrap_or(0);
            if num(&rep, "framesDecoded") > 30
                && num(&rep, "audioPacketsReceived") > 20
                && num(&rep, "videoWidth") > 0
                && rep["state"] == "connected"
                && num(&rep, "firstFrameMs") > 0
                && viewers >= 1
            {
                Ok(())
            } else {
                Err(format!("watch report {rep}; api {info}"))
            }
        },
    )
    .await;
    let watch = latest(&reports, "watch");
    println!(
        "[{:.1}s] playing {:.1} s after the viewer started: {watch}; api {}",
        ctx.t(),
        ctx.t() - watch_started,
        ctx.info().await
    );
    // The page's own join timing (a figure for the notes, not a bound: tests do not time).
    println!(
        "chromium join: WHEP POST -> connected {} ms, -> first frame shown {} ms",
        watch["connectedMs"], watch["firstFrameMs"]
    );
    assert_eq!(watch["state"], "connected", "watch report: {watch}");

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
    let frames_at_detach = num(&latest(&reports, "watch"), "framesDecoded");
    tokio::time::sleep(Duration::from_secs(25)).await;
    let watch = latest(&reports, "watch");
    println!(
        "[{:.1}s] 25 s after the viewer was detached: {watch}",
        ctx.t()
    );
    if watch["state"] != "connected" || num(&watch, "framesDecoded") < frames_at_detach + 100 {
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
    ctx.viewer.as_mut().unwrap().kill().await;
    let killed_at = ctx.t();
    println!("[{killed_at:.1}s] watch chromium killed");
    let publish_before = num(&latest(&reports, "publish"), "packetsSent");
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
            let rep = latest(&c.reports, "publish");
            if num(&rep, "packetsSent") > publish_before && rep["state"] == "connected" {
                Ok(())
            } else {
                Err(format!(
                    "publish report {rep} (packetsSent was {publish_before})"
                ))
            }
        },
    )
    .await;
    println!(
        "[{:.1}s] done; final publish report {}",
        ctx.t(),
        latest(&reports, "publish")
    );

    if let Some(mut b) = ctx.publisher.take() {
        b.kill().await;
    }
    t.server.shutdown().await;
}

/// The watch page honours `?quality=`: with a rendition ladder on the channel (fed by the
/// ffmpeg CLI over RTMP), Chromium plays the 180p rendition and the page offers all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_watches_the_rendition_it_asks_for() {
    let chromium = chromium_path();
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
    let reports: SharedReports = Arc::default();
    let report_url = start_collector(reports.clone()).await;
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
    let mut ctx = Ctx {
        started: Instant::now(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        base: t.base.clone(),
        channel: channel.clone(),
        reports: reports.clone(),
        publisher: None,
        viewer: None,
    };
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
    let watch_url = format!(
        "{}/watch/{}?quality=180p&report={}",
        t.base,
        enc(&channel),
        enc(&report_url)
    );
    ctx.viewer = Some(Browser::launch("watch", &chromium, &watch_url));
    ctx.wait_for(
        "the watch page to decode the 180p rendition and offer all three qualities",
        Duration::from_secs(30),
        async |c: &Ctx| {
            let rep = latest(&c.reports, "watch");
            if num(&rep, "framesDecoded") > 30
                && num(&rep, "videoHeight") == 180
                && num(&rep, "qualityChoices") == 3
                && rep["quality"] == "180p"
            {
                Ok(())
            } else {
                Err(format!("watch report {rep}"))
            }
        },
    )
    .await;
    let watch = latest(&reports, "watch");
    assert_eq!(watch["videoWidth"], 320, "watch report: {watch}");
    if let Some(mut viewer) = ctx.viewer.take() {
        viewer.kill().await;
    }
    push.kill().await.ok();
    t.server.shutdown().await;
}

//! Watch start in a real browser: how long the `/watch/{channel}` page takes from its start
//! (navigation) to its first painted video frame, in headless Chromium on loopback.
//!
//! ```sh
//! cargo bench --bench watch_start [-- RUNS]      # default 10 runs
//! ```
//!
//! The server is the real one on loopback (as in the tests, `tests/common`), with the default
//! `[webrtc] ice_lite = true`; the channel is live from the publish page in a second headless
//! Chromium (fake camera). Each run opens a fresh tab and reads from the page's own clock:
//! its script loaded, the WHEP POST's start (the offer is ready), its answer, and the first
//! frame the video element presents (`requestVideoFrameCallback`). It prints each run and
//! the medians.
//! Chromium: `/usr/bin/chromium` or `FEIYAN_CHROMIUM`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::cdp::Browser;
use serde_json::{Value, json};

/// Before the page's scripts (the bench's own instrumentation, not the page's): when the
/// page's first `createOffer` and `setLocalDescription` are called and resolve, and the time
/// of the first video frame painted, on the page's clock (ms since navigation start).
const FIRST_FRAME: &str = "(() => { const marks = {}; \
    Object.defineProperty(window, '__fyMarks', { value: marks }); \
    for (const name of ['createOffer', 'setLocalDescription']) { \
      const orig = RTCPeerConnection.prototype[name]; \
      RTCPeerConnection.prototype[name] = function (...args) { \
        if (marks[name + 'Called'] === undefined) marks[name + 'Called'] = performance.now(); \
        return orig.apply(this, args).then((r) => { \
          if (marks[name] === undefined) marks[name] = performance.now(); return r; }); }; } })(); \
  document.addEventListener('DOMContentLoaded', () => { \
    const v = document.getElementById('video'); \
    if (v && v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => { \
      Object.defineProperty(window, '__fyFirstFrame', { value: performance.now() }); }); \
  });";

/// The page's own timings once its first frame is painted, else `null`.
const TIMINGS: &str = "(() => { \
    if (window.__fyFirstFrame === undefined) return null; \
    const find = (part) => performance.getEntriesByType('resource').find((r) => r.name.includes(part)); \
    const e = find('/whep/'), js = find('/assets/watch.js'), info = find('/api/channels/'); \
    return { script: js ? js.responseEnd : null, info: info ? info.responseEnd : null, \
      offer: e ? e.startTime : null, answer: e ? e.responseEnd : null, \
      frame: window.__fyFirstFrame, marks: window.__fyMarks }; })()";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();

    let publisher = Browser::launch("publish", &[]).await;
    let page = publisher.new_page().await;
    page.navigate(&format!("{}/publish/{channel}", t.base))
        .await
        .expect("publish page loads");
    page.evaluate(&format!(
        "(() => {{ document.getElementById('key').value = {}; \
         document.getElementById('start').click(); }})()",
        Value::from(t.station.stream_key.as_str())
    ))
    .await
    .expect("publish form submitted");
    common::wait_live(&t.base, &channel).await;
    // Past the publisher's start: its encoder has settled.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let viewer = Browser::launch("watch", &[]).await;
    // One page load first, so every measured run finds the scripts in the cache alike.
    let warm = viewer.new_page().await;
    warm.navigate(&format!("{}/watch/{channel}", t.base))
        .await
        .expect("watch page loads");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = warm.close().await;

    let (mut scripts, mut offers, mut answers, mut frames) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let page = viewer.new_page().await;
        page.send(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": FIRST_FRAME }),
        )
        .await
        .expect("first-frame recorder installed");
        page.navigate(&format!("{}/watch/{channel}", t.base))
            .await
            .expect("watch page loads");
        let mut timings = Value::Null;
        for _ in 0..100 {
            timings = page.evaluate(TIMINGS).await.unwrap_or(Value::Null);
            if !timings.is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (Some(offer), Some(answer), Some(frame)) = (
            timings["offer"].as_f64(),
            timings["answer"].as_f64(),
            timings["frame"].as_f64(),
        ) else {
            panic!("run {run}: no first frame within 10 s: {timings}");
        };
        let script = timings["script"].as_f64().unwrap_or(f64::NAN);
        println!(
            "run {run:2}: watch.js loaded {script:6.1} ms, channel info {:6.1} ms, offer posted \
             {offer:6.1} ms, answer {answer:6.1} ms, first frame {frame:6.1} ms",
            timings["info"].as_f64().unwrap_or(f64::NAN)
        );
        let mark = |name: &str| timings["marks"][name].as_f64().unwrap_or(f64::NAN);
        println!(
            "        createOffer called {:.1} ms, resolved {:.1} ms; setLocalDescription resolved {:.1} ms",
            mark("createOfferCalled"),
            mark("createOffer"),
            mark("setLocalDescription")
        );
        scripts.push(script);
        offers.push(offer);
        answers.push(answer);
        frames.push(frame);
        let _ = page.close().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "median of {runs}: page start -> watch.js loaded {:.0} ms, -> offer posted {:.0} ms, \
         -> answer {:.0} ms, -> first painted frame {:.0} ms",
        median(scripts),
        median(offers),
        median(answers),
        median(frames)
    );
    drop(viewer);
    drop(publisher);
    t.server.shutdown().await;
}

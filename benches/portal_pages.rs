//! The residents' pages in a real browser: how much each weighs (its HTML and the scripts
//! and style sheets it loads; hls.js, which loads only on fallback, and the JSON it reads are
//! not counted) and how soon it paints, in headless Chromium on loopback.
//!
//! ```sh
//! cargo bench --bench portal_pages [-- RUNS]      # default 10 runs per page
//! ```
//!
//! The server is the real one on loopback (as in the tests, `tests/common`) with a demo city
//! of 2,100 stations and a day of history; one station has three planned lectures. Each run
//! opens a fresh tab with the browser cache off and reads the page's own entries:
//! `first-contentful-paint` and the decoded sizes of the document and its resources. It
//! prints each page's weight and the median and worst first paint.
//! Chromium: `/usr/bin/chromium` or `FEIYAN_CHROMIUM`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::cdp::Browser;
use serde_json::{Value, json};

/// The page's own figures once it has painted, else `null`: first contentful paint (ms
/// since navigation start) and the bytes of HTML, scripts and style sheets (decoded).
const FIGURES: &str = "(() => { \
    const fcp = performance.getEntriesByName('first-contentful-paint')[0]; \
    if (!fcp || document.readyState !== 'complete') return null; \
    const nav = performance.getEntriesByType('navigation')[0]; \
    let js = 0, css = 0; const files = []; \
    for (const r of performance.getEntriesByType('resource')) { \
      const u = new URL(r.name); \
      if (!u.pathname.startsWith('/assets/') || u.pathname.includes('/vendor/')) continue; \
      if (u.pathname.endsWith('.js')) js += r.decodedBodySize; \
      else if (u.pathname.endsWith('.css')) css += r.decodedBodySize; \
      files.push(u.pathname); } \
    return { fcp: fcp.startTime, html: nav.decodedBodySize, js, css, files }; })()";

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
    let catalog = t.server.catalog.clone();
    let spec = feiyan::catalog::DemoSpec {
        centers: 10,
        institutes: 105,
        stations: 2100,
        days: 1,
        seed: 1,
        audience: 0.05,
    };
    catalog.build_demo(&spec, |_| {}).await.expect("demo city");
    let channel = t.station.channel.to_string();
    let now = feiyan::audience::now_ms();
    let mut item = 0;
    for k in 1..=3 {
        let lecture = feiyan::catalog::NewLecture {
            station: channel.clone(),
            title: format!("第{k}讲：基层治理与乡村振兴"),
            speaker: "王老师".into(),
            topic_id: None,
            starts_at_ms: now + k * 86_400_000,
        };
        item = catalog
            .create_lecture(&lecture, now)
            .await
            .expect("lecture planned")
            .id;
    }

    let pages = [
        ("/", "home".to_string()),
        ("/stations", "directory".to_string()),
        ("/stations?center=1", "directory, one center".to_string()),
        ("/s/", format!("station /s/{channel}")),
        ("/e/", format!("item /e/{item}")),
        ("/e/poster", format!("poster /e/{item}/poster")),
        ("/tv", "TV home".to_string()),
    ];
    let browser = Browser::launch("portal-bench", &[]).await;
    println!("| page | HTML | JS | CSS | total | first paint median / max ({runs} runs) |");
    println!("|---|---|---|---|---|---|");
    for (path, name) in pages {
        let url = match path {
            "/s/" => format!("{}/s/{channel}", t.base),
            "/e/" => format!("{}/e/{item}", t.base),
            "/e/poster" => format!("{}/e/{item}/poster", t.base),
            p => format!("{}{p}", t.base),
        };
        let mut paints = Vec::new();
        let mut last = Value::Null;
        for run in 0..runs {
            let page = browser.new_page().await;
            page.send("Network.setCacheDisabled", json!({ "cacheDisabled": true }))
                .await
                .expect("cache off");
            page.navigate(&url).await.expect("page loads");
            let mut figures = Value::Null;
            for _ in 0..100 {
                figures = page.evaluate(FIGURES).await.unwrap_or(Value::Null);
                if !figures.is_null() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let fcp = figures["fcp"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} run {run}: no first paint: {figures}"));
            paints.push(fcp);
            last = figures;
            let _ = page.close().await;
        }
        let kb = |v: &Value| v.as_f64().unwrap_or(0.0) / 1024.0;
        let (html, js, css) = (kb(&last["html"]), kb(&last["js"]), kb(&last["css"]));
        let worst = paints.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {name} | {html:.1} KB | {js:.1} KB | {css:.1} KB | {:.1} KB | {:.0} / {worst:.0} ms |",
            html + js + css,
            median(paints),
        );
        eprintln!("  {name}: {}", last["files"]);
    }
    drop(browser);
    t.server.shutdown().await;
}

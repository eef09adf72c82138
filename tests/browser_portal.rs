//! The residents' front door in a real browser (issue 25), driven over the DevTools
//! protocol (`common::cdp`); the checks read text, never pixels, except the poster's QR
//! code, which a real QR decoder reads from a screenshot.
//!
//! - With a demo city, the directory lists its centers and drills down center -> institute
//!   -> station; a search finds a station by part of its name; the station page shows its
//!   next three scheduled items in order.
//! - `/e/{id}` of a film class scheduled for tomorrow counts down; when the screening is
//!   started, the same page plays it (Chromium decodes frames); the server fills its share
//!   card; its poster's QR code decodes to the item's absolute URL.
//! - Large-type mode changes the computed root font size and survives a reload; `/tv` opens
//!   the resident's station with OK (Enter); unknown stations, items and page paths get the
//!   404 page in Chinese with a link home.
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cdp::Page;
use common::pages::{Tab, assert_no_csp_violation, js_str, num};
use common::start_server;
use feiyan::audience::now_ms;
use feiyan::ingest::playout::probe_film;
use serde_json::{Value, json};

/// Polls `js` in `page` every 250 ms until `ok` accepts its value; fails with the last
/// value after `timeout`.
async fn wait_page(
    page: &Page,
    what: &str,
    js: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = page
            .evaluate(js)
            .await
            .unwrap_or_else(|e| json!({ "error": e.0 }));
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Texts of the elements matching `selector`.
fn texts(selector: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll({})).map((e) => e.textContent.trim())",
        js_str(selector)
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.expect("request");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.expect("json")
}

/// A demo city of 10 centers and 2,100 stations: the directory lists the centers (and the
/// test server's own), a click opens a center, another an institute, a third a station;
/// a search finds a station by part of its name; the station page lists its next three
/// scheduled items in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_search_and_a_stations_programme() {
    let t = start_server().await;
    let catalog = t.server.catalog.clone();
    let spec = feiyan::catalog::DemoSpec {
        centers: 10,
        institutes: 105,
        stations: 2100,
        days: 1,
        seed: 1,
        audience: 0.05,
    };
    let started = Instant::now();
    catalog.build_demo(&spec, |_| {}).await.expect("demo city");
    eprintln!(
        "demo city built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let dir = get_json(&format!("{}/api/directory", t.base)).await;
    let centers = dir["centers"].as_array().expect("centers").clone();
    let demo_centers: Vec<&Value> = centers
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.contains("新时代文明实践中心"))
        })
        .collect();
    assert_eq!(demo_centers.len(), 10, "{dir}");
    let center = demo_centers[0].clone();
    let center_dir = get_json(&format!("{}/api/directory?center={}", t.base, center["id"])).await;
    let institute = center_dir["institutes"][1].clone();
    let station = institute["stations"][2].clone();
    let channel = station["channel"].as_str().expect("a channel").to_string();
    let station_name = station["name"].as_str().unwrap().to_string();

    // Four lectures ahead (made out of order) and, before them all, one cancelled.
    let token =
        common::replays::admin_token(&t, "portal-admin", feiyan::catalog::Scope::City).await;
    let http = reqwest::Client::new();
    let day = 86_400_000;
    let mut planned = Vec::new();
    for (title, at) in [
        ("第三场：乡村振兴", now_ms() + 3 * day),
        ("第一场：新时代文明实践", now_ms() + day),
        ("取消的一场", now_ms() + day - 3_600_000),
        ("第二场：法治进万家", now_ms() + 2 * day),
        ("第四场：移风易俗", now_ms() + 4 * day),
    ] {
        let at = feiyan::catalog::rfc3339(at);
        let r = http
            .post(format!("{}/api/lectures", t.base))
            .bearer_auth(&token)
            .json(&json!({ "channel": channel, "title": title, "speaker": "张老师", "at": at }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let item: Value = r.json().await.unwrap();
        assert!(status.is_success(), "POST /api/lectures: {status} {item}");
        planned.push((title, item["id"].as_i64().expect("item id")));
    }
    let cancelled = planned
        .iter()
        .find(|(t, _)| t.starts_with("取消"))
        .unwrap()
        .1;
    let r = http
        .post(format!("{}/api/items/{cancelled}/cancel", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "cancel: {}", r.status());

    // The station's share card, filled by the server: its name, place and next item.
    let html = reqwest::get(format!("{}/s/{channel}", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let meta = |property: &str| {
        html.lines()
            .find(|l| l.contains(&format!("property=\"{property}\"")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        meta("og:title").contains(&station_name),
        "{}",
        meta("og:title")
    );
    assert!(
        meta("og:url").contains(&format!("content=\"{}/s/{channel}\"", t.base)),
        "{}",
        meta("og:url")
    );
    let description = meta("og:description");
    assert!(
        description.contains("下一场") && description.contains("第一场：新时代文明实践"),
        "{description}"
    );
    assert!(html.contains(&format!("<title>{station_name} · 飞燕</title>")));

    let tab = Tab::open("portal-directory").await;
    let page = &tab.page;
    page.navigate(&format!("{}/stations", t.base))
        .await
        .expect("directory loads");
    let listed = wait_page(
        page,
        "the directory's centers",
        &texts("#list .dir-name"),
        Duration::from_secs(15),
        |v| strings(v).len() == centers.len(),
    )
    .await;
    let listed = strings(&listed);
    for c in &demo_centers {
        assert!(
            listed.contains(&c["name"].as_str().unwrap().to_string()),
            "{c} not in {listed:?}"
        );
    }
    assert_no_csp_violation(page, "the directory").await;

    // Center -> institute -> station, by clicking as a person would.
    page.evaluate(&format!(
        "Array.from(document.querySelectorAll('#list a.dir-link')).find((a) => \
         a.querySelector('.dir-name').textContent === {}).click()",
        js_str(center["name"].as_str().unwrap())
    ))
    .await
    .expect("the center is clicked");
    wait_page(
        page,
        "the center's institutes",
        &texts("#list .dir-summary .dir-name"),
        Duration::from_secs(15),
        |v| strings(v).len() == center_dir["institutes"].as_array().unwrap().len(),
    )
    .await;
    let heading = page
        .evaluate("document.getElementById('heading').textContent")
        .await
        .unwrap();
    assert_eq!(
        heading, center["name"],
        "the center's page is headed by its name"
    );
    page.evaluate(&format!(
        "(() => {{ const d = Array.from(document.querySelectorAll('#list details'))[1]; \
           d.querySelector('summary').click(); \
           const a = Array.from(d.querySelectorAll('a.dir-link')).find((a) => \
             a.getAttribute('href') === {}); \
           a.click(); }})()",
        js_str(&format!("/s/{channel}"))
    ))
    .await
    .expect("the institute opens and the station is clicked");
    wait_page(
        page,
        "the station page",
        "({ path: location.pathname, name: document.getElementById('station-name') ? \
          document.getElementById('station-name').textContent : null })",
        Duration::from_secs(15),
        |v| v["path"] == json!(format!("/s/{channel}")) && v["name"] == json!(station_name),
    )
    .await;

    // Its next three scheduled items, in order; the cancelled one is not among them.
    let upcoming = wait_page(
        page,
        "the station's programme",
        &texts("#upcoming .item-title"),
        Duration::from_secs(15),
        |v| strings(v).len() >= 3,
    )
    .await;
    let upcoming = strings(&upcoming);
    assert_eq!(
        &upcoming[..3],
        [
            "第一场：新时代文明实践",
            "第二场：法治进万家",
            "第三场：乡村振兴"
        ],
        "{upcoming:?}"
    );
    assert!(
        !upcoming.iter().any(|t| t.starts_with("取消")),
        "{upcoming:?}"
    );
    let about = strings(
        &page
            .evaluate(&texts("#upcoming .item-about"))
            .await
            .unwrap(),
    );
    assert!(
        about[0].contains("张老师"),
        "the speaker is shown: {about:?}"
    );
    let first_link = page
        .evaluate("document.querySelector('#upcoming a').getAttribute('href')")
        .await
        .unwrap();
    let first_id = planned
        .iter()
        .find(|(t, _)| t.starts_with("第一场"))
        .unwrap()
        .1;
    assert_eq!(first_link, json!(format!("/e/{first_id}")));
    // The interaction container holds the request menu (点单, tests/requests.rs).
    let slot = page
        .evaluate(
            "(() => { const e = document.getElementById('station-interaction'); \
                   return e ? !!e.querySelector('#request-form') : null; })()",
        )
        .await
        .unwrap();
    assert_eq!(
        slot,
        json!(true),
        "the request form in the interaction container"
    );
    assert_no_csp_violation(page, "the station page").await;

    // 设为我的站点: the home page then shows the station and its next items.
    page.evaluate("document.getElementById('mine').click()")
        .await
        .unwrap();
    page.navigate(&format!("{}/", t.base))
        .await
        .expect("home loads");
    let mine = wait_page(
        page,
        "my station on the home page",
        &format!(
            "({{ shown: !document.getElementById('mine-box').hidden, \
               name: document.getElementById('mine-link').textContent, \
               items: {} }})",
            texts("#mine-upcoming .item-title")
        ),
        Duration::from_secs(15),
        |v| v["shown"] == true && strings(&v["items"]).len() == 3,
    )
    .await;
    assert_eq!(mine["name"], json!(station_name), "{mine}");
    assert_eq!(strings(&mine["items"])[0], "第一场：新时代文明实践");

    // Search by part of a name, from the home page's search box.
    let part: String = station_name.chars().take(4).collect();
    page.evaluate(&format!(
        "(() => {{ document.getElementById('find').value = {}; \
           document.querySelector('form.find-box').requestSubmit(); }})()",
        js_str(&part)
    ))
    .await
    .unwrap();
    let found = wait_page(
        page,
        "the search results",
        "Array.from(document.querySelectorAll('#list a.dir-link')).map((a) => \
         ({ href: a.getAttribute('href'), name: a.querySelector('.dir-name').textContent }))",
        Duration::from_secs(15),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    for hit in found.as_array().unwrap() {
        assert!(
            hit["name"].as_str().unwrap().contains(&part),
            "{hit} does not hold {part:?}"
        );
    }
    // The test server's own station is found by a part of its name too.
    page.navigate(&format!("{}/stations?q={}", t.base, "试站"))
        .await
        .unwrap();
    let own = wait_page(
        page,
        "the test station found by 试站",
        "Array.from(document.querySelectorAll('#list a.dir-link')).map((a) => a.getAttribute('href'))",
        Duration::from_secs(15),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert_eq!(own, json!([format!("/s/{}", t.station.channel)]));
    assert_no_csp_violation(page, "the search").await;

    // The programme (节目单) of the station's institute for the week, lectures only: the
    // three ahead in order under a heading per day; film classes only: none.
    page.navigate(&format!(
        "{}/programme?center={}&institute={}&range=week&kind=lecture",
        t.base, center["id"], institute["id"]
    ))
    .await
    .unwrap();
    let week = wait_page(
        page,
        "the institute's programme for the week",
        &format!(
            "({{ titles: {}, days: document.querySelectorAll('#days .day-head').length, \
               institute: document.getElementById('institute').value }})",
            texts("#days .item-title")
        ),
        Duration::from_secs(15),
        |v| {
            strings(&v["titles"])
                .iter()
                .filter(|t| t.starts_with('第'))
                .count()
                >= 3
        },
    )
    .await;
    let ahead: Vec<String> = strings(&week["titles"])
        .into_iter()
        .filter(|t| t.starts_with('第'))
        .collect();
    assert_eq!(
        ahead[..3],
        [
            "第一场：新时代文明实践",
            "第二场：法治进万家",
            "第三场：乡村振兴"
        ],
        "{week}"
    );
    assert!(
        week["days"].as_u64().unwrap() >= 2,
        "a heading per day: {week}"
    );
    assert_eq!(
        week["institute"],
        json!(institute["id"].to_string()),
        "kept from the URL"
    );
    page.evaluate(
        "(() => { const k = document.getElementById('kind'); k.value = 'film_class'; \
           k.dispatchEvent(new Event('change')); })()",
    )
    .await
    .unwrap();
    wait_page(
        page,
        "no film classes that week",
        "({ note: document.getElementById('note').textContent, url: location.search })",
        Duration::from_secs(15),
        |v| {
            v["note"].as_str().is_some_and(|n| n.contains("没有安排"))
                && v["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("kind=film_class"))
        },
    )
    .await;
    assert_no_csp_violation(page, "the programme page").await;
}

/// Makes a 30 s H.264 (baseline) + AAC film with the ffmpeg CLI.
fn make_film(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("film.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "30", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-profile:v", "baseline", "-g", "50"])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the film");
    out
}

/// Decodes the QR code in a PNG screenshot.
fn decode_qr(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let p = &buf[(y * w + x) * channels..];
        if channels >= 3 {
            ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8
        } else {
            p[0]
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the poster");
    let (_, text) = grids[0].decode().expect("the QR code decodes");
    text
}

/// A film class for tomorrow: its page counts down and carries its share card; the
/// poster's QR code decodes to its URL (and prints without its toolbar); started now, the
/// same page plays it (so does the station's page), and says it ended at the end of the
/// film.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_page_counts_down_then_plays_and_its_poster_links_back() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let film = probe_film(&make_film(dir.path())).expect("the film probes");
    let catalog = t.server.catalog.clone();
    let film_id = catalog.import_film(&film, now_ms()).await.unwrap();
    let channel = t.station.channel.to_string();
    let at = now_ms() + 86_400_000 - 600_000;
    let screening = catalog
        .schedule_screening(&channel, film_id, at, now_ms())
        .await
        .unwrap();
    let id = screening.id.0;
    let url = format!("{}/e/{id}", t.base);

    // The share card, filled by the server (chat apps run no script).
    let html = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for needle in [
        format!("<meta property=\"og:url\" content=\"{url}\">"),
        "<meta property=\"og:title\" content=\"电影党史课：film\">".to_string(),
        "测试站".to_string(),
    ] {
        assert!(html.contains(&needle), "{needle} not in the page:\n{html}");
    }
    let og = html
        .lines()
        .find(|l| l.contains("og:description"))
        .unwrap_or_default()
        .to_string();
    assert!(og.contains("星期") && og.contains("测试中心"), "{og}");

    let tab = Tab::open("portal-item").await;
    let page = &tab.page;
    page.navigate(&url).await.expect("item page loads");
    let counting = wait_page(
        page,
        "the countdown",
        "({ shown: !document.getElementById('countdown-box').hidden, \
           text: document.getElementById('countdown').textContent, \
           title: document.getElementById('item-title').textContent })",
        Duration::from_secs(15),
        |v| v["shown"] == true && v["text"].as_str().is_some_and(|s| s.contains("小时")),
    )
    .await;
    assert_eq!(counting["title"], "film", "{counting}");
    // It ticks.
    let first = counting["text"].clone();
    wait_page(
        page,
        "the countdown to tick",
        "document.getElementById('countdown').textContent",
        Duration::from_secs(5),
        |v| *v != first,
    )
    .await;
    assert_no_csp_violation(page, "the item page counting down").await;

    // The poster: a QR code made by the server that decodes to the item's URL.
    let poster = Tab::open("portal-poster").await;
    poster
        .page
        .send(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 900, "height": 1400, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await
        .unwrap();
    poster
        .page
        .navigate(&format!("{url}/poster"))
        .await
        .expect("poster loads");
    let shot = poster
        .page
        .send("Page.captureScreenshot", json!({ "format": "png" }))
        .await
        .expect("screenshot");
    use base64::Engine;
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("png data"))
        .unwrap();
    assert_eq!(decode_qr(&png_bytes), url, "the QR code is the item's URL");
    let poster_text = poster
        .page
        .evaluate("document.querySelector('.poster').textContent")
        .await
        .unwrap();
    let poster_text = poster_text.as_str().unwrap();
    assert!(
        poster_text.contains("film") && poster_text.contains("测试站"),
        "{poster_text}"
    );
    assert_no_csp_violation(&poster.page, "the poster").await;
    // Printed, the sheet alone.
    poster
        .page
        .send("Emulation.setEmulatedMedia", json!({ "media": "print" }))
        .await
        .unwrap();
    let toolbar = poster
        .page
        .evaluate("getComputedStyle(document.querySelector('.toolbar')).display")
        .await
        .unwrap();
    assert_eq!(toolbar, "none", "the print button is not printed");
    poster
        .page
        .send("Emulation.setEmulatedMedia", json!({ "media": "" }))
        .await
        .unwrap();

    // Started now (as an operator would), the same page plays it.
    let r = reqwest::Client::new()
        .post(format!("{}/api/screenings/{id}/start", t.base))
        .bearer_auth(&t.station.stream_key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "start: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(40);
    let playing = loop {
        let pc = page
            .connected_peer_stats()
            .await
            .unwrap_or_else(|e| json!({ "error": e.0 }));
        if num(&pc, "/inbound/video/framesDecoded") > 10 {
            break pc;
        }
        if Instant::now() > deadline {
            let view = page
                .evaluate(
                    "({ state: document.body.getAttribute('data-state'), \
                            status: document.body.getAttribute('data-status'), \
                            live: !document.getElementById('live-section').hidden, \
                            line: document.getElementById('state-line').textContent })",
                )
                .await
                .unwrap_or_default();
            panic!("the item page did not play the screening: pc {pc}; page {view}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let path = page.evaluate("location.pathname").await.unwrap();
    assert_eq!(
        path,
        json!(format!("/e/{id}")),
        "the same URL plays it: {playing}"
    );
    let view = page
        .evaluate(
            "({ countdown: !document.getElementById('countdown-box').hidden, \
                    live: !document.getElementById('live-section').hidden, \
                    title: document.getElementById('item-title').textContent })",
        )
        .await
        .unwrap();
    assert_eq!(
        view,
        json!({ "countdown": false, "live": true, "title": "film" })
    );
    assert_no_csp_violation(page, "the item page playing").await;

    // The station's page plays it too, and links to the item.
    let station = &poster.page;
    station
        .navigate(&format!("{}/s/{channel}", t.base))
        .await
        .expect("station page loads");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pc = station
            .connected_peer_stats()
            .await
            .unwrap_or_else(|e| json!({ "error": e.0 }));
        if num(&pc, "/inbound/video/framesDecoded") > 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the station page did not play the live film class: {pc}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let live = station
        .evaluate(
            "({ shown: !document.getElementById('live-section').hidden, \
                    link: document.getElementById('live-item-link').getAttribute('href') })",
        )
        .await
        .unwrap();
    assert_eq!(live, json!({ "shown": true, "link": format!("/e/{id}") }));
    assert_no_csp_violation(station, "the station page playing").await;
    drop(poster);

    // At the end of the film the same page says so (and offers the replay once published).
    let after = wait_page(
        page,
        "the ended film class",
        "({ state: document.body.getAttribute('data-state'), \
           after: document.getElementById('after').hidden ? null : \
             document.getElementById('after-text').textContent, \
           live: !document.getElementById('live-section').hidden })",
        Duration::from_secs(90),
        |v| v["state"] == "ended",
    )
    .await;
    assert!(
        after["after"]
            .as_str()
            .is_some_and(|t| t.starts_with("本场已结束")),
        "{after}"
    );
    assert_eq!(after["live"], false, "{after}");
}

/// Large-type mode: the root font size grows and stays after a reload. The home page lists
/// today's programme. `/tv` opens the station remembered on the set with OK. Unknown stations, items and pages: the 404 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_type_tv_home_and_not_found_pages() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let tab = Tab::open("portal-prefs").await;
    let page = &tab.page;
    const ROOT_SIZE: &str = "parseFloat(getComputedStyle(document.documentElement).fontSize)";

    for path in ["/stations".to_string(), format!("/s/{channel}"), "/".into()] {
        page.navigate(&format!("{}{path}", t.base)).await.unwrap();
        let normal = page.evaluate(ROOT_SIZE).await.unwrap().as_f64().unwrap();
        page.evaluate("document.querySelector('[data-big-type]').click()")
            .await
            .unwrap();
        let big = page.evaluate(ROOT_SIZE).await.unwrap().as_f64().unwrap();
        assert!(big >= normal * 1.3, "{path}: {normal} px -> {big} px");
        page.navigate(&format!("{}{path}", t.base)).await.unwrap();
        let again = page.evaluate(ROOT_SIZE).await.unwrap().as_f64().unwrap();
        assert_eq!(again, big, "{path}: large type survives a reload");
        let pressed = page
            .evaluate("document.querySelector('[data-big-type]').getAttribute('aria-pressed')")
            .await
            .unwrap();
        assert_eq!(pressed, "true");
        // Back to normal for the next page.
        page.evaluate("document.querySelector('[data-big-type]').click()")
            .await
            .unwrap();
        let back = page.evaluate(ROOT_SIZE).await.unwrap().as_f64().unwrap();
        assert_eq!(back, normal, "{path}");
        assert_no_csp_violation(page, &path).await;
    }

    // The home page lists today's programme across the city (a lecture starting now is
    // today's in Beijing, but in the last seconds before midnight).
    let lecture = feiyan::catalog::NewLecture {
        station: channel.clone(),
        title: "今天的宣讲".into(),
        speaker: "李老师".into(),
        topic_id: None,
        starts_at_ms: now_ms() + 2000,
    };
    t.server
        .catalog
        .create_lecture(&lecture, now_ms())
        .await
        .expect("lecture planned");
    page.navigate(&format!("{}/", t.base)).await.unwrap();
    wait_page(
        page,
        "today's programme on the home page",
        &texts("#today-list .item-title"),
        Duration::from_secs(15),
        |v| strings(v) == ["今天的宣讲"],
    )
    .await;

    // /tv: the set's own station is a tile; OK (Enter) opens its TV player.
    page.evaluate(&format!(
        "localStorage.setItem('feiyan.myStation', JSON.stringify({{ channel: {}, name: '测试站' }}))",
        js_str(&channel)
    ))
    .await
    .unwrap();
    page.navigate(&format!("{}/tv", t.base)).await.unwrap();
    wait_page(
        page,
        "the TV home's focused tile",
        "document.activeElement ? document.activeElement.getAttribute('href') : null",
        Duration::from_secs(15),
        |v| *v == json!(format!("/tv/{channel}")),
    )
    .await;
    assert_no_csp_violation(page, "the TV home").await;
    for (kind, extra) in [("keyDown", json!({ "text": "\r" })), ("keyUp", json!({}))] {
        let mut params = json!({ "type": kind, "key": "Enter", "code": "Enter",
                                 "windowsVirtualKeyCode": 13 });
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        page.send("Input.dispatchKeyEvent", params).await.unwrap();
    }
    wait_page(
        page,
        "OK to open the TV player",
        "location.pathname",
        Duration::from_secs(15),
        |v| *v == json!(format!("/tv/{channel}")),
    )
    .await;

    // Unknown station, item and page: 404, in Chinese, with a link home.
    let http = reqwest::Client::new();
    for path in [
        "/s/no-such-station",
        "/e/987654",
        "/e/987654/poster",
        "/no/such/page",
    ] {
        let r = http
            .get(format!("{}{path}", t.base))
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        let body = r.text().await.unwrap();
        assert!(body.contains("页面不存在"), "{path}: {body}");
        assert!(body.contains("href=\"/\""), "{path}: a link home");
        page.navigate(&format!("{}{path}", t.base)).await.unwrap();
        let shown = page
            .evaluate(
                "({ h1: document.querySelector('h1').textContent, \
                        home: document.getElementById('home-link').getAttribute('href'), \
                        lang: document.documentElement.lang })",
            )
            .await
            .unwrap();
        assert_eq!(
            shown,
            json!({ "h1": "页面不存在", "home": "/", "lang": "zh-CN" }),
            "{path}"
        );
        assert_no_csp_violation(page, path).await;
    }
    // Under /api/ a miss stays the API's plain answer, whatever the client accepts.
    let r = http
        .get(format!("{}/api/no-such-thing", t.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

//! The replay page (`/replay/{id}`) in a real browser: an RTMP lecture (the ffmpeg CLI)
//! ends and its replay plays in headless Chromium, with the browser's own HLS player and
//! with hls.js, its segments fetched with the page's device id; the page shows the
//! lecture's title, station and time, and holds the strict CSP. The watch page of the now
//! offline channel lists the replay and links to it; an administrator signed in on /admin
//! previews a hidden replay that residents cannot open; an unknown replay says so.
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing
//! browser fails the test; it is never skipped. hls.js must have been fetched by
//! `scripts/deps.sh` (the default `[http] vendor_dir`).

mod common;

use std::time::{Duration, Instant};

use common::cdp::Page;
use common::pages::{Tab, assert_no_csp_violation, js_str};
use common::replays::{
    REPLAY_VIEW, admin_token, assert_replay_plays, device_cookie, ended_lecture, replay_requests,
};
use feiyan::catalog::Scope;
use serde_json::{Value, json};

/// Run in every document before the page's scripts: this browser has no HLS player of its
/// own (as Firefox and most desktop browsers), so the page must load hls.js. Chromium 156
/// plays HLS natively (`canPlayType` says "maybe"); this hides that.
const NO_NATIVE_HLS: &str = r#"(() => {
  const canPlay = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(String(type)) ? '' : canPlay.call(this, type);
  };
})();"#;

const TITLE: &str = "社区理论宣讲：回看测试";

/// A fresh browser recording its requests, on `url`.
async fn open(name: &str, url: &str, no_native_hls: bool) -> Tab {
    let tab = Tab::open(name).await;
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
    tab.page.navigate(url).await.expect("page loads");
    tab
}

/// Polls `js` in `page` until `ok` accepts its value (at most `within`).
async fn wait_page(
    page: &Page,
    what: &str,
    js: &str,
    within: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = page.evaluate(js).await.unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}: last {v}; requests {}",
            json!(replay_requests(page))
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The page played replay `id` with its own device id on the playlist and every segment.
async fn assert_fetched_with_vid(page: &Page, base: &str, id: i64) {
    let vid = device_cookie(page).await;
    let requests = page.requests();
    let asked: Vec<&str> = requests
        .iter()
        .filter(|r| r.get("request").is_some())
        .filter_map(|r| r["url"].as_str())
        .collect();
    let playlist = format!("{base}/replay/{id}/index.m3u8?vid={vid}");
    assert!(
        asked.contains(&playlist.as_str()),
        "no request for {playlist}: {}",
        json!(replay_requests(page))
    );
    let segments: Vec<&&str> = asked
        .iter()
        .filter(|u| u.contains(&format!("/replay/{id}/seg-")))
        .collect();
    assert!(!segments.is_empty(), "no segment fetched: {asked:?}");
    for url in segments {
        assert!(
            url.ends_with(&format!("?vid={vid}")),
            "segment {url} without the page's vid {vid}"
        );
    }
}

/// What the page shows of the lecture while it plays.
async fn assert_shows_lecture(page: &Page, id: i64) {
    let view = page.evaluate(REPLAY_VIEW).await.unwrap();
    assert_eq!(view["title"], TITLE, "{view}");
    assert!(
        view["station"].as_str().unwrap().starts_with("测试站"),
        "{view}"
    );
    let when = view["when"].as_str().unwrap();
    assert!(when.contains('年') && when.contains(':'), "{view}");
    assert!(view["duration"].as_str().unwrap().ends_with('秒'), "{view}");
    assert!(!view["gone"].as_bool().unwrap(), "{view}");
    assert_eq!(view["note"], Value::Null, "a published replay: {view}");
    assert!(
        view["download"]
            .as_str()
            .is_some_and(|d| d.ends_with(&format!("/replay/{id}/replay.mp4"))),
        "{view}"
    );
    let title = page.evaluate("document.title").await.unwrap();
    assert!(title.as_str().unwrap().starts_with(TITLE), "{title}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_lecture_replays_in_chromium_and_the_watch_page_lists_it() {
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();
    let list = ended_lecture(&t, TITLE, 12, 1).await;
    let id = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["title"], TITLE);
    let page_url = format!("{}/replay/{id}", t.base);

    // The browser's own HLS player.
    let native = open("replay", &page_url, false).await;
    assert_replay_plays(&native.page, "native HLS").await;
    assert_shows_lecture(&native.page, id).await;
    assert_fetched_with_vid(&native.page, &t.base, id).await;
    assert!(
        !native
            .page
            .requests()
            .iter()
            .any(|r| r["url"].as_str().is_some_and(|u| u.contains("hls.min.js"))),
        "hls.js loaded although the browser plays HLS: {}",
        json!(replay_requests(&native.page))
    );
    assert_no_csp_violation(&native.page, "the replay page").await;

    // The resident rates the lecture (评单) under the player: four stars, a comment.
    wait_page(
        &native.page,
        "the rating form",
        "document.querySelectorAll('#rating .star').length",
        Duration::from_secs(10),
        |v| v == 5,
    )
    .await;
    native
        .page
        .evaluate(
            "document.querySelector('#rating .star[data-score=\"4\"]').click(); \
             document.querySelector('#rating textarea').value = '讲得清楚'; \
             document.querySelector('#rating button[type=submit]').click()",
        )
        .await
        .unwrap();
    wait_page(
        &native.page,
        "the thanks after rating",
        "document.querySelector('#rating .rating-summary').textContent",
        Duration::from_secs(10),
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("感谢") && t.contains("平均 4.0 分 · 1 人评价"))
        },
    )
    .await;
    let session = list[0]["session_id"]
        .as_i64()
        .expect("the replay names its session");
    let summary = t
        .server
        .catalog
        .session_rating(feiyan::ids::SessionId(session))
        .await
        .unwrap();
    assert_eq!((summary.count, summary.average), (1, Some(4.0)));
    assert_no_csp_violation(&native.page, "the replay page after rating").await;

    // The watch page of the channel, now off the air, lists the replay; its link opens it.
    let watch = &native.page;
    watch
        .navigate(&format!("{}/watch/{channel}", t.base))
        .await
        .expect("watch page loads");
    let listed = wait_page(
        watch,
        "the replay in the watch page's list",
        "(() => { const box = document.getElementById('replays'); \
         return { shown: !box.hidden, links: Array.from(box.querySelectorAll('a')).map((a) => \
           ({ href: a.getAttribute('href'), text: a.textContent })) }; })()",
        Duration::from_secs(15),
        |v| v["shown"] == true && v["links"].as_array().is_some_and(|l| !l.is_empty()),
    )
    .await;
    let link = &listed["links"][0];
    assert_eq!(link["href"], format!("/replay/{id}"), "{listed}");
    assert!(link["text"].as_str().unwrap().contains(TITLE), "{listed}");
    watch
        .evaluate("document.querySelector('#replays a').click()")
        .await
        .unwrap();
    wait_page(
        watch,
        "the link to open the replay page",
        "location.pathname",
        Duration::from_secs(10),
        |v| v == &json!(format!("/replay/{id}")),
    )
    .await;
    assert_no_csp_violation(watch, "the replay page opened from the watch page").await;
    drop(native);

    // hls.js, where the browser has no HLS player of its own.
    let hls_js = open("replay-hls.js", &page_url, true).await;
    assert_replay_plays(&hls_js.page, "hls.js").await;
    assert_shows_lecture(&hls_js.page, id).await;
    assert_fetched_with_vid(&hls_js.page, &t.base, id).await;
    assert!(
        hls_js.page.requests().iter().any(|r| r["status"] == 200
            && r["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/assets/vendor/hls.min.js"))),
        "hls.js not fetched: {}",
        json!(replay_requests(&hls_js.page))
    );
    assert_no_csp_violation(&hls_js.page, "the replay page with hls.js").await;
    drop(hls_js);

    // Hidden: residents are told it is not there; an administrator in scope, signed in on
    // /admin in this tab, previews it (the page sends the token, hls.js plays).
    let catalog = &t.server.catalog;
    catalog.set_recording_published(id, false).await.unwrap();
    let placement = catalog
        .station_placement(t.station.station_id)
        .await
        .unwrap();
    let token = admin_token(&t, "center-op", Scope::Center(placement.center_id)).await;
    // Hiding shows once the replay routes' two-second row cache has run out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resident = open("resident", &page_url, false).await;
    let view = wait_page(
        &resident.page,
        "the hidden replay's not-found message",
        REPLAY_VIEW,
        Duration::from_secs(10),
        |v| v["gone"] == true,
    )
    .await;
    assert_eq!(view["title"], "回看不存在或已删除", "{view}");
    assert_eq!(view["player"], false, "{view}");
    drop(resident);
    let admin = open("admin", &format!("{}/admin", t.base), false).await;
    admin
        .page
        .evaluate(&format!(
            "sessionStorage.setItem('feiyan_token', {})",
            js_str(&token)
        ))
        .await
        .unwrap();
    admin
        .page
        .navigate(&page_url)
        .await
        .expect("replay page loads");
    assert_replay_plays(&admin.page, "an administrator's preview of a hidden replay").await;
    let view = admin.page.evaluate(REPLAY_VIEW).await.unwrap();
    assert_eq!(view["title"], TITLE, "{view}");
    assert_eq!(
        view["download"],
        Value::Null,
        "no public download of a hidden replay: {view}"
    );
    assert!(
        view["note"].as_str().is_some_and(|n| n.contains("隐藏")),
        "the page says the replay is hidden: {view}"
    );
    assert_no_csp_violation(&admin.page, "an administrator's preview").await;
    drop(admin);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_replay_says_it_does_not_exist() {
    let t = common::start_server().await;
    // The page itself is served (with a device id) for any numeric id; other paths are
    // refused (404, or 405 as any path no route takes).
    let page = reqwest::get(format!("{}/replay/999999", t.base))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("fy_dev="),
        "{page:?}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/assets/replay.js") && !html.contains("<script>"),
        "{html}"
    );
    for path in ["/replay/abc", "/replay/1x", "/replay"] {
        let r = reqwest::get(format!("{}{path}", t.base)).await.unwrap();
        assert!(r.status().is_client_error(), "{path}: {r:?}");
        assert!(!r.text().await.unwrap().contains("replay.js"), "{path}");
    }

    let tab = open("unknown", &format!("{}/replay/999999", t.base), false).await;
    let view = wait_page(
        &tab.page,
        "the not-found message",
        REPLAY_VIEW,
        Duration::from_secs(10),
        |v| v["gone"] == true,
    )
    .await;
    assert_eq!(view["title"], "回看不存在或已删除", "{view}");
    assert_eq!(view["player"], false, "{view}");
    let home = tab
        .page
        .evaluate(
            "Array.from(document.querySelectorAll('#gone a')).map((a) => a.getAttribute('href'))",
        )
        .await
        .unwrap();
    assert_eq!(home, json!(["/"]), "a way back to the home page");
    assert_no_csp_violation(&tab.page, "the not-found replay page").await;
    drop(tab);
    t.server.shutdown().await;
}

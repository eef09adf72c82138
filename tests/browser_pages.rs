//! The served pages in a real browser, driven over the DevTools protocol (`common::cdp`,
//! `common::pages`): every page answers with the CSP header and Chromium sees no CSP
//! violation on any of them while publishing, watching, listing the live channel and logging
//! into the dashboard; and a station on a LAN serves the publish and watch pages over HTTPS
//! with its self-signed certificate, reached by a name that is not localhost.
//!
//! Chromium is required: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing
//! browser fails the test; it is never skipped.

mod common;

use std::time::{Duration, Instant};

use common::cdp::{Browser, Page};
use common::pages::{
    Ctx, Tab, assert_no_csp_violation, js_str, num, publish_state, start_publishing, watch_state,
};
use common::start_server;
use feiyan::catalog::Scope;
use serde_json::{Value, json};

/// The exact policy every page must carry (built by `feiyan::http::security`).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

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
        format!("/tv/{channel}"),
        format!("/publish/{channel}"),
        "/replay/1".to_string(),
        "/admin".to_string(),
        "/stations".to_string(),
        "/programme".to_string(),
        format!("/s/{channel}"),
        "/tv".to_string(),
        "/assets/feiyan.js".to_string(),
        "/assets/feiyan.css".to_string(),
        "/assets/index.js".to_string(),
        "/assets/watch.js".to_string(),
        "/assets/tv.js".to_string(),
        "/assets/tv.css".to_string(),
        "/assets/replay.js".to_string(),
        "/assets/replay.css".to_string(),
        "/assets/publish.js".to_string(),
        "/assets/admin.js".to_string(),
        "/assets/admin.css".to_string(),
        "/assets/prefs.js".to_string(),
        "/assets/portal.js".to_string(),
        "/assets/portal.css".to_string(),
        "/assets/home.js".to_string(),
        "/assets/stations.js".to_string(),
        "/assets/programme.js".to_string(),
        "/assets/station.js".to_string(),
        "/assets/request.js".to_string(),
        "/assets/item.js".to_string(),
        "/assets/poster.js".to_string(),
        "/assets/poster.css".to_string(),
        "/assets/tvhome.js".to_string(),
        "/assets/tvhome.css".to_string(),
        "/assets/chat.js".to_string(),
        "/assets/chat-host.js".to_string(),
        "/assets/chat.css".to_string(),
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
                && num(&view, "/figures") == 12
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

    // The station's operator plans a lecture on the dashboard and cancels it again; the
    // station's public page lists it, then no longer does.
    t.server
        .catalog
        .add_account(
            "op",
            "secret-password",
            Scope::Station(t.station.station_id),
        )
        .await
        .expect("station account added");
    ctx.watch_page()
        .evaluate("sessionStorage.removeItem('feiyan_token')")
        .await
        .unwrap();
    ctx.watch_page()
        .navigate(&format!("{}/admin", t.base))
        .await
        .expect("dashboard loads");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::hours(8 + 24))
        .format("%Y-%m-%dT19:30")
        .to_string();
    ctx.watch_page()
        .evaluate(
            "(() => { document.getElementById('user').value = 'op'; \
             document.getElementById('pass').value = 'secret-password'; \
             document.querySelector('#loginForm button').click(); })()",
        )
        .await
        .unwrap();
    ctx.wait_for("the station's programme card", Duration::from_secs(15), async |c: &Ctx| {
        let shown = c
            .watch_page()
            .evaluate("!document.getElementById('planCard').classList.contains('hidden') && document.getElementById('planTopic').options.length")
            .await
            .unwrap_or(Value::Null);
        if shown.as_u64().is_some_and(|n| n >= 1) { Ok(()) } else { Err(format!("{shown}")) }
    })
    .await;
    ctx.watch_page()
        .evaluate(&format!(
            "(() => {{ document.getElementById('planTitle').value = '党的二十大精神宣讲'; \
             document.getElementById('planSpeaker').value = '李老师'; \
             document.getElementById('planAt').value = {}; \
             document.querySelector('#planForm button').click(); }})()",
            js_str(&tomorrow)
        ))
        .await
        .unwrap();
    let page_url = format!("{}/api/stations/{}/page", t.base, t.station.channel);
    let listed = common::wait_until(Duration::from_secs(10), || async {
        let page: Value = reqwest::get(&page_url).await.unwrap().json().await.unwrap();
        page["upcoming"].as_array().is_some_and(|items| {
            items.iter().any(|i| {
                i["title"] == "党的二十大精神宣讲"
                    && i["speaker"] == "李老师"
                    && i["starts_at"]
                        .as_str()
                        .is_some_and(|at| at.contains("T11:30:00"))
            })
        })
    })
    .await;
    assert!(
        listed,
        "the planned lecture is on the station's page at 19:30 Beijing time"
    );
    ctx.wait_for(
        "the lecture in the card",
        Duration::from_secs(10),
        async |c: &Ctx| {
            let text = c
                .watch_page()
                .evaluate("document.getElementById('plan').textContent")
                .await
                .unwrap_or(Value::Null);
            if text
                .as_str()
                .is_some_and(|t| t.contains("党的二十大精神宣讲") && t.contains("待开始"))
            {
                Ok(())
            } else {
                Err(format!("{text}"))
            }
        },
    )
    .await;
    ctx.watch_page()
        .evaluate("window.confirm = () => true; document.querySelector('#plan button').click()")
        .await
        .unwrap();
    ctx.wait_for(
        "the lecture cancelled",
        Duration::from_secs(10),
        async |c: &Ctx| {
            let text = c
                .watch_page()
                .evaluate("document.getElementById('plan').textContent")
                .await
                .unwrap_or(Value::Null);
            if text.as_str().is_some_and(|t| t.contains("已取消")) {
                Ok(())
            } else {
                Err(format!("{text}"))
            }
        },
    )
    .await;
    let page: Value = reqwest::get(&page_url).await.unwrap().json().await.unwrap();
    assert!(
        !page["upcoming"].to_string().contains("党的二十大精神宣讲"),
        "a cancelled lecture leaves the programme: {page}"
    );
    assert_no_csp_violation(ctx.watch_page(), "the dashboard's programme card").await;

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
    // The device id the watch page set is a Secure cookie here, readable by the page.
    let cookies = watch
        .send("Network.getCookies", json!({}))
        .await
        .expect("cookies readable");
    let device = cookies["cookies"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "fy_dev"))
        .unwrap_or_else(|| panic!("no fy_dev cookie over HTTPS: {cookies}"));
    assert_eq!(device["secure"], true, "{device}");
    assert_eq!(device["httpOnly"], false, "{device}");
    assert_eq!(device["sameSite"], "Lax", "{device}");
    let info = channel_info_from(&watch, &channel).await;
    assert!(info["viewers"].as_u64().unwrap_or(0) >= 1, "{info}");
    drop((watcher, publisher));
    t.server.shutdown().await;
}

//! The interaction widget in headless Chromium (issue 26): on the watch page of a live
//! channel, a message another resident posts shows within 2 s, the host's pin shows above
//! the player, and a message the host deletes disappears; the resident's own post from
//! the page's form reaches the API with the page's device cookie. No CSP violation.
//! A station's administrator signed in on /admin sees the live session in its scope with
//! its messages, deletes one there, and it disappears on the watch page. The replay of a
//! session shows its messages and answered questions, read-only.

mod common;

use std::time::{Duration, Instant};

use common::pages::{Tab, assert_no_csp_violation, js_str};
use common::replays::admin_token;
use common::{start_server, test_media, wait_live};
use feiyan::catalog::Scope;
use feiyan::client::WhipPublisher;
use serde_json::{Value, json};

/// Polls `js` in the page until it returns true; how long that took, or the last value.
async fn wait_js(page: &common::cdp::Page, js: &str, within: Duration) -> Result<Duration, Value> {
    let start = Instant::now();
    loop {
        let v = page.evaluate(js).await.unwrap_or(Value::Null);
        if v == Value::Bool(true) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            return Err(v);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn shows(text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#interaction .ia-msg')).some(function (li) {{ \
           return li.textContent.indexOf({}) >= 0; }})",
        js_str(text)
    )
}

/// Posts `body` to the room at `api` as a resident with a fresh watch-page cookie of
/// `channel`: the new message's id (201 asserted).
async fn post_as_resident(
    http: &reqwest::Client,
    base: &str,
    channel: &str,
    api: &str,
    body: Value,
) -> i64 {
    let r = http
        .get(format!("{base}/watch/{channel}"))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = http
        .post(format!("{api}/messages"))
        .header("cookie", &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_shows_and_drops_messages_live() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let key = t.station.stream_key.clone();
    let api = format!("{}/api/interaction/{channel}", t.base);
    let dir = tempfile::tempdir().unwrap();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&key),
        test_media(dir.path()).await,
        Default::default(),
    )
    .await
    .expect("publisher connects");
    wait_live(&t.base, &channel).await;

    let tab = Tab::watch(&t.base, &channel, "", None).await;
    let page = &tab.page;
    // The widget has its snapshot (the counts line is filled from it).
    wait_js(
        page,
        "(document.querySelector('#interaction .ia-counts') || {}).textContent === '点赞 0 · 签到 0'",
        Duration::from_secs(15),
    )
    .await
    .expect("the widget connects");

    // Another resident posts: the page shows it within 2 s.
    let http = reqwest::Client::new();
    let other = http
        .get(format!("{}/watch/{channel}", t.base))
        .send()
        .await
        .unwrap();
    let cookie = other.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let text = "大家好，我是三楼的老张";
    let posted = Instant::now();
    let r = http
        .post(format!("{api}/messages"))
        .header("cookie", &cookie)
        .json(&json!({"nickname": "老张", "text": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let shown = wait_js(page, &shows(text), Duration::from_secs(2))
        .await
        .unwrap_or_else(|v| panic!("not shown within 2 s: {v}"));
    eprintln!(
        "message shown {:?} after the post ({:?} of polling)",
        posted.elapsed(),
        shown
    );

    // The resident on the page posts through the form (its own device cookie).
    page.evaluate(
        "document.querySelector('#interaction .ia-nick').value = '小李'; \
         document.querySelector('#interaction .ia-text').value = '老师讲得好'; \
         document.querySelector('#interaction .ia-send').click(); true",
    )
    .await
    .unwrap();
    wait_js(page, &shows("老师讲得好"), Duration::from_secs(5))
        .await
        .unwrap_or_else(|v| panic!("own message not shown: {v}"));

    // The host pins it: it shows above the player.
    let r = http
        .post(format!("{api}/messages/{id}/pin"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_js(
        page,
        &format!(
            "(function () {{ var p = document.getElementById('interaction-pin'); \
               return !p.hidden && p.textContent.indexOf({}) >= 0 && \
               !!(p.compareDocumentPosition(document.getElementById('player')) & Node.DOCUMENT_POSITION_FOLLOWING); }})()",
            js_str(text)
        ),
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_else(|v| panic!("pin not shown above the player: {v}"));

    // The host deletes it: it disappears (and the pin with it).
    let r = http
        .delete(format!("{api}/messages/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_js(
        page,
        &format!(
            "!({}) && document.getElementById('interaction-pin').hidden",
            shows(text)
        ),
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_else(|v| panic!("deleted message still shown: {v}"));
    assert_eq!(
        page.evaluate(&shows("老师讲得好")).await.unwrap(),
        true,
        "the other message stays"
    );
    assert_no_csp_violation(page, "the watch page with the interaction widget").await;

    let _ = publisher.stop().await;
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_deletes_a_message_from_the_admin_page() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let api = format!("{}/api/interaction/{channel}", t.base);
    let dir = tempfile::tempdir().unwrap();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        test_media(dir.path()).await,
        Default::default(),
    )
    .await
    .expect("publisher connects");
    wait_live(&t.base, &channel).await;
    let token = admin_token(&t, "station-op", Scope::Station(t.station.station_id)).await;

    let tab = Tab::watch(&t.base, &channel, "", None).await;
    let watch = &tab.page;
    wait_js(
        watch,
        "(document.querySelector('#interaction .ia-counts') || {}).textContent === '点赞 0 · 签到 0'",
        Duration::from_secs(15),
    )
    .await
    .expect("the widget connects");

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for text in ["这条要删掉", "这条留着"] {
        ids.push(
            post_as_resident(
                &http,
                &t.base,
                &channel,
                &api,
                json!({"nickname": "居民", "text": text}),
            )
            .await,
        );
    }
    wait_js(watch, &shows("这条要删掉"), Duration::from_secs(5))
        .await
        .unwrap_or_else(|v| panic!("not shown on the watch page: {v}"));

    // The administrator signs in on /admin (its token in the tab, as the login leaves it).
    let admin = tab.browser.new_page().await;
    admin
        .navigate(&format!("{}/admin", t.base))
        .await
        .expect("admin page loads");
    admin
        .evaluate(&format!(
            "sessionStorage.setItem('feiyan_token', {}); true",
            js_str(&token)
        ))
        .await
        .unwrap();
    admin
        .navigate(&format!("{}/admin", t.base))
        .await
        .expect("admin page loads signed in");
    let row = format!(
        "Array.from(document.querySelectorAll('#liveHost .ia-msg')).find(function (li) {{ \
           return li.getAttribute('data-id') === '{}'; }})",
        ids[0]
    );
    wait_js(&admin, &format!("!!({row})"), Duration::from_secs(20))
        .await
        .unwrap_or_else(|v| panic!("the live session's messages not on /admin: {v}"));
    admin
        .evaluate(&format!(
            "Array.from(({row}).querySelectorAll('button')).find(function (b) {{ \
               return b.textContent === '删除'; }}).click(); true"
        ))
        .await
        .unwrap();
    wait_js(
        watch,
        &format!("!({})", shows("这条要删掉")),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|v| panic!("deleted from /admin, still on the watch page: {v}"));
    assert_eq!(watch.evaluate(&shows("这条留着")).await.unwrap(), true);
    wait_js(&admin, &format!("!({row})"), Duration::from_secs(5))
        .await
        .unwrap_or_else(|v| panic!("still listed on /admin: {v}"));
    assert_no_csp_violation(&admin, "/admin with the interaction panel").await;

    let _ = publisher.stop().await;
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_shows_the_sessions_messages() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let key = t.station.stream_key.clone();
    let api = format!("{}/api/interaction/{channel}", t.base);
    let dir = tempfile::tempdir().unwrap();
    let url = common::replays::station_rtmp(&t, "有互动的讲座");
    let push_dir = dir.path().to_path_buf();
    let clip = tokio::task::spawn_blocking(move || common::rtmp::make_media(&push_dir, 8))
        .await
        .unwrap();
    let mut push = common::rtmp::push_rtmp(&clip, &url);
    wait_live(&t.base, &channel).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for (text, kind) in [
        ("老师好", "chat"),
        ("医保怎么报销？", "question"),
        ("还没答的问题", "question"),
    ] {
        ids.push(
            post_as_resident(
                &http,
                &t.base,
                &channel,
                &api,
                json!({"nickname": "回看居民", "text": text, "kind": kind}),
            )
            .await,
        );
    }
    let r = http
        .post(format!("{api}/messages/{}/answer", ids[1]))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the RTMP push failed: {status}");
    let list = common::replays::wait_replays(&t.base, &channel, 1, Duration::from_secs(20)).await;
    let id = list[0]["id"].as_i64().unwrap();

    let tab = Tab::open("replay-chat").await;
    let page = &tab.page;
    page.navigate(&format!("{}/replay/{id}", t.base))
        .await
        .expect("replay page loads");
    let view = "(function () { var box = document.getElementById('replay-chat'); \
        function texts(list) { return Array.from(box.querySelectorAll('[data-list=' + list + '] .ia-body')) \
          .map(function (e) { return e.textContent; }); } \
        return { hidden: box.hidden, answered: texts('answered'), messages: texts('messages'), \
          inputs: box.querySelectorAll('input, textarea, button').length }; })()";
    wait_js(
        page,
        &format!(
            "(function () {{ var v = {view}; return !v.hidden && v.messages.length === 3; }})()"
        ),
        Duration::from_secs(15),
    )
    .await
    .unwrap_or_else(|v| panic!("the replay does not show the session's messages: {v}"));
    let v = page.evaluate(view).await.unwrap();
    assert_eq!(
        v["messages"],
        json!(["老师好", "医保怎么报销？", "还没答的问题"]),
        "{v}"
    );
    assert_eq!(v["answered"], json!(["医保怎么报销？"]), "{v}");
    assert_eq!(v["inputs"], 0, "read-only: {v}");
    assert_no_csp_violation(page, "the replay page with the session's messages").await;
    t.server.shutdown().await;
}

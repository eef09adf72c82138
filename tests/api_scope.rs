//! What residents see without a login (issue 23 item 9): viewer figures only for
//! administrators in scope, and no secrets (stream keys, WHEP resource ids) in the log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use feiyan::catalog::{Scope, SessionFixture, SessionKind, ViewerFixture};
use feiyan::client::{ViewerOptions, WhepViewer};
use serde_json::Value;

const VIEWER_FIGURES: [&str; 5] = [
    "peak_viewers",
    "unique_viewers",
    "viewer_sessions",
    "viewer_seconds",
    "viewer_minutes",
];

async fn login(base: &str, user: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&serde_json::json!({"username": user, "password": "secret-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().expect("logged in").to_string()
}

async fn get(url: &str, token: Option<&str>) -> Value {
    let mut r = reqwest::Client::new().get(url);
    if let Some(token) = token {
        r = r.bearer_auth(token);
    }
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

fn figures_in(v: &Value) -> Vec<&'static str> {
    VIEWER_FIGURES
        .into_iter()
        .filter(|k| v.get(*k).is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_viewer_figures_are_for_administrators_in_scope_only() {
    let t = common::start_server().await;
    let c = &t.server.catalog;
    let s1 = t.station.station_id;
    let other = c.add_station("乙中心", "乙所", "乙站").await.unwrap();
    let center = c.station_placement(s1).await.unwrap().center_id;
    for (name, scope) in [
        ("city", Scope::City),
        ("center-a", Scope::Center(center)),
        ("op-s1", Scope::Station(s1)),
        ("op-other", Scope::Station(other.station_id)),
    ] {
        c.add_account(name, "secret-password", scope).await.unwrap();
    }
    let start = feiyan::audience::now_ms() - 3_600_000;
    let session = c
        .insert_sessions(&[SessionFixture {
            station_id: s1.0,
            kind: SessionKind::Lecture,
            title: "党史讲座".into(),
            started_at: start,
            ended_at: Some(start + 1_800_000),
            // As the catalog stores it when the session ends.
            peak_viewers: 3,
            in_person: 12,
            film_id: None,
        }])
        .await
        .unwrap()[0];
    let viewers: Vec<ViewerFixture> = (0..3)
        .map(|i| ViewerFixture {
            session_id: session,
            joined_at: start + 60_000,
            left_at: Some(start + 600_000),
            terminal: "pc",
            viewer_key: format!("viewer-{i}"),
        })
        .collect();
    c.insert_viewers(&viewers).await.unwrap();
    let url = format!("{}/api/sessions/{session}", t.base);

    let public = get(&url, None).await;
    assert_eq!(public["title"], "党史讲座");
    assert_eq!(public["id"], session);
    assert!(public["started_at"].is_string());
    assert!(
        figures_in(&public).is_empty(),
        "an anonymous resident sees {:?}: {public}",
        figures_in(&public)
    );
    let forged = get(&url, Some("not-a-token")).await;
    assert!(
        figures_in(&forged).is_empty(),
        "a forged token sees {forged}"
    );
    let outsider = login(&t.base, "op-other").await;
    let v = get(&url, Some(&outsider)).await;
    assert!(
        figures_in(&v).is_empty(),
        "another station's operator sees {v}"
    );
    for admin in ["city", "center-a", "op-s1"] {
        let token = login(&t.base, admin).await;
        let v = get(&url, Some(&token)).await;
        assert_eq!(v["peak_viewers"], 3, "{admin}: {v}");
        assert_eq!(v["unique_viewers"], 3, "{admin}: {v}");
        assert_eq!(figures_in(&v).len(), VIEWER_FIGURES.len(), "{admin}: {v}");
    }
}

/// Every log line the server writes, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs ffmpeg publishing to `url` until it gives up (refused) or 10 s pass.
async fn refused_push(clip: &std::path::Path, url: &str) {
    let mut child = common::rtmp::push_rtmp(clip, url);
    let gave_up = common::wait_until(Duration::from_secs(10), || {
        let done = matches!(child.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    if !gave_up {
        let _ = child.kill();
    }
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_keys_and_whep_resources_stay_out_of_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,feiyan=trace,rtc=warn,rtc_ice=warn,rtc_dtls=off")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let t = common::start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = common::rtmp::make_media(dir.path(), 6);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let key = t.station.stream_key.clone();
    let channel = t.station.channel.to_string();

    // An encoder set up wrongly: the key pasted as the stream name, as the application,
    // or typed in capitals. Each is refused, and the log says why without the key.
    for url in [
        format!("rtmp://{rtmp}/live/{key}"),
        format!("rtmp://{rtmp}/{key}/{channel}"),
        format!("rtmp://{rtmp}/live/{}", key.to_uppercase()),
    ] {
        refused_push(&clip, &url).await;
    }
    assert!(
        captured.text().contains("RTMP connection closed"),
        "the refusals are logged:\n{}",
        captured.text()
    );

    // A right one, watched over WHEP by a viewer that joins and leaves.
    let push = common::rtmp::push_rtmp(&clip, &format!("rtmp://{rtmp}/live/{channel}?key={key}"));
    common::wait_live(&t.base, &channel).await;
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions::default(),
    )
    .await
    .expect("viewer connects");
    let location = viewer.location().to_string();
    let resource = location.rsplit('/').next().unwrap().to_string();
    assert!(resource.len() >= 16, "resource id {resource:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    viewer.close().await.ok();
    let mut push = push;
    let _ = push.kill();
    let _ = push.wait();
    t.server.shutdown().await;

    let log = captured.text();
    assert!(log.lines().count() > 10, "too little was logged:\n{log}");
    let lower = log.to_lowercase();
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains(&key.to_lowercase()))
        .collect();
    assert!(
        leaks.is_empty() && !lower.contains(&key.to_lowercase()),
        "the stream key is in the log:\n{}",
        leaks.join("\n")
    );
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&resource))
        .filter(|l| {
            [" INFO ", " WARN ", " ERROR "]
                .iter()
                .any(|lvl| l.contains(lvl))
        })
        .collect();
    assert!(
        loud.is_empty(),
        "the WHEP resource id is logged at info or above:\n{}",
        loud.join("\n")
    );
}

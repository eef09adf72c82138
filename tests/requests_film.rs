//! The request cycle for a film class, end to end over HTTP (issue 26 item 2): a center
//! puts a library film on its menu, two residents request it at a station, the center's
//! administrator schedules it (a film-class screening on the station a few seconds
//! ahead), the station's operator accepts (another station's cannot; a film class whose
//! only request the station declines is called off), the screening plays from the library
//! at its time to a real WebRTC viewer and ends at the end of the file, the requests
//! become done, the residents rate it, and `/api/stats/requests` (by station and by menu
//! item) and `/api/stats/ratings?group=film` (JSON and CSV) show it. On SQLite and
//! PostgreSQL.

mod catalog_db;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use feiyan::audience::now_ms;
use feiyan::catalog::{Scope, SessionKind, SessionSource};
use feiyan::client::{ViewerOptions, WhepViewer};
use feiyan::ids::{CenterId, SessionId};
use feiyan::ingest::playout::probe_film;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::replays::admin_token;

/// The film's title: its file's stem, as the library names an imported film.
const FILM: &str = "red-star";

/// An 8 s H.264 + AAC film made by the ffmpeg CLI.
fn make_film(dir: &Path) -> std::path::PathBuf {
    let path = dir.join(format!("{FILM}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "8", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-profile:v", "baseline", "-preset", "ultrafast", "-g", "30"])
        .args(["-c:a", "aac", "-b:a", "96k"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the film");
    path
}

/// A resident's device id, as the watch page hands it out.
async fn device(base: &str, channel: &str) -> String {
    let page = reqwest::get(format!("{base}/watch/{channel}"))
        .await
        .unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .expect("the watch page gives a device id")
        .to_str()
        .unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn send(
    method: Method,
    url: &str,
    cookie: Option<&str>,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// `send`, asserting `want`; the body as JSON (or as a string when it is not JSON).
async fn expect(
    want: StatusCode,
    method: Method,
    url: &str,
    cookie: Option<&str>,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (got, text) = send(method.clone(), url, cookie, token, body).await;
    assert_eq!(got, want, "{method} {url}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn film_class_cycle(database_url: String) {
    let t = common::start_server_with(move |c| c.catalog.database_url = database_url).await;
    let base = t.base.clone();
    let channel = t.station.channel.to_string();
    let catalog = t.server.catalog.clone();
    let dir = tempfile::tempdir().unwrap();
    let film = probe_film(&make_film(dir.path())).unwrap();
    let film_id = catalog.import_film(&film, now_ms()).await.unwrap();

    let card = catalog.station_by_channel(&channel).await.unwrap();
    let center = CenterId(card.center.id);
    let center_admin = admin_token(&t, "center-admin", Scope::Center(center)).await;
    let own_op = admin_token(&t, "own-op", Scope::Station(t.station.station_id)).await;
    let near = catalog
        .add_station("测试中心", "测试所", "邻站")
        .await
        .unwrap();
    let near_op = admin_token(&t, "near-op", Scope::Station(near.station_id)).await;
    let city = admin_token(&t, "city", Scope::City).await;

    // The center puts the film on its menu: its title comes from the library.
    let item = expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("{base}/api/admin/menu"),
        None,
        Some(&center_admin),
        Some(json!({"center_id": center.0, "kind": "film_class", "film_id": film_id.0})),
    )
    .await;
    assert_eq!(item["title"], FILM, "{item}");
    assert_eq!(item["kind"], "film_class", "{item}");
    let menu_id = item["id"].as_i64().unwrap();
    let (got, why) = send(
        Method::POST,
        &format!("{base}/api/admin/menu"),
        None,
        Some(&center_admin),
        Some(json!({"center_id": center.0, "kind": "film_class", "film_id": 999_999})),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "an unknown film: {why}");
    assert!(
        why.contains("film_id") && why.contains("no film 999999"),
        "{why}"
    );
    let menu = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/stations/{channel}/menu"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(menu["items"][0]["film_id"], film_id.0, "{menu}");

    // Two residents ask for it at the station.
    let (a, b) = (device(&base, &channel).await, device(&base, &channel).await);
    let requests = format!("{base}/api/stations/{channel}/requests");
    let mut ids = Vec::new();
    for (cookie, nickname) in [(&a, "李阿姨"), (&b, "张师傅")] {
        let mine = expect(
            StatusCode::CREATED,
            Method::POST,
            &requests,
            Some(cookie),
            None,
            Some(json!({"menu_id": menu_id, "nickname": nickname, "period": "本周"})),
        )
        .await;
        ids.push(mine["id"].as_i64().unwrap());
    }

    // A film class the station declines (the only request for it) is called off.
    let c = device(&base, &channel).await;
    let lone = expect(
        StatusCode::CREATED,
        Method::POST,
        &requests,
        Some(&c),
        None,
        Some(json!({"menu_id": menu_id, "nickname": "王大爷"})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let later = chrono::DateTime::from_timestamp_millis(now_ms() + 3_600_000)
        .unwrap()
        .to_rfc3339();
    let called_off = expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("{base}/api/admin/requests/schedule"),
        None,
        Some(&center_admin),
        Some(json!({"request_ids": [lone], "station": channel, "at": later})),
    )
    .await["planned_item"]["id"]
        .as_i64()
        .unwrap();
    let declined = expect(
        StatusCode::OK,
        Method::POST,
        &format!("{base}/api/admin/requests/{lone}/decline"),
        None,
        Some(&own_op),
        Some(json!({"reason": "放映设备检修"})),
    )
    .await;
    assert_eq!(declined["status"], "declined", "{declined}");
    let item = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/items/{called_off}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(item["status"], "cancelled", "{item}");

    // 制单/派单: one film class on the station, starting in a few seconds.
    let at_ms = now_ms() + 5_000;
    let at = chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap()
        .to_rfc3339();
    let scheduled = expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("{base}/api/admin/requests/schedule"),
        None,
        Some(&center_admin),
        Some(json!({"request_ids": ids, "station": channel, "at": at})),
    )
    .await;
    let planned = &scheduled["planned_item"];
    assert_eq!(planned["kind"], "film_class", "{scheduled}");
    assert_eq!(planned["film"]["id"], film_id.0, "{scheduled}");
    assert_eq!(planned["station"]["channel"], channel, "{scheduled}");
    assert_eq!(planned["status"], "scheduled", "{scheduled}");
    let planned_id = planned["id"].as_i64().unwrap();

    // 接单: another station's operator cannot; the station's own accepts both.
    let (got, why) = send(
        Method::POST,
        &format!("{base}/api/admin/requests/{}/accept", ids[0]),
        None,
        Some(&near_op),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{why}");
    for id in &ids {
        let r = expect(
            StatusCode::OK,
            Method::POST,
            &format!("{base}/api/admin/requests/{id}/accept"),
            None,
            Some(&own_op),
            None,
        )
        .await;
        assert_eq!(r["status"], "accepted", "{r}");
    }

    // The screening plays from the library at its time; a WebRTC viewer watches.
    let session = common::wait_until(Duration::from_secs(30), || {
        let (base, channel) = (base.clone(), channel.clone());
        async move { common::live_session(&base, &channel).await.is_some() }
    })
    .await;
    assert!(session, "the film class went live");
    let session: SessionId = common::live_session(&base, &channel)
        .await
        .expect("still live");
    assert!(
        now_ms() >= at_ms - 500,
        "started at its time, not before ({} ms early)",
        at_ms - now_ms()
    );
    let viewer = WhepViewer::connect(
        &format!("{base}/whep/{channel}"),
        None,
        ViewerOptions::default(),
    )
    .await
    .expect("a viewer connects to the film class");
    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.kind, SessionKind::FilmClass);
    assert_eq!(summary.source, SessionSource::Playout);
    assert_eq!(catalog.session_film(session).await.unwrap(), Some(film_id));

    // A resident cannot rate it while it plays.
    let rate = format!("{base}/api/sessions/{session}/ratings");
    let (got, why) = send(
        Method::POST,
        &rate,
        Some(&a),
        None,
        Some(json!({"score": 5})),
    )
    .await;
    assert_eq!(got, StatusCode::CONFLICT, "{why}");

    // The film ends at the end of its file; the requests become done.
    let mine = format!("{base}/api/stations/{channel}/requests/mine");
    let done = common::wait_until(Duration::from_secs(30), || {
        let (mine, a, b) = (mine.clone(), a.clone(), b.clone());
        async move {
            let mut all = true;
            for cookie in [&a, &b] {
                let (_, seen) = send(Method::GET, &mine, Some(cookie), None, None).await;
                let seen: Value = serde_json::from_str(&seen).unwrap();
                all &= seen["requests"][0]["status"] == "done";
            }
            all
        }
    })
    .await;
    assert!(
        done,
        "both requests are done once the film class (session {session}) ended"
    );
    let stats = viewer.stats();
    assert!(stats.video.counters.packets > 50, "{:?}", stats.video);
    assert!(stats.audio.counters.packets > 100, "{:?}", stats.audio);
    assert!(stats.first_video_frame_is_keyframe);
    viewer.close().await.ok();
    let item = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/items/{planned_id}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(item["session_id"], session.0, "{item}");
    assert_eq!(item["status"], "ended", "{item}");

    // 评单: both residents rate it; a second rating from one device is refused.
    for (cookie, score) in [(&a, 5), (&b, 4)] {
        expect(
            StatusCode::CREATED,
            Method::POST,
            &rate,
            Some(cookie),
            None,
            Some(json!({"score": score, "comment": "好看"})),
        )
        .await;
    }
    let (got, why) = send(
        Method::POST,
        &rate,
        Some(&a),
        None,
        Some(json!({"score": 1})),
    )
    .await;
    assert_eq!(got, StatusCode::CONFLICT, "{why}");
    let public = expect(StatusCode::OK, Method::GET, &rate, None, None, None).await;
    assert_eq!(
        (public["count"].as_i64(), public["average"].as_f64()),
        (Some(2), Some(4.5)),
        "{public}"
    );

    // The figures: requests (JSON and CSV) and ratings by film (JSON and CSV).
    let rows = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/stats/requests?group=station"),
        None,
        Some(&center_admin),
        None,
    )
    .await;
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["name"], "测试站", "{rows}");
    assert_eq!(
        (
            rows[0]["received"].as_i64(),
            rows[0]["fulfilled"].as_i64(),
            rows[0]["declined"].as_i64()
        ),
        (Some(3), Some(2), Some(1)),
        "{rows}"
    );
    // Requested seconds before the session: 0.0 days.
    assert_eq!(rows[0]["median_days"].as_f64(), Some(0.0), "{rows}");
    let (got, csv) = send(
        Method::GET,
        &format!("{base}/api/stats/requests?format=csv"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains("测试站") && l.contains(",3,2,1,0.0")),
        "{csv}"
    );
    // By menu item: the film's requests under its title.
    let by_item = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/stats/requests?group=item&format=csv"),
        None,
        Some(&center_admin),
        None,
    )
    .await;
    let by_item = by_item.as_str().unwrap_or_default();
    assert!(
        by_item
            .lines()
            .any(|l| l == format!("{menu_id},{FILM},3,2,1,0.0")),
        "{by_item}"
    );
    let by_film = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/stats/ratings?group=film"),
        None,
        Some(&center_admin),
        None,
    )
    .await;
    let row = by_film
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group_id"] == film_id.0)
        .unwrap_or_else(|| panic!("a row for the film: {by_film}"));
    assert_eq!(row["group"], FILM, "{by_film}");
    assert_eq!(
        (
            row["sessions"].as_i64(),
            row["ratings"].as_i64(),
            row["average"].as_f64()
        ),
        (Some(1), Some(2), Some(4.5)),
        "{by_film}"
    );
    let (got, csv) = send(
        Method::GET,
        &format!("{base}/api/stats/ratings?group=film&format=csv"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{},{FILM},", film_id.0)) && l.ends_with(",1,2,4.5")),
        "{csv}"
    );
    // Another station's operator counts none of these.
    let far = expect(
        StatusCode::OK,
        Method::GET,
        &format!("{base}/api/stats/requests"),
        None,
        Some(&near_op),
        None,
    )
    .await;
    assert_eq!(far, json!([]));
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_requested_film_class_is_scheduled_played_rated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    film_class_cycle(format!("sqlite://{}/catalog.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_requested_film_class_is_scheduled_played_rated_and_counted() {
    let db = catalog_db::postgres().await;
    film_class_cycle(db.url.clone()).await;
    db.finish().await;
}

//! The administrators' recording routes over real HTTP: listings within the scope (hidden
//! ones included, deleted ones on request), 403 for another station's recording, 404 for
//! an unknown one, and hide / publish / keep / unkeep / delete round trips; deleting a
//! recorded replay removes its files, a library replay's film stays.

mod common;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use feiyan::catalog::{
    NewRecording, RecordingKind, Scope, SessionFixture, SessionKind, shanghai_midnight_ms,
};
use feiyan::ids::{SessionId, StationId};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

struct World {
    base: String,
    http: Client,
    s1: i64,
    s3: i64,
    /// s1's recorded replay, s1's library replay, s3's recorded replay.
    rec_s1: i64,
    lib_s1: i64,
    rec_s3: i64,
    /// Where s1's recorded replay keeps its files.
    rec_s1_dir: PathBuf,
    /// The library film s1's film class replays from.
    film_file: PathBuf,
}

async fn call(w: &World, method: Method, token: &str, path: &str) -> (StatusCode, String) {
    let r = w
        .http
        .request(method, format!("{}{path}", w.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn json(w: &World, method: Method, token: &str, path: &str) -> Value {
    let (status, body) = call(w, method, token, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn token(w: &World, user: &str) -> String {
    let r = w
        .http
        .post(format!("{}/api/login", w.base))
        .json(&serde_json::json!({"username": user, "password": "secret-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// A recording's files as the recorder writes them: `{dir}/{channel}/{session}/...`.
fn write_files(dir: &Path, rel: &str) -> PathBuf {
    let files = dir.join(rel);
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("init-0.mp4"), b"init").unwrap();
    std::fs::write(files.join("seg-0.m4s"), vec![0u8; 1000]).unwrap();
    std::fs::write(files.join("journal.tsv"), b"0\t2000\n").unwrap();
    files
}

async fn world(t: &common::TestServer, recordings: &Path, media: &Path) -> World {
    let c = &t.server.catalog;
    let s1 = t.station.station_id.0;
    let s3_station = c.add_station("乙中心", "乙所", "乙站").await.unwrap();
    let s3 = s3_station.station_id.0;
    let center_b = c.station_placement(StationId(s3)).await.unwrap().center_id;
    for (name, scope) in [
        ("city", Scope::City),
        ("center-b", Scope::Center(center_b)),
        ("op-s1", Scope::Station(StationId(s1))),
        ("op-s3", Scope::Station(StationId(s3))),
    ] {
        c.add_account(name, "secret-password", scope).await.unwrap();
    }
    let day = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
    let fixture = |station, kind, hour: i64| SessionFixture {
        station_id: station,
        kind,
        title: "讲座".into(),
        started_at: day + hour * 3_600_000,
        ended_at: Some(day + (hour + 1) * 3_600_000),
        peak_viewers: 0,
        in_person: 0,
        film_id: None,
    };
    let sessions = c
        .insert_sessions(&[
            fixture(s1, SessionKind::Lecture, 9),
            fixture(s1, SessionKind::FilmClass, 14),
            fixture(s3, SessionKind::Lecture, 10),
        ])
        .await
        .unwrap();
    let film_file = media.join("film.mp4");
    std::fs::write(&film_file, b"a film").unwrap();
    let rec_s1_rel = format!("{}/{}", t.station.channel, sessions[0]);
    let rec_s1_dir = write_files(recordings, &rec_s1_rel);
    let rec_s3_rel = format!("{}/{}", s3_station.channel, sessions[2]);
    write_files(recordings, &rec_s3_rel);
    let mut recs = Vec::new();
    for (k, (kind, path)) in [
        (RecordingKind::Recorded, rec_s1_rel),
        (RecordingKind::Library, film_file.display().to_string()),
        (RecordingKind::Recorded, rec_s3_rel),
    ]
    .into_iter()
    .enumerate()
    {
        let start = day + [9, 14, 10][k] * 3_600_000;
        recs.push(
            c.insert_recording(&NewRecording {
                session: SessionId(sessions[k]),
                kind,
                path,
                started_ms: start,
                ended_ms: start + 3_600_000,
                duration_ms: 3_600_000,
                size_bytes: 1_000,
            })
            .await
            .unwrap(),
        );
    }
    World {
        base: t.base.clone(),
        http: Client::new(),
        s1,
        s3,
        rec_s1: recs[0],
        lib_s1: recs[1],
        rec_s3: recs[2],
        rec_s1_dir,
        film_file,
    }
}

#[tokio::test]
async fn recordings_are_managed_within_the_scope() {
    let recordings = tempfile::tempdir().unwrap();
    let media = tempfile::tempdir().unwrap();
    let dir = recordings.path().to_path_buf();
    let t = common::start_server_with(move |c| c.recording.dir = dir).await;
    let w = world(&t, recordings.path(), media.path()).await;
    let city = token(&w, "city").await;
    let center_b = token(&w, "center-b").await;
    let op1 = token(&w, "op-s1").await;
    let op3 = token(&w, "op-s3").await;
    let list = "/api/admin/recordings";

    // Listings: newest first, each account its own scope.
    assert_eq!(
        call(&w, Method::GET, "", list).await.0,
        StatusCode::UNAUTHORIZED
    );
    let all = json(&w, Method::GET, &city, list).await;
    assert_eq!(ids(&all), [w.lib_s1, w.rec_s3, w.rec_s1]);
    assert!(all[0].get("path").is_none(), "{all}");
    assert_eq!(all[0]["kind"], "library");
    assert_eq!(all[1]["station_id"], w.s3);
    assert_eq!(all[2]["published"], true);
    assert_eq!(
        ids(&json(&w, Method::GET, &op1, list).await),
        [w.lib_s1, w.rec_s1]
    );
    assert_eq!(
        ids(&json(&w, Method::GET, &center_b, list).await),
        [w.rec_s3]
    );
    assert_eq!(
        ids(&json(&w, Method::GET, &city, &format!("{list}?station={}", w.s3)).await),
        [w.rec_s3]
    );
    for (token, station) in [(&op1, w.s3), (&center_b, w.s1)] {
        let (status, body) =
            call(&w, Method::GET, token, &format!("{list}?station={station}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = call(&w, Method::GET, &city, &format!("{list}?deleted=maybe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        call(&w, Method::GET, &city, &format!("{list}?colour=red"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    // Another station's operator (and another center's admin) may not touch s1's replay.
    let rec1 = format!("{list}/{}", w.rec_s1);
    for token in [&op3, &center_b] {
        for action in ["publish", "hide", "keep", "unkeep"] {
            let (status, body) = call(&w, Method::POST, token, &format!("{rec1}/{action}")).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {body}");
        }
        let (status, body) = call(&w, Method::DELETE, token, &rec1).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert!(w.rec_s1_dir.join("seg-0.m4s").exists());

    // Unknown ids and actions are 404.
    for (method, path) in [
        (Method::POST, format!("{list}/999999/hide")),
        (Method::POST, format!("{list}/999999/keep")),
        (Method::DELETE, format!("{list}/999999")),
        (Method::POST, format!("{rec1}/frobnicate")),
    ] {
        let (status, body) = call(&w, method, &city, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }

    // Hide, keep, unkeep, publish: each answers the recording as it now is.
    let hidden = json(&w, Method::POST, &op1, &format!("{rec1}/hide")).await;
    assert_eq!(
        (hidden["id"].as_i64(), &hidden["published"]),
        (Some(w.rec_s1), &Value::Bool(false))
    );
    // Hidden ones stay in the administrators' listing.
    let listed = json(&w, Method::GET, &op1, list).await;
    assert_eq!(ids(&listed), [w.lib_s1, w.rec_s1]);
    assert_eq!(listed[1]["published"], false);
    assert_eq!(
        json(&w, Method::POST, &op1, &format!("{rec1}/keep")).await["keep"],
        true
    );
    assert_eq!(
        json(&w, Method::POST, &city, &format!("{rec1}/unkeep")).await["keep"],
        false
    );
    let published = json(&w, Method::POST, &op1, &format!("{rec1}/publish")).await;
    assert_eq!(
        (&published["published"], &published["keep"]),
        (&Value::Bool(true), &Value::Bool(false))
    );

    // Delete: the files go, the row says when and by whom; it leaves the listing unless
    // deleted ones are asked for.
    let deleted = json(&w, Method::DELETE, &op1, &rec1).await;
    assert_eq!(deleted["deleted_reason"], "deleted by op-s1");
    assert!(
        deleted["deleted_at"].as_str().unwrap().ends_with('Z'),
        "{deleted}"
    );
    assert!(!w.rec_s1_dir.exists());
    assert_eq!(ids(&json(&w, Method::GET, &op1, list).await), [w.lib_s1]);
    let with_deleted = json(&w, Method::GET, &op1, &format!("{list}?deleted=1")).await;
    assert_eq!(ids(&with_deleted), [w.lib_s1, w.rec_s1]);
    assert_eq!(with_deleted[1]["deleted_reason"], "deleted by op-s1");
    assert_eq!(with_deleted[0]["deleted_at"], Value::Null);
    // A library replay: only the row; the film stays in the library.
    let lib = json(&w, Method::DELETE, &city, &format!("{list}/{}", w.lib_s1)).await;
    assert_eq!(lib["deleted_reason"], "deleted by city");
    assert!(w.film_file.exists());
    assert!(
        json(&w, Method::GET, &op1, list)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    // s3's replay was never touched.
    let s3 = json(&w, Method::GET, &op3, list).await;
    assert_eq!(ids(&s3), [w.rec_s3]);
    assert_eq!(s3[0]["deleted_at"], Value::Null);
}

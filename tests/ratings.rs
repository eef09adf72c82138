//! Residents rate what they watched (评单): one rating per device per ended session, 1 to 5
//! with an optional comment; averages public, comments for administrators in scope;
//! figures by station, speaker, topic and period in `/api/stats/ratings` (JSON and CSV).
//! The catalog on SQLite and PostgreSQL; the HTTP path with a real RTMP lecture.

mod catalog_db;
mod common;

use std::time::Duration;

use feiyan::audience::now_ms;
use feiyan::catalog::{CatalogError, Period, RatingGroup, Scope, SessionUpdate, StatsQuery};
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::replays::{admin_token, lecture, station_rtmp};

async fn ratings_by_the_rules(db: catalog_db::TestDb) {
    let catalog = &db.catalog;
    let station = catalog.add_station("中心", "所", "站").await.unwrap();
    let other = catalog.add_station("中心", "所", "另一站").await.unwrap();
    let t0 = now_ms() - 3_600_000;
    let session = catalog_db::open_lecture(catalog, &station, t0).await;
    let second = catalog_db::open_lecture(catalog, &other, t0).await;

    match catalog.rate_session(session, "dev-a", 5, "", t0 + 1).await {
        Err(CatalogError::Conflict(why)) => assert!(why.contains("still on"), "{why}"),
        other => panic!("a live session was rated: {other:?}"),
    }
    catalog.close_session(session, t0 + 60_000).await.unwrap();
    catalog.close_session(second, t0 + 60_000).await.unwrap();
    for (device, score, comment) in [
        ("dev-a", 5, " 讲得好 "),
        ("dev-b", 4, ""),
        ("dev-c", 2, "声音小"),
    ] {
        catalog
            .rate_session(session, device, score, comment, t0 + 70_000)
            .await
            .unwrap();
    }
    catalog
        .rate_session(second, "dev-a", 3, "", t0 + 70_000)
        .await
        .unwrap();
    match catalog
        .rate_session(session, "dev-a", 1, "", t0 + 80_000)
        .await
    {
        Err(CatalogError::Conflict(why)) => assert!(why.contains("already rated"), "{why}"),
        other => panic!("a second rating from one device: {other:?}"),
    }
    assert!(matches!(
        catalog.rate_session(session, "dev-d", 6, "", t0).await,
        Err(CatalogError::Invalid { field: "score", .. })
    ));
    assert!(matches!(
        catalog
            .rate_session(feiyan::ids::SessionId(999_999), "dev-d", 3, "", t0)
            .await,
        Err(CatalogError::NotFound(_))
    ));

    let summary = catalog.session_rating(session).await.unwrap();
    assert_eq!((summary.count, summary.average), (3, Some(3.7)));
    assert!(catalog.has_rated(session, "dev-b").await.unwrap());
    assert!(!catalog.has_rated(session, "dev-z").await.unwrap());
    let all = catalog.session_ratings(session).await.unwrap();
    let mut scores: Vec<(i64, &str)> = all.iter().map(|r| (r.score, r.comment.as_str())).collect();
    scores.sort();
    assert_eq!(
        scores,
        vec![(2, "声音小"), (4, ""), (5, "讲得好")],
        "comments trimmed"
    );

    let topic = catalog.add_topic("党史").await.unwrap();
    catalog
        .update_session(
            session.0,
            &SessionUpdate {
                speaker: Some("张老师".into()),
                topic_id: Some(topic),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut q = StatsQuery::all();
    let rows = catalog
        .stats_ratings(&q, RatingGroup::Station, now_ms())
        .await
        .unwrap();
    let by_station: Vec<(String, i64, i64, f64)> = rows
        .iter()
        .map(|r| (r.group.clone(), r.sessions, r.ratings, r.average))
        .collect();
    assert_eq!(
        by_station,
        vec![("另一站".into(), 1, 1, 3.0), ("站".into(), 1, 3, 3.7)]
    );
    let speakers = catalog
        .stats_ratings(&q, RatingGroup::Speaker, now_ms())
        .await
        .unwrap();
    assert!(
        speakers
            .iter()
            .any(|r| r.group == "张老师" && r.ratings == 3),
        "{speakers:?}"
    );
    let topics = catalog
        .stats_ratings(&q, RatingGroup::Topic, now_ms())
        .await
        .unwrap();
    assert!(
        topics
            .iter()
            .any(|r| r.group == "党史" && r.group_id == topic),
        "{topics:?}"
    );
    q.period = Period::Year;
    let all = catalog
        .stats_ratings(&q, RatingGroup::All, now_ms())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (all[0].sessions, all[0].ratings, all[0].average),
        (2, 4, 3.5)
    );
    assert_eq!(all[0].period.len(), 4, "a year label: {all:?}");
    db.finish().await;
}

#[tokio::test]
async fn sqlite_ratings_by_the_rules() {
    ratings_by_the_rules(catalog_db::sqlite().await).await;
}

#[tokio::test]
async fn postgres_ratings_by_the_rules() {
    ratings_by_the_rules(catalog_db::postgres().await).await;
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

async fn rate(base: &str, session: i64, cookie: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/sessions/{session}/ratings"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn read(base: &str, session: i64, cookie: &str, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/api/sessions/{session}/ratings"))
        .header("cookie", cookie);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residents_rate_an_ended_lecture_over_http() {
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();
    let base = t.base.clone();
    let (a, b, c) = (
        device(&base, &channel).await,
        device(&base, &channel).await,
        device(&base, &channel).await,
    );
    assert_ne!(a, b);

    // A 4 s RTMP lecture: rated while on -> 409; once it has ended, three residents rate.
    let url = station_rtmp(&t, "党史讲座");
    let media = tempfile::tempdir().unwrap();
    let dir = media.path().to_path_buf();
    let push = tokio::spawn(async move { lecture(&url, 4, &dir).await });
    let session = common::wait_live(&base, &channel).await.0;
    let (status, why) = rate(&base, session, Some(&a), r#"{"score": 5}"#).await;
    assert_eq!(status, StatusCode::CONFLICT, "{why}");
    assert!(why.contains("still on"), "{why}");
    push.await.unwrap();
    let ended = common::wait_until(Duration::from_secs(15), || async {
        let s: Value = reqwest::get(format!("{base}/api/sessions/{session}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        !s["ended_at"].is_null()
    })
    .await;
    assert!(ended, "the lecture ended");

    // What a person can act on, for each kind of bad rating.
    for (body, status, words) in [
        (r#"{"score": 0}"#, StatusCode::BAD_REQUEST, "from 1 to 5"),
        (r#"{"score": 6}"#, StatusCode::BAD_REQUEST, "from 1 to 5"),
        (
            r#"{"score": "five"}"#,
            StatusCode::BAD_REQUEST,
            "whole number",
        ),
        (r#"{"score": 4.5}"#, StatusCode::BAD_REQUEST, "whole number"),
        (
            r#"{"comment": "好"}"#,
            StatusCode::BAD_REQUEST,
            "score is missing",
        ),
        (r#"{"score": 4"#, StatusCode::BAD_REQUEST, "invalid JSON"),
    ] {
        let (got, why) = rate(&base, session, Some(&a), body).await;
        assert_eq!(got, status, "{body}: {why}");
        assert!(why.contains(words), "{body}: {why}");
    }
    let long = json!({"score": 3, "comment": "长".repeat(301)}).to_string();
    let (got, why) = rate(&base, session, Some(&a), &long).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{why}");
    assert!(why.contains("at most 300"), "{why}");
    let (got, why) = rate(&base, session, None, r#"{"score": 3}"#).await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert!(why.contains("no device id"), "{why}");
    let (got, _) = rate(&base, session, Some("fy_dev=forged.id"), r#"{"score": 3}"#).await;
    assert_eq!(
        got,
        StatusCode::BAD_REQUEST,
        "a forged device id is no device id"
    );
    let (got, _) = rate(&base, 987_654, Some(&a), r#"{"score": 3}"#).await;
    assert_eq!(got, StatusCode::NOT_FOUND);

    for (cookie, body) in [
        (&a, r#"{"score": 5, "comment": "讲得生动"}"#),
        (&b, r#"{"score": 4}"#),
        (&c, r#"{"score": 2, "comment": "声音太小"}"#),
    ] {
        let (got, why) = rate(&base, session, Some(cookie), body).await;
        assert_eq!(got, StatusCode::CREATED, "{why}");
    }
    let (got, why) = rate(&base, session, Some(&a), r#"{"score": 1}"#).await;
    assert_eq!(got, StatusCode::CONFLICT, "{why}");
    assert!(why.contains("already rated"), "{why}");

    // Public: the average and whether this device rated; no comments.
    let public = read(&base, session, &a, None).await;
    assert_eq!(public["count"], 3);
    assert_eq!(public["average"], 3.7);
    assert_eq!(public["rated"], true);
    assert!(public.get("ratings").is_none(), "{public}");
    let fresh = device(&base, &channel).await;
    assert_eq!(read(&base, session, &fresh, None).await["rated"], false);

    // The station's operator sees the comments; another station's does not.
    let own = admin_token(&t, "station-op", Scope::Station(t.station.station_id)).await;
    let seen = read(&base, session, &fresh, Some(&own)).await;
    let comments: Vec<&str> = seen["ratings"]
        .as_array()
        .expect("comments for the station")
        .iter()
        .map(|r| r["comment"].as_str().unwrap())
        .collect();
    assert!(
        comments.contains(&"讲得生动") && comments.contains(&"声音太小"),
        "{seen}"
    );
    let elsewhere = t
        .server
        .catalog
        .add_station("测试中心", "测试所", "别的站")
        .await
        .unwrap();
    let other = admin_token(&t, "other-op", Scope::Station(elsewhere.station_id)).await;
    assert!(
        read(&base, session, &fresh, Some(&other))
            .await
            .get("ratings")
            .is_none()
    );

    // The statistics, as JSON and CSV; an unknown group names the parameter.
    let city = admin_token(&t, "city", Scope::City).await;
    let http = reqwest::Client::new();
    let rows: Value = http
        .get(format!(
            "{base}/api/stats/ratings?group=station&period=total"
        ))
        .bearer_auth(&city)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows[0]["group"], "测试站", "{rows}");
    assert_eq!(
        (rows[0]["sessions"].as_i64(), rows[0]["ratings"].as_i64()),
        (Some(1), Some(3))
    );
    assert_eq!(rows[0]["average"], 3.7);
    let csv = http
        .get(format!("{base}/api/stats/ratings?group=station&format=csv"))
        .bearer_auth(&city)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with('\u{feff}') && csv.contains("平均分"),
        "{csv}"
    );
    assert!(csv.contains("测试站") && csv.contains("3.7"), "{csv}");
    let bad = http
        .get(format!("{base}/api/stats/ratings?group=weather"))
        .bearer_auth(&city)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("group"));
    let outside = http
        .get(format!(
            "{base}/api/stats/ratings?level=station&id={}",
            t.station.station_id
        ))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.status(),
        StatusCode::FORBIDDEN,
        "another station's figures"
    );
    t.server.shutdown().await;
}

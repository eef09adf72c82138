//! The administrator API over real HTTP: login (401 without a hint, 429 after repeated
//! failures), scopes (403 outside), bad filters (400 with the reason), CSV with BOM,
//! all-or-nothing CSV import and headcount reports.

mod common;

use chrono::NaiveDate;
use feiyan::catalog::{Scope, SessionFixture, SessionKind, shanghai_midnight_ms};
use feiyan::ids::StationId;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

struct World {
    base: String,
    http: Client,
    center_a: i64,
    center_b: i64,
    s1: i64,
    s3: i64,
    session_s1: i64,
    session_s3: i64,
}

async fn login(w: &World, user: &str, password: &str) -> reqwest::Response {
    w.http
        .post(format!("{}/api/login", w.base))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn token(w: &World, user: &str) -> String {
    let r = login(w, user, "secret-password").await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(w: &World, token: &str, path: &str) -> (StatusCode, String) {
    let r = w
        .http
        .get(format!("{}{path}", w.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn post(w: &World, token: &str, path: &str, body: Value) -> (StatusCode, String) {
    let r = w
        .http
        .post(format!("{}{path}", w.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn world(t: &common::TestServer) -> World {
    let c = &t.server.catalog;
    // The harness made 测试中心/测试所/测试站 (center A, station s1).
    let s1 = t.station.station_id.0;
    let s3 = c
        .add_station("乙中心", "乙所", "乙站")
        .await
        .unwrap()
        .station_id
        .0;
    let center_a = c.station_placement(StationId(s1)).await.unwrap().center_id;
    let center_b = c.station_placement(StationId(s3)).await.unwrap().center_id;
    c.add_account("city", "secret-password", Scope::City)
        .await
        .unwrap();
    c.add_account("center-a", "secret-password", Scope::Center(center_a))
        .await
        .unwrap();
    c.add_account("op-s1", "secret-password", Scope::Station(StationId(s1)))
        .await
        .unwrap();
    let day = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
    let fixture = |station| SessionFixture {
        station_id: station,
        kind: SessionKind::Lecture,
        title: "讲座".into(),
        started_at: day + 3_600_000,
        ended_at: Some(day + 7_200_000),
        peak_viewers: 0,
        in_person: 0,
        film_id: None,
    };
    let ids = c
        .insert_sessions(&[fixture(s1), fixture(s3)])
        .await
        .unwrap();
    World {
        base: t.base.clone(),
        http: Client::new(),
        center_a: center_a.0,
        center_b: center_b.0,
        s1,
        s3,
        session_s1: ids[0],
        session_s3: ids[1],
    }
}

#[tokio::test]
async fn logins_scopes_filters_and_csv() {
    let t = common::start_server().await;
    let w = world(&t).await;

    // No token, bad token.
    let (status, body) = get(&w, "", "/api/stats/table").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        get(&w, "nope", "/api/stats/table").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Wrong password and unknown user: same 401, same words.
    let wrong = login(&w, "city", "not-the-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong.text().await.unwrap();
    let unknown = login(&w, "nobody", "secret-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown.text().await.unwrap());
    assert!(wrong.contains("wrong username or password"), "{wrong}");

    let city = token(&w, "city").await;
    let center_a = token(&w, "center-a").await;
    let op = token(&w, "op-s1").await;

    // City admin sees both centers.
    let (status, body) = get(&w, &city, "/api/stats/table?group=center").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);

    // Center admin: own center yes, the other no; unfiltered is narrowed to its center.
    let (status, _) = get(
        &w,
        &center_a,
        &format!("/api/stats/table?level=center&id={}", w.center_b),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(
        &w,
        &center_a,
        &format!("/api/stats/table?level=station&id={}", w.s3),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(
        &w,
        &center_a,
        &format!("/api/stats/sessions?level=center&id={}", w.center_a),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = get(&w, &center_a, "/api/stats/table?group=center").await;
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["group_id"], w.center_a);
    let (status, _) = post(
        &w,
        &center_a,
        "/api/admin/centers",
        json!({"name": "丙中心"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = get(&w, &center_a, "/api/admin/hierarchy").await;
    let tree: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tree.as_array().unwrap().len(), 1);

    // Station operator: only its station.
    let (status, _) = get(
        &w,
        &op,
        &format!("/api/stats/table?level=center&id={}", w.center_a),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(
        &w,
        &op,
        &format!("/api/stats/table?level=station&id={}", w.s3),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(
        &w,
        &op,
        &format!("/api/admin/sessions/{}", w.session_s3),
        json!({"in_person": 9}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(
        &w,
        &op,
        &format!("/api/admin/stations/{}/rotate-key", w.s3),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = post(
        &w,
        &op,
        &format!("/api/admin/sessions/{}", w.session_s1),
        json!({"in_person": 42, "speaker": "李老师"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&w, &op, "/api/stats/table").await;
    assert_eq!(status, StatusCode::OK);
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows[0]["in_person"], 42);
    assert_eq!(rows[0]["total_audience"], 42);
    assert_eq!(rows[0]["sessions"], 1);
    let (status, body) = post(
        &w,
        &op,
        &format!("/api/admin/sessions/{}", w.session_s1),
        json!({"in_person": -3}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("in_person"), "{body}");
    let (status, _) = post(
        &w,
        &op,
        &format!("/api/admin/stations/{}/rotate-key", w.s1),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Bad filters say why.
    for (query, word) in [
        ("from=2026-13-01", "from"),
        ("from=2026-03-02&to=2026-03-01", "before it starts"),
        ("period=fortnight", "period"),
        ("level=galaxy&id=1", "level"),
        ("level=center", "together"),
        ("kind=concert", "kind"),
        ("colour=red", "unknown parameter"),
        ("format=xml", "format"),
    ] {
        let (status, body) = get(&w, &city, &format!("/api/stats/table?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.contains(word), "{query}: {body}");
    }

    // CSV with a BOM.
    let r = w
        .http
        .get(format!(
            "{}/api/stats/table?group=station&period=month&format=csv",
            w.base
        ))
        .bearer_auth(&city)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    assert!(text.starts_with("编号,名称,时段"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    // Import through the API: bad rows -> 400 naming them, nothing imported.
    let before = get(&w, &city, "/api/admin/hierarchy").await.1;
    let r = w
        .http
        .post(format!("{}/api/admin/import", w.base))
        .bearer_auth(&city)
        .body("center,institute,station,address\n丙中心,丙所,丙站,路1\n丙中心,丙所,,路2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("row 3") && !body.contains("row 2"), "{body}");
    assert_eq!(get(&w, &city, "/api/admin/hierarchy").await.1, before);
    let r = w
        .http
        .post(format!("{}/api/admin/import", w.base))
        .bearer_auth(&center_a)
        .body("丙中心,丙所,丙站,路1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Repeated failures are slowed down: the fourth failure blocks even the right password.
    for _ in 0..4 {
        assert_eq!(
            login(&w, "center-a", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login(&w, "center-a", "secret-password").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // Other accounts are not affected.
    assert_eq!(
        login(&w, "op-s1", "secret-password").await.status(),
        StatusCode::OK
    );

    // The dashboard is served by the binary itself.
    let r = w
        .http
        .get(format!("{}/admin", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("lang=\"zh-CN\"") && html.contains("/assets/admin.js"));
    assert!(!html.contains("http://cdn") && !html.contains("https://"));
    // Its script is served beside it (no inline scripts: the CSP forbids them), no CDN.
    let js = w
        .http
        .get(format!("{}/assets/admin.js", w.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("/api/stats/"));
    assert!(!js.contains("http://cdn") && !js.contains("https://"));

    t.server.shutdown().await;
}

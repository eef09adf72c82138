//! Statistics integrity (issue 23, item 8): a failed publish attempt leaves no counted
//! session, and every CSV cell a spreadsheet would run as a formula is neutralised.
//! (A `vid` the server did not sign counting as no id is proven by
//! `http_device::whep_counts_a_vid_only_when_it_verifies`.)

mod common;

use std::time::Duration;

use chrono::NaiveDate;
use common::rtmp::{make_media, push_rtmp};
use common::{start_server, test_media, wait_live, wait_until};
use feiyan::catalog::{Scope, SessionFixture, SessionKind, shanghai_midnight_ms};
use feiyan::client::WhipPublisher;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn session_count(t: &common::TestServer) -> usize {
    t.server
        .catalog
        .station_sessions(t.station.station_id.0, 200)
        .await
        .expect("sessions read")
        .len()
}

/// An offer that passes the stream-key check and then fails in the relay must not leave
/// a session row behind (one counted in 场次 with no minute of media).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_offer_that_fails_after_the_key_check_leaves_no_session() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let http = reqwest::Client::new();
    for offer in [
        "v=0\r\nthis is not an offer\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    ] {
        let r = http
            .post(format!("{}/whip/{channel}", t.base))
            .bearer_auth(&t.station.stream_key)
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_client_error(), "{status} {body}");
    }
    let rows = t
        .server
        .catalog
        .station_sessions(t.station.station_id.0, 200)
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "failed offers opened sessions: {:?}",
        rows.iter()
            .map(|r| (r.id, &r.started_at, &r.ended_at))
            .collect::<Vec<_>>()
    );
    t.server.shutdown().await;
}

/// An RTMP publish whose key is right but which cannot go live (another publisher holds
/// the channel) leaves no session; neither does one that never sends media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_publish_that_fails_or_sends_nothing_leaves_no_session() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");

    // Never sends media: a TCP connection that only says hello.
    {
        use tokio::io::AsyncWriteExt;
        let mut sock = tokio::net::TcpStream::connect(rtmp).await.unwrap();
        sock.write_all(&[3u8; 1537]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(session_count(&t).await, 0);

    // A WHIP publisher holds the channel; an RTMP push with the right key then fails.
    let dir = tempfile::tempdir().unwrap();
    let media = test_media(dir.path()).await;
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        Default::default(),
    )
    .await
    .expect("publisher connects");
    let live = wait_live(&t.base, &channel).await;
    let clip = make_media(dir.path(), 2);
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut push = push_rtmp(&clip, &url);
    let ended = wait_until(Duration::from_secs(15), || {
        let done = push.try_wait().ok().flatten().is_some();
        async move { done }
    })
    .await;
    if !ended {
        push.kill().ok();
    }
    push.wait().ok();
    let rows = t
        .server
        .catalog
        .station_sessions(t.station.station_id.0, 200)
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![live.0],
        "only the WHIP session: {:?}",
        rows.iter()
            .map(|r| (r.id, &r.started_at, &r.ended_at))
            .collect::<Vec<_>>()
    );
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

/// Names and titles that a spreadsheet would run as formulas (`=`, `+`, `-`, `@`, tab,
/// CR at the start) come out of every CSV export prefixed with `'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_cells_are_neutralised_in_the_csv_exports() {
    let t = start_server().await;
    let c = &t.server.catalog;
    let evil = c
        .add_station("+中心", "-所", "@SUM(A1:A9)")
        .await
        .unwrap()
        .station_id
        .0;
    c.add_account("city", "secret-password", Scope::City)
        .await
        .unwrap();
    let day = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
    let title = "=HYPERLINK(\"http://evil.test\",\"点我\")";
    c.insert_sessions(&[SessionFixture {
        station_id: evil,
        kind: SessionKind::Lecture,
        title: title.into(),
        started_at: day + 3_600_000,
        ended_at: Some(day + 7_200_000),
        peak_viewers: 0,
        in_person: 0,
        film_id: None,
    }])
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let token = http
        .post(format!("{}/api/login", t.base))
        .json(&json!({"username": "city", "password": "secret-password"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let get = |path: &str| {
        let (http, url, token) = (http.clone(), format!("{}{path}", t.base), token.clone());
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let sessions = get("/api/stats/sessions?format=csv").await;
    assert!(
        sessions.contains("\"'=HYPERLINK(\"\"http://evil.test\"\",\"\"点我\"\")\""),
        "title neutralised: {sessions}"
    );
    for cell in ["'+中心", "'-所", "'@SUM(A1:A9)"] {
        assert!(
            sessions.contains(&format!(",{cell},")),
            "{cell}: {sessions}"
        );
    }
    let table = get("/api/stats/table?format=csv&group=station").await;
    assert!(table.contains(",'@SUM(A1:A9),"), "station name: {table}");
    // No cell of either file starts a formula.
    for csv in [&sessions, &table] {
        for line in csv.trim_start_matches('\u{feff}').split("\r\n") {
            for cell in line.split(',') {
                let cell = cell.trim_start_matches('"');
                let formula = cell.starts_with(['=', '+', '@', '\t', '\r'])
                    || (cell.starts_with('-') && cell.parse::<f64>().is_err());
                assert!(!formula, "formula cell {cell:?} in {csv}");
            }
        }
    }
    t.server.shutdown().await;
}

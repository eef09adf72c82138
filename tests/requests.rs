//! The request cycle (点单 -> 制单/派单 -> 接单, issue 26 item 2): a center's service menu,
//! residents' requests at a station, an administrator turning them into a planned lecture
//! on a station, the station accepting it, a real RTMP lecture attaching to it and ending,
//! the request done and counted in `/api/stats/requests` (JSON and CSV). Scopes: another
//! station cannot accept the assignment, a center admin sees only its center's requests.
//! Phones: only with consent, in full only to administrators in scope, never in the log.
//! The catalog on SQLite and PostgreSQL; the station page and the dashboard in Chromium.

mod catalog_db;
mod common;

use std::time::Duration;

use feiyan::audience::now_ms;
use feiyan::catalog::{
    CatalogError, ItemKind, NewMenuItem, NewRequest, RequestGroup, RequestScope, RequestStatus,
    Scope,
};
use feiyan::ids::CenterId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::replays::{admin_token, lecture, station_rtmp};

const PHONE: &str = "13812345678";

async fn requests_by_the_rules(db: catalog_db::TestDb) {
    let catalog = &db.catalog;
    let here = catalog.add_station("中心", "所", "站").await.unwrap();
    let far = catalog.add_station("远中心", "所", "远站").await.unwrap();
    let card = catalog
        .station_by_channel(here.channel.as_str())
        .await
        .unwrap();
    let far_card = catalog
        .station_by_channel(far.channel.as_str())
        .await
        .unwrap();
    let center = CenterId(card.center.id);
    let item = catalog
        .add_menu_item(
            &NewMenuItem {
                center_id: center,
                kind: ItemKind::Lecture,
                title: "党史故事".into(),
                speaker: "王老师".into(),
                film_id: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    let far_item = catalog
        .add_menu_item(
            &NewMenuItem {
                center_id: CenterId(far_card.center.id),
                kind: ItemKind::Lecture,
                title: "别处的讲座".into(),
                speaker: String::new(),
                film_id: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(catalog.service_menu(center).await.unwrap().len(), 1);
    let ask = |menu_id: i64, phone: Option<&str>, consent: bool| NewRequest {
        menu_id,
        period: "下周末".into(),
        nickname: "李阿姨".into(),
        phone: phone.map(str::to_string),
        consent,
    };
    let station = here.station_id;
    let t0 = now_ms();
    match catalog
        .create_request(station, center, "dev-a", &ask(far_item.id, None, false), t0)
        .await
    {
        Err(CatalogError::NotFound(why)) => assert!(why.contains("not on this station's menu")),
        other => panic!("another center's item: {other:?}"),
    }
    assert!(matches!(
        catalog
            .create_request(
                station,
                center,
                "dev-a",
                &ask(item.id, Some(PHONE), false),
                t0
            )
            .await,
        Err(CatalogError::Invalid { field: "phone", .. })
    ));
    assert!(matches!(
        catalog
            .create_request(
                station,
                center,
                "dev-a",
                &ask(item.id, Some("12ab"), true),
                t0
            )
            .await,
        Err(CatalogError::Invalid { field: "phone", .. })
    ));
    let mut nameless = ask(item.id, None, false);
    nameless.nickname = "  ".into();
    assert!(matches!(
        catalog
            .create_request(station, center, "dev-a", &nameless, t0)
            .await,
        Err(CatalogError::Invalid {
            field: "nickname",
            ..
        })
    ));
    let first = catalog
        .create_request(
            station,
            center,
            "dev-a",
            &ask(item.id, Some(PHONE), true),
            t0,
        )
        .await
        .unwrap();
    assert_eq!(first.phone_masked.as_deref(), Some("138****5678"));
    for _ in 0..2 {
        catalog
            .create_request(station, center, "dev-a", &ask(item.id, None, false), t0)
            .await
            .unwrap();
    }
    match catalog
        .create_request(station, center, "dev-a", &ask(item.id, None, false), t0)
        .await
    {
        Err(CatalogError::Conflict(why)) => assert!(why.contains("at most 3"), "{why}"),
        other => panic!("a fourth open request: {other:?}"),
    }
    let second = catalog
        .create_request(station, center, "dev-b", &ask(item.id, None, false), t0)
        .await
        .unwrap();

    let (mine_a, counts) = catalog
        .scoped_requests(RequestScope::Center(center))
        .await
        .unwrap();
    assert_eq!(mine_a.len(), 4);
    assert_eq!((counts[0].waiting, counts[0].total), (4, 4));
    let (far_view, _) = catalog
        .scoped_requests(RequestScope::Center(CenterId(far_card.center.id)))
        .await
        .unwrap();
    assert!(far_view.is_empty(), "another center sees none");

    // Two requests become one planned lecture on the station; it attaches a session.
    let at = t0 + 10 * 60_000;
    let planned = catalog
        .schedule_requests(&[first.id, second.id], station, at, None, None, t0)
        .await
        .unwrap();
    let lecture = catalog.planned_item(planned, t0).await.unwrap();
    assert_eq!(lecture.title, "党史故事");
    assert_eq!(lecture.speaker.as_deref(), Some("王老师"));
    assert!(matches!(
        catalog
            .schedule_requests(&[first.id], station, at, None, None, t0)
            .await,
        Err(CatalogError::Conflict(_))
    ));
    let accepted = catalog.answer_request(first.id, None, t0).await.unwrap();
    assert_eq!(accepted.request.status, RequestStatus::Accepted);
    assert!(matches!(
        catalog.answer_request(second.id, Some(" "), t0).await,
        Err(CatalogError::Invalid {
            field: "reason",
            ..
        })
    ));
    let declined = catalog
        .answer_request(second.id, Some("场地维修"), t0)
        .await
        .unwrap();
    assert_eq!(declined.request.decline_reason.as_deref(), Some("场地维修"));

    // Opening a session near the item's time attaches it (in the background).
    let session = catalog_db::open_lecture(catalog, &here, at).await;
    let attached = common::wait_until(Duration::from_secs(10), || async {
        catalog.planned_item(planned, at).await.unwrap().session_id == Some(session.0)
    })
    .await;
    assert!(attached, "the session attached to the planned lecture");
    assert_eq!(catalog.settle_requests(at).await.unwrap(), 0, "still on");
    catalog.close_session(session, at + 60_000).await.unwrap();
    assert_eq!(catalog.settle_requests(at + 61_000).await.unwrap(), 1);
    assert_eq!(
        catalog.request(first.id).await.unwrap().request.status,
        RequestStatus::Done
    );

    // Declining the only request of a lecture calls the lecture off.
    let lone = catalog
        .create_request(station, center, "dev-c", &ask(item.id, None, false), t0)
        .await
        .unwrap();
    let lone_item = catalog
        .schedule_requests(&[lone.id], station, at + 86_400_000, None, None, t0)
        .await
        .unwrap();
    catalog
        .answer_request(lone.id, Some("人手不足"), t0)
        .await
        .unwrap();
    assert_eq!(
        catalog.planned_item(lone_item, t0).await.unwrap().status,
        feiyan::catalog::ItemStatus::Cancelled
    );
    assert_eq!(
        catalog.planned_item(planned, at).await.unwrap().session_id,
        Some(session.0),
        "the accepted one's lecture stays"
    );

    // An administrator calls off a scheduled lecture: its request waits again.
    let again = catalog
        .create_request(station, center, "dev-d", &ask(item.id, None, false), t0)
        .await
        .unwrap();
    let called_off = catalog
        .schedule_requests(&[again.id], station, at + 2 * 86_400_000, None, None, t0)
        .await
        .unwrap();
    catalog.cancel_item(called_off, t0).await.unwrap();
    catalog.settle_requests(t0).await.unwrap();
    let waiting = catalog.request(again.id).await.unwrap();
    assert_eq!(waiting.request.status, RequestStatus::Requested);
    assert_eq!(waiting.request.planned_item_id, None);

    let rows = catalog
        .request_stats(
            RequestScope::City,
            RequestGroup::Station,
            0,
            i64::MAX,
            at + 61_000,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].received, rows[0].fulfilled, rows[0].declined),
        (6, 1, 2)
    );
    // Session started 10 minutes after the request: 0.0 days, one decimal.
    assert_eq!(rows[0].median_days, Some(0.0));
    // By menu item (a lecture topic or a film): the one item, its title.
    let by_item = catalog
        .request_stats(
            RequestScope::City,
            RequestGroup::Item,
            0,
            i64::MAX,
            at + 61_000,
        )
        .await
        .unwrap();
    assert_eq!(by_item.len(), 1, "{by_item:?}");
    assert_eq!(
        (
            by_item[0].id,
            by_item[0].name.as_str(),
            by_item[0].received,
            by_item[0].fulfilled,
            by_item[0].declined
        ),
        (item.id, "党史故事", 6, 1, 2)
    );

    // The phone stays 90 days after the request closed, then goes.
    assert_eq!(catalog.forget_phones(at + 61_000).await.unwrap(), 0);
    assert_eq!(
        catalog.request(first.id).await.unwrap().phone.as_deref(),
        Some(PHONE)
    );
    assert_eq!(
        catalog
            .forget_phones(at + 61_000 + feiyan::catalog::PHONE_KEEP_MS)
            .await
            .unwrap(),
        1
    );
    assert_eq!(catalog.request(first.id).await.unwrap().phone, None);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_requests_by_the_rules() {
    requests_by_the_rules(catalog_db::sqlite().await).await;
}

#[tokio::test]
async fn postgres_requests_by_the_rules() {
    requests_by_the_rules(catalog_db::postgres().await).await;
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
    method: reqwest::Method,
    url: String,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_cycle_over_http() {
    // Every log line, to check no phone number reaches the log (one process per test).
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,feiyan=trace,rtc=warn,rtc_ice=warn,rtc_dtls=off")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();
    let base = t.base.clone();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let (a, b) = (device(&base, &channel).await, device(&base, &channel).await);

    let (status, menu) = send(
        get.clone(),
        format!("{base}/api/stations/{channel}/menu"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{menu}");
    let menu: Value = serde_json::from_str(&menu).unwrap();
    let center = menu["center"]["id"].as_i64().unwrap();
    assert_eq!(menu["items"], json!([]));

    // The center's admin keeps the menu; another center's admin and a station cannot.
    let center_admin = admin_token(&t, "center-admin", Scope::Center(CenterId(center))).await;
    let elsewhere = t
        .server
        .catalog
        .add_station("别的中心", "别的所", "远站")
        .await
        .unwrap();
    let far_card = t
        .server
        .catalog
        .station_by_channel(elsewhere.channel.as_str())
        .await
        .unwrap();
    let far_admin = admin_token(&t, "far-admin", Scope::Center(CenterId(far_card.center.id))).await;
    let own_op = admin_token(&t, "own-op", Scope::Station(t.station.station_id)).await;
    let near = t
        .server
        .catalog
        .add_station("测试中心", "测试所", "邻站")
        .await
        .unwrap();
    let near_op = admin_token(&t, "near-op", Scope::Station(near.station_id)).await;
    let city = admin_token(&t, "city", Scope::City).await;
    let lecture_item =
        json!({"center_id": center, "kind": "lecture", "title": "党史故事", "speaker": "王老师"});
    let (status, why) = send(
        post.clone(),
        format!("{base}/api/admin/menu"),
        None,
        Some(&far_admin),
        Some(lecture_item.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{why}");
    let (status, item) = send(
        post.clone(),
        format!("{base}/api/admin/menu"),
        None,
        Some(&center_admin),
        Some(lecture_item),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let item: Value = serde_json::from_str(&item).unwrap();
    let menu_id = item["id"].as_i64().unwrap();
    let (status, far_item) = send(
        post.clone(),
        format!("{base}/api/admin/menu"),
        None,
        Some(&far_admin),
        Some(json!({"kind": "lecture", "title": "远处"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{far_item}");
    let far_menu_id = serde_json::from_str::<Value>(&far_item).unwrap()["id"]
        .as_i64()
        .unwrap();

    // Bad requests, each with a reason.
    let requests = format!("{base}/api/stations/{channel}/requests");
    for (body, status, words) in [
        (
            json!({"menu_id": far_menu_id, "nickname": "李"}),
            StatusCode::NOT_FOUND,
            "not on this station's menu",
        ),
        (
            json!({"menu_id": menu_id}),
            StatusCode::BAD_REQUEST,
            "nickname",
        ),
        (
            json!({"menu_id": menu_id, "nickname": "李", "phone": PHONE}),
            StatusCode::BAD_REQUEST,
            "consent",
        ),
        (
            json!({"menu_id": menu_id, "nickname": "李", "phone": "12-ab", "consent": true}),
            StatusCode::BAD_REQUEST,
            "phone",
        ),
        (
            json!({"menu_id": menu_id, "nickname": "李", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ] {
        let (got, why) = send(
            post.clone(),
            requests.clone(),
            Some(&a),
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body}: {why}");
        assert!(why.contains(words), "{body}: {why}");
    }
    let (got, why) = send(
        post.clone(),
        requests.clone(),
        None,
        None,
        Some(json!({"menu_id": menu_id, "nickname": "李"})),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert!(why.contains("no device id"), "{why}");

    // Two residents ask; one leaves a phone with consent.
    let (got, first) = send(post.clone(), requests.clone(), Some(&a), None, Some(json!({"menu_id": menu_id, "nickname": "李阿姨", "period": "周六上午", "phone": PHONE, "consent": true}))).await;
    assert_eq!(got, StatusCode::CREATED, "{first}");
    assert!(
        !first.contains(PHONE) && first.contains("138****5678"),
        "{first}"
    );
    let first_id = serde_json::from_str::<Value>(&first).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (got, second) = send(
        post.clone(),
        requests.clone(),
        Some(&b),
        None,
        Some(json!({"menu_id": menu_id, "nickname": "张师傅"})),
    )
    .await;
    assert_eq!(got, StatusCode::CREATED, "{second}");
    let second_id = serde_json::from_str::<Value>(&second).unwrap()["id"]
        .as_i64()
        .unwrap();

    // Admins: the center's sees both with the phone; the other center's sees none.
    let (got, listed) = send(
        get.clone(),
        format!("{base}/api/admin/requests"),
        None,
        Some(&center_admin),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["requests"].as_array().unwrap().len(), 2);
    assert!(
        listed.to_string().contains(PHONE),
        "admins in scope see the phone"
    );
    assert_eq!(listed["counts"][0]["total"], 2);
    assert_eq!(listed["counts"][0]["waiting"], 2);
    let (_, far_list) = send(
        get.clone(),
        format!("{base}/api/admin/requests"),
        None,
        Some(&far_admin),
        None,
    )
    .await;
    let far_list: Value = serde_json::from_str(&far_list).unwrap();
    assert_eq!(
        far_list["requests"],
        json!([]),
        "another center's admin sees none"
    );
    let (_, csv) = send(
        get.clone(),
        format!("{base}/api/admin/requests?format=csv"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert!(csv.contains("138****5678") && !csv.contains(PHONE), "{csv}");

    // 制单/派单: both become one lecture on the station in ten minutes.
    let at = chrono::DateTime::from_timestamp_millis(now_ms() + 10 * 60_000)
        .unwrap()
        .to_rfc3339();
    let schedule = json!({"request_ids": [first_id, second_id], "station": channel, "at": at});
    let (got, why) = send(
        post.clone(),
        format!("{base}/api/admin/requests/schedule"),
        None,
        Some(&own_op),
        Some(schedule.clone()),
    )
    .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{why}");
    let (got, why) = send(
        post.clone(),
        format!("{base}/api/admin/requests/schedule"),
        None,
        Some(&far_admin),
        Some(schedule.clone()),
    )
    .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{why}");
    let (got, scheduled) = send(
        post.clone(),
        format!("{base}/api/admin/requests/schedule"),
        None,
        Some(&center_admin),
        Some(schedule),
    )
    .await;
    assert_eq!(got, StatusCode::CREATED, "{scheduled}");
    let planned = serde_json::from_str::<Value>(&scheduled).unwrap()["planned_item"]["id"]
        .as_i64()
        .unwrap();
    let (_, page) = send(
        get.clone(),
        format!("{base}/api/stations/{channel}/page"),
        None,
        None,
        None,
    )
    .await;
    let page: Value = serde_json::from_str(&page).unwrap();
    assert!(
        page["upcoming"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == planned && i["title"] == "党史故事"),
        "{page}"
    );

    // 接单: another station's operator cannot; the station's own accepts one, declines one.
    let (got, why) = send(
        post.clone(),
        format!("{base}/api/admin/requests/{first_id}/accept"),
        None,
        Some(&near_op),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{why}");
    let (got, why) = send(
        post.clone(),
        format!("{base}/api/admin/requests/{first_id}/accept"),
        None,
        Some(&own_op),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{why}");
    let (got, why) = send(
        post.clone(),
        format!("{base}/api/admin/requests/{second_id}/decline"),
        None,
        Some(&own_op),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        got,
        StatusCode::BAD_REQUEST,
        "a decline needs a reason: {why}"
    );
    let (got, why) = send(
        post.clone(),
        format!("{base}/api/admin/requests/{second_id}/decline"),
        None,
        Some(&own_op),
        Some(json!({"reason": "那天场地维修"})),
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{why}");

    // The resident sees the state of theirs (the phone masked).
    let mine = format!("{base}/api/stations/{channel}/requests/mine");
    let (_, seen) = send(get.clone(), mine.clone(), Some(&a), None, None).await;
    assert!(!seen.contains(PHONE), "{seen}");
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(seen["requests"][0]["status"], "accepted", "{seen}");
    let (_, seen_b) = send(get.clone(), mine.clone(), Some(&b), None, None).await;
    let seen_b: Value = serde_json::from_str(&seen_b).unwrap();
    assert_eq!(seen_b["requests"][0]["status"], "declined");
    assert_eq!(seen_b["requests"][0]["decline_reason"], "那天场地维修");

    // 接单 done: a real RTMP lecture on the station attaches to the item and ends.
    let url = station_rtmp(&t, "");
    let media = tempfile::tempdir().unwrap();
    let dir = media.path().to_path_buf();
    let push = tokio::spawn(async move { lecture(&url, 4, &dir).await });
    let session = common::wait_live(&base, &channel).await.0;
    push.await.unwrap();
    let done = common::wait_until(Duration::from_secs(20), || {
        let (mine, a) = (mine.clone(), a.clone());
        async move {
            let (_, seen) = send(reqwest::Method::GET, mine, Some(&a), None, None).await;
            let seen: Value = serde_json::from_str(&seen).unwrap();
            seen["requests"][0]["status"] == "done"
        }
    })
    .await;
    assert!(
        done,
        "the request is done once its lecture (session {session}) ended"
    );
    let item: Value = reqwest::get(format!("{base}/api/items/{planned}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["session_id"], session, "{item}");

    // The figures, JSON and CSV; a station operator sees its station's.
    let (got, rows) = send(
        get.clone(),
        format!("{base}/api/stats/requests?group=station"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{rows}");
    let rows: Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(rows[0]["name"], "测试站", "{rows}");
    assert_eq!(
        (
            rows[0]["received"].as_i64(),
            rows[0]["fulfilled"].as_i64(),
            rows[0]["declined"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert!(rows[0]["median_days"].as_f64().is_some(), "{rows}");
    let (_, csv) = send(
        get.clone(),
        format!("{base}/api/stats/requests?group=center&format=csv"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert!(
        csv.starts_with('\u{feff}') && csv.contains("中位天数") && csv.contains("测试中心"),
        "{csv}"
    );
    let (_, far_rows) = send(
        get.clone(),
        format!("{base}/api/stats/requests"),
        None,
        Some(&near_op),
        None,
    )
    .await;
    assert_eq!(
        far_rows, "[]",
        "another station's operator counts none of these"
    );
    let (got, why) = send(
        get.clone(),
        format!("{base}/api/stats/requests?group=weather"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert!(why.contains("group"), "{why}");

    // No public answer carries the phone.
    for url in [
        format!("{base}/api/stations/{channel}/menu"),
        format!("{base}/api/stations/{channel}/page"),
        format!("{base}/api/items/{planned}"),
        mine.clone(),
    ] {
        let (_, body) = send(get.clone(), url.clone(), Some(&a), None, None).await;
        assert!(
            !body.contains(PHONE) && !body.contains("12345678"),
            "{url}: {body}"
        );
    }
    // The device asks for its phone to go: another device cannot, it can.
    let phone_url = format!("{base}/api/stations/{channel}/requests/{first_id}/phone");
    let (got, _) = send(
        reqwest::Method::DELETE,
        phone_url.clone(),
        Some(&b),
        None,
        None,
    )
    .await;
    assert_eq!(got, StatusCode::NOT_FOUND, "another device's request");
    let (got, why) = send(reqwest::Method::DELETE, phone_url, Some(&a), None, None).await;
    assert_eq!(got, StatusCode::OK, "{why}");
    let (_, listed) = send(
        get.clone(),
        format!("{base}/api/admin/requests"),
        None,
        Some(&city),
        None,
    )
    .await;
    assert!(!listed.contains(PHONE), "deleted: {listed}");
    t.server.shutdown().await;
    let log = captured.text();
    assert!(
        log.contains("session attached to its planned item"),
        "the log was captured:\n{log}"
    );
    assert!(
        !log.contains("12345678"),
        "a phone number in the log:\n{log}"
    );
}

/// Every log line the server writes, as text.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
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

/// Polls `js` in `page` until `ok` accepts its value, for at most 20 s.
async fn wait_page(
    page: &common::cdp::Page,
    what: &str,
    js: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = page
            .evaluate(js)
            .await
            .unwrap_or_else(|e| json!({ "error": e.0 }));
        if ok(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The station page in Chromium: the menu, the form's refusal of a phone without consent,
/// a request sent with consent, and "my requests" showing its state; no full phone on the
/// page and no CSP violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_requests_from_the_station_page() {
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();
    let card = t.server.catalog.station_by_channel(&channel).await.unwrap();
    t.server
        .catalog
        .add_menu_item(
            &NewMenuItem {
                center_id: CenterId(card.center.id),
                kind: ItemKind::Lecture,
                title: "党史故事".into(),
                speaker: "王老师".into(),
                film_id: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    let tab = common::pages::Tab::open("station-request").await;
    let page = &tab.page;
    page.navigate(&format!("{}/s/{channel}", t.base))
        .await
        .expect("station page loads");
    let options = wait_page(
        page,
        "the menu",
        "Array.from(document.querySelectorAll('#request-item option')).map(o => o.textContent)",
        |v| v.as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    assert_eq!(options[1], "【理论宣讲】党史故事（王老师）");
    let fill = format!(
        "(() => {{ const s = document.getElementById('request-item'); s.selectedIndex = 1; \
         document.getElementById('request-nickname').value = '李阿姨'; \
         document.getElementById('request-period').value = '周六上午'; \
         document.getElementById('request-phone').value = '{PHONE}'; \
         document.getElementById('request-submit').click(); return true; }})()"
    );
    page.evaluate(&fill).await.unwrap();
    let note = page
        .evaluate("document.getElementById('request-note').textContent")
        .await
        .unwrap();
    assert!(
        note.as_str().unwrap_or_default().contains("勾选同意"),
        "{note}"
    );
    page.evaluate(
        "document.getElementById('request-consent').checked = true; \
         document.getElementById('request-submit').click(); true",
    )
    .await
    .unwrap();
    let mine = wait_page(
        page,
        "my request listed",
        "Array.from(document.querySelectorAll('#request-mine li')).map(li => li.textContent)",
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    let row = mine[0].as_str().unwrap();
    assert!(
        row.contains("党史故事") && row.contains("已提交，等待安排"),
        "{row}"
    );
    let html = page
        .evaluate("document.getElementById('station-interaction').innerHTML")
        .await
        .unwrap();
    assert!(!html.to_string().contains("12345678"), "{html}");
    let (requests, _) = t
        .server
        .catalog
        .scoped_requests(RequestScope::City)
        .await
        .unwrap();
    assert_eq!(
        requests[0].phone.as_deref(),
        Some(PHONE),
        "kept with consent"
    );
    common::pages::assert_no_csp_violation(page, "the station page's request form").await;

    // The dashboard: the center's admin sees it with the phone, ticks it and schedules it.
    let center = Scope::Center(CenterId(card.center.id));
    t.server
        .catalog
        .add_account("center-admin", "secret-password", center)
        .await
        .unwrap();
    page.navigate(&format!("{}/admin", t.base))
        .await
        .expect("dashboard loads");
    page.evaluate(
        "(() => { document.getElementById('user').value = 'center-admin'; \
         document.getElementById('pass').value = 'secret-password'; \
         document.querySelector('#loginForm button').click(); return true; })()",
    )
    .await
    .unwrap();
    let listed = wait_page(
        page,
        "the dashboard's requests",
        "document.getElementById('requestList').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("李阿姨")),
    )
    .await;
    let listed = listed.as_str().unwrap();
    assert!(
        listed.contains(PHONE) && listed.contains("待安排"),
        "{listed}"
    );
    let at = chrono::DateTime::from_timestamp_millis(now_ms() + 8 * 3_600_000 + 86_400_000)
        .unwrap()
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    page.evaluate(&format!(
        "(() => {{ document.querySelector('#requestList input[data-request]').checked = true; \
         document.getElementById('requestStation').value = '{channel}'; \
         document.getElementById('requestAt').value = '{at}'; \
         document.querySelector('#requestForm button').click(); return true; }})()"
    ))
    .await
    .unwrap();
    wait_page(
        page,
        "the request scheduled from the dashboard",
        "document.getElementById('requestList').textContent + document.getElementById('error').textContent",
        |v| v.as_str().is_some_and(|s| s.contains("待接单")),
    )
    .await;
    let item = t
        .server
        .catalog
        .scoped_requests(RequestScope::City)
        .await
        .unwrap()
        .0[0]
        .request
        .planned_item_id
        .expect("a planned item");
    let lecture = t.server.catalog.planned_item(item, now_ms()).await.unwrap();
    assert_eq!(lecture.title, "党史故事");
    assert_eq!(lecture.station.channel, channel);
    common::pages::assert_no_csp_violation(page, "the dashboard's requests").await;
    drop(tab);
    t.server.shutdown().await;
}

//! Issue 25, the catalog and API half: with a demo city (10 centers, 2,100 stations) on a
//! real server, the directory drills down and searches; a screening and a planned lecture
//! for tomorrow appear in `/api/programme` and in the station's calendar feed (parsed
//! with the `ical` crate), the UID stays and the SEQUENCE grows across a reschedule, a
//! cancellation is `STATUS:CANCELLED`; a lecture published over WHIP within the hour
//! attaches to its planned item; bad programme parameters are 400 naming the parameter,
//! unknown items, channels and centers 404. On SQLite and on PostgreSQL.

mod catalog_db;
mod common;

use std::io::BufReader;
use std::time::{Duration, Instant};

use feiyan::app::{RunningServer, start};
use feiyan::catalog::{DemoSpec, Scope, shanghai_day, shanghai_midnight_ms};
use feiyan::client::{PublisherOptions, WhipPublisher};
use feiyan::config::Config;
use feiyan::ids::StationId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{test_media, wait_until};

/// A server on loopback over the catalog at `url`, with nothing in it yet.
async fn server(url: &str, dir: &std::path::Path) -> RunningServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.webrtc.udp_bind = "127.0.0.1:0".parse().unwrap();
    config.webrtc.advertised_ips = vec!["127.0.0.1".parse().unwrap()];
    config.ingest.rtmp_listen = None;
    config.catalog.database_url = url.to_string();
    config.hls.reconnect_grace_secs = 0;
    config.recording.dir = dir.join("recordings");
    config.validate().expect("test config is valid");
    start(config).await.expect("server starts")
}

async fn get(url: &str) -> (StatusCode, Value) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn get_ok(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, StatusCode::OK, "GET {url}: {body}");
    body
}

async fn text(url: &str) -> (StatusCode, String) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

async fn send(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn login(base: &str, user: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": user, "password": "secret-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().expect("logged in").to_string()
}

/// The events of an iCalendar text, each as its (name, value) properties, after checking
/// the text's lines: CRLF endings, at most 75 octets.
fn events(ics: &str) -> Vec<Vec<(String, String)>> {
    for line in ics.split_inclusive('\n') {
        assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
        assert!(line.len() - 2 <= 75, "line over 75 octets: {line:?}");
    }
    let mut parser = ical::IcalParser::new(BufReader::new(ics.as_bytes()));
    let calendar = parser
        .next()
        .expect("one calendar")
        .expect("a valid calendar");
    assert!(parser.next().is_none(), "only one calendar");
    let version = calendar
        .properties
        .iter()
        .find(|p| p.name == "VERSION")
        .and_then(|p| p.value.clone());
    assert_eq!(version.as_deref(), Some("2.0"));
    calendar
        .events
        .into_iter()
        .map(|e| {
            e.properties
                .into_iter()
                .map(|p| (p.name, p.value.unwrap_or_default()))
                .collect()
        })
        .collect()
}

fn prop<'a>(event: &'a [(String, String)], name: &str) -> &'a str {
    event
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("event without {name}: {event:?}"))
}

fn event_for<'a>(events: &'a [Vec<(String, String)>], uid: &str) -> &'a [(String, String)] {
    events
        .iter()
        .find(|e| prop(e, "UID") == uid)
        .unwrap_or_else(|| panic!("no event {uid} in {events:?}"))
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

async fn portal(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&url, dir.path()).await;
    let base = server.base_url();
    let catalog = server.catalog.clone();

    // A demo city, as `feiyan demo-data --stations 2100 --days 1` makes it.
    let t = Instant::now();
    catalog
        .build_demo(
            &DemoSpec {
                centers: 10,
                institutes: 105,
                stations: 2100,
                days: 1,
                seed: 1,
                audience: 1.0,
            },
            |_| {},
        )
        .await
        .expect("demo city");
    eprintln!("demo city in {:.1} s", t.elapsed().as_secs_f64());

    // The directory: 10 centers, every station under one, down to a station's page.
    let dir_all = get_ok(&format!("{base}/api/directory")).await;
    let centers = dir_all["centers"].as_array().unwrap();
    assert_eq!(centers.len(), 10, "{dir_all}");
    let total: i64 = centers
        .iter()
        .map(|c| c["stations"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2100);
    let center_id = centers[3]["id"].as_i64().unwrap();
    let center = get_ok(&format!("{base}/api/directory?center={center_id}")).await;
    assert_eq!(center["center"]["id"], center_id);
    assert_eq!(center["center"]["name"], centers[3]["name"]);
    let institutes = center["institutes"].as_array().unwrap();
    assert!(!institutes.is_empty());
    let counted: usize = institutes
        .iter()
        .map(|i| i["stations"].as_array().unwrap().len())
        .sum();
    assert_eq!(counted as i64, centers[3]["stations"].as_i64().unwrap());
    let institute = &institutes[1];
    let first = &institute["stations"][0];
    let page = get_ok(&format!(
        "{base}/api/stations/{}/page",
        first["channel"].as_str().unwrap()
    ))
    .await;
    assert_eq!(page["station"]["id"], first["id"]);
    assert_eq!(page["station"]["institute"]["id"], institute["id"]);
    assert_eq!(page["station"]["center"]["id"], center_id);
    assert!(page["live"].is_null());

    // Search by part of a name (Chinese): a station with a name of its own.
    let placed = catalog
        .add_station(
            centers[3]["name"].as_str().unwrap(),
            institute["name"].as_str().unwrap(),
            "桃花坞社区新时代文明实践站",
        )
        .await
        .unwrap();
    let channel = placed.channel.to_string();
    let hits = get_ok(&format!("{base}/api/directory?q=桃花坞")).await;
    let hits = hits["stations"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["channel"], channel);
    assert_eq!(hits[0]["institute"], institute["name"]);
    assert_eq!(hits[0]["center"], centers[3]["name"]);
    let many = get_ok(&format!("{base}/api/directory?q=第17社区")).await;
    let many = many["stations"].as_array().unwrap();
    assert!(!many.is_empty() && many.len() <= 50, "{}", many.len());
    assert!(
        many.iter()
            .all(|s| s["name"].as_str().unwrap().contains("第17社区"))
    );
    assert_eq!(
        get(&format!("{base}/api/directory?q=%25")).await.1["stations"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "% is taken literally"
    );

    // Accounts: a city administrator, the station's operator, another station's.
    catalog
        .add_account("city", "secret-password", Scope::City)
        .await
        .unwrap();
    catalog
        .add_account("op", "secret-password", Scope::Station(placed.station_id))
        .await
        .unwrap();
    catalog
        .add_account(
            "op-other",
            "secret-password",
            Scope::Station(StationId(first["id"].as_i64().unwrap())),
        )
        .await
        .unwrap();
    let city = login(&base, "city").await;
    let op = login(&base, "op").await;
    let other = login(&base, "op-other").await;

    // Tomorrow (Asia/Shanghai): a film class at 14:00 and a lecture at 19:00.
    let now = feiyan::audience::now_ms();
    let tomorrow = shanghai_day(now) + chrono::Duration::days(1);
    let midnight = shanghai_midnight_ms(tomorrow);
    let film_at = midnight + 14 * 3_600_000;
    let lecture_at = midnight + 19 * 3_600_000;
    let film = catalog.films().await.unwrap()[0].clone();
    let topic = catalog.topics().await.unwrap()[0].clone();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/screenings"))
        .bearer_auth(&placed.stream_key)
        .json(&json!({"channel": channel, "film_id": film.id, "at": rfc3339(film_at)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let screening: Value = r.json().await.unwrap();
    let screening_id = screening["id"].as_i64().unwrap();
    let lecture_body = json!({
        "channel": channel,
        "title": "学习贯彻全会精神；第一讲, 分组讨论",
        "speaker": "张老师",
        "topic_id": topic.id,
        "at": rfc3339(lecture_at),
    });
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{base}/api/lectures"),
        &other,
        Some(lecture_body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, lecture) = send(
        reqwest::Method::POST,
        &format!("{base}/api/lectures"),
        &op,
        Some(lecture_body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{lecture}");
    let lecture_id = lecture["id"].as_i64().unwrap();
    assert_eq!(lecture["kind"], "lecture");
    assert_eq!(lecture["status"], "scheduled");
    assert_eq!(lecture["speaker"], "张老师");
    assert_eq!(lecture["topic"], topic.name.as_str());
    assert_eq!(lecture["station"]["channel"], channel);
    assert_eq!(lecture["url"], format!("/e/{lecture_id}"));
    assert!(lecture["session_id"].is_null());

    // The screening is the same item under its old and its new URL.
    let item = get_ok(&format!("{base}/api/items/{screening_id}")).await;
    assert_eq!(item["kind"], "film_class");
    assert_eq!(item["film"]["id"], film.id);
    assert_eq!(item["title"], film.name.as_str());
    assert_eq!(item["status"], "scheduled");
    let old = get_ok(&format!("{base}/api/screenings/{screening_id}")).await;
    assert_eq!(old["status"], "scheduled");
    assert_eq!(old["film_id"], film.id);

    // The programme: the station's day, its center, the city, by kind.
    let day = tomorrow.format("%Y-%m-%d").to_string();
    let programme = get_ok(&format!(
        "{base}/api/programme?level=station&id={channel}&from={day}&to={day}"
    ))
    .await;
    assert_eq!(programme["from"], day.as_str());
    assert_eq!(programme["to"], day.as_str());
    let ids: Vec<i64> = programme["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![screening_id, lecture_id]);
    let by_id = get_ok(&format!(
        "{base}/api/programme?level=station&id={}&from={day}&to={day}",
        placed.station_id.0
    ))
    .await;
    assert_eq!(by_id["items"], programme["items"]);
    for (level, id) in [
        ("center", center_id.to_string()),
        ("institute", institute["id"].to_string()),
        ("city", String::new()),
    ] {
        let p = get_ok(&format!(
            "{base}/api/programme?level={level}&id={id}&from={day}&to={day}&kind=lecture"
        ))
        .await;
        let items = p["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{level}: {p}");
        assert_eq!(items[0]["id"], lecture_id);
    }
    let page = get_ok(&format!("{base}/api/stations/{channel}/page")).await;
    let upcoming: Vec<i64> = page["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(upcoming, vec![screening_id, lecture_id]);

    // The station's calendar: both events, UTC times, UIDs by item id.
    let feed = format!("{base}/s/{channel}.ics");
    let (status, ics) = text(&feed).await;
    assert_eq!(status, StatusCode::OK, "{ics}");
    let evs = events(&ics);
    assert_eq!(evs.len(), 2);
    let lecture_uid = format!("item-{lecture_id}@127.0.0.1");
    let ev = event_for(&evs, &lecture_uid);
    assert_eq!(prop(ev, "DTSTART"), utc(lecture_at));
    assert_eq!(prop(ev, "SEQUENCE"), "0");
    assert_eq!(prop(ev, "STATUS"), "CONFIRMED");
    // TEXT escaping (RFC 5545 3.3.11): the parser leaves it; undone here.
    let summary = prop(ev, "SUMMARY").replace("\\,", ",").replace("\\;", ";");
    assert_eq!(summary, "学习贯彻全会精神；第一讲, 分组讨论");
    assert!(
        ics.replace("\r\n ", "").contains("第一讲\\, 分组讨论"),
        "the comma is escaped"
    );
    assert!(prop(ev, "URL").ends_with(&format!("/e/{lecture_id}")));
    assert!(prop(ev, "DTSTAMP").ends_with('Z'));
    let film_ev = event_for(&evs, &format!("item-{screening_id}@127.0.0.1"));
    assert_eq!(prop(film_ev, "DTSTART"), utc(film_at));

    // A reschedule: same UID, higher SEQUENCE, the new time.
    let (status, moved) = send(
        reqwest::Method::PATCH,
        &format!("{base}/api/items/{lecture_id}"),
        &city,
        Some(json!({"at": rfc3339(lecture_at + 3_600_000)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let evs = events(&text(&feed).await.1);
    let ev = event_for(&evs, &lecture_uid);
    assert_eq!(prop(ev, "DTSTART"), utc(lecture_at + 3_600_000));
    assert_eq!(prop(ev, "SEQUENCE"), "1");
    let one = events(&text(&format!("{base}/e/{lecture_id}.ics")).await.1);
    assert_eq!(one.len(), 1);
    assert_eq!(prop(&one[0], "UID"), lecture_uid);
    let (status, center_ics) = text(&format!("{base}/c/{center_id}.ics")).await;
    assert_eq!(status, StatusCode::OK);
    event_for(&events(&center_ics), &lecture_uid);

    // Cancelled: STATUS:CANCELLED, SEQUENCE higher again, out of the upcoming list.
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{base}/api/items/{lecture_id}/cancel"),
        &other,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, cancelled) = send(
        reqwest::Method::POST,
        &format!("{base}/api/items/{lecture_id}/cancel"),
        &op,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let evs = events(&text(&feed).await.1);
    let ev = event_for(&evs, &lecture_uid);
    assert_eq!(prop(ev, "STATUS"), "CANCELLED");
    assert_eq!(prop(ev, "SEQUENCE"), "2");
    let page = get_ok(&format!("{base}/api/stations/{channel}/page")).await;
    assert_eq!(page["upcoming"].as_array().unwrap().len(), 1);

    // A lecture planned 20 minutes from now; the station goes live over WHIP now.
    let (status, soon) = send(
        reqwest::Method::POST,
        &format!("{base}/api/lectures"),
        &city,
        Some(
            json!({"channel": channel, "title": "冬季防火安全讲座", "speaker": "李队长",
                    "at": rfc3339(now + 20 * 60_000)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{soon}");
    let soon_id = soon["id"].as_i64().unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/{channel}"),
        Some(&placed.stream_key),
        test_media(media_dir.path()).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let item_url = format!("{base}/api/items/{soon_id}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            get_ok(&item_url).await["status"] == "live"
        })
        .await,
        "the planned lecture did not attach to the live session"
    );
    let live_item = get_ok(&item_url).await;
    let session = live_item["session_id"].as_i64().expect("session attached");
    let page = get_ok(&format!("{base}/api/stations/{channel}/page")).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            get_ok(&format!("{base}/api/stations/{channel}/page")).await["live"]["session_id"]
                == session
        })
        .await,
        "{page}"
    );
    let page = get_ok(&format!("{base}/api/stations/{channel}/page")).await;
    assert_eq!(page["live"]["item_id"], soon_id);
    assert!(page["live"]["live_viewers"].is_i64());
    let info = catalog.session_info(session).await.unwrap().unwrap();
    assert_eq!(info.speaker, "李队长");
    assert_eq!(info.title, "冬季防火安全讲座");
    publisher.stop().await.expect("publisher stops");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            get_ok(&item_url).await["status"] == "ended"
        })
        .await,
        "the item did not end with its session"
    );
    let page = get_ok(&format!("{base}/api/stations/{channel}/page")).await;
    let recent = page["recent"].as_array().unwrap();
    assert_eq!(recent[0]["session_id"], session, "{page}");
    assert_eq!(recent[0]["item_id"], soon_id);

    // Bad input: 400 naming the parameter; unknown things 404.
    for (query, parameter) in [
        ("level=town", "level"),
        ("level=center&id=abc", "id"),
        ("level=center", "id"),
        ("from=2026-13-01", "from"),
        ("from=2026-12-08&to=2026-12-07", "from"),
        ("from=2026-01-01&to=2027-01-02", "to"),
        ("kind=concert", "kind"),
    ] {
        let (status, body) = get(&format!("{base}/api/programme?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(parameter),
            "{query}: {message:?} does not name {parameter}"
        );
    }
    let (status, _) = get(&format!(
        "{base}/api/programme?from=2026-01-01&to=2026-12-31"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "366 days is allowed");
    for url in [
        format!("{base}/api/programme?level=center&id=999999"),
        format!("{base}/api/programme?level=station&id=st-999999"),
        format!("{base}/api/items/999999"),
        format!("{base}/api/stations/st-999999/page"),
        format!("{base}/api/directory?center=999999"),
    ] {
        let (status, body) = get(&url).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{url}: {body}");
        assert!(body["error"].is_string(), "{url}: {body}");
    }
    for url in [
        format!("{base}/s/st-999999.ics"),
        format!("{base}/c/999999.ics"),
        format!("{base}/e/999999.ics"),
    ] {
        assert_eq!(text(&url).await.0, StatusCode::NOT_FOUND, "{url}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_portal() {
    let dir = tempfile::tempdir().unwrap();
    portal(format!("sqlite://{}/feiyan.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_portal() {
    let db = catalog_db::postgres().await;
    portal(db.url.clone()).await;
    db.finish().await;
}

/// Migrating a catalog that has screenings: they become film-class items with their ids,
/// and new items (and screenings) are numbered after them.
async fn screenings_move_with_their_ids(url: &str, postgres: bool) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    let mut before = if postgres {
        sqlx::migrate!("migrations/postgres")
    } else {
        sqlx::migrate!("migrations/sqlite")
    };
    let name = if postgres {
        "0015_planned_items.sql"
    } else {
        "0014_planned_items.sql"
    };
    let version: i64 = name[..4].parse().unwrap();
    before.migrations = std::borrow::Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    );
    before
        .run(&pool)
        .await
        .expect("migrations before planned items");
    for sql in [
        "INSERT INTO centers (id, name) VALUES (1, 'c')",
        "INSERT INTO institutes (id, center_id, name) VALUES (1, 1, 'i')",
        "INSERT INTO stations (id, institute_id, name, stream_key_hash, created_at) \
         VALUES (1, 1, 's', 'x', 0)",
        "INSERT INTO channels (name, station_id) VALUES ('st-1', 1)",
        "INSERT INTO films (id, title) VALUES (1, '长津湖')",
        "INSERT INTO screenings (id, station_id, film_id, starts_at, status, note, created_at) \
         VALUES (41, 1, 1, 1900000000000, 'scheduled', '', 5)",
        "INSERT INTO screenings (id, station_id, film_id, starts_at, status, note, created_at) \
         VALUES (42, 1, 1, 1800000000000, 'missed', 'no server', 5)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    pool.close().await;
    let catalog = feiyan::catalog::Catalog::connect(url)
        .await
        .expect("the rest of the migrations");
    let now = feiyan::audience::now_ms();
    let s = catalog
        .screening(feiyan::ids::ScreeningId(41))
        .await
        .unwrap();
    assert_eq!(s.starts_at_ms, 1_900_000_000_000);
    let item = catalog.planned_item(42, now).await.unwrap();
    assert_eq!(item.kind, feiyan::catalog::ItemKind::FilmClass);
    assert_eq!(item.status, feiyan::catalog::ItemStatus::Missed);
    assert_eq!(item.title, "长津湖");
    assert_eq!(item.sequence, 0);
    let lecture = catalog
        .create_lecture(
            &feiyan::catalog::NewLecture {
                station: "st-1".into(),
                title: "讲座".into(),
                speaker: String::new(),
                topic_id: None,
                starts_at_ms: 1_900_000_000_000,
            },
            now,
        )
        .await
        .unwrap();
    assert!(
        lecture.id > 42,
        "new ids follow the old ones: {}",
        lecture.id
    );
}

#[tokio::test]
async fn sqlite_screenings_move_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
    screenings_move_with_their_ids(&url, false).await;
}

#[tokio::test]
async fn postgres_screenings_move_with_their_ids() {
    use sqlx::Connection;
    // An empty database (catalog_db::postgres() migrates it to the end at once).
    let admin = catalog_db::postgres_admin_url();
    let name = format!("feiyan_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    screenings_move_with_their_ids(&format!("{base}/{name}"), true).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

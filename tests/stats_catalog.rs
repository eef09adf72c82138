//! Statistics, hierarchy import and session metadata against hand-computed figures, on
//! SQLite and on PostgreSQL (the same checks, one test per backend).
//!
//! Fixture (times Asia/Shanghai, M = 2026-02-01 00:00 +08:00):
//! ```text
//! center A / institute A1 / stations s1, s2      center B / institute B1 / station s3
//! S1 s1 lecture     2026-01-31 23:30 -> 02-01 00:40  in person 10, peak 3
//!    alice mobile 23:35-23:55 and again 00:00-00:30 (leaves and rejoins: 1 viewer, 50 min)
//!    bob   pc     23:40-(never left: counts to the end 00:40)        60 min
//!    carol tv     00:10-00:20                                        10 min
//! S2 s1 film F1     2026-02-01 07:59 (still 01-31 in UTC) -> 08:59     in person 20, peak 2
//!    alice mobile 30 min, dave other 15 min
//! S3 s2 lecture     2026-02-15 10:00 -> 11:00  in person 5 (reported later), peak 1
//!    erin pc 60 min
//! S4 s3 other       2026-03-31 23:00 -> 04-01 01:00 (quarter end)  in person 7, peak 1
//!    frank tv 90 min
//! ```

mod catalog_db;

use std::collections::HashMap;

use chrono::NaiveDate;
use feiyan::catalog::{
    Catalog, CatalogError, ScreeningStatus, SessionFixture, SessionKind, SessionSource,
    SessionUpdate, StatsQuery, StatsRow, ViewerFixture, shanghai_midnight_ms,
};
use feiyan::http::csv::stats_csv;

const MIN: i64 = 60_000;

struct Fixture {
    center_a: i64,
    center_b: i64,
    s1: i64,
    film: i64,
    sessions: Vec<i64>,
}

async fn fixture(catalog: &Catalog) -> Fixture {
    let s1 = catalog.add_station("A中心", "A1所", "s1站").await.unwrap();
    let s2 = catalog.add_station("A中心", "A1所", "s2站").await.unwrap();
    let s3 = catalog.add_station("B中心", "B1所", "s3站").await.unwrap();
    let center_a = catalog
        .station_placement(s1.station_id)
        .await
        .unwrap()
        .center_id
        .0;
    let center_b = catalog
        .station_placement(s3.station_id)
        .await
        .unwrap()
        .center_id
        .0;
    let film = catalog.add_film("长津湖").await.unwrap().0;
    let m = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
    let feb15 = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 2, 15).unwrap());
    let apr1 = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 4, 1).unwrap());
    let session =
        |station: i64, kind, start: i64, end: i64, peak, in_person, film_id| SessionFixture {
            station_id: station,
            kind,
            title: "t".into(),
            started_at: start,
            ended_at: Some(end),
            peak_viewers: peak,
            in_person,
            film_id,
        };
    let s2_start = m + 7 * 60 * MIN + 59 * MIN;
    let ids = catalog
        .insert_sessions(&[
            session(
                s1.station_id.0,
                SessionKind::Lecture,
                m - 30 * MIN,
                m + 40 * MIN,
                3,
                10,
                None,
            ),
            session(
                s1.station_id.0,
                SessionKind::FilmClass,
                s2_start,
                s2_start + 60 * MIN,
                2,
                20,
                Some(film),
            ),
            session(
                s2.station_id.0,
                SessionKind::Lecture,
                feb15 + 600 * MIN,
                feb15 + 660 * MIN,
                1,
                0,
                None,
            ),
            session(
                s3.station_id.0,
                SessionKind::Other,
                apr1 - 60 * MIN,
                apr1 + 60 * MIN,
                1,
                7,
                None,
            ),
        ])
        .await
        .unwrap();
    let v = |session: i64, joined: i64, left: Option<i64>, terminal, key: &str| ViewerFixture {
        session_id: session,
        joined_at: joined,
        left_at: left,
        terminal,
        viewer_key: key.into(),
    };
    catalog
        .insert_viewers(&[
            v(ids[0], m - 25 * MIN, Some(m - 5 * MIN), "mobile", "alice"),
            v(ids[0], m, Some(m + 30 * MIN), "mobile", "alice"),
            v(ids[0], m - 20 * MIN, None, "pc", "bob"),
            v(ids[0], m + 10 * MIN, Some(m + 20 * MIN), "tv", "carol"),
            v(
                ids[1],
                s2_start,
                Some(s2_start + 30 * MIN),
                "mobile",
                "alice",
            ),
            v(ids[1], s2_start, Some(s2_start + 15 * MIN), "other", "dave"),
            v(
                ids[2],
                feb15 + 600 * MIN,
                Some(feb15 + 660 * MIN),
                "pc",
                "erin",
            ),
            v(
                ids[3],
                apr1 - 60 * MIN,
                Some(apr1 + 30 * MIN),
                "tv",
                "frank",
            ),
        ])
        .await
        .unwrap();
    // S3's headcount arrives later through the station's report.
    let info = catalog
        .update_session(
            ids[2],
            &SessionUpdate {
                in_person: Some(5),
                speaker: Some("王老师".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(info.in_person, 5);
    assert_eq!(info.speaker, "王老师");
    Fixture {
        center_a,
        center_b,
        s1: s1.station_id.0,
        film,
        sessions: ids,
    }
}

fn query(pairs: &[(&str, String)]) -> StatsQuery {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    StatsQuery::parse(&map).unwrap()
}

/// (group id, period, sessions, online, peak, minutes, in person, total)
type Brief = (i64, String, i64, i64, i64, f64, i64, i64);

fn brief(rows: &[StatsRow]) -> Vec<Brief> {
    rows.iter()
        .map(|r| {
            (
                r.group_id,
                r.period.clone(),
                r.sessions,
                r.online_viewers,
                r.peak_viewers,
                r.viewer_minutes,
                r.in_person,
                r.total_audience,
            )
        })
        .collect()
}

async fn statistics_match_hand_computed_figures(catalog: &Catalog) {
    let f = fixture(catalog).await;
    let now = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 6, 1).unwrap());
    let s = |q: StatsQuery| async move { catalog.stats(&q, now).await.unwrap() };

    let total = s(query(&[])).await;
    assert_eq!(
        brief(&total),
        vec![(0, "total".into(), 4, 7, 3, 315.0, 42, 49)]
    );
    let t = &total[0].terminals;
    assert_eq!((t.mobile, t.pc, t.tv, t.other), (2, 2, 2, 1));

    let monthly = s(query(&[
        ("group", "center".into()),
        ("period", "month".into()),
    ]))
    .await;
    assert_eq!(
        brief(&monthly),
        vec![
            (f.center_a, "2026-01".into(), 1, 3, 3, 120.0, 10, 13),
            (f.center_a, "2026-02".into(), 2, 3, 2, 105.0, 25, 28),
            (f.center_b, "2026-03".into(), 1, 1, 1, 90.0, 7, 8),
        ]
    );
    assert_eq!(monthly[0].group_name, "A中心");

    let days: Vec<String> = s(query(&[("period", "day".into())]))
        .await
        .into_iter()
        .map(|r| r.period)
        .collect();
    assert_eq!(
        days,
        ["2026-01-31", "2026-02-01", "2026-02-15", "2026-03-31"]
    );
    let weeks: Vec<(String, i64)> = s(query(&[("period", "week".into())]))
        .await
        .into_iter()
        .map(|r| (r.period, r.sessions))
        .collect();
    assert_eq!(
        weeks,
        [
            ("2026-W05".into(), 2),
            ("2026-W07".into(), 1),
            ("2026-W14".into(), 1)
        ]
    );
    let quarters = s(query(&[("period", "quarter".into())])).await;
    assert_eq!(
        brief(&quarters),
        vec![(0, "2026-Q1".into(), 4, 7, 3, 315.0, 42, 49)]
    );
    let years = s(query(&[("period", "year".into())])).await;
    assert_eq!(years[0].period, "2026");

    // Asia/Shanghai day boundary: S2 starts 2026-01-31 23:59 UTC, which is 02-01 there.
    let feb1 = s(query(&[
        ("from", "2026-02-01".into()),
        ("to", "2026-02-01".into()),
    ]))
    .await;
    assert_eq!(
        brief(&feb1),
        vec![(0, "total".into(), 1, 2, 2, 45.0, 20, 22)]
    );
    let jan = s(query(&[
        ("from", "2026-01-01".into()),
        ("to", "2026-01-31".into()),
    ]))
    .await;
    assert_eq!(
        brief(&jan),
        vec![(0, "total".into(), 1, 3, 3, 120.0, 10, 13)]
    );

    let station = s(query(&[
        ("level", "station".into()),
        ("id", f.s1.to_string()),
    ]))
    .await;
    assert_eq!(
        brief(&station),
        vec![(0, "total".into(), 2, 5, 3, 165.0, 30, 35)]
    );
    let film = s(query(&[("film", f.film.to_string())])).await;
    assert_eq!(
        brief(&film),
        vec![(0, "total".into(), 1, 2, 2, 45.0, 20, 22)]
    );
    let by_film = s(query(&[("group", "film".into())])).await;
    assert_eq!(
        by_film
            .iter()
            .map(|r| (r.group_id, r.sessions))
            .collect::<Vec<_>>(),
        vec![(0, 3), (f.film, 1)]
    );
    let lectures = s(query(&[
        ("kind", "lecture".into()),
        ("group", "station".into()),
    ]))
    .await;
    assert_eq!(lectures.len(), 2);
    assert_eq!(lectures.iter().map(|r| r.sessions).sum::<i64>(), 2);
    let none = s(query(&[
        ("level", "center".into()),
        ("id", "999999".into()),
    ]))
    .await;
    assert!(none.is_empty());

    let listing = catalog
        .stats_sessions(
            &query(&[("level", "center".into()), ("id", f.center_a.to_string())]),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        listing.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![f.sessions[2], f.sessions[1], f.sessions[0]]
    );
    let s1 = &listing[2];
    assert_eq!(
        (s1.day.as_str(), s1.minutes, s1.online_viewers),
        ("2026-01-31", 70.0, 3)
    );
    assert_eq!((s1.viewer_minutes, s1.total_audience), (120.0, 13));
    assert_eq!(listing[0].speaker, "王老师");

    // A live session: an open viewer row counts up to now.
    let start = shanghai_midnight_ms(NaiveDate::from_ymd_opt(2026, 6, 3).unwrap()) + 600 * MIN;
    let live_id = catalog
        .insert_sessions(&[SessionFixture {
            station_id: f.s1,
            kind: SessionKind::Lecture,
            title: "live".into(),
            started_at: start,
            ended_at: None,
            peak_viewers: 1,
            in_person: 0,
            film_id: None,
        }])
        .await
        .unwrap()[0];
    catalog
        .insert_viewers(&[ViewerFixture {
            session_id: live_id,
            joined_at: start + 10 * MIN,
            left_at: None,
            terminal: "pc",
            viewer_key: "gina".into(),
        }])
        .await
        .unwrap();
    let june3 = query(&[("from", "2026-06-03".into()), ("to", "2026-06-03".into())]);
    let now_live = catalog.stats(&june3, start + 70 * MIN).await.unwrap();
    assert_eq!(
        brief(&now_live),
        vec![(0, "total".into(), 1, 1, 1, 60.0, 0, 1)]
    );
    let listed = catalog
        .stats_sessions(&june3, start + 70 * MIN)
        .await
        .unwrap();
    assert_eq!(
        (listed[0].online_viewers, listed[0].viewer_minutes),
        (1, 60.0)
    );
    let later = catalog.stats(&june3, start + 100 * MIN).await.unwrap();
    assert_eq!(later[0].viewer_minutes, 90.0);

    let csv = stats_csv(&monthly);
    assert!(csv.starts_with("\u{feff}编号,名称,时段,场次"));
    assert!(csv.contains("\r\n"));
    assert!(csv.contains(",A中心,2026-02,2,3,2,105,25,28,"));
}

async fn import_is_all_or_nothing(catalog: &Catalog) {
    let bad = "center,institute,station,address\n\
               东区中心,一所,一站,一路1号\n\
               东区中心,,二站,一路2号\n\
               东区中心,一所,三站,一路3号\n\
               东区中心,一所,一站,重复\n\
               西区中心,二所,四站\n";
    let err = catalog.import_csv(bad).await.unwrap_err();
    let CatalogError::Invalid { reason, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    assert!(reason.contains("row 3: institute"), "{reason}");
    assert!(reason.contains("row 5: duplicate of row 2"), "{reason}");
    assert!(reason.contains("row 6: expected 4 fields"), "{reason}");
    assert!(
        !reason.contains("row 2:") && !reason.contains("row 4:"),
        "{reason}"
    );
    assert!(catalog.list_stations().await.unwrap().is_empty());
    assert!(catalog.hierarchy(None, None).await.unwrap().is_empty());

    let good = "\u{feff}中心,所,站,地址\r\n东区中心,一所,一站,\"一路1号, 东门\"\r\n\
                东区中心,一所,二站,一路2号\r\n西区中心,二所,三站,二路3号\r\n";
    let report = catalog.import_csv(good).await.unwrap();
    assert_eq!((report.centers_created, report.institutes_created), (2, 2));
    assert_eq!(report.stations.len(), 3);
    let first = &report.stations[0];
    assert!(
        catalog
            .authorize_publisher(&first.channel, &first.stream_key)
            .await
            .is_ok()
    );
    let tree = catalog.hierarchy(None, None).await.unwrap();
    assert_eq!(tree.len(), 2);
    assert_eq!(tree[0].children[0].children[0].address, "一路1号, 东门");
    // Importing the same station again is refused as a whole.
    let err = catalog
        .import_csv("西区中心,二所,五站,x\n东区中心,一所,一站,y\n")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("row 2: station already exists"),
        "{err}"
    );
    assert_eq!(catalog.list_stations().await.unwrap().len(), 3);
}

async fn metadata_is_checked(catalog: &Catalog) {
    let st = catalog.add_station("C中心", "C所", "C站").await.unwrap();
    let topic = catalog.add_topic("党史学习").await.unwrap();
    assert!(catalog.add_topic("党史学习").await.is_err());
    let id = catalog
        .open_session(
            &st.channel,
            st.station_id,
            SessionKind::Lecture,
            "讲座",
            SessionSource::Whip,
            1_000,
        )
        .await
        .unwrap();
    let bad = |u: SessionUpdate| async move { catalog.update_session(id.0, &u).await };
    assert!(
        bad(SessionUpdate {
            in_person: Some(-1),
            ..Default::default()
        })
        .await
        .is_err()
    );
    assert!(
        bad(SessionUpdate {
            topic_id: Some(9999),
            ..Default::default()
        })
        .await
        .is_err()
    );
    assert!(
        bad(SessionUpdate {
            scheduled_at: Some(5),
            ..Default::default()
        })
        .await
        .is_err()
    );
    let info = bad(SessionUpdate {
        topic_id: Some(topic),
        scheduled_at: Some(1_767_225_600_000),
        in_person: Some(33),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(info.topic.as_deref(), Some("党史学习"));
    assert_eq!(
        info.scheduled_at.as_deref(),
        Some("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(info.in_person, 33);
    assert_eq!(
        catalog
            .station_sessions(st.station_id.0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A restart after a crash ends the screenings the old process was playing: a pending
/// operator stop becomes `stopped`, an interrupted film class `failed`; waiting ones stay.
async fn restart_ends_screenings_left_playing(catalog: &Catalog) {
    let station = catalog
        .add_station("放映中心", "放映所", "放映站")
        .await
        .unwrap();
    let film = catalog
        .import_film(
            &feiyan::catalog::NewFilm {
                title: "重启测试影片".into(),
                path: "media/films/restart.mp4".into(),
                duration_ms: 60_000,
                container: "mp4".into(),
                video_codec: Some("h264".into()),
                audio_codec: Some("aac".into()),
                width: 640,
                height: 360,
            },
            1_000,
        )
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let mut ids = Vec::new();
    for at in [10_000, 20_000, 9_000_000] {
        let s = catalog
            .schedule_screening(&channel, film, at, 1_000)
            .await
            .unwrap();
        ids.push(s.id);
    }
    for id in &ids[..2] {
        assert!(
            catalog
                .set_screening_status(
                    *id,
                    ScreeningStatus::Scheduled,
                    ScreeningStatus::Playing,
                    None,
                    "playing",
                )
                .await
                .unwrap()
        );
    }
    catalog.stop_screening(ids[1]).await.unwrap();
    catalog.close_stale(30_000).await.unwrap();
    let status = |i: usize| {
        let id = ids[i];
        async move { catalog.screening(id).await.unwrap().status }
    };
    assert_eq!(status(0).await, ScreeningStatus::Failed);
    assert_eq!(status(1).await, ScreeningStatus::Stopped);
    assert_eq!(status(2).await, ScreeningStatus::Scheduled);
}

/// Two servers share the catalog; one stops noting itself alive (a crash). The other
/// closes the crashed server's session and viewer rows as of its last heartbeat (the
/// database's time), and never touches its own live session, however late its own
/// heartbeat.
async fn gone_servers_sessions_close_as_of_their_last_heartbeat(db: &catalog_db::TestDb) {
    let a = &db.catalog;
    let b = Catalog::connect(&db.url).await.unwrap();
    let sa_station = a.add_station("节点中心", "节点所", "甲站").await.unwrap();
    let sb_station = a.add_station("节点中心", "节点所", "乙站").await.unwrap();
    let t0 = feiyan::audience::now_ms() - 60_000;
    let node_a = a.register_node().await.unwrap() as i64;
    let node_b = b.register_node().await.unwrap() as i64;
    let open = |catalog: &Catalog, station: &feiyan::catalog::NewStation| {
        let catalog = catalog.clone();
        let (channel, id) = (station.channel.clone(), station.station_id);
        async move {
            catalog
                .open_session(
                    &channel,
                    id,
                    SessionKind::Lecture,
                    "直播",
                    SessionSource::Whip,
                    t0 + 10_000,
                )
                .await
                .unwrap()
                .0
        }
    };
    let sa = open(a, &sa_station).await;
    let sb = open(&b, &sb_station).await;
    let viewer = catalog_db::open_viewer;
    let late = t0 + 3_600_000;
    a.insert_viewers(&[
        viewer(sa, t0 + 20_000, "a1"),
        viewer(sb, t0 + 20_000, "b1"),
        // Joined after b's last heartbeat: it left when it joined, not before.
        viewer(sb, late, "b2"),
    ])
    .await
    .unwrap();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let seen = |node: i64| catalog_db::node_seen_at(&pool, node);
    b.heartbeat().await.unwrap();
    let b_seen = seen(node_b).await;
    // b was seen just now: alive, nothing closes.
    assert_eq!(a.close_gone(60_000).await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    // b has now been silent for more than a second: gone. a's own heartbeat is older
    // still (its registration), but a is the caller.
    assert_eq!(a.close_gone(1_000).await.unwrap(), 1);
    let ended = |id: i64| {
        let pool = pool.clone();
        async move {
            let (at,): (Option<i64>,) =
                sqlx::query_as("SELECT ended_at FROM sessions WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            at
        }
    };
    let left = |key: &str| {
        let (pool, key) = (pool.clone(), key.to_string());
        async move {
            let (at,): (Option<i64>,) =
                sqlx::query_as("SELECT left_at FROM viewers WHERE viewer_key = $1")
                    .bind(key)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            at
        }
    };
    assert_eq!(ended(sb).await, Some(b_seen));
    assert_eq!(left("b1").await, Some(b_seen));
    assert_eq!(left("b2").await, Some(late));
    assert_eq!(ended(sa).await, None);
    assert_eq!(left("a1").await, None);
    // A third server starting now closes a's session too: a was last seen at its
    // registration, more than a second ago.
    let a_seen = seen(node_a).await;
    let c = Catalog::connect(&db.url).await.unwrap();
    assert_eq!(c.close_stale(1_000).await.unwrap(), 1);
    assert_eq!(ended(sa).await, Some(a_seen));
    assert_eq!(left("a1").await, Some(a_seen));
    pool.close().await;
}

#[tokio::test]
async fn sqlite_gone_servers() {
    let db = catalog_db::sqlite().await;
    gone_servers_sessions_close_as_of_their_last_heartbeat(&db).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_gone_servers() {
    let db = catalog_db::postgres().await;
    gone_servers_sessions_close_as_of_their_last_heartbeat(&db).await;
    db.finish().await;
}

#[tokio::test]
async fn sqlite_statistics() {
    let db = catalog_db::sqlite().await;
    statistics_match_hand_computed_figures(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_statistics() {
    let db = catalog_db::postgres().await;
    statistics_match_hand_computed_figures(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn sqlite_import_and_metadata() {
    let db = catalog_db::sqlite().await;
    import_is_all_or_nothing(&db.catalog).await;
    metadata_is_checked(&db.catalog).await;
    restart_ends_screenings_left_playing(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_import_and_metadata() {
    let db = catalog_db::postgres().await;
    import_is_all_or_nothing(&db.catalog).await;
    metadata_is_checked(&db.catalog).await;
    restart_ends_screenings_left_playing(&db.catalog).await;
    db.finish().await;
}

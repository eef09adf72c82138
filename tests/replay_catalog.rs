//! Replays (回看) in the catalog, on SQLite and on PostgreSQL (the same checks, one test
//! per backend): recording rows (one per session, listings, hide, keep, delete,
//! retention order), replay views (upsert), and the replay figures of the statistics,
//! which count on the day watched in the session's groups and never change the live ones.
//!
//! Fixture (times Asia/Shanghai):
//! ```text
//! center A / institute A1 / stations s1, s2      center B / institute B1 / station s3
//! S4 s1 lecture   2026-02-20 10:00-11:00   recorded   (deleted in the catalog test)
//! S5 s2 lecture   2026-02-25 10:00-11:00   recorded
//! S1 s1 lecture   2026-03-01 10:00-11:00   recorded   speaker 王老师; live: ann pc 30 min
//! S2 s1 film F    2026-03-02 19:00-20:30   library    live: bea mobile 60 min
//! S3 s3 lecture   2026-03-03 09:00-10:00   recorded   live: cid tv 20 min
//! replays: S1 r1 mobile 03-05 10 min, r2 pc 03-05 5 min, r1 mobile 03-06 3 min
//!          S2 r3 tv 04-02 30 min (April: replays only)   S3 r4 pc 03-03 2 min
//! ```

mod catalog_db;

use std::collections::HashMap;

use chrono::NaiveDate;
use feiyan::catalog::{
    Catalog, CatalogError, NewRecording, RecordingKind, ReplayView, SessionFixture, SessionKind,
    SessionUpdate, StatsQuery, StatsRow, ViewerFixture, shanghai_midnight_ms,
};
use feiyan::http::csv::{sessions_csv, stats_csv};
use feiyan::ids::{ChannelName, SessionId};

const MIN: i64 = 60_000;

struct Fixture {
    s1: i64,
    s1_channel: ChannelName,
    s3: i64,
    center_a: i64,
    center_b: i64,
    institute_a: i64,
    film: i64,
    /// S1 .. S5 in that order.
    sessions: [i64; 5],
    /// Their recordings.
    recordings: [i64; 5],
}

fn at(day: (i32, u32, u32), minute_of_day: i64) -> i64 {
    shanghai_midnight_ms(NaiveDate::from_ymd_opt(day.0, day.1, day.2).unwrap())
        + minute_of_day * MIN
}

async fn fixture(catalog: &Catalog) -> Fixture {
    let s1 = catalog.add_station("A中心", "A1所", "s1站").await.unwrap();
    let s2 = catalog.add_station("A中心", "A1所", "s2站").await.unwrap();
    let s3 = catalog.add_station("B中心", "B1所", "s3站").await.unwrap();
    let place_a = catalog.station_placement(s1.station_id).await.unwrap();
    let place_b = catalog.station_placement(s3.station_id).await.unwrap();
    let film = catalog.add_film("长津湖").await.unwrap().0;
    let session = |station: i64, kind, start: i64, minutes: i64, film_id| SessionFixture {
        station_id: station,
        kind,
        title: format!("t{start}"),
        started_at: start,
        ended_at: Some(start + minutes * MIN),
        peak_viewers: 1,
        in_person: 0,
        film_id,
    };
    let (st1, st2, st3) = (s1.station_id.0, s2.station_id.0, s3.station_id.0);
    let ids = catalog
        .insert_sessions(&[
            session(st1, SessionKind::Lecture, at((2026, 3, 1), 600), 60, None),
            session(
                st1,
                SessionKind::FilmClass,
                at((2026, 3, 2), 1140),
                90,
                Some(film),
            ),
            session(st3, SessionKind::Lecture, at((2026, 3, 3), 540), 60, None),
            session(st1, SessionKind::Lecture, at((2026, 2, 20), 600), 60, None),
            session(st2, SessionKind::Lecture, at((2026, 2, 25), 600), 60, None),
        ])
        .await
        .unwrap();
    catalog
        .update_session(
            ids[0],
            &SessionUpdate {
                speaker: Some("王老师".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let viewer = |session: i64, joined: i64, minutes: i64, terminal, key: &str| ViewerFixture {
        session_id: session,
        joined_at: joined,
        left_at: Some(joined + minutes * MIN),
        terminal,
        viewer_key: key.into(),
    };
    catalog
        .insert_viewers(&[
            viewer(ids[0], at((2026, 3, 1), 610), 30, "pc", "ann"),
            viewer(ids[1], at((2026, 3, 2), 1140), 60, "mobile", "bea"),
            viewer(ids[2], at((2026, 3, 3), 545), 20, "tv", "cid"),
        ])
        .await
        .unwrap();
    let channels = [
        &s1.channel,
        &s1.channel,
        &s3.channel,
        &s1.channel,
        &s2.channel,
    ];
    let mut recordings = [0; 5];
    for (k, &id) in ids.iter().enumerate() {
        let (start, end) = match k {
            0 => (at((2026, 3, 1), 600), at((2026, 3, 1), 660)),
            1 => (at((2026, 3, 2), 1140), at((2026, 3, 2), 1230)),
            2 => (at((2026, 3, 3), 540), at((2026, 3, 3), 600)),
            3 => (at((2026, 2, 20), 600), at((2026, 2, 20), 660)),
            _ => (at((2026, 2, 25), 600), at((2026, 2, 25), 660)),
        };
        let (kind, path) = if k == 1 {
            (
                RecordingKind::Library,
                "media/films/changjin.mp4".to_string(),
            )
        } else {
            (RecordingKind::Recorded, format!("{}/{id}", channels[k]))
        };
        recordings[k] = catalog
            .insert_recording(&NewRecording {
                session: SessionId(id),
                kind,
                path,
                started_ms: start,
                ended_ms: end,
                duration_ms: end - start,
                size_bytes: 1_000_000 * (k as i64 + 1),
            })
            .await
            .unwrap();
    }
    Fixture {
        s1: st1,
        s1_channel: s1.channel.clone(),
        s3: st3,
        center_a: place_a.center_id.0,
        center_b: place_b.center_id.0,
        institute_a: place_a.institute_id.0,
        film,
        sessions: ids.try_into().unwrap(),
        recordings,
    }
}

fn view(recording: i64, key: &str, day: &str, terminal: &str, minutes: i64) -> ReplayView {
    ReplayView {
        recording_id: recording,
        viewer_key: key.into(),
        day: day.into(),
        terminal: terminal.into(),
        segments: vec![0xff; 4],
        watched_ms: minutes * MIN,
        first_ms: 1_000,
        last_ms: 2_000,
    }
}

async fn recordings_are_kept_listed_and_deleted(catalog: &Catalog) {
    let f = fixture(catalog).await;
    let [r1, r2, r3, r4, r5] = f.recordings;

    // One recording per session: a second insert only moves the end, duration and size
    // up, and answers the same id.
    let rec = catalog.recording(r1).await.unwrap().unwrap();
    let again = |ended: i64, duration: i64, size: i64| NewRecording {
        session: SessionId(f.sessions[0]),
        kind: RecordingKind::Recorded,
        path: rec.path.clone(),
        started_ms: at((2026, 3, 1), 600),
        ended_ms: ended,
        duration_ms: duration,
        size_bytes: size,
    };
    let end = at((2026, 3, 1), 660);
    assert_eq!(
        catalog
            .insert_recording(&again(end - MIN, 1_000, 5))
            .await
            .unwrap(),
        r1
    );
    let same = catalog.recording(r1).await.unwrap().unwrap();
    assert_eq!(
        (same.ended_at.as_str(), same.duration_ms, same.size_bytes),
        ("2026-03-01T03:00:00.000Z", 60 * MIN, 1_000_000)
    );
    assert_eq!(
        catalog
            .insert_recording(&again(end + MIN, 61 * MIN, 1_500_000))
            .await
            .unwrap(),
        r1
    );
    let grown = catalog.recording(r1).await.unwrap().unwrap();
    assert_eq!(
        (grown.ended_at.as_str(), grown.duration_ms, grown.size_bytes),
        ("2026-03-01T03:01:00.000Z", 61 * MIN, 1_500_000)
    );
    let unknown_session = NewRecording {
        session: SessionId(999_999),
        ..again(end, 1, 1)
    };
    assert!(matches!(
        catalog.insert_recording(&unknown_session).await,
        Err(CatalogError::NotFound(_))
    ));

    // The session's place, title and speaker come with the row.
    assert_eq!(grown.id, r1);
    assert_eq!(grown.session_id, f.sessions[0]);
    assert_eq!(grown.kind, RecordingKind::Recorded);
    assert_eq!(grown.path, format!("{}/{}", f.s1_channel, f.sessions[0]));
    assert_eq!(grown.channel, f.s1_channel.as_str());
    assert_eq!((grown.station_id, grown.station.as_str()), (f.s1, "s1站"));
    assert_eq!(
        (grown.institute_id, grown.institute.as_str()),
        (f.institute_a, "A1所")
    );
    assert_eq!(
        (grown.center_id, grown.center.as_str()),
        (f.center_a, "A中心")
    );
    assert_eq!(grown.title, format!("t{}", at((2026, 3, 1), 600)));
    assert_eq!(grown.session_kind, "lecture");
    assert_eq!(grown.speaker.as_deref(), Some("王老师"));
    assert_eq!((grown.film_id, grown.film.as_deref()), (None, None));
    assert_eq!(grown.started_at, "2026-03-01T02:00:00.000Z");
    assert_eq!(grown.started_ms, at((2026, 3, 1), 600));
    assert!(grown.published && !grown.keep);
    assert_eq!(
        (grown.deleted_at.as_deref(), grown.deleted_reason.as_deref()),
        (None, None)
    );
    let json = serde_json::to_value(&grown).unwrap();
    assert!(
        json.get("path").is_none() && json.get("started_ms").is_none(),
        "{json}"
    );
    assert_eq!(json["kind"], "recorded");
    // A film class replays from the library file; the film comes from the session.
    let film = catalog.recording(r2).await.unwrap().unwrap();
    assert_eq!(film.kind, RecordingKind::Library);
    assert_eq!(film.path, "media/films/changjin.mp4");
    assert_eq!(
        (
            film.film_id,
            film.film.as_deref(),
            film.session_kind.as_str()
        ),
        (Some(f.film), Some("长津湖"), "film_class")
    );
    assert_eq!(film.speaker, None);
    assert_eq!(
        catalog
            .recording_for_session(SessionId(f.sessions[1]))
            .await
            .unwrap()
            .map(|r| r.id),
        Some(r2)
    );
    assert!(
        catalog
            .recording_for_session(SessionId(999_999))
            .await
            .unwrap()
            .is_none()
    );
    assert!(catalog.recording(999_999).await.unwrap().is_none());

    // Station listings: newest first; hidden ones only when asked; deleted ones never.
    let ids =
        |rows: Vec<feiyan::catalog::Recording>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let station = |hidden: bool| {
        let channel = f.s1_channel.clone();
        async move { catalog.station_recordings(&channel, hidden).await }
    };
    assert_eq!(ids(station(false).await.unwrap()), [r2, r1, r4]);
    let hidden = catalog.set_recording_published(r1, false).await.unwrap();
    assert!(!hidden.published);
    assert_eq!(ids(station(false).await.unwrap()), [r2, r4]);
    assert_eq!(ids(station(true).await.unwrap()), [r2, r1, r4]);
    let deleted = catalog
        .mark_recording_deleted(r4, "retention: older than 30 days", 5_000)
        .await
        .unwrap();
    assert_eq!(
        deleted.deleted_at.as_deref(),
        Some("1970-01-01T00:00:05.000Z")
    );
    assert_eq!(
        deleted.deleted_reason.as_deref(),
        Some("retention: older than 30 days")
    );
    // Deleted once: a second deletion keeps the first time and reason.
    let twice = catalog
        .mark_recording_deleted(r4, "deleted by someone", 9_000)
        .await
        .unwrap();
    assert_eq!(twice.deleted_reason, deleted.deleted_reason);
    assert_eq!(twice.deleted_at, deleted.deleted_at);
    assert_eq!(ids(station(true).await.unwrap()), [r2, r1]);
    let unknown = ChannelName::parse("st-999999").unwrap();
    assert!(matches!(
        catalog.station_recordings(&unknown, true).await,
        Err(CatalogError::UnknownChannel(_))
    ));
    // Administrators' listings: hidden included, deleted on request.
    let s1 = Some(feiyan::ids::StationId(f.s1));
    assert_eq!(
        ids(catalog.list_recordings(s1, false).await.unwrap()),
        [r2, r1]
    );
    let with_deleted = catalog.list_recordings(s1, true).await.unwrap();
    assert_eq!(ids(with_deleted.clone()), [r2, r1, r4]);
    assert!(with_deleted[2].deleted_at.is_some());
    assert_eq!(
        ids(catalog.list_recordings(None, false).await.unwrap()),
        [r3, r2, r1, r5]
    );
    assert_eq!(
        ids(catalog.list_recordings(None, true).await.unwrap()),
        [r3, r2, r1, r5, r4]
    );
    let published = catalog.set_recording_published(r1, true).await.unwrap();
    assert!(published.published);

    // Retention: recorded, not deleted, not kept, oldest first.
    assert_eq!(
        ids(catalog.retention_candidates().await.unwrap()),
        [r5, r1, r3]
    );
    let kept = catalog.set_recording_keep(r1, true).await.unwrap();
    assert!(kept.keep);
    assert_eq!(ids(catalog.retention_candidates().await.unwrap()), [r5, r3]);
    assert!(!catalog.set_recording_keep(r1, false).await.unwrap().keep);
    assert_eq!(
        ids(catalog.retention_candidates().await.unwrap()),
        [r5, r1, r3]
    );

    // Unknown ids are the caller's error.
    for result in [
        catalog.set_recording_published(999_999, true).await,
        catalog.set_recording_keep(999_999, true).await,
        catalog.mark_recording_deleted(999_999, "x", 1).await,
    ] {
        assert!(
            matches!(result, Err(CatalogError::NotFound(_))),
            "{result:?}"
        );
    }

    // Replay views: an upsert replaces segments, watched time and last fetch, keeps the
    // first fetch (and terminal); other days are other rows.
    let key = "00112233445566778899aabbccddeeff";
    let first = ReplayView {
        recording_id: r1,
        viewer_key: key.into(),
        day: "2026-03-05".into(),
        terminal: "mobile".into(),
        segments: vec![0b101],
        watched_ms: 4_000,
        first_ms: 100,
        last_ms: 200,
    };
    catalog
        .record_replay_views(&[
            first.clone(),
            ReplayView {
                day: "2026-03-06".into(),
                ..first.clone()
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        catalog.replay_view(r1, key, "2026-03-05").await.unwrap(),
        Some(first.clone())
    );
    catalog
        .record_replay_views(&[ReplayView {
            terminal: "pc".into(),
            segments: vec![0b111, 0b1],
            watched_ms: 8_000,
            first_ms: 150,
            last_ms: 300,
            ..first.clone()
        }])
        .await
        .unwrap();
    assert_eq!(
        catalog.replay_view(r1, key, "2026-03-05").await.unwrap(),
        Some(ReplayView {
            segments: vec![0b111, 0b1],
            watched_ms: 8_000,
            last_ms: 300,
            ..first.clone()
        })
    );
    assert_eq!(
        catalog
            .replay_view(r1, key, "2026-03-06")
            .await
            .unwrap()
            .map(|v| v.segments),
        Some(vec![0b101])
    );
    assert_eq!(
        catalog.replay_view(r1, key, "2026-03-07").await.unwrap(),
        None
    );
    assert_eq!(
        catalog.replay_view(r2, key, "2026-03-05").await.unwrap(),
        None
    );
    // A bad day is refused and nothing of the batch is written.
    let bad = catalog
        .record_replay_views(&[
            view(r2, key, "2026-03-05", "pc", 1),
            view(r2, key, "03/05/2026", "pc", 1),
        ])
        .await;
    assert!(matches!(bad, Err(CatalogError::Invalid { .. })), "{bad:?}");
    assert_eq!(
        catalog.replay_view(r2, key, "2026-03-05").await.unwrap(),
        None
    );
}

fn query(pairs: &[(&str, String)]) -> StatsQuery {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    StatsQuery::parse(&map).unwrap()
}

/// The live figures of a row: group, period, sessions, online, peak, minutes, in person,
/// total, terminals.
type Live = (i64, String, i64, i64, i64, f64, i64, i64, [i64; 4]);

fn live(rows: &[StatsRow]) -> Vec<Live> {
    rows.iter()
        .filter(|r| r.sessions > 0)
        .map(|r| {
            let t = &r.terminals;
            (
                r.group_id,
                r.period.clone(),
                r.sessions,
                r.online_viewers,
                r.peak_viewers,
                r.viewer_minutes,
                r.in_person,
                r.total_audience,
                [t.mobile, t.pc, t.tv, t.other],
            )
        })
        .collect()
}

/// (group, period, replay viewers, replay minutes) of every row with replays.
fn replays(rows: &[StatsRow]) -> Vec<(i64, String, i64, f64)> {
    rows.iter()
        .filter(|r| r.replay_viewers > 0)
        .map(|r| {
            (
                r.group_id,
                r.period.clone(),
                r.replay_viewers,
                r.replay_minutes,
            )
        })
        .collect()
}

async fn replay_figures_count_on_the_day_watched(catalog: &Catalog) {
    let f = fixture(catalog).await;
    let [r1, r2, r3, ..] = f.recordings;
    let now = at((2026, 6, 1), 0);
    let queries: Vec<StatsQuery> = vec![
        query(&[]),
        query(&[("group", "center".into()), ("period", "month".into())]),
        query(&[("period", "day".into())]),
        query(&[("period", "week".into())]),
        query(&[("period", "quarter".into())]),
        query(&[("period", "year".into())]),
        query(&[("group", "film".into())]),
        query(&[("group", "institute".into())]),
        query(&[("group", "station".into()), ("period", "day".into())]),
        query(&[("level", "station".into()), ("id", f.s1.to_string())]),
        query(&[("film", f.film.to_string())]),
        query(&[("kind", "lecture".into())]),
        query(&[("from", "2026-03-05".into()), ("to", "2026-03-05".into())]),
        query(&[("from", "2026-03-01".into()), ("to", "2026-03-03".into())]),
    ];
    let mut before = Vec::new();
    for q in &queries {
        let rows = catalog.stats(q, now).await.unwrap();
        assert!(
            rows.iter()
                .all(|r| r.replay_viewers == 0 && r.replay_minutes == 0.0)
        );
        before.push(rows);
    }
    let listing_before = catalog.stats_sessions(&query(&[]), now).await.unwrap();
    catalog
        .record_replay_views(&[
            view(r1, "r1", "2026-03-05", "mobile", 10),
            view(r1, "r2", "2026-03-05", "pc", 5),
            view(r1, "r1", "2026-03-06", "mobile", 3),
            view(r2, "r3", "2026-04-02", "tv", 30),
            view(r3, "r4", "2026-03-03", "pc", 2),
        ])
        .await
        .unwrap();
    let mut after = Vec::new();
    for (q, old) in queries.iter().zip(&before) {
        let rows = catalog.stats(q, now).await.unwrap();
        // Replays never change the live figures.
        assert_eq!(live(&rows), live(old), "{q:?}");
        after.push(rows);
    }
    let all = |g: i64, p: &str, n: i64, m: f64| (g, p.to_string(), n, m);
    assert_eq!(replays(&after[0]), [all(0, "total", 5, 50.0)]);
    // Live figures of the whole range, for the record: 5 sessions, 3 online viewers.
    assert_eq!(
        (
            after[0][0].sessions,
            after[0][0].online_viewers,
            after[0][0].total_audience
        ),
        (5, 3, 3)
    );
    assert_eq!(
        replays(&after[1]),
        [
            all(f.center_a, "2026-03", 3, 18.0),
            all(f.center_b, "2026-03", 1, 2.0),
            all(f.center_a, "2026-04", 1, 30.0),
        ]
    );
    // April has replays only: its row is there, with no sessions.
    let april = after[1].iter().find(|r| r.period == "2026-04").unwrap();
    assert_eq!(
        (
            april.group_name.as_str(),
            april.sessions,
            april.online_viewers,
            april.viewer_minutes
        ),
        ("A中心", 0, 0, 0.0)
    );
    // On the day watched, not the session's day (S1 was on 03-01).
    assert_eq!(
        replays(&after[2]),
        [
            all(0, "2026-03-03", 1, 2.0),
            all(0, "2026-03-05", 2, 15.0),
            all(0, "2026-03-06", 1, 3.0),
            all(0, "2026-04-02", 1, 30.0),
        ]
    );
    let s1_day = after[2].iter().find(|r| r.period == "2026-03-01").unwrap();
    assert_eq!((s1_day.sessions, s1_day.replay_viewers), (1, 0));
    assert_eq!(
        replays(&after[3]),
        [all(0, "2026-W10", 4, 20.0), all(0, "2026-W14", 1, 30.0)]
    );
    assert_eq!(
        replays(&after[4]),
        [all(0, "2026-Q1", 4, 20.0), all(0, "2026-Q2", 1, 30.0)]
    );
    assert_eq!(replays(&after[5]), [all(0, "2026", 5, 50.0)]);
    assert_eq!(
        replays(&after[6]),
        [all(0, "total", 4, 20.0), all(f.film, "total", 1, 30.0)]
    );
    assert_eq!(after[6][1].group_name, "长津湖");
    let b_institute = after[7]
        .iter()
        .find(|r| r.group_id != f.institute_a)
        .unwrap()
        .group_id;
    assert_eq!(
        replays(&after[7]),
        [
            all(f.institute_a, "total", 4, 48.0),
            all(b_institute, "total", 1, 2.0)
        ]
    );
    assert_eq!(
        replays(&after[8]),
        [
            all(f.s3, "2026-03-03", 1, 2.0),
            all(f.s1, "2026-03-05", 2, 15.0),
            all(f.s1, "2026-03-06", 1, 3.0),
            all(f.s1, "2026-04-02", 1, 30.0),
        ]
    );
    assert_eq!(replays(&after[9]), [all(0, "total", 4, 48.0)]);
    assert_eq!(replays(&after[10]), [all(0, "total", 1, 30.0)]);
    assert_eq!(replays(&after[11]), [all(0, "total", 4, 20.0)]);
    // A range holding no session, only replays watched in it.
    assert_eq!(replays(&after[12]), [all(0, "total", 2, 15.0)]);
    assert_eq!(after[12][0].sessions, 0);
    // Sessions of 03-01 .. 03-03, but only the replays watched in those days.
    assert_eq!(replays(&after[13]), [all(0, "total", 1, 2.0)]);
    assert_eq!(after[13][0].sessions, 3);

    // The session listing: each session's replay figures, every day watched; live
    // figures as before.
    let listing = catalog.stats_sessions(&query(&[]), now).await.unwrap();
    let brief = |rows: &[feiyan::catalog::SessionStats]| {
        rows.iter()
            .map(|r| (r.id, r.online_viewers, r.viewer_minutes, r.total_audience))
            .collect::<Vec<_>>()
    };
    assert_eq!(brief(&listing), brief(&listing_before));
    let replay_of = |id: i64| {
        let r = listing.iter().find(|r| r.id == id).unwrap();
        (r.replay_viewers, r.replay_minutes)
    };
    assert_eq!(replay_of(f.sessions[0]), (3, 18.0));
    assert_eq!(replay_of(f.sessions[1]), (1, 30.0));
    assert_eq!(replay_of(f.sessions[2]), (1, 2.0));
    assert_eq!(replay_of(f.sessions[3]), (0, 0.0));

    // JSON and CSV carry them.
    let json = serde_json::to_value(&after[1]).unwrap();
    let april = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == "2026-04")
        .unwrap();
    assert_eq!(april["replay_viewers"], 1);
    assert_eq!(april["replay_minutes"], 30.0);
    assert_eq!(april["online_viewers"], 0);
    let csv = stats_csv(&after[1]);
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",其他终端,回看人次,回看分钟,互动消息,提问,已答提问,点赞,线上签到"),
        "{header}"
    );
    assert!(
        csv.contains(&format!(
            "\r\n{},A中心,2026-04,0,0,0,0,0,0,0,0,0,0,1,30,0,0,0,0,0\r\n",
            f.center_a
        )),
        "{csv}"
    );
    assert!(
        csv.contains(&format!(
            "\r\n{},A中心,2026-03,2,2,1,90,0,2,1,1,0,0,3,18,0,0,0,0,0\r\n",
            f.center_a
        )),
        "{csv}"
    );
    let sessions = sessions_csv(&listing);
    assert!(
        sessions
            .lines()
            .next()
            .unwrap()
            .ends_with(",总受众人次,回看人次,回看分钟,互动消息,提问,已答提问,点赞,线上签到"),
        "{sessions}"
    );
    assert!(sessions.contains(",1,3,18,0,0,0,0,0\r\n"), "{sessions}");
}

#[tokio::test]
async fn sqlite_recordings() {
    let db = catalog_db::sqlite().await;
    recordings_are_kept_listed_and_deleted(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_recordings() {
    let db = catalog_db::postgres().await;
    recordings_are_kept_listed_and_deleted(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn sqlite_replay_statistics() {
    let db = catalog_db::sqlite().await;
    replay_figures_count_on_the_day_watched(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_replay_statistics() {
    let db = catalog_db::postgres().await;
    replay_figures_count_on_the_day_watched(&db.catalog).await;
    db.finish().await;
}

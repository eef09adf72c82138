//! The day rollups (`station_days`, `center_days`) against the raw rows, on SQLite and on
//! PostgreSQL: a small generated city is summed here in Rust, session by session and
//! viewer row by viewer row, by the rules in `src/catalog/stats.rs`, and every grouping x
//! period x filter of `Catalog::stats` must give the same table. Then a frozen session's
//! headcount and film change, a session is live and one has just ended (not frozen yet),
//! and the tables must still agree, before and after those sessions freeze.

mod catalog_db;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate};
use feiyan::audience::now_ms;
use feiyan::catalog::{
    Catalog, DemoSpec, SessionFixture, SessionKind, SessionUpdate, StatsQuery, ViewerFixture,
    shanghai_day,
};
use sqlx::{AnyPool, AssertSqlSafe};

const MIN: i64 = 60_000;

/// A session with its place, as read straight from the tables.
struct RawSession {
    center: (i64, String),
    institute: (i64, String),
    station: (i64, String),
    kind: String,
    film: (i64, String),
    started_at: i64,
    ended_at: Option<i64>,
    peak: i64,
    in_person: i64,
    /// (joined, left, terminal, key)
    viewers: Vec<(i64, Option<i64>, String, String)>,
}

type SessionRow = (
    i64,
    i64,
    String,
    i64,
    String,
    i64,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    i64,
    i64,
);

async fn load(url: &str) -> Vec<RawSession> {
    let pool = AnyPool::connect(url).await.unwrap();
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT s.id, c.id, c.name, i.id, i.name, st.id, st.name, s.kind, \
         COALESCE(s.film_id, 0), COALESCE(f.title, '（无影片）'), s.started_at, s.ended_at, \
         s.peak_viewers, s.in_person FROM sessions s JOIN stations st ON st.id = s.station_id \
         JOIN institutes i ON i.id = st.institute_id JOIN centers c ON c.id = i.center_id \
         LEFT JOIN films f ON f.id = s.film_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let viewers: Vec<(i64, i64, Option<i64>, String, String)> =
        sqlx::query_as("SELECT session_id, joined_at, left_at, terminal, viewer_key FROM viewers")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    let mut by_session: HashMap<i64, Vec<_>> = HashMap::new();
    for (session, joined, left, terminal, key) in viewers {
        by_session
            .entry(session)
            .or_default()
            .push((joined, left, terminal, key));
    }
    rows.into_iter()
        .map(
            |(id, c, cn, i, inn, st, stn, kind, film, title, start, end, peak, in_person)| {
                RawSession {
                    center: (c, cn),
                    institute: (i, inn),
                    station: (st, stn),
                    kind,
                    film: (film, title),
                    started_at: start,
                    ended_at: end,
                    peak,
                    in_person,
                    viewers: by_session.remove(&id).unwrap_or_default(),
                }
            },
        )
        .collect()
}

fn label(period: &str, day: NaiveDate) -> String {
    match period {
        "total" => "total".into(),
        "day" => day.format("%Y-%m-%d").to_string(),
        "week" => {
            let w = day.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        "month" => day.format("%Y-%m").to_string(),
        "quarter" => format!("{}-Q{}", day.year(), day.month0() / 3 + 1),
        "year" => day.year().to_string(),
        other => panic!("period {other}"),
    }
}

/// (group id, group name, period, sessions, online, peak, minutes, in person, total,
/// [mobile, pc, tv, other])
type Line = (i64, String, String, i64, i64, i64, f64, i64, i64, [i64; 4]);

/// A row being summed: name, sessions, online, peak, viewer ms, in person, terminals.
type Sums = (String, i64, i64, i64, i64, i64, [i64; 4]);

/// The statistics table by the rules, from the raw rows.
fn raw_stats(sessions: &[RawSession], params: &[(&str, String)], now: i64) -> Vec<Line> {
    let get = |k: &str| params.iter().find(|(p, _)| *p == k).map(|(_, v)| v.clone());
    let day_of = |s: &RawSession| shanghai_day(s.started_at);
    let parse = |v: String| NaiveDate::parse_from_str(&v, "%Y-%m-%d").unwrap();
    let from = get("from").map(parse);
    let to = get("to").map(parse);
    let period = get("period").unwrap_or_else(|| "total".into());
    let group = get("group").unwrap_or_else(|| "all".into());
    let mut rows: BTreeMap<(String, i64), Sums> = BTreeMap::new();
    for s in sessions {
        if let (Some(level), Some(id)) = (get("level"), get("id")) {
            let id: i64 = id.parse().unwrap();
            let at = match level.as_str() {
                "center" => s.center.0,
                "institute" => s.institute.0,
                _ => s.station.0,
            };
            if at != id {
                continue;
            }
        }
        if from.is_some_and(|f| day_of(s) < f) || to.is_some_and(|t| day_of(s) > t) {
            continue;
        }
        if get("kind").is_some_and(|k| k != s.kind) {
            continue;
        }
        if get("film").is_some_and(|f| f.parse::<i64>().unwrap() != s.film.0) {
            continue;
        }
        let (gid, name) = match group.as_str() {
            "all" => (0, "全部".to_string()),
            "center" => s.center.clone(),
            "institute" => s.institute.clone(),
            "station" => s.station.clone(),
            _ => s.film.clone(),
        };
        let keys: BTreeSet<&str> = s.viewers.iter().map(|v| v.3.as_str()).collect();
        let mut terminals = [0; 4];
        for (i, t) in ["mobile", "pc", "tv"].iter().enumerate() {
            terminals[i] = s
                .viewers
                .iter()
                .filter(|v| v.2 == *t)
                .map(|v| v.3.as_str())
                .collect::<BTreeSet<_>>()
                .len() as i64;
        }
        terminals[3] = s
            .viewers
            .iter()
            .filter(|v| !["mobile", "pc", "tv"].contains(&v.2.as_str()))
            .map(|v| v.3.as_str())
            .collect::<BTreeSet<_>>()
            .len() as i64;
        let ms: i64 = s
            .viewers
            .iter()
            .map(|v| v.1.or(s.ended_at).unwrap_or(now) - v.0)
            .sum();
        let r = rows
            .entry((label(&period, day_of(s)), gid))
            .or_insert_with(|| (name, 0, 0, 0, 0, 0, [0; 4]));
        r.1 += 1;
        r.2 += keys.len() as i64;
        r.3 = r.3.max(s.peak);
        r.4 += ms;
        r.5 += s.in_person;
        for (sum, n) in r.6.iter_mut().zip(terminals) {
            *sum += n;
        }
    }
    rows.into_iter()
        .map(
            |((period, gid), (name, n, online, peak, ms, in_person, t))| {
                (
                    gid,
                    name,
                    period,
                    n,
                    online,
                    peak,
                    (ms.max(0) as f64 / 600.0).round() / 100.0,
                    in_person,
                    online + in_person,
                    t,
                )
            },
        )
        .collect()
}

async fn catalog_stats(catalog: &Catalog, params: &[(&str, String)], now: i64) -> Vec<Line> {
    let map: HashMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let q = StatsQuery::parse(&map).unwrap();
    catalog
        .stats(&q, now)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.group_id,
                r.group_name,
                r.period,
                r.sessions,
                r.online_viewers,
                r.peak_viewers,
                r.viewer_minutes,
                r.in_person,
                r.total_audience,
                [
                    r.terminals.mobile,
                    r.terminals.pc,
                    r.terminals.tv,
                    r.terminals.other,
                ],
            )
        })
        .collect()
}

/// Every grouping x period unfiltered, and each filter with a few groupings; returns how
/// many sessions the unfiltered total counted.
async fn compare_all(db: &catalog_db::TestDb, now: i64, first_day: NaiveDate) -> i64 {
    let raw = load(&db.url).await;
    let any = &raw[raw.len() / 2];
    let film = raw.iter().find(|s| s.film.0 != 0).unwrap().film.0;
    let mid = first_day + chrono::Duration::days(10);
    let end = first_day + chrono::Duration::days(25);
    // Whole months, for the month rollup: from the first 1st after the first day to the
    // last month end before the last, and the same range off by two days at each end.
    let month_from = (first_day + chrono::Duration::days(31))
        .with_day(1)
        .unwrap();
    let today = shanghai_day(now);
    let month_to = today.with_day(1).unwrap().pred_opt().unwrap();
    assert!(month_from < month_to, "{month_from} .. {month_to}");
    let mut cases: Vec<Vec<(&str, String)>> = Vec::new();
    for group in ["all", "center", "institute", "station", "film"] {
        for period in ["total", "day", "week", "month", "quarter", "year"] {
            cases.push(vec![("group", group.into()), ("period", period.into())]);
        }
    }
    let filters: Vec<Vec<(&str, String)>> = vec![
        vec![("level", "center".into()), ("id", any.center.0.to_string())],
        vec![
            ("level", "institute".into()),
            ("id", any.institute.0.to_string()),
        ],
        vec![
            ("level", "station".into()),
            ("id", any.station.0.to_string()),
        ],
        vec![("from", mid.to_string()), ("to", end.to_string())],
        vec![("kind", "film_class".into())],
        vec![("kind", "lecture".into()), ("from", mid.to_string())],
        vec![("film", film.to_string())],
        vec![
            ("from", month_from.to_string()),
            ("to", month_to.to_string()),
        ],
        vec![
            ("from", (month_from - chrono::Duration::days(2)).to_string()),
            ("to", (month_to + chrono::Duration::days(2)).to_string()),
        ],
        vec![
            ("from", (month_from + chrono::Duration::days(2)).to_string()),
            ("to", (month_to - chrono::Duration::days(2)).to_string()),
        ],
        vec![("to", (month_to - chrono::Duration::days(2)).to_string())],
        // Ranges reaching today (the rollups' current month stands for its days so far),
        // and past it into later months.
        vec![
            ("from", (month_from + chrono::Duration::days(2)).to_string()),
            ("to", today.to_string()),
        ],
        vec![
            ("from", month_from.to_string()),
            ("to", (today + chrono::Duration::days(40)).to_string()),
        ],
    ];
    for filter in filters {
        for (group, period) in [
            ("all", "total"),
            ("center", "week"),
            ("station", "day"),
            ("film", "month"),
            ("station", "total"),
            ("institute", "quarter"),
            ("center", "month"),
        ] {
            let mut case = filter.clone();
            case.push(("group", group.into()));
            case.push(("period", period.into()));
            cases.push(case);
        }
    }
    for case in &cases {
        let want = raw_stats(&raw, case, now);
        assert!(!want.is_empty(), "{case:?} selects nothing");
        assert_eq!(
            catalog_stats(&db.catalog, case, now).await,
            want,
            "{case:?}"
        );
    }
    raw_stats(&raw, &[], now)[0].3
}

async fn rollups_agree_with_raw_rows(db: &catalog_db::TestDb) {
    let catalog = &db.catalog;
    let spec = DemoSpec {
        centers: 2,
        institutes: 3,
        stations: 7,
        days: 70,
        seed: 7,
        audience: 1.0,
    };
    let report = catalog.build_demo(&spec, |_| {}).await.unwrap();
    let first_day = shanghai_day(now_ms()) - chrono::Duration::days(70);
    // "Now" is a day ahead so that every demo session (the last may run past today's
    // midnight) is over and freezes, whatever the hour the test runs.
    let now = now_ms() + 86_400_000;
    assert_eq!(
        catalog.freeze_session_figures(now).await.unwrap(),
        report.sessions as u64
    );
    assert_eq!(
        compare_all(db, now, first_day).await,
        report.sessions as i64
    );

    // A frozen session's headcount and film change: its station-day is rebuilt.
    let pool = AnyPool::connect(&db.url).await.unwrap();
    let (old, station): (i64, i64) = sqlx::query_as(
        "SELECT id, station_id FROM sessions WHERE kind = 'lecture' ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (film,): (i64,) = sqlx::query_as("SELECT MAX(id) FROM films")
        .fetch_one(&pool)
        .await
        .unwrap();
    catalog
        .update_session(
            old,
            &SessionUpdate {
                in_person: Some(1234),
                film_id: Some(film),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A session that ended a minute ago (not frozen yet) and one still live.
    let ids = catalog
        .insert_sessions(&[
            SessionFixture {
                station_id: station,
                kind: SessionKind::FilmClass,
                title: "just ended".into(),
                started_at: now - 90 * MIN,
                ended_at: Some(now - MIN),
                peak_viewers: 99,
                in_person: 3,
                film_id: Some(film),
            },
            SessionFixture {
                station_id: station,
                kind: SessionKind::Lecture,
                title: "live".into(),
                started_at: now - 30 * MIN,
                ended_at: None,
                peak_viewers: 2,
                in_person: 0,
                film_id: None,
            },
        ])
        .await
        .unwrap();
    let v = |session, joined, left, terminal, key: &str| ViewerFixture {
        session_id: session,
        joined_at: joined,
        left_at: left,
        terminal,
        viewer_key: key.into(),
    };
    catalog
        .insert_viewers(&[
            v(ids[0], now - 80 * MIN, Some(now - 20 * MIN), "pc", "x"),
            v(ids[0], now - 10 * MIN, None, "pc", "x"),
            v(ids[1], now - 25 * MIN, None, "mobile", "y"),
            v(ids[1], now - 20 * MIN, Some(now - 5 * MIN), "tv", "z"),
        ])
        .await
        .unwrap();
    assert_eq!(
        compare_all(db, now, first_day).await,
        report.sessions as i64 + 2
    );
    // Twenty minutes on, the just-ended session freezes into the rollups; the live one
    // keeps counting from its viewer rows.
    let later = now + 20 * MIN;
    assert_eq!(catalog.freeze_session_figures(later).await.unwrap(), 1);
    assert_eq!(
        compare_all(db, later, first_day).await,
        report.sessions as i64 + 2
    );
    // The rollups hold exactly the frozen sessions, once each.
    let (rolled,): (i64,) =
        sqlx::query_as("SELECT CAST(SUM(sessions) AS BIGINT) FROM station_days")
            .fetch_one(&pool)
            .await
            .unwrap();
    let (per_center,): (i64,) =
        sqlx::query_as("SELECT CAST(SUM(sessions) AS BIGINT) FROM center_days")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((rolled, per_center), (report.sessions as i64 + 1, rolled));
    for table in [
        "all_days",
        "station_periods WHERE span = 1 AND kind = '*'",
        "station_periods WHERE span = 1 AND kind <> '*'",
        "station_periods WHERE span = 3 AND kind = '*'",
        "station_periods WHERE span = 3 AND kind <> '*'",
        "station_periods WHERE span = 12 AND kind = '*'",
        "station_periods WHERE span = 12 AND kind <> '*'",
        "center_months WHERE kind = '*'",
        "center_months WHERE kind <> '*'",
    ] {
        let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT CAST(SUM(sessions) AS BIGINT) FROM {table}"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, rolled, "{table}");
    }
    let (in_person,): (i64,) =
        sqlx::query_as("SELECT CAST(SUM(in_person) AS BIGINT) FROM center_days WHERE film_id = $1")
            .bind(film)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(in_person >= 1234 + 3, "{in_person}");
    pool.close().await;
}

#[tokio::test]
async fn sqlite_rollups_agree_with_raw_rows() {
    let db = catalog_db::sqlite().await;
    rollups_agree_with_raw_rows(&db).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_rollups_agree_with_raw_rows() {
    let db = catalog_db::postgres().await;
    rollups_agree_with_raw_rows(&db).await;
    db.finish().await;
}

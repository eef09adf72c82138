//! Attendance is never dropped: while the catalog refuses writes for 30 s (a locked SQLite
//! file, or a PostgreSQL grant revoked from the server's role) during a lecture that 20 WebRTC viewers join and leave, the events past the
//! memory queue spill to the file and are replayed in order once the database takes writes
//! again; every join and leave is then in the catalog and `/metrics` shows the spill and
//! the replay. A row the database refuses for itself (not an outage) goes to the
//! dead-letter file with the reason while the rest of its batch is written.

mod catalog_db;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{start_server_with, test_media, wait_live, wait_until};
use feiyan::audience::{AudienceEvent, now_ms};
use feiyan::catalog::{DEAD_LETTER_FILE, SPILL_FILE, WriterConfig, spawn_writer};
use feiyan::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};
use feiyan::ids::SessionId;
use sqlx::Connection;

/// The attendance figures of `/metrics`: depth, spilled, replayed, refused.
async fn attendance_metrics(base: &str) -> [u64; 4] {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
            .parse::<u64>()
            .unwrap()
    };
    [
        get("feiyan_audience_queue_depth"),
        get("feiyan_audience_spilled_total"),
        get("feiyan_audience_replayed_total"),
        get("feiyan_audience_refused_total"),
    ]
}

/// How the test makes the catalog refuse the server's writes.
enum Refusal {
    /// Another connection holds SQLite's write lock (`BEGIN EXCLUSIVE`): every write of the
    /// server's waits out its busy timeout and fails with SQLITE_BUSY.
    SqliteLock {
        url: String,
        conn: Option<sqlx::SqliteConnection>,
    },
    /// The server's role loses INSERT and UPDATE on the attendance tables (42501).
    PostgresGrant {
        admin: sqlx::PgConnection,
        role: String,
    },
}

impl Refusal {
    async fn begin(&mut self) {
        match self {
            Refusal::SqliteLock { url, conn } => {
                let conn = conn.insert(sqlx::SqliteConnection::connect(url).await.unwrap());
                sqlx::raw_sql("BEGIN EXCLUSIVE")
                    .execute(conn)
                    .await
                    .unwrap();
            }
            Refusal::PostgresGrant { admin, role } => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "REVOKE INSERT, UPDATE ON viewers, sessions FROM {role}"
                )))
                .execute(admin)
                .await
                .unwrap();
            }
        }
    }

    async fn end(&mut self) {
        match self {
            Refusal::SqliteLock { conn, .. } => {
                let mut conn = conn.take().unwrap();
                sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Refusal::PostgresGrant { admin, role } => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "GRANT INSERT, UPDATE ON viewers, sessions TO {role}"
                )))
                .execute(admin)
                .await
                .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_for_30_s_loses_no_attendance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/feiyan.db", dir.path().display());
    let lock = Refusal::SqliteLock {
        url: url.clone(),
        conn: None,
    };
    refused_for_30_s_loses_no_attendance(&url, dir.path(), lock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revoked_grant_for_30_s_loses_no_attendance() {
    let db = catalog_db::postgres().await;
    let role = format!("feiyan_att_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN; \
         GRANT USAGE, CREATE ON SCHEMA public TO {role}; \
         GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let url = format!("{scheme}://{role}@{host}");
    let state = tempfile::tempdir().unwrap();
    refused_for_30_s_loses_no_attendance(
        &url,
        state.path(),
        Refusal::PostgresGrant {
            admin,
            role: role.clone(),
        },
    )
    .await;
    db.finish().await;
    let mut admin = sqlx::PgConnection::connect(&catalog_db::postgres_admin_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// The lecture, the 30 s refusal and the checks, on the catalog at `url` with the state
/// folder `state`.
async fn refused_for_30_s_loses_no_attendance(url: &str, state: &Path, mut refusal: Refusal) {
    let t = {
        let (url, state) = (url.to_string(), state.to_path_buf());
        start_server_with(move |c| {
            c.catalog.database_url = url;
            c.catalog.state_dir = Some(state);
            c.catalog.audience_queue_depth = 16;
        })
        .await
    };
    let media_dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        test_media(media_dir.path()).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&t.base, &channel).await;

    refusal.begin().await;
    let locked_at = Instant::now();

    let whep = format!("{}/whep/{channel}", t.base);
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(
            WhepViewer::connect(&whep, None, ViewerOptions::default())
                .await
                .expect("viewer connects"),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for viewer in viewers.drain(..10) {
        viewer.close().await.expect("viewer DELETE");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for viewer in viewers.drain(..) {
        viewer.close().await.expect("viewer DELETE");
    }
    publisher.stop().await.expect("publisher DELETE");
    // 20 joins, 20 leaves and the session's end are queued: 16 in memory, the rest spilled.
    let queued = wait_until(Duration::from_secs(10), || async {
        let m = attendance_metrics(&t.base).await;
        m[0] == 41 && m[1] == 25
    })
    .await;
    let during = attendance_metrics(&t.base).await;
    assert!(queued, "41 events queued during the outage: {during:?}");
    assert_eq!(during[1], 41 - 16, "spilled past the depth: {during:?}");
    assert_eq!(during[3], 0, "nothing refused: {during:?}");
    let spill = state.join(SPILL_FILE);
    let lines = std::fs::read_to_string(&spill).unwrap().lines().count();
    assert_eq!(lines, 25, "the spilled events are in {}", spill.display());
    assert!(
        t.server
            .catalog
            .session_viewers(session)
            .await
            .unwrap()
            .is_empty(),
        "nothing written while locked"
    );

    let hold = Duration::from_secs(30).saturating_sub(locked_at.elapsed());
    tokio::time::sleep(hold).await;
    refusal.end().await;
    let released = Instant::now();

    let catalog = t.server.catalog.clone();
    let written = wait_until(Duration::from_secs(20), || {
        let catalog = catalog.clone();
        async move {
            let rows = catalog.session_viewers(session).await.unwrap();
            let s = catalog.session_summary(session, 0).await.unwrap().unwrap();
            rows.len() == 20 && rows.iter().all(|r| r.1.is_some()) && !s.live
        }
    })
    .await;
    let rows = catalog.session_viewers(session).await.unwrap();
    assert!(written, "every join and leave is written: {rows:?}");
    eprintln!(
        "written {:.1} s after the lock was released",
        released.elapsed().as_secs_f64()
    );
    for (joined, left, _) in &rows {
        assert!(left.unwrap() >= *joined, "{rows:?}");
    }
    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.viewer_sessions, 20, "{summary:?}");
    assert_eq!(summary.peak_viewers, 20, "{summary:?}");
    let after = attendance_metrics(&t.base).await;
    eprintln!(
        "attendance metrics during {during:?}, after {after:?} (depth, spilled, replayed, refused)"
    );
    assert_eq!(after, [0, 25, 25, 0], "spilled and replayed, none refused");
    assert!(!state.join(DEAD_LETTER_FILE).exists());
    // The spool thread empties the file on its next turn after the rows are written.
    let emptied = common::wait_until(Duration::from_secs(5), || async {
        std::fs::read(&spill).map(|b| b.len()).unwrap_or(0) == 0
    })
    .await;
    assert!(emptied, "the spill file is emptied once replayed");
    t.server.shutdown().await;
    assert!(!spill.exists(), "a clean shutdown removes the spill file");
}

/// A join for a session that does not exist violates a foreign key: the batch is retried,
/// then written row by row; that row goes to the dead-letter file with the reason, and the
/// rows around it are written.
async fn a_refused_row_is_dead_lettered(db: catalog_db::TestDb) {
    let catalog = &db.catalog;
    let station = catalog.add_station("中心", "所", "站").await.unwrap();
    let session = catalog_db::open_lecture(catalog, &station, now_ms()).await;
    let state = tempfile::tempdir().unwrap();
    let (mut sink, writer) = spawn_writer(
        catalog.clone(),
        WriterConfig {
            state_dir: state.path().to_path_buf(),
            queue_depth: 16,
            write_retries: 2,
        },
    )
    .unwrap();
    let join = |sink: &mut feiyan::audience::AudienceSink, session: SessionId| {
        let id = sink.viewer_id();
        sink.push(AudienceEvent::ViewerJoined {
            id,
            session,
            at_ms: now_ms(),
            terminal: "pc",
            viewer_key: format!("v{}", id.0),
            client_hash: String::new(),
        });
        id
    };
    let good = join(&mut sink, session);
    let bad = join(&mut sink, SessionId(9_999_999));
    let also_good = join(&mut sink, session);
    for id in [good, also_good] {
        sink.push(AudienceEvent::ViewerLeft {
            id,
            at_ms: now_ms() + 1,
        });
    }
    drop(sink);
    assert!(writer.finish(Duration::from_secs(30)).await, "all handled");
    let rows = catalog.session_viewers(session).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.1.is_some()), "{rows:?}");
    let letters = std::fs::read_to_string(state.path().join(DEAD_LETTER_FILE)).unwrap();
    let lines: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{letters}");
    assert_eq!(lines[0]["event"], "joined");
    assert_eq!(lines[0]["id"], bad.0);
    let reason = lines[0]["reason"].as_str().unwrap().to_lowercase();
    assert!(reason.contains("foreign key"), "{reason}");
    assert_eq!(catalog.attendance_counters().snapshot()[3].3, 1);
    assert!(!state.path().join(SPILL_FILE).exists());
    db.finish().await;
}

#[tokio::test]
async fn sqlite_refused_row_is_dead_lettered() {
    a_refused_row_is_dead_lettered(catalog_db::sqlite().await).await;
}

#[tokio::test]
async fn postgres_refused_row_is_dead_lettered() {
    a_refused_row_is_dead_lettered(catalog_db::postgres().await).await;
}

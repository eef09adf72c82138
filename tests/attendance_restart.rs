//! The real `feiyan` binary under a lecture with 20 WebRTC viewers, stopped two ways:
//! - `kill -9`: after a restart the rows it left open are closed at its last heartbeat
//!   (by the database's clock, once `[cluster] gone_after_secs` passed), rows already
//!   closed keep their times, and nothing is counted twice;
//! - SIGTERM: every queued row is written before the process exits (every viewer row
//!   closed, the session ended), and it exits 0;
//! - SIGTERM while the catalog is locked: what the database refused until the end is left
//!   in the spill file, and the next start replays it before anything else.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::served::Served;
use common::{test_media, wait_live, wait_until};
use feiyan::catalog::{Catalog, NewStation, SPILL_FILE};
use feiyan::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};
use feiyan::ids::SessionId;
use sqlx::Connection;

/// A temp folder with the catalog, the config and the server's state.
struct Setup {
    dir: tempfile::TempDir,
    url: String,
    config: PathBuf,
    catalog: Catalog,
    station: NewStation,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/feiyan.db", dir.path().display());
    let config = dir.path().join("feiyan.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [webrtc]\nudp_bind = \"127.0.0.1:0\"\nadvertised_ips = [\"127.0.0.1\"]\n\
             [ingest]\nrtmp_listen = \"127.0.0.1:0\"\n\
             [catalog]\ndatabase_url = \"{url}\"\naudience_queue_depth = 16\n\
             [cluster]\nheartbeat_secs = 1\ngone_after_secs = 5\n"
        ),
    )
    .unwrap();
    let catalog = Catalog::connect(&url).await.unwrap();
    let station = catalog
        .add_station("重启中心", "重启所", "重启站")
        .await
        .unwrap();
    Setup {
        dir,
        url,
        config,
        catalog,
        station,
    }
}

/// Starts `feiyan serve` and returns it with its base URL (read from what it prints).
fn serve(config: &Path) -> (Served, String) {
    let mut served = Served::start(
        config,
        &[
            ("FEIYAN_DATABASE_URL", None),
            (
                "RUST_LOG",
                Some("warn,rtc=error,rtc_ice=error,rtc_dtls=off"),
            ),
        ],
    );
    let base = served.wait_running().base;
    (served, base)
}

/// A lecture with 20 viewers on the server at `base`, once the relay counts all of them.
async fn lecture(s: &Setup, base: &str) -> (WhipPublisher, Vec<WhepViewer>, SessionId) {
    let channel = s.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/{channel}"),
        Some(&s.station.stream_key),
        test_media(s.dir.path()).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let session = wait_live(base, &channel).await;
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(
            WhepViewer::connect(
                &format!("{base}/whep/{channel}"),
                None,
                ViewerOptions::default(),
            )
            .await
            .expect("viewer connects"),
        );
    }
    let counted = wait_until(Duration::from_secs(10), || async {
        let live: serde_json::Value = reqwest::get(format!("{base}/api/live"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        live[0]["viewers"] == 20
    })
    .await;
    assert!(counted, "the relay counts 20 viewers");
    // A viewer's row starts at the first packet it is sent: wait until every one has one.
    let receiving = wait_until(Duration::from_secs(10), || async {
        viewers.iter().all(|v| v.stats().video.counters.packets > 0)
    })
    .await;
    assert!(receiving, "every viewer receives media");
    (publisher, viewers, session)
}

/// Viewer rows of `session` as (id, joined, left), and the session's (ended, peak, node).
async fn rows(
    pool: &sqlx::AnyPool,
    session: SessionId,
) -> (Vec<(i64, i64, Option<i64>)>, (Option<i64>, i64, i64)) {
    let viewers = sqlx::query_as(
        "SELECT id, joined_at, left_at FROM viewers WHERE session_id = $1 ORDER BY id",
    )
    .bind(session.0)
    .fetch_all(pool)
    .await
    .unwrap();
    let s = sqlx::query_as("SELECT ended_at, peak_viewers, node_id FROM sessions WHERE id = $1")
        .bind(session.0)
        .fetch_one(pool)
        .await
        .unwrap();
    (viewers, s)
}

/// SIGTERM, and a clean exit within `within`.
fn stop(served: &mut Served, within: Duration) {
    served.signal(libc::SIGTERM);
    let status = served
        .wait_exit(within)
        .unwrap_or_else(|| panic!("exits within {} s", within.as_secs()));
    assert!(status.success(), "{status}");
}

/// Every join of the lecture is written and every row closed; the session ended with its
/// peak of 20.
async fn assert_all_written(pool: &sqlx::AnyPool, session: SessionId) {
    let (v, (ended, peak, _)) = rows(pool, session).await;
    assert_eq!(v.len(), 20, "every join is written: {v:?}");
    assert!(v.iter().all(|r| r.2.is_some()), "every row closed: {v:?}");
    assert!(ended.is_some(), "the session ended");
    assert_eq!(peak, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rows_close_at_the_last_heartbeat_after_restart() {
    let s = setup().await;
    let pool = sqlx::AnyPool::connect(&s.url).await.unwrap();
    let (mut served, base) = serve(&s.config);
    let (publisher, mut viewers, session) = lecture(&s, &base).await;
    // Five leave before the crash: their rows keep their own leave times.
    for viewer in viewers.drain(..5) {
        viewer.close().await.expect("viewer DELETE");
    }
    let written = wait_until(Duration::from_secs(10), || async {
        let (v, _) = rows(&pool, session).await;
        v.len() == 20 && v.iter().filter(|r| r.2.is_some()).count() == 5
    })
    .await;
    assert!(written, "20 rows, 5 closed, before the crash");
    // Let a heartbeat or two land after the last join.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    served.signal(libc::SIGKILL);
    served.wait_exit(Duration::from_secs(10)).expect("killed");
    let (before, (ended, _, node)) = rows(&pool, session).await;
    assert_eq!(ended, None);
    let (seen,): (i64,) = sqlx::query_as("SELECT seen_at FROM relay_nodes WHERE id = $1")
        .bind(node)
        .fetch_one(&pool)
        .await
        .unwrap();
    publisher.stop_sending();
    drop(publisher);
    drop(viewers);

    let (mut served, base) = serve(&s.config);
    let closed = wait_until(Duration::from_secs(20), || async {
        rows(&pool, session).await.1.0.is_some()
    })
    .await;
    assert!(
        closed,
        "the crashed server's session is closed after restart"
    );
    // One more heartbeat period: a second pass must change nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (after, (ended, peak, _)) = rows(&pool, session).await;
    assert_eq!(ended, Some(seen), "the session ends at the last heartbeat");
    assert_eq!(after.len(), 20, "nothing counted twice: {after:?}");
    assert_eq!(peak, 20);
    for ((id, joined, left_before), (id2, joined2, left)) in before.iter().zip(&after) {
        assert_eq!((id, joined), (id2, joined2));
        match left_before {
            Some(t) => assert_eq!(left, &Some(*t), "a closed row keeps its leave time"),
            None => assert_eq!(
                *left,
                Some(seen.max(*joined)),
                "an open row closes at the last heartbeat"
            ),
        }
    }
    let summary = s
        .catalog
        .session_summary(session, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.viewer_sessions, 20, "{summary:?}");
    assert_eq!(summary.unique_viewers, 20, "{summary:?}");
    let api: serde_json::Value = reqwest::get(format!("{base}/api/sessions/{}", session.0))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["live"], false);
    // Viewer figures are for administrators in scope (tests/api_scope.rs).
    assert!(api["peak_viewers"].is_null(), "{api}");
    stop(&mut served, Duration::from_secs(20));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_every_queued_row() {
    let s = setup().await;
    let pool = sqlx::AnyPool::connect(&s.url).await.unwrap();
    let (mut served, base) = serve(&s.config);
    let (publisher, viewers, session) = lecture(&s, &base).await;
    stop(&mut served, Duration::from_secs(30));
    assert_all_written(&pool, session).await;
    assert!(!s.dir.path().join(SPILL_FILE).exists());
    publisher.stop_sending();
    drop((publisher, viewers));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_locked_keeps_attendance_for_the_next_start() {
    let s = setup().await;
    let pool = sqlx::AnyPool::connect(&s.url).await.unwrap();
    let (mut served, base) = serve(&s.config);
    let mut lock = sqlx::SqliteConnection::connect(&s.url).await.unwrap();
    let (publisher, viewers, session) = lecture(&s, &base).await;
    // Locked from after the session opened until after the server is gone.
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    stop(&mut served, Duration::from_secs(40));
    let spill = std::fs::read_to_string(s.dir.path().join(SPILL_FILE)).unwrap();
    // The joins may have been written before the lock; the leaves and the end were not.
    let kept = spill.lines().count();
    assert!(
        kept >= 21,
        "leaves and the end kept in the spill file:\n{spill}"
    );
    sqlx::raw_sql("COMMIT").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    publisher.stop_sending();
    drop((publisher, viewers));

    // The next start replays them before it serves.
    let (mut served, _base) = serve(&s.config);
    assert_all_written(&pool, session).await;
    stop(&mut served, Duration::from_secs(20));
    assert!(!s.dir.path().join(SPILL_FILE).exists());
    eprintln!("{kept} events kept in the spill file over the restart");
    pool.close().await;
}

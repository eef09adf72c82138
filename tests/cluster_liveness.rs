//! Liveness by the database's clock: two servers share a catalog, one with a clock ten
//! minutes off (its session and viewer times are stamped by its own clock). Heartbeats
//! store the database's time, so neither server finds the other gone however far their
//! clocks disagree; once one falls silent, the other closes its rows at its last heartbeat.
//! On SQLite and on PostgreSQL.

mod catalog_db;

use std::time::Duration;

use feiyan::audience::now_ms;
use feiyan::catalog::Catalog;

/// Ten minutes, the skewed server's clock error.
const SKEW_MS: i64 = 600_000;

async fn a_skewed_clock_closes_nothing(db: catalog_db::TestDb, skew: i64) {
    let honest = &db.catalog;
    let skewed = Catalog::connect(&db.url).await.unwrap();
    let skewed_now = || now_ms() + skew;
    let honest_node = honest.register_node().await.unwrap() as i64;
    let skewed_node = skewed.register_node().await.unwrap() as i64;
    let station_h = honest
        .add_station("时钟中心", "时钟所", "准站")
        .await
        .unwrap();
    let station_s = honest
        .add_station("时钟中心", "时钟所", "偏站")
        .await
        .unwrap();
    let sh = catalog_db::open_lecture(honest, &station_h, now_ms())
        .await
        .0;
    let ss = catalog_db::open_lecture(&skewed, &station_s, skewed_now())
        .await
        .0;
    let viewer = catalog_db::open_viewer;
    honest
        .insert_viewers(&[
            viewer(sh, now_ms(), "honest-viewer"),
            viewer(ss, skewed_now(), "skewed-viewer"),
        ])
        .await
        .unwrap();

    // Both note themselves alive, then each looks for gone servers with a 5 s limit, as a
    // test cluster does; the skewed one several times over two seconds.
    for _ in 0..4 {
        honest.heartbeat().await.unwrap();
        skewed.heartbeat().await.unwrap();
        assert_eq!(skewed.close_gone(5_000).await.unwrap(), 0, "skewed closes");
        assert_eq!(honest.close_gone(5_000).await.unwrap(), 0, "honest closes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let seen = |node: i64| catalog_db::node_seen_at(&pool, node);
    // Both heartbeats carry the database's time, within the second they were written.
    let db_now = honest.database_now_ms().await.unwrap();
    for node in [honest_node, skewed_node] {
        let at = seen(node).await;
        assert!(
            (db_now - at).abs() < 2_000,
            "node {node} seen at {at}, database now {db_now}"
        );
    }
    let open_rows = |session: i64| {
        let pool = pool.clone();
        async move {
            let (sessions,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM sessions WHERE id = $1 AND ended_at IS NULL")
                    .bind(session)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let (viewers,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM viewers WHERE session_id = $1 AND left_at IS NULL",
            )
            .bind(session)
            .fetch_one(&pool)
            .await
            .unwrap();
            (sessions, viewers)
        }
    };
    assert_eq!(
        open_rows(sh).await,
        (1, 1),
        "the honest server's rows stay open"
    );
    assert_eq!(
        open_rows(ss).await,
        (1, 1),
        "the skewed server's rows stay open"
    );

    // The skewed server falls silent; more than a second later (by the database) the
    // honest one finds it gone and closes its rows at its last heartbeat, or at their
    // start where its clock put that later.
    let last = seen(skewed_node).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    honest.heartbeat().await.unwrap();
    assert_eq!(honest.close_gone(1_000).await.unwrap(), 1);
    assert_eq!(
        open_rows(sh).await,
        (1, 1),
        "the honest server's rows stay open"
    );
    assert_eq!(open_rows(ss).await, (0, 0));
    let (ended, started): (i64, i64) =
        sqlx::query_as("SELECT ended_at, started_at FROM sessions WHERE id = $1")
            .bind(ss)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(ended, last.max(started));
    pool.close().await;
    drop(skewed);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_clock_ahead_closes_nothing() {
    a_skewed_clock_closes_nothing(catalog_db::sqlite().await, SKEW_MS).await;
}

#[tokio::test]
async fn sqlite_clock_behind_closes_nothing() {
    a_skewed_clock_closes_nothing(catalog_db::sqlite().await, -SKEW_MS).await;
}

#[tokio::test]
async fn postgres_clock_ahead_closes_nothing() {
    a_skewed_clock_closes_nothing(catalog_db::postgres().await, SKEW_MS).await;
}

#[tokio::test]
async fn postgres_clock_behind_closes_nothing() {
    a_skewed_clock_closes_nothing(catalog_db::postgres().await, -SKEW_MS).await;
}

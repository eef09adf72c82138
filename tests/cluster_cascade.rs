//! The cascade (issue 24): origin -> edge over one signed WHEP pull, `feiyan serve`
//! processes on loopback sharing one fresh PostgreSQL database (`heartbeat_secs = 1`,
//! `gone_after_secs = 5`).
//!
//! - The publisher on the origin drops and comes back within the grace, once at once and
//!   once after longer than the edge waits for media: the edge's viewers keep their
//!   connections (no new viewer rows, no SSRC change) and get the returning publisher's
//!   bytes, all in one catalog session.
//! - The origin is killed (`SIGKILL`): when the channel goes live on another node the edge
//!   pulls from there, and its viewers, on the same connections, get the new publisher's
//!   bytes and count in the new session.
//! - With `max_edges_per_origin = 1`, a third node pulls from the edge already carrying
//!   the channel: the origin serves exactly one pull, and the third node's viewers get the
//!   publisher's bytes.

mod catalog_db;
mod common;

use std::time::Duration;

use feiyan::client::{TrackKind, WhepViewer};
use sqlx::PgPool;

use common::cluster::*;

async fn sessions_of(pool: &PgPool, channel: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE channel = $1")
        .bind(channel)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// How many video payloads each viewer has received so far.
fn counts(viewers: &[WhepViewer]) -> Vec<usize> {
    viewers
        .iter()
        .map(|v| v.received_payloads(TrackKind::Video).len())
        .collect()
}

/// Waits until each viewer received 100 more video payloads (over 2 s of the test media)
/// than `before` (what it had when the publisher now sending started, so they are its).
async fn wait_receiving(what: &str, before: &[usize], viewers: &[WhepViewer]) {
    wait_for(what, Duration::from_secs(20), async || {
        counts(viewers)
            .iter()
            .zip(before)
            .all(|(now, then)| *now >= then + 100)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_viewers_survive_a_publisher_reconnect_on_the_origin() {
    let db = catalog_db::postgres().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let station = db
        .catalog
        .add_station("级联中心", "级联所", "级联站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_node(&db.url, 0);
    let b = start_node(&db.url, 0);
    let id_b = node_id(&pool, &b.base).await;
    let dir = tempfile::tempdir().unwrap();

    let first = publish(&a.base, &channel, &station.stream_key, dir.path())
        .await
        .expect("publisher on A");
    let session = common::wait_live(&a.base, &channel).await;
    let viewers = vec![
        viewer(&b.base, &channel, &device_id(&b.base, &channel).await).await,
        viewer(&b.base, &channel, &device_id(&b.base, &channel).await).await,
    ];
    wait_receiving("B's viewers get the first publisher", &[0, 0], &viewers).await;
    for (i, v) in viewers.iter().enumerate() {
        assert_byte_identical(&first, v, &format!("viewer {i} on B"));
    }

    // Back at once (the edge's pull stays up), then after longer than the edge waits for
    // media (it reconnects its pull to the same session).
    let mut publishers = vec![first];
    for (round, gap) in [(1, Duration::from_millis(500)), (2, Duration::from_secs(7))] {
        publishers
            .last()
            .unwrap()
            .stop()
            .await
            .expect("publisher DELETE");
        tokio::time::sleep(gap).await;
        let before = counts(&viewers);
        let next = publish(&a.base, &channel, &station.stream_key, dir.path())
            .await
            .unwrap_or_else(|e| panic!("publisher {round} returns on A: {e}"));
        assert_eq!(
            common::wait_live(&a.base, &channel).await,
            session,
            "round {round}: the returning publisher continues the session"
        );
        publishers.push(next);
        wait_receiving(
            &format!("round {round}: B's viewers get the returning publisher"),
            &before,
            &viewers,
        )
        .await;
        let all: Vec<&feiyan::client::WhipPublisher> = publishers.iter().collect();
        for (i, v) in viewers.iter().enumerate() {
            let stats = v.stats();
            assert_eq!(stats.video.ssrc_changes, 0, "round {round} viewer {i}");
            assert_eq!(stats.audio.ssrc_changes, 0, "round {round} viewer {i}");
            assert_sent_by(&all, v, &format!("round {round} viewer {i}"));
        }
    }
    // One session, B's two viewers attending it again (a viewer's row closes while its
    // source is away and a new one opens when it returns, as on a single node), counted
    // once each.
    assert_eq!(sessions_of(&pool, &channel).await, 1, "one session");
    wait_for(
        "B's viewers attend again",
        Duration::from_secs(10),
        async || rows_of(&pool, id_b).await.0 == 2,
    )
    .await;
    let summary = db
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unique_viewers, 2, "{summary:?}");
    assert_eq!(
        metric(&a.base, "feiyan_cluster_pulls_served").await,
        1,
        "A serves B's one pull"
    );
    publishers.last().unwrap().stop().await.unwrap();
    for v in &viewers {
        v.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_loses_its_origin_pulls_from_the_next_one() {
    let db = catalog_db::postgres().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let station = db
        .catalog
        .add_station("级联中心", "级联所", "断源站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_node(&db.url, 0);
    let b = start_node(&db.url, 0);
    let c = start_node(&db.url, 0);
    let id_b = node_id(&pool, &b.base).await;
    let dir = tempfile::tempdir().unwrap();

    let first = publish(&a.base, &channel, &station.stream_key, dir.path())
        .await
        .expect("publisher on A");
    common::wait_live(&a.base, &channel).await;
    let viewers = vec![
        viewer(&b.base, &channel, &device_id(&b.base, &channel).await).await,
        viewer(&b.base, &channel, &device_id(&b.base, &channel).await).await,
    ];
    wait_receiving("B's viewers get A's publisher", &[0, 0], &viewers).await;

    // A dies; the publisher goes to C, which takes the channel once A is gone.
    a.served.signal(libc::SIGKILL);
    first.stop_sending();
    let before = counts(&viewers);
    let started = std::time::Instant::now();
    let next = loop {
        match publish(&c.base, &channel, &station.stream_key, dir.path()).await {
            Ok(p) => break p,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(40),
                    "C never took the channel: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    wait_receiving("B's viewers get C's publisher", &before, &viewers).await;
    for (i, v) in viewers.iter().enumerate() {
        let stats = v.stats();
        assert_eq!(stats.video.ssrc_changes, 0, "viewer {i}: {:?}", stats.video);
        assert_sent_by(
            &[&first, &next],
            v,
            &format!("viewer {i} on B after A died"),
        );
    }
    // The same connections, now counted in C's session: B's two open rows are there.
    let session = common::wait_live(&c.base, &channel).await;
    wait_for(
        "B's viewers counted in C's session",
        Duration::from_secs(10),
        async || {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM viewers WHERE node_id = $1 AND session_id = $2 AND left_at IS NULL",
            )
            .bind(id_b)
            .bind(session.0)
            .fetch_one(&pool)
            .await
            .unwrap()
                == 2
        },
    )
    .await;
    assert_eq!(metric(&c.base, "feiyan_cluster_pulls_served").await, 1);
    next.stop().await.unwrap();
    for v in &viewers {
        v.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_pull_from_edges_past_max_edges_per_origin() {
    let db = catalog_db::postgres().await;
    let station = db
        .catalog
        .add_station("级联中心", "级联所", "树形站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let one = "max_edges_per_origin = 1\n";
    let a = start_node_with(&db.url, one);
    let b = start_node_with(&db.url, one);
    let c = start_node_with(&db.url, one);
    let dir = tempfile::tempdir().unwrap();

    let publisher = publish(&a.base, &channel, &station.stream_key, dir.path())
        .await
        .expect("publisher on A");
    common::wait_live(&a.base, &channel).await;
    let on_b = vec![viewer(&b.base, &channel, &device_id(&b.base, &channel).await).await];
    wait_receiving("B's viewer gets A's publisher", &[0], &on_b).await;
    // C learns from the registry that B carries the channel (B's next heartbeat).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_c = vec![
        viewer(&c.base, &channel, &device_id(&c.base, &channel).await).await,
        viewer(&c.base, &channel, &device_id(&c.base, &channel).await).await,
    ];
    wait_receiving("C's viewers get A's publisher through B", &[0, 0], &on_c).await;
    for (i, v) in on_b.iter().chain(&on_c).enumerate() {
        assert_byte_identical(&publisher, v, &format!("viewer {i}"));
    }
    // A fed exactly one edge (B); B fed C.
    assert_eq!(metric(&a.base, "feiyan_cluster_pulls_served").await, 1);
    assert_eq!(
        metric(&a.base, "feiyan_cluster_pulls_served_total").await,
        1
    );
    assert_eq!(metric(&b.base, "feiyan_cluster_pulls_served").await, 1);
    assert_eq!(metric(&c.base, "feiyan_cluster_pulls_served").await, 0);
    assert_eq!(metric(&c.base, "feiyan_cluster_edges").await, 1);
    publisher.stop().await.unwrap();
    for v in on_b.iter().chain(&on_c) {
        v.close().await.unwrap();
    }
}

//! The catalog side of a cluster, on PostgreSQL: one origin per channel (a second node's
//! claim is refused with the origin's URL, taken over once that node is gone, released when
//! its session ends), leases (one holder, taken over after `gone_after`), and a single
//! server (no `join_cluster`) that always holds its claims and leases.

mod catalog_db;

use std::time::Duration;

use feiyan::audience::now_ms;
use feiyan::catalog::{Catalog, CatalogError, NodeLoad};

const GONE_AFTER_MS: i64 = 1_500;

async fn member(url: &str, node_url: &str) -> Catalog {
    let catalog = Catalog::connect(url).await.unwrap();
    catalog.register_node().await.unwrap();
    catalog
        .join_cluster(node_url, "127.0.0.1:5000", 0, GONE_AFTER_MS)
        .await
        .unwrap();
    catalog
}

#[tokio::test]
async fn claims_and_leases_have_one_holder_and_move_when_it_is_gone() {
    let db = catalog_db::postgres().await;
    let a = member(&db.url, "http://node-a:8080").await;
    let b = member(&db.url, "http://node-b:8080").await;
    let station = a.add_station("集群中心", "集群所", "认领站").await.unwrap();
    let channel = &station.channel;

    // A goes live: its claim; B is refused with A named, and sees A as the origin.
    let on_a = catalog_db::open_lecture(&a, &station, now_ms()).await;
    a.claim_channel(channel, on_a).await.unwrap();
    let on_b = catalog_db::open_lecture(&b, &station, now_ms()).await;
    match b.claim_channel(channel, on_b).await {
        Err(CatalogError::Conflict(why)) => assert!(why.contains("http://node-a:8080"), "{why}"),
        other => panic!("B's claim: {other:?}"),
    }
    let origin = b
        .channel_origin(channel)
        .await
        .unwrap()
        .expect("A is origin");
    assert_eq!(
        (origin.node_url.as_str(), origin.session),
        ("http://node-a:8080", on_a)
    );
    assert_eq!(
        a.channel_origin(channel).await.unwrap(),
        None,
        "not elsewhere"
    );

    // One holder per lease.
    assert!(a.take_lease("source:1").await.unwrap());
    assert!(!b.take_lease("source:1").await.unwrap());
    assert!(a.take_lease("source:1").await.unwrap());

    // A falls silent; once gone (by the database's clock) B takes the lease and the channel.
    let silent = std::time::Instant::now();
    loop {
        b.report_load(&NodeLoad::default()).await.unwrap();
        if b.take_lease("source:1").await.unwrap() {
            break;
        }
        assert!(
            silent.elapsed() < Duration::from_secs(10),
            "lease not taken over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(silent.elapsed() >= Duration::from_millis(GONE_AFTER_MS as u64 - 200));
    b.claim_channel(channel, on_b).await.unwrap();
    assert_eq!(b.channel_origin(channel).await.unwrap(), None);

    // B's session ends: its claim goes with the next heartbeat's release.
    b.close_session(on_b, now_ms()).await.unwrap();
    assert_eq!(b.release_ended_claims().await.unwrap(), 1);
    let nodes = b.cluster_nodes().await.unwrap();
    let alive: Vec<(&str, bool)> = nodes
        .iter()
        .map(|n| (n.node_url.as_str(), n.alive))
        .collect();
    assert_eq!(
        alive,
        vec![("http://node-b:8080", true), ("http://node-a:8080", false)]
    );
    drop((a, b));
    db.finish().await;
}

#[tokio::test]
async fn a_single_server_holds_every_claim_and_lease() {
    let db = catalog_db::sqlite().await;
    let one = &db.catalog;
    one.register_node().await.unwrap();
    let station = one
        .add_station("单机中心", "单机所", "单机站")
        .await
        .unwrap();
    let session = catalog_db::open_lecture(one, &station, now_ms()).await;
    one.claim_channel(&station.channel, session).await.unwrap();
    assert!(one.take_lease("source:1").await.unwrap());
    // Its predecessor's rows (a restart within gone_after) never lock it out.
    let next = Catalog::connect(&db.url).await.unwrap();
    next.register_node().await.unwrap();
    next.claim_channel(&station.channel, session).await.unwrap();
    assert!(next.take_lease("source:1").await.unwrap());
    assert_eq!(next.channel_origin(&station.channel).await.unwrap(), None);
    drop(next);
    db.finish().await;
}

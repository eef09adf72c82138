//! Nodes in a cluster (issue 24): three `feiyan serve` processes on loopback sharing one
//! fresh PostgreSQL database (`heartbeat_secs = 1`, `gone_after_secs = 5`).
//!
//! A WHIP publisher on A; WHEP viewers on B and C get its payloads byte for byte through
//! one signed pull per edge (A serves exactly two); one catalog session whose viewer rows
//! name their nodes; its peak is the most at once across nodes; a second publisher on B
//! gets 409 naming A; a pull source runs on one node; a node at `max_viewers` answers 307
//! and the client follows it; C killed with SIGKILL has its rows closed within the window
//! and its viewers come back on B without counting twice; unsigned or badly signed pulls
//! get 401; a short secret or a member without `node_url` does not start.

mod catalog_db;
mod common;

use std::time::{Duration, Instant};

use feiyan::client::{PublisherOptions, WhipPublisher};
use sqlx::PgPool;

use common::cluster::*;
use common::served::Served;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_audience() {
    let db = catalog_db::postgres().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let station = db
        .catalog
        .add_station("集群中心", "集群所", "集群站")
        .await
        .unwrap();
    let other = db
        .catalog
        .add_station("集群中心", "集群所", "拉流站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_node(&db.url, 0);
    let b = start_node(&db.url, 0);
    let c = start_node(&db.url, 3);
    let (id_a, id_b, id_c) = (
        node_id(&pool, &a.base).await,
        node_id(&pool, &b.base).await,
        node_id(&pool, &c.base).await,
    );

    // A pull source runs on the one node holding its lease.
    let source = db
        .catalog
        .add_source(&other.channel, "http://127.0.0.1:9/none.ts", 4, 0)
        .await
        .unwrap();
    let lease = format!("source:{}", source.id.0);
    wait_for(
        "the source's lease is taken",
        Duration::from_secs(10),
        async || {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM cluster_leases WHERE name = $1")
                .bind(&lease)
                .fetch_one(&pool)
                .await
                .unwrap()
                == 1
        },
    )
    .await;

    // The publisher on A.
    let dir = tempfile::tempdir().unwrap();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}?title=cluster", a.base),
        Some(&station.stream_key),
        media(dir.path()).await,
        PublisherOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("publisher on A");
    let session = common::wait_live(&a.base, &channel).await;

    // A second publisher on B: 409 naming A.
    let second = WhipPublisher::connect(
        &format!("{}/whip/{channel}", b.base),
        Some(&station.stream_key),
        media(dir.path()).await,
        PublisherOptions::default(),
    )
    .await;
    let err = second.err().expect("second publisher refused").to_string();
    assert!(err.contains("409") && err.contains(&a.base), "{err}");

    // An RTMP publisher on B is refused too, the origin named.
    let rtmp = b
        .served
        .stderr()
        .lines()
        .find_map(|l| l.split("RTMP ingest listening rtmp=").nth(1))
        .expect("B's RTMP address")
        .trim()
        .to_string();
    let clip = common::rtmp::make_media(dir.path(), 2);
    let mut refused = common::rtmp::push_rtmp(
        &clip,
        &format!("rtmp://{rtmp}/live/{channel}?key={}", station.stream_key),
    );
    let status = tokio::task::spawn_blocking(move || refused.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "ffmpeg to B is refused");
    wait_for(
        "B logs the refusal naming A",
        Duration::from_secs(5),
        async || {
            b.served.stderr().lines().any(|l| {
                l.contains("RTMP")
                    && l.contains("already live on another node")
                    && l.contains(&a.base)
            })
        },
    )
    .await;

    // B and C say the channel is live (the watch page starts there) before they pull it.
    for node in [&b, &c] {
        let v: serde_json::Value = reqwest::get(format!("{}/api/channels/{channel}", node.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["live"], true, "{v}");
        assert_eq!(v["session_id"], session.0, "{v}");
    }

    // Two viewers on B, through B's one pull from A.
    let vids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(device_id(&b.base, &channel).await);
        }
        v
    };
    let on_b = [
        viewer(&b.base, &channel, &vids[0]).await,
        viewer(&b.base, &channel, &vids[1]).await,
    ];
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, v) in on_b.iter().enumerate() {
        assert_byte_identical(&publisher, v, &format!("viewer {i} on B"));
    }
    for v in &on_b {
        v.close().await.unwrap();
    }
    wait_for("B's rows closed", Duration::from_secs(10), async || {
        rows_of(&pool, id_b).await == (0, 2)
    })
    .await;

    // B's pull stops a few seconds after its last viewer left; A serves none now.
    wait_for("B's pull stopped", Duration::from_secs(15), async || {
        metric(&b.base, "feiyan_cluster_edges").await == 0
            && metric(&a.base, "feiyan_cluster_pulls_served").await == 0
    })
    .await;

    // Then three on C (its max_viewers): the peak is 3 (max of B and C), not 5.
    let mut on_c = Vec::new();
    for vid in &vids[2..5] {
        on_c.push(viewer(&c.base, &channel, vid).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, v) in on_c.iter().enumerate() {
        assert_byte_identical(&publisher, v, &format!("viewer {i} on C"));
    }
    wait_for("C's rows written", Duration::from_secs(10), async || {
        rows_of(&pool, id_c).await == (3, 3)
    })
    .await;
    // One recording, where the publisher is: the edges feed the session, A records it.
    let recorded = |n: &Node| {
        n._dir
            .path()
            .join(format!("media/recordings/{channel}/{}", session.0))
            .exists()
    };
    assert!(recorded(&a), "A records the session");
    assert!(!recorded(&b) && !recorded(&c), "edges record nothing");
    assert_eq!(
        metric(&a.base, "feiyan_cluster_pulls_served_total").await,
        2,
        "A serves one pull per edge"
    );
    assert_eq!(
        rows_of(&pool, id_a).await,
        (0, 0),
        "edge pulls are no viewers"
    );
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE channel = $1")
        .bind(&channel)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "one session across nodes");
    let nodes: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT node_id FROM viewers WHERE session_id = $1 ORDER BY node_id",
    )
    .bind(session.0)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(nodes, vec![id_b, id_c]);
    let summary = db
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.peak_viewers, 3, "{summary:?}");
    assert_eq!(summary.unique_viewers, 5, "{summary:?}");

    // C is full: a fourth viewer is sent elsewhere with 307, and the client follows.
    assert_eq!(metric(&c.base, "feiyan_cluster_node_viewers").await, 3);
    let redirected = viewer(&c.base, &channel, &vids[5]).await;
    assert!(
        !redirected.location().starts_with(&c.base),
        "{}",
        redirected.location()
    );
    assert_eq!(metric(&c.base, "feiyan_cluster_redirected_total").await, 1);

    // The cluster's API is for administrators.
    let r = reqwest::get(format!("{}/api/cluster", b.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    db.catalog
        .add_account(
            "city-admin",
            "secret-password",
            feiyan::catalog::Scope::City,
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}/api/login", b.base))
        .json(&serde_json::json!({"username": "city-admin", "password": "secret-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("logged in");
    let cluster: serde_json::Value = http
        .get(format!("{}/api/cluster", b.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cluster["this_node"], id_b, "{cluster}");
    let nodes = cluster["nodes"].as_array().expect("nodes");
    let origin_of_a = nodes
        .iter()
        .find(|n| n["id"] == id_a)
        .map(|n| n["origin_of"].clone());
    assert_eq!(origin_of_a, Some(serde_json::json!([channel])), "{cluster}");
    let c_row = nodes.iter().find(|n| n["id"] == id_c).expect("C listed");
    assert_eq!(c_row["channels"], serde_json::json!([channel]), "{cluster}");

    // Edge pulls without or with a wrong or stale signature: 401.
    let offer = "v=0\r\n";
    for header in [
        None,
        Some("1.00".to_string()),
        Some(feiyan::cluster::sign::sign(
            b"not the cluster secret at all, 32+ bytes",
            "POST",
            &format!("/whep/{channel}"),
            feiyan::audience::now_ms() / 1000,
        )),
        Some(feiyan::cluster::sign::sign(
            SECRET.as_bytes(),
            "POST",
            &format!("/whep/{channel}"),
            feiyan::audience::now_ms() / 1000 - 600,
        )),
    ] {
        let mut r = http
            .post(format!("{}/whep/{channel}?edge=99", a.base))
            .header("content-type", "application/sdp")
            .body(offer);
        if let Some(h) = &header {
            r = r.header("x-feiyan-cluster", h);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{header:?}: {}", r.text().await.unwrap());
    }

    // The pull source ran on one node only: the lease holder.
    let holder: i64 = sqlx::query_scalar("SELECT node_id FROM cluster_leases WHERE name = $1")
        .bind(&lease)
        .fetch_one(&pool)
        .await
        .unwrap();
    let tried: Vec<i64> = [(&a, id_a), (&b, id_b), (&c, id_c)]
        .into_iter()
        .filter(|(n, _)| n.served.stderr().contains("pull source down"))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        tried,
        vec![holder],
        "the source ran on {tried:?}, lease on {holder}"
    );

    // C dies: its rows close at its last heartbeat; its viewers come back on B with the
    // same device ids and count once.
    c.served.signal(libc::SIGKILL);
    let killed = Instant::now();
    wait_for("C's rows closed", Duration::from_secs(15), async || {
        rows_of(&pool, id_c).await.0 == 0
    })
    .await;
    let closed_after = killed.elapsed();
    let mut back = Vec::new();
    for vid in &vids[2..5] {
        back.push(viewer(&b.base, &channel, vid).await);
    }
    wait_for(
        "the returning viewers' rows",
        Duration::from_secs(10),
        async || rows_of(&pool, id_b).await.0 >= 3,
    )
    .await;
    let summary = db
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unique_viewers, 6, "{summary:?}");
    assert!(
        closed_after < Duration::from_secs(12),
        "C's rows closed after {closed_after:?}"
    );

    // `feiyan node list` (with A's settings: gone after 5 s) shows A and B alive, C gone,
    // A as the channel's origin.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_feiyan"))
        .args(["node", "list", "--config"])
        .arg(&a.config)
        .env_remove("FEIYAN_CLUSTER_SECRET")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let line = |base: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("{base} ")))
            .unwrap_or_else(|| panic!("{base} not listed: {table}"))
            .to_string()
    };
    assert!(
        line(&a.base).contains("alive") && line(&a.base).contains(&format!("{channel}*")),
        "{table}"
    );
    assert!(line(&b.base).contains("alive"), "{table}");
    assert!(line(&c.base).contains("gone"), "{table}");

    for v in back.iter().chain(on_c.iter()).chain(Some(&redirected)) {
        let _ = v.close().await;
    }
    let _ = publisher.stop().await;
    for n in [&a, &b] {
        n.served.signal(libc::SIGTERM);
    }
    drop((a, b, c));
    pool.close().await;
    db.finish().await;
}

#[test]
fn a_short_secret_or_a_member_without_node_url_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let pg = "postgres://postgres@127.0.0.1:5432/test";
    for (cluster, env_secret, expect) in [
        (
            "node_url = \"http://127.0.0.1:1\"\n",
            "short",
            "at least 32",
        ),
        ("", SECRET, "node_url"),
    ] {
        let path = node_config(dir.path(), pg, "127.0.0.1:0", cluster);
        let mut served = Served::start(&path, &[("FEIYAN_CLUSTER_SECRET", Some(env_secret))]);
        let status = served.wait_exit(Duration::from_secs(20)).expect("exits");
        assert!(!status.success());
        let err = served.stderr();
        assert!(err.contains(expect), "{err}");
    }
}

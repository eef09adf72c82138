//! Nodes of a cluster on loopback for tests: each a `feiyan serve` process with its own
//! ports sharing one PostgreSQL database (`heartbeat_secs = 1`, `gone_after_secs = 5`), and
//! the checks the cluster tests share.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use feiyan::client::{
    PublisherOptions, SyntheticMedia, TrackKind, ViewerOptions, WhepViewer, WhipPublisher,
    make_test_media,
};
use sqlx::PgPool;

use super::served::Served;

pub const SECRET: &str = "cluster-test-secret-0123456789abcdef";

/// A free loopback port (bound, read, released) for a node's `node_url`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub served: Served,
    pub base: String,
    pub config: std::path::PathBuf,
    pub _dir: tempfile::TempDir,
}

/// Writes a node's configuration; `cluster` is the `[cluster]` table's body.
pub fn node_config(
    dir: &Path,
    database_url: &str,
    listen: &str,
    cluster: &str,
) -> std::path::PathBuf {
    let config = format!(
        "[http]\nlisten = \"{listen}\"\n\
         [webrtc]\nudp_bind = \"127.0.0.1:0\"\nadvertised_ips = [\"127.0.0.1\"]\n\
         [ingest]\nrtmp_listen = \"127.0.0.1:0\"\n\
         [catalog]\ndatabase_url = \"{database_url}\"\n\
         [cluster]\nheartbeat_secs = 1\ngone_after_secs = 5\n{cluster}\n"
    );
    let path = dir.join("feiyan.toml");
    std::fs::write(&path, config).unwrap();
    path
}

pub fn start_node(database_url: &str, max_viewers: usize) -> Node {
    start_node_with(database_url, &format!("max_viewers = {max_viewers}\n"))
}

/// A node whose `[cluster]` table has `extra` besides `node_url` (e.g.
/// `"max_edges_per_origin = 1\n"`); `extra` ends the file, so tables may follow
/// (`"[hls]\n..."`, `"[[ingest.renditions]]\n..."`).
pub fn start_node_with(database_url: &str, extra: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let path = node_config(
        dir.path(),
        database_url,
        &format!("127.0.0.1:{port}"),
        &format!("node_url = \"{base}\"\n{extra}"),
    );
    let mut served = Served::start(
        &path,
        &[
            ("FEIYAN_CLUSTER_SECRET", Some(SECRET)),
            ("RUST_LOG", Some("info,rtc=warn,rtc_ice=warn,webrtc=warn")),
        ],
    );
    let running = served.wait_running();
    assert_eq!(running.base, base);
    Node {
        served,
        base,
        config: path,
        _dir: dir,
    }
}

pub async fn media(dir: &Path) -> SyntheticMedia {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) =
            make_test_media(&dir, Duration::from_secs(2), 300).expect("ffmpeg makes test media");
        SyntheticMedia::load(&h264, &ogg).expect("test media loads")
    })
    .await
    .unwrap()
}

/// A signed device id, as the watch page's cookie gives one (any node's: they share it).
pub async fn device_id(base: &str, channel: &str) -> String {
    let r = reqwest::get(format!("{base}/watch/{channel}"))
        .await
        .unwrap();
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("fy_dev="))
        .expect("the watch page sets fy_dev")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

pub async fn viewer(base: &str, channel: &str, vid: &str) -> WhepViewer {
    WhepViewer::connect(
        &format!("{base}/whep/{channel}?vid={vid}"),
        None,
        ViewerOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("viewer on {base}: {e}"))
}

/// A WHIP publisher of `channel` on `base`, its payloads recorded.
pub async fn publish(
    base: &str,
    channel: &str,
    key: &str,
    dir: &Path,
) -> feiyan::client::Result<WhipPublisher> {
    WhipPublisher::connect(
        &format!("{base}/whip/{channel}?title=cascade"),
        Some(key),
        media(dir).await,
        PublisherOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
}

pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn metric(base: &str, name: &str) -> i64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {base}/metrics"))
}

pub async fn node_id(pool: &PgPool, base: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM relay_nodes WHERE node_url = $1 ORDER BY id DESC LIMIT 1")
        .bind(base)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Open and all viewer rows of `node`.
pub async fn rows_of(pool: &PgPool, node: i64) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE left_at IS NULL), COUNT(*) FROM viewers WHERE node_id = $1",
    )
    .bind(node)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every payload a viewer got was sent by the publisher, and enough of them arrived.
pub fn assert_byte_identical(publisher: &WhipPublisher, viewer: &WhepViewer, who: &str) {
    assert_sent_by(&[publisher], viewer, who);
}

/// Every payload a viewer got was sent by one of `publishers` (one after the other on the
/// channel), and enough of them arrived.
pub fn assert_sent_by(publishers: &[&WhipPublisher], viewer: &WhepViewer, who: &str) {
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let sent: HashSet<Bytes> = publishers
            .iter()
            .flat_map(|p| p.sent_payloads(kind))
            .collect();
        let got = viewer.received_payloads(kind);
        assert!(got.len() > 50, "{who} {kind}: only {} payloads", got.len());
        let foreign = got.iter().filter(|p| !sent.contains(*p)).count();
        assert_eq!(
            foreign, 0,
            "{who} {kind}: {foreign} payloads not byte-identical"
        );
    }
}

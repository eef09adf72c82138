//! Shared test harness: a real server on port 0 with a fresh SQLite catalog per test.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use feiyan::app::{RunningServer, start};
use feiyan::catalog::NewStation;
use feiyan::config::Config;

pub struct TestServer {
    pub server: RunningServer,
    pub base: String,
    pub station: NewStation,
    _dir: tempfile::TempDir,
}

/// Starts the real server on loopback with ephemeral ports and one station.
pub async fn start_server() -> TestServer {
    start_server_with(|_| {}).await
}

/// Like [`start_server`], with a chance to change the configuration first.
pub async fn start_server_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "warn,rtc=error,rtc_ice=error,rtc_dtls=off".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.webrtc.udp_bind = "127.0.0.1:0".parse().unwrap();
    config.webrtc.advertised_ips = vec!["127.0.0.1".parse().unwrap()];
    config.ingest.rtmp_listen = Some("127.0.0.1:0".parse().unwrap());
    config.catalog.database_url = format!("sqlite://{}/feiyan.db", dir.path().display());
    adjust(&mut config);
    config.validate().expect("test config is valid");
    let server = start(config).await.expect("server starts");
    let station = server
        .catalog
        .add_station("测试中心", "测试所", "测试站")
        .await
        .expect("station added");
    let base = server.base_url();
    TestServer {
        server,
        base,
        station,
        _dir: dir,
    }
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

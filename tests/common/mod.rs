//! Shared test harness: a real server on port 0 with a fresh SQLite catalog per test.
#![allow(dead_code)]

pub mod cdp;
pub mod cluster;
pub mod decode;
pub mod pages;
pub mod replays;
pub mod rtmp;
pub mod served;

use std::path::Path;
use std::time::{Duration, Instant};

use feiyan::app::{RunningServer, start};
use feiyan::catalog::NewStation;
use feiyan::client::{SyntheticMedia, make_test_media};
use feiyan::config::Config;
use feiyan::ids::SessionId;

pub struct TestServer {
    pub server: RunningServer,
    pub base: String,
    pub station: NewStation,
    /// `[recording] dir` (in the test's temporary folder).
    pub recording_dir: std::path::PathBuf,
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
    // Sessions end when their publisher leaves, as most tests expect; the HLS tests that
    // exercise the reconnect grace set one.
    config.hls.reconnect_grace_secs = 0;
    config.recording.dir = dir.path().join("recordings");
    adjust(&mut config);
    let recording_dir = config.recording.dir.clone();
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
        recording_dir,
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

/// The live session of `channel` according to the API, if it is live.
pub async fn live_session(base: &str, channel: &str) -> Option<SessionId> {
    let v: serde_json::Value = reqwest::get(format!("{base}/api/channels/{channel}"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    if v["live"].as_bool() == Some(true) {
        v["session_id"].as_i64().map(SessionId)
    } else {
        None
    }
}

/// Waits (up to 10 s) until the channel is live and returns its session.
pub async fn wait_live(base: &str, channel: &str) -> SessionId {
    for _ in 0..200 {
        if let Some(session) = live_session(base, channel).await {
            return session;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("channel {channel} did not go live within 10 s");
}

/// Two seconds of synthetic H.264 and Opus made by ffmpeg in `dir`, loaded for a publisher.
pub async fn test_media(dir: &Path) -> SyntheticMedia {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) =
            make_test_media(&dir, Duration::from_secs(2), 300).expect("ffmpeg makes test media");
        SyntheticMedia::load(&h264, &ogg).expect("test media loads")
    })
    .await
    .unwrap()
}

/// Three seconds of synthetic 1280x720 H.264 at 2.5 Mbit/s and Opus made by ffmpeg in
/// `dir`, loaded for a publisher: a source a 360p rung is encoded from.
pub async fn test_media_720p(dir: &Path) -> SyntheticMedia {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) =
            feiyan::client::make_test_media_sized(&dir, Duration::from_secs(3), 2500, (1280, 720))
                .expect("ffmpeg makes 720p test media");
        SyntheticMedia::load(&h264, &ogg).expect("test media loads")
    })
    .await
    .unwrap()
}

/// Names of this process's threads (`/proc/self/task/*/comm`): what transcode threads
/// (`fy-tc-*`) run, and the codec workers that inherit their names.
pub fn thread_names() -> Vec<String> {
    threads_of("self")
}

/// Names of process `pid`'s threads (`/proc/PID/task/*/comm`; `"self"` for this one).
pub fn threads_of(pid: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|name| name.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The most viewers `session` had at once, by the catalog's count so far.
pub async fn session_peak(server: &RunningServer, session: SessionId) -> i64 {
    server
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .expect("session summary reads")
        .expect("the session exists")
        .peak_viewers
}

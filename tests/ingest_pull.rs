//! Pull sources: the ffmpeg CLI serves MPEG-TS over HTTP; the server pulls it into a
//! channel. Kill the server side and the channel goes not-live; bring it back and the
//! server reconnects (backoff 1 s doubling) and the connected viewer resumes. An
//! unreachable URL keeps retrying with its status and last error in the API.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{start_server, wait_until};
use feiyan::client::{ViewerOptions, WhepViewer};
use feiyan::ids::ChannelName;

fn make_media(dir: &Path, secs: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-media.sh");
    let status = Command::new(script)
        .arg(dir)
        .arg(secs.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("scripts/make-test-media.sh runs");
    assert!(status.success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ffmpeg CLI as a one-client HTTP MPEG-TS server, looping the clip in real time.
fn serve_ts(clip: &Path, port: u16) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(clip)
        .args(["-c", "copy", "-f", "mpegts", "-listen", "1"])
        .arg(format!("http://127.0.0.1:{port}/cam.ts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts")
}

async fn channel_live(base: &str, channel: &str) -> bool {
    let Ok(r) = reqwest::get(format!("{base}/api/channels/{channel}")).await else {
        return false;
    };
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v["live"].as_bool() == Some(true)
}

async fn source_status(base: &str, id: i64) -> serde_json::Value {
    let list: Vec<serde_json::Value> = reqwest::get(format!("{base}/api/sources"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.into_iter()
        .find(|s| s["id"].as_i64() == Some(id))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_stream_survives_its_server_restarting_and_bad_urls_retry() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 4);
    let clip = dir.path().join("h264-baseline-aac.mp4");
    let port = free_port();
    let mut ts = serve_ts(&clip, port);
    let channel = t.station.channel.clone();
    let base = t.base.clone();

    // Added through the API with the channel's stream key (a wrong key is refused).
    let client = reqwest::Client::new();
    let body = serde_json::json!({"channel": channel.as_str(), "url": format!("http://127.0.0.1:{port}/cam.ts")});
    let refused = client
        .post(format!("{base}/api/sources"))
        .bearer_auth("fy_wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let added: serde_json::Value = client
        .post(format!("{base}/api/sources"))
        .bearer_auth(&t.station.stream_key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = added["id"].as_i64().expect("source id");

    let ch = channel.to_string();
    let live = || {
        let (base, ch) = (base.clone(), ch.clone());
        async move { channel_live(&base, &ch).await }
    };
    assert!(
        wait_until(Duration::from_secs(10), live).await,
        "pulled channel goes live"
    );
    assert_eq!(source_status(&base, id).await["state"], "connected");
    let viewer = WhepViewer::connect(&format!("{base}/whep/{ch}"), None, ViewerOptions::default())
        .await
        .expect("viewer connects");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = viewer.stats().video.counters.packets;
    assert!(before > 20, "viewer got {before} video packets");

    // The source's server dies: the channel goes not-live, the status says why.
    ts.kill().unwrap();
    let _ = ts.wait();
    let not_live = || {
        let (base, ch) = (base.clone(), ch.clone());
        async move { !channel_live(&base, &ch).await }
    };
    assert!(
        wait_until(Duration::from_secs(8), not_live).await,
        "channel not live after the source died"
    );
    let down = source_status(&base, id).await;
    assert!(
        down["state"] == "retrying" || down["state"] == "connecting",
        "{down}"
    );

    // It comes back: the server reconnects and the same viewer resumes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ts = serve_ts(&clip, port);
    assert!(
        wait_until(Duration::from_secs(15), live).await,
        "reconnected"
    );
    let resumed_from = viewer.stats().video.counters.packets;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = viewer.stats().video.counters.packets;
    assert!(
        after > resumed_from + 20,
        "viewer resumed: {resumed_from} -> {after}"
    );
    assert_eq!(source_status(&base, id).await["state"], "connected");
    let attempts = source_status(&base, id).await["attempts"]
        .as_i64()
        .unwrap_or(0);
    assert!(attempts >= 2, "attempts {attempts}");

    // An unreachable URL on another channel: retries with growing delays, error visible.
    let other = t
        .server
        .catalog
        .add_station("测试中心", "测试所", "二站")
        .await
        .unwrap();
    let dead = t
        .server
        .catalog
        .add_source(
            &other.channel,
            &format!("http://127.0.0.1:{}/none.ts", free_port()),
            0,
        )
        .await
        .unwrap();
    let c = ChannelName::parse(other.channel.as_str()).unwrap();
    assert!(
        wait_until(Duration::from_secs(8), || {
            let base = base.clone();
            async move {
                let s = source_status(&base, dead.id).await;
                s["attempts"].as_i64().unwrap_or(0) >= 2 && s["state"] == "retrying"
            }
        })
        .await,
        "unreachable source retries"
    );
    let s = source_status(&base, dead.id).await;
    assert!(
        s["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{s}"
    );
    assert!(
        s["retry_in_ms"].as_u64().unwrap_or(0) >= 2000,
        "backoff doubles: {s}"
    );
    assert!(!channel_live(&base, c.as_str()).await);

    ts.kill().ok();
    let _ = ts.wait();
    viewer.close().await.ok();
    t.server.shutdown().await;
}

//! Pull sources: the ffmpeg CLI serves MPEG-TS over HTTP; the server pulls it into a
//! channel. Kill the server side and the channel goes not-live; bring it back and the
//! server reconnects (backoff 1 s doubling) and the connected viewer resumes. An
//! unreachable URL keeps retrying with its status and last error in the API.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{start_server, start_server_with, wait_until};
use feiyan::catalog::SessionSource;
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
    loop_clip(
        clip,
        &["-c", "copy", "-f", "mpegts", "-listen", "1"],
        &format!("http://127.0.0.1:{port}/cam.ts"),
    )
}

async fn channel_live(base: &str, channel: &str) -> bool {
    let Ok(r) = reqwest::get(format!("{base}/api/channels/{channel}")).await else {
        return false;
    };
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v["live"].as_bool() == Some(true)
}

/// The source's status as `GET /api/sources` shows it to its station (`key`).
async fn source_status(base: &str, key: &str, id: i64) -> serde_json::Value {
    let list: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{base}/api/sources"))
        .bearer_auth(key)
        .send()
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
    // The stream is served on 127.0.0.1, a private address for http(s) sources.
    let t = start_server_with(|c| c.ingest.allow_private_sources = true).await;
    let key = t.station.stream_key.clone();
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
    assert_eq!(source_status(&base, &key, id).await["state"], "connected");
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
    let down = source_status(&base, &key, id).await;
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
    assert_eq!(source_status(&base, &key, id).await["state"], "connected");
    let attempts = source_status(&base, &key, id).await["attempts"]
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
            4,
            0,
        )
        .await
        .unwrap();
    let c = ChannelName::parse(other.channel.as_str()).unwrap();
    let other_key = other.stream_key.clone();
    assert!(
        wait_until(Duration::from_secs(8), || {
            let (base, other_key) = (base.clone(), other_key.clone());
            async move {
                let s = source_status(&base, &other_key, dead.id.0).await;
                s["attempts"].as_i64().unwrap_or(0) >= 2 && s["state"] == "retrying"
            }
        })
        .await,
        "unreachable source retries"
    );
    let s = source_status(&base, &other.stream_key, dead.id.0).await;
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

/// The ffmpeg CLI looping `clip` in real time, copied into `output` options and `url`.
fn loop_clip(clip: &Path, output: &[&str], url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-stream_loop", "-1", "-i"])
        .arg(clip)
        .args(output)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts")
}

/// The ffmpeg CLI as an SRT listener (one caller), looping the clip in real time as MPEG-TS.
fn serve_srt(clip: &Path, port: u16) -> Child {
    loop_clip(
        clip,
        &["-c", "copy", "-f", "mpegts"],
        &format!("srt://127.0.0.1:{port}?mode=listener"),
    )
}

/// Waits until `channel` is live (or not) as the API says.
async fn wait_channel(base: &str, channel: &str, live: bool, within: Duration) -> bool {
    wait_until(within, || {
        let (base, channel) = (base.to_string(), channel.to_string());
        async move { channel_live(&base, &channel).await == live }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srt_pull_source_reaches_viewers_and_reconnects_after_its_listener_restarts() {
    let t = start_server().await;
    let key = t.station.stream_key.clone();
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 4);
    let clip = dir.path().join("h264-baseline-aac.mp4");
    let port = free_port();
    let mut srt = serve_srt(&clip, port);
    let base = t.base.clone();
    let ch = t.station.channel.to_string();

    let url = format!("srt://127.0.0.1:{port}?mode=caller");
    let added: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/sources"))
        .bearer_auth(&t.station.stream_key)
        .json(&serde_json::json!({"channel": ch, "url": url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = added["id"].as_i64().expect("source id");
    assert_eq!(added["url"], url);

    assert!(
        wait_channel(&base, &ch, true, Duration::from_secs(10)).await,
        "the SRT-pulled channel goes live"
    );
    let status = source_status(&base, &key, id).await;
    assert_eq!(status["state"], "connected", "{status}");
    let session = status["session_id"].as_i64().expect("live session");
    let summary = t
        .server
        .catalog
        .session_summary(feiyan::ids::SessionId(session), feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.source, SessionSource::Pull);
    assert!(summary.live);

    let viewer = WhepViewer::connect(&format!("{base}/whep/{ch}"), None, ViewerOptions::default())
        .await
        .expect("viewer connects");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = viewer.stats();
    assert_eq!(stats.video.codec.as_deref(), Some("video/H264"));
    assert_eq!(stats.audio.codec.as_deref(), Some("audio/opus"));
    assert!(stats.first_video_frame_is_keyframe);
    assert!(stats.keyframes_completed >= 1, "{stats:?}");
    // 2 s of 30 fps video (several RTP packets a frame) and 50 Opus packets a second.
    assert!(stats.video.counters.packets > 60, "{:?}", stats.video);
    assert!(stats.audio.counters.packets > 60, "{:?}", stats.audio);

    // The SRT listener dies: the channel goes not-live; it comes back: the same viewer resumes.
    srt.kill().unwrap();
    let _ = srt.wait();
    assert!(
        wait_channel(&base, &ch, false, Duration::from_secs(15)).await,
        "channel not live after the SRT listener died"
    );
    // The source's status follows a moment after the channel (the pull task records the
    // error once its reader has stopped).
    let mut down = source_status(&base, &key, id).await;
    for _ in 0..100 {
        if down["last_error"].as_str().is_some_and(|e| !e.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        down = source_status(&base, &key, id).await;
    }
    assert!(
        down["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    let mut srt = serve_srt(&clip, port);
    assert!(
        wait_channel(&base, &ch, true, Duration::from_secs(20)).await,
        "reconnected to the restarted SRT listener"
    );
    let resumed_from = viewer.stats().video.counters.packets;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = viewer.stats().video.counters.packets;
    assert!(
        after > resumed_from + 60,
        "viewer resumed: {resumed_from} -> {after}"
    );
    let up = source_status(&base, &key, id).await;
    assert_eq!(up["state"], "connected", "{up}");
    assert_ne!(up["session_id"].as_i64(), Some(session), "a new session");

    srt.kill().ok();
    let _ = srt.wait();
    viewer.close().await.ok();
    t.server.shutdown().await;
}

/// A child process killed (and reaped) when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An RTSP server as an IP camera would be: Debian's `rtsp-server-perl` (RTSP::Server)
/// relays what the ffmpeg CLI announces and records to its source port to RTSP players on
/// its client port. Returns (server, publisher, client port).
fn serve_rtsp(clip: &Path) -> (Reaped, Reaped, u16) {
    let (client_port, source_port) = (free_port(), free_port());
    let rtp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        & !1;
    let server = Command::new("rtsp-server-perl")
        .args(["--clientport", &client_port.to_string()])
        .args(["--serverport", &source_port.to_string()])
        .args(["--client_listen_address", "127.0.0.1"])
        .args(["--source_listen_address", "127.0.0.1"])
        .args(["--rtp_start_port", &rtp_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtsp-server-perl runs (scripts/deps.sh installs the Debian package)");
    let server = Reaped(server);
    // Wait for its source port before announcing to it.
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", source_port)).is_ok()
    });
    assert!(up, "rtsp-server-perl listens on {source_port}");
    let publisher = loop_clip(
        clip,
        &["-c", "copy", "-f", "rtsp"],
        &format!("rtsp://127.0.0.1:{source_port}/cam"),
    );
    (server, Reaped(publisher), client_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_is_pulled_into_a_channel_and_reaches_a_viewer() {
    let t = start_server().await;
    let key = t.station.stream_key.clone();
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 4);
    // The camera's stream: H.264 without B-frames (passed through) that repeats its
    // parameter sets before each keyframe, as IP cameras do, and AAC.
    let clip = dir.path().join("camera.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "4", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-profile:v", "baseline", "-g", "30", "-b:v", "800k"])
        .args([
            "-x264-params",
            "repeat-headers=1",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let (_server, _publisher, port) = serve_rtsp(&clip);
    // Give the announce a moment; a pull that comes too early just retries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = t.base.clone();
    let ch = t.station.channel.to_string();
    let source = t
        .server
        .catalog
        .add_source(
            &t.station.channel,
            &format!("rtsp://admin:secret@127.0.0.1:{port}/cam"),
            4,
            0,
        )
        .await
        .unwrap();
    // Opening an RTSP stream reads a few seconds of it to learn its streams.
    assert!(
        wait_channel(&base, &ch, true, Duration::from_secs(30)).await,
        "the RTSP camera's channel goes live: {}",
        source_status(&base, &key, source.id.0).await
    );
    let status = source_status(&base, &key, source.id.0).await;
    assert_eq!(status["state"], "connected", "{status}");
    assert_eq!(
        status["url"],
        format!("rtsp://***@127.0.0.1:{port}/cam"),
        "credentials are not shown"
    );
    let viewer = WhepViewer::connect(&format!("{base}/whep/{ch}"), None, ViewerOptions::default())
        .await
        .expect("viewer connects");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // RTSP::Server relays RTP over UDP only; on a loaded machine it loses some, so this
    // checks that pictures and sound arrive, not that every packet did.
    let stats = viewer.stats();
    assert_eq!(stats.video.codec.as_deref(), Some("video/H264"));
    assert_eq!(stats.audio.codec.as_deref(), Some("audio/opus"));
    assert!(stats.keyframes_completed >= 1, "{stats:?}");
    assert!(stats.video.counters.packets > 30, "{:?}", stats.video);
    assert!(stats.audio.counters.packets > 30, "{:?}", stats.audio);
    viewer.close().await.ok();
    t.server.shutdown().await;
}

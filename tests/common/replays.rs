//! Replays as the tests reach them: an RTMP lecture pushed with the ffmpeg CLI, a station's
//! listed replays, a VOD playlist's segments, what the ffmpeg CLI decodes, and the replay
//! page (`/replay/{id}`) in a headless Chromium.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cdp::Page;
use super::pages::num;
use super::rtmp::{make_media, push_rtmp};

/// `rtmp://ADDR/live/CHANNEL?key=KEY&title=TITLE`, the title percent-encoded.
pub fn rtmp_url(addr: std::net::SocketAddr, channel: &str, key: &str, title: &str) -> String {
    let title: String = title
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("rtmp://{addr}/live/{channel}?key={key}&title={title}")
}

/// Pushes a `secs`-long clip (scripts/make-test-media.sh, in `dir`) over RTMP in real time
/// and waits for the push to end.
pub async fn lecture(url: &str, secs: u32, dir: &Path) {
    let clip = make_media(dir, secs);
    let mut push = push_rtmp(&clip, url);
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the RTMP push failed: {status}");
}

/// `GET /api/recordings?station={channel}`, waiting until it lists `n` (at most `within`).
pub async fn wait_replays(base: &str, channel: &str, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let r = reqwest::get(format!("{base}/api/recordings?station={channel}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "listing {channel}'s replays");
        let list: Vec<Value> = r.json().await.unwrap();
        if list.len() >= n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{n} replays not listed within {within:?}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One segment of a VOD playlist: its URI, `EXTINF` duration and init segment URI.
pub struct VodSegment {
    pub uri: String,
    pub duration: f64,
    pub init: String,
}

/// The segments of a VOD playlist, in order.
pub fn vod_segments(playlist: &str) -> Vec<VodSegment> {
    let mut out = Vec::new();
    let mut init = String::new();
    let mut duration = None;
    for line in playlist.lines() {
        if let Some(uri) = line
            .strip_prefix("#EXT-X-MAP:URI=\"")
            .and_then(|l| l.strip_suffix('"'))
        {
            init = uri.to_string();
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            duration = d.split(',').next().and_then(|d| d.parse::<f64>().ok());
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push(VodSegment {
                uri: line.to_string(),
                duration: duration.take().expect("EXTINF before every segment"),
                init: init.clone(),
            });
        }
    }
    out
}

/// Video frames the ffmpeg CLI decodes from `file`; fails on any decoding error.
pub fn decoded_video_frames(file: &Path) -> usize {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "{} does not decode cleanly: {errors}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

/// The page's `fy_dev` cookie, as its script reads it.
pub async fn device_cookie(page: &Page) -> String {
    let cookies = page.evaluate("document.cookie").await.expect("cookies");
    cookies
        .as_str()
        .unwrap_or("")
        .split("; ")
        .find_map(|c| c.strip_prefix("fy_dev="))
        .unwrap_or_else(|| panic!("no fy_dev cookie in {cookies}"))
        .to_string()
}

/// What the replay page shows: its texts, status and download link.
pub const REPLAY_VIEW: &str = "(() => { const $ = (id) => document.getElementById(id); \
    return { title: $('title').textContent, station: $('station').textContent, \
      when: $('when').textContent, duration: $('duration').textContent, \
      status: $('status').textContent, detail: $('detail').textContent, \
      note: $('note').hidden ? null : $('note').textContent, \
      gone: !$('gone').hidden, goneText: $('gone-text').textContent, \
      player: !$('player').hidden, overlay: !$('overlay').hidden, \
      overlayText: $('overlay-text').textContent, \
      download: $('download').hidden ? null : $('download').href }; })()";

/// The page's requests that concern replays and hls.js, for failure reports.
pub fn replay_requests(page: &Page) -> Vec<Value> {
    page.requests()
        .into_iter()
        .filter(|r| {
            let url = r["url"].as_str().unwrap_or("");
            url.contains("/replay/")
                || url.contains("/api/recordings")
                || url.contains("/assets/vendor/")
                || r.get("failed").is_some()
        })
        .collect()
}

/// Waits until the replay page's `<video>` has shown frames, then that playback goes on:
/// `currentTime` at least 1.5 s further with more frames shown (or the replay played to
/// its end). Returns the first and last readings.
pub async fn assert_replay_plays(page: &Page, what: &str) -> (Value, Value) {
    let wait = |timeout: Duration| Instant::now() + timeout;
    let deadline = wait(Duration::from_secs(45));
    let first = loop {
        let playback = page.video_playback("video").await.unwrap_or(Value::Null);
        if num(&playback, "/totalVideoFrames") > 5
            && playback["currentTime"].as_f64().unwrap_or(0.0) > 0.0
        {
            break playback;
        }
        if Instant::now() > deadline {
            let view = page.evaluate(REPLAY_VIEW).await.unwrap_or(Value::Null);
            panic!(
                "{what}: the replay did not play within 45 s: playback {playback}; page {view}; \
                 requests {}; log {}",
                json!(replay_requests(page)),
                json!(page.log_entries())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let t0 = first["currentTime"].as_f64().unwrap_or(0.0);
    let frames0 = num(&first, "/totalVideoFrames");
    let deadline = wait(Duration::from_secs(15));
    let later = loop {
        let now = page.video_playback("video").await.unwrap_or(Value::Null);
        let t1 = now["currentTime"].as_f64().unwrap_or(0.0);
        let ended = page
            .evaluate("document.getElementById('video').ended")
            .await
            .unwrap_or(Value::Null);
        if num(&now, "/totalVideoFrames") > frames0 && (t1 >= t0 + 1.5 || ended == true) {
            break now;
        }
        if Instant::now() > deadline {
            let view = page.evaluate(REPLAY_VIEW).await.unwrap_or(Value::Null);
            panic!(
                "{what}: playback did not go on: from {first} to {now}; page {view}; requests {}",
                json!(replay_requests(page))
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("{what}: {first} -> {later}");
    (first, later)
}

/// The `rtmp://` URL of the test server's station, with `title`.
pub fn station_rtmp(t: &super::TestServer, title: &str) -> String {
    rtmp_url(
        t.server.rtmp_addr.expect("RTMP is on"),
        t.station.channel.as_str(),
        &t.station.stream_key,
        title,
    )
}

/// A `secs`-long RTMP lecture on the test server's station that has ended: the station's
/// replays once there are `n` (the newest first).
pub async fn ended_lecture(t: &super::TestServer, title: &str, secs: u32, n: usize) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    lecture(&station_rtmp(t, title), secs, dir.path()).await;
    wait_replays(
        &t.base,
        t.station.channel.as_str(),
        n,
        Duration::from_secs(10),
    )
    .await
}

/// Adds an account with `scope` (password `secret-password`) and logs it in: its token.
pub async fn admin_token(
    t: &super::TestServer,
    username: &str,
    scope: feiyan::catalog::Scope,
) -> String {
    t.server
        .catalog
        .add_account(username, "secret-password", scope)
        .await
        .expect("account added");
    let login: Value = reqwest::Client::new()
        .post(format!("{}/api/login", t.base))
        .json(&json!({"username": username, "password": "secret-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["token"].as_str().expect("a token").to_string()
}

/// A VOD playlist's segments, their total and longest duration (seconds), once it says
/// `EXT-X-PLAYLIST-TYPE:VOD`, ends with `EXT-X-ENDLIST` and lists at least `min` segments.
pub fn vod_summary(playlist: &str, min: usize) -> (Vec<VodSegment>, f64, f64) {
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    assert!(
        playlist.trim_end().ends_with("#EXT-X-ENDLIST"),
        "{playlist}"
    );
    let segments = vod_segments(playlist);
    assert!(segments.len() >= min, "{playlist}");
    let total = segments.iter().map(|s| s.duration).sum();
    let longest = segments.iter().map(|s| s.duration).fold(0.0, f64::max);
    (segments, total, longest)
}

//! Pull sources through the API (issue 23 item 6): only a station (its stream key) or an
//! administrator in scope lists, disables, enables and removes them; rotating a key holds
//! the station's sources until they are confirmed with the new key; a channel takes a
//! capped number of sources; only network schemes are accepted, http(s) hosts on private
//! addresses are refused unless `[ingest] allow_private_sources`; query-string secrets
//! never leave the server; an HLS playlist cannot make the server read its own files; a
//! source whose timestamps jump keeps its viewers and lets shutdown finish.

mod catalog_db;
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{start_server, start_server_with, wait_until};
use feiyan::catalog::{CatalogError, Scope};
use feiyan::client::{ViewerOptions, WhepViewer};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test server's base URL, its station's channel and stream key.
fn station(t: &common::TestServer) -> (String, String, String) {
    (
        t.base.clone(),
        t.station.channel.to_string(),
        t.station.stream_key.clone(),
    )
}

async fn add(base: &str, key: &str, channel: &str, url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/sources"))
        .bearer_auth(key)
        .json(&json!({"channel": channel, "url": url}))
        .send()
        .await
        .unwrap()
}

async fn list(base: &str, key: Option<&str>, query: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{base}/api/sources{query}"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

async fn listed(base: &str, key: &str, id: i64) -> Value {
    let all: Vec<Value> = list(base, Some(key), "").await.json().await.unwrap();
    all.into_iter()
        .find(|s| s["id"].as_i64() == Some(id))
        .unwrap_or_default()
}

async fn channel_live(base: &str, channel: &str) -> bool {
    let Ok(r) = reqwest::get(format!("{base}/api/channels/{channel}")).await else {
        return false;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["live"].as_bool() == Some(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_sources_needs_the_station_key_or_an_admin() {
    let t = start_server().await;
    let (base, ch, key) = station(&t);
    let added = add(&base, &key, &ch, "rtsp://10.0.0.5:554/cam").await;
    assert_eq!(added.status(), 201);
    let id = added.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    let anonymous = list(&base, None, "").await;
    assert_eq!(
        anonymous.status(),
        401,
        "GET /api/sources without credentials"
    );
    let wrong = list(&base, Some("fy_wrong"), "").await;
    assert_eq!(wrong.status(), 401, "GET /api/sources with a wrong key");

    // Its own station sees it; another station sees none of it, and may not ask for it.
    let own = listed(&base, &key, id).await;
    assert_eq!(own["channel"], ch.as_str(), "{own}");
    let other = t
        .server
        .catalog
        .add_station("测试中心", "测试所", "二站")
        .await
        .unwrap();
    let theirs: Vec<Value> = list(&base, Some(&other.stream_key), "")
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
    let asked = list(
        &base,
        Some(&other.stream_key),
        &format!("?station={}", t.station.station_id),
    )
    .await;
    assert_eq!(asked.status(), 403);
    t.server.shutdown().await;
}

async fn login(base: &str, user: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": user, "password": "secret-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_see_and_manage_the_sources_in_their_scope() {
    let t = start_server().await;
    let c = &t.server.catalog;
    let base = t.base.clone();
    let mine = t.station.clone();
    let elsewhere = c.add_station("乙中心", "乙所", "乙站").await.unwrap();
    let center_b = c
        .station_placement(elsewhere.station_id)
        .await
        .unwrap()
        .center_id;
    c.add_account("city", "secret-password", Scope::City)
        .await
        .unwrap();
    c.add_account("center-b", "secret-password", Scope::Center(center_b))
        .await
        .unwrap();
    let a = add(
        &base,
        &mine.stream_key,
        mine.channel.as_str(),
        "rtsp://10.0.0.1/a",
    )
    .await
    .json::<Value>()
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    let b = add(
        &base,
        &elsewhere.stream_key,
        elsewhere.channel.as_str(),
        "rtsp://10.0.0.2/b",
    )
    .await
    .json::<Value>()
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    let ids =
        |list: Vec<Value>| -> Vec<i64> { list.iter().map(|s| s["id"].as_i64().unwrap()).collect() };
    let city = login(&base, "city").await;
    let all: Vec<Value> = list(&base, Some(&city), "").await.json().await.unwrap();
    assert_eq!(ids(all), vec![a, b]);
    let center = login(&base, "center-b").await;
    let theirs: Vec<Value> = list(&base, Some(&center), "").await.json().await.unwrap();
    assert_eq!(ids(theirs), vec![b]);
    let outside = list(
        &base,
        Some(&center),
        &format!("?station={}", mine.station_id),
    )
    .await;
    assert_eq!(outside.status(), 403);
    let r = reqwest::Client::new()
        .post(format!("{base}/api/sources/{a}/disable"))
        .bearer_auth(&center)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a center admin outside its center");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/sources/{a}/disable"))
        .bearer_auth(&city)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        listed(&base, &mine.stream_key, a).await["state"],
        "disabled"
    );
    let bad = list(&base, Some(&city), "?station=x").await;
    assert_eq!(bad.status(), 400);
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sources_on_private_addresses_and_local_schemes_are_refused() {
    let t = start_server().await;
    let (base, ch, key) = station(&t);
    for url in [
        "http://127.0.0.1:8080/cam.ts",
        "http://localhost/cam.ts",
        "https://10.1.2.3/live.m3u8",
        "http://192.168.1.20/live.m3u8",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/cam.ts",
        "http://[fd00::1]/cam.ts",
        "http://[::ffff:127.0.0.1]/cam.ts",
    ] {
        let r = add(&base, &key, &ch, url).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{url}: {text}");
        assert!(text.contains("allow_private_sources"), "{url}: {text}");
    }
    for url in [
        "file:///etc/passwd",
        "concat:/etc/passwd|/etc/passwd",
        "subfile,,start,0,end,0,,:/etc/passwd",
        "data:text/plain,hello",
        "ftp://10.0.0.5/cam.ts",
    ] {
        let r = add(&base, &key, &ch, url).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{url}: {text}");
        assert!(
            text.contains("rtsp, rtsps, srt, rtmp, rtmps, http, https"),
            "{url}: {text}"
        );
    }
    // Cameras on the LAN are what RTSP, SRT and RTMP sources are for.
    for url in [
        "rtsp://192.168.1.10:554/stream1",
        "rtmps://10.0.0.9/live/cam",
        "srt://10.0.0.7:9000?mode=caller",
    ] {
        assert_eq!(add(&base, &key, &ch, url).await.status(), 201, "{url}");
    }
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_secrets_never_leave_the_server() {
    let t = start_server().await;
    let (base, ch, key) = station(&t);
    let url = format!(
        "rtsp://admin:pw1@127.0.0.1:{}/cam?token=tok1&channel=2&Signature=sig1",
        free_port()
    );
    let r = add(&base, &key, &ch, &url).await;
    assert_eq!(r.status(), 201);
    let added: Value = r.json().await.unwrap();
    let srt = add(
        &base,
        &key,
        &ch,
        "srt://10.0.0.7:9000?mode=caller&streamid=sid1&passphrase=longsecret1",
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    // Let the first source fail a connection so its error is in the listing too.
    let id = added["id"].as_i64().unwrap();
    assert!(
        wait_until(Duration::from_secs(8), || {
            let (base, key) = (base.clone(), key.clone());
            async move { listed(&base, &key, id).await["last_error"].is_string() }
        })
        .await
    );
    let listing = list(&base, Some(&key), "").await.text().await.unwrap();
    for text in [added.to_string(), srt.to_string(), listing.clone()] {
        for secret in ["pw1", "tok1", "sig1", "sid1", "longsecret1"] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
    assert!(
        listing.contains("channel=2"),
        "plain parameters stay: {listing}"
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_takes_at_most_four_sources() {
    let t = start_server().await;
    let (base, ch, key) = station(&t);
    for n in 0..4 {
        let url = format!("rtsp://10.0.0.{n}/cam");
        assert_eq!(add(&base, &key, &ch, &url).await.status(), 201, "{url}");
    }
    let fifth = add(&base, &key, &ch, "rtsp://10.0.0.9/cam").await;
    let status = fifth.status();
    let text = fifth.text().await.unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("max_sources_per_channel"), "{text}");
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_holds_sources_until_confirmed_with_the_new_key() {
    let t = start_server().await;
    let (base, ch, key) = station(&t);
    let url = format!("rtsp://127.0.0.1:{}/cam", free_port());
    let id = add(&base, &key, &ch, &url)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (base, key) = (base.clone(), key.clone());
            async move { listed(&base, &key, id).await["attempts"].as_i64() >= Some(1) }
        })
        .await
    );
    // What `feiyan station rotate-key` and POST /api/admin/stations/{id}/rotate-key do.
    let new_key = t.server.catalog.rotate_key(&ch).await.unwrap();
    let held = listed(&base, &new_key, id).await;
    assert_eq!(held["state"], "needs_confirm", "{held}");
    assert_eq!(held["enabled"], true, "{held}");
    let attempts = held["attempts"].as_i64();
    assert_eq!(attempts, None, "a held source is not running: {held}");

    let client = reqwest::Client::new();
    let old = client
        .post(format!("{base}/api/sources/{id}/enable"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the old key confirms nothing");
    let confirmed = client
        .post(format!("{base}/api/sources/{id}/enable"))
        .bearer_auth(&new_key)
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let body: Value = confirmed.json().await.unwrap();
    assert_eq!(body["needs_confirm"], false, "{body}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (base, key) = (base.clone(), new_key.clone());
            async move { listed(&base, &key, id).await["attempts"].as_i64() >= Some(1) }
        })
        .await,
        "a confirmed source runs again"
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_disable_enable_and_remove_their_sources() {
    let t = start_server().await;
    let (base, ch, key) = station(&t);
    let other = t
        .server
        .catalog
        .add_station("测试中心", "测试所", "二站")
        .await
        .unwrap();
    let id = add(&base, &key, &ch, "rtsp://10.0.0.5/cam")
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let client = reqwest::Client::new();
    let post = |path: String, key: String| {
        let client = client.clone();
        async move { client.post(path).bearer_auth(key).send().await.unwrap() }
    };
    let r = post(
        format!("{base}/api/sources/{id}/disable"),
        other.stream_key.clone(),
    )
    .await;
    assert_eq!(r.status(), 403, "another station's key");
    let r = post(format!("{base}/api/sources/{id}/disable"), key.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(listed(&base, &key, id).await["state"], "disabled");
    let r = post(format!("{base}/api/sources/{id}/enable"), key.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(listed(&base, &key, id).await["enabled"], true);
    let r = post(format!("{base}/api/sources/{id}/restart"), key.clone()).await;
    assert_eq!(r.status(), 404);
    let r = post(format!("{base}/api/sources/999/disable"), key.clone()).await;
    assert_eq!(r.status(), 404);

    let removed = client
        .delete(format!("{base}/api/sources/{id}"))
        .bearer_auth(&other.stream_key)
        .send()
        .await
        .unwrap();
    let status = removed.status();
    let text = removed.text().await.unwrap();
    assert_eq!(status, 403, "{text}");
    let removed = client
        .delete(format!("{base}/api/sources/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(listed(&base, &key, id).await, Value::Null);
    t.server.shutdown().await;
}

/// Serves `dir` over HTTP on loopback (range requests included), as a web server would.
async fn serve_dir(dir: &Path) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = warp::serve(warp::fs::dir(dir.to_path_buf())).incoming(listener);
    tokio::spawn(server.run());
    addr
}

/// Encodes `secs` of test pattern and tone as MPEG-TS (H.264 baseline, AAC), its clock
/// starting at `offset_secs`.
fn make_ts(path: &Path, secs: u32, offset_secs: u32) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &secs.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-g", "25"])
        .args(["-c:a", "aac", "-output_ts_offset", &offset_secs.to_string()])
        .args(["-f", "mpegts"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_playlist_cannot_make_the_server_read_its_own_files() {
    // The playlist is served on 127.0.0.1.
    let t = start_server_with(|c| c.ingest.allow_private_sources = true).await;
    let dir = tempfile::tempdir().unwrap();
    // A playable file on the server's disk, that the playlist names with file://.
    let local = dir.path().join("local.ts");
    make_ts(&local, 3, 0);
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\nfile://{}\n\
         #EXTINF:3,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        local.display()
    );
    std::fs::write(dir.path().join("live.m3u8"), playlist).unwrap();
    let addr = serve_dir(dir.path()).await;
    let (base, ch, key) = station(&t);
    let r = add(&base, &key, &ch, &format!("http://{addr}/live.m3u8")).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    // The source fails (no segment it may open) and never goes live.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (base, key) = (base.clone(), key.clone());
            async move { listed(&base, &key, id).await["state"] == "retrying" }
        })
        .await,
        "{}",
        listed(&base, &key, id).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !channel_live(&base, &ch).await,
        "the server played its own file"
    );
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_clock_jumps_ten_hours_keeps_its_viewers_and_lets_shutdown_finish() {
    let t = start_server_with(|c| c.ingest.allow_private_sources = true).await;
    let dir = tempfile::tempdir().unwrap();
    // 6 s of media, then 8 s whose timestamps are 10 hours later, as one HTTP stream.
    make_ts(&dir.path().join("a.ts"), 6, 0);
    make_ts(&dir.path().join("b.ts"), 8, 36_000);
    let mut joined = std::fs::read(dir.path().join("a.ts")).unwrap();
    joined.extend(std::fs::read(dir.path().join("b.ts")).unwrap());
    std::fs::write(dir.path().join("jump.ts"), joined).unwrap();
    let addr = serve_dir(dir.path()).await;
    let (base, ch, key) = station(&t);
    let r = add(&base, &key, &ch, &format!("http://{addr}/jump.ts")).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (base, ch) = (base.clone(), ch.clone());
            async move { channel_live(&base, &ch).await }
        })
        .await,
        "{}",
        listed(&base, &key, id).await
    );
    let live_at = Instant::now();
    let session = listed(&base, &key, id).await["session_id"].clone();
    let viewer = WhepViewer::connect(&format!("{base}/whep/{ch}"), None, ViewerOptions::default())
        .await
        .expect("viewer connects");
    // The jump comes 6 s into the stream; look at 8 to 10 s.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(live_at.elapsed())).await;
    let before = viewer.stats().video.counters.packets;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = viewer.stats().video.counters.packets;
    assert!(
        after > before + 20,
        "the viewer kept receiving after the jump: {before} -> {after}"
    );
    let status = listed(&base, &key, id).await;
    assert_eq!(status["state"], "connected", "{status}");
    assert_eq!(status["session_id"], session, "one session across the jump");

    viewer.close().await.ok();
    let stopping = Instant::now();
    t.server.shutdown().await;
    let took = stopping.elapsed();
    eprintln!("viewer video packets 8-10 s: {before} -> {after}; shutdown took {took:?}");
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
}

/// The catalog side on both databases: the cap, holding on rotation, confirming, removing.
async fn catalog_rules(db: catalog_db::TestDb) {
    let c = &db.catalog;
    let a = c.add_station("中心", "所", "一站").await.unwrap();
    let b = c.add_station("中心", "所", "二站").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..2 {
        let s = c
            .add_source(&a.channel, &format!("rtsp://10.0.0.{n}/cam"), 2, 0)
            .await
            .unwrap();
        assert_eq!(s.station_id, a.station_id);
        ids.push(s.id);
    }
    let third = c.add_source(&a.channel, "rtsp://10.0.0.9/cam", 2, 0).await;
    assert!(matches!(third, Err(CatalogError::Conflict(_))), "{third:?}");
    let other = c
        .add_source(&b.channel, "srt://10.0.0.9:9000", 2, 0)
        .await
        .unwrap();
    let bad = c.add_source(&b.channel, "file:///etc/passwd", 2, 0).await;
    assert!(matches!(bad, Err(CatalogError::Invalid { .. })), "{bad:?}");
    assert_eq!(
        c.station_by_key(&a.stream_key).await.unwrap(),
        Some(a.station_id)
    );

    let new_key = c.rotate_key(a.channel.as_str()).await.unwrap();
    assert_eq!(c.station_by_key(&a.stream_key).await.unwrap(), None);
    assert_eq!(
        c.station_by_key(&new_key).await.unwrap(),
        Some(a.station_id)
    );
    let all = c.list_sources().await.unwrap();
    for s in &all {
        let held = s.station_id == a.station_id;
        assert_eq!(s.needs_confirm, held, "{s:?}");
        assert_eq!(s.runs(), !held, "{s:?}");
    }
    assert!(c.set_source_enabled(ids[0], true).await.unwrap());
    let confirmed = c.source(ids[0]).await.unwrap().unwrap();
    assert!(confirmed.runs() && !confirmed.needs_confirm);
    assert!(c.set_source_enabled(ids[1], false).await.unwrap());
    assert!(!c.source(ids[1]).await.unwrap().unwrap().runs());
    assert!(c.remove_source(ids[1]).await.unwrap());
    assert!(!c.remove_source(ids[1]).await.unwrap());
    assert!(c.source(ids[1]).await.unwrap().is_none());
    // Room again for one more on the capped channel.
    c.add_source(&a.channel, "rtsp://10.0.0.9/cam", 2, 0)
        .await
        .unwrap();
    assert!(c.source(other.id).await.unwrap().unwrap().runs());
    db.finish().await;
}

#[tokio::test]
async fn catalog_rules_on_sqlite() {
    catalog_rules(catalog_db::sqlite().await).await;
}

#[tokio::test]
async fn catalog_rules_on_postgres() {
    catalog_rules(catalog_db::postgres().await).await;
}

//! The HTTP side of a cluster (issue 24): `feiyan serve` processes on loopback sharing one
//! fresh PostgreSQL database.
//!
//! - HLS on an edge comes from the origin: a WHIP publisher on A, HLS clients on B get
//!   A's playlist and segments byte for byte, A serves each segment to B once however
//!   many clients fetch it there (A's `feiyan_cluster_hls_served_media_total`), and B,
//!   though it pulls the channel over WHEP for a viewer of its own, neither cuts nor
//!   records a copy.
//! - Replay on its node: the recording made on A names A, A serves it, and B answers its
//!   page, playlist and segments with `307` to A; following the redirect plays.

mod catalog_db;
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use feiyan::client::{PublisherOptions, WhipPublisher};
use sqlx::PgPool;

use common::cluster::*;

/// A node with short HLS targets and a short reconnect grace (so the session, and its
/// recording, end soon after the publisher leaves).
fn start_quick_node(database_url: &str) -> Node {
    start_node_with(
        database_url,
        "[hls]\nsegment_secs = 1.0\npart_secs = 0.5\nreconnect_grace_secs = 2\n",
    )
}

/// A client that follows no redirects (to see the `302` and `307`s themselves).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get_bytes(client: &reqwest::Client, url: &str) -> (u16, bytes::Bytes) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap())
}

/// The media a playlist names: its `EXT-X-MAP` and its segments (not parts).
fn media_paths(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            out.push(rest.split('"').next().unwrap().to_string());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push(line.trim().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_serve_the_origins_hls_and_send_replays_home() {
    let db = catalog_db::postgres().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let station = db
        .catalog
        .add_station("集群中心", "集群所", "HLS站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_quick_node(&db.url);
    let b = start_quick_node(&db.url);
    let id_a = node_id(&pool, &a.base).await;

    let dir = tempfile::tempdir().unwrap();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}?title=hls-cluster", a.base),
        Some(&station.stream_key),
        media(dir.path()).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher on A");
    let session = common::wait_live(&a.base, &channel).await;

    // A WHEP viewer on B: B pulls the channel from A into its own relay, and still must
    // not cut (or record) HLS of its own from that copy.
    let vid = device_id(&b.base, &channel).await;
    let webrtc = viewer(&b.base, &channel, &vid).await;
    wait_for("B's edge pull is up", Duration::from_secs(20), async || {
        metric(&b.base, "feiyan_cluster_pulls_opened_total").await >= 1
    })
    .await;

    // HLS on B: the playlist (B adds the player's vid with a 302, as A would).
    let http = no_redirects();
    let (code, _) = get_bytes(&http, &format!("{}/hls/{channel}/index.m3u8", b.base)).await;
    assert_eq!(code, 302, "a player without a vid gets one on B");
    let playlist_url = format!("{}/hls/{channel}/index.m3u8?vid={vid}", b.base);
    let mut playlist = String::new();
    wait_for(
        "B's playlist lists three segments",
        Duration::from_secs(40),
        async || {
            let (code, body) = get_bytes(&http, &playlist_url).await;
            playlist = String::from_utf8_lossy(&body).into_owned();
            code == 200 && media_paths(&playlist).len() >= 4
        },
    )
    .await;
    assert!(
        playlist.contains(&format!("/hls/{channel}/{}/", session.0)),
        "B's playlist names A's session's media:\n{playlist}"
    );
    let paths = media_paths(&playlist);
    let distinct: BTreeSet<&String> = paths.iter().collect();

    // Five players on B fetch every one of them at once.
    let before = metric(&a.base, "feiyan_cluster_hls_served_media_total").await;
    assert_eq!(before, 0, "nothing fetched media from A yet");
    let mut fetches = Vec::new();
    for _ in 0..5 {
        for path in &paths {
            let url = format!("{}{path}", b.base);
            let http = http.clone();
            fetches.push(tokio::spawn(async move {
                (url.clone(), get_bytes(&http, &url).await)
            }));
        }
    }
    let mut on_b = Vec::new();
    for f in fetches {
        on_b.push(f.await.unwrap());
    }
    for (url, (code, body)) in &on_b {
        assert_eq!(*code, 200, "{url}: {}", String::from_utf8_lossy(body));
        let path = url.strip_prefix(&b.base).unwrap();
        let (code, from_a) = get_bytes(&http, &format!("{}{path}", a.base)).await;
        assert_eq!(code, 200, "A serves {path}");
        assert!(
            *body == from_a && !body.is_empty(),
            "{path}: B's bytes ({}) are not A's ({})",
            body.len(),
            from_a.len()
        );
    }
    let served = metric(&a.base, "feiyan_cluster_hls_served_media_total").await;
    assert_eq!(
        served,
        distinct.len() as i64,
        "A served each of the {} media once to B for 5 players",
        distinct.len()
    );
    assert_eq!(
        metric(&b.base, "feiyan_cluster_hls_fetched_media_total").await,
        distinct.len() as i64
    );

    // Blocking reloads are forwarded: three players asking at once for the first part of
    // the segment after the open one all get a playlist that has reached it.
    let segments = paths.iter().filter(|p| p.contains("/seg-")).count() as u64;
    let next = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("a media sequence")
        + segments
        + 1;
    let mut reloads = Vec::new();
    for _ in 0..3 {
        let url = format!("{playlist_url}&_HLS_msn={next}&_HLS_part=0");
        let http = http.clone();
        reloads.push(tokio::spawn(async move { get_bytes(&http, &url).await }));
    }
    for r in reloads {
        let (code, body) = r.await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(code, 200, "{text}");
        assert!(
            text.contains(&format!("seg-{}.m4s", next - 1)),
            "the blocking reload reached segment {next}:\n{text}"
        );
    }

    // The publisher leaves; the session ends on A and is recorded there only.
    webrtc.close().await.ok();
    publisher.stop().await.unwrap();
    let mut recording: Option<(i64, Option<i64>)> = None;
    wait_for(
        "the session's recording row",
        Duration::from_secs(90),
        async || {
            recording = sqlx::query_as("SELECT id, node_id FROM recordings WHERE session_id = $1")
                .bind(session.0)
                .fetch_optional(&pool)
                .await
                .unwrap();
            recording.is_some()
        },
    )
    .await;
    let (replay, node) = recording.unwrap();
    assert_eq!(node, Some(id_a), "the recording names A");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recordings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one recording in the cluster");
    let b_recordings = b._dir.path().join("media/recordings").join(&channel);
    assert!(
        !b_recordings.exists(),
        "B recorded nothing of its own ({} exists)",
        b_recordings.display()
    );
    assert!(
        !b.served.stderr().contains("HLS could not subscribe"),
        "B did not try to cut HLS"
    );

    // Replay on its node: A serves it, B sends every route there with 307.
    let (code, playlist_a) = get_bytes(
        &http,
        &format!("{}/replay/{replay}/index.m3u8?vid={vid}", a.base),
    )
    .await;
    assert_eq!(code, 200, "A serves its replay");
    let playlist_a = String::from_utf8_lossy(&playlist_a).into_owned();
    let segment = common::replays::vod_segments(&playlist_a)
        .first()
        .map(|s| s.uri.clone())
        .expect("the replay has segments");
    for path in [
        format!("/replay/{replay}"),
        format!("/replay/{replay}/index.m3u8?vid={vid}"),
        format!("/replay/{replay}/{segment}"),
    ] {
        let r = http.get(format!("{}{path}", b.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 307, "B answers {path} with 307");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(location, format!("{}{path}", a.base), "307 to A, same path");
    }
    // Following it plays: the same playlist and segment as A's.
    let follow = reqwest::Client::new();
    let (code, via_b) = get_bytes(
        &follow,
        &format!("{}/replay/{replay}/index.m3u8?vid={vid}", b.base),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(String::from_utf8_lossy(&via_b), playlist_a);
    let (code, seg_b) = get_bytes(&follow, &format!("{}/replay/{replay}/{segment}", b.base)).await;
    let (_, seg_a) = get_bytes(&follow, &format!("{}/replay/{replay}/{segment}", a.base)).await;
    assert_eq!(code, 200);
    assert!(
        !seg_b.is_empty() && seg_b == seg_a,
        "the segment via B is A's"
    );
}

/// The watch page goes where there is room: B at `max_viewers = 1` with one viewer; the
/// page opened on B is sent (its WHEP POST answered 307, the channel info naming a node
/// with room) to A or C, where it plays the publisher's frames with no CSP violation. A
/// page playing on C when C is killed opens itself on another node and plays there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_goes_to_a_node_with_room() {
    use common::pages::{Tab, assert_no_csp_violation};

    let db = catalog_db::postgres().await;
    let station = db
        .catalog
        .add_station("集群中心", "集群所", "满员站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_node(&db.url, 0);
    let b = start_node(&db.url, 1);
    let c = start_node(&db.url, 0);

    let dir = tempfile::tempdir().unwrap();
    let _publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}?title=full-node", a.base),
        Some(&station.stream_key),
        media(dir.path()).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher on A");
    common::wait_live(&a.base, &channel).await;

    // B's one viewer fills it.
    let vid = device_id(&b.base, &channel).await;
    let _filler = viewer(&b.base, &channel, &vid).await;
    let http = no_redirects();
    let with_room = [a.base.clone(), c.base.clone()];
    wait_for(
        "B is full and names a node with room",
        Duration::from_secs(20),
        async || {
            let info: serde_json::Value = http
                .get(format!("{}/api/channels/{channel}", b.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            info["watch_on"]
                .as_str()
                .is_some_and(|n| with_room.iter().any(|r| r == n))
        },
    )
    .await;

    let tab = Tab::watch(&b.base, &channel, "", None).await;
    let landed = plays_on(&tab, &with_room, "the page opened on B").await;
    assert_no_csp_violation(&tab.page, "the watch page sent on from B").await;
    // It watches over WebRTC there, not over B's HLS.
    let mode = tab
        .page
        .evaluate("document.getElementById('status').textContent")
        .await
        .unwrap();
    assert!(
        !mode.as_str().unwrap_or("").contains("HLS"),
        "the page plays WebRTC on {landed}: {mode}"
    );
    drop(tab);

    // A page playing on C; C dies; the page plays on another node.
    let tab = Tab::watch(&c.base, &channel, "", None).await;
    plays_on(&tab, std::slice::from_ref(&c.base), "the page opened on C").await;
    c.served.signal(libc::SIGKILL);
    let survivors = [a.base.clone(), b.base.clone()];
    plays_on(&tab, &survivors, "the page after C died").await;
    assert_no_csp_violation(&tab.page, "the watch page after C died").await;
}

/// Waits (up to 90 s) until the page is on one of `nodes` and its video there has shown
/// more than 30 frames (a page that moved counts from its new document's zero); returns
/// that node.
async fn plays_on(tab: &common::pages::Tab, nodes: &[String], what: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let origin = tab
            .page
            .evaluate("location.origin")
            .await
            .unwrap_or_default();
        let playback = tab.page.video_playback("video").await.unwrap_or_default();
        let frames = common::pages::num(&playback, "/totalVideoFrames");
        if let Some(on) = origin.as_str().filter(|o| nodes.iter().any(|n| n == o))
            && frames > 30
        {
            return on.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not play on one of {nodes:?}: on {origin}, playback {playback}\nlog: {:?}",
            tab.page.log_entries()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

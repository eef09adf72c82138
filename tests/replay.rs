//! Replay (回看) end to end: an RTMP lecture (the ffmpeg CLI) is recorded while live; when
//! it ends its replay is listed, its VOD playlist lasts as long as the session, every
//! segment decodes, the MP4 download has the same frames, replay viewers are counted apart
//! from live ones; bad replay URLs never reach a file; retention deletes the oldest unkept
//! recording and never a kept one; a `kill -9` during a lecture leaves a playable replay.

mod common;

use std::process::Command;
use std::time::Duration;

use common::replays::{
    admin_token, decoded_video_frames, ended_lecture, lecture, rtmp_url, station_rtmp,
    vod_segments, vod_summary, wait_replays,
};
use common::rtmp::{make_media, push_rtmp};
use common::served::Served;
use feiyan::catalog::{Catalog, Scope};
use feiyan::ids::SessionId;
use reqwest::StatusCode;
use serde_json::Value;

const PHONE_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(PHONE_AGENT)
        .build()
        .unwrap()
}

/// The replay's playlist URL with a viewer id (from the server's redirect).
async fn playlist_url(base: &str, id: i64) -> String {
    let r = no_redirects()
        .get(format!("{base}/replay/{id}/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "a playlist without vid is redirected"
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("vid="), "{location}");
    format!("{base}{location}")
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_lecture_replays_decodes_downloads_and_counts_apart_from_live() {
    let t = common::start_server().await;
    let list = ended_lecture(&t, "回看测试", 8, 1).await;
    let replay = &list[0];
    let id = replay["id"].as_i64().unwrap();
    let session = SessionId(replay["session_id"].as_i64().unwrap());
    assert_eq!(replay["kind"], "recorded");
    assert_eq!(replay["station"], "测试站");
    assert_eq!(replay["page"], format!("/replay/{id}"));
    assert!(
        replay.get("path").is_none(),
        "the folder is not public: {replay}"
    );

    // The playlist: VOD, as long as the session within one segment.
    let url = playlist_url(&t.base, id).await;
    let http = no_redirects();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
    assert!(cache.contains("private"), "{cache}");
    let playlist = r.text().await.unwrap();
    let (segs, total, longest) = vod_summary(&playlist, 3);
    // The recorder writes its row at once; the session's end comes through the catalog
    // writer's batches (~1 s worst case), so the row can be listed a moment before it.
    let catalog = &t.server.catalog;
    let ended = common::wait_until(Duration::from_secs(5), || async {
        let s = catalog.session_summary(session, 0).await.unwrap();
        s.is_some_and(|s| s.ended_at.is_some())
    })
    .await;
    assert!(
        ended,
        "session {session} not ended 5 s after its replay was listed"
    );
    let summary = catalog
        .session_summary(session, 0)
        .await
        .unwrap()
        .expect("the session");
    let session_secs =
        (ms(summary.ended_at.as_deref().expect("ended")) - ms(&summary.started_at)) as f64 / 1000.0;
    assert!(
        (total - session_secs).abs() <= longest + 0.5,
        "the replay lasts {total:.2} s, the session {session_secs:.2} s (segments up to {longest:.2} s)"
    );
    assert!(
        (replay["duration_ms"].as_i64().unwrap() as f64 / 1000.0 - total).abs() < 0.01,
        "row {} vs playlist {total}",
        replay["duration_ms"]
    );

    // Every segment decodes (with its init segment), and fetching them counts a replay
    // viewer; a segment fetched twice counts once.
    let base_url = format!("{}/replay/{id}/", t.base);
    let work = tempfile::tempdir().unwrap();
    let mut frames = 0;
    let mut bytes = 0;
    for (i, s) in segs.iter().enumerate() {
        let (uri, init) = (&s.uri, &s.init);
        let init = http.get(format!("{base_url}{init}")).send().await.unwrap();
        assert_eq!(init.status(), StatusCode::OK);
        let mut whole = init.bytes().await.unwrap().to_vec();
        let seg = http.get(format!("{base_url}{uri}")).send().await.unwrap();
        assert_eq!(seg.status(), StatusCode::OK, "{uri}");
        let cache = seg.headers()["cache-control"].to_str().unwrap().to_string();
        assert!(cache.starts_with("private"), "{cache}");
        let body = seg.bytes().await.unwrap();
        bytes += body.len();
        whole.extend_from_slice(&body);
        let file = work.path().join(format!("seg-{i}.mp4"));
        std::fs::write(&file, whole).unwrap();
        let n = decoded_video_frames(&file);
        assert!(n > 0, "segment {i} has no video");
        frames += n;
    }
    let again = http
        .get(format!("{base_url}{}", segs[0].uri))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(bytes as i64 <= replay["size_bytes"].as_i64().unwrap());

    // The MP4 download: the same frames, Range answered.
    let mp4 = http
        .get(format!("{base_url}replay.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(mp4.status(), StatusCode::OK);
    assert_eq!(mp4.headers()["content-type"], "video/mp4");
    let disposition = mp4.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let file = work.path().join("replay.mp4");
    let body = mp4.bytes().await.unwrap();
    std::fs::write(&file, &body).unwrap();
    assert_eq!(
        decoded_video_frames(&file),
        frames,
        "the MP4 has the segments' frames"
    );
    let part = http
        .get(format!("{base_url}replay.mp4"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap(), body.slice(100..200));
    let past = http
        .get(format!("{base_url}replay.mp4"))
        .header("range", format!("bytes={}-", body.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Counted: one replay viewer (a phone), the distinct segments' seconds; no live row.
    let vid = url.split("vid=").nth(1).unwrap().to_string();
    let key = feiyan::hls::viewers::viewer_key(&vid);
    let day = feiyan::catalog::shanghai_day(feiyan::audience::now_ms())
        .format("%Y-%m-%d")
        .to_string();
    let catalog = t.server.catalog.clone();
    let mut view = None;
    let counted = common::wait_until(Duration::from_secs(10), || {
        let catalog = catalog.clone();
        let (key, day) = (key.clone(), day.clone());
        async move {
            catalog
                .replay_view(id, &key, &day)
                .await
                .unwrap()
                .is_some_and(|v| v.watched_ms > 0)
        }
    })
    .await;
    assert!(counted, "the replay viewer was not written");
    // Written every 2 s: wait for the last fetches to be in.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    if let Some(v) = t.server.catalog.replay_view(id, &key, &day).await.unwrap() {
        view = Some(v);
    }
    let view = view.unwrap();
    assert_eq!(view.terminal, "mobile");
    assert!(
        (view.watched_ms as f64 / 1000.0 - total).abs() < 0.01,
        "watched {} ms of a {total:.3} s replay (each segment once)",
        view.watched_ms
    );
    let live = t.server.catalog.session_viewers(session).await.unwrap();
    assert!(
        live.is_empty(),
        "replay viewers are not live viewers: {live:?}"
    );

    // The statistics an administrator reads: a replay viewer and its minutes beside the
    // session, no online viewer; the CSV has the same.
    let token = admin_token(&t, "city", Scope::City).await;
    let table: Value = http
        .get(format!("{}/api/stats/table?group=station", t.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = table
        .as_array()
        .or_else(|| table["rows"].as_array())
        .expect("rows");
    let row = rows
        .iter()
        .find(|r| r["group_name"] == "测试站")
        .unwrap_or_else(|| panic!("no row for the station: {table}"));
    assert_eq!(row["sessions"], 1, "{row}");
    assert_eq!(row["online_viewers"], 0, "{row}");
    assert_eq!(row["replay_viewers"], 1, "{row}");
    let minutes = row["replay_minutes"].as_f64().unwrap();
    assert!(
        (minutes - total / 60.0).abs() < 0.01,
        "{minutes} replay minutes, {total} s watched"
    );
    let csv = http
        .get(format!(
            "{}/api/stats/table?group=station&format=csv",
            t.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("回看人次,回看分钟,互动消息,提问,已答提问,点赞,线上签到"),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replay_requests_get_clear_answers_and_hidden_replays_only_admins_in_scope() {
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();
    let list = ended_lecture(&t, "回看测试", 4, 1).await;
    let id = list[0]["id"].as_i64().unwrap();
    let http = no_redirects();
    let status = |path: String| {
        let http = http.clone();
        let base = t.base.clone();
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            let code = r.status();
            (code, r.text().await.unwrap())
        }
    };
    let vid_url = playlist_url(&t.base, id).await;
    let vid = vid_url.split("vid=").nth(1).unwrap().to_string();
    for (path, want) in [
        (
            format!("/replay/999999/index.m3u8?vid={vid}"),
            StatusCode::NOT_FOUND,
        ),
        (
            "/replay/999999/index.m3u8".to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/replay/{id}/seg-99999.m4s?vid={vid}"),
            StatusCode::NOT_FOUND,
        ),
        (format!("/replay/{id}/init-7.mp4"), StatusCode::NOT_FOUND),
        (format!("/replay/{id}/journal.tsv"), StatusCode::NOT_FOUND),
        (
            format!("/replay/{id}/..%2f..%2fetc%2fpasswd"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/replay/{id}/%2Fetc%2Fpasswd"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/replay/..%2F..%2Fetc/index.m3u8".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/replay/{id}/seg-0.m4s%00"),
            StatusCode::BAD_REQUEST,
        ),
        ("/replay/abc/index.m3u8".to_string(), StatusCode::NOT_FOUND),
    ] {
        let (code, body) = status(path.clone()).await;
        assert_eq!(code, want, "{path}: {body}");
        assert!(!body.contains("root:"), "{path} leaked a file: {body}");
        assert!(
            !body.trim().is_empty(),
            "{path}: an answer a person can act on"
        );
    }
    let bad = http
        .get(format!("{}/api/recordings?station=no%20such", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let unknown = http
        .get(format!("{}/api/recordings?station=st-999999", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // Hidden: gone for the public, there for an administrator whose scope covers it.
    let catalog = &t.server.catalog;
    catalog.set_recording_published(id, false).await.unwrap();
    let placement = catalog
        .station_placement(t.station.station_id)
        .await
        .unwrap();
    let other = catalog
        .add_station("别的中心", "别的所", "别的站")
        .await
        .unwrap();
    let center = admin_token(&t, "center-op", Scope::Center(placement.center_id)).await;
    let outsider = admin_token(&t, "other-op", Scope::Station(other.station_id)).await;
    // Hiding shows within the row cache's two seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let playlist = format!("{}/replay/{id}/index.m3u8?vid={vid}", t.base);
    assert_eq!(
        http.get(&playlist).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let listed = wait_replays(&t.base, &channel, 0, Duration::from_secs(1)).await;
    assert!(
        listed.is_empty(),
        "a hidden replay is not listed: {listed:?}"
    );
    let seen = http
        .get(&playlist)
        .bearer_auth(&center)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), StatusCode::OK);
    assert!(seen.text().await.unwrap().contains("#EXT-X-ENDLIST"));
    assert_eq!(
        http.get(&playlist)
            .bearer_auth(&outsider)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_oldest_unkept_recording_and_never_a_kept_one() {
    let t = common::start_server_with(|c| c.recording.max_disk_mb = 1).await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let url = station_rtmp(&t, "回看测试");
    let catalog = t.server.catalog.clone();
    // Each lecture is about 4 s at ~900 kbit/s: ~450 KB, so three pass 1 MiB.
    lecture(&url, 4, dir.path()).await;
    let first = wait_replays(&t.base, &channel, 1, Duration::from_secs(10)).await[0]["id"]
        .as_i64()
        .unwrap();
    catalog.set_recording_keep(first, true).await.unwrap();
    lecture(&url, 4, dir.path()).await;
    let second = wait_replays(&t.base, &channel, 2, Duration::from_secs(10)).await[0]["id"]
        .as_i64()
        .unwrap();
    lecture(&url, 4, dir.path()).await;
    let deleted = common::wait_until(Duration::from_secs(15), || {
        let catalog = catalog.clone();
        async move {
            catalog
                .recording(second)
                .await
                .unwrap()
                .is_some_and(|r| r.deleted_at.is_some())
        }
    })
    .await;
    let rows = catalog.list_recordings(None, true).await.unwrap();
    assert!(
        deleted,
        "the oldest unkept recording was not deleted: {rows:?}"
    );
    let second_row = catalog.recording(second).await.unwrap().unwrap();
    let reason = second_row.deleted_reason.clone().unwrap();
    assert!(reason.contains("max_disk_mb"), "{reason}");
    let root = t.recording_dir.clone();
    assert!(!root.join(&second_row.path).exists(), "its files are gone");
    let first_row = catalog.recording(first).await.unwrap().unwrap();
    assert!(
        first_row.deleted_at.is_none() && first_row.keep,
        "{first_row:?}"
    );
    assert!(root.join(&first_row.path).exists());
    // The newest stays (1 MiB holds the kept one and it).
    assert_eq!(
        rows.iter().filter(|r| r.deleted_at.is_none()).count(),
        2,
        "{rows:?}"
    );
    // Gone for residents.
    let r = reqwest::get(format!("{}/replay/{second}/index.m3u8?vid=x", t.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// `kill -9` while a lecture is being recorded: after a restart the recording up to its
/// last whole segment is a replay whose every segment decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_lecture_leaves_a_playable_replay_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/feiyan.db", dir.path().display());
    let config = dir.path().join("feiyan.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\
             [webrtc]\nudp_bind = \"127.0.0.1:0\"\nadvertised_ips = [\"127.0.0.1\"]\n\
             [ingest]\nrtmp_listen = \"127.0.0.1:{}\"\n\
             [catalog]\ndatabase_url = \"{db}\"\n\
             [cluster]\nheartbeat_secs = 1\ngone_after_secs = 2\n\
             [recording]\ndir = \"recordings\"\n",
            free_port()
        ),
    )
    .unwrap();
    let catalog = Catalog::connect(&db).await.unwrap();
    let station = catalog
        .add_station("断电中心", "断电所", "断电站")
        .await
        .unwrap();
    let env = [
        ("FEIYAN_DATABASE_URL", None),
        (
            "RUST_LOG",
            Some("warn,rtc=error,rtc_ice=error,rtc_dtls=off"),
        ),
    ];
    let mut served = Served::start(&config, &env);
    let base = served.wait_running().base;
    let rtmp: std::net::SocketAddr = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rtmp_listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .parse()
        .unwrap();
    let channel = station.channel.to_string();
    let clip = make_media(dir.path(), 30);
    let mut push = push_rtmp(
        &clip,
        &rtmp_url(rtmp, &channel, &station.stream_key, "断电测试"),
    );
    let session = common::wait_live(&base, &channel).await;
    let folder = dir
        .path()
        .join("recordings")
        .join(&channel)
        .join(session.0.to_string());
    let journal = folder.join("journal.tsv");
    let written = common::wait_until(Duration::from_secs(30), || {
        let journal = journal.clone();
        async move {
            std::fs::read_to_string(&journal)
                .map(|j| j.lines().filter(|l| l.starts_with("seg\t")).count() >= 3)
                .unwrap_or(false)
        }
    })
    .await;
    assert!(
        written,
        "three segments were not recorded: {}",
        served.stderr()
    );
    served.signal(libc::SIGKILL);
    served.wait_exit(Duration::from_secs(10)).expect("killed");
    let _ = push.kill();
    let _ = push.wait();
    let whole = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("seg\t"))
        .count();
    assert!(
        !std::fs::read_to_string(&journal).unwrap().contains("end\t"),
        "the session never ended"
    );

    let mut again = Served::start(&config, &env);
    let base = again.wait_running().base;
    let list = wait_replays(&base, &channel, 1, Duration::from_secs(15)).await;
    assert_eq!(list[0]["session_id"], session.0);
    let url = playlist_url(&base, list[0]["id"].as_i64().unwrap()).await;
    let playlist = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let segs = vod_segments(&playlist);
    assert!(
        segs.len() >= whole.min(3),
        "{whole} whole segments on disk, {playlist}"
    );
    let work = tempfile::tempdir().unwrap();
    let prefix = url.split("index.m3u8").next().unwrap().to_string();
    for (i, s) in segs.iter().enumerate() {
        let (uri, init) = (&s.uri, &s.init);
        let mut whole = reqwest::get(format!("{prefix}{init}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let seg = reqwest::get(format!("{prefix}{uri}")).await.unwrap();
        assert_eq!(seg.status(), StatusCode::OK);
        whole.extend_from_slice(&seg.bytes().await.unwrap());
        let file = work.path().join(format!("{i}.mp4"));
        std::fs::write(&file, whole).unwrap();
        assert!(decoded_video_frames(&file) > 0, "segment {i}");
    }
    // The command line sees it, keeps it and exports it as one MP4 with every frame.
    let id = list[0]["id"].as_i64().unwrap().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_feiyan"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(dir.path())
            .env_remove("FEIYAN_DATABASE_URL")
            .env("RUST_LOG", "error")
            .output()
            .expect("feiyan runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "feiyan {args:?}: {text}");
        text
    };
    let listed = cli(&["recording", "list"]);
    assert!(listed.contains("断电站"), "{listed}");
    cli(&["recording", "keep", &id]);
    let mp4 = work.path().join("lecture.mp4");
    cli(&["recording", "export", &id, mp4.to_str().unwrap()]);
    let frames: usize = (0..segs.len())
        .map(|i| decoded_video_frames(&work.path().join(format!("{i}.mp4"))))
        .sum();
    assert_eq!(
        decoded_video_frames(&mp4),
        frames,
        "the export has every frame"
    );
    let kept = catalog
        .recording(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(kept.keep);
    again.signal(libc::SIGTERM);
    again.wait_exit(Duration::from_secs(20));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `[recording.channels] "st-1" = false`: that channel's lectures leave no recording and no
/// replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_turned_off_is_not_recorded() {
    let t = common::start_server_with(|c| {
        c.recording.channels.insert("st-1".into(), false);
    })
    .await;
    assert_eq!(t.station.channel.to_string(), "st-1");
    let dir = tempfile::tempdir().unwrap();
    lecture(&station_rtmp(&t, "回看测试"), 4, dir.path()).await;
    // Long enough for a recorded session's row (listed within 10 s, usually under 1 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listed = wait_replays(&t.base, "st-1", 0, Duration::from_secs(1)).await;
    assert!(listed.is_empty(), "{listed:?}");
    assert!(
        !t.recording_dir.join("st-1").exists(),
        "nothing is written for a channel that is not recorded"
    );
}

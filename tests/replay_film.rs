//! Replays of film classes (电影党史课). A film class of an H.264 + AAC library file is not
//! recorded again: its replay is the library file, cut into the same fMP4 segments, and
//! lasts as long as the film. A film class of an HEVC film is recorded like a lecture (the
//! live HLS segments of its H.264 transcode) and its replay plays in headless Chromium.
//!
//! Films come from scripts/make-test-media.sh; screenings start now through the API, as a
//! station's operator starts one. Chromium: `/usr/bin/chromium` or `FEIYAN_CHROMIUM`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestServer;
use common::pages::{Tab, assert_no_csp_violation};
use common::replays::{
    REPLAY_VIEW, assert_replay_plays, decoded_video_frames, device_cookie, vod_summary,
    wait_replays,
};
use common::rtmp::make_media;
use feiyan::audience::now_ms;
use feiyan::ids::SessionId;
use feiyan::ingest::playout::probe_film;
use serde_json::{Value, json};

/// Imports `file` into the film library, starts a screening of it now on the test
/// station's channel and waits until that film class has ended (at the end of the file).
/// Returns the film's duration and the session.
async fn film_class(t: &TestServer, file: &Path) -> (i64, SessionId) {
    let catalog = &t.server.catalog;
    let film = probe_film(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let film_id = catalog.import_film(&film, now_ms()).await.unwrap();
    let channel = t.station.channel.to_string();
    let http = reqwest::Client::new();
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let created: Value = http
        .post(format!("{}/api/screenings", t.base))
        .bearer_auth(&t.station.stream_key)
        .json(&json!({"channel": channel, "film_id": film_id, "at": tomorrow.to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let screening = created["id"].as_i64().expect("screening id");
    let started = http
        .post(format!("{}/api/screenings/{screening}/start", t.base))
        .bearer_auth(&t.station.stream_key)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let session = common::wait_live(&t.base, &channel).await;
    let ended = common::wait_until(
        Duration::from_millis(film.duration_ms as u64 + 10_000),
        || {
            let catalog = catalog.clone();
            async move {
                catalog
                    .session_summary(session, now_ms())
                    .await
                    .unwrap()
                    .is_some_and(|s| !s.live)
            }
        },
    )
    .await;
    assert!(ended, "the film class did not end at the end of its file");
    (film.duration_ms, session)
}

/// The station's one replay, once listed.
async fn the_replay(t: &TestServer, session: SessionId) -> Value {
    let channel = t.station.channel.to_string();
    let list = wait_replays(&t.base, &channel, 1, Duration::from_secs(10)).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let replay = list[0].clone();
    assert_eq!(replay["session_id"], session.0, "{replay}");
    assert_eq!(replay["session_kind"], "film_class", "{replay}");
    replay
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_aac_film_class_replays_from_the_library_file() {
    let t = common::start_server().await;
    let media = tempfile::tempdir().unwrap();
    make_media(media.path(), 6);
    let film = media.path().join("h264-bframes-aac.mp4");
    let (film_ms, session) = film_class(&t, &film).await;
    let replay = the_replay(&t, session).await;
    assert_eq!(replay["kind"], "library", "{replay}");
    assert_eq!(replay["film"], "h264-bframes-aac", "{replay}");
    let channel = t.station.channel.to_string();
    assert!(
        !t.recording_dir
            .join(&channel)
            .join(session.0.to_string())
            .exists(),
        "a library film class has no recording folder"
    );
    let written = files_under(&t.recording_dir);
    assert!(
        written.is_empty(),
        "nothing is recorded for it: {written:?}"
    );

    // The VOD playlist lasts as long as the film, within one segment.
    let id = replay["id"].as_i64().unwrap();
    let playlist_url = format!("{}/replay/{id}/index.m3u8", t.base);
    let r = reqwest::get(&playlist_url).await.unwrap();
    assert_eq!(r.status(), 200);
    let url = r.url().to_string();
    assert!(url.contains("?vid="), "a viewer id was added: {url}");
    let playlist = r.text().await.unwrap();
    let (segments, total, longest) = vod_summary(&playlist, 2);
    let film_secs = film_ms as f64 / 1000.0;
    assert!(
        (total - film_secs).abs() <= longest,
        "the replay lasts {total:.3} s, the film {film_secs:.3} s (segments up to {longest:.3} s)"
    );

    // Every segment decodes with its init segment, and together they hold the film's
    // frames.
    let prefix = format!("{}/replay/{id}/", t.base);
    let work = tempfile::tempdir().unwrap();
    let mut frames = 0;
    for (i, segment) in segments.iter().enumerate() {
        let init = reqwest::get(format!("{prefix}{}", segment.init))
            .await
            .unwrap();
        assert_eq!(init.status(), 200, "{}", segment.init);
        let mut whole = init.bytes().await.unwrap().to_vec();
        let body = reqwest::get(format!("{prefix}{}", segment.uri))
            .await
            .unwrap();
        assert_eq!(body.status(), 200, "{}", segment.uri);
        whole.extend_from_slice(&body.bytes().await.unwrap());
        let file = work.path().join(format!("seg-{i}.mp4"));
        std::fs::write(&file, whole).unwrap();
        let n = tokio::task::spawn_blocking(move || decoded_video_frames(&file))
            .await
            .unwrap();
        assert!(n > 0, "segment {i} has no video");
        frames += n;
    }
    let in_film = tokio::task::spawn_blocking(move || decoded_video_frames(&film))
        .await
        .unwrap();
    assert_eq!(frames, in_film, "the segments hold the film's frames");
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_film_class_is_recorded_and_replays_in_chromium() {
    let t = common::start_server().await;
    let media = tempfile::tempdir().unwrap();
    make_media(media.path(), 6);
    let (_, session) = film_class(&t, &media.path().join("hevc-aac.mp4")).await;
    let replay = the_replay(&t, session).await;
    assert_eq!(replay["kind"], "recorded", "{replay}");
    assert_eq!(replay["film"], "hevc-aac", "{replay}");
    let channel = t.station.channel.to_string();
    let folder = t.recording_dir.join(&channel).join(session.0.to_string());
    let written = files_under(&folder);
    assert!(
        written
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "m4s")),
        "segments recorded under {}: {written:?}",
        folder.display()
    );

    let id = replay["id"].as_i64().unwrap();
    let tab = Tab::open("film-replay").await;
    tab.page.record_requests().await.unwrap();
    tab.page
        .navigate(&format!("{}/replay/{id}", t.base))
        .await
        .expect("replay page loads");
    assert_replay_plays(&tab.page, "the HEVC film class's replay").await;
    let view = tab.page.evaluate(REPLAY_VIEW).await.unwrap();
    assert_eq!(view["title"], "hevc-aac", "{view}");
    let vid = device_cookie(&tab.page).await;
    assert!(
        tab.page.requests().iter().any(|r| r["url"]
            .as_str()
            .is_some_and(|u| u.contains(&format!("/replay/{id}/seg-")) && u.ends_with(&vid))),
        "segments fetched with the page's vid"
    );
    assert_no_csp_violation(&tab.page, "the film class's replay page").await;
    drop(tab);
    t.server.shutdown().await;
}

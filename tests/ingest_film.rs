//! Film library and screenings: probing rejects unplayable files while others import; a
//! film class scheduled a few seconds ahead starts on time, reaches a WHEP viewer as a
//! `film_class` session linked to the film, and ends at the end of the file; a screening
//! far in the past is marked missed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{start_server, wait_until};
use feiyan::audience::now_ms;
use feiyan::catalog::{ScreeningStatus, SessionKind, SessionSource};
use feiyan::client::{ViewerOptions, WhepViewer};
use feiyan::ids::ScreeningId;
use feiyan::ingest::playout::probe_film;

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

#[test]
fn film_probe_accepts_playable_files_and_says_why_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 2);
    for ok in [
        "h264-bframes-aac.mp4",
        "h264-baseline-aac.mp4",
        "hevc-aac.mp4",
    ] {
        let film = probe_film(&dir.path().join(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!((1900..2300).contains(&film.duration_ms), "{ok}: {film:?}");
        assert_eq!(film.width, 640);
        assert_eq!(film.audio_codec.as_deref(), Some("aac"));
    }
    for bad in ["corrupt.mp4", "not-media.mp4", "missing.mp4"] {
        let err = probe_film(&dir.path().join(bad))
            .expect_err(bad)
            .to_string();
        assert!(
            err.contains(bad) || err.contains("cannot open") || err.contains("no such file"),
            "{bad}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_film_class_starts_on_time_plays_and_ends_at_eof() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 4);
    let catalog = t.server.catalog.clone();
    let film = probe_film(&dir.path().join("h264-bframes-aac.mp4")).unwrap();
    let film_id = catalog.import_film(&film, now_ms()).await.unwrap();
    let channel = t.station.channel.to_string();

    // One screening missed long ago (beyond the grace period), one 3 s ahead.
    let missed = catalog
        .schedule_screening(&channel, film_id, now_ms() - 3_600_000, now_ms())
        .await
        .unwrap();
    let at = now_ms() + 3000;
    let screening = catalog
        .schedule_screening(&channel, film_id, at, now_ms())
        .await
        .unwrap();

    let mut started = None;
    while now_ms() < at + 3000 {
        let s = catalog.screening(screening.id).await.unwrap();
        if let Some(session) = s.session_id {
            started = Some((now_ms(), session));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (started_at, session) = started.expect("the screening started");
    assert!(
        started_at >= at && started_at - at < 1000,
        "started {} ms after its time",
        started_at - at
    );
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions::default(),
    )
    .await
    .expect("viewer connects to the film class");

    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.kind, SessionKind::FilmClass);
    assert_eq!(summary.source, SessionSource::Playout);
    assert_eq!(summary.title, "h264-bframes-aac");
    assert_eq!(catalog.session_film(session).await.unwrap(), Some(film_id));

    // A 4 s film: over after about 4 s, not before ~3.
    let c = catalog.clone();
    assert!(
        wait_until(Duration::from_secs(8), || {
            let c = c.clone();
            async move {
                c.session_summary(session, now_ms())
                    .await
                    .unwrap()
                    .is_some_and(|s| !s.live)
            }
        })
        .await,
        "the film class ended at end of file"
    );
    let ended = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    let length = chrono::DateTime::parse_from_rfc3339(ended.ended_at.as_deref().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&ended.started_at).unwrap();
    assert!(
        (3000..6500).contains(&length.num_milliseconds()),
        "played for {} ms",
        length.num_milliseconds()
    );
    let stats = viewer.stats();
    assert!(stats.video.counters.packets > 50, "{:?}", stats.video);
    assert!(stats.audio.counters.packets > 100, "{:?}", stats.audio);
    assert!(stats.first_video_frame_is_keyframe);
    let c = catalog.clone();
    assert!(
        wait_until(Duration::from_secs(2), || {
            let c = c.clone();
            async move { c.screening(screening.id).await.unwrap().status == ScreeningStatus::Done }
        })
        .await
    );
    let missed = catalog.screening(missed.id).await.unwrap();
    assert_eq!(missed.status, ScreeningStatus::Missed);
    assert!(missed.note.contains("not running"), "{}", missed.note);
    viewer.close().await.ok();
    t.server.shutdown().await;
}

/// Runs the `feiyan` binary against the test server's catalog, as an operator on the
/// server's host would; returns (success, stdout + stderr).
fn feiyan_cli(database_url: &str, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feiyan"))
        .args(args)
        .current_dir(dir.path())
        .env("FEIYAN_DATABASE_URL", database_url)
        .env("RUST_LOG", "error")
        .output()
        .expect("feiyan runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screening_starts_now_through_the_api_and_stops_through_the_cli() {
    let db_dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/catalog.db", db_dir.path().display());
    let url = database_url.clone();
    let t = common::start_server_with(move |c| c.catalog.database_url = url).await;
    // One 15 s film made directly (the whole clip set would take long at this length).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h264-baseline-aac.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "15", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-profile:v", "baseline", "-preset", "ultrafast", "-g", "60"])
        .args(["-c:a", "aac", "-b:a", "96k"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let catalog = t.server.catalog.clone();
    let film = probe_film(&path).unwrap();
    let film_id = catalog.import_film(&film, now_ms()).await.unwrap();
    let channel = t.station.channel.to_string();
    let http = reqwest::Client::new();

    // Scheduled for tomorrow; the station starts it now.
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let created: serde_json::Value = http
        .post(format!("{}/api/screenings", t.base))
        .bearer_auth(&t.station.stream_key)
        .json(&serde_json::json!({"channel": channel, "film_id": film_id, "at": tomorrow.to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ScreeningId(created["id"].as_i64().expect("screening id"));
    assert_eq!(created["status"], "scheduled");
    let start = format!("{}/api/screenings/{id}/start", t.base);
    let refused = http
        .post(&start)
        .bearer_auth("fy_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let asked = now_ms();
    let started = http
        .post(&start)
        .bearer_auth(&t.station.stream_key)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let session = common::wait_live(&t.base, &channel).await;
    let waited = now_ms() - asked;
    assert!(waited < 3000, "started {waited} ms after the request");
    let s = catalog.screening(id).await.unwrap();
    assert_eq!(
        (s.status, s.session_id),
        (ScreeningStatus::Playing, Some(session))
    );
    let again = http
        .post(&start)
        .bearer_auth(&t.station.stream_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        409,
        "a playing screening cannot start twice"
    );

    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions::default(),
    )
    .await
    .expect("viewer connects to the film class");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let watched = viewer.stats();
    assert!(watched.video.counters.packets > 50, "{:?}", watched.video);
    assert!(watched.audio.counters.packets > 60, "{:?}", watched.audio);

    // The operator stops it from the command line, long before the 15 s film ends.
    let id_text = id.to_string();
    let (ok, out) = tokio::task::spawn_blocking({
        let url = database_url.clone();
        move || feiyan_cli(&url, &["screening", "stop", &id_text])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("stop requested"), "{out}");
    let c = catalog.clone();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let c = c.clone();
            async move {
                c.session_summary(session, now_ms())
                    .await
                    .unwrap()
                    .is_some_and(|s| !s.live)
            }
        })
        .await,
        "the session ended after the stop"
    );
    let ended = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.kind, SessionKind::FilmClass);
    assert_eq!(ended.source, SessionSource::Playout);
    let played = chrono::DateTime::parse_from_rfc3339(ended.ended_at.as_deref().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&ended.started_at).unwrap();
    assert!(
        played.num_milliseconds() < 10_000,
        "stopped early: played {} ms of 15 s",
        played.num_milliseconds()
    );
    assert_eq!(catalog.session_film(session).await.unwrap(), Some(film_id));
    let info = catalog.session_info(session.0).await.unwrap().unwrap();
    assert_eq!(info.film.as_deref(), Some("h264-baseline-aac"));
    let c = catalog.clone();
    assert!(
        wait_until(Duration::from_secs(2), || {
            let c = c.clone();
            async move { c.screening(id).await.unwrap().status == ScreeningStatus::Stopped }
        })
        .await
    );
    assert!(common::live_session(&t.base, &channel).await.is_none());

    // Stopping twice is a clear conflict; a waiting screening is cancelled instead.
    let stop = format!("{}/api/screenings/{id}/stop", t.base);
    let twice = http
        .post(&stop)
        .bearer_auth(&t.station.stream_key)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 409);
    assert!(twice.text().await.unwrap().contains("stopped"));
    let later = catalog
        .schedule_screening(&channel, film_id, now_ms() + 3_600_000, now_ms())
        .await
        .unwrap();
    let cancelled: serde_json::Value = http
        .post(format!("{}/api/screenings/{}/stop", t.base, later.id))
        .bearer_auth(&t.station.stream_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    viewer.close().await.ok();
    t.server.shutdown().await;
}

#[test]
fn film_import_shows_progress_per_file_and_rejects_bad_files_while_others_import() {
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 3);
    let media = |name: &str| dir.path().join(name).display().to_string();
    // A faststart MP4 cut in half: its header promises 3 s, its data stops near 1.5 s.
    let fast = media("faststart.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(media("h264-baseline-aac.mp4"))
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&fast)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&fast).unwrap();
    std::fs::write(media("truncated.mp4"), &bytes[..bytes.len() / 2]).unwrap();
    let database_url = format!("sqlite://{}/catalog.db", dir.path().display());
    let files = [
        "h264-bframes-aac.mp4",
        "corrupt.mp4",
        "hevc-aac.mp4",
        "not-media.mp4",
        "truncated.mp4",
    ];
    let mut args = vec!["film".to_string(), "import".to_string()];
    args.extend(files.iter().map(|f| media(f)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Not a terminal (a log, a pipe): plain progress lines per file.
    let (ok, out) = feiyan_cli(&database_url, &args);
    assert!(!ok, "bad files make the exit status non-zero: {out}");
    for good in ["h264-bframes-aac", "hevc-aac"] {
        assert!(
            out.contains(&format!("{good}.mp4: scanned 100%")),
            "{good}: {out}"
        );
        assert!(out.contains(&format!(": {good} (3.")), "{good}: {out}");
    }
    assert!(out.contains("hevc-aac.mp4: scanned 50%"), "{out}");
    let rejected = |name: &str| {
        out.lines()
            .find(|l| l.starts_with("rejected ") && l.contains(name))
            .unwrap_or_else(|| panic!("no rejection line for {name}: {out}"))
            .to_string()
    };
    assert!(rejected("corrupt.mp4").contains("cannot open"), "{out}");
    assert!(rejected("not-media.mp4").contains("cannot open"), "{out}");
    let truncated = rejected("truncated.mp4");
    assert!(
        truncated.contains("truncated") || truncated.contains("damaged"),
        "{truncated}"
    );
    assert!(out.contains("3 file(s) could not be imported"), "{out}");
    let (ok, list) = feiyan_cli(&database_url, &["film", "list"]);
    assert!(ok, "{list}");
    assert_eq!(list.lines().count(), 2, "{list}");

    // On a terminal (a pseudo-terminal from util-linux `script`): a bar per file.
    let command = format!(
        "{} film import {} {}",
        env!("CARGO_BIN_EXE_feiyan"),
        media("h264-baseline-aac.mp4"),
        media("corrupt.mp4")
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("FEIYAN_DATABASE_URL", &database_url)
        .env("RUST_LOG", "error")
        .output()
        .expect("script (util-linux) runs");
    let screen = String::from_utf8_lossy(&tty.stdout);
    // The bar's last drawing: full, with the outcome.
    let finished = screen.split(['\r', '\n']).any(|l| {
        l.contains("h264-baseline-aac.mp4")
            && l.contains("[==============================] 100%")
            && l.trim_end().ends_with("ok")
    });
    assert!(finished, "no finished bar: {screen:?}");
    assert!(
        screen.contains("corrupt.mp4") && screen.contains("rejected"),
        "{screen:?}"
    );
    assert!(
        !screen.contains("scanned 100%"),
        "no plain lines on a terminal"
    );
}

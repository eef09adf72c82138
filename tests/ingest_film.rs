//! Film library and screenings: probing rejects unplayable files while others import; a
//! film class scheduled a few seconds ahead starts on time, reaches a WHEP viewer as a
//! `film_class` session linked to the film, and ends at the end of the file; a screening
//! far in the past is marked missed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{start_server, wait_until};
use feiyan::catalog::now_ms;
use feiyan::client::{ViewerOptions, WhepViewer};
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
    assert_eq!(summary.kind, "film_class");
    assert_eq!(summary.source, "playout");
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
            async move { c.screening(screening.id).await.unwrap().status == "done" }
        })
        .await
    );
    let missed = catalog.screening(missed.id).await.unwrap();
    assert_eq!(missed.status, "missed");
    assert!(missed.note.contains("not running"), "{}", missed.note);
    viewer.close().await.ok();
    t.server.shutdown().await;
}

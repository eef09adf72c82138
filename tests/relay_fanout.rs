//! The real server, real webrtc-rs peers: a WHIP publisher's H.264 + Opus reaches ten WHEP
//! viewers byte for byte; a late joiner starts on a keyframe; attendance is recorded;
//! viewers keep playing across a publisher change without renegotiating; and a viewer
//! detached from its peer connection that closes it is ended at once.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::{start_server, wait_live, wait_until};
use feiyan::catalog::SessionKind;
use feiyan::client::TrackKind;
use feiyan::client::{
    PublisherOptions, SyntheticMedia, ViewerOptions, ViewerStack, WhepViewer, WhipPublisher,
    make_test_media,
};

async fn test_media(dir: &std::path::Path, secs: u64) -> SyntheticMedia {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) =
            make_test_media(&dir, Duration::from_secs(secs), 500).expect("ffmpeg makes test media");
        SyntheticMedia::load(&h264, &ogg).expect("test media loads")
    })
    .await
    .unwrap()
}

fn viewer_opts() -> ViewerOptions {
    ViewerOptions {
        record_payloads: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_viewers_get_every_packet_and_are_counted() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let media = test_media(dir.path(), 4).await;
    let channel = t.station.channel.to_string();
    let whip = format!("{}/whip/{channel}?title=%E6%B5%8B%E8%AF%95", t.base);
    let whep = format!("{}/whep/{channel}", t.base);

    let publisher = WhipPublisher::connect(
        &whip,
        Some(&t.station.stream_key),
        media,
        PublisherOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&t.base, &channel).await;

    // A second publisher while one is live -> 409.
    let second = WhipPublisher::connect(
        &whip,
        Some(&t.station.stream_key),
        test_media(dir.path(), 1).await,
        PublisherOptions::default(),
    )
    .await;
    let err = second.err().expect("second publisher refused").to_string();
    assert!(err.contains("409"), "{err}");

    let mut viewers = Vec::new();
    for _ in 0..10 {
        viewers.push(
            WhepViewer::connect(&whep, None, viewer_opts())
                .await
                .expect("viewer connects"),
        );
    }
    // Let media flow for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A late joiner's first video frame is a keyframe.
    let late = WhepViewer::connect(&whep, None, viewer_opts())
        .await
        .expect("late viewer");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late_stats = late.stats();
    assert!(
        late_stats.first_keyframe_at.is_some(),
        "late joiner got a keyframe"
    );
    assert!(
        late_stats.first_video_frame_is_keyframe,
        "late joiner's first frame is a keyframe"
    );

    publisher.stop_sending();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every viewer received >= 99% of what was sent after it connected, byte-identical.
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let sent: Vec<Bytes> = publisher.sent_payloads(kind);
        assert!(!sent.is_empty(), "publisher sent {kind}");
        let sent_set: HashSet<&Bytes> = sent.iter().collect();
        for (i, viewer) in viewers.iter().enumerate() {
            let got = viewer.received_payloads(kind);
            let first = got.first().expect("viewer received media");
            // Payloads the viewer got must all be payloads the publisher sent.
            let foreign = got.iter().filter(|p| !sent_set.contains(p)).count();
            assert_eq!(
                foreign, 0,
                "viewer {i} {kind}: {foreign} payloads not byte-identical"
            );
            // From the first payload it got, it got >= 99% of what followed.
            let start = sent.iter().position(|p| p == first).unwrap_or(0);
            let expected = sent.len() - start;
            let got_set: HashSet<&Bytes> = got.iter().collect();
            let delivered = sent[start..].iter().filter(|p| got_set.contains(p)).count();
            assert!(
                delivered * 100 >= expected * 99,
                "viewer {i} {kind}: {delivered}/{expected} delivered"
            );
            assert!(
                expected > 50,
                "viewer {i} {kind}: only {expected} packets expected"
            );
        }
    }

    // Five viewers leave: their rows are closed; the session's peak and unique are right.
    for viewer in viewers.drain(..5) {
        viewer.close().await.expect("viewer DELETE");
    }
    let catalog = t.server.catalog.clone();
    let closed = wait_until(Duration::from_secs(3), || {
        let catalog = catalog.clone();
        async move {
            let rows = catalog.session_viewers(session).await.unwrap();
            rows.iter().filter(|(_, left, _)| left.is_some()).count() == 5
        }
    })
    .await;
    assert!(
        closed,
        "the five leaving viewers' rows are closed within 3 s"
    );
    let summary = catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.peak_viewers, 11, "{summary:?}");
    assert_eq!(summary.unique_viewers, 11, "{summary:?}");
    assert_eq!(summary.kind, SessionKind::Lecture);
    assert_eq!(summary.title, "测试");
    assert!(summary.viewer_seconds > 10.0, "{summary:?}");

    let api: serde_json::Value = reqwest::get(format!("{}/api/sessions/{}", t.base, session.0))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Viewer figures are for administrators in scope (tests/api_scope.rs).
    assert!(api["peak_viewers"].is_null(), "{api}");
    assert_eq!(api["live"], true);

    publisher.stop().await.expect("publisher DELETE");
    let ended = wait_until(Duration::from_secs(3), || {
        let catalog = catalog.clone();
        async move {
            let s = catalog.session_summary(session, 0).await.unwrap().unwrap();
            !s.live
                && catalog
                    .session_viewers(session)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.1.is_some())
        }
    })
    .await;
    assert!(
        ended,
        "session and all its viewer rows are closed when the publisher stops"
    );
    for viewer in viewers {
        viewer.close().await.ok();
    }
    late.close().await.ok();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_keep_playing_when_the_publisher_changes() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let whip = format!("{}/whip/{channel}", t.base);
    let whep = format!("{}/whep/{channel}", t.base);
    let publish = |media| {
        let whip = whip.clone();
        let key = t.station.stream_key.clone();
        async move {
            WhipPublisher::connect(
                &whip,
                Some(&key),
                media,
                PublisherOptions {
                    record_payloads: true,
                    ..Default::default()
                },
            )
            .await
            .expect("publisher connects")
        }
    };

    let first = publish(test_media(dir.path(), 3).await).await;
    let session_one = wait_live(&t.base, &channel).await;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(
            WhepViewer::connect(&whep, None, viewer_opts())
                .await
                .expect("viewer"),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.stop().await.expect("first publisher stops");
    let before: Vec<u64> = viewers
        .iter()
        .map(|v| v.stats().video.counters.packets)
        .collect();
    assert!(
        before.iter().all(|&n| n > 20),
        "viewers got the first publisher: {before:?}"
    );

    // A new publisher (new SSRCs, new sequence numbers) on the same channel.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = publish(test_media(dir.path(), 3).await).await;
    let session_two = wait_live(&t.base, &channel).await;
    assert_ne!(session_one, session_two);
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.stop_sending();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let sent_two: HashSet<Bytes> = second.sent_payloads(TrackKind::Video).into_iter().collect();
    for (i, viewer) in viewers.iter().enumerate() {
        let stats = viewer.stats();
        // Same peer connection, same SSRC, sequence numbers without a gap.
        assert_eq!(stats.video.ssrc_changes, 0, "viewer {i}: {:?}", stats.video);
        assert_eq!(stats.audio.ssrc_changes, 0, "viewer {i}: {:?}", stats.audio);
        assert_eq!(stats.video.seq_gaps, 0, "viewer {i}: {:?}", stats.video);
        assert_eq!(
            stats.video.timestamp_regressions, 0,
            "viewer {i}: {:?}",
            stats.video
        );
        let from_second = viewer
            .received_payloads(TrackKind::Video)
            .iter()
            .filter(|p| sent_two.contains(*p))
            .count();
        assert!(
            from_second * 100 >= sent_two.len() * 95,
            "viewer {i} got {from_second} of {} packets of the second publisher",
            sent_two.len()
        );
    }
    // Each viewer attended both sessions: one row in each.
    for session in [session_one, session_two] {
        let rows = t.server.catalog.session_viewers(session).await.unwrap();
        assert_eq!(rows.len(), 3, "session {session}: {rows:?}");
    }
    second.stop().await.ok();
    for viewer in viewers {
        viewer.close().await.ok();
    }
    t.server.shutdown().await;
}

/// A viewer detached from its peer connection (2 s after connecting) that closes its own
/// connection without a `DELETE` sends a DTLS close_notify: the server ends it and closes
/// its attendance row at once, not after the 20 s a silent viewer gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_viewer_closing_its_connection_is_removed_at_once() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        test_media(dir.path(), 3).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&t.base, &channel).await;
    let viewer = WhepViewer::connect(&format!("{}/whep/{channel}", t.base), None, viewer_opts())
        .await
        .expect("viewer connects");
    let counters = &t.server.relay.board().counters;
    let detached = wait_until(Duration::from_secs(6), || async {
        counters
            .viewers_detached
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    assert!(detached, "the viewer is detached from its peer connection");
    let packets = viewer.stats().video.counters.packets;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        viewer.stats().video.counters.packets > packets,
        "video keeps flowing to the detached viewer"
    );
    // Dropped without `close()`: no DELETE, only the peer connection closes.
    drop(viewer);
    let catalog = t.server.catalog.clone();
    let closed = wait_until(Duration::from_secs(3), || {
        let catalog = catalog.clone();
        async move {
            let rows = catalog.session_viewers(session).await.unwrap();
            rows.len() == 1 && rows[0].1.is_some()
        }
    })
    .await;
    assert!(closed, "the viewer's row is closed within 3 s of its close");
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

/// The benchmark's light viewers (rtc's sans-IO stack, one task each) are real WebRTC
/// peers too: they start on a keyframe, get every payload byte for byte in order, and
/// their DELETE, or a dropped viewer's closed connection, closes their rows. One of them
/// offers to be the DTLS client, which turns the server's side of the handshake around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_viewers_play_the_stream_and_close_their_rows() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        test_media(dir.path(), 4).await,
        PublisherOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&t.base, &channel).await;
    // Join after the first keyframe group, so the replay is what starts them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut viewers = Vec::new();
    for i in 0..3 {
        viewers.push(
            WhepViewer::connect(
                &format!("{}/whep/{channel}", t.base),
                None,
                ViewerOptions {
                    stack: ViewerStack::Light,
                    // The last one offers `setup:active`: the server is the DTLS server
                    // for it and holds its replay until the viewer has its keys.
                    offer_dtls_client: i == 2,
                    ..viewer_opts()
                },
            )
            .await
            .expect("light viewer connects"),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    publisher.stop_sending();
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (i, viewer) in viewers.iter().enumerate() {
        let stats = viewer.stats();
        assert!(stats.connected_at.is_some(), "viewer {i} connected");
        assert!(
            stats.first_video_frame_is_keyframe && stats.first_keyframe_at.is_some(),
            "viewer {i} starts on a whole keyframe: {stats:?}"
        );
        assert_eq!(
            stats.video.codec.as_deref(),
            Some("video/H264"),
            "viewer {i}"
        );
        for kind in [TrackKind::Video, TrackKind::Audio] {
            assert!(
                stats.track(kind).is_continuous(),
                "viewer {i} {kind}: {:?}",
                stats.track(kind)
            );
            let sent = publisher.sent_payloads(kind);
            let got = viewer.received_payloads(kind);
            assert!(got.len() > 40, "viewer {i} {kind}: {} packets", got.len());
            // What it got is a run of what was sent, byte for byte and in order (a
            // keyframe group's first payload, SPS and PPS, recurs: match the whole run).
            assert!(
                sent.windows(got.len()).any(|run| run == &got[..]),
                "viewer {i} {kind}: its {} payloads are not a run of the publisher's {}",
                got.len(),
                sent.len()
            );
        }
    }
    // Two leave with DELETE; the third is dropped, which closes its connection only.
    let dropped = viewers.pop().unwrap();
    for viewer in &viewers {
        viewer.close().await.expect("viewer DELETE");
    }
    drop(dropped);
    let catalog = t.server.catalog.clone();
    let closed = wait_until(Duration::from_secs(3), || {
        let catalog = catalog.clone();
        async move {
            let rows = catalog.session_viewers(session).await.unwrap();
            rows.len() == 3 && rows.iter().all(|r| r.1.is_some())
        }
    })
    .await;
    assert!(
        closed,
        "the light viewers' rows are closed after DELETE or a dropped connection"
    );
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

//! A server-side source (the path RTMP ingest, pull sources and film playout use) feeds a
//! channel through `SourceHandle::publish_local`; WHEP viewers receive it like any publisher.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::{start_server, wait_until};
use feiyan::audience::now_ms;
use feiyan::catalog::{SessionKind, SessionSource};
use feiyan::client::{SyntheticMedia, TrackKind, ViewerOptions, WhepViewer, make_test_media};
use feiyan::ingest::packetize::packet as rtp_packet;
use feiyan::media::MediaKind;
use feiyan::relay::{LocalTracks, h264_codec, opus_codec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_source_reaches_viewers_and_its_session_is_recorded() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let media = tokio::task::spawn_blocking(move || {
        let (h264, ogg) = make_test_media(&path, Duration::from_secs(3), 400).unwrap();
        SyntheticMedia::load(&h264, &ogg).unwrap()
    })
    .await
    .unwrap();
    let channel = t.station.channel.clone();
    let started = now_ms();
    let session = t
        .server
        .catalog
        .open_session(
            &channel,
            t.station.station_id,
            SessionKind::FilmClass,
            "影片",
            SessionSource::Playout,
            started,
        )
        .await
        .unwrap();
    let relay = t.server.relay.clone();
    let source = relay
        .sources()
        .publish_local(
            channel.clone(),
            session,
            "影片".into(),
            started,
            LocalTracks {
                video: Some(h264_codec()),
                audio: Some(opus_codec()),
                ..Default::default()
            },
        )
        .await
        .expect("local source accepted");

    // A second source on the same channel is refused.
    let busy = relay
        .sources()
        .publish_local(
            channel.clone(),
            session,
            String::new(),
            started,
            LocalTracks {
                video: Some(h264_codec()),
                audio: None,
                ..Default::default()
            },
        )
        .await;
    assert!(busy.is_err());

    // Pace the clip in real time in the background: video frames and audio packets.
    let feeder_media = media.clone();
    let feeder = tokio::spawn(async move {
        let mut seq_v = 1000u16;
        let mut seq_a = 7u16;
        let (mut ts_v, mut ts_a) = (0u32, 0u32);
        let frames = feeder_media.video_frames();
        let audio = feeder_media.audio_packets();
        let mut ai = 0usize;
        let start = tokio::time::Instant::now();
        for frame in frames {
            let at = Duration::from_secs_f64(ts_v as f64 / 90_000.0);
            tokio::time::sleep_until(start + at).await;
            if source.take_keyframe_request() {
                // A real encoder would force an IDR here; the clip has one every second.
            }
            let n = frame.payloads.len();
            for (i, payload) in frame.payloads.iter().enumerate() {
                let p = rtp_packet(102, 1, seq_v, ts_v, i + 1 == n, payload.clone());
                source.send(MediaKind::Video, p).await.unwrap();
                seq_v = seq_v.wrapping_add(1);
            }
            ts_v = ts_v.wrapping_add(frame.duration);
            while ai < audio.len() && (ts_a as u64) * 90_000 <= (ts_v as u64) * 48_000 {
                let p = rtp_packet(111, 2, seq_a, ts_a, false, audio[ai].payload.clone());
                source.send(MediaKind::Audio, p).await.unwrap();
                seq_a = seq_a.wrapping_add(1);
                ts_a = ts_a.wrapping_add(audio[ai].duration);
                ai += 1;
            }
        }
        source.finish();
    });

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let whep = format!("{}/whep/{channel}", t.base);
    let viewer = WhepViewer::connect(
        &whep,
        None,
        ViewerOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("viewer connects to a locally fed channel");
    feeder.await.unwrap();

    let stats = viewer.stats();
    assert!(
        stats.first_video_frame_is_keyframe,
        "joined mid-clip, started on a keyframe"
    );
    let sent: HashSet<Bytes> = media
        .video_frames()
        .iter()
        .flat_map(|f| f.payloads.clone())
        .collect();
    let got = viewer.received_payloads(TrackKind::Video);
    assert!(got.len() > 40, "viewer got {} video packets", got.len());
    assert!(
        got.iter().all(|p| sent.contains(p)),
        "payloads are byte-identical"
    );
    assert!(
        viewer.stats().audio.counters.packets > 30,
        "audio arrives: {:?}",
        stats.audio
    );

    // The source finished: the session ended and the viewer's row is closed.
    let catalog = t.server.catalog.clone();
    assert!(
        wait_until(Duration::from_secs(3), || {
            let catalog = catalog.clone();
            async move {
                let s = catalog
                    .session_summary(session, now_ms())
                    .await
                    .unwrap()
                    .unwrap();
                !s.live && s.unique_viewers == 1 && s.kind == SessionKind::FilmClass
            }
        })
        .await
    );
    viewer.close().await.ok();
    t.server.shutdown().await;
}

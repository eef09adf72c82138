//! The WHIP->transcode path: a WHIP publisher's channel with a rendition ladder. The
//! publisher sends 1280x720 H.264; the server decodes it once and encodes the ladder
//! (`fy-tc-video`), fed back into the same channel and session. A `?quality=360p` viewer
//! decodes 640x360 with a real decoder, the source viewer 1280x720, and both count in one
//! session.

mod common;

use std::time::Duration;

use common::decode::assert_quality;
use feiyan::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};
use feiyan::config::RenditionSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_channel_with_a_ladder_offers_renditions_encoded_by_the_server() {
    let t = common::start_server_with(|c| {
        c.ingest.renditions = vec![RenditionSpec {
            name: "360p".into(),
            height: 360,
            video_kbps: 600,
        }];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let media = common::test_media_720p(dir.path()).await;
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let session = common::wait_live(&t.base, &channel).await;

    // The ladder is offered once the server's encoder is attached.
    let http = reqwest::Client::new();
    let offered = common::wait_until(Duration::from_secs(10), || async {
        let status: serde_json::Value = http
            .get(format!("{}/api/channels/{channel}", t.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["qualities"] == serde_json::json!(["source", "360p"])
    })
    .await;
    assert!(offered, "the channel offers source and 360p");
    assert!(
        common::thread_names()
            .iter()
            .any(|n| n.starts_with("fy-tc-ladder")),
        "the ladder is encoded on a transcode thread: {:?}",
        common::thread_names()
    );

    let whep = format!("{}/whep/{channel}", t.base);
    let options = || ViewerOptions {
        record_payloads: true,
        record_frame_log: true,
        ..Default::default()
    };
    let low_url = format!("{whep}?quality=360p");
    let (source, low) = tokio::join!(
        WhepViewer::connect(&whep, None, options()),
        WhepViewer::connect(&low_url, None, options()),
    );
    let (source, low) = (source.expect("source viewer"), low.expect("360p viewer"));
    // About 4 s of pictures each (the machine may be busy: wait for them, not a time).
    let received = common::wait_until(Duration::from_secs(20), || async {
        source.video_frame_log().len() >= 100 && low.video_frame_log().len() >= 100
    })
    .await;
    assert!(received, "both viewers receive pictures");

    for (viewer, name, size) in [(&source, "source", (1280, 720)), (&low, "360p", (640, 360))] {
        let decoded = assert_quality(viewer, dir.path(), name, size, 60).await;
        assert_eq!(decoded.b_frames, 0, "{name}: no B-frames");
    }
    let peak = common::session_peak(&t.server, session).await;
    assert_eq!(peak, 2, "both renditions count in one session");

    // The publisher leaves: the session ends, and with it the ladder's encoder.
    for viewer in [source, low] {
        viewer.close().await.ok();
    }
    publisher.stop().await.ok();
    let stopped = common::wait_until(Duration::from_secs(10), || async {
        !common::thread_names()
            .iter()
            .any(|n| n.starts_with("fy-tc-"))
    })
    .await;
    assert!(
        stopped,
        "transcode threads left: {:?}",
        common::thread_names()
    );
    t.server.shutdown().await;
}

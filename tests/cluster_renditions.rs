//! An edge pulls one stream per rendition and codec its viewers use (issue 24): a WHIP
//! publisher sends 1280x720 H.264 to node A, whose ladder encodes 360p; node B serves
//! viewers as an edge, `feiyan serve` processes on one fresh PostgreSQL database.
//!
//! - B's `/api/live` lists the lecture live on A before B carries it.
//! - With only a source viewer on B, A serves B one pull; B offers A's qualities.
//! - A `?quality=360p` viewer and a VP8-only viewer on B make B open a pull for each (A
//!   then serves three, all from one node, within `max_edges_per_origin = 1`): the 360p
//!   viewer decodes 640x360 whose payloads are byte-identical to a 360p viewer's on A,
//!   the VP8 viewer decodes VP8 at the source's size, the source viewer 1280x720, and B
//!   runs no encoder (no `fy-tc-` thread): the bridge is A's.
//! - When they leave, B closes those pulls and A is back to one.
//! - Bad input: a quality A does not offer is refused on B naming what it offers; a
//!   signed pull asking for a codec other than h264 or vp8 gets 400.

mod catalog_db;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use feiyan::client::{
    PublisherOptions, TrackKind, VideoCodecs, ViewerOptions, WhepViewer, WhipPublisher,
};

use common::cluster::*;
use common::decode::{assert_quality, decode_vp8};

const LADDER: &str = "max_edges_per_origin = 1\n\
    [[ingest.renditions]]\nname = \"360p\"\nheight = 360\nvideo_kbps = 600\n";

fn options(codecs: VideoCodecs) -> ViewerOptions {
    ViewerOptions {
        record_payloads: true,
        record_frame_log: true,
        video_codecs: codecs,
        ..Default::default()
    }
}

async fn watch(url: &str, codecs: VideoCodecs, who: &str) -> WhepViewer {
    WhepViewer::connect(url, None, options(codecs))
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"))
}

async fn qualities(base: &str, channel: &str) -> serde_json::Value {
    let status: serde_json::Value = reqwest::get(format!("{base}/api/channels/{channel}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["qualities"].clone()
}

fn encoder_threads(node: &Node) -> Vec<String> {
    node.served
        .thread_names()
        .into_iter()
        .filter(|n| n.starts_with("fy-tc-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_pulls_each_rendition_and_codec_its_viewers_use_and_only_those() {
    let db = catalog_db::postgres().await;
    let station = db
        .catalog
        .add_station("码率中心", "码率所", "码率站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_node_with(&db.url, LADDER);
    let b = start_node(&db.url, 0);

    let dir = tempfile::tempdir().unwrap();
    let media = common::test_media_720p(dir.path()).await;
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}?title=ladder", a.base),
        Some(&station.stream_key),
        media,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher on A");
    common::wait_live(&a.base, &channel).await;
    let ladder = serde_json::json!(["source", "360p"]);
    wait_for("A offers its ladder", Duration::from_secs(15), async || {
        qualities(&a.base, &channel).await == ladder
    })
    .await;

    // B's front page lists the lecture live on A before B carries it (its qualities are
    // B's to learn when it does).
    let live_on_b = async || -> Vec<serde_json::Value> {
        let list: serde_json::Value = reqwest::get(format!("{}/api/live", b.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["channel"] == channel.as_str())
            .cloned()
            .collect()
    };
    let listed = live_on_b().await;
    assert_eq!(listed.len(), 1, "B lists A's lecture once: {listed:?}");
    assert_eq!(listed[0]["station"], "码率站");
    assert_eq!(listed[0]["title"], "ladder");
    assert_eq!(listed[0]["qualities"], serde_json::json!([]));

    // A source viewer on B: one pull, and B offers what A offers.
    let (a_whep, b_whep) = (
        format!("{}/whep/{channel}", a.base),
        format!("{}/whep/{channel}", b.base),
    );
    let b_source = watch(&b_whep, VideoCodecs::H264Only, "source viewer on B").await;
    assert_eq!(
        qualities(&b.base, &channel).await,
        ladder,
        "B offers A's ladder"
    );
    let listed = live_on_b().await;
    assert_eq!(
        listed.len(),
        1,
        "still once, now from B's relay: {listed:?}"
    );
    assert_eq!(listed[0]["qualities"], ladder);
    wait_for(
        "B's source viewer receives",
        Duration::from_secs(15),
        async || b_source.video_frame_log().len() >= 20,
    )
    .await;
    assert_eq!(
        metric(&a.base, "feiyan_cluster_pulls_served").await,
        1,
        "nobody on B watches 360p or VP8 yet: one pull"
    );

    // A lower quality B does not offer: refused, naming what it does.
    let r = reqwest::Client::new()
        .post(format!("{b_whep}?quality=1080p"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert!(status.is_client_error(), "{status}: {body}");
    assert!(body.contains("360p") && body.contains("source"), "{body}");

    // 360p on A (the reference), then 360p and VP8-only on B.
    let a_low = watch(
        &format!("{a_whep}?quality=360p"),
        VideoCodecs::H264Only,
        "360p on A",
    )
    .await;
    let b_low = watch(
        &format!("{b_whep}?quality=360p"),
        VideoCodecs::H264Only,
        "360p on B",
    )
    .await;
    let b_vp8 = watch(&b_whep, VideoCodecs::Vp8Only, "VP8-only viewer on B").await;
    wait_for(
        "B's three viewers get pictures",
        Duration::from_secs(30),
        async || {
            [&b_source, &b_low, &b_vp8]
                .iter()
                .all(|v| v.video_frame_log().len() >= 100)
        },
    )
    .await;
    assert_eq!(
        metric(&a.base, "feiyan_cluster_pulls_served").await,
        3,
        "one pull per stream B's viewers use: source, 360p, VP8"
    );
    let threads = encoder_threads(&b);
    assert!(threads.is_empty(), "B encodes nothing: {threads:?}");
    assert!(
        encoder_threads(&a).iter().any(|t| t == "fy-tc-bridge"),
        "A's bridge encodes the VP8: {:?}",
        encoder_threads(&a)
    );

    // B's 360p is A's 360p, byte for byte (A's viewer joined first and gets each packet
    // before B's does).
    let got = b_low.received_payloads(TrackKind::Video);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: HashSet<Bytes> = a_low
        .received_payloads(TrackKind::Video)
        .into_iter()
        .collect();
    let foreign = got.iter().filter(|p| !sent.contains(*p)).count();
    assert!(got.len() > 100, "360p on B: {} payloads", got.len());
    assert_eq!(
        foreign,
        0,
        "360p on B: {foreign} of {} payloads not A's",
        got.len()
    );

    let work = tempfile::tempdir().unwrap();
    assert_quality(&b_low, work.path(), "360p on B", (640, 360), 60).await;
    assert_quality(&b_source, work.path(), "source on B", (1280, 720), 60).await;
    assert!(
        b_vp8.stats().first_video_frame_is_keyframe,
        "VP8 starts on a keyframe"
    );
    let vp8 = decode_vp8(&b_vp8.received_payloads(TrackKind::Video));
    assert_eq!(
        (vp8.width, vp8.height),
        (1280, 720),
        "VP8 at the source's size"
    );
    assert!(vp8.frames >= 60, "decoded {} VP8 frames", vp8.frames);
    assert!(b_vp8.stats().audio.counters.packets > 100, "and Opus audio");

    // They leave: B closes those two pulls (after its idle time), the source pull stays.
    b_low.close().await.ok();
    b_vp8.close().await.ok();
    wait_for(
        "B closes the pulls nobody uses",
        Duration::from_secs(15),
        async || metric(&a.base, "feiyan_cluster_pulls_served").await == 1,
    )
    .await;
    let before = b_source.video_frame_log().len();
    wait_for(
        "the source viewer still receives",
        Duration::from_secs(10),
        async || b_source.video_frame_log().len() >= before + 50,
    )
    .await;

    // A signed pull asking for a codec no edge uses: 400, naming the two.
    let r = reqwest::Client::new()
        .post(format!("{a_whep}?edge=99&codec=vp9"))
        .header("content-type", "application/sdp")
        .header(
            "x-feiyan-cluster",
            feiyan::cluster::sign::sign(
                SECRET.as_bytes(),
                "POST",
                &format!("/whep/{channel}"),
                feiyan::audience::now_ms() / 1000,
            ),
        )
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("h264 or vp8"), "{body}");

    for v in [b_source, a_low] {
        v.close().await.ok();
    }
    publisher.stop().await.ok();
}

/// A VP8-only viewer on an edge keeps its video when the origin's publisher is away longer
/// than the edge waits for media (7 s: the edge's pulls drop and reopen in the same
/// session): the relay parks it when the edge's source leaves and bridges the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_viewer_on_an_edge_keeps_its_video_when_the_pull_reopens() {
    let db = catalog_db::postgres().await;
    let station = db
        .catalog
        .add_station("码率中心", "码率所", "重连站")
        .await
        .unwrap();
    let channel = station.channel.to_string();
    let a = start_node(&db.url, 0);
    let b = start_node(&db.url, 0);
    let dir = tempfile::tempdir().unwrap();
    let first = publish(&a.base, &channel, &station.stream_key, dir.path())
        .await
        .expect("publisher on A");
    let session = common::wait_live(&a.base, &channel).await;
    let vp8 = watch(
        &format!("{}/whep/{channel}", b.base),
        VideoCodecs::Vp8Only,
        "VP8-only viewer on B",
    )
    .await;
    wait_for("VP8 on B", Duration::from_secs(20), async || {
        vp8.video_frame_log().len() >= 50
    })
    .await;

    first.stop().await.expect("publisher DELETE");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let before = vp8.received_payloads(TrackKind::Video).len();
    let frames = vp8.video_frame_log().len();
    let second = publish(&a.base, &channel, &station.stream_key, dir.path())
        .await
        .expect("the publisher returns on A");
    assert_eq!(common::wait_live(&a.base, &channel).await, session);
    wait_for(
        "VP8 on B after the pull reopened",
        Duration::from_secs(20),
        async || vp8.video_frame_log().len() >= frames + 60,
    )
    .await;
    let after = vp8.received_payloads(TrackKind::Video).split_off(before);
    let decoded = decode_vp8(&after);
    assert_eq!(
        (decoded.width, decoded.height),
        (640, 360),
        "VP8 after the return"
    );
    assert!(
        decoded.frames >= 40,
        "decoded {} VP8 frames",
        decoded.frames
    );
    let threads = encoder_threads(&b);
    assert!(threads.is_empty(), "B encodes nothing: {threads:?}");
    vp8.close().await.ok();
    second.stop().await.ok();
}

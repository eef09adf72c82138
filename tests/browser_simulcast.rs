//! Simulcast from a WHIP publisher (issue 19, item 3): headless Chromium publishes a
//! 1280x720 picture in three H.264 layers (`h`, `m` at half size, `l` at a quarter) from
//! a script on `about:blank` (a feiyan page cannot produce simulcast: ../shared/
//! DECISIONS.md, Browser tests). `about:blank` is no secure context, so there is no
//! `getUserMedia` (no fake camera): the picture is a moving canvas. The server offers the layers as the channel's renditions
//! with no transcode: the largest is `source`, the others are named by their height. A
//! webrtc-rs WHEP viewer per quality receives its layer from a keyframe on, and a real
//! decoder finds each at its own size; all viewers count in one session, and no `fy-tc-*`
//! thread runs meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::cdp::Browser;
use common::decode::decode_received;
use common::pages::publish_canvas;
use feiyan::client::{ViewerOptions, WhepViewer};
use serde_json::{Value, json};

/// No video transcode: only live HLS's Opus->AAC (`fy-tc-aac`) runs.
fn no_transcode_threads() {
    let names = common::thread_names();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("fy-tc-") && n != "fy-tc-aac"),
        "simulcast needs no video transcode, yet these threads run: {names:?}"
    );
}

/// What Chromium sends per layer: `{rid: {frameWidth, frameHeight, framesEncoded,
/// encoderImplementation, mimeType}}`.
const LAYER_STATS: &str = r#"(async () => {
  const out = {};
  const report = await window.__pc.getStats();
  report.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      const codec = r.codecId && report.get(r.codecId);
      out[r.rid || '-'] = { frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0,
        framesEncoded: r.framesEncoded || 0, active: r.active,
        encoderImplementation: r.encoderImplementation || '',
        mimeType: codec ? codec.mimeType : '', limitation: r.qualityLimitationReason || '' };
    }
  });
  return { connectionState: window.__pc.connectionState, layers: out };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulcast_publisher_offers_its_layers_as_renditions_without_transcode() {
    let t = common::start_server().await;
    let channel = t.station.channel.to_string();
    let whip = format!("{}/whip/{channel}", t.base);

    let browser = Browser::launch("simulcast-publish", &[]).await;
    let page = browser.new_page().await;
    let answer = publish_canvas(&page, &whip, &t.station.stream_key, "video/H264", true).await;
    let http = reqwest::Client::new();
    for line in [
        "a=rid:h recv",
        "a=rid:m recv",
        "a=rid:l recv",
        "a=simulcast:recv h;m;l",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:mid",
    ] {
        assert!(answer.contains(line), "the answer has {line}: {answer}");
    }

    let session = common::wait_live(&t.base, &channel).await;
    let status: Value = http
        .get(format!("{}/api/channels/{channel}", t.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layers = page.evaluate(LAYER_STATS).await.unwrap();
    println!(
        "live; qualities {}; Chromium sends {layers}",
        status["qualities"]
    );
    let qualities: Vec<String> = status["qualities"]
        .as_array()
        .expect("qualities listed")
        .iter()
        .filter_map(|q| q.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        qualities.len(),
        3,
        "source and two renditions: {qualities:?}"
    );
    assert_eq!(qualities[0], "source", "the source is listed first");
    no_transcode_threads();

    // One viewer per quality, each from a keyframe of its own layer.
    let whep = format!("{}/whep/{channel}", t.base);
    let mut viewers = Vec::new();
    for quality in &qualities {
        let url = format!("{whep}?quality={quality}");
        let options = ViewerOptions {
            record_payloads: true,
            ..Default::default()
        };
        let viewer = WhepViewer::connect(&url, None, options)
            .await
            .unwrap_or_else(|e| panic!("viewer of {quality}: {e}"));
        viewers.push((quality.clone(), viewer));
    }
    let started = Instant::now();
    let all_started = common::wait_until(Duration::from_secs(30), || async {
        no_transcode_threads();
        viewers.iter().all(|(_, v)| {
            v.stats().keyframes_completed >= 1 && v.stats().video.counters.packets > 100
        })
    })
    .await;
    let layers = page.evaluate(LAYER_STATS).await.unwrap();
    let progress: Vec<_> = viewers
        .iter()
        .map(|(q, v)| {
            let s = v.stats();
            json!({"quality": q, "keyframes": s.keyframes_completed, "packets": s.video.counters.packets})
        })
        .collect();
    println!(
        "after {:?}: viewers {progress:?}; Chromium sends {layers}",
        started.elapsed()
    );
    assert!(
        all_started,
        "every quality's keyframe arrives within 30 s: {progress:?}; Chromium: {layers}"
    );
    // A few seconds of pictures to decode.
    tokio::time::sleep(Duration::from_secs(3)).await;
    no_transcode_threads();

    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for (quality, viewer) in &viewers {
        assert!(
            viewer.stats().first_video_frame_is_keyframe,
            "the {quality} viewer started on a keyframe"
        );
        let decoded = decode_received(viewer, dir.path(), quality).await;
        println!(
            "{quality}: {} frames at {}x{}",
            decoded.frames, decoded.width, decoded.height
        );
        assert!(
            decoded.frames >= 30,
            "{quality}: decoded {} frames",
            decoded.frames
        );
        sizes.push((quality.clone(), decoded.width, decoded.height));
    }
    // Chromium may send lower layers smaller still under CPU pressure: each quality is
    // smaller than the one above it, the source the largest, and a rendition named by a
    // height has that height.
    for pair in sizes.windows(2) {
        let ((qa, wa, ha), (qb, wb, hb)) = (&pair[0], &pair[1]);
        assert!(
            wb < wa && hb < ha,
            "{qb} ({wb}x{hb}) is smaller than {qa} ({wa}x{ha}): {sizes:?}"
        );
    }
    for (quality, _, height) in &sizes[1..] {
        if let Some(named) = quality
            .strip_suffix('p')
            .and_then(|h| h.parse::<u32>().ok())
        {
            assert_eq!(named, *height, "{quality} decodes at its named height");
        }
    }

    let peak = common::session_peak(&t.server, session).await;
    assert_eq!(
        peak,
        viewers.len() as i64,
        "every quality's viewer counts in one session"
    );

    for (_, viewer) in viewers {
        viewer.close().await.ok();
    }
    page.evaluate("window.__pc.close()").await.ok();
    drop(browser);
    t.server.shutdown().await;
}

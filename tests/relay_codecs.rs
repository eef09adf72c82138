//! Honest negotiation: a WHEP answer accepts a video codec only if the channel sends it.
//! A viewer whose offer has none of the channel's video formats gets 406 naming both sides'
//! codecs and leaves no viewer row; bad offers get a 4xx with the reason; an offer without
//! Opus gets video only. A viewer's row opens at the first packet it is sent.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::rtmp::{make_media, push_rtmp};
use common::{start_server_with, wait_live, wait_until};
use feiyan::audience::now_ms;
use feiyan::catalog::{Catalog, SessionKind, SessionSource};
use feiyan::client::{ClientError, VideoCodecs, ViewerOptions, WhepViewer};
use feiyan::config::{H264FromVp8, OnDemand};
use feiyan::ids::SessionId;
use feiyan::ingest::packetize::packet as rtp_packet;
use feiyan::media::MediaKind;
use feiyan::relay::{LocalPublisher, LocalTracks, RTCRtpCodec, h264_codec, opus_codec, vp8_codec};
use reqwest::StatusCode;

/// The status and body of a refused WHEP connect.
fn refusal(result: Result<WhepViewer, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::UnexpectedStatus { status, body, .. }) => (status, body),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a viewer"),
    }
}

fn options(video_codecs: VideoCodecs) -> ViewerOptions {
    ViewerOptions {
        video_codecs,
        ..Default::default()
    }
}

async fn rows(catalog: &Catalog, session: SessionId) -> usize {
    catalog.session_viewers(session).await.unwrap().len()
}

/// Viewers connected to `channel` according to the API.
async fn connected_viewers(base: &str, channel: &str) -> i64 {
    let v: serde_json::Value = reqwest::get(format!("{base}/api/channels/{channel}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["viewers"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_only_viewer_of_an_rtmp_h264_channel_gets_406_naming_h264_and_no_row() {
    let t = start_server_with(|c| c.ingest.vp8_rendition = OnDemand::Off).await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 8);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut ffmpeg_push = push_rtmp(&clip, &url);
    let session = wait_live(&t.base, &channel).await;
    let whep = format!("{}/whep/{channel}", t.base);

    let (status, body) =
        refusal(WhepViewer::connect(&whep, None, options(VideoCodecs::Vp8Only)).await);
    assert_eq!(status, 406, "{body}");
    assert!(
        body.contains("this channel sends video H.264 (constrained baseline) and audio Opus"),
        "{body}"
    );
    assert!(
        body.contains("your offer has video VP8 and audio Opus"),
        "{body}"
    );

    // A viewer with H.264 watches: its row opens; the refused one left none.
    let viewer = WhepViewer::connect(&whep, None, options(VideoCodecs::H264Only))
        .await
        .expect("an H.264 viewer connects");
    let catalog = t.server.catalog.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let catalog = catalog.clone();
            async move { rows(&catalog, session).await == 1 }
        })
        .await,
        "the H.264 viewer's row opens"
    );
    assert_eq!(connected_viewers(&t.base, &channel).await, 1);
    // The row opened when the server sent the first packet; it arrives a moment later.
    assert!(
        wait_until(Duration::from_secs(3), || async {
            viewer.stats().video.counters.packets > 0
        })
        .await,
        "the H.264 viewer receives video"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rows(&catalog, session).await,
        1,
        "only the H.264 viewer has a row"
    );
    viewer.close().await.ok();
    let _ = ffmpeg_push.kill();
    let _ = ffmpeg_push.wait();
    t.server.shutdown().await;
}

/// Opens a session on the test station's channel and starts a local source sending `video`.
async fn local_source(
    t: &common::TestServer,
    video: RTCRtpCodec,
    renditions: &[&str],
) -> (SessionId, LocalPublisher) {
    let started = now_ms();
    let session = t
        .server
        .catalog
        .open_session(
            &t.station.channel,
            t.station.station_id,
            SessionKind::Lecture,
            "编码",
            SessionSource::Playout,
            started,
        )
        .await
        .unwrap();
    let source = t
        .server
        .relay
        .sources()
        .publish_local(
            t.station.channel.clone(),
            session,
            "编码".into(),
            started,
            LocalTracks {
                video: Some(video),
                audio: Some(opus_codec()),
                renditions: renditions.iter().map(|r| r.to_string()).collect(),
            },
        )
        .await
        .expect("local source accepted");
    (session, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_only_viewer_of_a_vp8_channel_gets_406_and_a_row_opens_at_the_first_packet() {
    let t = start_server_with(|c| c.ingest.h264_from_vp8 = H264FromVp8::Off).await;
    let (session, source) = local_source(&t, vp8_codec(), &[]).await;
    let channel = t.station.channel.to_string();
    wait_live(&t.base, &channel).await;
    let whep = format!("{}/whep/{channel}", t.base);

    let (status, body) =
        refusal(WhepViewer::connect(&whep, None, options(VideoCodecs::H264Only)).await);
    assert_eq!(status, 406, "{body}");
    assert!(
        body.contains("this channel sends video VP8 and audio Opus; your offer has video H.264"),
        "{body}"
    );

    // A VP8 viewer connects, but nothing is sent yet: counted as connected, no row.
    let viewer = WhepViewer::connect(&whep, None, options(VideoCodecs::Vp8Only))
        .await
        .expect("a VP8 viewer connects");
    // The client may finish its DTLS handshake a moment before the server counts it.
    assert!(
        wait_until(Duration::from_secs(3), || async {
            connected_viewers(&t.base, &channel).await == 1
        })
        .await,
        "the VP8 viewer is counted as connected"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let catalog = t.server.catalog.clone();
    assert_eq!(rows(&catalog, session).await, 0, "no media yet, no row");

    // The first VP8 packets (a keyframe's payload descriptor and header): the row opens.
    let keyframe = Bytes::from_static(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00]);
    for seq in 0..3u16 {
        let p = rtp_packet(96, 7, seq, u32::from(seq) * 3_000, true, keyframe.clone());
        source.send(MediaKind::Video, p).await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let catalog = catalog.clone();
            async move { rows(&catalog, session).await == 1 }
        })
        .await,
        "the row opens at the first packet"
    );
    assert!(
        wait_until(Duration::from_secs(3), || async {
            viewer.stats().video.counters.packets > 0
        })
        .await
    );
    assert_eq!(
        viewer.stats().video.codec.as_deref(),
        Some("video/VP8"),
        "the answer accepted VP8, what flows"
    );
    viewer.close().await.ok();
    source.finish();
    t.server.shutdown().await;
}

/// A recvonly offer with a video section of `video` formats `(pt, rtpmap, fmtp)` (none:
/// no video section) and an audio section of `audio` formats.
fn offer(video: &[(u8, &str, &str)], audio: &[(u8, &str, &str)]) -> String {
    let fingerprint = vec!["AB"; 32].join(":");
    let mut sections = Vec::new();
    for (kind, formats) in [("video", video), ("audio", audio)] {
        if formats.is_empty() {
            continue;
        }
        let mid = sections.len();
        let pts: Vec<String> = formats.iter().map(|(pt, _, _)| pt.to_string()).collect();
        let mut s = format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
             a=fingerprint:sha-256 {fingerprint}\r\na=setup:actpass\r\na=mid:{mid}\r\n\
             a=recvonly\r\na=rtcp-mux\r\n",
            pts.join(" ")
        );
        for (pt, map, fmtp) in formats {
            s += &format!("a=rtpmap:{pt} {map}\r\n");
            if !fmtp.is_empty() {
                s += &format!("a=fmtp:{pt} {fmtp}\r\n");
            }
        }
        sections.push(s);
    }
    let mids: Vec<String> = (0..sections.len()).map(|i| i.to_string()).collect();
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE {}\r\na=msid-semantic: WMS\r\n{}",
        mids.join(" "),
        sections.concat()
    )
}

async fn post(url: &str, sdp: String) -> (StatusCode, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await
        .expect("request sent");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

const CB: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
const OPUS: (u8, &str, &str) = (111, "opus/48000/2", "minptime=10;useinbandfec=1");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_get_4xx_with_reasons_and_no_row_and_missing_opus_means_video_only() {
    let t = start_server_with(|_| {}).await;
    let (session, source) = local_source(&t, h264_codec(), &["360p"]).await;
    let channel = t.station.channel.to_string();
    wait_live(&t.base, &channel).await;
    let whep = format!("{}/whep/{channel}", t.base);

    let cases: [(&str, String, StatusCode, &str); 5] = [
        (
            "H.265 only",
            offer(&[(49, "H265/90000", "level-id=93;profile-id=1")], &[OPUS]),
            StatusCode::NOT_ACCEPTABLE,
            "your offer has video H.265 and audio Opus",
        ),
        (
            "only rtx and red",
            offer(
                &[(97, "rtx/90000", "apt=96"), (63, "red/90000", "")],
                &[OPUS],
            ),
            StatusCode::NOT_ACCEPTABLE,
            "your offer has video rtx, red (no codec",
        ),
        (
            "a duplicated payload type",
            offer(&[(102, "H264/90000", CB), (102, "VP8/90000", "")], &[OPUS]),
            StatusCode::BAD_REQUEST,
            "payload type 102 appears twice in the video section",
        ),
        (
            "H.264 with packetization-mode=0 only",
            offer(
                &[(
                    102,
                    "H264/90000",
                    "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
                )],
                &[OPUS],
            ),
            StatusCode::NOT_ACCEPTABLE,
            "video H.264 (constrained baseline, packetization-mode 0)",
        ),
        (
            "no codec at all in common (no video section, no Opus)",
            offer(&[], &[(0, "PCMU/8000", "")]),
            StatusCode::NOT_ACCEPTABLE,
            "your offer has audio PCMU and no video",
        ),
    ];
    for (what, sdp, want, reason) in cases {
        let (status, body) = post(&whep, sdp).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body.contains(reason), "{what}: {body}");
    }
    // A rendition that does not exist.
    let good = offer(&[(102, "H264/90000", CB)], &[OPUS]);
    let (status, body) = post(&format!("{whep}?quality=1080p"), good.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("no quality \"1080p\"") && body.contains("360p"),
        "{body}"
    );
    assert_eq!(connected_viewers(&t.base, &channel).await, 0);

    // No Opus: video only, the audio section rejected with port 0.
    let (status, answer) = post(
        &whep,
        offer(&[(102, "H264/90000", CB)], &[(0, "PCMU/8000", "")]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(answer.contains("m=audio 0 "), "{answer}");
    assert!(
        answer.contains("m=video 9 ") && answer.contains("a=rtpmap:102 H264/90000"),
        "{answer}"
    );
    assert!(!answer.contains("VP8"), "{answer}");
    // No video section: audio only.
    let (status, answer) = post(&whep, offer(&[], &[OPUS])).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
    assert!(!answer.contains("m=video"), "{answer}");

    // None of them connected or got media: no rows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows(&t.server.catalog, session).await, 0);
    source.finish();
    t.server.shutdown().await;
}

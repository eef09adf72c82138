//! RTMP ingest end to end: the ffmpeg CLI pushes H.264 with B-frames + AAC 44.1 kHz over
//! RTMP; a webrtc-rs WHEP viewer receives Opus and H.264 without B-frames, which this test
//! decodes with ffmpeg-next. Bad input (garbage bytes, a wrong key) closes that connection
//! only.

mod common;

use std::time::Duration;

use common::decode::{assert_quality, decode_received};
use common::rtmp::{make_media, push_rtmp};
use common::{live_session, start_server, wait_until};
use feiyan::audience::now_ms;
use feiyan::catalog::{SessionKind, SessionSource};
use feiyan::client::{ViewerOptions, WhepViewer};
use feiyan::config::RenditionSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits for an ffmpeg push to finish successfully and for its session to end (once the
/// transcoder has drained).
async fn push_ends_its_session(
    mut push: std::process::Child,
    catalog: &feiyan::catalog::Catalog,
    session: feiyan::ids::SessionId,
) {
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg pushed the whole clip: {status}");
    assert!(
        wait_until(Duration::from_secs(8), || {
            let catalog = catalog.clone();
            async move {
                let s = catalog.session_summary(session, now_ms()).await.unwrap();
                s.is_some_and(|s| !s.live)
            }
        })
        .await,
        "session ended after the push"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_push_with_b_frames_reaches_a_whep_viewer_as_h264_without_b_frames_and_opus() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 6);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!(
        "rtmp://{rtmp}/live/{channel}?key={}&title=RTMP%E6%B5%8B%E8%AF%95",
        t.station.stream_key
    );
    let ffmpeg_push = push_rtmp(&clip, &url);

    let mut session = None;
    for _ in 0..200 {
        session = live_session(&t.base, &channel).await;
        if session.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let session = session.expect("the RTMP push makes the channel live");
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("viewer connects");

    // The push ended: the session ends once the transcoder drained.
    push_ends_its_session(ffmpeg_push, &t.server.catalog, session).await;
    let catalog = t.server.catalog.clone();
    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.kind, SessionKind::Lecture);
    assert_eq!(summary.source, SessionSource::Rtmp);
    assert_eq!(summary.title, "RTMP测试");

    let stats = viewer.stats();
    assert_eq!(stats.video.codec.as_deref(), Some("video/H264"));
    assert_eq!(stats.audio.codec.as_deref(), Some("audio/opus"));
    assert!(
        stats.first_video_frame_is_keyframe,
        "the viewer started on a keyframe"
    );
    // ~5 s watched of Opus at 50 packets/s.
    assert!(
        stats.audio.counters.packets > 150,
        "audio packets: {}",
        stats.audio.counters.packets
    );

    let decoded = decode_received(&viewer, dir.path(), "received").await;
    // The viewer joined within a second of going live; the clip is 6 s at 30 fps.
    assert!(decoded.frames >= 120, "decoded {} frames", decoded.frames);
    assert_eq!(decoded.b_frames, 0, "no B-frames reach WebRTC");
    assert_eq!(decoded.delay, 0, "the decoder needs no reordering");
    viewer.close().await.ok();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_keys_close_only_their_connection() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 2);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();

    // Not RTMP at all: the server closes the connection.
    let mut sock = tokio::net::TcpStream::connect(rtmp).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    sock.write_all(&[0x55u8; 4000]).await.ok();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed.ok(), Some(true), "garbage connection closed");

    // A wrong key: ffmpeg is refused and the channel never goes live.
    let wrong = format!("rtmp://{rtmp}/live/{channel}?key=fy_wrong");
    let mut refused = push_rtmp(&clip, &wrong);
    let status = tokio::task::spawn_blocking(move || refused.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "ffmpeg with a wrong key fails");
    assert!(live_session(&t.base, &channel).await.is_none());

    // The server carries on: the right key goes live.
    let right = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut push = push_rtmp(&clip, &right);
    let base = t.base.clone();
    let ch = channel.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (base, ch) = (base.clone(), ch.clone());
            async move { live_session(&base, &ch).await.is_some() }
        })
        .await,
        "a correct push after bad ones goes live"
    );
    let _ = tokio::task::spawn_blocking(move || push.wait()).await;
    t.server.shutdown().await;
}

/// A channel with a rendition ladder: the source H.264 (baseline, so passed through) plus
/// a 180p rung and a 720p rung (which must not upscale the 360p source). Each viewer gets
/// the picture size it asked for with `?quality=`, all count in one session, and an
/// unknown quality is refused with the list of offered ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_choose_a_rendition_with_the_quality_parameter() {
    let t = common::start_server_with(|c| {
        c.ingest.renditions = vec![
            RenditionSpec {
                name: "180p".into(),
                height: 180,
                video_kbps: 250,
            },
            RenditionSpec {
                name: "720p".into(),
                height: 720,
                video_kbps: 1200,
            },
        ];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    make_media(dir.path(), 6);
    let clip = dir.path().join("h264-baseline-aac.mp4");
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let ffmpeg_push = push_rtmp(&clip, &url);
    let session = common::wait_live(&t.base, &channel).await;

    let status: serde_json::Value = reqwest::get(format!("{}/api/channels/{channel}", t.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["qualities"],
        serde_json::json!(["source", "180p", "720p"])
    );

    let whep = format!("{}/whep/{channel}", t.base);
    let refused = reqwest::Client::new()
        .post(format!("{whep}?quality=1080p"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let reason = refused.text().await.unwrap();
    assert!(
        reason.contains("1080p") && reason.contains("source, 180p, 720p"),
        "the refusal names the offered qualities: {reason}"
    );

    let options = || ViewerOptions {
        record_payloads: true,
        ..Default::default()
    };
    let (low_url, high_url) = (
        format!("{whep}?quality=180p"),
        format!("{whep}?quality=720p"),
    );
    let (source, low, high) = tokio::join!(
        WhepViewer::connect(&whep, None, options()),
        WhepViewer::connect(&low_url, None, options()),
        WhepViewer::connect(&high_url, None, options()),
    );
    let (source, low, high) = (
        source.expect("source viewer"),
        low.expect("180p viewer"),
        high.expect("720p viewer"),
    );
    push_ends_its_session(ffmpeg_push, &t.server.catalog, session).await;
    let catalog = t.server.catalog.clone();

    for (viewer, name, size) in [
        (&source, "source", (640, 360)),
        (&low, "180p", (320, 180)),
        (&high, "720p", (640, 360)),
    ] {
        assert!(
            viewer.stats().audio.counters.packets > 150,
            "{name} viewer gets audio"
        );
        assert_quality(viewer, dir.path(), name, size, 120).await;
    }
    let summary = catalog
        .session_summary(session, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.peak_viewers, 3,
        "all renditions count in one session"
    );
    for viewer in [source, low, high] {
        viewer.close().await.ok();
    }
    t.server.shutdown().await;
}

/// Client bytes sent while the server had sent `server_bytes_before` bytes: what a client
/// sends between waiting for answers (RTMP's handshake and commands are request/response).
struct Flight {
    server_bytes_before: usize,
    bytes: Vec<u8>,
}

/// A one-connection TCP proxy in front of `upstream` that records every byte the client
/// sends, grouped into [`Flight`]s. Returns its address and the recording (complete once
/// the client hung up).
async fn recording_proxy(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<Flight>>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        let (mut client_rx, mut client_tx) = client.into_split();
        let (mut server_rx, mut server_tx) = server.into_split();
        let answered = Arc::new(AtomicUsize::new(0));
        let counter = answered.clone();
        let back = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = server_rx.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                // Counted before the client can see it, so its reply lands in a new flight.
                counter.fetch_add(n, Ordering::SeqCst);
                if client_tx.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut flights: Vec<Flight> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let before = answered.load(Ordering::SeqCst);
                    match flights.last_mut() {
                        Some(f) if f.server_bytes_before == before => {
                            f.bytes.extend_from_slice(&buf[..n])
                        }
                        _ => flights.push(Flight {
                            server_bytes_before: before,
                            bytes: buf[..n].to_vec(),
                        }),
                    }
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server_tx.shutdown().await;
        let _ = back.await;
        flights
    });
    (addr, task)
}

/// What the sans-IO RTMP server side made of a byte stream.
#[derive(Default)]
struct Replayed {
    app: String,
    stream_key: String,
    metadata: Option<rml_rtmp::sessions::StreamMetadata>,
    demux: feiyan::ingest::rtmp::FlvDemux,
    video: Vec<feiyan::transcode::SourcePacket>,
    audio: Vec<feiyan::transcode::SourcePacket>,
    finished: bool,
}

/// Feeds the client's flights, each cut into `piece`-byte inputs, through the same
/// protocol stack the server runs: rml_rtmp's handshake and session (answering requests
/// between flights, as the server does), then feiyan's FLV demux.
fn replay_sans_io(flights: &[Flight], piece: usize) -> Replayed {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };
    let mut out = Replayed::default();
    let mut handshake = Handshake::new(PeerType::Server);
    let mut session: Option<ServerSession> = None;
    for chunk in flights.iter().flat_map(|f| f.bytes.chunks(piece)) {
        let results = match &mut session {
            None => match handshake.process_bytes(chunk).expect("handshake") {
                HandshakeProcessResult::InProgress { .. } => continue,
                HandshakeProcessResult::Completed {
                    remaining_bytes, ..
                } => {
                    let (mut s, mut results) =
                        ServerSession::new(ServerSessionConfig::new()).unwrap();
                    results.extend(s.handle_input(&remaining_bytes).unwrap());
                    session = Some(s);
                    results
                }
            },
            Some(s) => s.handle_input(chunk).expect("valid RTMP"),
        };
        let mut results = std::collections::VecDeque::from(results);
        while let Some(result) = results.pop_front() {
            let ServerSessionResult::RaisedEvent(event) = result else {
                continue;
            };
            let s = session.as_mut().unwrap();
            match event {
                ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                } => {
                    out.app = app_name;
                    results.extend(s.accept_request(request_id).unwrap());
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    stream_key,
                    ..
                } => {
                    out.stream_key = stream_key;
                    results.extend(s.accept_request(request_id).unwrap());
                }
                ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                    out.metadata = Some(metadata)
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    let ts = i64::from(timestamp.value);
                    if let Some(p) = out.demux.video(&data, ts).unwrap() {
                        out.video.push(p);
                    }
                }
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => {
                    let ts = i64::from(timestamp.value);
                    if let Some(p) = out.demux.audio(&data, ts).unwrap() {
                        out.audio.push(p);
                    }
                }
                ServerSessionEvent::PublishStreamFinished { .. } => out.finished = true,
                _ => {}
            }
        }
    }
    out
}

/// The tags of an FLV file: (tag type, timestamp ms, body).
fn flv_tags(file: &[u8]) -> Vec<(u8, i64, Vec<u8>)> {
    assert_eq!(&file[..3], b"FLV");
    let mut at = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize + 4;
    let mut tags = Vec::new();
    while at + 11 <= file.len() {
        let kind = file[at] & 0x1f;
        let size = u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize;
        let ts = i64::from(u32::from_be_bytes([
            file[at + 7],
            file[at + 4],
            file[at + 5],
            file[at + 6],
        ]));
        tags.push((kind, ts, file[at + 11..at + 11 + size].to_vec()));
        at += 11 + size + 4;
    }
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_captured_from_a_real_ffmpeg_rtmp_session_demux_exactly_and_replay() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 3);
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let channel = t.station.channel.to_string();

    // Capture: ffmpeg -> recording proxy -> the server, a whole publish.
    let (proxy, recording) = recording_proxy(rtmp).await;
    let stream_key = format!("{channel}?key={}", t.station.stream_key);
    let mut push = push_rtmp(&clip, &format!("rtmp://{proxy}/live/{stream_key}"));
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg published through the proxy");
    let flights = recording.await.unwrap();
    let captured: Vec<u8> = flights.iter().flat_map(|f| f.bytes.clone()).collect();
    assert!(
        captured.len() > 100_000,
        "captured {} bytes",
        captured.len()
    );
    assert_eq!(captured[0], 3, "RTMP version byte");
    // C0+C1, then C2 and connect, createStream, publish and media: ffmpeg waits for answers.
    assert!(flights.len() >= 4, "{} flights", flights.len());
    assert_eq!(flights[0].bytes.len(), 1 + 1536, "C0 + C1 alone");
    let catalog = t.server.catalog.clone();
    let station = t.station.station_id;
    let ended_sessions = || {
        let catalog = catalog.clone();
        async move {
            let list = catalog.station_sessions(station.0, 10).await.unwrap();
            let ended = list.iter().filter(|s| s.ended_at.is_some()).count();
            (list.len(), ended)
        }
    };
    assert!(
        wait_until(Duration::from_secs(8), || async {
            ended_sessions().await == (1, 1)
        })
        .await,
        "the captured publish was a real session: {:?}",
        ended_sessions().await
    );

    // What ffmpeg sent, straight from the FLV file it read (-c copy keeps the tags).
    let tags = flv_tags(&std::fs::read(&clip).unwrap());
    let file_video: Vec<_> = tags.iter().filter(|t| t.0 == 9 && t.2[1] == 1).collect();
    let file_audio: Vec<_> = tags.iter().filter(|t| t.0 == 8 && t.2[1] == 1).collect();
    let file_avc = tags.iter().find(|t| t.0 == 9 && t.2[1] == 0).unwrap();
    let file_aac = tags.iter().find(|t| t.0 == 8 && t.2[1] == 0).unwrap();

    // Replay the captured bytes through the protocol stack, in odd-sized pieces so chunk
    // and message boundaries fall everywhere.
    for piece in [captured.len(), 1000, 137] {
        let r = replay_sans_io(&flights, piece);
        assert_eq!(r.app, "live", "piece {piece}");
        assert_eq!(r.stream_key, stream_key);
        assert!(r.finished, "the publisher said it was done");
        let meta = r.metadata.as_ref().expect("onMetaData");
        assert_eq!(
            (meta.video_width, meta.video_height),
            (Some(640), Some(360))
        );
        assert_eq!(meta.video_codec_id, Some(7), "AVC");
        assert_eq!(meta.audio_codec_id, Some(10), "AAC");
        assert_eq!(meta.video_frame_rate, Some(30.0));

        // H.264 configuration: High profile record with one SPS, 4-byte NAL lengths.
        let avc = r.demux.avc_record.as_ref().expect("AVC sequence header");
        assert_eq!(&avc[..], &file_avc.2[5..]);
        assert_eq!((avc[0], avc[1], avc[4] & 3, avc[5] & 0x1f), (1, 100, 3, 1));
        // AAC configuration: AAC-LC, 44.1 kHz (index 4), stereo.
        let asc = r.demux.aac_config.as_ref().expect("AAC sequence header");
        assert_eq!(&asc[..], &file_aac.2[2..]);
        assert_eq!(asc[0] >> 3, 2, "AAC LC");
        assert_eq!(((asc[0] & 7) << 1) | (asc[1] >> 7), 4, "44100 Hz");
        assert_eq!((asc[1] >> 3) & 0xf, 2, "two channels");

        // Every coded picture and AAC frame, byte for byte, with the file's timing.
        assert_eq!(r.video.len(), 90, "3 s at 30 fps");
        assert_eq!(r.video.len(), file_video.len());
        assert_eq!(r.audio.len(), file_audio.len());
        assert!(
            (128..=133).contains(&r.audio.len()),
            "{} AAC frames",
            r.audio.len()
        );
        let (v0, a0) = (file_video[0].1, file_audio[0].1);
        for (p, (_, ts, body)) in r.video.iter().zip(&file_video) {
            assert_eq!(&p.data[..], &body[5..]);
            assert_eq!(p.dts_us / 1000 - r.video[0].dts_us / 1000, ts - v0);
            assert_eq!(p.keyframe, body[0] >> 4 == 1);
            assert!(p.pts_us >= p.dts_us);
        }
        for (p, (_, ts, body)) in r.audio.iter().zip(&file_audio) {
            assert_eq!(&p.data[..], &body[2..]);
            assert_eq!(p.dts_us / 1000 - r.audio[0].dts_us / 1000, ts - a0);
        }
        assert!(r.video[0].keyframe);
        assert_eq!(r.video.iter().filter(|p| p.keyframe).count(), 2, "GOP 60");
        let reordered = r.video.iter().filter(|p| p.pts_us > p.dts_us).count();
        assert!(
            reordered > 30,
            "B-frames: {reordered} pictures shown after decode"
        );
        assert!(r.video.windows(2).all(|w| w[1].dts_us > w[0].dts_us));
        let last = r.video.last().unwrap().dts_us / 1000 - r.video[0].dts_us / 1000;
        assert!((2900..=3000).contains(&last), "last picture at {last} ms");
    }

    // The same bytes on a fresh connection make the server publish again: each flight is
    // sent once the server answered as much as it had before it the first time.
    let sock = tokio::net::TcpStream::connect(rtmp).await.unwrap();
    let (mut rx, mut tx) = sock.into_split();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = rx.read(&mut buf).await {
            if n == 0 {
                break;
            }
            counter.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        }
    });
    for flight in &flights {
        let needed = flight.server_bytes_before;
        let answers = answered.clone();
        assert!(
            wait_until(Duration::from_secs(5), || {
                let answers = answers.clone();
                async move { answers.load(std::sync::atomic::Ordering::SeqCst) >= needed }
            })
            .await,
            "the server answered the replay like the original ({needed} bytes)"
        );
        tx.write_all(&flight.bytes).await.unwrap();
    }
    tx.shutdown().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    assert!(
        wait_until(Duration::from_secs(8), || async {
            ended_sessions().await == (2, 2)
        })
        .await,
        "the replayed publish became a second session: {:?}",
        ended_sessions().await
    );
    let sessions = catalog.station_sessions(station.0, 10).await.unwrap();
    for s in &sessions {
        let summary = catalog
            .session_summary(feiyan::ids::SessionId(s.id), now_ms())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.source, SessionSource::Rtmp);
    }
    t.server.shutdown().await;
}

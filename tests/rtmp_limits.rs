//! The RTMP door on a public network (issue 23, item 7): a message that panics inside
//! `rml_rtmp` closes only its connection (counted in `/metrics`), connections past the cap
//! are closed at once, a client that never publishes is closed after the auth deadline,
//! and an over-long title is refused. Raw TCP clients speak real RTMP (a real handshake
//! and chunked messages made with `rml_rtmp`'s client side); the ffmpeg CLI shows the
//! listener still takes a normal publish afterwards.

mod common;

use std::time::Duration;

use common::rtmp::{make_media, push_rtmp};
use common::{live_session, start_server, wait_live};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default `[ingest] rtmp_max_connections`.
const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The default `[ingest] rtmp_auth_timeout_secs`.
const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Does the client side of the RTMP handshake on `sock`.
async fn handshake(sock: &mut TcpStream) {
    let mut hs = Handshake::new(PeerType::Client);
    let p0_p1 = hs.generate_outbound_p0_and_p1().unwrap();
    sock.write_all(&p0_p1).await.unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("the server answers the handshake")
            .unwrap();
        assert!(
            n > 0,
            "the server closed the connection during the handshake"
        );
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await.unwrap();
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                sock.write_all(&response_bytes).await.unwrap();
                return;
            }
        }
    }
}

/// One RTMP message as chunk bytes on the wire.
fn chunks(serializer: &mut ChunkSerializer, message: RtmpMessage) -> Vec<u8> {
    let payload = message
        .into_message_payload(RtmpTimestamp::new(0), 0)
        .unwrap();
    serializer.serialize(&payload, false, false).unwrap().bytes
}

/// Whether the server closes `sock` within `within` (reading and discarding what it sends).
async fn closed_within(sock: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 8192];
    tokio::time::timeout(within, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// The value of one counter in `GET /metrics`, if it is there.
async fn metric(base: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `@setDataFrame` with nothing after it makes `rml_rtmp` 0.8 index an empty vector
/// (`handle_amf0_data_set_data_frame`: `data[0]`). That closes this connection with a
/// counted panic; a normal ffmpeg publish on the same listener then goes live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_data_frame_without_payload_closes_only_its_connection_and_is_counted() {
    let t = start_server().await;
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    for round in 1..=2u64 {
        // A fresh serializer per connection: its first chunk must carry a full header.
        let mut serializer = ChunkSerializer::new();
        let mut sock = TcpStream::connect(rtmp).await.unwrap();
        handshake(&mut sock).await;
        let bytes = chunks(
            &mut serializer,
            RtmpMessage::Amf0Data {
                values: vec![Amf0Value::Utf8String("@setDataFrame".into())],
            },
        );
        sock.write_all(&bytes).await.unwrap();
        assert!(
            closed_within(&mut sock, Duration::from_secs(5)).await,
            "the connection that made rml_rtmp panic is closed"
        );
        let mut counted = None;
        for _ in 0..40 {
            counted = metric(&t.base, "feiyan_rtmp_panics_total").await;
            if counted == Some(round) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            counted,
            Some(round),
            "feiyan_rtmp_panics_total in /metrics after panic {round}"
        );
    }

    // The listener keeps accepting: the ffmpeg CLI publishes and the channel goes live.
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 2);
    let channel = t.station.channel.to_string();
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut push = push_rtmp(&clip, &url);
    wait_live(&t.base, &channel).await;
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg pushed the whole clip: {status}");
    t.server.shutdown().await;
}

/// A client that connects and sends nothing, and one that finishes the handshake and keeps
/// talking but never connects nor publishes, are both closed after the auth deadline
/// (default 10 s; the 30 s idle timeout alone would never close the second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_publish_are_closed_after_the_auth_deadline() {
    let t = start_server().await;
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(rtmp).await.unwrap();
    let mut chatty = TcpStream::connect(rtmp).await.unwrap();
    handshake(&mut chatty).await;
    let (mut reader, mut writer) = chatty.into_split();
    let talker = tokio::spawn(async move {
        let mut serializer = ChunkSerializer::new();
        loop {
            let bytes = chunks(
                &mut serializer,
                RtmpMessage::WindowAcknowledgement { size: 2_500_000 },
            );
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let deadline = DEFAULT_AUTH_TIMEOUT + Duration::from_secs(4);
    assert!(
        closed_within(&mut silent, deadline).await,
        "a silent client is closed after the auth deadline"
    );
    let mut buf = [0u8; 8192];
    let chatty_closed = tokio::time::timeout_at(started + deadline, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok();
    talker.abort();
    assert!(
        chatty_closed,
        "a client that talks but never publishes is closed after the auth deadline"
    );
    assert!(
        started.elapsed() >= DEFAULT_AUTH_TIMEOUT - Duration::from_millis(500),
        "not closed before the deadline: {:?}",
        started.elapsed()
    );
    t.server.shutdown().await;
}

/// With the default cap of 256 RTMP connections taken by idle clients, the next one is
/// closed at once; once they leave, new connections are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once() {
    let t = start_server().await;
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let mut held = Vec::new();
    for _ in 1..DEFAULT_MAX_CONNECTIONS {
        held.push(TcpStream::connect(rtmp).await.unwrap());
    }
    // The 256th: all of them were accepted (in order) once it gets a handshake answer.
    let mut last = TcpStream::connect(rtmp).await.unwrap();
    handshake(&mut last).await;
    held.push(last);

    let mut extra = TcpStream::connect(rtmp).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "connection {} is closed at once",
        DEFAULT_MAX_CONNECTIONS + 1
    );

    drop(held);
    let mut served = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut sock = TcpStream::connect(rtmp).await.unwrap();
        let mut hs = Handshake::new(PeerType::Client);
        sock.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let answered = tokio::time::timeout(Duration::from_secs(1), sock.read(&mut buf)).await;
        if matches!(answered, Ok(Ok(n)) if n > 0) {
            served = true;
            break;
        }
    }
    assert!(served, "new connections are served once the others left");
    t.server.shutdown().await;
}

/// A `title` of 201 characters is refused (ffmpeg fails, the channel stays off air); 200
/// characters go live with that title. ASCII: ffmpeg cuts RTMP URL paths at 1,023 bytes, so
/// 201 percent-encoded Chinese characters would not arrive whole (the unit test in
/// `src/ingest/rtmp.rs` counts Chinese characters, not bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_longer_than_200_characters_is_refused() {
    let t = start_server().await;
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), 2);
    let channel = t.station.channel.to_string();
    let url = |chars: usize| {
        format!(
            "rtmp://{rtmp}/live/{channel}?key={}&title={}",
            t.station.stream_key,
            "t".repeat(chars)
        )
    };

    let mut long = push_rtmp(&clip, &url(201));
    let status = tokio::task::spawn_blocking(move || long.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "ffmpeg with a 201-character title fails");
    assert!(live_session(&t.base, &channel).await.is_none());

    let mut fits = push_rtmp(&clip, &url(200));
    let session = wait_live(&t.base, &channel).await;
    let summary = t
        .server
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.title, "t".repeat(200));
    let _ = tokio::task::spawn_blocking(move || fits.wait()).await;
    t.server.shutdown().await;
}

//! A lossy link between the server and a viewer: a UDP relay in the test drops every 20th
//! large media datagram towards the viewer. The viewer's NACKs are answered from the
//! channel's retransmission buffer, so it still receives (nearly) everything.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::start_server_with;
use feiyan::client::{
    PublisherOptions, SyntheticMedia, TrackKind, ViewerOptions, WhepViewer, WhipPublisher,
    make_test_media,
};
use tokio::net::UdpSocket;

/// Forwards datagrams between clients and the server's media port, dropping every
/// `drop_every`-th server-to-client datagram that looks like media (RTP range, > 400 bytes).
async fn lossy_relay(
    listen: UdpSocket,
    server: SocketAddr,
    drop_every: u64,
    dropped: Arc<AtomicU64>,
) {
    let listen = Arc::new(listen);
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf).await else {
            return;
        };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                upstreams.insert(client, u.clone());
                let (u2, listen2, counter, dropped) =
                    (u.clone(), listen.clone(), counter.clone(), dropped.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                        let media = n > 400 && (128..192).contains(&buf[0]);
                        if media
                            && counter.fetch_add(1, Ordering::Relaxed) % drop_every
                                == drop_every - 1
                        {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let _ = listen2.send_to(&buf[..n], client).await;
                    }
                });
                u
            }
        };
        let _ = upstream.send_to(&buf[..n], server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_are_answered_from_the_channel_buffer() {
    let relay_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay_socket.local_addr().unwrap().port();
    let t = start_server_with(|c| c.webrtc.advertised_port = Some(relay_port)).await;
    let dropped = Arc::new(AtomicU64::new(0));
    tokio::spawn(lossy_relay(
        relay_socket,
        t.server.udp_addr,
        20,
        dropped.clone(),
    ));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let media = tokio::task::spawn_blocking(move || {
        let (h264, ogg) = make_test_media(&path, Duration::from_secs(4), 800).unwrap();
        SyntheticMedia::load(&h264, &ogg).unwrap()
    })
    .await
    .unwrap();
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        PublisherOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects through the relay");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("viewer connects through the relay");
    // Two seconds after connecting the viewer is detached from its peer connection (the
    // engine then reads its SRTCP itself): NACKs must be answered on both sides of that.
    let counters = &t.server.relay.board().counters;
    let detached_by = tokio::time::Instant::now() + Duration::from_secs(5);
    while counters.viewers_detached.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < detached_by,
            "the viewer was never detached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resent_attached = counters.retransmissions.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    publisher.stop_sending();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let sent = publisher.sent_payloads(TrackKind::Video);
    let got: HashSet<Bytes> = viewer
        .received_payloads(TrackKind::Video)
        .into_iter()
        .collect();
    let first = viewer
        .received_payloads(TrackKind::Video)
        .first()
        .cloned()
        .expect("video arrives");
    let start = sent.iter().position(|p| *p == first).unwrap_or(0);
    let expected = &sent[start..];
    let delivered = expected.iter().filter(|p| got.contains(*p)).count();
    let dropped = dropped.load(Ordering::Relaxed);
    let resent = t
        .server
        .relay
        .board()
        .counters
        .retransmissions
        .load(Ordering::Relaxed);
    assert!(dropped >= 10, "the link dropped {dropped} media datagrams");
    assert!(resent > 0, "the server retransmitted nothing");
    assert!(
        resent > resent_attached,
        "no NACK was answered once the viewer was detached ({resent_attached} before, {resent} in all)"
    );
    assert!(
        delivered * 100 >= expected.len() * 99,
        "with {dropped} dropped and {resent} resent, the viewer got {delivered}/{} video packets",
        expected.len()
    );
    // Operators see the same in /metrics.
    let metrics = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("feiyan_retransmissions_total "))
        .expect("retransmissions in /metrics");
    assert_eq!(
        line,
        format!("feiyan_retransmissions_total {resent}").as_str()
    );
    assert!(metrics.contains("feiyan_live_channels 1"), "{metrics}");
    viewer.close().await.ok();
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

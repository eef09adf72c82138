//! Routing on the shared media socket: a STUN check binds its sender's address to a peer
//! only when it is signed with that peer's ICE password.
//!
//! The server's ICE username fragment is no secret: it is in every WHEP answer and in
//! every consent check a viewer sends, in the clear. A test relay between a real viewer
//! (webrtc-rs) and the server reads it from the viewer's checks, as anyone on the path
//! could; an attacker then sends Binding requests naming the viewer's username pair from
//! its own address, unsigned and signed with a wrong password, followed by a DTLS alert
//! (what a viewer's close_notify looks like to the engine). The attacker's address must
//! not become the viewer's: it gets nothing back, and the viewer keeps receiving media.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, start_server_with};
use feiyan::client::{
    PublisherOptions, SyntheticMedia, TrackKind, ViewerOptions, WhepViewer, WhipPublisher,
    make_test_media,
};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
use rtc::stun::textattrs::Username;
use tokio::net::UdpSocket;

/// The USERNAME (`serverUfrag:viewerUfrag`) of a STUN message, if it carries one.
fn stun_username(data: &[u8]) -> Option<String> {
    if data.len() < 20 || data[0] > 1 {
        return None;
    }
    let mut msg = Message::new();
    msg.unmarshal_binary(data).ok()?;
    Username::get_from_as(&msg, ATTR_USERNAME)
        .ok()
        .map(|u| u.text)
}

/// The USERNAMEs of the STUN checks clients sent, each once, in the order first seen.
type Usernames = Arc<Mutex<Vec<String>>>;

/// Forwards datagrams between clients and the server's media port, noting the USERNAMEs of
/// the STUN checks clients send.
async fn spying_relay(listen: UdpSocket, server: SocketAddr, usernames: Usernames) {
    let listen = Arc::new(listen);
    let mut upstreams: std::collections::HashMap<SocketAddr, Arc<UdpSocket>> = Default::default();
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf).await else {
            return;
        };
        if let Some(name) = stun_username(&buf[..n]) {
            let mut seen = usernames.lock().unwrap();
            if !seen.contains(&name) {
                seen.push(name);
            }
        }
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                upstreams.insert(client, u.clone());
                let (u2, listen2) = (u.clone(), listen.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                        let _ = listen2.send_to(&buf[..n], client).await;
                    }
                });
                u
            }
        };
        let _ = upstream.send_to(&buf[..n], server).await;
    }
}

/// A Binding request naming `username`, signed with `password` when given.
fn binding_request(username: &str, password: Option<&str>) -> Vec<u8> {
    let provider = rtc::crypto::default_provider().unwrap();
    let crypto = provider.crypto();
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(ATTR_USERNAME, username.to_string())),
    ];
    if let Some(password) = password {
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(password.into(), crypto),
        ));
    }
    setters.push(Box::new(FINGERPRINT));
    let mut msg = Message::new();
    msg.build(&setters).unwrap();
    msg.raw
}

/// A DTLS 1.2 alert record in epoch 1 (after the handshake a viewer's close_notify is one,
/// its body encrypted): fatal, as far as anyone can tell from outside.
fn dtls_alert() -> Vec<u8> {
    let mut record = vec![21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26];
    record.extend_from_slice(&[0x5a; 26]);
    record
}

fn video_packets(viewer: &WhepViewer) -> u64 {
    viewer.stats().track(TrackKind::Video).counters.packets
}

fn metric(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_checks_naming_a_viewer_do_not_bind_their_address() {
    let relay_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay_socket.local_addr().unwrap().port();
    let t: TestServer = start_server_with(|c| c.webrtc.advertised_port = Some(relay_port)).await;
    let usernames = Usernames::default();
    tokio::spawn(spying_relay(
        relay_socket,
        t.server.udp_addr,
        usernames.clone(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let media = tokio::task::spawn_blocking(move || {
        let (h264, ogg) = make_test_media(&path, Duration::from_secs(10), 800).unwrap();
        SyntheticMedia::load(&h264, &ogg).unwrap()
    })
    .await
    .unwrap();
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    common::wait_live(&t.base, &channel).await;
    // The publisher's checks pass the relay too: the viewer's username is the next one.
    let publishers = usernames.lock().unwrap().len();
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions::default(),
    )
    .await
    .expect("viewer connects");
    // Detached from its peer connection (two seconds after connecting), the viewer is the
    // engine's alone: its checks answered and its DTLS alerts read by the engine itself.
    let counters = &t.server.relay.board().counters;
    let by = Instant::now() + Duration::from_secs(6);
    while counters.viewers_detached.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < by, "the viewer was never detached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let username = usernames
        .lock()
        .unwrap()
        .get(publishers)
        .cloned()
        .expect("the relay saw the viewer's STUN checks");
    assert!(video_packets(&viewer) > 0, "the viewer receives video");

    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = t.server.udp_addr;
    for _ in 0..3 {
        for datagram in [
            binding_request(&username, None),
            binding_request(&username, Some("not-the-password-of-this-viewer")),
            dtls_alert(),
        ] {
            attacker.send_to(&datagram, server).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing comes back to the attacker: no Binding success, no media, no SRTCP.
    let mut buf = [0u8; 2048];
    let heard = tokio::time::timeout(Duration::from_secs(2), attacker.recv_from(&mut buf)).await;
    if let Ok(Ok((n, _))) = heard {
        panic!(
            "the server sent the attacker a {n}-byte datagram (first byte {})",
            buf[0]
        );
    }
    // The viewer keeps receiving.
    let before = video_packets(&viewer);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = video_packets(&viewer);
    assert!(
        after > before + 10,
        "the viewer stopped receiving after an unsigned check from another address \
         ({before} -> {after} video packets)"
    );
    let metrics = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unverified = metric(&metrics, "feiyan_stun_unverified_total")
        .expect("feiyan_stun_unverified_total in /metrics");
    assert!(
        unverified >= 6,
        "6 unsigned or badly signed checks, {unverified} counted"
    );
    viewer.close().await.ok();
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

//! Viewers' NACKs, well-formed or hostile, against the relay's retransmissions: a viewer
//! (webrtc-rs) sends crafted RTCP NACKs while a UDP relay in the test watches every
//! datagram the server sends it, in the clear parts of SRTP (SSRC, sequence number) and as
//! bytes.
//!
//! - One NACK packet with hundreds of pairs is answered once per distinct sequence number,
//!   and no more than 64 of them.
//! - A viewer that NACKs everything all the time gets retransmissions within its budget
//!   (about twice the stream's rate); what was refused is counted in `/metrics`.
//! - After a viewer is moved to the next keyframe, a NACK for a number sent before
//!   the move is answered with the identical bytes or not at all: never another packet
//!   under the same SSRC and sequence number (AES-GCM nonce reuse, a wrong picture).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestServer, start_server_with};
use feiyan::client::{
    PublisherOptions, SyntheticMedia, ViewerOptions, WhepViewer, WhipPublisher, make_test_media,
};
use feiyan::relay::MAX_NACKED_PER_RTCP;
use feiyan::relay::media::RetransmitBudget;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use tokio::net::UdpSocket;

const RETRANSMIT_FLOOR: u64 = RetransmitBudget::FLOOR;

/// What the server sent to clients through the test's relay.
#[derive(Default)]
struct Watch {
    /// Every RTP datagram the server sent, by `(ssrc, sequence number)`: its first bytes
    /// and when it was first seen.
    sent: Mutex<HashMap<(u32, u16), (Bytes, Instant)>>,
    /// Datagrams whose SSRC and sequence number were sent before with other bytes.
    conflicts: AtomicU64,
    /// Bytes of datagrams sent for the first time (the stream) and again (retransmissions).
    fresh_bytes: AtomicU64,
    repeat_bytes: AtomicU64,
}

impl Watch {
    /// Notes one server-to-client datagram.
    fn server_sent(&self, data: &[u8]) {
        let rtp =
            data.len() >= 12 && (128..192).contains(&data[0]) && !(192..=223).contains(&data[1]);
        if !rtp {
            return;
        }
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let mut sent = self.sent.lock().unwrap();
        match sent.get(&(ssrc, seq)) {
            Some((bytes, _)) => {
                if bytes[..] != data[..] {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                self.repeat_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            None => {
                sent.insert((ssrc, seq), (Bytes::copy_from_slice(data), Instant::now()));
                self.fresh_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// The sequence numbers of `ssrc` first seen before `before`, newest last.
    fn seqs_before(&self, ssrc: u32, before: Instant) -> Vec<u16> {
        let sent = self.sent.lock().unwrap();
        let mut seqs: Vec<(Instant, u16)> = sent
            .iter()
            .filter(|((s, _), (_, at))| *s == ssrc && *at < before)
            .map(|((_, seq), (_, at))| (*at, *seq))
            .collect();
        seqs.sort();
        seqs.into_iter().map(|(_, seq)| seq).collect()
    }
}

/// Forwards datagrams between clients and the server's media port, telling `watch` about
/// everything the server sends.
async fn watching_relay(listen: UdpSocket, server: SocketAddr, watch: Arc<Watch>) {
    let listen = Arc::new(listen);
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf).await else {
            return;
        };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                upstreams.insert(client, u.clone());
                let (u2, listen2, watch) = (u.clone(), listen.clone(), watch.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                        watch.server_sent(&buf[..n]);
                        let _ = listen2.send_to(&buf[..n], client).await;
                    }
                });
                u
            }
        };
        let _ = upstream.send_to(&buf[..n], server).await;
    }
}

/// A server, a publisher and one webrtc-rs viewer, all through a watching relay, with
/// video flowing to the viewer.
struct Setup {
    t: TestServer,
    watch: Arc<Watch>,
    publisher: WhipPublisher,
    viewer: WhepViewer,
    video_ssrc: u32,
}

async fn setup() -> Setup {
    let relay_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay_socket.local_addr().unwrap().port();
    let t = start_server_with(|c| c.webrtc.advertised_port = Some(relay_port)).await;
    let watch = Arc::new(Watch::default());
    tokio::spawn(watching_relay(
        relay_socket,
        t.server.udp_addr,
        watch.clone(),
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let viewer = WhepViewer::connect(
        &format!("{}/whep/{channel}", t.base),
        None,
        ViewerOptions::default(),
    )
    .await
    .expect("viewer connects");
    let by = Instant::now() + Duration::from_secs(5);
    let video_ssrc = loop {
        if let Some(ssrc) = viewer.video_ssrc().await {
            break ssrc;
        }
        assert!(Instant::now() < by, "the viewer's video track never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Once detached from its peer connection (two seconds after connecting) the engine
    // reads the viewer's SRTCP itself, whatever its size; by then the channel's buffer
    // holds what is NACKed.
    let counters = &t.server.relay.board().counters;
    let by = Instant::now() + Duration::from_secs(5);
    while counters.viewers_detached.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < by, "the viewer was never detached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup {
        t,
        watch,
        publisher,
        viewer,
        video_ssrc,
    }
}

impl Setup {
    fn retransmissions(&self) -> u64 {
        self.t
            .server
            .relay
            .board()
            .counters
            .retransmissions
            .load(Ordering::Relaxed)
    }

    async fn nack(&self, nacks: Vec<NackPair>) {
        let nack = TransportLayerNack {
            sender_ssrc: 0,
            media_ssrc: self.video_ssrc,
            nacks,
        };
        self.viewer
            .send_video_rtcp(vec![Box::new(nack)])
            .await
            .expect("the viewer sends its NACK");
    }

    /// NACKs `seqs` in packets of at most [`MAX_NACKED_PER_RTCP`] numbers.
    async fn nack_seqs(&self, seqs: &[u16]) {
        for chunk in seqs.chunks(MAX_NACKED_PER_RTCP) {
            let pairs = chunk
                .iter()
                .map(|&packet_id| NackPair {
                    packet_id,
                    lost_packets: 0,
                })
                .collect();
            self.nack(pairs).await;
        }
    }

    async fn end(self) {
        self.viewer.close().await.ok();
        self.publisher.stop().await.ok();
        self.t.server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_with_many_pairs_is_deduplicated_and_capped() {
    let s = setup().await;
    let newest = *s
        .watch
        .seqs_before(s.video_ssrc, Instant::now())
        .last()
        .expect("video was sent");

    // 250 identical pairs, each naming 17 packets the channel still holds (one RTCP
    // packet of ~1 KB: webrtc-rs does not send one much larger).
    let before = s.retransmissions();
    let pair = NackPair {
        packet_id: newest.wrapping_sub(40),
        lost_packets: 0xffff,
    };
    s.nack(vec![pair; 250]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resent = s.retransmissions() - before;
    assert!(
        (1..=17).contains(&resent),
        "250 identical NACK pairs naming 17 packets were answered with {resent} retransmissions"
    );

    // 250 distinct pairs naming 4,250 numbers, the newest hundreds of them still held.
    let before = s.retransmissions();
    let pairs = (0..250u16)
        .map(|i| NackPair {
            packet_id: newest.wrapping_sub(17 * (i + 1)),
            lost_packets: 0xffff,
        })
        .collect();
    s.nack(pairs).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resent = s.retransmissions() - before;
    assert!(
        resent as usize <= MAX_NACKED_PER_RTCP,
        "one NACK packet naming 4,250 numbers was answered with {resent} retransmissions \
         (cap {MAX_NACKED_PER_RTCP})"
    );
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_nacks_everything_stays_within_its_budget() {
    let s = setup().await;
    let fresh_before = s.watch.fresh_bytes.load(Ordering::Relaxed);
    let repeat_before = s.watch.repeat_bytes.load(Ordering::Relaxed);
    let started = Instant::now();
    // Twenty NACKs a second for two seconds, each for the newest numbers sent.
    while started.elapsed() < Duration::from_secs(2) {
        let seqs = s.watch.seqs_before(s.video_ssrc, Instant::now());
        let newest = &seqs[seqs.len().saturating_sub(MAX_NACKED_PER_RTCP)..];
        s.nack_seqs(newest).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = s.watch.fresh_bytes.load(Ordering::Relaxed) - fresh_before;
    let repeat = s.watch.repeat_bytes.load(Ordering::Relaxed) - repeat_before;
    // The budget is about twice the stream's rate, at least the floor, with half a second
    // of it as a burst: over ~2.3 s, well under three times the stream plus 2.5 s of floor.
    assert!(
        repeat <= 3 * fresh + RETRANSMIT_FLOOR * 5 / 2,
        "a viewer NACKing everything got {repeat} bytes of retransmissions beside {fresh} \
         bytes of stream"
    );
    let metrics = reqwest::get(format!("{}/metrics", s.t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("feiyan_retransmissions_refused_total "))
        .expect("refused retransmissions in /metrics")
        .parse()
        .unwrap();
    assert!(refused > 0, "nothing was refused: {metrics}");
    s.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resync_a_nack_gets_the_same_bytes_or_nothing() {
    let s = setup().await;
    let counters = &s.t.server.relay.board().counters;
    // The viewer reports heavy loss: the server moves it to the next keyframe, where its
    // outgoing numbering is re-anchored.
    let report = ReceiverReport {
        ssrc: 0,
        reports: vec![ReceptionReport {
            ssrc: s.video_ssrc,
            fraction_lost: 255,
            ..Default::default()
        }],
        profile_extensions: Bytes::new(),
    };
    s.viewer
        .send_video_rtcp(vec![Box::new(report)])
        .await
        .expect("the viewer sends its report");
    let by = Instant::now() + Duration::from_secs(5);
    while counters.viewers_skipped.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < by, "the lossy viewer was never resynced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let skipped_at = Instant::now();
    // The next keyframe (one a second) arrives and the viewer resumes from it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // NACK the numbers sent before the resync.
    let before_resync = s
        .watch
        .seqs_before(s.video_ssrc, skipped_at - Duration::from_millis(100));
    let wanted = &before_resync[before_resync.len().saturating_sub(200)..];
    let resent_before = s.retransmissions();
    s.nack_seqs(wanted).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resent = s.retransmissions() - resent_before;
    let conflicts = s.watch.conflicts.load(Ordering::Relaxed);
    assert_eq!(
        conflicts,
        0,
        "{conflicts} datagrams reused an SSRC and sequence number with other bytes \
         ({resent} retransmissions for {} pre-resync numbers NACKed)",
        wanted.len()
    );
    s.end().await;
}

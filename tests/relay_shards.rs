//! The relay on two engine shards (`[webrtc] shards = 2`), real server, real webrtc-rs
//! peers: twenty viewers of one channel land on both shards and both shard threads work
//! (their CPU time in `/proc/self/task/*/stat`), every viewer gets >= 99 % of the
//! publisher's packets byte for byte, late joiners on either shard start on a keyframe, a
//! publisher reconnecting within the grace keeps every viewer in the one session, and a
//! viewer's NACK is answered by the shard it is on, not the publisher's.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, start_server_with, wait_live, wait_until};
use feiyan::client::{
    PublisherOptions, SyntheticMedia, TrackKind, ViewerOptions, ViewerStack, WhepViewer,
    WhipPublisher, make_test_media,
};
use feiyan::ids::ChannelName;
use feiyan::relay::shards::home_of;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};

async fn test_media(dir: &std::path::Path, secs: u64) -> SyntheticMedia {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) =
            make_test_media(&dir, Duration::from_secs(secs), 500).expect("ffmpeg makes test media");
        SyntheticMedia::load(&h264, &ogg).expect("test media loads")
    })
    .await
    .unwrap()
}

async fn two_shards() -> TestServer {
    start_server_with(|c| {
        c.webrtc.shards = 2;
        // A publisher that returns within the grace continues its session.
        c.hls.reconnect_grace_secs = 10;
    })
    .await
}

fn light() -> ViewerOptions {
    ViewerOptions {
        stack: ViewerStack::Light,
        record_payloads: true,
        ..Default::default()
    }
}

/// CPU time (user + system clock ticks) of this process's thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command's closing parenthesis start at field 3 (state);
        // utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        return Some(utime + stime);
    }
    None
}

/// The shard a WHEP resource is on: its id's first character names it.
fn shard_of(viewer: &WhepViewer) -> usize {
    let resource = viewer.location().rsplit('/').next().unwrap_or_default();
    match resource.as_bytes().first() {
        Some(b'a') => 0,
        Some(b'b') => 1,
        other => panic!("resource {resource} names no shard of two ({other:?})"),
    }
}

/// Every viewer got only payloads the publisher sent, and >= `percent` % of what it sent
/// from the viewer's first payload on.
fn assert_delivered(
    publisher: &WhipPublisher,
    viewers: &[WhepViewer],
    kind: TrackKind,
    percent: usize,
) {
    let sent: Vec<Bytes> = publisher.sent_payloads(kind);
    assert!(!sent.is_empty(), "publisher sent {kind}");
    let sent_set: HashSet<&Bytes> = sent.iter().collect();
    for (i, viewer) in viewers.iter().enumerate() {
        let got = viewer.received_payloads(kind);
        let got_set: HashSet<&Bytes> = got.iter().collect();
        let first = got
            .iter()
            .find(|p| sent_set.contains(p))
            .expect("viewer received media");
        let start = sent.iter().position(|p| p == first).unwrap_or(0);
        let expected = sent.len() - start;
        let delivered = sent[start..].iter().filter(|p| got_set.contains(p)).count();
        assert!(expected > 50, "viewer {i} {kind}: only {expected} expected");
        assert!(
            delivered * 100 >= expected * percent,
            "viewer {i} (shard {}) {kind}: {delivered}/{expected} delivered",
            shard_of(viewer)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_spread_over_two_shards() {
    let t = two_shards().await;
    assert_eq!(t.server.relay.shards(), 2);
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let name = ChannelName::parse(&channel).unwrap();
    let whip = format!("{}/whip/{channel}", t.base);
    let whep = format!("{}/whep/{channel}", t.base);
    let publish = |media| {
        let whip = whip.clone();
        let key = t.station.stream_key.clone();
        async move {
            WhipPublisher::connect(
                &whip,
                Some(&key),
                media,
                PublisherOptions {
                    record_payloads: true,
                    ..Default::default()
                },
            )
            .await
            .expect("publisher connects")
        }
    };

    let first = publish(test_media(dir.path(), 4).await).await;
    let session = wait_live(&t.base, &channel).await;
    // Twenty viewers join at once: their offers are answered on both shards in parallel.
    let joins = (0..20).map(|_| WhepViewer::connect(&whep, None, light()));
    let viewers: Vec<WhepViewer> = futures::future::join_all(joins)
        .await
        .into_iter()
        .map(|v| v.expect("viewer connects"))
        .collect();
    let on_shard = |s: usize| viewers.iter().filter(|v| shard_of(v) == s).count();
    assert!(
        on_shard(0) >= 5 && on_shard(1) >= 5,
        "viewers on shard 0: {}, shard 1: {}",
        on_shard(0),
        on_shard(1)
    );
    let board = t.server.relay.board().clone();
    let counted = wait_until(Duration::from_secs(10), || {
        let per_shard = board.shard_viewers(&name);
        async move { per_shard.iter().sum::<usize>() == 20 }
    })
    .await;
    assert!(
        counted,
        "the board counts 20 connected viewers: {:?}",
        board.shard_viewers(&name)
    );
    assert_eq!(
        board.shard_viewers(&name),
        vec![on_shard(0), on_shard(1)],
        "each shard counts its own viewers"
    );

    // Both shard threads work: their CPU time grows while media flows.
    let ticks = || [thread_ticks("fy-shard-0"), thread_ticks("fy-shard-1")];
    let before = ticks();
    assert!(
        before.iter().all(Option::is_some),
        "threads fy-shard-0 and fy-shard-1 run: {:?}",
        common::thread_names()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = ticks();
    for shard in 0..2 {
        let used = after[shard].unwrap() - before[shard].unwrap();
        assert!(
            used >= 2,
            "shard {shard} used {used} clock ticks of CPU in 3 s of fan-out"
        );
    }

    // Late joiners, one per shard (viewers go round robin), start on a keyframe.
    let late = vec![
        WhepViewer::connect(&whep, None, light())
            .await
            .expect("late viewer"),
        WhepViewer::connect(&whep, None, light())
            .await
            .expect("late viewer"),
    ];
    let late_shards: HashSet<usize> = late.iter().map(shard_of).collect();
    assert_eq!(late_shards.len(), 2, "one late joiner on each shard");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, viewer) in late.iter().enumerate() {
        let stats = viewer.stats();
        assert!(
            stats.first_keyframe_at.is_some() && stats.first_video_frame_is_keyframe,
            "late joiner {i} (shard {}) starts on a keyframe: {stats:?}",
            shard_of(viewer)
        );
    }

    first.stop_sending();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for kind in [TrackKind::Video, TrackKind::Audio] {
        assert_delivered(&first, &viewers, kind, 99);
    }

    // The publisher reconnects within the grace: the same session, every viewer stays
    // on its connection and gets the new publisher's stream.
    first.stop().await.expect("publisher DELETE");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = publish(test_media(dir.path(), 3).await).await;
    assert_eq!(
        wait_live(&t.base, &channel).await,
        session,
        "the returning publisher continues the session"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.stop_sending();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_two: HashSet<Bytes> = second.sent_payloads(TrackKind::Video).into_iter().collect();
    assert!(sent_two.len() > 50, "the second publisher sent video");
    for (i, viewer) in viewers.iter().chain(&late).enumerate() {
        let stats = viewer.stats();
        assert_eq!(stats.video.ssrc_changes, 0, "viewer {i}: {:?}", stats.video);
        assert_eq!(stats.audio.ssrc_changes, 0, "viewer {i}: {:?}", stats.audio);
        let got: HashSet<Bytes> = viewer
            .received_payloads(TrackKind::Video)
            .into_iter()
            .collect();
        let from_second = sent_two.iter().filter(|p| got.contains(*p)).count();
        assert!(
            from_second * 100 >= sent_two.len() * 95,
            "viewer {i} (shard {}) got {from_second} of {} packets of the returning publisher",
            shard_of(viewer),
            sent_two.len()
        );
    }

    // One session, attended by all 22 viewers on both shards: each has a row before and
    // one after the reconnect; the session is counted once.
    let catalog = t.server.catalog.clone();
    let rows = catalog.session_viewers(session).await.unwrap();
    assert_eq!(rows.len(), 44, "two rows per viewer: {rows:?}");
    let summary = catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unique_viewers, 22, "{summary:?}");
    assert_eq!(summary.peak_viewers, 22, "{summary:?}");
    assert!(summary.live, "the session is still live: {summary:?}");

    second.stop().await.ok();
    for viewer in viewers.iter().chain(&late) {
        viewer.close().await.ok();
    }
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_nack_is_answered_by_its_own_shard() {
    let t = two_shards().await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let home = home_of(&ChannelName::parse(&channel).unwrap(), 2);
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        test_media(dir.path(), 4).await,
        PublisherOptions {
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects");
    wait_live(&t.base, &channel).await;
    // Two viewers: one on each shard (round robin); the one that is not on the
    // publisher's shard NACKs.
    let mut viewers = Vec::new();
    for _ in 0..2 {
        viewers.push(
            WhepViewer::connect(
                &format!("{}/whep/{channel}", t.base),
                None,
                ViewerOptions {
                    record_payloads: true,
                    ..Default::default()
                },
            )
            .await
            .expect("viewer connects"),
        );
    }
    let viewer = viewers
        .iter()
        .find(|v| shard_of(v) != home)
        .expect("a viewer on the shard without the publisher");
    // Once detached (two seconds after connecting) the shard reads its SRTCP itself.
    let counters = &t.server.relay.board().counters;
    let detached = wait_until(Duration::from_secs(8), || async {
        counters.viewers_detached.load(Ordering::Relaxed) == 2
    })
    .await;
    assert!(detached, "both viewers are detached");
    let newest = viewer
        .stats()
        .video
        .newest_seq
        .expect("the viewer got video");
    let board = t.server.relay.board().clone();
    let before = counters.retransmissions.load(Ordering::Relaxed);
    let shard_before = board.shard_retransmissions();
    // Seventeen packets it already got, a few frames back.
    let nack = TransportLayerNack {
        sender_ssrc: 0,
        media_ssrc: viewer.video_ssrc().await.expect("video ssrc"),
        nacks: vec![NackPair {
            packet_id: newest.wrapping_sub(40),
            lost_packets: 0xffff,
        }],
    };
    viewer
        .send_video_rtcp(vec![Box::new(nack)])
        .await
        .expect("the viewer sends its NACK");
    let answered = wait_until(Duration::from_secs(3), || async {
        counters.retransmissions.load(Ordering::Relaxed) > before
    })
    .await;
    assert!(answered, "the NACK was answered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resent = counters.retransmissions.load(Ordering::Relaxed) - before;
    assert!(
        (1..=17).contains(&resent),
        "the NACK for 17 packets was answered with {resent} retransmissions"
    );
    // All of them by the viewer's shard, from its own buffer; none by the publisher's.
    let by_shard = |counts: &[u64], shard: usize| counts.get(shard).copied().unwrap_or(0);
    let shard_after = board.shard_retransmissions();
    let own = shard_of(viewer);
    assert_eq!(
        by_shard(&shard_after, own) - by_shard(&shard_before, own),
        resent,
        "shard {own} (the viewer's) resent them: {shard_before:?} -> {shard_after:?}"
    );
    assert_eq!(
        by_shard(&shard_after, home) - by_shard(&shard_before, home),
        0,
        "the publisher's shard {home} resent nothing"
    );
    // What came again is what the publisher sent, byte for byte.
    let sent: HashSet<Bytes> = publisher
        .sent_payloads(TrackKind::Video)
        .into_iter()
        .collect();
    let foreign = viewer
        .received_payloads(TrackKind::Video)
        .iter()
        .filter(|p| !sent.contains(*p))
        .count();
    assert_eq!(foreign, 0, "{foreign} payloads not byte-identical");
    publisher.stop().await.ok();
    for viewer in &viewers {
        viewer.close().await.ok();
    }
    t.server.shutdown().await;
}

/// The status and body of a `POST /whep/...` of `offer` from `client`.
async fn post_offer(client: &reqwest::Client, url: &str, offer: &str) -> (u16, String) {
    let res = client
        .post(url)
        .header("content-type", "application/sdp")
        .body(offer.to_string())
        .send()
        .await
        .expect("POST answered");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// An HTTP client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse::<std::net::IpAddr>().unwrap()))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A complete offer of a real webrtc-rs viewer, never to be followed by ICE.
async fn never_connecting_offer() -> String {
    let prepared = WhepViewer::prepare(ViewerOptions::default())
        .await
        .expect("viewer offer");
    prepared.offer_sdp().expect("offer not sent").to_string()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_count_the_viewers_of_both_shards() {
    const CAP: usize = 4;
    let t = start_server_with(|c| {
        c.webrtc.shards = 2;
        c.relay.max_viewers_per_channel = CAP;
        c.relay.max_unconnected_per_channel = 3;
        c.relay.max_unconnected_per_client = 2;
    })
    .await;
    assert_eq!(t.server.relay.shards(), 2);
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let whep = format!("{}/whep/{channel}", t.base);
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        test_media(dir.path(), 4).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    wait_live(&t.base, &channel).await;
    let offer = never_connecting_offer().await;

    // Real viewers: exactly CAP get in, on both shards; the next gets the "full" 503.
    let mut viewers = Vec::new();
    for i in 0..CAP {
        let mut opts = ViewerOptions {
            stack: ViewerStack::Light,
            ..Default::default()
        };
        opts.connect.http_client = Some(client_from(&format!("127.0.4.{}", i + 1)));
        let viewer = WhepViewer::connect(&whep, None, opts)
            .await
            .unwrap_or_else(|e| panic!("viewer {i} gets in: {e}"));
        viewers.push(viewer);
        // Connected on the server too, so its connecting place is free for the next.
        let api = format!("{}/api/channels/{channel}", t.base);
        let counted = wait_until(Duration::from_secs(10), || {
            let api = api.clone();
            async move {
                let live: serde_json::Value =
                    reqwest::get(&api).await.unwrap().json().await.unwrap();
                live["viewers"] == i + 1
            }
        })
        .await;
        assert!(counted, "viewer {i} counted");
    }
    let shards: HashSet<usize> = viewers.iter().map(shard_of).collect();
    assert_eq!(shards.len(), 2, "the viewers are on both shards");
    let (status, body) = post_offer(&client_from("127.0.5.1"), &whep, &offer).await;
    eprintln!("viewer {} of a channel of {CAP}: {status} {body}", CAP + 1);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is full"), "{body}");
    let got_media = wait_until(Duration::from_secs(10), || {
        let counts: Vec<u64> = viewers
            .iter()
            .map(|v| v.stats().track(TrackKind::Video).counters.packets)
            .collect();
        async move { counts.iter().all(|n| *n > 0) }
    })
    .await;
    assert!(got_media, "every viewer receives video");
    // Leaving gives the places back (on both shards): a viewer gets in again.
    for viewer in &viewers {
        viewer.close().await.ok();
    }
    let again = async || {
        let mut opts = ViewerOptions {
            stack: ViewerStack::Light,
            ..Default::default()
        };
        opts.connect.http_client = Some(client_from("127.0.5.2"));
        WhepViewer::connect(&whep, None, opts).await
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let viewer = loop {
        match again().await {
            Ok(viewer) => break viewer,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("no place came back: {e}"),
        }
    };
    viewer.close().await.ok();

    // One address: its second connecting viewer is its cap, on whichever shards they are.
    let one = client_from("127.0.2.1");
    for _ in 0..2 {
        let (status, body) = post_offer(&one, &whep, &offer).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post_offer(&one, &whep, &offer).await;
    assert_eq!(
        status, 429,
        "the per-address cap holds across shards: {body}"
    );

    // Never-connecting offers from many addresses: the channel holds 3 connecting at
    // most, on both shards together, so each offer past the third takes the place of the
    // one that waited longest, wherever it is.
    let metrics = format!("{}/metrics", t.base);
    let given_up = || async {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        metric(&text, "feiyan_viewers_connecting_given_up_total")
    };
    let before = given_up().await;
    for i in 0..8 {
        let (status, body) =
            post_offer(&client_from(&format!("127.0.3.{}", i + 1)), &whep, &offer).await;
        assert_eq!(status, 201, "offer {i}: {body}");
    }
    // 2 + 8 offers, 3 places: 7 given up (counted per shard, 3 places on each, fewer).
    assert_eq!(
        given_up().await - before,
        7,
        "the channel's connecting cap is one for both shards"
    );

    // A real viewer still gets in (the longest-waiting offer gives its place up, on
    // whichever shard it is) and gets media.
    let mut opts = ViewerOptions {
        stack: ViewerStack::Light,
        ..Default::default()
    };
    opts.connect.http_client = Some(client_from("127.0.6.1"));
    let viewer = WhepViewer::connect(&whep, None, opts)
        .await
        .expect("a real viewer gets in past the never-connecting offers");
    let got_media = wait_until(Duration::from_secs(10), || {
        let n = viewer.stats().track(TrackKind::Video).counters.packets;
        async move { n > 0 }
    })
    .await;
    assert!(got_media, "the real viewer receives video");
    viewer.close().await.ok();
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

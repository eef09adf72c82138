//! The WHEP door (issue 23, item 2): offers that never connect cannot lock real viewers
//! out, `POST /whep` is rate-limited per client address, unconnected viewers are reaped and
//! their slots come back, and offers of an absurd shape are refused before any WebRTC work;
//! while 200 residents behind one NAT, arriving at once, all get in with the defaults.
//!
//! The attackers are plain HTTP clients bound to other loopback addresses (127.0.0.2, ...)
//! that post a real webrtc-rs viewer's offer and never do ICE; the real viewer is a
//! webrtc-rs peer from 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{TestServer, start_server_with, test_media, wait_live, wait_until};
use feiyan::client::{PublisherOptions, TrackKind, ViewerOptions, WhepViewer, WhipPublisher};

/// An HTTP client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse::<IpAddr>().unwrap()))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A complete offer of a real webrtc-rs viewer, never to be followed by ICE.
async fn viewer_offer() -> String {
    let prepared = WhepViewer::prepare(ViewerOptions::default())
        .await
        .expect("viewer offer");
    prepared.offer_sdp().expect("offer not sent").to_string()
}

/// Status, `Retry-After` and body of one `POST` of `offer`.
async fn post(client: &reqwest::Client, url: &str, offer: &str) -> (u16, Option<String>, String) {
    let res = client
        .post(url)
        .header("content-type", "application/sdp")
        .body(offer.to_string())
        .send()
        .await
        .expect("POST answered");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry_after, res.text().await.unwrap_or_default())
}

/// A server with a live channel fed by a looping WHIP publisher.
async fn live_server(
    adjust: impl FnOnce(&mut feiyan::config::Config),
) -> (TestServer, WhipPublisher, tempfile::TempDir) {
    let t = start_server_with(adjust).await;
    let dir = tempfile::tempdir().unwrap();
    let media = test_media(dir.path()).await;
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    wait_live(&t.base, &channel).await;
    (t, publisher, dir)
}

fn tally(statuses: &[u16]) -> BTreeMap<u16, usize> {
    let mut out = BTreeMap::new();
    for s in statuses {
        *out.entry(*s).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_that_never_connect_do_not_lock_out_a_real_viewer() {
    // The example: the cap lowered to 100, 200 offers from one address in ~0.1 s.
    let (t, publisher, _dir) = live_server(|c| c.relay.max_viewers_per_channel = 100).await;
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let offer = viewer_offer().await;
    let attacker = client_from("127.0.0.2");
    let started = Instant::now();
    let answers = futures::future::join_all((0..200).map(|_| post(&attacker, &whep, &offer))).await;
    let took = started.elapsed();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    eprintln!(
        "200 never-connecting offers from 127.0.0.2 in {took:?}: {:?}",
        tally(&statuses)
    );
    let viewer = WhepViewer::connect(&whep, None, ViewerOptions::default()).await;
    let viewer = viewer.expect("the real viewer from 127.0.0.1 gets 201 and connects");
    // The door let the address have a few sessions at most, never the whole channel.
    assert!(
        statuses.iter().filter(|s| **s == 201).count() <= 50,
        "one address took {:?}",
        tally(&statuses)
    );
    let got_media = wait_until(Duration::from_secs(5), || {
        let n = viewer.stats().track(TrackKind::Video).counters.packets;
        async move { n > 0 }
    })
    .await;
    assert!(got_media, "the real viewer receives video");
    viewer.close().await.ok();
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_posts_past_the_burst_get_429_with_retry_after() {
    // No publisher needed: every POST spends a token, whatever its answer.
    let t = start_server_with(|_| {}).await;
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let offer = viewer_offer().await;
    let flood = client_from("127.0.0.3");
    let mut answers = Vec::new();
    for _ in 0..70 {
        answers.push(post(&flood, &whep, &offer).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    eprintln!("70 POSTs from 127.0.0.3: {:?}", tally(&statuses));
    let first_429 = statuses.iter().position(|s| *s == 429);
    assert!(
        first_429.is_some_and(|i| i >= 50),
        "the burst of 50 passes, then 429: {statuses:?}"
    );
    let (_, retry_after, body) = &answers[first_429.unwrap()];
    let secs: u64 = retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("429 carries Retry-After in seconds");
    assert!((1..=10).contains(&secs), "Retry-After {secs}");
    assert!(body.contains("try again"), "an actionable message: {body}");
    // Another address is not affected.
    let (status, _, _) = post(&client_from("127.0.0.1"), &whep, &offer).await;
    assert_ne!(status, 429, "127.0.0.1 has its own bucket");
    t.server.shutdown().await;
}

/// `offer` with its video section repeated until it has `sections` m-sections, each
/// repeat under a new mid (and in the BUNDLE group), as a hostile client might send.
fn with_sections(offer: &str, sections: usize) -> String {
    let start = offer.find("m=video").expect("offer has video");
    let end = offer[start + 1..]
        .find("\r\nm=")
        .map_or(offer.len(), |i| start + 1 + i + 2);
    let video = &offer[start..end];
    let mid = video
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .expect("video mid")
        .to_string();
    let mut out = offer.to_string();
    let have = offer.matches("\r\nm=").count();
    let mut mids = Vec::new();
    for i in have..sections {
        let new_mid = format!("x{i}");
        let section = video.replace(&format!("a=mid:{mid}\r\n"), &format!("a=mid:{new_mid}\r\n"));
        if !out.ends_with("\r\n") {
            out.push_str("\r\n");
        }
        out.push_str(&section);
        mids.push(new_mid);
    }
    out.replacen(
        "a=group:BUNDLE ",
        &format!("a=group:BUNDLE {} ", mids.join(" ")),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_of_absurd_shape_get_400_before_any_webrtc_work() {
    let (t, publisher, _dir) = live_server(|_| {}).await;
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let offer = viewer_offer().await;
    let http = client_from("127.0.0.1");

    let six = with_sections(&offer, 6);
    assert_eq!(six.matches("m=").count(), 6);
    let (status, _, body) = post(&http, &whep, &six).await;
    eprintln!("6 m-sections: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("6 media sections") && body.contains("at most 4"),
        "{body}"
    );

    let long_line = offer.replacen(
        "a=mid:",
        &format!("a=x-junk:{}\r\na=mid:", "A".repeat(8000)),
        1,
    );
    let (status, _, body) = post(&http, &whep, &long_line).await;
    eprintln!("an 8000-byte line: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line") && body.contains("bytes"), "{body}");

    let many_lines = offer.replacen(
        "a=mid:",
        &format!("{}a=mid:", "a=x-junk:1\r\n".repeat(3000)),
        1,
    );
    let (status, _, body) = post(&http, &whep, &many_lines).await;
    eprintln!("3000 extra lines: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("lines"), "{body}");

    // The ordinary offer still gets in.
    let (status, _, body) = post(&http, &whep, &offer).await;
    assert_eq!(status, 201, "{body}");
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconnected_viewers_are_reaped_and_their_slots_come_back() {
    // Defaults: 20 unconnected viewers per address, reaped after 10 s.
    let (t, publisher, _dir) = live_server(|_| {}).await;
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let offer = viewer_offer().await;
    let client = client_from("127.0.0.4");
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(post(&client, &whep, &offer).await.0);
    }
    let filled = Instant::now();
    assert!(statuses.iter().all(|s| *s == 201), "{:?}", tally(&statuses));
    let (status, retry_after, body) = post(&client, &whep, &offer).await;
    eprintln!("21st unconnected offer from 127.0.0.4: {status} {retry_after:?} {body}");
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some(), "429 carries Retry-After");
    assert!(body.contains("connecting"), "an actionable message: {body}");
    // Another address on the same channel is not affected.
    let (status, _, body) = post(&client_from("127.0.0.5"), &whep, &offer).await;
    assert_eq!(status, 201, "{body}");

    // Still held before the timeout; back after it.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(filled.elapsed())).await;
    let (status, _, _) = post(&client, &whep, &offer).await;
    assert_eq!(status, 429, "slots are held until the timeout");
    tokio::time::sleep(Duration::from_millis(11_500).saturating_sub(filled.elapsed())).await;
    let mut back = Vec::new();
    for _ in 0..20 {
        back.push(post(&client, &whep, &offer).await.0);
    }
    eprintln!("after the timeout: {:?}", tally(&back));
    assert!(back.iter().all(|s| *s == 201), "{:?}", tally(&back));
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_residents_behind_one_nat_all_get_in_with_the_defaults() {
    // Every resident's POST comes from 127.0.0.6 (one NAT), at once; one refused waits
    // as the watch page does (Retry-After, 2 s, plus up to 2 s of jitter) and tries again.
    let (t, publisher, _dir) = live_server(|_| {}).await;
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let nat = client_from("127.0.0.6");
    let started = Instant::now();
    let residents = (0..200u64).map(|i| {
        let (whep, nat) = (whep.clone(), nat.clone());
        tokio::spawn(async move {
            let mut refused = 0;
            loop {
                let mut opts = ViewerOptions {
                    stack: feiyan::client::ViewerStack::Light,
                    record_arrival_log: false,
                    ..Default::default()
                };
                opts.connect.http_client = Some(nat.clone());
                match WhepViewer::connect(&whep, None, opts).await {
                    Ok(viewer) => return (viewer, refused),
                    Err(feiyan::client::ClientError::UnexpectedStatus { status, .. })
                        if status == 429 || status == 503 =>
                    {
                        refused += 1;
                        // Deterministic jitter per resident and attempt, as random as needed.
                        let jitter = (i * 7919 + refused * 104_729) % 2000;
                        tokio::time::sleep(Duration::from_millis(2000 + jitter)).await;
                    }
                    Err(err) => panic!("resident {i}: {err}"),
                }
            }
        })
    });
    let joined: Vec<_> = futures::future::join_all(residents)
        .await
        .into_iter()
        .map(|r| r.expect("resident task"))
        .collect();
    let retries: u64 = joined.iter().map(|(_, r)| r).sum();
    eprintln!(
        "200 residents from 127.0.0.6 all connected in {:?} ({retries} refusals retried)",
        started.elapsed()
    );
    // The server counts each once its side of the connection is up too.
    let api = format!("{}/api/channels/{}", t.base, t.station.channel);
    let all_counted = wait_until(Duration::from_secs(5), || {
        let api = api.clone();
        async move {
            let live: serde_json::Value = reqwest::get(&api).await.unwrap().json().await.unwrap();
            live["viewers"] == 200
        }
    })
    .await;
    let live: serde_json::Value = reqwest::get(&api).await.unwrap().json().await.unwrap();
    assert!(all_counted, "200 viewers counted: {live}");
    for (viewer, _) in &joined {
        viewer.close().await.ok();
    }
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

/// Offers that never connect from many addresses (each within its own limits) fill the
/// channel's connecting places; a real viewer who arrives then still gets in: the offer
/// that has waited longest gives its place up, as a real viewer connects within a second
/// and such an offer never will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_from_many_addresses_that_never_connect_do_not_lock_out_a_real_viewer() {
    let (t, publisher, _dir) = live_server(|c| {
        c.relay.max_unconnected_per_channel = 20;
        c.relay.max_unconnected_per_client = 2;
    })
    .await;
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let offer = viewer_offer().await;
    // 40 addresses, one offer each: twice the channel's connecting places.
    let attackers: Vec<reqwest::Client> = (1..=40)
        .map(|i| client_from(&format!("127.0.1.{i}")))
        .collect();
    let answers = futures::future::join_all(attackers.iter().map(|a| post(a, &whep, &offer))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    eprintln!(
        "40 never-connecting offers from 40 addresses: {:?}",
        tally(&statuses)
    );
    assert!(
        statuses.iter().all(|s| *s == 201),
        "each new offer takes the place of the longest-waiting one: {:?}",
        tally(&statuses)
    );
    let metrics = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let given_up: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("feiyan_viewers_connecting_given_up_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the metric is listed");
    assert!(given_up >= 20, "{given_up} connecting places given up");
    let viewer = WhepViewer::connect(&whep, None, ViewerOptions::default())
        .await
        .expect("the real viewer from 127.0.0.1 gets 201 and connects");
    let got_media = wait_until(Duration::from_secs(5), || {
        let n = viewer.stats().track(TrackKind::Video).counters.packets;
        async move { n > 0 }
    })
    .await;
    assert!(got_media, "the real viewer receives video");
    viewer.close().await.ok();
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

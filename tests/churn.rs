//! Churn: 1,000 WHEP viewer joins and leaves, in five rounds of 200, against one live
//! channel. After every round each viewer's row is closed in the catalog and the process
//! (server and test clients share it) is back to the file descriptors it started with;
//! on a PostgreSQL catalog it also keeps the resident memory it had after the first round:
//! what a viewer takes, its leaving gives back.
//!
//! On SQLite the catalog lives in the process, and its memory (a page cache of up to
//! 64 MiB per pooled connection, `Catalog::connect`) grows with the rows and WAL written:
//! about 4-5 kB per viewer session in this test, where the same rounds on PostgreSQL stay
//! flat. That test checks rows and descriptors and prints the resident set per round.
//!
//! Viewers are the benchmark's light clients (rtc's sans-IO stack, one task and one UDP
//! socket each); every one receives media before all of them leave with `DELETE`. Each
//! round's viewers share one HTTP client, dropped with them, so no pooled connection is
//! left open between rounds.

mod catalog_db;
mod common;

use std::time::{Duration, Instant};

use common::{start_server_with, wait_live, wait_until};
use feiyan::client::{
    ConnectOptions, PublisherOptions, SyntheticMedia, TrackKind, ViewerOptions, ViewerStack,
    WhepViewer, WhipPublisher, make_test_media_sized,
};

/// The server binary's allocator (`src/main.rs`), not glibc's, whose per-thread arenas
/// keep the holes a viewer's setup leaves resident whatever the server does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The server returns freed pages within a second; here at once, so that the resident set
/// measured is what the process holds, not what the allocator has yet to give back.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

const ROUNDS: usize = 5;
const VIEWERS_PER_ROUND: usize = 200;

/// Descriptors the process may hold after the last round beyond those it held before the
/// first, for what grows on first use and then stays: the catalog's pools open
/// connections as load needs them (SQLite: up to 4, the database and its WAL each;
/// PostgreSQL: up to 10 and 4 sockets). One descriptor per viewer kept would be 1,000.
const FD_SLACK: usize = 16;

/// How long after a round the resident set is read: the round's last work (the server
/// closing its HTTP connections, the catalog's batched writes, ended tasks) finishes and
/// frees its memory, which the allocator configured above returns at once.
const RSS_SETTLE: Duration = Duration::from_millis(1500);

/// Two seconds of small, low-rate synthetic H.264 and Opus (looped by the publisher): the
/// channel's HLS window (its last ten segments, about twenty seconds) fills during the
/// first rounds and is part of what they measure, so it should weigh little.
async fn low_rate_media(dir: &std::path::Path) -> SyntheticMedia {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) = make_test_media_sized(&dir, Duration::from_secs(2), 60, (320, 180))
            .expect("ffmpeg makes test media");
        SyntheticMedia::load(&h264, &ogg).expect("test media loads")
    })
    .await
    .unwrap()
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd readable")
        .count()
}

/// Resident memory of this process, kB.
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The descriptor count once it has stopped falling (closed connections are noticed by
/// their other end a moment later), waiting at most `limit`.
async fn settled_fds(limit: Duration) -> usize {
    let by = Instant::now() + limit;
    let mut last = open_fds();
    let mut steady_since = Instant::now();
    while Instant::now() < by && steady_since.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = open_fds();
        if now != last {
            last = now;
            steady_since = Instant::now();
        }
    }
    last
}

/// The descriptor count once it is back to `target` (the viewers' sockets and HTTP
/// connections of a round are closed by tasks that finish a moment after the round; on a
/// busy machine that can take seconds), or what it is after `limit`: a leak never comes
/// back, so the assertion on it still fails.
async fn fds_back_to(target: usize, limit: Duration) -> usize {
    let by = Instant::now() + limit;
    loop {
        let now = open_fds();
        if now <= target || Instant::now() >= by {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the rounds left: descriptors before the first round, and descriptors and
/// resident kB after each.
struct Churned {
    fds_start: usize,
    rounds: Vec<(usize, u64)>,
}

/// Runs the rounds against a server whose catalog is `database_url` (`None`: its own
/// SQLite file).
async fn churn(database_url: Option<String>) -> Churned {
    let t = start_server_with(|c| {
        if let Some(url) = database_url {
            c.catalog.database_url = url;
        }
        // Every viewer comes from 127.0.0.1: the per-address door would (rightly) refuse a
        // whole round joining at once.
        c.http.whep_posts_per_sec = 10_000.0;
        c.http.whep_post_burst = 1_000;
        c.relay.max_unconnected_per_client = VIEWERS_PER_ROUND;
        c.relay.max_unconnected_per_channel = VIEWERS_PER_ROUND;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        low_rate_media(dir.path()).await,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&t.base, &channel).await;
    let url = format!("{}/whep/{channel}", t.base);
    let started = Instant::now();
    let fds_start = settled_fds(Duration::from_secs(2)).await;
    let mut figures: Vec<(usize, u64)> = Vec::new();

    for round in 1..=ROUNDS {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let opts = ViewerOptions {
            connect: ConnectOptions {
                http_client: Some(http.clone()),
                connect_timeout: Duration::from_secs(20),
                ..Default::default()
            },
            record_arrival_log: false,
            stack: ViewerStack::Light,
            ..Default::default()
        };
        let joins: Vec<_> = (0..VIEWERS_PER_ROUND)
            .map(|_| {
                let (url, opts) = (url.clone(), opts.clone());
                tokio::spawn(async move { WhepViewer::connect(&url, None, opts).await })
            })
            .collect();
        let mut viewers = Vec::with_capacity(VIEWERS_PER_ROUND);
        for (i, join) in joins.into_iter().enumerate() {
            match join.await.unwrap() {
                Ok(viewer) => viewers.push(viewer),
                Err(e) => panic!("round {round}: viewer {i} did not connect: {e}"),
            }
        }
        let all_got_media = wait_until(Duration::from_secs(15), || {
            let done = viewers
                .iter()
                .all(|v| v.stats().track(TrackKind::Video).counters.packets > 0);
            async move { done }
        })
        .await;
        let starved = viewers
            .iter()
            .filter(|v| v.stats().track(TrackKind::Video).counters.packets == 0)
            .count();
        assert!(
            all_got_media,
            "round {round}: {starved} of {VIEWERS_PER_ROUND} viewers got no video"
        );
        let closes: Vec<_> = viewers.iter().map(|v| v.close()).collect();
        for (i, closed) in futures::future::join_all(closes)
            .await
            .into_iter()
            .enumerate()
        {
            closed.unwrap_or_else(|e| panic!("round {round}: viewer {i} DELETE: {e}"));
        }
        drop(viewers);
        drop(opts);
        drop(http);

        let expected = round * VIEWERS_PER_ROUND;
        let catalog = t.server.catalog.clone();
        let closed = wait_until(Duration::from_secs(10), || {
            let catalog = catalog.clone();
            async move {
                let rows = catalog.session_viewers(session).await.unwrap();
                rows.len() == expected && rows.iter().all(|(_, left, _)| left.is_some())
            }
        })
        .await;
        let rows = t.server.catalog.session_viewers(session).await.unwrap();
        let open = rows.iter().filter(|(_, left, _)| left.is_none()).count();
        assert!(
            closed,
            "round {round}: {} viewer rows ({expected} expected), {open} still open",
            rows.len()
        );
        let fds = fds_back_to(fds_start + FD_SLACK, Duration::from_secs(15)).await;
        tokio::time::sleep(RSS_SETTLE).await;
        figures.push((fds, rss_kb()));
        eprintln!(
            "round {round}: {fds} fds (start {fds_start}), RSS {} kB, {:.1} s since the first began",
            rss_kb(),
            started.elapsed().as_secs_f64()
        );
    }

    publisher.stop().await.ok();
    t.server.shutdown().await;
    Churned {
        fds_start,
        rounds: figures,
    }
}

impl Churned {
    fn assert_descriptors_back(&self) {
        let (fds_end, _) = self.rounds[ROUNDS - 1];
        assert!(
            fds_end <= self.fds_start + FD_SLACK,
            "{fds_end} descriptors open after {ROUNDS} rounds, {} before the first \
             (descriptors, RSS kB per round: {:?})",
            self.fds_start,
            self.rounds
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_come_and_go_without_leaking_on_postgres() {
    let db = catalog_db::postgres().await;
    let churned = churn(Some(db.url.clone())).await;
    churned.assert_descriptors_back();
    let (_, rss_first) = churned.rounds[0];
    let (_, rss_end) = churned.rounds[ROUNDS - 1];
    assert!(
        rss_end * 100 <= rss_first * 110,
        "RSS {rss_end} kB after round {ROUNDS}, {rss_first} kB after round 1 \
         (descriptors, RSS kB per round: {:?})",
        churned.rounds
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_come_and_go_on_sqlite() {
    churn(None).await.assert_descriptors_back();
}

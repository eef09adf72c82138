//! Cascade benchmark (not a test): what an edge adds, against running cluster nodes
//! (`scripts/bench-cascade.sh` starts them).
//!
//! `feiyan-cascade-bench ORIGIN EDGE CHANNEL KEY [ROUNDS] [SECONDS] [LADDER_CHANNEL LADDER_KEY QUALITY]`
//!
//! One WHIP publisher on ORIGIN (640x360 H.264 at 600 kbit/s + Opus, a keyframe a second),
//! then:
//! - **First frame on the edge's first viewer**, ROUNDS times (default 5) each: with no
//!   pull running (the edge opens it for this viewer), and again with the pull already
//!   running (the viewer joins right after the previous one left, within the pull's idle
//!   time). Time from the viewer's WHEP POST to its first complete keyframe.
//! - **Latency per hop**: one viewer on ORIGIN and one on EDGE for SECONDS (default 20);
//!   each picture's arrival at the edge's viewer minus its arrival at the origin's viewer
//!   (pictures matched by RTP timestamp, after the edge's constant timestamp offset).
//! - With a second channel whose origin encodes a ladder: **first frame of a lower
//!   rendition on the edge**, ROUNDS times, while a source viewer keeps the edge's pull
//!   up: with no pull of that rendition running (the edge opens it for this viewer), and
//!   again with it running.
//!
//! Prints the figures and a JSON line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use feiyan::client::{
    PublisherOptions, SyntheticMedia, ViewerOptions, ViewerStack, WhepViewer, WhipPublisher,
    make_test_media,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: feiyan-cascade-bench ORIGIN EDGE CHANNEL KEY [ROUNDS] [SECONDS]");
    }
    let (origin, edge, channel, key) = (&args[0], &args[1], &args[2], &args[3]);
    let rounds: usize = args.get(4).map_or(Ok(5), |a| a.parse())?;
    let seconds: u64 = args.get(5).map_or(Ok(20), |a| a.parse())?;

    let publisher = publish(origin, channel, key, "cascade-bench").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let edge_url = format!("{edge}/whep/{channel}");
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 0..rounds {
        wait_pull_stopped(edge).await?;
        cold.push(first_frame(&edge_url).await?);
        warm.push(first_frame(&edge_url).await?);
        eprintln!(
            "round {round}: pull starts {:.1} ms, pull running {:.1} ms",
            ms(*cold.last().unwrap()),
            ms(*warm.last().unwrap())
        );
    }

    // Latency per hop: the same pictures at an origin viewer and an edge viewer.
    let opts = ViewerOptions {
        stack: ViewerStack::Light,
        record_frame_log: true,
        ..Default::default()
    };
    let at_origin =
        WhepViewer::connect(&format!("{origin}/whep/{channel}"), None, opts.clone()).await?;
    let at_edge = WhepViewer::connect(&edge_url, None, opts).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let hops = hop_delays(&at_origin.video_frame_log(), &at_edge.video_frame_log());
    at_origin.close().await?;
    at_edge.close().await?;
    publisher.stop().await?;
    if hops.is_empty() {
        bail!("no picture matched between the origin's and the edge's viewer");
    }

    let ladder = match (args.get(6), args.get(7), args.get(8)) {
        (Some(channel), Some(key), Some(quality)) => {
            Some(rendition_first_frames(origin, edge, channel, key, quality, rounds).await?)
        }
        _ => None,
    };

    let (cold_m, warm_m) = (median(&mut cold), median(&mut warm));
    let (hop_m, hop_95) = (
        median(&mut hops.clone()),
        percentile(&mut hops.clone(), 0.95),
    );
    println!(
        "first frame on the edge's first viewer: pull starts median {:.1} ms (max {:.1}), pull running median {:.1} ms (max {:.1}) over {rounds} rounds",
        ms(cold_m),
        ms(*cold.iter().max().unwrap()),
        ms(warm_m),
        ms(*warm.iter().max().unwrap()),
    );
    println!(
        "latency added by the hop: median {:.2} ms, p95 {:.2} ms over {} pictures",
        hop_m * 1e3,
        hop_95 * 1e3,
        hops.len()
    );
    let mut report = serde_json::json!({
        "first_frame_pull_starts_ms": cold.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "first_frame_pull_running_ms": warm.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "hop_median_ms": hop_m * 1e3,
        "hop_p95_ms": hop_95 * 1e3,
        "pictures": hops.len(),
    });
    if let Some((quality, mut cold, mut warm)) = ladder {
        println!(
            "first frame of {quality} on the edge (its source pull up): rendition pull starts median {:.1} ms (max {:.1}), running median {:.1} ms (max {:.1}) over {rounds} rounds",
            ms(median(&mut cold)),
            ms(*cold.iter().max().unwrap()),
            ms(median(&mut warm)),
            ms(*warm.iter().max().unwrap()),
        );
        report["first_frame_rendition_pull_starts_ms"] =
            cold.iter().map(|d| ms(*d)).collect::<Vec<_>>().into();
        report["first_frame_rendition_pull_running_ms"] =
            warm.iter().map(|d| ms(*d)).collect::<Vec<_>>().into();
    }
    println!("{report}");
    Ok(())
}

/// First frames of `quality` on the edge of `channel` (live with a ladder on `origin`),
/// `rounds` times with its rendition pull starting and running, while one source viewer
/// keeps the edge's pull of the channel up.
async fn rendition_first_frames(
    origin: &str,
    edge: &str,
    channel: &str,
    key: &str,
    quality: &str,
    rounds: usize,
) -> anyhow::Result<(String, Vec<Duration>, Vec<Duration>)> {
    let publisher = publish(origin, channel, key, "cascade-bench-ladder").await?;
    // The origin's ladder encoder attaches a moment after the session goes live.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let source_url = format!("{edge}/whep/{channel}");
    let keeper = WhepViewer::connect(
        &source_url,
        None,
        ViewerOptions {
            stack: ViewerStack::Light,
            ..Default::default()
        },
    )
    .await
    .context("source viewer on the edge")?;
    let url = format!("{source_url}?quality={quality}");
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        wait_pulls_served(origin, 1).await?;
        cold.push(first_frame(&url).await?);
        warm.push(first_frame(&url).await?);
        eprintln!(
            "round {round}: {quality} pull starts {:.1} ms, running {:.1} ms",
            ms(*cold.last().unwrap()),
            ms(*warm.last().unwrap())
        );
    }
    keeper.close().await?;
    publisher.stop().await?;
    Ok((quality.to_string(), cold, warm))
}

/// Waits until `origin` serves `n` signed pulls (the edge closed the ones nobody uses).
async fn wait_pulls_served(origin: &str, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("{origin}/metrics"))
            .await?
            .text()
            .await?;
        let served = text
            .lines()
            .find(|l| l.starts_with("feiyan_cluster_pulls_served{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok());
        match served {
            Some(now) if now == n => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("the origin did not come to {n} pulls within 30 s ({served:?})")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A WHIP publisher of `channel` on `origin`: 640x360 H.264 at 600 kbit/s + Opus.
async fn publish(
    origin: &str,
    channel: &str,
    key: &str,
    title: &str,
) -> anyhow::Result<WhipPublisher> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let media = tokio::task::spawn_blocking(move || {
        let (h264, ogg) = make_test_media(&path, Duration::from_secs(10), 600)?;
        SyntheticMedia::load(&h264, &ogg)
    })
    .await??;
    WhipPublisher::connect(
        &format!("{origin}/whip/{channel}?title={title}"),
        Some(key),
        media,
        PublisherOptions::default(),
    )
    .await
    .with_context(|| format!("publisher of {channel} on the origin"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median<T: Copy + PartialOrd>(v: &mut [T]) -> T {
    percentile(v, 0.5)
}

fn percentile<T: Copy + PartialOrd>(v: &mut [T], p: f64) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Waits until the edge runs no pull (its viewers gone for the pull's idle time).
async fn wait_pull_stopped(edge: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("{edge}/metrics"))
            .await?
            .text()
            .await?;
        let edges = text
            .lines()
            .find(|l| l.starts_with("feiyan_cluster_edges{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok());
        match edges {
            Some(0) => return Ok(()),
            None => bail!("{edge}/metrics has no feiyan_cluster_edges: not a cluster member"),
            _ if Instant::now() > deadline => bail!("the edge's pull did not stop within 30 s"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One viewer's time from its POST to its first complete keyframe; it leaves then.
async fn first_frame(url: &str) -> anyhow::Result<Duration> {
    let viewer = WhepViewer::connect(
        url,
        None,
        ViewerOptions {
            stack: ViewerStack::Light,
            ..Default::default()
        },
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        if let Some(t) = viewer.stats().time_to_first_keyframe() {
            break t;
        }
        if Instant::now() > deadline {
            bail!("no keyframe within 20 s on {url}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    viewer.close().await?;
    Ok(got)
}

/// Seconds each picture arrived later at the edge's viewer than at the origin's. The edge
/// sends with its own RTP timestamp offset: the offset most pairs of pictures arriving
/// within 200 ms of each other share is taken as it.
fn hop_delays(origin: &[(u32, Instant)], edge: &[(u32, Instant)]) -> Vec<f64> {
    let mut offsets: HashMap<u32, usize> = HashMap::new();
    for (ts_o, at_o) in origin {
        for (ts_e, at_e) in edge {
            let apart = if at_e > at_o {
                *at_e - *at_o
            } else {
                *at_o - *at_e
            };
            if apart < Duration::from_millis(200) {
                *offsets.entry(ts_e.wrapping_sub(*ts_o)).or_default() += 1;
            }
        }
    }
    let Some((offset, _)) = offsets.into_iter().max_by_key(|(_, n)| *n) else {
        return Vec::new();
    };
    let at_edge: HashMap<u32, Instant> = edge.iter().copied().collect();
    origin
        .iter()
        .filter_map(|(ts, at_o)| {
            let at_e = at_edge.get(&ts.wrapping_add(offset))?;
            Some(
                at_e.duration_since(*at_o).as_secs_f64() - at_o.duration_since(*at_e).as_secs_f64(),
            )
        })
        .collect()
}

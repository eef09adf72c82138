//! `feiyan-bench`: fan-out benchmark for any standards-following WHIP/WHEP server.
//!
//! Publishes synthetic H.264 + Opus (made with the ffmpeg CLI) over WHIP, opens N WHEP
//! viewers, runs for a while and reports delivery, loss, time to first keyframe and, when
//! given the server's PID, its CPU and memory cost per viewer.
//!
//! Timeline (all times relative to `t0`, the first WHEP POST):
//!
//! ```text
//! publish ── warm-up ── t0: viewers POST, spread over --join-window ── settle ──
//!   [ steady window: server CPU/RSS measured ] ── t0 + --duration: publisher stops ── drain
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod process;
mod publisher;
mod report;
mod timeline;

use clap::Parser;
use feiyan::client::{
    ClientError, ConnectOptions, KindCounters, PublisherOptions, SyntheticMedia, TrackKind,
    TrackStats, ViewerOptions, ViewerStack, ViewerStats, WhepViewer, WhipPublisher,
    make_test_media,
};

use process::{ProcSample, clock_ticks_per_second, sample_proc, sample_threads};
use publisher::PublisherThread;
use report::{Report, sorted_ms};
use timeline::write_timeline;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "feiyan-bench",
    about = "Fan-out benchmark: one WHIP publisher, N WHEP viewers, against any WHIP/WHEP server"
)]
struct Args {
    /// WHIP endpoint URL to publish to.
    #[arg(long)]
    whip: String,
    /// WHEP endpoint URL the viewers play from; given more than once, viewers take them
    /// in turn (e.g. the edges of a cluster).
    #[arg(long, required = true)]
    whep: Vec<String>,
    /// Bearer token sent with every request (WHIP, WHEP and DELETE).
    #[arg(long)]
    token: Option<String>,
    /// Number of WHEP viewers.
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Seconds from the first WHEP POST until the publisher stops.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Spread the WHEP POSTs evenly over this many seconds (0 = all at once).
    #[arg(long, default_value_t = 0.0)]
    join_window: f64,
    /// Video bitrate of the generated H.264 test file, in kbit/s (Opus adds 64 kbit/s).
    #[arg(long, default_value_t = 600)]
    bitrate_kbps: u32,
    /// PID of the server process, to report its CPU (from /proc/PID/stat) and RSS
    /// (/proc/PID/status) per viewer.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds of publishing before the first viewer joins (also the baseline CPU window).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds after a viewer's first packet before its delivery accounting starts (a
    /// keyframe burst at join is not counted as extra delivery), and after the last join
    /// before the CPU window starts.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Local IP address the publisher's and viewers' WebRTC sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Length of the generated media loop in seconds.
    #[arg(long, default_value_t = 10)]
    media_seconds: u64,
    /// WebRTC stack of the viewers: `light` (rtc's sans-IO peer connection, one task per
    /// viewer: little client CPU, so hundreds of viewers on the server's machine measure
    /// the server) or `webrtc` (webrtc-rs's async peer connection).
    #[arg(long, value_enum, default_value_t = Client::Light)]
    client: Client,
    /// Per-viewer timeout for gathering + POST + ICE/DTLS, in seconds.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Write each viewer's join milestones to this CSV file, in ms after the first POST:
    /// `viewer,posted,answered,connected,first_rtp,first_keyframe` (empty when not reached).
    #[arg(long)]
    timeline: Option<PathBuf>,
}

/// jemalloc, as the server uses: hundreds of viewers set up at once (SDP, DTLS, HTTP)
/// spend a tenth of the client's join time in glibc's allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--client` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Client {
    /// [`ViewerStack::Light`].
    Light,
    /// [`ViewerStack::WebRtc`].
    Webrtc,
}

fn main() {
    let args = Args::parse();
    // Client-side logs on request (e.g. RUST_LOG=rtc_ice=debug to see the ICE timeline).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if let Err(e) = run(args) {
        eprintln!("feiyan-bench: {e}");
        std::process::exit(1);
    }
}

/// Errors that end the benchmark.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// The WHIP/WHEP client failed (publisher or media generation).
    #[error("{0}")]
    Client(#[from] ClientError),
    /// Local setup failed (arguments, threads, temp files).
    #[error("{0}")]
    Setup(String),
}

fn secs(s: f64, what: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(s).map_err(|_| BenchError::Setup(format!("invalid {what}: {s}")))
}

fn run(args: Args) -> Result<(), BenchError> {
    let duration = secs(args.duration, "--duration")?;
    let join_window = secs(args.join_window, "--join-window")?;
    let warmup = secs(args.warmup, "--warmup")?;
    let settle = secs(args.settle, "--settle")?;
    let connect_timeout = secs(args.connect_timeout, "--connect-timeout")?;
    if args.viewers == 0 {
        return Err(BenchError::Setup("--viewers must be at least 1".to_owned()));
    }

    let dir = std::env::temp_dir().join(format!("feiyan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::Setup(format!("creating {}: {e}", dir.display())))?;
    let _cleanup = RemoveDirOnDrop(dir.clone());
    eprintln!(
        "making {} s of test media at {} kbit/s with ffmpeg...",
        args.media_seconds, args.bitrate_kbps
    );
    let (h264, ogg) = make_test_media(
        &dir,
        Duration::from_secs(args.media_seconds),
        args.bitrate_kbps,
    )?;
    let media = SyntheticMedia::load(&h264, &ogg)?;

    let connect = ConnectOptions {
        udp_addrs: vec![SocketAddr::new(args.bind, 0)],
        connect_timeout,
        ..Default::default()
    };

    // The publisher gets its own thread and single-threaded runtime so that its pacing is
    // not disturbed by hundreds of viewer tasks competing for the main runtime.
    let publisher = PublisherThread::start(
        args.whip.clone(),
        args.token.clone(),
        media,
        PublisherOptions {
            connect: connect.clone(),
            record_send_log: true,
            ..Default::default()
        },
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("starting tokio: {e}")))?;
    let result = runtime.block_on(bench(
        &args,
        publisher.publisher.clone(),
        Timing {
            duration,
            join_window,
            warmup,
            settle,
        },
        connect,
    ));
    publisher.stop();
    result
}

/// Added to each viewer's accounting start. Media is sent on a 20 ms (audio) / 33.3 ms
/// (video) grid anchored where the viewer's first packet was sent, so `first packet + settle`
/// lands exactly on a send instant and a packet in flight there would be counted as delivered
/// but not as expected. 10 ms puts the boundary between send instants of both grids.
const GRID_OFFSET: Duration = Duration::from_millis(10);

/// The media kinds, in the order of the per-kind counters.
const KINDS: [TrackKind; 2] = [TrackKind::Video, TrackKind::Audio];

/// Durations parsed from the arguments.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// `--duration`: first POST until the publisher stops.
    duration: Duration,
    /// `--join-window`: spread of the viewer POSTs.
    join_window: Duration,
    /// `--warmup`: publisher-only time before the first POST.
    warmup: Duration,
    /// `--settle`: delay before accounting/measurement windows start.
    settle: Duration,
}

/// Deletes the temporary media directory when the benchmark ends.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bench(
    args: &Args,
    publisher: Arc<WhipPublisher>,
    timing: Timing,
    connect: ConnectOptions,
) -> Result<(), BenchError> {
    let ticks = clock_ticks_per_second();
    let pid = args.server_pid.map(|p| p.to_string());
    let server = |label: &str| -> Option<ProcSample> {
        let pid = pid.as_deref()?;
        let s = sample_proc(pid, ticks);
        if s.is_none() {
            eprintln!("warning: cannot read /proc/{pid} ({label})");
        }
        s
    };
    let own = || sample_proc("self", ticks);

    // Warm-up: publisher alone; gives the server's (and this process's) baseline CPU.
    let (warm_start, own_warm_start) = (server("warm-up start"), own());
    tokio::time::sleep(timing.warmup).await;
    let (before_viewers, own_before_viewers) = (server("before viewers"), own());
    let pub_stats = publisher.stats();
    if !pub_stats.sending {
        return Err(BenchError::Setup(format!(
            "publisher stopped during warm-up: {}",
            pub_stats.send_error.unwrap_or_default()
        )));
    }

    // Viewers join.
    let http = reqwest::Client::builder()
        .timeout(connect.http_timeout)
        .build()
        .map_err(|e| BenchError::Setup(format!("HTTP client: {e}")))?;
    let viewer_opts = ViewerOptions {
        connect: ConnectOptions {
            http_client: Some(http),
            ..connect
        },
        record_arrival_log: true,
        stack: match args.client {
            Client::Light => ViewerStack::Light,
            Client::Webrtc => ViewerStack::WebRtc,
        },
        ..Default::default()
    };
    let n = args.viewers;
    // Every viewer's peer connection and offer first: in a real audience each browser
    // makes its offer on its own device, not on the server's machine during the storm.
    eprintln!("preparing {n} offers ...");
    let mut prepared = Vec::with_capacity(n);
    for _ in 0..n {
        let opts = viewer_opts.clone();
        prepared.push(tokio::spawn(WhepViewer::prepare(opts)));
    }
    // A viewer that cannot even make its offer (a UDP bind, descriptors) is a failed
    // viewer, as one that fails later is; the others go on.
    let mut offers = Vec::with_capacity(n);
    for p in prepared {
        offers.push(match p.await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(format!("preparing the offer: {e}")),
            Err(e) => Err(format!("viewer task failed: {e}")),
        });
    }
    eprintln!(
        "starting {n} viewers over {:.1} s ...",
        timing.join_window.as_secs_f64()
    );
    let t0 = tokio::time::Instant::now();
    let t0_std = Instant::now();
    let (server_first_post, own_start) = (server("first POST"), own());
    let mut joins = Vec::with_capacity(n);
    for (i, offer) in offers.into_iter().enumerate() {
        let offset = if n > 1 {
            timing.join_window.mul_f64(i as f64 / (n - 1) as f64)
        } else {
            Duration::ZERO
        };
        let url = args.whep[i % args.whep.len()].clone();
        let token = args.token.clone();
        joins.push(tokio::spawn(async move {
            let offer = offer.map_err(ClientError::Negotiation)?;
            tokio::time::sleep_until(t0 + offset).await;
            offer.connect(&url, token.as_deref()).await
        }));
    }
    // Each viewer with its join index (its place in the POST order).
    let mut viewers = Vec::with_capacity(n);
    let mut viewer_index = Vec::with_capacity(n);
    let mut failures: Vec<(usize, String)> = Vec::new();
    for (i, j) in joins.into_iter().enumerate() {
        match j.await {
            Ok(Ok(v)) => {
                viewers.push(v);
                viewer_index.push(i);
            }
            Ok(Err(e)) => failures.push((i, e.to_string())),
            Err(e) => failures.push((i, format!("viewer task failed: {e}"))),
        }
    }
    let joined_at = Instant::now();
    let (server_joined, own_joined) = (server("all joined"), own());
    eprintln!(
        "{} viewers connected, {} failed ({:.1} s after the first POST)",
        viewers.len(),
        failures.len(),
        joined_at.duration_since(t0_std).as_secs_f64()
    );

    // Steady window: after everyone joined and settled, until the end of the run.
    let end = t0 + timing.duration;
    let steady_start =
        (t0 + timing.join_window).max(tokio::time::Instant::from_std(joined_at)) + timing.settle;
    let mut steady: Option<(ProcSample, ProcSample)> = None;
    let mut own_steady: Option<(ProcSample, ProcSample)> = None;
    let steady_window_ok = steady_start + Duration::from_secs(1) <= end;
    if steady_window_ok {
        tokio::time::sleep_until(steady_start).await;
        let shards = || {
            pid.as_deref()
                .map(|p| sample_threads(p, "fy-shard-", ticks))
                .unwrap_or_default()
        };
        let (a, own_a, shards_a) = (server("steady start"), own(), shards());
        tokio::time::sleep_until(end).await;
        let (b, own_b, shards_b) = (server("steady end"), own(), shards());
        // The relay's shard threads (feiyan), each one's share of the steady window.
        if let (Some(a), Some(b)) = (a, b) {
            let secs = b.at.duration_since(a.at).as_secs_f64().max(0.001);
            for ((name, before), (_, after)) in shards_a.iter().zip(&shards_b) {
                println!(
                    "server thread {name}: {:.1} core-ms/s over the steady window",
                    (after - before) / secs
                );
            }
        }
        steady = a.zip(b);
        own_steady = own_a.zip(own_b);
    } else {
        tokio::time::sleep_until(end).await;
    }
    let steady_start_std = steady_start.into_std();

    // Stop the media, let in-flight packets arrive, then read every viewer.
    publisher.stop_sending();
    let t_stop = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let own_end = own();
    let pub_stats = publisher.stats();
    let stats: Vec<ViewerStats> = viewers.iter().map(|v| v.stats()).collect();

    // Delivery accounting per viewer: from its first packet (+ settle) to the stop.
    let mut expected = [KindCounters::default(); 2];
    let mut delivered = [KindCounters::default(); 2];
    let mut silent = 0usize;
    for (v, s) in viewers.iter().zip(&stats) {
        let from = s.first_rtp_at.unwrap_or(s.answered_at) + timing.settle + GRID_OFFSET;
        if s.first_rtp_at.is_none() {
            silent += 1;
        }
        if from >= t_stop {
            continue;
        }
        for (k, kind) in KINDS.iter().enumerate() {
            let e = publisher.sent_between(*kind, from, Some(t_stop));
            let d = v.received_between(*kind, from, None);
            expected[k].packets += e.packets;
            expected[k].bytes += e.bytes;
            delivered[k].packets += d.packets;
            delivered[k].bytes += d.bytes;
        }
    }

    // Liveness at +15 s: received anything in the second before t0 + 15 s.
    let at15 = t0_std + Duration::from_secs(15);
    let receiving_at_15 = (timing.duration >= Duration::from_secs(15)).then(|| {
        viewers
            .iter()
            .filter(|v| {
                KINDS.iter().any(|k| {
                    v.received_between(*k, at15 - Duration::from_secs(1), Some(at15))
                        .packets
                        > 0
                })
            })
            .count()
    });

    if let Some(path) = &args.timeline {
        let joined: Vec<(usize, ViewerStats)> = viewer_index
            .iter()
            .copied()
            .zip(stats.iter().cloned())
            .collect();
        write_timeline(path, t0_std, &joined, &failures)?;
    }

    // Timings.
    let first_frame_ms = sorted_ms(stats.iter().filter_map(|s| s.time_to_first_keyframe()));
    let first_rtp_ms = sorted_ms(stats.iter().filter_map(|s| s.time_to_first_rtp()));
    // Where the first-frame time goes: HTTP answer, then ICE + DTLS, then media.
    let answer_ms = sorted_ms(stats.iter().map(|s| s.answered_at - s.posted_at));
    let connected_ms = sorted_ms(
        stats
            .iter()
            .filter_map(|s| s.connected_at.map(|c| c - s.posted_at)),
    );
    let starts_on_keyframe = stats
        .iter()
        .filter(|s| s.first_video_frame_is_keyframe)
        .count();

    // RTP continuity, each count summed over both tracks of every viewer.
    let sum = |count: fn(&TrackStats) -> u64| -> u64 {
        stats
            .iter()
            .map(|s| count(&s.video) + count(&s.audio))
            .sum()
    };
    let seq_missing = sum(|t| t.seq_missing);
    let seq_late = sum(|t| t.seq_late);
    let seq_dup = sum(|t| t.seq_duplicates);
    let ssrc_changes = sum(|t| t.ssrc_changes);
    let continuous = stats
        .iter()
        .filter(|s| s.video.is_continuous() && s.audio.is_continuous())
        .count();

    // Server cost over the steady window.
    let steady_secs = steady.map(|(a, b)| b.at.duration_since(a.at).as_secs_f64());
    let receiving_in_window = viewers
        .iter()
        .filter(|v| {
            KINDS.iter().any(|k| {
                v.received_between(*k, steady_start_std, Some(t_stop))
                    .packets
                    > 0
            })
        })
        .count();
    let cpu_total_ms = steady.map(|(a, b)| b.cpu_ms - a.cpu_ms);
    let cpu_per_viewer_s = match (cpu_total_ms, steady_secs) {
        (Some(ms), Some(s)) if s > 0.0 && receiving_in_window > 0 => {
            Some(ms / (receiving_in_window as f64 * s))
        }
        _ => None,
    };
    let cpu_rate = |a: &ProcSample, b: &ProcSample| {
        let s = b.at.duration_since(a.at).as_secs_f64();
        (s > 0.0).then(|| (b.cpu_ms - a.cpu_ms) / s)
    };
    let baseline_rate = warm_start
        .zip(before_viewers)
        .and_then(|(a, b)| cpu_rate(&a, &b));
    let steady_rate = steady.and_then(|(a, b)| cpu_rate(&a, &b));
    let net_cpu_per_viewer_s = match (steady_rate, baseline_rate) {
        (Some(s), Some(b)) if receiving_in_window > 0 => Some((s - b) / receiving_in_window as f64),
        _ => None,
    };
    let rss_before = before_viewers.and_then(|s| s.rss_kib);
    let rss_steady = steady.and_then(|(_, b)| b.rss_kib);
    let rss_per_viewer_kib = match (rss_before, rss_steady) {
        (Some(a), Some(b)) if !viewers.is_empty() => {
            Some((b as f64 - a as f64) / viewers.len() as f64)
        }
        _ => None,
    };
    let own_cpu_per_viewer_s = own_steady
        .and_then(|(a, b)| cpu_rate(&a, &b))
        .filter(|_| receiving_in_window > 0)
        .map(|r| r / receiving_in_window as f64);
    let own_cpu_total_ms = own_start.zip(own_end).map(|(a, b)| b.cpu_ms - a.cpu_ms);
    // The joins' CPU: from the first POST until every connect returned, net of what the
    // publisher alone costs (the warm-up rate). It includes media to viewers already
    // connected; in a storm (all POSTs at once) that is a small part.
    let own_baseline_rate = own_warm_start
        .zip(own_before_viewers)
        .and_then(|(a, b)| cpu_rate(&a, &b));
    // Only for a storm (POSTs spread over a window are mostly media time) long enough for
    // /proc's 10 ms ticks to resolve.
    let join_window_ms = joined_at.duration_since(t0_std).as_secs_f64() * 1000.0;
    let storm = timing.join_window.is_zero() && join_window_ms >= 100.0;
    let per_join = |a: Option<ProcSample>, b: Option<ProcSample>, base: Option<f64>| {
        let (a, b) = a.zip(b).filter(|_| storm)?;
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let cpu = b.cpu_ms - a.cpu_ms - base.unwrap_or(0.0) * secs;
        (!viewers.is_empty()).then(|| cpu.max(0.0) / viewers.len() as f64)
    };
    let server_join_ms = per_join(server_first_post, server_joined, baseline_rate);
    let own_join_ms = per_join(own_start, own_joined, own_baseline_rate);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    // Close everything (DELETE), concurrently.
    let viewers: Vec<Arc<WhepViewer>> = viewers.into_iter().map(Arc::new).collect();
    let closes: Vec<_> = viewers
        .iter()
        .map(|v| {
            let v = v.clone();
            tokio::spawn(async move { v.close().await })
        })
        .collect();
    let mut delete_failures = 0usize;
    for c in closes {
        if !matches!(c.await, Ok(Ok(()))) {
            delete_failures += 1;
        }
    }

    Report {
        requested: n,
        connected: viewers.len(),
        failures,
        silent,
        receiving_at_15,
        pub_stats,
        expected,
        delivered,
        viewer_count: stats.len(),
        continuous,
        seq_missing,
        seq_late,
        seq_dup,
        ssrc_changes,
        first_frame_ms,
        first_rtp_ms,
        answer_ms,
        connected_ms,
        starts_on_keyframe,
        steady_window_ok,
        steady_secs,
        receiving_in_window,
        cpu_total_ms,
        cpu_per_viewer_s,
        baseline_rate,
        net_cpu_per_viewer_s,
        rss_before,
        rss_steady,
        rss_per_viewer_kib,
        own_cpu_per_viewer_s,
        own_cpu_total_ms,
        join_window_ms,
        server_join_ms,
        own_join_ms,
        cores,
        delete_failures,
    }
    .print(args, &timing);
    Ok(())
}

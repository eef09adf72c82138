//! `feiyan-chat-bench`: live interaction under load. Opens N chat-only watchers (Server-Sent
//! Events over plain TCP, `/api/interaction/{channel}/events`) on a live channel, then
//! posts messages and likes at fixed rates from many devices (each within the per-device
//! limits) and reports the server's CPU, its memory per watcher and the delivery latency
//! from post to watcher (a sample of watchers parses every batch; the others only read).
//!
//! The channel must be live (e.g. `feiyan publish`); the server's PID gives CPU and memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(dead_code)]
#[path = "feiyan-bench/process.rs"]
mod process;
use process::{clock_ticks_per_second, sample_proc};

#[derive(Debug, Parser)]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    base: String,
    /// A live channel.
    #[arg(long)]
    channel: String,
    /// Chat-only watchers.
    #[arg(long, default_value_t = 5000)]
    watchers: usize,
    /// Watchers that parse every batch for the latency figures (the rest only read).
    #[arg(long, default_value_t = 200)]
    sampled: usize,
    /// Messages per second (from devices posting every 2.5 s each).
    #[arg(long, default_value_t = 50)]
    messages_per_sec: u32,
    /// Likes per second (requests of 5 taps, one per device every 1.1 s).
    #[arg(long, default_value_t = 500)]
    likes_per_sec: u32,
    /// Seconds of posting.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// The server's PID, for its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// What the sampled watchers saw: (message number, latency ms).
type Latencies = Arc<std::sync::Mutex<Vec<(u64, f64)>>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let addr = args
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let http = reqwest::Client::new();
    let info: serde_json::Value = http
        .get(format!("{}/api/channels/{}", args.base, args.channel))
        .send()
        .await?
        .json()
        .await?;
    if info["live"] != true {
        return Err(format!("channel {} is not live: {info}", args.channel).into());
    }
    let ticks = clock_ticks_per_second();
    let pid = args.server_pid.map(|p| p.to_string());
    let sample = || pid.as_deref().and_then(|p| sample_proc(p, ticks));
    let tag = format!("{:x}", std::process::id());
    let t0 = Instant::now();

    // Watchers, ramped up 100 at a time.
    let before = sample();
    let latencies: Latencies = Arc::default();
    let bytes = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    let path = format!("/api/interaction/{}/events", args.channel);
    for i in 0..args.watchers {
        let (addr, path, tag) = (addr.clone(), path.clone(), tag.clone());
        let (latencies, bytes, ended) = (latencies.clone(), bytes.clone(), ended.clone());
        let sampled = i < args.sampled;
        tokio::spawn(async move {
            if let Err(e) = watch(
                &addr,
                &path,
                sampled.then_some((&tag, latencies, t0)),
                &bytes,
            )
            .await
                && ended.fetch_add(1, Ordering::Relaxed) < 3
            {
                eprintln!("watcher ended: {e}");
            }
        });
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connected = sample();
    eprintln!(
        "{} watchers connecting/connected, {} ended",
        args.watchers,
        ended.load(Ordering::Relaxed)
    );

    // Devices: each gets its own fy_dev cookie from the watch page.
    let posters = (args.messages_per_sec as f64 * 2.5).ceil() as usize;
    // 1.1 s apart: just over the default like_interval_ms, so none is refused for timing.
    let likers = ((args.likes_per_sec as f64 * 1.1 / 5.0).ceil() as usize).max(1);
    let mut cookies = Vec::new();
    for _ in 0..posters + likers {
        let r = http
            .get(format!("{}/watch/{}", args.base, args.channel))
            .send()
            .await?;
        let c = r.headers()["set-cookie"]
            .to_str()?
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        cookies.push(c);
    }
    let seq = Arc::new(AtomicU64::new(0));
    // Refused message and like requests.
    let refused = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let start = sample();
    let stop = Instant::now() + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for (i, cookie) in cookies.into_iter().enumerate() {
        let (http, base, channel, tag) = (
            http.clone(),
            args.base.clone(),
            args.channel.clone(),
            tag.clone(),
        );
        let (seq, refused) = (seq.clone(), refused.clone());
        let poster = i < posters;
        let (period, offset) = if poster {
            (
                Duration::from_millis(2500),
                Duration::from_secs_f64(2.5 * i as f64 / posters as f64),
            )
        } else {
            (
                Duration::from_millis(1100),
                Duration::from_secs_f64(1.1 * (i - posters) as f64 / likers as f64),
            )
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(period);
            while Instant::now() < stop {
                tick.tick().await;
                let url = format!("{base}/api/interaction/{channel}/{}", if poster { "messages" } else { "likes" });
                let body = if poster {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    serde_json::json!({"nickname": format!("居民{i}"), "text": format!("b{tag}-{n}-{ms:.1}-")})
                } else {
                    serde_json::json!({"count": 5})
                };
                match http.post(&url).header("cookie", &cookie).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    _ => {
                        refused[usize::from(!poster)].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let end = sample();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let posted = seq.load(Ordering::Relaxed);
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let per_watcher = lat.len() as f64 / args.sampled.min(args.watchers).max(1) as f64;
    lat.sort_by(|a, b| a.1.total_cmp(&b.1));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .map(|x| x.1)
            .unwrap_or(f64::NAN)
    };
    println!("| figure | value |\n|---|---|");
    println!(
        "| chat-only watchers | {} ({} disconnected) |",
        args.watchers,
        ended.load(Ordering::Relaxed)
    );
    println!(
        "| messages posted (refused) / like requests refused | {posted} ({}) / {} |",
        refused[0].load(Ordering::Relaxed),
        refused[1].load(Ordering::Relaxed)
    );
    println!("| messages received per sampled watcher | {per_watcher:.1} of {posted} |");
    println!(
        "| delivery latency median / p95 / max | {:.0} / {:.0} / {:.0} ms |",
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    println!(
        "| bytes to watchers | {:.1} MB |",
        bytes.load(Ordering::Relaxed) as f64 / 1e6
    );
    if let (Some(b), Some(c), Some(s), Some(e)) = (before, connected, start, end) {
        let kib = |x: Option<u64>| x.unwrap_or(0) as f64;
        println!(
            "| server memory per chat watcher | {:.1} KB (RSS {:.0} -> {:.0} MB) |",
            (kib(c.rss_kib) - kib(b.rss_kib)) * 1.024 / args.watchers as f64,
            kib(b.rss_kib) / 1024.0,
            kib(c.rss_kib) / 1024.0
        );
        let wall = e.at.duration_since(s.at).as_secs_f64() * 1000.0;
        println!(
            "| server CPU while posting | {:.0} % of one core |",
            100.0 * (e.cpu_ms - s.cpu_ms) / wall
        );
        println!(
            "| server RSS at the end | {:.0} MB |",
            kib(e.rss_kib) / 1024.0
        );
    }
    Ok(())
}

/// One watcher: reads the stream; a sampled one finds every `b{tag}-{n}-{ms}-` message
/// text in it and records its latency.
async fn watch(
    addr: &str,
    path: &str,
    sampled: Option<(&str, Latencies, Instant)>,
    bytes: &AtomicU64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry = String::new();
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err("the server closed the stream".into());
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let Some((tag, latencies, t0)) = &sampled else {
            continue;
        };
        let now = t0.elapsed().as_secs_f64() * 1000.0;
        carry.push_str(&String::from_utf8_lossy(&buf[..n]));
        let marker = format!("\"text\":\"b{tag}-");
        let mut found = Vec::new();
        let mut rest = carry.as_str();
        while let Some(i) = rest.find(&marker) {
            let tail = &rest[i + marker.len()..];
            let mut parts = tail.splitn(3, '-');
            let (Some(n), Some(ms), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
                break;
            };
            if let (Ok(n), Ok(ms)) = (n.parse::<u64>(), ms.parse::<f64>()) {
                found.push((n, now - ms));
            }
            rest = &tail[n.len() + ms.len() + 2..];
        }
        // Keep only what may hold the start of a marker cut by the read.
        let mut from = rest.len() - rest.len().min(256);
        while !rest.is_char_boundary(from) {
            from += 1;
        }
        carry = rest[from..].to_string();
        if !found.is_empty()
            && let Ok(mut l) = latencies.lock()
        {
            l.extend(found);
        }
    }
}

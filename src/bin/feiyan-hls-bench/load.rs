//! `load`: plain and low-latency HLS players on one channel, the server's cost per viewer.
//!
//! ```text
//! warm-up (server CPU with the publisher alone) -- t0: players start over --ramp --
//!   settle -- [ steady window: CPU, RSS, requests, bytes, pace ] -- t0 + --duration: stop
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use hyper::StatusCode;

use crate::http1::Connection;
use crate::process::{ProcSample, clock_ticks_per_second, sample_proc};
use crate::{BenchError, playlist, quantile, wall_ms};

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The server's HTTP address.
    #[arg(long, default_value = "127.0.0.1:18080")]
    server: SocketAddr,
    /// The live channel.
    #[arg(long)]
    channel: String,
    /// Plain players: `/hls/{c}/ts.m3u8` every target duration, each new segment once.
    #[arg(long, default_value_t = 0)]
    plain: usize,
    /// Low-latency players: `/hls/{c}/index.m3u8` blocking reloads, each part once.
    #[arg(long, default_value_t = 0)]
    ll: usize,
    /// Seconds from the first player's start to the end of the steady window.
    #[arg(long, default_value_t = 40.0)]
    duration: f64,
    /// Players start evenly over this many seconds.
    #[arg(long, default_value_t = 4.0)]
    ramp: f64,
    /// Seconds after the ramp before the steady window opens.
    #[arg(long, default_value_t = 6.0)]
    settle: f64,
    /// Seconds of the server with the publisher alone (its baseline CPU).
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// The server's PID, for its CPU (/proc/PID/stat) and RSS (/proc/PID/status).
    #[arg(long)]
    server_pid: Option<u32>,
}

/// The steady window: only what completes inside it is counted.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn holds(&self, t: Instant) -> bool {
        t >= self.from && t <= self.to
    }
}

/// What one player did inside the window.
#[derive(Default)]
struct Stats {
    requests: u64,
    bytes: u64,
    /// Non-2xx answers and transport errors.
    errors: u64,
    /// Segments (plain) or parts (LL) fetched.
    fetched: u64,
    /// Fetched later than the pace allows (plain: > 2 target durations after the segment
    /// ended; LL: > one part target after the part ended).
    late: u64,
    /// Segments or parts skipped (a gap in the sequence, or asked for and not listed).
    missed: u64,
    /// LL: blocking reloads that answered with parts beyond the one asked for (the player
    /// was behind the live edge).
    behind: u64,
    /// Media fetched: ms from the end of the segment/part (server clock) to the last byte.
    delays: Vec<f64>,
    /// Connections opened (1 = one keep-alive connection throughout).
    connections: u64,
    /// The last segment (plain) or part (LL) fetched, as (msn, part).
    last: Option<(u64, usize)>,
}

impl Stats {
    fn count(&mut self, w: &Window, len: u64) {
        if w.holds(Instant::now()) {
            self.requests += 1;
            self.bytes += len;
        }
    }

    fn error(&mut self, w: &Window) {
        if w.holds(Instant::now()) {
            self.errors += 1;
        }
    }

    /// Fetches one segment or part (`item`) and notes it: fetched, with its delay after its
    /// end (late past `late_ms`), or an error.
    async fn fetch(&mut self, c: &mut Connection, w: &Window, item: &playlist::Item, late_ms: f64) {
        match c.get(&item.uri, false).await {
            Ok(a) if a.status == StatusCode::OK => {
                self.count(w, a.len);
                self.last = Some((item.msn, item.part.unwrap_or(0)));
                if w.holds(Instant::now()) {
                    self.fetched += 1;
                    let delay = wall_ms() - item.end_ms;
                    self.delays.push(delay);
                    if delay > late_ms {
                        self.late += 1;
                    }
                }
            }
            Ok(a) => {
                self.count(w, a.len);
                self.error(w);
            }
            Err(_) => self.error(w),
        }
    }
}

/// The player's playlist URL with its `vid` (the 302 gives it).
async fn redirect(c: &mut Connection, path: &str) -> std::io::Result<String> {
    let a = c.get(path, false).await?;
    match (a.status, a.location) {
        (StatusCode::FOUND, Some(l)) => Ok(l),
        (s, _) => Err(std::io::Error::other(format!("{path}: {s}, not a 302"))),
    }
}

async fn plain_player(addr: SocketAddr, channel: String, phase: f64, w: Window) -> Stats {
    let mut s = Stats::default();
    let mut c = Connection::new(addr);
    let url = loop {
        match redirect(&mut c, &format!("/hls/{channel}/ts.m3u8")).await {
            Ok(u) => break u,
            Err(_) if Instant::now() < w.to => {
                s.errors += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return s,
        }
    };
    let mut target = 2.0;
    tokio::time::sleep(Duration::from_secs_f64(phase * target)).await;
    let mut last: Option<u64> = None;
    while Instant::now() < w.to {
        let started = Instant::now();
        let list = match c.get(&url, true).await {
            Ok(a) if a.status == StatusCode::OK => {
                s.count(&w, a.len);
                playlist::parse(&String::from_utf8_lossy(&a.body))
            }
            Ok(a) => {
                s.count(&w, a.len);
                s.error(&w);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                s.error(&w);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        target = list.target_secs.max(1.0);
        // A player starts at the newest segment, then takes every new one once.
        let from = match last {
            None => list.segments.last().map_or(u64::MAX, |x| x.msn),
            Some(l) => l + 1,
        };
        for seg in list.segments.iter().filter(|x| x.msn >= from) {
            if let Some(l) = last
                && seg.msn > l + 1
                && w.holds(Instant::now())
            {
                s.missed += seg.msn - l - 1;
            }
            s.fetch(&mut c, &w, seg, 2000.0 * target).await;
            last = Some(seg.msn);
        }
        tokio::time::sleep_until((started + Duration::from_secs_f64(target)).into()).await;
    }
    s.connections = c.opened;
    s
}

async fn ll_player(addr: SocketAddr, channel: String, w: Window, part_target: f64) -> Stats {
    let mut s = Stats::default();
    let mut c = Connection::new(addr);
    let url = loop {
        match redirect(&mut c, &format!("/hls/{channel}/index.m3u8")).await {
            Ok(u) => break u,
            Err(_) if Instant::now() < w.to => {
                s.errors += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return s,
        }
    };
    // (msn, part, uri) to ask for next; None: load the playlist without blocking first.
    // The URI finds it in the answer even when a keyframe made it the next segment's first.
    let mut next: Option<(u64, usize, String)> = None;
    while Instant::now() < w.to {
        let Some((msn, part, uri)) = next.clone() else {
            match c.get(&url, true).await {
                Ok(a) if a.status == StatusCode::OK => {
                    s.count(&w, a.len);
                    let list = playlist::parse(&String::from_utf8_lossy(&a.body));
                    next = list.hint;
                    if next.is_none() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                _ => {
                    s.error(&w);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        let list = match c
            .get(&format!("{url}&_HLS_msn={msn}&_HLS_part={part}"), true)
            .await
        {
            Ok(a) if a.status == StatusCode::OK => {
                s.count(&w, a.len);
                playlist::parse(&String::from_utf8_lossy(&a.body))
            }
            Ok(a) => {
                s.count(&w, a.len);
                s.error(&w);
                next = None;
                continue;
            }
            Err(_) => {
                s.error(&w);
                next = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(at) = list.parts.iter().position(|p| p.uri == uri) else {
            // Not listed: the part left the playlist.
            if w.holds(Instant::now()) {
                s.missed += 1;
            }
            next = list.hint;
            continue;
        };
        let item = &list.parts[at];
        if at + 1 < list.parts.len() && w.holds(Instant::now()) {
            s.behind += 1;
        }
        s.fetch(&mut c, &w, item, 1000.0 * part_target).await;
        next = list
            .parts
            .get(at + 1)
            .and_then(|p| Some((p.msn, p.part?, p.uri.clone())))
            .or(list.hint);
    }
    s.connections = c.opened;
    s
}

/// The live edge now: the newest part (the hint's msn and index) and complete segment.
async fn edge(c: &mut Connection, url: &str) -> Option<(u64, usize, u64)> {
    let a = c.get(url, true).await.ok()?;
    let list = playlist::parse(&String::from_utf8_lossy(&a.body));
    let (msn, part, _) = list.hint?;
    Some((msn, part, list.segments.last()?.msn))
}

/// This process's CPU (user + system) in core-ms, from getrusage.
fn own_cpu_ms() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

fn secs(s: f64, what: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(s).map_err(|_| BenchError::Setup(format!("invalid {what}: {s}")))
}

/// One kind of player's totals.
struct Kind {
    name: &'static str,
    players: usize,
    stats: Vec<Stats>,
}

impl Kind {
    fn sum(&self, f: impl Fn(&Stats) -> u64) -> u64 {
        self.stats.iter().map(f).sum()
    }

    fn report(&self, window_s: f64, expected_each: f64) -> serde_json::Value {
        let mut delays: Vec<f64> = self
            .stats
            .iter()
            .flat_map(|s| s.delays.iter().copied())
            .filter(|d| d.is_finite())
            .collect();
        delays.sort_by(f64::total_cmp);
        let mut fetched: Vec<f64> = self.stats.iter().map(|s| s.fetched as f64).collect();
        fetched.sort_by(f64::total_cmp);
        let requests = self.sum(|s| s.requests);
        let bytes = self.sum(|s| s.bytes);
        let (late, missed, errors, behind) = (
            self.sum(|s| s.late),
            self.sum(|s| s.missed),
            self.sum(|s| s.errors),
            self.sum(|s| s.behind),
        );
        let reconnects = self.sum(|s| s.connections.saturating_sub(1));
        let kept_pace = self
            .stats
            .iter()
            .filter(|s| s.late == 0 && s.missed == 0 && s.errors == 0)
            .count();
        println!(
            "{}: {} players, {:.0} req/s, {:.2} MB/s; per player {} fetched (min {}, expected ~{:.0}); \
             delay after end p50 {:.0} / p99 {:.0} / max {:.0} ms; late {late}, missed {missed}, \
             errors {errors}, behind {behind}, reconnects {reconnects}; kept pace {kept_pace}/{}",
            self.name,
            self.players,
            requests as f64 / window_s,
            bytes as f64 / window_s / 1e6,
            quantile(&fetched, 0.5),
            quantile(&fetched, 0.0),
            expected_each,
            quantile(&delays, 0.5),
            quantile(&delays, 0.99),
            quantile(&delays, 1.0),
            self.players,
        );
        serde_json::json!({
            "players": self.players, "requests_per_s": requests as f64 / window_s,
            "bytes_per_s": bytes as f64 / window_s, "fetched_median": quantile(&fetched, 0.5),
            "fetched_min": quantile(&fetched, 0.0), "expected_each": expected_each,
            "delay_p50_ms": quantile(&delays, 0.5), "delay_p99_ms": quantile(&delays, 0.99),
            "delay_max_ms": quantile(&delays, 1.0), "late": late, "missed": missed,
            "errors": errors, "behind": behind, "reconnects": reconnects, "kept_pace": kept_pace,
        })
    }
}

pub fn run(args: LoadArgs) -> Result<(), BenchError> {
    let duration = secs(args.duration, "--duration")?;
    let ramp = secs(args.ramp, "--ramp")?;
    let settle = secs(args.settle, "--settle")?;
    let warmup = secs(args.warmup, "--warmup")?;
    if ramp + settle + Duration::from_secs(5) > duration {
        return Err(BenchError::Setup(
            "--duration must leave at least 5 s after --ramp and --settle".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("starting tokio: {e}")))?;
    runtime.block_on(load(args, duration, ramp, settle, warmup))
}

async fn load(
    args: LoadArgs,
    duration: Duration,
    ramp: Duration,
    settle: Duration,
    warmup: Duration,
) -> Result<(), BenchError> {
    let ticks = clock_ticks_per_second();
    let pid = args.server_pid.map(|p| p.to_string());
    let sample = || pid.as_deref().and_then(|p| sample_proc(p, ticks));
    // The channel must be live: its playlist answers 200 (after the 302).
    let mut probe = Connection::new(args.server);
    let url = redirect(&mut probe, &format!("/hls/{}/index.m3u8", args.channel))
        .await
        .map_err(|e| BenchError::Setup(format!("HLS playlist: {e}")))?;
    let first = probe
        .get(&url, true)
        .await
        .map_err(|e| BenchError::Setup(format!("HLS playlist: {e}")))?;
    if first.status != StatusCode::OK {
        return Err(BenchError::Setup(format!(
            "{url}: {} (is the channel live?)",
            first.status
        )));
    }
    let text = String::from_utf8_lossy(&first.body).to_string();
    let part_target = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.5);
    let target = playlist::parse(&text).target_secs.max(1.0);
    // Segments are as long as the publisher's GOP (the target duration is rounded up).
    let extinf: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.trim_end_matches(',').parse().ok())
        .collect();
    let segment = if extinf.is_empty() {
        target
    } else {
        extinf.iter().sum::<f64>() / extinf.len() as f64
    };

    let base = sample();
    tokio::time::sleep(warmup).await;
    let before = sample();
    let t0 = Instant::now();
    let w = Window {
        from: t0 + ramp + settle,
        to: t0 + duration,
    };
    let total = args.plain + args.ll;
    let mut plain = Vec::with_capacity(args.plain);
    let mut ll = Vec::with_capacity(args.ll);
    for i in 0..total {
        let at = t0 + ramp.mul_f64(i as f64 / total as f64);
        tokio::time::sleep_until(at.into()).await;
        let channel = args.channel.clone();
        // Alternate the kinds so both ramp up together.
        if (i % 2 == 0 && plain.len() < args.plain) || ll.len() >= args.ll {
            // Reload phases spread over the target duration, as independent players are.
            let phase = (plain.len() as f64 * 0.618_034).fract();
            plain.push(tokio::spawn(plain_player(args.server, channel, phase, w)));
        } else {
            ll.push(tokio::spawn(ll_player(
                args.server,
                channel,
                w,
                part_target,
            )));
        }
    }
    tokio::time::sleep_until(w.from.into()).await;
    let (server_from, client_from) = (sample(), own_cpu_ms());
    let edge_from = edge(&mut probe, &url).await;
    tokio::time::sleep_until(w.to.into()).await;
    let (server_to, client_to) = (sample(), own_cpu_ms());
    let edge_to = edge(&mut probe, &url).await;
    let window_s = (w.to - w.from).as_secs_f64();

    let mut kinds = [
        Kind {
            name: "plain (ts.m3u8)",
            players: args.plain,
            stats: Vec::new(),
        },
        Kind {
            name: "LL (index.m3u8, blocking)",
            players: args.ll,
            stats: Vec::new(),
        },
    ];
    for h in plain {
        kinds[0].stats.push(h.await.unwrap_or_default());
    }
    for h in ll {
        kinds[1].stats.push(h.await.unwrap_or_default());
    }
    println!(
        "window {window_s:.1} s, EXT-X-TARGETDURATION {target} (segments {segment:.3} s), part \
         target {part_target} s; this machine is shared: figures are noisy"
    );
    // What the server made in the window (a publisher slowed by a busy machine makes less),
    // and how far behind the live edge each player ended.
    let per_segment = (segment / part_target).round().max(1.0) as u64;
    let made = match (edge_from, edge_to) {
        (Some(a), Some(b)) => {
            let parts =
                (b.0 * per_segment + b.1 as u64).saturating_sub(a.0 * per_segment + a.1 as u64);
            println!(
                "the server made {} segments and {parts} parts in the window (real time: {:.1} and {:.1})",
                b.2.saturating_sub(a.2),
                window_s / segment,
                window_s / part_target
            );
            Some(b)
        }
        _ => None,
    };
    if let Some((msn, part, last_segment)) = made {
        for k in &kinds {
            if k.players == 0 {
                continue;
            }
            let mut lag: Vec<f64> = k
                .stats
                .iter()
                .map(|s| match (k.name.starts_with("LL"), s.last) {
                    (_, None) => f64::INFINITY,
                    (true, Some((m, p))) => {
                        ((msn * per_segment + part as u64) as f64)
                            - (m * per_segment + p as u64) as f64
                    }
                    (false, Some((m, _))) => last_segment as f64 - m as f64,
                })
                .collect();
            lag.sort_by(f64::total_cmp);
            println!(
                "{}: behind the live edge at the end (LL: parts after the one fetched, hint \
                 included; plain: segments): median {} / max {}",
                k.name,
                quantile(&lag, 0.5),
                quantile(&lag, 1.0)
            );
        }
    }
    let plain_json = kinds[0].report(window_s, window_s / segment);
    let ll_json = kinds[1].report(window_s, window_s / part_target);

    let client_ms = client_to - client_from;
    let viewer_s = total as f64 * window_s;
    println!(
        "client CPU: {:.0} core-ms/s ({:.1} % of a core), {:.3} core-ms per viewer-second",
        client_ms / window_s,
        client_ms / window_s / 10.0,
        client_ms / viewer_s
    );
    let mut server = serde_json::Value::Null;
    if let (Some(base), Some(before), Some(from), Some(to)) = (base, before, server_from, server_to)
    {
        let rate = |a: &ProcSample, b: &ProcSample| {
            (b.cpu_ms - a.cpu_ms) / (b.at - a.at).as_secs_f64().max(1e-9)
        };
        let idle = rate(&base, &before);
        let busy = rate(&from, &to);
        let per = busy * window_s / viewer_s;
        let net = (busy - idle) * window_s / viewer_s;
        let rss_growth = match (before.rss_kib, to.rss_kib) {
            (Some(a), Some(b)) => (b as f64 - a as f64) / total as f64,
            _ => f64::NAN,
        };
        println!(
            "server CPU: {busy:.0} core-ms/s ({:.1} % of a core; {idle:.0} with the publisher \
             alone), {per:.4} core-ms per viewer-second (net of the publisher: {net:.4}); RSS \
             {:?} -> {:?} KiB, {rss_growth:.1} KiB per viewer",
            busy / 10.0,
            before.rss_kib,
            to.rss_kib,
        );
        server = serde_json::json!({
            "core_ms_per_s": busy, "idle_core_ms_per_s": idle,
            "core_ms_per_viewer_s": per, "net_core_ms_per_viewer_s": net,
            "rss_before_kib": before.rss_kib, "rss_after_kib": to.rss_kib,
            "rss_kib_per_viewer": rss_growth,
        });
    }
    println!(
        "{}",
        serde_json::json!({
            "window_s": window_s, "plain": plain_json, "ll": ll_json, "server": server,
            "client_core_ms_per_s": client_ms / window_s,
        })
    );
    Ok(())
}

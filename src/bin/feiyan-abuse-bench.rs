//! `feiyan-abuse-bench`: what real viewers see while the server is attacked (issue 23).
//!
//! Starts the real server in this process (loopback, ephemeral ports, SQLite and
//! recordings in a temporary folder), adds a station and publishes synthetic H.264 + Opus
//! to it with the crate's WHIP client. Each case then runs on a fresh server:
//!
//! ```text
//! publish ── live ── warm-up ── attack starts ── +1 s: K real WHEP viewers join over 1 s ──
//!   attack start + --seconds: publisher stops ── 1 s drain: viewers read ── attack stops
//! ```
//!
//! and reports the load the attack achieved, what the server answered (status codes,
//! connections it closed, its `/metrics` counters) and what the real viewers saw meanwhile:
//! the share of the publisher's packets delivered to them (as `feiyan-bench` counts it) and
//! the time from their `POST` to their first keyframe. The baseline case has no attack.
//!
//! Attacker, viewers, publisher and server share this machine's cores: a figure here is
//! what the server does with what the attack leaves it, not a capacity.

#[path = "feiyan-bench/publisher.rs"]
mod publisher;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use feiyan::client::{
    ClientError, ConnectOptions, KindCounters, PublisherOptions, SyntheticMedia, TrackKind,
    ViewerOptions, ViewerStack, ViewerStats, WhepViewer, make_test_media,
};
use publisher::PublisherThread;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
use rtc::stun::textattrs::Username;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "feiyan-abuse-bench",
    about = "Abuse cases against an in-process feiyan: the attack's load, the server's \
             answer and what real WHEP viewers saw meanwhile"
)]
struct Args {
    /// Cases to run, comma-separated, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Case::ALL)]
    cases: Vec<Case>,
    /// Real WHEP viewers joining during each attack.
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Seconds each attack runs before the publisher stops.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds into the attack when the real viewers start joining (over one second), so
    /// that they meet it in full swing (e.g. the many-address WHEP flood at 200/s has
    /// filled a channel's 500 connecting places by 2.5 s).
    #[arg(long, default_value_t = 3.0)]
    join_after: f64,
    /// WebRTC stack of the real viewers (`light`: rtc's sans-IO peer, little client CPU;
    /// `webrtc`: webrtc-rs).
    #[arg(long, value_enum, default_value_t = Client::Light)]
    client: Client,
    /// Video bitrate of the generated H.264 test file, kbit/s.
    #[arg(long, default_value_t = 600)]
    bitrate_kbps: u32,
    /// WHEP offer floods: POSTs per second (from 127.0.0.2, or spread over
    /// `--whep-sources` addresses in `whep-flood-spread`).
    #[arg(long, default_value_t = 200.0)]
    whep_rate: f64,
    /// `whep-flood-spread`: loopback addresses the POSTs come from (127.0.1.1, ...).
    #[arg(long, default_value_t = 200)]
    whep_sources: u8,
    /// NACK storm: RTCP NACK packets per second (250 pairs each, blp 0xffff).
    #[arg(long, default_value_t = 100.0)]
    nack_rate: f64,
    /// Unsigned STUN flood: Binding requests per second.
    #[arg(long, default_value_t = 5000.0)]
    stun_rate: f64,
    /// Login flood: concurrent POST /api/login loops.
    #[arg(long, default_value_t = 50)]
    login_workers: usize,
    /// RTMP flood: silent connections opened at the start.
    #[arg(long, default_value_t = 300)]
    rtmp_hold: usize,
    /// RTMP flood: new silent connections per second after those.
    #[arg(long, default_value_t = 50.0)]
    rtmp_rate: f64,
    /// Slowloris: TCP connections to the HTTP port.
    #[arg(long, default_value_t = 500)]
    slowloris: usize,
    /// Slowloris: seconds between the single header bytes each connection sends.
    #[arg(long, default_value_t = 2.0)]
    slowloris_interval: f64,
}

/// jemalloc, as the server binary uses.
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

/// The abuse cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    /// No attack.
    Baseline,
    /// Valid-looking WHEP offers that never do ICE, from 127.0.0.2.
    WhepFlood,
    /// The same offers from many addresses (127.0.1.x), as a botnet would send them.
    WhepFloodSpread,
    /// One connected viewer NACKing 250 pairs per RTCP packet.
    NackStorm,
    /// Binding requests naming real peers' ICE usernames, without MESSAGE-INTEGRITY.
    StunFlood,
    /// Concurrent POST /api/login with random names and passwords.
    LoginFlood,
    /// Silent TCP connections to the RTMP port.
    RtmpFlood,
    /// TCP connections to the HTTP port sending one header byte at a time.
    Slowloris,
}

impl Case {
    const ALL: [Case; 8] = [
        Case::Baseline,
        Case::WhepFlood,
        Case::WhepFloodSpread,
        Case::NackStorm,
        Case::StunFlood,
        Case::LoginFlood,
        Case::RtmpFlood,
        Case::Slowloris,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::Baseline => "baseline (no attack)",
            Case::WhepFlood => "WHEP offer flood (never ICE), 1 address",
            Case::WhepFloodSpread => "WHEP offer flood (never ICE), many addresses",
            Case::NackStorm => "NACK storm (1 viewer)",
            Case::StunFlood => "unsigned STUN flood",
            Case::LoginFlood => "login flood",
            Case::RtmpFlood => "RTMP silent-connection flood",
            Case::Slowloris => "HTTP slowloris",
        }
    }
}

/// Errors that end the benchmark.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// The WHIP/WHEP client failed (publisher or media generation).
    #[error("{0}")]
    Client(#[from] ClientError),
    /// Local setup failed (server, sockets, threads, temp files).
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> BenchError {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

fn main() {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| "error,rtc=off,rtc_ice=off,rtc_dtls=off,webrtc=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("feiyan-abuse-bench: starting tokio: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("feiyan-abuse-bench: {e}");
        std::process::exit(1);
    }
}

/// One line of the table.
struct Row {
    case: Case,
    load: String,
    answer: String,
    delivered: String,
    first_frame: String,
}

async fn run(args: Args) -> Result<(), BenchError> {
    let join_after = Duration::try_from_secs_f64(args.join_after)
        .map_err(|_| BenchError::Setup("--join-after must be a number of seconds".into()))?;
    let seconds = Duration::try_from_secs_f64(args.seconds)
        .ok()
        .filter(|d| *d >= join_after + Duration::from_secs(3))
        .ok_or_else(|| BenchError::Setup("--seconds must be at least --join-after + 3".into()))?;
    if args.viewers == 0 {
        return Err(BenchError::Setup("--viewers must be at least 1".into()));
    }
    let dir = tempfile::tempdir().map_err(setup("temporary folder"))?;
    eprintln!("making 10 s of test media with ffmpeg ...");
    let (path, kbps) = (dir.path().to_path_buf(), args.bitrate_kbps);
    let media = tokio::task::spawn_blocking(move || {
        let (h264, ogg) = make_test_media(&path, Duration::from_secs(10), kbps)?;
        SyntheticMedia::load(&h264, &ogg)
    })
    .await
    .map_err(setup("media task"))??;
    let mut rows = Vec::new();
    for case in args.cases.clone() {
        eprintln!("== {} ==", case.label());
        let row = run_case(case, &args, seconds, join_after, media.clone()).await?;
        eprintln!(
            "   load: {} | answer: {} | delivered: {} | first frame: {}",
            row.load, row.answer, row.delivered, row.first_frame
        );
        rows.push(row);
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "\n{} real viewers ({:?} stack) joining {:.1}-{:.1} s into each {:.0} s attack; {} kbit/s \
         H.264 + Opus; server, publisher, viewers and attacker in one process on {cores} cores.\n",
        args.viewers,
        args.client,
        join_after.as_secs_f64(),
        join_after.as_secs_f64() + 1.0,
        seconds.as_secs_f64(),
        args.bitrate_kbps
    );
    println!(
        "| case | attack load | server's answer | real viewers delivered % | first frame median / max ms |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.case.label(),
            r.load,
            r.answer,
            r.delivered,
            r.first_frame
        );
    }
    Ok(())
}

/// A fresh server with one station.
struct Server {
    running: feiyan::app::RunningServer,
    base: String,
    channel: String,
    stream_key: String,
    _dir: tempfile::TempDir,
}

/// Starts the server as `tests/common` does; `advertised_port` puts a relay in front of
/// the media port (the STUN case reads ICE usernames there, as anyone on the path could).
async fn start_server(advertised_port: Option<u16>) -> Result<Server, BenchError> {
    let dir = tempfile::tempdir().map_err(setup("temporary folder"))?;
    let mut config = feiyan::config::Config::default();
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.webrtc.udp_bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.webrtc.advertised_ips = vec![IpAddr::from([127, 0, 0, 1])];
    config.webrtc.advertised_port = advertised_port;
    config.ingest.rtmp_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.catalog.database_url = format!("sqlite://{}/feiyan.db", dir.path().display());
    config.hls.reconnect_grace_secs = 0;
    config.recording.dir = dir.path().join("recordings");
    config.validate().map_err(setup("configuration"))?;
    let running = feiyan::app::start(config)
        .await
        .map_err(|e| BenchError::Setup(format!("server start: {e:#}")))?;
    let station = running
        .catalog
        .add_station("压测中心", "压测所", "压测站")
        .await
        .map_err(setup("adding the station"))?;
    let base = running.base_url();
    Ok(Server {
        running,
        base,
        channel: station.channel.to_string(),
        stream_key: station.stream_key,
        _dir: dir,
    })
}

/// Waits (up to 10 s) until the channel is live.
async fn wait_live(base: &str, channel: &str) -> Result<(), BenchError> {
    let url = format!("{base}/api/channels/{channel}");
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["live"].as_bool() == Some(true)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::Setup(format!(
        "channel {channel} not live within 10 s"
    )))
}

/// The server's `/metrics` as `name -> value` (unlabelled series only).
async fn metrics(base: &str) -> HashMap<String, f64> {
    let Ok(r) = reqwest::get(format!("{base}/metrics")).await else {
        return HashMap::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Added to each viewer's accounting start, as `feiyan-bench` does: the boundary falls
/// between send instants of the audio and video grids.
const GRID_OFFSET: Duration = Duration::from_millis(10);
/// Delay after a viewer's first packet before its delivery accounting starts.
const SETTLE: Duration = Duration::from_secs(1);
const KINDS: [TrackKind; 2] = [TrackKind::Video, TrackKind::Audio];

async fn run_case(
    case: Case,
    args: &Args,
    seconds: Duration,
    join_after: Duration,
    media: SyntheticMedia,
) -> Result<Row, BenchError> {
    // The STUN case: a relay in front of the media port, where the usernames are read.
    let spy = if case == Case::StunFlood {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(setup("relay socket"))?;
        Some(socket)
    } else {
        None
    };
    let server = start_server(
        spy.as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port()),
    )
    .await?;
    let usernames = Usernames::default();
    if let Some(socket) = spy {
        tokio::spawn(spying_relay(
            socket,
            server.running.udp_addr,
            usernames.clone(),
        ));
    }
    let whip = format!("{}/whip/{}", server.base, server.channel);
    let whep = format!("{}/whep/{}", server.base, server.channel);
    let key = server.stream_key.clone();
    // The publisher gets a thread and runtime of its own (paced sends), as in feiyan-bench.
    let publisher = tokio::task::spawn_blocking(move || {
        PublisherThread::start(
            whip,
            Some(key),
            media,
            PublisherOptions {
                record_send_log: true,
                ..Default::default()
            },
        )
    })
    .await
    .map_err(setup("publisher task"))??;
    wait_live(&server.base, &server.channel).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The attack.
    let started = Instant::now();
    let attack = Attack::start(case, args, &server, &whep, usernames).await?;

    // Real viewers, prepared first, then POSTed over one second, `join_after` in.
    let viewer_opts = ViewerOptions {
        connect: ConnectOptions {
            connect_timeout: seconds,
            ..Default::default()
        },
        record_arrival_log: true,
        stack: match args.client {
            Client::Light => ViewerStack::Light,
            Client::Webrtc => ViewerStack::WebRtc,
        },
        ..Default::default()
    };
    let n = args.viewers;
    let mut offers = Vec::with_capacity(n);
    for _ in 0..n {
        offers.push(WhepViewer::prepare(viewer_opts.clone()).await);
    }
    let t0 = started + join_after;
    tokio::time::sleep_until(t0.into()).await;
    let mut joins = Vec::with_capacity(n);
    for (i, offer) in offers.into_iter().enumerate() {
        let at = t0 + Duration::from_secs(1).mul_f64(i as f64 / n.max(2).saturating_sub(1) as f64);
        let url = whep.clone();
        joins.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let viewer = match offer {
                Ok(o) => o.connect(&url, None).await,
                Err(e) => Err(e),
            };
            (at, viewer)
        }));
    }
    let mut viewers = Vec::new();
    let mut failed: Vec<(Instant, String)> = Vec::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for j in joins {
        match j.await {
            Ok((_, Ok(v))) => viewers.push(v),
            Ok((at, Err(e))) => {
                let why = match &e {
                    ClientError::UnexpectedStatus { status, .. } => status.to_string(),
                    _ => "error".to_owned(),
                };
                *refusals.entry(why).or_default() += 1;
                failed.push((at, e.to_string()));
            }
            Err(e) => failed.push((t0, format!("viewer task: {e}"))),
        }
    }
    for (_, e) in failed.iter().take(3) {
        eprintln!("   a real viewer failed: {e}");
    }
    tokio::time::sleep_until((started + seconds).into()).await;

    // Stop the media, let in-flight packets arrive, read every viewer.
    publisher.publisher.stop_sending();
    let t_stop = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats: Vec<ViewerStats> = viewers.iter().map(|v| v.stats()).collect();
    let mut expected = KindCounters::default();
    let mut delivered = KindCounters::default();
    for (v, s) in viewers.iter().zip(&stats) {
        let from = s.first_rtp_at.unwrap_or(s.answered_at) + SETTLE + GRID_OFFSET;
        if from >= t_stop {
            continue;
        }
        for kind in KINDS {
            let e = publisher.publisher.sent_between(kind, from, Some(t_stop));
            let d = v.received_between(kind, from, None);
            expected.packets += e.packets;
            delivered.packets += d.packets;
        }
    }
    // A viewer that never got in saw nothing of what was sent after it tried.
    for (at, _) in &failed {
        let from = *at + SETTLE + GRID_OFFSET;
        if from < t_stop {
            for kind in KINDS {
                expected.packets += publisher
                    .publisher
                    .sent_between(kind, from, Some(t_stop))
                    .packets;
            }
        }
    }
    let mut first_frames: Vec<f64> = stats
        .iter()
        .filter_map(|s| s.time_to_first_keyframe())
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    first_frames.sort_by(f64::total_cmp);
    let without = n - first_frames.len();

    let attack_report = attack.stop().await;
    let m = metrics(&server.base).await;
    let answer = attack_report.answer(case, &m);

    for v in &viewers {
        let _ = v.close().await;
    }
    drop(viewers);
    tokio::task::spawn_blocking(move || publisher.stop())
        .await
        .map_err(setup("publisher stop"))?;
    server.running.shutdown().await;

    let mut joined = format!("{}/{n} joined", n - failed.len());
    for (why, count) in &refusals {
        joined.push_str(&format!(", {why} x {count}"));
    }
    let delivered_pct = if expected.packets > 0 {
        format!(
            "{:.1} % ({joined})",
            100.0 * delivered.packets as f64 / expected.packets as f64,
        )
    } else {
        format!("n/a ({joined})")
    };
    let first_frame = if first_frames.is_empty() {
        "none".to_owned()
    } else {
        let median = first_frames[first_frames.len() / 2];
        let max = first_frames[first_frames.len() - 1];
        let mut s = format!("{median:.0} / {max:.0}");
        if without > 0 {
            s.push_str(&format!(" ({without} never)"));
        }
        s
    };
    Ok(Row {
        case,
        load: attack_report.load,
        answer,
        delivered: delivered_pct,
        first_frame,
    })
}

/// What an attack counts while it runs.
#[derive(Default)]
struct Tally {
    /// Outcomes by name (`201`, `429`, `refused`, `closed by server`, ...).
    outcomes: Mutex<BTreeMap<String, u64>>,
    /// Requests, packets or connections sent.
    sent: AtomicU64,
    /// Connections open now (connection attacks only).
    open: AtomicU64,
}

impl Tally {
    fn note(&self, outcome: impl Into<String>) {
        *lock(&self.outcomes).entry(outcome.into()).or_default() += 1;
    }

    fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    fn outcomes(&self) -> String {
        lock(&self.outcomes)
            .iter()
            .map(|(k, v)| format!("{k} x {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running attack.
struct Attack {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    tally: Arc<Tally>,
    started: Instant,
    /// How the load is named: "POST/s", "packets/s", ...
    unit: &'static str,
    /// Offered load (requests/packets/connections per second), when paced.
    offered: Option<f64>,
    /// Extra words for the load column.
    extra: String,
    /// A connected attacker viewer to close at the end.
    viewer: Option<Arc<WhepViewer>>,
}

/// What an attack did, once stopped.
struct AttackReport {
    load: String,
    outcomes: String,
}

impl AttackReport {
    /// The server's answer column: the attacker's tally and the counters of this case.
    fn answer(&self, case: Case, m: &HashMap<String, f64>) -> String {
        let names: &[&str] = match case {
            Case::Baseline => &[],
            Case::WhepFlood | Case::WhepFloodSpread => &[],
            Case::NackStorm => &[
                "feiyan_retransmissions_total",
                "feiyan_retransmissions_refused_total",
            ],
            Case::StunFlood => &[
                "feiyan_stun_unverified_total",
                "feiyan_udp_datagrams_unrouted_total",
            ],
            Case::LoginFlood => &[],
            Case::RtmpFlood => &[
                "feiyan_rtmp_over_cap_total",
                "feiyan_rtmp_auth_timeouts_total",
            ],
            Case::Slowloris => &[],
        };
        let mut parts = Vec::new();
        if !self.outcomes.is_empty() {
            parts.push(self.outcomes.clone());
        }
        for name in names {
            if let Some(v) = m.get(*name) {
                parts.push(format!("{} {v}", name.trim_start_matches("feiyan_")));
            }
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

impl Attack {
    async fn start(
        case: Case,
        args: &Args,
        server: &Server,
        whep: &str,
        usernames: Usernames,
    ) -> Result<Attack, BenchError> {
        let mut attack = Attack {
            stop: Arc::default(),
            tasks: Vec::new(),
            tally: Arc::default(),
            started: Instant::now(),
            unit: "",
            offered: None,
            extra: String::new(),
            viewer: None,
        };
        match case {
            Case::Baseline => {}
            Case::WhepFlood => attack.whep_flood(args.whep_rate, 1, whep).await?,
            Case::WhepFloodSpread => {
                attack
                    .whep_flood(args.whep_rate, args.whep_sources.max(1), whep)
                    .await?
            }
            Case::NackStorm => attack.nack_storm(args.nack_rate, server, whep).await?,
            Case::StunFlood => attack.stun_flood(args.stun_rate, server, usernames).await?,
            Case::LoginFlood => attack.login_flood(args.login_workers, &server.base)?,
            Case::RtmpFlood => attack.rtmp_flood(args.rtmp_hold, args.rtmp_rate, server)?,
            Case::Slowloris => attack.slowloris(
                args.slowloris,
                args.slowloris_interval,
                server.running.http_addr,
            ),
        }
        attack.started = Instant::now();
        Ok(attack)
    }

    async fn stop(self) -> AttackReport {
        self.stop.store(true, Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        // Before the tasks are aborted, which closes what is still open.
        let open = self.tally.open.load(Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(v) = self.viewer {
            let _ = v.close().await;
        }
        let sent = self.tally.sent.load(Ordering::Relaxed);
        let load = if self.unit.is_empty() {
            "-".to_owned()
        } else {
            let mut s = match self.offered {
                Some(o) => format!(
                    "{o:.0} {}/s offered, {:.0}/s sent ({sent} in {secs:.1} s)",
                    self.unit,
                    sent as f64 / secs
                ),
                None => format!(
                    "{sent} {} in {secs:.1} s ({:.0}/s)",
                    self.unit,
                    sent as f64 / secs
                ),
            };
            if !self.extra.is_empty() {
                s.push_str("; ");
                s.push_str(&self.extra);
            }
            s
        };
        let mut outcomes = self.tally.outcomes();
        if matches!(self.unit, "connections") {
            if !outcomes.is_empty() {
                outcomes.push_str(", ");
            }
            outcomes.push_str(&format!("{open} still open at the end"));
        }
        AttackReport { load, outcomes }
    }

    /// Runs `tick` `rate` times a second until stopped (late ticks are caught up in bursts,
    /// so the achieved rate is what the machine could do).
    fn paced<F, Fut>(&mut self, rate: f64, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let stop = self.stop.clone();
        let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
        self.offered = Some(rate);
        self.tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                tokio::time::sleep_until(start + period.mul_f64(n as f64)).await;
                tick().await;
            }
        }));
    }

    /// Valid-looking WHEP offers (a real webrtc-rs viewer's), never followed by ICE: from
    /// 127.0.0.2, or round-robin from `sources` addresses 127.0.1.1, 127.0.1.2, ...
    async fn whep_flood(&mut self, rate: f64, sources: u8, whep: &str) -> Result<(), BenchError> {
        let prepared = WhepViewer::prepare(ViewerOptions::default()).await?;
        let offer = prepared
            .offer_sdp()
            .ok_or_else(|| BenchError::Setup("no offer".into()))?
            .to_owned();
        drop(prepared);
        let addresses: Vec<IpAddr> = if sources == 1 {
            vec![IpAddr::from([127, 0, 0, 2])]
        } else {
            (1..=sources)
                .map(|i| IpAddr::from([127, 0, 1, i]))
                .collect()
        };
        let mut clients = Vec::with_capacity(addresses.len());
        for a in addresses {
            clients.push(
                reqwest::Client::builder()
                    .local_address(Some(a))
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(setup("HTTP client"))?,
            );
        }
        if sources > 1 {
            self.extra = format!("from {sources} addresses");
        }
        let mut next = 0usize;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(1000));
        let (tally, url) = (self.tally.clone(), whep.to_owned());
        self.unit = "POST";
        self.paced(rate, move || {
            let http = clients[next % clients.len()].clone();
            next += 1;
            let (tally, url, offer) = (tally.clone(), url.clone(), offer.clone());
            let permit = in_flight.clone().try_acquire_owned();
            async move {
                let Ok(permit) = permit else {
                    tally.note("not sent: 1000 in flight");
                    return;
                };
                tally.sent(1);
                tokio::spawn(async move {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/sdp")
                        .body(offer)
                        .send()
                        .await;
                    match r {
                        Ok(r) => tally.note(r.status().as_u16().to_string()),
                        Err(e) if e.is_timeout() => tally.note("timeout"),
                        Err(_) => tally.note("connection error"),
                    }
                    drop(permit);
                });
            }
        });
        Ok(())
    }

    /// One connected webrtc-rs viewer sending NACKs of 250 pairs (blp 0xffff) each.
    async fn nack_storm(
        &mut self,
        rate: f64,
        server: &Server,
        whep: &str,
    ) -> Result<(), BenchError> {
        let viewer = WhepViewer::connect(
            whep,
            None,
            ViewerOptions {
                record_arrival_log: false,
                ..Default::default()
            },
        )
        .await?;
        let by = Instant::now() + Duration::from_secs(5);
        let ssrc = loop {
            if let Some(ssrc) = viewer.video_ssrc().await {
                break ssrc;
            }
            if Instant::now() > by {
                return Err(BenchError::Setup("the NACKing viewer got no video".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Detached from its peer connection (two seconds after connecting), the viewer's
        // SRTCP is read by the engine itself, whatever its size.
        let counters = &server.running.relay.board().counters;
        let by = Instant::now() + Duration::from_secs(6);
        while counters.viewers_detached.load(Ordering::Relaxed) == 0 && Instant::now() < by {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let viewer = Arc::new(viewer);
        let (tally, v) = (self.tally.clone(), viewer.clone());
        let mut next: u16 = 0;
        self.unit = "NACK packets";
        self.extra = "250 pairs each, blp 0xffff, sweeping all sequence numbers".into();
        self.paced(rate, move || {
            // 250 pairs of 17 numbers each: 4,250 numbers a packet, the whole space in 16.
            let pairs: Vec<NackPair> = (0..250u16)
                .map(|i| NackPair {
                    packet_id: next.wrapping_add(17 * i),
                    lost_packets: 0xffff,
                })
                .collect();
            next = next.wrapping_add(17 * 250);
            let (tally, v) = (tally.clone(), v.clone());
            async move {
                let nack = TransportLayerNack {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                    nacks: pairs,
                };
                tally.sent(1);
                if v.send_video_rtcp(vec![Box::new(nack)]).await.is_err() {
                    tally.note("send failed");
                }
            }
        });
        self.viewer = Some(viewer);
        Ok(())
    }

    /// Binding requests naming real peers' username pairs, without MESSAGE-INTEGRITY,
    /// from one UDP socket.
    async fn stun_flood(
        &mut self,
        rate: f64,
        server: &Server,
        usernames: Usernames,
    ) -> Result<(), BenchError> {
        let socket = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(setup("attacker socket"))?,
        );
        let target = server.running.udp_addr;
        let by = Instant::now() + Duration::from_secs(5);
        while lock(&usernames).is_empty() {
            if Instant::now() > by {
                return Err(BenchError::Setup("no ICE username seen".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Sent in batches every 10 ms.
        let batch = ((rate / 100.0).round() as usize).max(1);
        let (tally, stop) = (self.tally.clone(), self.stop.clone());
        self.unit = "packets";
        self.offered = Some(batch as f64 * 100.0);
        self.extra = "USERNAME of the publisher's and each real viewer's pair as it appears".into();
        // Answers from the server to the attacker (there should be none).
        let (heard_tally, heard_socket) = (self.tally.clone(), socket.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while heard_socket.recv_from(&mut buf).await.is_ok() {
                heard_tally.note("datagram back to the attacker");
            }
        }));
        self.tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut n: u64 = 0;
            let mut packets: Vec<Vec<u8>> = Vec::new();
            let mut known = 0;
            while !stop.load(Ordering::Relaxed) {
                let names = lock(&usernames).clone();
                if names.len() != known {
                    known = names.len();
                    packets = names
                        .iter()
                        .flat_map(|u| (0..8).map(move |_| binding_request(u)))
                        .collect();
                }
                for i in 0..batch {
                    let p = &packets[(n as usize * batch + i) % packets.len()];
                    if socket.send_to(p, target).await.is_ok() {
                        tally.sent(1);
                    }
                }
                n += 1;
                tokio::time::sleep_until(start + Duration::from_millis(10 * n)).await;
            }
        }));
        Ok(())
    }

    /// Concurrent loops of POST /api/login with random names and passwords, from 127.0.0.3.
    fn login_flood(&mut self, workers: usize, base: &str) -> Result<(), BenchError> {
        let http = reqwest::Client::builder()
            .local_address(Some(IpAddr::from([127, 0, 0, 3])))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(setup("HTTP client"))?;
        self.unit = "POST";
        self.extra = format!("{workers} concurrent loops");
        let url = format!("{base}/api/login");
        for _ in 0..workers {
            let (http, url, tally, stop) = (
                http.clone(),
                url.clone(),
                self.tally.clone(),
                self.stop.clone(),
            );
            self.tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (user, password) = (
                        format!("u{:016x}", rand::random::<u64>()),
                        format!("p{:032x}", rand::random::<u128>()),
                    );
                    tally.sent(1);
                    let r = http
                        .post(&url)
                        .json(&serde_json::json!({"username": user, "password": password}))
                        .send()
                        .await;
                    match r {
                        Ok(r) => tally.note(r.status().as_u16().to_string()),
                        Err(e) if e.is_timeout() => tally.note("timeout"),
                        Err(_) => {
                            tally.note("connection error");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
        Ok(())
    }

    /// `hold` silent connections to the RTMP port at once, then `rate` more a second.
    fn rtmp_flood(&mut self, hold: usize, rate: f64, server: &Server) -> Result<(), BenchError> {
        let addr = server
            .running
            .rtmp_addr
            .ok_or_else(|| BenchError::Setup("no RTMP listener".into()))?;
        self.unit = "connections";
        self.extra = format!("{hold} at once, then {rate:.0}/s, all silent");
        for _ in 0..hold {
            self.tasks
                .push(tokio::spawn(silent_connection(addr, self.tally.clone())));
        }
        let tally = self.tally.clone();
        // The paced task's spawns are aborted with it: each connection registers itself.
        let held: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held2 = held.clone();
        self.paced(rate, move || {
            let h = tokio::spawn(silent_connection(addr, tally.clone()));
            lock(&held2).push(h);
            async {}
        });
        let stop = self.stop.clone();
        // Closes the paced connections at the end.
        self.tasks.push(tokio::spawn(async move {
            let _guard = AbortAll(held);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        self.offered = None;
        Ok(())
    }

    /// `n` connections to the HTTP port from 127.0.0.4, each sending one byte of a
    /// request every `interval` seconds.
    fn slowloris(&mut self, n: usize, interval: f64, addr: SocketAddr) {
        self.unit = "connections";
        self.extra = format!("1 header byte per connection every {interval} s");
        let interval = Duration::from_secs_f64(interval.max(0.01));
        for i in 0..n {
            let tally = self.tally.clone();
            self.tasks.push(tokio::spawn(async move {
                // Spread the connects over half a second.
                tokio::time::sleep(Duration::from_millis((i as u64 * 500) / n.max(1) as u64)).await;
                // From 127.0.0.4: the per-address connection cap is about this address,
                // not the real viewers' 127.0.0.1.
                let socket = tokio::net::TcpSocket::new_v4().and_then(|sock| {
                    sock.bind(SocketAddr::from(([127, 0, 0, 4], 0)))?;
                    Ok(sock)
                });
                let Ok(socket) = socket else {
                    tally.note("bind failed");
                    return;
                };
                let Ok(mut s) = socket.connect(addr).await else {
                    tally.note("connect failed");
                    return;
                };
                tally.sent(1);
                let _open = OpenConnection::new(&tally);
                let opened = Instant::now();
                let request = b"GET / HTTP/1.1\r\nHost: feiyan\r\nX-Slow: ";
                let mut buf = [0u8; 1024];
                let mut k = 0usize;
                loop {
                    let byte = request.get(k).copied().unwrap_or(b'a');
                    k += 1;
                    if s.write_all(&[byte]).await.is_err() {
                        tally.note(closed_after(opened));
                        return;
                    }
                    match tokio::time::timeout(interval, s.read(&mut buf)).await {
                        Err(_) => {}
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            tally.note(closed_after(opened));
                            return;
                        }
                        Ok(Ok(_)) => {
                            tally.note("answered");
                            return;
                        }
                    }
                }
            }));
        }
    }
}

/// Counts a connection in [`Tally::open`] while it lives.
struct OpenConnection(Arc<Tally>);

impl OpenConnection {
    fn new(tally: &Arc<Tally>) -> Self {
        tally.open.fetch_add(1, Ordering::Relaxed);
        Self(tally.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Aborts the tasks when dropped.
struct AbortAll(Arc<Mutex<Vec<JoinHandle<()>>>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for h in lock(&self.0).iter() {
            h.abort();
        }
    }
}

/// The tally name of a connection the server closed: by how long it had been open.
fn closed_after(opened: Instant) -> String {
    let s = opened.elapsed().as_secs_f64();
    let bucket = if s < 1.0 {
        "<1 s"
    } else if s < 5.0 {
        "1-5 s"
    } else if s < 15.0 {
        "5-15 s"
    } else if s < 20.0 {
        "15-20 s"
    } else if s < 30.0 {
        "20-30 s"
    } else {
        ">30 s"
    };
    format!("closed by server after {bucket}")
}

/// A TCP connection that sends nothing and notes when the server closes it.
async fn silent_connection(addr: SocketAddr, tally: Arc<Tally>) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        tally.note("connect failed");
        return;
    };
    tally.sent(1);
    let _open = OpenConnection::new(&tally);
    let opened = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => {
                tally.note(closed_after(opened));
                return;
            }
            Ok(_) => {}
        }
    }
}

/// The USERNAMEs (`serverUfrag:clientUfrag`) of the STUN checks clients sent, in order.
type Usernames = Arc<Mutex<Vec<String>>>;

/// The USERNAME of a STUN message, if it carries one.
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

/// Forwards datagrams between clients and the server's media port, noting the USERNAMEs
/// of the STUN checks clients send (as in tests/stun_routing.rs).
async fn spying_relay(listen: UdpSocket, server: SocketAddr, usernames: Usernames) {
    let listen = Arc::new(listen);
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf).await else {
            return;
        };
        if let Some(name) = stun_username(&buf[..n]) {
            let mut seen = lock(&usernames);
            if !seen.contains(&name) {
                seen.push(name);
            }
        }
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let u = Arc::new(u);
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

/// An unsigned Binding request naming `username`.
fn binding_request(username: &str) -> Vec<u8> {
    let setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(ATTR_USERNAME, username.to_string())),
        Box::new(FINGERPRINT),
    ];
    let mut msg = Message::new();
    match msg.build(&setters) {
        Ok(()) => msg.raw,
        Err(_) => Vec::new(),
    }
}

//! Latency benchmark (not a test): how long the server takes from an RTMP publisher
//! writing a picture to a WHEP viewer holding all of it (the picture's marker-bit RTP
//! packet), with the video passed through and with it transcoded by libx264.
//!
//! `cargo run --release --bin feiyan-latency-bench -- [SECONDS]` (default 30)
//!
//! Everything runs on loopback in this process: the real server (`app::start`), an RTMP
//! publisher built on `rml_rtmp` that sends a generated clip (640x360 30 fps H.264
//! constrained baseline + AAC, made by the ffmpeg CLI) in real time and notes when each
//! picture left, and a webrtc-rs WHEP viewer that notes when each picture arrived. The
//! viewer joins during a short first publish and stays; the measured publish is the next
//! session, so its first picture is the first one the viewer gets after the switch, which
//! anchors RTP timestamps to the sender's timestamps. The first second of each run is left
//! out (session start, decoder and encoder warm-up); the time until the first picture
//! arrives is printed on its own.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use feiyan::client::{ViewerOptions, WhepViewer};
use feiyan::config::Config;
use feiyan::config::VideoMode;

/// One FLV tag of the clip.
struct Tag {
    /// 8 audio, 9 video, 18 script.
    kind: u8,
    /// Milliseconds.
    ts: u32,
    body: Bytes,
}

impl Tag {
    /// A coded picture (not a sequence header).
    fn is_picture(&self) -> bool {
        self.kind == 9 && self.body.get(1) == Some(&1)
    }
}

fn flv_tags(file: &[u8]) -> anyhow::Result<Vec<Tag>> {
    if file.get(..3) != Some(b"FLV") || file.len() < 13 {
        bail!("not an FLV file");
    }
    let mut at = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize + 4;
    let mut tags = Vec::new();
    while at + 11 <= file.len() {
        let size = u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize;
        let ts = u32::from_be_bytes([file[at + 7], file[at + 4], file[at + 5], file[at + 6]]);
        let body = file
            .get(at + 11..at + 11 + size)
            .context("truncated FLV tag")?;
        tags.push(Tag {
            kind: file[at] & 0x1f,
            ts,
            body: Bytes::copy_from_slice(body),
        });
        at += 11 + size + 4;
    }
    Ok(tags)
}

/// Makes the clip with the ffmpeg CLI: testsrc + sine, H.264 without B-frames (so the
/// FLV timestamps are presentation times) and AAC 44.1 kHz.
fn make_clip(path: &Path, secs: u32) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &secs.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-bf", "0"])
        .args(["-g", "60", "-b:v", "800k", "-c:a", "aac", "-b:a", "96k"])
        .arg(path)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not make the clip");
    }
    Ok(())
}

/// Writes every outbound packet of `results` to the socket.
async fn send(sock: &mut TcpStream, results: Vec<ClientSessionResult>) -> anyhow::Result<()> {
    for r in results {
        if let ClientSessionResult::OutboundResponse(packet) = r {
            sock.write_all(&packet.bytes).await?;
        }
    }
    Ok(())
}

/// Connects, handshakes and asks to publish `stream_key` on app `live`.
async fn rtmp_publisher(
    addr: std::net::SocketAddr,
    stream_key: &str,
) -> anyhow::Result<(TcpStream, ClientSession)> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let mut handshake = Handshake::new(PeerType::Client);
    sock.write_all(&handshake.generate_outbound_p0_and_p1()?)
        .await?;
    let mut buf = vec![0u8; 64 * 1024];
    let leftover = loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            bail!("server closed during the handshake");
        }
        match handshake.process_bytes(&buf[..n])? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, results) = ClientSession::new(ClientSessionConfig::new())?;
    send(&mut sock, results).await?;
    let mut pending = session.handle_input(&leftover)?;
    pending.push(session.request_connection("live".into())?);
    let mut publishing = false;
    while !publishing {
        let mut outbound = Vec::new();
        for r in std::mem::take(&mut pending) {
            match r {
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    outbound.push(
                        session.request_publishing(stream_key.into(), PublishRequestType::Live)?,
                    );
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PublishRequestAccepted) => {
                    publishing = true;
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => bail!("connection refused: {description}"),
                other => outbound.push(other),
            }
        }
        send(&mut sock, outbound).await?;
        if publishing {
            break;
        }
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            bail!("server closed before accepting the publish (wrong key?)");
        }
        pending = session.handle_input(&buf[..n])?;
    }
    Ok((sock, session))
}

/// Publishes the tags with `ts < until_ms` in real time; returns when each picture was
/// handed to the socket, by FLV timestamp.
async fn publish(
    addr: std::net::SocketAddr,
    stream_key: &str,
    tags: &[Tag],
    until_ms: u32,
) -> anyhow::Result<HashMap<u32, Instant>> {
    let (sock, mut session) = rtmp_publisher(addr, stream_key).await?;
    let (mut rx, mut tx) = sock.into_split();
    // The server's acknowledgements and pings are not needed here: read and drop them.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while matches!(rx.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let start = tokio::time::Instant::now();
    let mut sent = HashMap::new();
    for tag in tags.iter().filter(|t| t.ts < until_ms) {
        tokio::time::sleep_until(start + Duration::from_millis(u64::from(tag.ts))).await;
        let ts = RtmpTimestamp::new(tag.ts);
        let packet = match tag.kind {
            9 => session.publish_video_data(tag.body.clone(), ts, false)?,
            8 => session.publish_audio_data(tag.body.clone(), ts, false)?,
            _ => continue,
        };
        // Noted before the write: after it, this task may be descheduled while the server
        // already forwards the picture.
        if tag.is_picture() {
            sent.insert(tag.ts, Instant::now());
        }
        if let ClientSessionResult::OutboundResponse(p) = packet {
            tx.write_all(&p.bytes).await?;
        }
    }
    tx.shutdown().await.ok();
    drain.abort();
    Ok(sent)
}

async fn wait_live(base: &str, channel: &str, live: bool) -> anyhow::Result<()> {
    for _ in 0..400 {
        let v: serde_json::Value = reqwest::get(format!("{base}/api/channels/{channel}"))
            .await?
            .json()
            .await?;
        if v["live"].as_bool() == Some(live) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("channel {channel} did not become live={live} within 10 s")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Figures of one run, ms.
struct Figures {
    first_picture_ms: f64,
    min: f64,
    median: f64,
    p95: f64,
    max: f64,
    measured: usize,
    sent: usize,
    received: usize,
    passthrough: bool,
}

async fn run(mode: VideoMode, tags: &[Tag], secs: u32) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.webrtc.udp_bind = "127.0.0.1:0".parse()?;
    config.webrtc.advertised_ips = vec!["127.0.0.1".parse()?];
    config.ingest.rtmp_listen = Some("127.0.0.1:0".parse()?);
    config.ingest.video = mode;
    config.catalog.database_url = format!("sqlite://{}/bench.db", dir.path().display());
    config.validate()?;
    let server = feiyan::app::start(config).await?;
    let station = server
        .catalog
        .add_station("基准中心", "基准所", "时延站")
        .await?;
    let base = server.base_url();
    let channel = station.channel.to_string();
    let rtmp = server.rtmp_addr.context("RTMP is off")?;
    let key = format!("{channel}?key={}", station.stream_key);

    // First publish: the viewer joins and stays for the next session.
    let warm = {
        let key = key.clone();
        let tags: Vec<Tag> = tags
            .iter()
            .filter(|t| t.ts < 3000)
            .map(|t| Tag {
                kind: t.kind,
                ts: t.ts,
                body: t.body.clone(),
            })
            .collect();
        tokio::spawn(async move { publish(rtmp, &key, &tags, 3000).await })
    };
    wait_live(&base, &channel, true).await?;
    let viewer = WhepViewer::connect(
        &format!("{base}/whep/{channel}"),
        None,
        ViewerOptions {
            record_frame_log: true,
            record_arrival_log: false,
            ..Default::default()
        },
    )
    .await?;
    warm.await??;
    wait_live(&base, &channel, false).await?;
    let before = viewer.video_frame_log().len();

    let started = Instant::now();
    let sent = publish(rtmp, &key, tags, secs * 1000).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let passthrough = mode == VideoMode::Passthrough;
    let log = viewer.video_frame_log();
    // Pictures of the first publish still in flight when it ended are not this run's.
    let first_send = sent.values().min().copied().unwrap_or(started);
    let frames: Vec<(u32, Instant)> = log[before..]
        .iter()
        .copied()
        .filter(|(_, at)| *at >= first_send)
        .collect();
    let first_ts = tags
        .iter()
        .find(|t| t.is_picture())
        .map(|t| t.ts)
        .context("no pictures")?;
    let Some(&(rtp0, arrived0)) = frames.first() else {
        bail!("the viewer received nothing from the measured publish");
    };
    let first_sent = sent.get(&first_ts).copied().unwrap_or(started);
    let mut latencies = Vec::new();
    for &(rtp, arrived) in &frames {
        let since_first = f64::from(rtp.wrapping_sub(rtp0)) / 90.0;
        let ts = first_ts + since_first.round() as u32;
        let Some(at) = [ts, ts.wrapping_sub(1), ts + 1]
            .iter()
            .find_map(|t| sent.get(t))
        else {
            continue;
        };
        if ts >= first_ts + 1000 {
            // Signed: a negative figure would mean the anchoring is wrong.
            let ms = if arrived >= *at {
                arrived.duration_since(*at).as_secs_f64() * 1000.0
            } else {
                -(at.duration_since(arrived).as_secs_f64() * 1000.0)
            };
            latencies.push(ms);
        }
    }
    if latencies.is_empty() {
        bail!("no picture could be matched to its send time");
    }
    latencies.sort_by(f64::total_cmp);
    viewer.close().await.ok();
    server.shutdown().await;
    Ok(Figures {
        min: latencies[0],
        first_picture_ms: arrived0.saturating_duration_since(first_sent).as_secs_f64() * 1000.0,
        median: percentile(&latencies, 0.5),
        p95: percentile(&latencies, 0.95),
        max: *latencies.last().unwrap_or(&0.0),
        measured: latencies.len(),
        sent: sent.len(),
        received: frames.len(),
        passthrough,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "warn,rtc=error,rtc_ice=error,rtc_dtls=off".into()),
        )
        .init();
    let secs: u32 = match std::env::args().nth(1) {
        Some(s) => s.parse().context("SECONDS must be a whole number")?,
        None => 30,
    };
    if secs < 5 {
        bail!("run at least 5 seconds");
    }
    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("clip.flv");
    make_clip(&clip, secs)?;
    let tags = flv_tags(&std::fs::read(&clip)?)?;
    println!(
        "RTMP in -> WebRTC out on loopback, {secs} s of 640x360 30 fps H.264 + AAC, {} build",
        if cfg!(debug_assertions) {
            "DEBUG (use --release for figures)"
        } else {
            "release"
        }
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>16}",
        "video", "min", "median", "p95", "max", "first", "pictures", "measured (>1 s)"
    );
    for mode in [VideoMode::Passthrough, VideoMode::Transcode] {
        let f = run(mode, &tags, secs).await?;
        println!(
            "{:<12} {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>6.1} ms {:>6.0} ms {:>6}/{:<7} {:>16}",
            if f.passthrough {
                "passthrough"
            } else {
                "transcoded"
            },
            f.min,
            f.median,
            f.p95,
            f.max,
            f.first_picture_ms,
            f.received,
            f.sent,
            f.measured
        );
    }
    Ok(())
}

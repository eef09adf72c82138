//! `latency`: glass-to-glass over HLS.
//!
//! The bench is the camera: a thread draws its wall clock (Unix ms, [`barcode`]) into each
//! 640x360 frame at 30 fps the moment it hands the frame to the ffmpeg CLI, which encodes it
//! (libx264 veryfast zerolatency, 2 s GOP, + AAC from a sine) and publishes over RTMP.
//! Viewers on the same machine read the clock back from each frame they present:
//! - `hlsjs`: hls.js (`lowLatencyMode`) in headless Chromium on `/hls/{c}/index.m3u8`; the
//!   page draws each presented frame (`requestVideoFrameCallback`) to a canvas and logs
//!   `Date.now()` minus the clock read, hls.js's own `latency`, and `Date.now()` minus
//!   `playingDate` (the server's ingest clock from `EXT-X-PROGRAM-DATE-TIME`).
//! - `ffmpeg`: the ffmpeg CLI on `/hls/{c}/ts.m3u8` with `-re` (it plays at the media's own
//!   rate, as a TV does), decoding to raw luma on a pipe; a frame is "presented" when the
//!   bench reads it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hyper::StatusCode;

use crate::barcode::{self, HEIGHT, WIDTH};
use crate::http1::Connection;
use crate::{BenchError, quantile, wall_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Viewer {
    /// hls.js in headless Chromium, low-latency HLS.
    Hlsjs,
    /// The ffmpeg CLI, plain HLS (MPEG-TS).
    Ffmpeg,
    /// Both, one after the other.
    Both,
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// The server's HTTP address.
    #[arg(long, default_value = "127.0.0.1:18080")]
    server: SocketAddr,
    /// The channel (the RTMP URL must publish to it).
    #[arg(long)]
    channel: String,
    /// Where to publish: `rtmp://HOST:PORT/live/{channel}?key={stream key}`.
    #[arg(long)]
    rtmp: String,
    /// Which viewer(s).
    #[arg(long, value_enum, default_value_t = Viewer::Both)]
    viewer: Viewer,
    /// Seconds each viewer watches.
    #[arg(long, default_value_t = 40.0)]
    duration: f64,
    /// Seconds of each viewer's start left out (startup and catching up).
    #[arg(long, default_value_t = 10.0)]
    skip: f64,
    /// ffmpeg's `-live_start_index` for the plain viewer (ffmpeg's default: -3).
    #[arg(long, default_value_t = -3, allow_hyphen_values = true)]
    live_start_index: i32,
    /// Video bitrate of the published clock, kbit/s.
    #[arg(long, default_value_t = 1000)]
    bitrate_kbps: u32,
    /// hls.js configuration (JSON), as the TV and watch pages set it.
    #[arg(
        long,
        default_value = r#"{"lowLatencyMode":true,"maxLiveSyncPlaybackRate":1.5}"#
    )]
    hlsjs_config: String,
    /// Chromium binary.
    #[arg(long, env = "FEIYAN_CHROMIUM", default_value = "chromium")]
    chromium: String,
}

/// One presented frame: when (s after the viewer started) and what was measured (ms).
struct Sample {
    at: f64,
    glass: f64,
    /// hls.js: `Date.now() - playingDate` (server ingest clock to display).
    from_ingest: Option<f64>,
    /// hls.js: its own `latency` estimate.
    hls_latency: Option<f64>,
}

/// The camera: frames with the clock drawn in, into ffmpeg's stdin at 30 fps.
struct Publisher {
    child: Child,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn start(rtmp: &str, kbps: u32) -> Result<Publisher, BenchError> {
        let rate = format!("{kbps}k");
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(["-f", "rawvideo", "-pix_fmt", "gray", "-video_size"])
            .arg(format!("{WIDTH}x{HEIGHT}"))
            .args(["-framerate", "30", "-i", "pipe:0"])
            .args([
                "-re",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
            ])
            .args([
                "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast",
            ])
            .args(["-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "60"])
            .args(["-keyint_min", "60", "-sc_threshold", "0", "-b:v", &rate])
            .args(["-maxrate", &rate, "-bufsize", &rate])
            .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv"])
            .arg(rtmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| BenchError::Setup(format!("starting ffmpeg (publisher): {e}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| BenchError::Setup("ffmpeg's stdin".into()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut frame = vec![128u8; WIDTH * HEIGHT];
            let start = Instant::now();
            for i in 0u64.. {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let due = start + Duration::from_secs_f64(i as f64 / 30.0);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // Something that moves, below the clock: a bar one frame's step at a time.
                let bar = (i as usize * 8) % WIDTH;
                for line in frame[200 * WIDTH..].chunks_mut(WIDTH) {
                    line.fill(128);
                    line[bar..(bar + 40).min(WIDTH)].fill(200);
                }
                barcode::draw(&mut frame, wall_ms() as u64);
                if stdin.write_all(&frame).is_err() {
                    break;
                }
            }
        });
        Ok(Publisher {
            child,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child in its own process group, ended with the group (Chromium's helpers too).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) with the negated id of the process group we created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.0.wait();
    }
}

fn spawn_group(mut cmd: Command) -> Result<Group, BenchError> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .spawn()
        .map(Group)
        .map_err(|e| BenchError::Setup(format!("starting {cmd:?}: {e}")))
}

pub fn run(args: LatencyArgs) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("starting tokio: {e}")))?;
    let _publisher = Publisher::start(&args.rtmp, args.bitrate_kbps)?;
    // The playlist URLs with a vid, once the channel has a segment.
    let (ll_url, ts_url) = runtime.block_on(async {
        let mut c = Connection::new(args.server);
        let mut urls = Vec::new();
        for form in ["index.m3u8", "ts.m3u8"] {
            let a = c
                .get(&format!("/hls/{}/{form}", args.channel), false)
                .await
                .map_err(|e| BenchError::Setup(format!("HLS: {e}")))?;
            urls.push(a.location.ok_or_else(|| {
                BenchError::Setup(format!("{form}: {}, not a redirect", a.status))
            })?);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = c.get(&urls[0], false).await;
            if matches!(&a, Ok(a) if a.status == StatusCode::OK) {
                break;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(
                    "the channel did not go live in 30 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok::<_, BenchError>((urls[0].clone(), urls[1].clone()))
    })?;
    let base = format!("http://{}", args.server);
    // Let the playlist fill a few segments, as for a viewer who tunes in later.
    std::thread::sleep(Duration::from_secs(8));
    let duration = Duration::from_secs_f64(args.duration);
    println!(
        "glass-to-glass: clock drawn at the camera -> read from the presented frame (ms); this machine is shared: figures are noisy"
    );
    if args.viewer != Viewer::Ffmpeg {
        let samples = hlsjs(&args, &format!("{base}{ll_url}"), duration)?;
        report(
            &format!("LL-HLS, hls.js in Chromium, {}", args.hlsjs_config),
            &samples,
            args.skip,
        );
    }
    if args.viewer != Viewer::Hlsjs {
        let samples = ffmpeg(&format!("{base}{ts_url}"), args.live_start_index, duration)?;
        report(
            &format!(
                "plain HLS (ts.m3u8), ffmpeg CLI -re -live_start_index {}",
                args.live_start_index
            ),
            &samples,
            args.skip,
        );
    }
    Ok(())
}

fn report(name: &str, samples: &[Sample], skip: f64) {
    let kept: Vec<&Sample> = samples.iter().filter(|s| s.at >= skip).collect();
    let sorted = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let mut v: Vec<f64> = kept.iter().filter_map(|s| f(s)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let glass = sorted(&|s| Some(s.glass));
    println!(
        "{name}: {} frames read ({} after the first {skip} s); glass-to-glass min {:.0} / median {:.0} / p95 {:.0} / max {:.0} ms",
        samples.len(),
        glass.len(),
        quantile(&glass, 0.0),
        quantile(&glass, 0.5),
        quantile(&glass, 0.95),
        quantile(&glass, 1.0),
    );
    let ingest = sorted(&|s| s.from_ingest);
    let own = sorted(&|s| s.hls_latency);
    if !ingest.is_empty() {
        let camera_to_ingest = sorted(&|s| s.from_ingest.map(|i| s.glass - i));
        println!(
            "  server ingest clock (EXT-X-PROGRAM-DATE-TIME) -> presented, via hls.playingDate: median {:.0} / p95 {:.0} ms; \
             so camera -> server ingest (encoder + RTMP) median {:.0} ms; hls.js's own latency estimate median {:.0} ms",
            quantile(&ingest, 0.5),
            quantile(&ingest, 0.95),
            quantile(&camera_to_ingest, 0.5),
            quantile(&own, 0.5) * 1000.0,
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "viewer": name, "frames": glass.len(), "glass_min_ms": quantile(&glass, 0.0),
            "glass_median_ms": quantile(&glass, 0.5), "glass_p95_ms": quantile(&glass, 0.95),
            "glass_max_ms": quantile(&glass, 1.0), "ingest_to_screen_median_ms": quantile(&ingest, 0.5),
        })
    );
}

/// The ffmpeg CLI as a plain-HLS player: `-re` plays at the media's rate.
fn ffmpeg(url: &str, live_start_index: i32, duration: Duration) -> Result<Vec<Sample>, BenchError> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .arg("-live_start_index")
        .arg(live_start_index.to_string())
        .args([
            "-i", url, "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray",
        ])
        .arg("pipe:1")
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = spawn_group(cmd)?;
    let mut out = child
        .0
        .stdout
        .take()
        .ok_or_else(|| BenchError::Setup("ffmpeg's stdout".into()))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut frame = vec![0u8; WIDTH * HEIGHT];
        while out.read_exact(&mut frame).is_ok() {
            let now = wall_ms();
            if let Some(stamp) = barcode::read(&frame) {
                let sample = Sample {
                    at: start.elapsed().as_secs_f64(),
                    glass: now - stamp as f64,
                    from_ingest: None,
                    hls_latency: None,
                };
                if tx.send(sample).is_err() {
                    break;
                }
            }
        }
    });
    let samples = collect(&rx, start + duration);
    drop(child);
    Ok(samples)
}

fn collect(rx: &mpsc::Receiver<Sample>, until: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(s) => samples.push(s),
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    samples
}

/// hls.js in headless Chromium. The page is a local file; the bench reads its console
/// lines from Chromium's stderr.
fn hlsjs(args: &LatencyArgs, url: &str, duration: Duration) -> Result<Vec<Sample>, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(format!("temp dir: {e}")))?;
    let page = dir.path().join("ll.html");
    let html = format!(
        r#"<!doctype html><meta charset="utf-8"><video id="v" muted autoplay playsinline width="{WIDTH}" height="{HEIGHT}"></video>
<canvas id="c" width="{WIDTH}" height="{HEIGHT}"></canvas>
<script src="http://{server}/assets/vendor/hls.min.js"></script>
<script>
{read}
const v = document.getElementById('v');
const ctx = document.getElementById('c').getContext('2d', {{ willReadFrequently: true }});
const hls = new Hls({config});
hls.on(Hls.Events.ERROR, (e, d) => console.log('FYERR ' + d.type + ' ' + d.details + ' ' + d.fatal));
hls.loadSource({url:?});
hls.attachMedia(v);
v.play().catch(e => console.log('FYERR play ' + e));
let n = 0;
function frame() {{
  const now = Date.now();
  ctx.drawImage(v, 0, 0, {WIDTH}, {HEIGHT});
  const stamp = readClock(ctx.getImageData(0, 0, {WIDTH}, 140).data, {WIDTH});
  if (stamp !== null && n++ % 3 === 0) {{
    const pd = hls.playingDate;
    console.log('FYLAT ' + JSON.stringify({{ glass: now - stamp, ingest: pd ? now - pd.getTime() : null, lat: hls.latency }}));
  }}
  v.requestVideoFrameCallback(frame);
}}
v.requestVideoFrameCallback(frame);
</script>"#,
        server = args.server,
        read = barcode::READ_JS,
        config = args.hlsjs_config,
    );
    std::fs::write(&page, html).map_err(|e| BenchError::Setup(format!("writing page: {e}")))?;
    let profile = dir.path().join("profile");
    let mut cmd = Command::new(&args.chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-web-security",
        "--allow-file-access-from-files",
        "--enable-logging=stderr",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("file://{}", page.display()))
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = spawn_group(cmd)?;
    let err = child
        .0
        .stderr
        .take()
        .ok_or_else(|| BenchError::Setup("chromium's stderr".into()))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(at) = line.find("FYERR ") {
                eprintln!("hls.js: {}", &line[at..]);
            }
            let Some(at) = line.find("FYLAT ") else {
                continue;
            };
            let json = line[at + 6..].split("\", source:").next().unwrap_or("");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
                continue;
            };
            let Some(glass) = v["glass"].as_f64() else {
                continue;
            };
            let sample = Sample {
                at: start.elapsed().as_secs_f64(),
                glass,
                from_ingest: v["ingest"].as_f64(),
                hls_latency: v["lat"].as_f64(),
            };
            if tx.send(sample).is_err() {
                break;
            }
        }
    });
    let samples = collect(&rx, start + duration);
    drop(child);
    Ok(samples)
}

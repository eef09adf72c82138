//! Transcode benchmark (not a test): CPU time of the ffmpeg-next stage against the ffmpeg
//! CLI doing the same job (720p30 H.264 with B-frames + AAC -> 360p libx264 baseline
//! zerolatency + Opus), and how much 720p30 -> 360p work fits in real time; then the VP8
//! codec bridge (H.264 access units -> libvpx realtime at the source's size, as
//! `ingest::ladder` runs it for VP8-only viewers) at 360p and 720p against the ffmpeg CLI
//! with the same libvpx settings, in CPU seconds per second of video.
//!
//! `cargo run --bin feiyan-transcode-bench -- [SECONDS] [PARALLEL]`
//!
//! `cargo run --release --bin feiyan-transcode-bench -- aac [SECONDS]` measures only the
//! Opus -> AAC-LC encoder a WHIP channel's live HLS runs (`transcode::aac`), on 60 s of
//! audio by default: CPU per second of audio, fed as fast as it takes it.
//!
//! `cargo run --bin feiyan-transcode-bench -- export [MINUTES] [KBPS]` measures a replay's
//! MP4 export (`recording::export_mp4`, a stream copy) of a recording-shaped input: a
//! 90-minute lecture by default at 1500 kbit/s CBR video (640x360, filler NALs keep the
//! bytes a real lecture would have) + 96 kbit/s AAC, as 2 s fMP4 segments and a VOD
//! playlist; beside it the ffmpeg CLI doing the same remux.

use std::process::Command;
use std::time::Instant;

use feiyan::config::{RenditionSpec, VideoMode};
use feiyan::media::{AccessUnit, Codec, MediaKind, Track};
use feiyan::transcode::aac::AacEncoder;
use feiyan::transcode::demux::Demuxer;
use feiyan::transcode::{Encoded, TranscodeOptions, Transcoder, VideoInput};

/// `[ingest] video_kbps` by default: the bridge's VP8 bitrate (and its maximum).
const BRIDGE_KBPS: u32 = 1500;

fn cpu_secs(who: i32) -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn ours(path: &str) -> anyhow::Result<(usize, usize)> {
    let mut demuxer = Demuxer::open(path, &[])?;
    let options = TranscodeOptions {
        video_mode: VideoMode::Transcode,
        video_kbps: 800,
        scale_height: Some(360),
        ..TranscodeOptions::default()
    };
    let (transcoder, mut out) =
        Transcoder::start(demuxer.take_video(), demuxer.take_audio(), &options)?;
    let drain = std::thread::spawn(move || {
        let (mut v, mut a) = (0, 0);
        while let Some(e) = out.blocking_recv() {
            match e {
                feiyan::transcode::Encoded::Video { .. } => v += 1,
                feiyan::transcode::Encoded::Audio { .. } => a += 1,
                feiyan::transcode::Encoded::OriginalAudio(_) => {}
            }
        }
        (v, a)
    });
    while let Some(p) = demuxer.read()? {
        transcoder.push_blocking(p)?;
    }
    transcoder.finish();
    drain
        .join()
        .map_err(|_| anyhow::anyhow!("drain thread panicked"))
}

/// Feeds `path` in real time and returns the median and worst time from handing a video
/// packet to the stage until its encoded picture comes out (pictures matched by pts).
fn latency(path: &str, mode: VideoMode) -> anyhow::Result<(f64, f64, bool)> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let mut demuxer = Demuxer::open(path, &[])?;
    let options = TranscodeOptions {
        video_mode: mode,
        video_kbps: 1500,
        ..TranscodeOptions::default()
    };
    let (transcoder, mut out) = Transcoder::start(demuxer.take_video(), None, &options)?;
    let passthrough = transcoder.video_passthrough();
    let pushed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let seen = pushed.clone();
    let drain = std::thread::spawn(move || {
        let mut lat = Vec::new();
        while let Some(e) = out.blocking_recv() {
            if let feiyan::transcode::Encoded::Video { pts_90k, .. } = e {
                let at = seen
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&(pts_90k * 100 / 9)).copied());
                if let Some(at) = at {
                    lat.push(at.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        lat
    });
    let start = Instant::now();
    let mut first = None;
    while let Some(p) = demuxer.read()? {
        if p.kind != feiyan::media::MediaKind::Video {
            continue;
        }
        let origin = *first.get_or_insert(p.dts_us);
        let due = std::time::Duration::from_micros((p.dts_us - origin).max(0) as u64);
        if due > start.elapsed() {
            std::thread::sleep(due - start.elapsed());
        }
        if let Ok(mut m) = pushed.lock() {
            m.insert(p.pts_us, Instant::now());
        }
        transcoder.push_blocking(p)?;
    }
    transcoder.finish();
    let mut lat = drain
        .join()
        .map_err(|_| anyhow::anyhow!("drain panicked"))?;
    lat.sort_by(|a, b| a.total_cmp(b));
    anyhow::ensure!(!lat.is_empty(), "no pictures matched");
    Ok((lat[lat.len() / 2], lat[lat.len() - 1], passthrough))
}

/// The codec bridge's encode as `ingest::ladder::run_bridge` sets it up for a VP8-only
/// viewer of an H.264 channel: the channel's access units (Annex-B, parameter sets in-band,
/// here read from an MPEG-TS file) are decoded once and encoded by one libvpx rung at the
/// source's size. Returns the VP8 frames and bytes that came out.
fn bridge(path: &str) -> anyhow::Result<(usize, usize)> {
    let mut demuxer = Demuxer::open(path, &[])?;
    let options = TranscodeOptions {
        main_video: false,
        renditions: vec![RenditionSpec {
            name: "bridge".into(),
            height: 4320,
            video_kbps: BRIDGE_KBPS,
        }],
        rendition_codec: Codec::Vp8,
        video_thread: "fy-tc-bridge",
        ..TranscodeOptions::default()
    };
    let input = VideoInput::from_units(Codec::H264)?;
    let (transcoder, mut out) = Transcoder::start(Some(input), None, &options)?;
    let drain = std::thread::spawn(move || {
        let (mut frames, mut bytes) = (0, 0);
        while let Some(e) = out.blocking_recv() {
            if let Encoded::Video { access_unit, .. } = e {
                frames += 1;
                bytes += access_unit.len();
            }
        }
        (frames, bytes)
    });
    while let Some(p) = demuxer.read()? {
        if p.kind == MediaKind::Video {
            transcoder.push_blocking(p)?;
        }
    }
    transcoder.finish();
    drain
        .join()
        .map_err(|_| anyhow::anyhow!("drain thread panicked"))
}

/// Runs of each VP8 measurement, alternated so a change in the machine's speed falls on
/// both sides.
const BRIDGE_RUNS: usize = 5;

/// The ffmpeg CLI doing the bridge's job on the same file: decode the H.264, encode VP8
/// with the same libvpx settings (`cpu_used` 8 as the stage has it; -8 fixes the speed),
/// discard the output.
fn bridge_cli(path: &std::path::Path, cpu_used: &str) -> anyhow::Result<()> {
    let kbps = format!("{BRIDGE_KBPS}k");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(path)
        .args([
            "-an",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            cpu_used,
        ])
        .args([
            "-lag-in-frames",
            "0",
            "-error-resilient",
            "1",
            "-auto-alt-ref",
            "0",
        ])
        .args([
            "-threads", "2", "-b:v", &kbps, "-maxrate", &kbps, "-g", "60",
        ])
        .args(["-f", "null", "-"])
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg CLI VP8 encode failed");
    Ok(())
}

/// CPU seconds per second of video, one per run.
#[derive(Default)]
struct BridgeFigures {
    ours: Vec<f64>,
    cli: Vec<f64>,
    cli_fixed: Vec<f64>,
    /// VP8 frames and kbit/s the bridge put out (last run).
    frames: usize,
    kbps: f64,
}

/// The bridge and the CLI, alternated, on a source of `height` lines: H.264 constrained
/// baseline 30 fps as a browser or OBS publisher sends it.
fn bridge_figures(dir: &std::path::Path, secs: u32, height: u32) -> anyhow::Result<BridgeFigures> {
    let width = height * 16 / 9;
    let source = dir.join(format!("{height}p-baseline.ts"));
    let source_kbps = if height >= 720 { "3000k" } else { "1000k" };
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size={width}x{height}:rate=30"))
        .arg("-t")
        .arg(secs.to_string())
        .args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
        ])
        .args(["-b:v", source_kbps, "-g", "60"])
        .arg(&source)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make the {height}p source");

    let video_secs = f64::from(secs);
    let mut figures = BridgeFigures::default();
    for _ in 0..BRIDGE_RUNS {
        let c0 = cpu_secs(libc::RUSAGE_SELF);
        let (frames, bytes) = bridge(&source.to_string_lossy())?;
        figures
            .ours
            .push((cpu_secs(libc::RUSAGE_SELF) - c0) / video_secs);
        figures.frames = frames;
        figures.kbps = bytes as f64 * 8.0 / video_secs / 1000.0;
        for (cpu_used, into) in [("8", &mut figures.cli), ("-8", &mut figures.cli_fixed)] {
            let c0 = cpu_secs(libc::RUSAGE_CHILDREN);
            bridge_cli(&source, cpu_used)?;
            into.push((cpu_secs(libc::RUSAGE_CHILDREN) - c0) / video_secs);
        }
    }
    Ok(figures)
}

fn median(runs: &[f64]) -> f64 {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

/// `median (min-max)` of the runs.
fn spread(runs: &[f64]) -> String {
    let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = runs.iter().copied().fold(0.0, f64::max);
    format!("{:.2} ({min:.2}-{max:.2})", median(runs))
}

/// Opus as a WHIP publisher's channel carries it: `secs` of `source` (an ffmpeg lavfi audio
/// source) encoded with libopus 64 kb/s in 20 ms packets, pts on the 48 kHz clock.
fn opus_units(dir: &std::path::Path, source: &str, secs: u32) -> anyhow::Result<Vec<AccessUnit>> {
    let path = dir.join("opus.ogg");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", source, "-t"])
        .arg(secs.to_string())
        .args(["-ac", "2", "-c:a", "libopus", "-b:a", "64k"])
        .arg(&path)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make the Opus input");
    let packets = feiyan::client::media::ogg_opus_packets(&std::fs::read(&path)?)?;
    let mut pts = 0;
    Ok(packets
        .into_iter()
        .map(|data| {
            let unit = AccessUnit {
                track: Track::Audio,
                codec: Codec::Opus,
                pts,
                dts: pts,
                timescale: 48_000,
                keyframe: true,
                data,
            };
            pts +=
                i64::from(feiyan::client::media::opus_packet_duration(&unit.data).unwrap_or(960));
            unit
        })
        .collect())
}

/// CPU seconds a thread of this process has run so far (`schedstat`, ns), by its tid.
fn thread_cpu_secs(tid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// The tid of this process's thread named `name`.
fn thread_named(name: &str) -> Option<String> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
        let task = task.ok()?;
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim_end() == name).then(|| task.file_name().to_string_lossy().into_owned())
    })
}

/// One run of one channel's AAC encoder over `units`, as fast as it goes without the queue
/// ever dropping (at most 128 units in flight). Returns the encoder thread's CPU s, the
/// process's CPU s, wall s, AAC frames and bytes.
fn aac_run(units: &[AccessUnit]) -> anyhow::Result<(f64, f64, f64, usize, usize)> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let mut encoder = AacEncoder::start("bench")?;
        let tid =
            thread_named("fy-tc-aac").ok_or_else(|| anyhow::anyhow!("no fy-tc-aac thread"))?;
        let thread0 = thread_cpu_secs(&tid).unwrap_or(0.0);
        let cpu0 = cpu_secs(libc::RUSAGE_SELF);
        let t0 = Instant::now();
        let (mut frames, mut bytes, mut pushed) = (0usize, 0usize, 0i64);
        let mut thread_cpu = 0.0;
        for unit in units {
            while pushed - frames as i64 * 1024 > 128 * 960 {
                let aac = encoder
                    .recv()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("encoder stopped"))?;
                frames += 1;
                bytes += aac.data.len();
            }
            pushed += 960;
            anyhow::ensure!(encoder.push(unit.clone()), "encoder stopped");
        }
        encoder.finish();
        while let Some(aac) = encoder.recv().await {
            frames += 1;
            bytes += aac.data.len();
            // The thread exits after its last unit: keep the last reading it answered.
            if let Some(cpu) = thread_cpu_secs(&tid) {
                thread_cpu = cpu - thread0;
            }
        }
        anyhow::ensure!(
            encoder.dropped() == 0,
            "{} units dropped",
            encoder.dropped()
        );
        Ok((
            thread_cpu,
            cpu_secs(libc::RUSAGE_SELF) - cpu0,
            t0.elapsed().as_secs_f64(),
            frames,
            bytes,
        ))
    })
}

/// Runs the ffmpeg CLI with `args`, failing with its error output.
fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `feiyan-transcode-bench export [MINUTES] [KBPS]`: the replay's MP4 export of a lecture.
fn export_figures(minutes: u32, kbps: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("clip.mp4");
    let clip_s = clip.to_string_lossy().to_string();
    let rate = format!("{kbps}k");
    let made = Instant::now();
    // One minute encoded once (cheap: 360p, ultrafast), looped into the lecture below.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "60",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "50",
        "-keyint_min",
        "50",
        "-sc_threshold",
        "0",
        "-b:v",
        &rate,
        "-minrate",
        &rate,
        "-maxrate",
        &rate,
        "-bufsize",
        &rate,
        "-x264-params",
        "nal-hrd=cbr",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-ac",
        "2",
        &clip_s,
    ])?;
    // The recording's layout: init-0.mp4, seg-{n}.m4s, vod.m3u8 (2 s segments).
    let rec = dir.path().join("recording");
    std::fs::create_dir(&rec)?;
    let loops = minutes.saturating_sub(1).to_string();
    let seg_pattern = rec.join("seg-%d.m4s").to_string_lossy().to_string();
    let playlist = rec.join("vod.m3u8");
    ffmpeg(&[
        "-stream_loop",
        &loops,
        "-i",
        &clip_s,
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init-0.mp4",
        "-hls_segment_filename",
        &seg_pattern,
        "-hls_playlist_type",
        "vod",
        &playlist.to_string_lossy(),
    ])?;
    let (mut input_bytes, mut segments) = (0u64, 0usize);
    for entry in std::fs::read_dir(&rec)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".m4s") || name.ends_with(".mp4") {
            input_bytes += entry.metadata()?.len();
            segments += usize::from(name.ends_with(".m4s"));
        }
    }
    println!(
        "input: {minutes} min recording, {segments} segments, {:.1} MB (made in {:.0} s)",
        input_bytes as f64 / 1e6,
        made.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for run in 0..3 {
        let out = dir.path().join(format!("export-{run}.mp4"));
        let cpu = cpu_secs(libc::RUSAGE_SELF);
        let wall = Instant::now();
        let report = feiyan::recording::export::export_mp4(&playlist, &out)?;
        let (wall, cpu) = (
            wall.elapsed().as_secs_f64(),
            cpu_secs(libc::RUSAGE_SELF) - cpu,
        );
        println!(
            "feiyan export {run}: {wall:.2} s wall, {cpu:.2} s CPU, {:.1} MB, {} video + {} audio frames, {:.1} min",
            report.bytes as f64 / 1e6,
            report.video_frames,
            report.audio_frames,
            report.duration_ms as f64 / 60_000.0
        );
        rows.push((wall, cpu));
        std::fs::remove_file(&out)?;
    }
    let out = dir.path().join("cli.mp4");
    let cpu = cpu_secs(libc::RUSAGE_CHILDREN);
    let wall = Instant::now();
    ffmpeg(&[
        "-protocol_whitelist",
        "file",
        "-i",
        &playlist.to_string_lossy(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        &out.to_string_lossy(),
    ])?;
    let (cli_wall, cli_cpu) = (
        wall.elapsed().as_secs_f64(),
        cpu_secs(libc::RUSAGE_CHILDREN) - cpu,
    );
    println!("ffmpeg CLI remux: {cli_wall:.2} s wall, {cli_cpu:.2} s CPU");
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, cpu) = rows[rows.len() / 2];
    println!(
        "| {minutes} min, {kbps} kbit/s + 96 kbit/s AAC | {:.0} MB | {wall:.1} s | {cpu:.1} s | {:.0}x | {cli_wall:.1} s |",
        input_bytes as f64 / 1e6,
        f64::from(minutes) * 60.0 / wall
    );
    Ok(())
}

/// `feiyan-transcode-bench aac [SECONDS]`: the AAC encoder of one WHIP channel's live HLS.
fn aac_figures(secs: u32) -> anyhow::Result<()> {
    const RUNS: usize = 5;
    let dir = tempfile::tempdir()?;
    let sources = [
        ("440 Hz tone", "sine=frequency=440:sample_rate=48000".to_owned()),
        (
            "two tones + uncorrelated noise, stereo",
            "aevalsrc=0.3*sin(2*PI*440*t)+0.1*(2*random(0)-1)|0.3*sin(2*PI*660*t)+0.1*(2*random(1)-1):s=48000"
                .to_owned(),
        ),
    ];
    println!(
        "Opus (libopus 64k, 20 ms) -> AAC-LC 48 kHz stereo 128k (transcode::aac, one channel), \
         {secs} s of audio fed as fast as it is taken; median (min-max) of {RUNS} runs"
    );
    println!(
        "| input | encoder thread, core-ms per s of audio | whole process, core-ms per s | % of one core in real time (thread) | speed | output |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, source) in sources {
        let units = opus_units(dir.path(), &source, secs)?;
        let audio_secs = f64::from(secs);
        let (mut thread, mut process, mut speed) = (Vec::new(), Vec::new(), Vec::new());
        let mut output = String::new();
        for _ in 0..RUNS {
            let (t, p, wall, frames, bytes) = aac_run(&units)?;
            thread.push(t * 1000.0 / audio_secs);
            process.push(p * 1000.0 / audio_secs);
            speed.push(audio_secs / wall);
            output = format!(
                "{frames} frames, {:.0} kb/s",
                bytes as f64 * 8.0 / audio_secs / 1000.0
            );
        }
        println!(
            "| {name} | {} | {} | {:.2}% | {:.0}x real time | {output} |",
            spread(&thread),
            spread(&process),
            median(&thread) / 10.0,
            median(&speed),
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("export") {
        let minutes = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(90);
        let kbps = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1500);
        return export_figures(minutes, kbps);
    }
    if args.get(1).map(String::as_str) == Some("aac") {
        return aac_figures(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60));
    }
    let secs: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let parallel: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("720p.mp4");
    let input_s = input.to_string_lossy().to_string();
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=1280x720:rate=30")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
        ])
        .arg(secs.to_string())
        .args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-bf",
            "3",
        ])
        .args(["-b:v", "3000k", "-c:a", "aac", "-b:a", "128k"])
        .arg(&input)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make the input");

    let cpu0 = cpu_secs(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let (v, a) = ours(&input_s)?;
    let ours_wall = t0.elapsed().as_secs_f64();
    let ours_cpu = cpu_secs(libc::RUSAGE_SELF) - cpu0;

    let c0 = cpu_secs(libc::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args([
            "-vf",
            "scale=-2:360:flags=bilinear",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        .args([
            "-tune",
            "zerolatency",
            "-profile:v",
            "baseline",
            "-b:v",
            "800k",
            "-g",
            "60",
        ])
        .args([
            "-c:a", "libopus", "-b:a", "64k", "-ar", "48000", "-ac", "2", "-f", "null", "-",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg CLI transcode failed");
    let cli_wall = t0.elapsed().as_secs_f64();
    let cli_cpu = cpu_secs(libc::RUSAGE_CHILDREN) - c0;

    let t0 = Instant::now();
    let jobs: Vec<_> = (0..parallel)
        .map(|_| {
            let p = input_s.clone();
            std::thread::spawn(move || ours(&p).map(|_| ()).map_err(|e| e.to_string()))
        })
        .collect();
    for j in jobs {
        j.join()
            .map_err(|_| anyhow::anyhow!("job panicked"))?
            .map_err(anyhow::Error::msg)?;
    }
    let par_wall = t0.elapsed().as_secs_f64();

    println!(
        "input: {secs} s of 720p30 H.264 high (B-frames) + AAC 44.1 kHz -> 360p libx264 veryfast baseline 800k + Opus 64k"
    );
    println!(
        "feiyan (ffmpeg-next): {v} video + {a} audio packets, CPU {ours_cpu:.2} s, wall {ours_wall:.2} s ({:.1}x real time)",
        f64::from(secs) / ours_wall
    );
    println!(
        "ffmpeg CLI:           CPU {cli_cpu:.2} s, wall {cli_wall:.2} s ({:.1}x real time)",
        f64::from(secs) / cli_wall
    );
    println!("CPU ratio feiyan / CLI: {:.3}", ours_cpu / cli_cpu);
    println!(
        "{parallel} parallel transcodes: wall {par_wall:.2} s -> about {:.1} concurrent 720p30->360p streams in real time on this machine",
        f64::from(secs) * parallel as f64 / par_wall
    );
    let baseline = dir.path().join("720p-baseline.mp4");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args([
            "-an",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-b:v",
            "3000k",
        ])
        .arg(&baseline)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make the baseline input");
    let (med, max, pass) = latency(&baseline.to_string_lossy(), VideoMode::Auto)?;
    println!(
        "latency added, 720p baseline (passthrough={pass}): median {med:.1} ms, max {max:.1} ms"
    );
    let (med, max, pass) = latency(&input_s, VideoMode::Auto)?;
    println!(
        "latency added, 720p high with B-frames (passthrough={pass}): median {med:.1} ms, max {max:.1} ms"
    );

    println!();
    println!(
        "VP8 codec bridge: {secs} s of H.264 constrained baseline 30 fps (decode included) -> \
         libvpx realtime cpu-used 8, {BRIDGE_KBPS} kbps, at the source's size"
    );
    println!(
        "CPU seconds (getrusage) per second of video, median (min-max) of {BRIDGE_RUNS} \
         alternated runs; the last column is the CLI with the speed fixed at 8 (cpu-used -8)"
    );
    println!(
        "| source | feiyan bridge | ffmpeg CLI | feiyan / CLI (medians) | bridge output | ffmpeg CLI, cpu-used -8 |"
    );
    println!("|---|---|---|---|---|---|");
    for height in [360, 720] {
        let f = bridge_figures(dir.path(), secs, height)?;
        println!(
            "| {height}p30 | {} | {} | {:.2}x | {} frames, {:.0} kbps | {} |",
            spread(&f.ours),
            spread(&f.cli),
            median(&f.ours) / median(&f.cli),
            f.frames,
            f.kbps,
            spread(&f.cli_fixed),
        );
    }
    Ok(())
}

//! `feiyan-hls-bench`: live HLS against a running server, as players see it.
//!
//! - `load`: N plain players (reload the media playlist every target duration, fetch each
//!   new segment once) and N low-latency players (blocking reload `_HLS_msn`/`_HLS_part` of
//!   the next part, then that part), each on its own HTTP/1.1 keep-alive connection with its
//!   own `vid`, all in one tokio runtime. Reports the server's CPU and RSS per viewer (from
//!   /proc), the client's own CPU (getrusage), requests/s, bytes/s and whether every player
//!   kept pace.
//! - `latency`: glass-to-glass. The bench is the camera: it draws its wall clock into every
//!   frame as a barcode and publishes over RTMP (ffmpeg CLI, libx264 zerolatency); the
//!   viewers (hls.js in headless Chromium for LL-HLS, the ffmpeg CLI for plain HLS) read the
//!   barcode of each frame they present and subtract it from the clock.
//!
//! `scripts/bench-hls.sh` starts a scratch server and runs either mode against it.

mod barcode;
mod http1;
mod latency;
mod load;
mod playlist;
#[path = "../feiyan-bench/process.rs"]
mod process;

use clap::{Parser, Subcommand};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "feiyan-hls-bench",
    about = "Live HLS benchmarks: serving cost under N players, and glass-to-glass latency"
)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N plain and N low-latency players on one live channel.
    Load(load::LoadArgs),
    /// Glass-to-glass latency: the bench publishes a clock and reads it back.
    Latency(latency::LatencyArgs),
}

/// jemalloc, as the server uses.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Errors that end the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Local setup failed (arguments, processes, the server's first answers).
    #[error("{0}")]
    Setup(String),
}

fn main() {
    let args = Args::parse();
    let result = match args.mode {
        Mode::Load(a) => load::run(a),
        Mode::Latency(a) => latency::run(a),
    };
    if let Err(e) = result {
        eprintln!("feiyan-hls-bench: {e}");
        std::process::exit(1);
    }
}

/// Unix time in milliseconds (the clock the server stamps `EXT-X-PROGRAM-DATE-TIME` with).
pub fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The value at quantile `q` (0..=1) of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

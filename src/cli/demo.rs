//! `feiyan demo-data`: a realistic city-year of lectures, film classes, viewers and
//! headcounts, for the dashboard and the statistics benchmark.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::audience::now_ms;
use crate::catalog::{Catalog, DemoSpec};

/// `feiyan demo-data [--centers N] [--institutes N] [--stations N] [--days N] [--ahead N] ...`
#[derive(Args)]
pub struct DemoData {
    /// Centers.
    #[arg(long, default_value_t = 10)]
    centers: usize,
    /// Institutes.
    #[arg(long, default_value_t = 105)]
    institutes: usize,
    /// Stations.
    #[arg(long, default_value_t = 2100)]
    stations: usize,
    /// Days of history ending yesterday.
    #[arg(long, default_value_t = 365)]
    days: usize,
    /// Random seed (same seed, same city).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Days of planned lectures from today on (the programme, station pages, calendars).
    #[arg(long, default_value_t = 14)]
    ahead: usize,
    /// Scales each session's online audience: 1.0 gives about 20 viewer rows per
    /// session; 0.23 with 20,000 stations gives the province set (about 10 million).
    #[arg(long, default_value_t = 1.0)]
    audience: f64,
}

/// Builds the demo city, reporting progress every 5 s on stderr, then freezes the
/// sessions' figures and refreshes the planner statistics.
pub async fn run(catalog: &Catalog, args: DemoData) -> anyhow::Result<()> {
    if !(args.audience > 0.0 && args.audience <= 100.0) {
        bail!("--audience must be above 0 and at most 100");
    }
    let spec = DemoSpec {
        centers: args.centers,
        institutes: args.institutes,
        stations: args.stations,
        days: args.days,
        seed: args.seed,
        audience: args.audience,
    };
    let started = Instant::now();
    let mut last = Instant::now();
    let report = catalog
        .build_demo(&spec, |r| {
            if last.elapsed() > Duration::from_secs(5) {
                last = Instant::now();
                eprintln!(
                    "... {} sessions, {} viewer rows ({:.0} s)",
                    r.sessions,
                    r.viewers,
                    started.elapsed().as_secs_f64()
                );
            }
        })
        .await?;
    println!(
        "demo city: {} stations, {} sessions, {} viewer rows in {:.1} s",
        report.stations,
        report.sessions,
        report.viewers,
        started.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let planned = catalog.build_demo_programme(args.ahead, args.seed).await?;
    println!(
        "planned {planned} lectures for the next {} days in {:.1} s",
        args.ahead,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let frozen = catalog.freeze_session_figures(now_ms()).await?;
    println!(
        "froze the figures of {frozen} sessions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Fresh planner statistics after a bulk load, or the planners guess: SQLite
    // walks a year of station_days through its day index, PostgreSQL scans
    // sessions for the few not yet frozen.
    let t = Instant::now();
    catalog.analyze().await?;
    println!("analyzed in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

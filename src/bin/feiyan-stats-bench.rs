//! `feiyan-stats-bench`: times each statistics query (p50/p95) on the configured catalog
//! and the rate at which viewer join/leave events are written. Run it on a catalog filled
//! by `feiyan demo-data`; it finds the catalog as `feiyan` does (`--config`,
//! config/feiyan.toml, `FEIYAN_DATABASE_URL`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use feiyan::audience::{AudienceEvent, now_ms};
use feiyan::catalog::{
    Catalog, SessionFixture, SessionKind, StatsQuery, WriterConfig, shanghai_day, spawn_writer,
};
use feiyan::ids::{SessionId, ViewerId};

// The allocator and its settings of the `feiyan` binary, where this benchmark ran until it
// became its own binary, so its figures stay comparable with earlier ones.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Time each statistics query (p50/p95) on the configured catalog and the rate at which
/// viewer join/leave events are written. Run it on a catalog filled by `feiyan demo-data`.
#[derive(Parser)]
#[command(name = "feiyan-stats-bench", version)]
struct Args {
    /// Configuration file (TOML). Defaults to config/feiyan.toml when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Runs of each query.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Join + leave events to write for the write-rate figure (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Time only the queries whose name contains this text (e.g. "ranking").
    #[arg(long)]
    only: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    feiyan::cli::init_logging(feiyan::cli::LogFormat::Text);
    let config = feiyan::cli::load_config(args.config)?;
    let catalog = feiyan::cli::open_catalog(&config.catalog.database_url).await?;
    stats_bench(
        &catalog,
        args.runs.max(1),
        args.events,
        args.only.as_deref(),
    )
    .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A benchmark query: its name, its parameters, and whether it lists sessions.
type BenchCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool);

async fn stats_bench(
    catalog: &Catalog,
    runs: usize,
    events: usize,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let any_station = catalog
        .list_stations()
        .await?
        .first()
        .map(|s| s.id)
        .context("the catalog has no stations: run `feiyan demo-data` first")?;
    let placement = catalog.station_placement(any_station).await?;
    let t = Instant::now();
    let frozen = catalog.freeze_session_figures(now_ms()).await?;
    println!(
        "froze the figures of {frozen} sessions in {:.2} s before timing",
        t.elapsed().as_secs_f64()
    );
    let today = shanghai_day(now_ms());
    let year_ago = (today - chrono::Duration::days(365))
        .format("%Y-%m-%d")
        .to_string();
    let to = today.format("%Y-%m-%d").to_string();
    let new_year = chrono::Datelike::with_ordinal(&today, 1)
        .unwrap_or(today)
        .format("%Y-%m-%d")
        .to_string();
    let month_ago = (today - chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let center = placement.center_id.to_string();
    let institute = placement.institute_id.to_string();
    let station = any_station.to_string();
    let cases: Vec<BenchCase> = vec![
        (
            "city year total",
            vec![("from", &year_ago), ("to", &to)],
            false,
        ),
        (
            "city by center x month",
            vec![
                ("from", &year_ago),
                ("to", &to),
                ("group", "center"),
                ("period", "month"),
            ],
            false,
        ),
        (
            "city daily series",
            vec![("from", &year_ago), ("to", &to), ("period", "day")],
            false,
        ),
        (
            "station ranking (year)",
            vec![("from", &year_ago), ("to", &to), ("group", "station")],
            false,
        ),
        (
            "station ranking (year to date)",
            vec![("from", &new_year), ("to", &to), ("group", "station")],
            false,
        ),
        (
            "film ranking (year)",
            vec![
                ("from", &year_ago),
                ("to", &to),
                ("group", "film"),
                ("kind", "film_class"),
            ],
            false,
        ),
        (
            "center by institute x quarter",
            vec![
                ("level", "center"),
                ("id", &center),
                ("group", "institute"),
                ("period", "quarter"),
            ],
            false,
        ),
        (
            "one station by week",
            vec![("level", "station"), ("id", &station), ("period", "week")],
            false,
        ),
        (
            "institute sessions, last 30 days",
            vec![
                ("level", "institute"),
                ("id", &institute),
                ("from", &month_ago),
                ("to", &to),
            ],
            true,
        ),
    ];
    println!(
        "{:<36} {:>10} {:>10} {:>8}",
        "query", "p50 ms", "p95 ms", "rows"
    );
    for (name, params, listing) in cases {
        if only.is_some_and(|only| !name.contains(only)) {
            continue;
        }
        let map: HashMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let q = StatsQuery::parse(&map)?;
        let mut times = Vec::with_capacity(runs);
        let mut rows = 0;
        for _ in 0..runs {
            let t = Instant::now();
            rows = if listing {
                catalog.stats_sessions(&q, now_ms()).await?.len()
            } else {
                catalog.stats(&q, now_ms()).await?.len()
            };
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{name:<36} {:>10.1} {:>10.1} {rows:>8}",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.95).as_secs_f64() * 1e3
        );
    }
    if events >= 2 {
        let session = catalog
            .insert_sessions(&[SessionFixture {
                station_id: any_station.0,
                kind: SessionKind::Other,
                title: "write-rate benchmark".into(),
                started_at: now_ms(),
                ended_at: None,
                peak_viewers: 0,
                in_person: 0,
                film_id: None,
            }])
            .await?[0];
        let state = tempfile::tempdir()?;
        let (mut sink, writer) = spawn_writer(
            catalog.clone(),
            WriterConfig {
                state_dir: state.path().to_path_buf(),
                queue_depth: 65_536,
                write_retries: 5,
            },
        )?;
        sink.set_node(catalog.register_node().await?);
        let viewers: Vec<ViewerId> = (0..events / 2).map(|_| sink.viewer_id()).collect();
        let t = Instant::now();
        for (n, id) in viewers.iter().enumerate() {
            sink.push(AudienceEvent::ViewerJoined {
                id: *id,
                session: SessionId(session),
                at_ms: now_ms(),
                terminal: "mobile",
                viewer_key: format!("bench-{n}"),
                client_hash: String::new(),
            });
        }
        for id in &viewers {
            sink.push(AudienceEvent::ViewerLeft {
                id: *id,
                at_ms: now_ms(),
            });
        }
        sink.push(AudienceEvent::SessionEnded {
            session: SessionId(session),
            at_ms: now_ms(),
        });
        drop(sink);
        writer.finish(Duration::from_secs(3600)).await;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "viewer events written: {} in {secs:.2} s = {:.0} events/s (join + leave, batched writer)",
            viewers.len() * 2,
            (viewers.len() * 2) as f64 / secs
        );
    }
    Ok(())
}

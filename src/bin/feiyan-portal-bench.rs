//! `feiyan-portal-bench`: server time per request (p50/p95/max) of the residents' JSON
//! routes — `/api/programme` at each level, `/api/stations/{c}/page`, `/api/directory` —
//! on the configured catalog (fill it with `feiyan demo-data`), one request at a time
//! from a client on loopback against a real server started in this process (its own
//! ports; the catalog as `feiyan` finds it: `--config`, config/feiyan.toml,
//! `FEIYAN_DATABASE_URL`). Each request's stations, centers and institutes are drawn at
//! random (seeded).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use feiyan::audience::now_ms;
use feiyan::catalog::shanghai_day;

/// Time the portal's JSON routes on the configured catalog.
#[derive(Parser)]
#[command(name = "feiyan-portal-bench", version)]
struct Args {
    /// Configuration file (TOML). Defaults to config/feiyan.toml when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Requests per route.
    #[arg(long, default_value_t = 200)]
    runs: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    feiyan::cli::init_logging(feiyan::cli::LogFormat::Text);
    let mut config = feiyan::cli::load_config(args.config)?;
    config.http.listen = "127.0.0.1:0".parse()?;
    config.webrtc.udp_bind = "127.0.0.1:0".parse()?;
    config.ingest.rtmp_listen = None;
    config.http.tls = feiyan::config::TlsMode::Off;
    let server = feiyan::app::start(config).await?;
    let base = server.base_url();
    let stations = server.catalog.list_stations().await?;
    let centers = server.catalog.directory_centers().await?;
    let tree = server.catalog.hierarchy(None, None).await?;
    let institutes: Vec<i64> = tree
        .iter()
        .flat_map(|c| c.children.iter().map(|i| i.id))
        .collect();
    anyhow::ensure!(
        !stations.is_empty() && !centers.is_empty(),
        "the catalog is empty: fill it with `feiyan demo-data` first"
    );
    let planned = server
        .catalog
        .programme(
            &feiyan::catalog::ProgrammeQuery::parse(
                Some("city"),
                None,
                None,
                None,
                None,
                Some("1"),
                shanghai_day(now_ms()),
            )?
            .0,
            now_ms(),
        )
        .await?;
    println!(
        "catalog: {} centers, {} institutes, {} stations{}",
        centers.len(),
        institutes.len(),
        stations.len(),
        if planned.items.is_empty() {
            " (no planned items this week: run demo-data with --ahead)"
        } else {
            ""
        }
    );
    let today = shanghai_day(now_ms());
    let week = today + chrono::Duration::days(6);
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(25);
    type Route = (&'static str, Box<dyn Fn(&mut StdRng) -> String>);
    let s = stations.clone();
    let s2 = stations.clone();
    let c: Vec<i64> = centers.iter().map(|c| c.id).collect();
    let c2 = c.clone();
    let i = institutes.clone();
    let routes: Vec<Route> = vec![
        (
            "programme station, 7 days",
            Box::new(move |r: &mut StdRng| {
                let st = &s[r.random_range(0..s.len())];
                format!(
                    "/api/programme?level=station&id={}&from={today}&to={week}",
                    st.channel
                )
            }),
        ),
        (
            "programme institute, 7 days",
            Box::new(move |r: &mut StdRng| {
                format!(
                    "/api/programme?level=institute&id={}&from={today}&to={week}",
                    i[r.random_range(0..i.len())]
                )
            }),
        ),
        (
            "programme center, today",
            Box::new(move |r: &mut StdRng| {
                format!(
                    "/api/programme?level=center&id={}&from={today}&to={today}",
                    c[r.random_range(0..c.len())]
                )
            }),
        ),
        (
            "programme city, today (first 200)",
            Box::new(move |_: &mut StdRng| format!("/api/programme?from={today}&to={today}")),
        ),
        (
            "station page",
            Box::new(move |r: &mut StdRng| {
                format!(
                    "/api/stations/{}/page",
                    s2[r.random_range(0..s2.len())].channel
                )
            }),
        ),
        (
            "directory (centers)",
            Box::new(|_: &mut StdRng| "/api/directory".to_string()),
        ),
        (
            "directory ?center=",
            Box::new(move |r: &mut StdRng| {
                format!("/api/directory?center={}", c2[r.random_range(0..c2.len())])
            }),
        ),
        (
            "directory ?q= (search)",
            Box::new(|r: &mut StdRng| {
                format!(
                    "/api/directory?q={}",
                    urlencode(&format!("第{}社区", r.random_range(1..40)))
                )
            }),
        ),
    ];
    println!("| route | p50 ms | p95 ms | max ms | mean KB |");
    println!("|---|---|---|---|---|");
    for (name, make) in &routes {
        // A few first requests warm the pools and caches; not counted.
        for _ in 0..5 {
            client
                .get(format!("{base}{}", make(&mut rng)))
                .send()
                .await?;
        }
        let mut times = Vec::with_capacity(args.runs);
        let mut bytes = 0usize;
        for _ in 0..args.runs {
            let url = format!("{base}{}", make(&mut rng));
            let t = Instant::now();
            let r = client.get(&url).send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            times.push(t.elapsed());
            anyhow::ensure!(status.is_success(), "{url}: {status}");
            bytes += body.len();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
            bytes as f64 / args.runs as f64 / 1024.0
        );
    }
    server.shutdown().await;
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

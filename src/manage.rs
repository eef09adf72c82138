//! Administrator commands of the `feiyan` binary: accounts, hierarchy, CSV import, managed
//! lists, demo data and the statistics benchmark. Kept out of `main.rs` so it stays thin.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;

use feiyan::audience::{AudienceEvent, now_ms};
use feiyan::catalog::{
    Catalog, DemoSpec, Scope, SessionFixture, SessionKind, StatsQuery, spawn_writer,
};
use feiyan::ids::{SessionId, ViewerId};

/// Commands for administrators, flattened into the top-level command list.
#[derive(Subcommand)]
pub enum Manage {
    /// Manage administrator accounts.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Create a center (中心).
    CenterAdd {
        /// Center name.
        #[arg(long)]
        name: String,
    },
    /// Create an institute (所) under a center.
    InstituteAdd {
        /// The parent center's id.
        #[arg(long)]
        center_id: i64,
        /// Institute name.
        #[arg(long)]
        name: String,
    },
    /// Import a city from CSV (center,institute,station,address): all rows or none. Prints
    /// the new stations' channels and one-time stream keys as CSV on standard output.
    Import {
        /// The CSV file (UTF-8, a BOM is fine).
        file: PathBuf,
    },
    /// Add a topic tag to the managed list.
    TopicAdd {
        /// Topic name.
        name: String,
    },
    /// Add a film to the managed list.
    FilmAdd {
        /// Film title.
        title: String,
    },
    /// Build a realistic city-year of lectures, film classes, viewers and headcounts.
    DemoData {
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
        /// Scales each session's online audience: 1.0 gives about 20 viewer rows per
        /// session; 0.23 with 20,000 stations gives the province set (about 10 million).
        #[arg(long, default_value_t = 1.0)]
        audience: f64,
    },
    /// Time each statistics query (p50/p95) on the configured catalog and the rate at which
    /// viewer join/leave events are written. Run it on a catalog filled by `demo-data`.
    StatsBench {
        /// Runs of each query.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Join + leave events to write for the write-rate figure (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Time only the queries whose name contains this text (e.g. "ranking").
        #[arg(long)]
        only: Option<String>,
    },
}

/// `feiyan admin ...`
#[derive(Subcommand)]
pub enum AdminAction {
    /// Create an account. The password is read from FEIYAN_ADMIN_PASSWORD or, when that
    /// is unset, from the first line of standard input.
    Add {
        /// Login name.
        #[arg(long)]
        username: String,
        /// city, center or station.
        #[arg(long, default_value = "city")]
        role: String,
        /// Center id (role center) or station id (role station).
        #[arg(long)]
        id: Option<i64>,
    },
    /// List accounts.
    List,
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FEIYAN_ADMIN_PASSWORD") {
        return Ok(p);
    }
    eprint!("password (at least 8 characters): ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Runs one administrator command against the catalog at `database_url`.
pub async fn run(command: Manage, database_url: &str) -> anyhow::Result<()> {
    let catalog = Catalog::connect(database_url)
        .await
        .with_context(|| format!("opening the catalog {database_url}"))?;
    match command {
        Manage::Admin { action } => match action {
            AdminAction::Add { username, role, id } => {
                let scope = match (role.as_str(), id) {
                    ("city", _) => Scope::City,
                    ("center", Some(c)) => Scope::Center(c),
                    ("station", Some(s)) => Scope::Station(s),
                    _ => bail!(
                        "--role must be city, center --id <center id> or station --id <station id>"
                    ),
                };
                let password = read_password()?;
                let id = catalog.add_account(&username, &password, scope).await?;
                println!("account {id} ({username}, {role}) created; log in at /admin");
            }
            AdminAction::List => {
                for (id, user, scope) in catalog.list_accounts().await? {
                    println!("{id:>5}  {user:<20}  {scope}");
                }
            }
        },
        Manage::CenterAdd { name } => {
            println!("center {}", catalog.create_center(&name).await?);
        }
        Manage::InstituteAdd { center_id, name } => {
            println!(
                "institute {}",
                catalog.create_institute(center_id, &name).await?
            );
        }
        Manage::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {} (it must be UTF-8)", file.display()))?;
            let report = catalog.import_csv(&text).await?;
            eprintln!(
                "imported {} stations ({} new centers, {} new institutes); keys follow, shown only now",
                report.stations.len(),
                report.centers_created,
                report.institutes_created
            );
            println!("center,institute,station,station_id,channel,stream_key");
            for s in report.stations {
                println!(
                    "{},{},{},{},{},{}",
                    s.center, s.institute, s.station, s.station_id, s.channel, s.stream_key
                );
            }
        }
        Manage::TopicAdd { name } => println!("topic {}", catalog.add_topic(&name).await?),
        Manage::FilmAdd { title } => println!("film {}", catalog.add_film(&title).await?),
        Manage::DemoData {
            centers,
            institutes,
            stations,
            days,
            seed,
            audience,
        } => {
            if !(audience > 0.0 && audience <= 100.0) {
                bail!("--audience must be above 0 and at most 100");
            }
            let spec = DemoSpec {
                centers,
                institutes,
                stations,
                days,
                seed,
                audience,
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
        }
        Manage::StatsBench { runs, events, only } => {
            stats_bench(&catalog, runs.max(1), events, only.as_deref()).await?
        }
    }
    Ok(())
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
        .map(|s| s.id.0)
        .context("the catalog has no stations: run `feiyan demo-data` first")?;
    let placement = catalog.station_placement(any_station).await?;
    let t = Instant::now();
    let frozen = catalog.freeze_session_figures(now_ms()).await?;
    println!(
        "froze the figures of {frozen} sessions in {:.2} s before timing",
        t.elapsed().as_secs_f64()
    );
    let today = feiyan::catalog::shanghai_day(now_ms());
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
                station_id: any_station,
                kind: SessionKind::Other,
                title: "write-rate benchmark".into(),
                started_at: now_ms(),
                ended_at: None,
                peak_viewers: 0,
                in_person: 0,
                film_id: None,
            }])
            .await?[0];
        let (mut sink, writer) = spawn_writer(catalog.clone(), 65_536);
        sink.set_node(catalog.register_node(now_ms()).await?);
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
        while sink.held() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            sink.flush();
        }
        drop(sink);
        writer.await?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "viewer events written: {} in {secs:.2} s = {:.0} events/s (join + leave, batched writer)",
            viewers.len() * 2,
            (viewers.len() * 2) as f64 / secs
        );
    }
    Ok(())
}

//! `feiyan` command line: parse flags, set up logging, hand over to `app` or the catalog.

mod manage;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use feiyan::catalog::Catalog;
use feiyan::config::Config;

/// jemalloc instead of glibc's allocator: a viewer's setup (SDP, DTLS, HTTP) frees most
/// of what it allocates between its long-lived state, and glibc keeps those holes
/// resident in each thread's arena; jemalloc returns them (see `JEMALLOC_CONF`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the system within about a second instead of jemalloc's
/// default ten, so a join storm's transient memory does not stay resident. The
/// `_RJEM_MALLOC_CONF` environment variable still overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "feiyan",
    version,
    about = "Livestream and media-hub server (WHIP/WHEP relay, catalog, attendance)"
)]
struct Cli {
    /// Configuration file (TOML). Defaults to config/feiyan.toml when it exists.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Apply catalog migrations and exit.
    Migrate,
    /// Publish a generated test programme (colour bars and a tone, made with the ffmpeg CLI)
    /// to a WHIP endpoint until stopped: a demo source and a way to check any WHIP server.
    Publish {
        /// WHIP endpoint, e.g. http://127.0.0.1:8080/whip/st-1
        #[arg(long)]
        url: String,
        /// Stream key (sent as Authorization: Bearer).
        #[arg(long)]
        key: String,
        /// Video bitrate in kbit/s.
        #[arg(long, default_value_t = 600)]
        kbps: u32,
    },
    /// Administrator commands: accounts, hierarchy, import, demo data, statistics benchmark.
    #[command(flatten)]
    Manage(manage::Manage),
    /// Manage stations.
    Station {
        #[command(subcommand)]
        action: StationAction,
    },
    /// Manage the film library.
    Film {
        #[command(subcommand)]
        action: FilmAction,
    },
    /// Schedule film classes.
    Screening {
        #[command(subcommand)]
        action: ScreeningAction,
    },
    /// Manage pull sources (IP cameras and streams the server opens itself).
    Source {
        #[command(subcommand)]
        action: SourceAction,
    },
}

#[derive(Subcommand)]
enum SourceAction {
    /// Add a source; a running server connects within a second and keeps retrying.
    Add {
        /// Channel to feed.
        #[arg(long)]
        channel: String,
        /// rtsp://, srt://, rtmp:// or http(s):// URL.
        #[arg(long)]
        url: String,
    },
    /// List sources (URLs without credentials).
    List,
    /// Stop using a source.
    Disable {
        /// Source id.
        id: i64,
    },
    /// Use a disabled source again.
    Enable {
        /// Source id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum FilmAction {
    /// Probe files and add the playable ones; unplayable ones are reported with the reason
    /// (the others still import). Exits non-zero when any file was rejected.
    Import {
        /// Film files (keep them under media/films/).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List films.
    List,
}

#[derive(Subcommand)]
enum ScreeningAction {
    /// Schedule a film class: the server plays the film into the station's channel then.
    Schedule {
        /// Station id or channel.
        #[arg(long)]
        station: String,
        /// Film id (see `feiyan film list`).
        #[arg(long)]
        film: i64,
        /// Start time, RFC 3339, e.g. 2026-12-01T19:00:00+08:00.
        #[arg(long)]
        at: String,
    },
    /// Start a scheduled (or missed) screening now. Like every catalog command this writes
    /// the catalog; the running server plays it within a second.
    Start {
        /// Screening id (printed by `screening schedule`).
        id: i64,
    },
    /// Stop a playing screening (its session ends within a second) or cancel a waiting one.
    Stop {
        /// Screening id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum StationAction {
    /// Create a station (and its center and institute when missing); prints its channel
    /// and stream key. The key is shown only this once.
    Add {
        /// Center (中心) name.
        #[arg(long)]
        center: String,
        /// Institute (所) name.
        #[arg(long)]
        institute: String,
        /// Station (站) name.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List stations and their channels.
    List,
    /// Issue a new stream key for a station (by id or channel); the old key stops working.
    RotateKey {
        /// Station id or channel name.
        station: String,
    },
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let default = PathBuf::from("config/feiyan.toml");
    let path = path.or_else(|| default.exists().then_some(default));
    Ok(Config::load(path.as_deref())?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,rtc=warn,rtc_ice=warn,rtc_dtls=error,sqlx=warn")
        }))
        .init();
    let config = load_config(cli.config)?;
    match cli.command {
        Command::Serve => feiyan::app::run(config).await,
        Command::Publish { url, key, kbps } => publish_test_programme(&url, &key, kbps).await,
        Command::Manage(command) => manage::run(command, &config.catalog.database_url).await,
        Command::Migrate => {
            Catalog::connect(&config.catalog.database_url).await?;
            println!("catalog is up to date: {}", config.catalog.database_url);
            Ok(())
        }
        Command::Film { action } => {
            let catalog = Catalog::connect(&config.catalog.database_url)
                .await
                .context("opening the catalog")?;
            film_command(&catalog, action).await
        }
        Command::Screening { action } => {
            let catalog = Catalog::connect(&config.catalog.database_url)
                .await
                .context("opening the catalog")?;
            screening_command(&catalog, action).await
        }
        Command::Source { action } => {
            let catalog = Catalog::connect(&config.catalog.database_url)
                .await
                .context("opening the catalog")?;
            match action {
                SourceAction::Add { channel, url } => {
                    let name = feiyan::ids::ChannelName::parse(&channel)
                        .with_context(|| format!("invalid channel name {channel:?}"))?;
                    let s = catalog
                        .add_source(&name, &url, feiyan::audience::now_ms())
                        .await?;
                    println!(
                        "source {} feeds {} from {}",
                        s.id,
                        s.channel,
                        feiyan::catalog::redact_url(&s.url)
                    );
                }
                SourceAction::List => {
                    for s in catalog.list_sources().await? {
                        let on = if s.enabled { "enabled" } else { "disabled" };
                        println!(
                            "{:>4}  {:<12} {:<8} {}",
                            s.id,
                            s.channel,
                            on,
                            feiyan::catalog::redact_url(&s.url)
                        );
                    }
                }
                SourceAction::Disable { id } | SourceAction::Enable { id } => {
                    let enable = matches!(action, SourceAction::Enable { .. });
                    if !catalog.set_source_enabled(id, enable).await? {
                        anyhow::bail!("no source {id}; `feiyan source list` shows them");
                    }
                    println!(
                        "source {id} {}",
                        if enable { "enabled" } else { "disabled" }
                    );
                }
            }
            Ok(())
        }
        Command::Station { action } => {
            let catalog = Catalog::connect(&config.catalog.database_url)
                .await
                .context("opening the catalog")?;
            match action {
                StationAction::Add {
                    center,
                    institute,
                    name,
                    json,
                } => {
                    let station = catalog.add_station(&center, &institute, &name).await?;
                    if json {
                        println!("{}", serde_json::to_string(&station)?);
                    } else {
                        println!(
                            "station:    {} ({center} / {institute} / {name})",
                            station.station_id
                        );
                        println!("channel:    {}", station.channel);
                        println!("stream key: {}", station.stream_key);
                        println!(
                            "(the stream key is shown only now; `feiyan station rotate-key {}` issues a new one)",
                            station.channel
                        );
                    }
                }
                StationAction::List => {
                    println!(
                        "{:>6}  {:<12}  center / institute / station",
                        "id", "channel"
                    );
                    for s in catalog.list_stations().await? {
                        println!(
                            "{:>6}  {:<12}  {} / {} / {}",
                            s.id, s.channel, s.center, s.institute, s.name
                        );
                    }
                }
                StationAction::RotateKey { station } => {
                    let key = catalog.rotate_key(&station).await?;
                    println!("new stream key: {key}");
                }
            }
            Ok(())
        }
    }
}

async fn screening_command(catalog: &Catalog, action: ScreeningAction) -> anyhow::Result<()> {
    match action {
        ScreeningAction::Schedule { station, film, at } => {
            let at = chrono::DateTime::parse_from_rfc3339(&at).with_context(|| {
                format!("--at {at:?}: expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00")
            })?;
            let s = catalog
                .schedule_screening(
                    &station,
                    film,
                    at.timestamp_millis(),
                    feiyan::audience::now_ms(),
                )
                .await?;
            println!(
                "screening {} scheduled at {} (film {}, station {})",
                s.id, s.starts_at, s.film_id, s.station_id
            );
        }
        ScreeningAction::Start { id } => {
            let s = catalog
                .start_screening_now(id, feiyan::audience::now_ms())
                .await?;
            println!(
                "screening {} (film {}, station {}) starts now; a running server plays it within a second",
                s.id, s.film_id, s.station_id
            );
        }
        ScreeningAction::Stop { id } => {
            let s = catalog.stop_screening(id).await?;
            if s.status == "stopping" {
                println!(
                    "screening {id}: stop requested; the server ends session {} within a second",
                    s.session_id.map(|s| s.0).unwrap_or_default()
                );
            } else {
                println!("screening {id} cancelled");
            }
        }
    }
    Ok(())
}

async fn film_command(catalog: &Catalog, action: FilmAction) -> anyhow::Result<()> {
    match action {
        FilmAction::Import { paths } => {
            let mut rejected = 0;
            for path in paths {
                let shown = ImportProgress::new(&path);
                let probe_path = path.clone();
                let reporter = shown.clone();
                let probed = tokio::task::spawn_blocking(move || {
                    feiyan::ingest::playout::probe_film_with_progress(&probe_path, |p| {
                        reporter.update(p)
                    })
                })
                .await?;
                let film = match probed {
                    Ok(film) => film,
                    Err(err) => {
                        rejected += 1;
                        shown.finish("rejected");
                        eprintln!("rejected {}: {err}", path.display());
                        continue;
                    }
                };
                let id = match catalog.import_film(&film, feiyan::audience::now_ms()).await {
                    Ok(id) => id,
                    Err(err) => {
                        rejected += 1;
                        shown.finish("rejected");
                        eprintln!("rejected {}: {err}", path.display());
                        continue;
                    }
                };
                shown.finish("ok");
                println!(
                    "imported film {id}: {} ({:.1} s, {} / {})",
                    film.title,
                    film.duration_ms as f64 / 1000.0,
                    film.video_codec.as_deref().unwrap_or("no video"),
                    film.audio_codec.as_deref().unwrap_or("no audio")
                );
            }
            if rejected > 0 {
                anyhow::bail!("{rejected} file(s) could not be imported");
            }
        }
        FilmAction::List => {
            for f in catalog.list_films().await? {
                println!(
                    "{:>4}  {:>8.1} s  {:<6} {:<6} {}",
                    f.id,
                    f.duration_ms as f64 / 1000.0,
                    f.video_codec.as_deref().unwrap_or("-"),
                    f.audio_codec.as_deref().unwrap_or("-"),
                    f.title
                );
            }
        }
    }
    Ok(())
}

/// The per-file progress of `film import` on stderr: a bar when stderr is a terminal,
/// otherwise one plain line per quarter of the file, so logs stay readable.
#[derive(Clone)]
struct ImportProgress {
    name: String,
    /// The bar, when stderr is a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// Quarters already reported in plain mode (shared with the probe thread's clone).
    quarters: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ImportProgress {
    fn new(path: &std::path::Path) -> Self {
        use std::io::IsTerminal;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bar = std::io::stderr().is_terminal().then(|| {
            // Length 1 until the probe knows the duration, so it starts at 0 %, not 100 %.
            let bar = indicatif::ProgressBar::new(1);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:30!} [{bar:30}] {percent:>3}% {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(name.clone());
            bar.set_message("scanning");
            bar
        });
        Self {
            name,
            bar,
            quarters: Default::default(),
        }
    }

    fn update(&self, p: feiyan::ingest::playout::ProbeProgress) {
        use std::sync::atomic::Ordering;
        if let Some(bar) = &self.bar {
            bar.set_length(p.total_ms.max(1));
            bar.set_position(p.done_ms);
        } else if let Some(quarter) = (p.done_ms * 4).checked_div(p.total_ms)
            && self.quarters.fetch_max(quarter, Ordering::Relaxed) < quarter
        {
            eprintln!("{}: scanned {}%", self.name, quarter * 25);
        }
    }

    fn finish(&self, outcome: &'static str) {
        if let Some(bar) = &self.bar {
            if outcome == "ok" {
                bar.finish_with_message(outcome);
            } else {
                bar.abandon_with_message(outcome);
            }
            // The finished bar stays on screen; what follows goes on its own line.
            eprintln!();
        }
    }
}

async fn publish_test_programme(url: &str, key: &str, kbps: u32) -> anyhow::Result<()> {
    use feiyan::client::{PublisherOptions, SyntheticMedia, WhipPublisher, make_test_media};
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let media = tokio::task::spawn_blocking(move || -> anyhow::Result<SyntheticMedia> {
        let (h264, ogg) = make_test_media(&path, std::time::Duration::from_secs(20), kbps)?;
        Ok(SyntheticMedia::load(&h264, &ogg)?)
    })
    .await??;
    let options = PublisherOptions {
        record_send_log: false,
        ..Default::default()
    };
    let publisher = WhipPublisher::connect(url, Some(key), media, options)
        .await
        .context("publishing the test programme")?;
    println!("publishing test programme to {url} (Ctrl-C stops)");
    tokio::signal::ctrl_c().await?;
    publisher.stop().await?;
    Ok(())
}

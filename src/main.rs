//! `feiyan` command line: parse flags, set up logging, hand over to `app` or the catalog.

mod manage;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use feiyan::catalog::Catalog;
use feiyan::config::Config;

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

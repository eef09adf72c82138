//! The `feiyan` command line: the flags of every command, and where each command goes.
//! One file per command group; `main.rs` only parses, sets up logging and calls [`run`].
//!
//! A module of the library rather than of the `feiyan` binary so that the other binaries
//! (`feiyan-stats-bench`) find the configuration and set up logging exactly as it does.

mod admin;
mod demo;
mod film;
mod hierarchy;
mod item;
mod menu;
mod node;
mod publish;
mod recording;
mod request;
mod screening;
mod source;
mod topic;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::catalog::Catalog;
use crate::config::Config;

/// Flags of the `feiyan` binary.
#[derive(Parser)]
#[command(
    name = "feiyan",
    version,
    about = "Livestream and media-hub server (WHIP/WHEP relay, catalog, attendance)"
)]
pub struct Cli {
    /// Configuration file (TOML). Defaults to config/feiyan.toml when it exists.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log lines as text (colours only on a terminal) or as JSON objects, one per line.
    #[arg(long, global = true, env = "FEIYAN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
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
    Publish(publish::Publish),
    /// Manage administrator accounts.
    Admin {
        #[command(subcommand)]
        action: admin::AdminAction,
    },
    /// Create a center (中心).
    CenterAdd(hierarchy::CenterAdd),
    /// Create an institute (所) under a center.
    InstituteAdd(hierarchy::InstituteAdd),
    /// Import a city from CSV (center,institute,station,address): all rows or none. Prints
    /// the new stations' channels and one-time stream keys as CSV on standard output.
    Import(hierarchy::ImportCsv),
    /// Add a topic tag to the managed list.
    TopicAdd(topic::TopicAdd),
    /// Add a film to the managed list.
    FilmAdd(film::FilmAdd),
    /// Build a realistic city-year of lectures, film classes, viewers and headcounts.
    DemoData(demo::DemoData),
    /// Manage stations.
    Station {
        #[command(subcommand)]
        action: hierarchy::StationAction,
    },
    /// Manage the film library.
    Film {
        #[command(subcommand)]
        action: film::FilmAction,
    },
    /// Schedule film classes.
    Screening {
        #[command(subcommand)]
        action: screening::ScreeningAction,
    },
    /// Planned items (the programme): plan, list, change and cancel lectures.
    Item {
        #[command(subcommand)]
        action: item::ItemAction,
    },
    /// A center's service menu (服务菜单) for residents' requests.
    Menu {
        #[command(subcommand)]
        action: menu::MenuAction,
    },
    /// Residents' requests (点单): list, schedule into a planned item, accept, decline.
    Request {
        #[command(subcommand)]
        action: request::RequestAction,
    },
    /// Manage pull sources (IP cameras and streams the server opens itself).
    Source {
        #[command(subcommand)]
        action: source::SourceAction,
    },
    /// Replays (回看): list, keep, delete, export as MP4.
    Recording {
        #[command(subcommand)]
        action: recording::RecordingAction,
    },
    /// The cluster's nodes (servers sharing this PostgreSQL catalog).
    Node {
        #[command(subcommand)]
        action: node::NodeAction,
    },
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colour codes only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

/// Logs to standard error (standard output carries what commands print); `RUST_LOG`
/// overrides the default levels, which keep the WebRTC and SQL libraries quiet. Under
/// systemd or into a file the text has no terminal colour codes.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rtc=warn,rtc_ice=warn,rtc_dtls=error,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Loads `--config`, or config/feiyan.toml when it exists, or the defaults; environment
/// overrides apply in every case.
pub fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let default = PathBuf::from("config/feiyan.toml");
    let path = path.or_else(|| default.exists().then_some(default));
    Ok(Config::load(path.as_deref())?)
}

/// Opens (and migrates) the catalog at `database_url`.
pub async fn open_catalog(database_url: &str) -> anyhow::Result<Catalog> {
    Catalog::connect(database_url)
        .await
        .with_context(|| format!("opening the catalog {database_url}"))
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(cli.config)?;
    let url = &config.catalog.database_url;
    match cli.command {
        Command::Serve => crate::app::run(config).await,
        Command::Migrate => {
            open_catalog(url).await?;
            println!("catalog is up to date: {url}");
            Ok(())
        }
        Command::Publish(args) => publish::run(args).await,
        Command::Admin { action } => admin::run(&open_catalog(url).await?, action).await,
        Command::CenterAdd(args) => hierarchy::center_add(&open_catalog(url).await?, args).await,
        Command::InstituteAdd(args) => {
            hierarchy::institute_add(&open_catalog(url).await?, args).await
        }
        Command::Import(args) => hierarchy::import_csv(&open_catalog(url).await?, args).await,
        Command::TopicAdd(args) => topic::add(&open_catalog(url).await?, args).await,
        Command::FilmAdd(args) => film::add(&open_catalog(url).await?, args).await,
        Command::DemoData(args) => demo::run(&open_catalog(url).await?, args).await,
        Command::Station { action } => hierarchy::station(&open_catalog(url).await?, action).await,
        Command::Film { action } => film::run(&open_catalog(url).await?, action).await,
        Command::Screening { action } => screening::run(&open_catalog(url).await?, action).await,
        Command::Item { action } => item::run(&open_catalog(url).await?, action).await,
        Command::Menu { action } => menu::run(&open_catalog(url).await?, action).await,
        Command::Request { action } => request::run(&open_catalog(url).await?, action).await,
        Command::Source { action } => {
            source::run(&open_catalog(url).await?, &config.ingest, action).await
        }
        Command::Recording { action } => {
            recording::run(&open_catalog(url).await?, &config.recording.dir, action).await
        }
        Command::Node { action } => {
            node::run(&open_catalog(url).await?, &config.cluster, action).await
        }
    }
}

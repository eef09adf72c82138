//! `feiyan recording ...`: replays on the command line: list them, keep one from retention,
//! delete one (its files and then its row), export one as an MP4.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::audience::now_ms;
use crate::catalog::{Catalog, Recording, RecordingKind};
use crate::ids::{ChannelName, StationId};
use crate::recording::export::export_mp4;
use crate::recording::store::{RecordingFiles, remove, safe_dir};

/// `feiyan recording ...`
#[derive(Subcommand)]
pub enum RecordingAction {
    /// List recordings, newest first (hidden ones included).
    List {
        /// Only this station's (its channel, or its station id).
        #[arg(long)]
        station: Option<String>,
        /// Deleted recordings too, with when and why.
        #[arg(long)]
        all: bool,
    },
    /// Keep a recording: retention never deletes it.
    Keep {
        /// Recording id (see `recording list`).
        id: i64,
    },
    /// Let retention delete a recording again when it is the oldest.
    Unkeep {
        /// Recording id.
        id: i64,
    },
    /// Delete a recording: its files (a library replay has none of its own), then its
    /// row is marked deleted; the statistics keep its replay figures.
    Delete {
        /// Recording id.
        id: i64,
    },
    /// Write a recording as one MP4 file (remuxed, not re-encoded).
    Export {
        /// Recording id.
        id: i64,
        /// The MP4 to write.
        out: PathBuf,
    },
}

pub async fn run(catalog: &Catalog, dir: &Path, action: RecordingAction) -> anyhow::Result<()> {
    match action {
        RecordingAction::List { station, all } => {
            let station = match station {
                None => None,
                Some(s) => Some(station_of(catalog, &s).await?),
            };
            let rows = catalog.list_recordings(station, all).await?;
            println!(
                "{:>5}  {:<16} {:<24} {:<16} {:>9} {:>9}  {:<9} {:<4}{}",
                "id",
                "station",
                "title",
                "started",
                "duration",
                "size MiB",
                "published",
                "keep",
                if all { "  deleted" } else { "" }
            );
            for r in &rows {
                println!("{}", table_row(r, all));
            }
            if rows.is_empty() {
                println!("(no recordings)");
            }
        }
        RecordingAction::Keep { id } => {
            catalog.set_recording_keep(id, true).await?;
            println!("recording {id} is kept: retention never deletes it");
        }
        RecordingAction::Unkeep { id } => {
            catalog.set_recording_keep(id, false).await?;
            println!("recording {id} is no longer kept");
        }
        RecordingAction::Delete { id } => {
            let rec = recording(catalog, id).await?;
            let mut freed = 0;
            if rec.kind == RecordingKind::Recorded {
                freed = remove(dir, &rec.path)
                    .with_context(|| format!("removing the files of recording {id}"))?;
            }
            catalog
                .mark_recording_deleted(id, "deleted from the command line", now_ms())
                .await?;
            println!(
                "recording {id} deleted ({:.1} MiB freed)",
                freed as f64 / 1_048_576.0
            );
        }
        RecordingAction::Export { id, out } => {
            let rec = recording(catalog, id).await?;
            if let Some(at) = &rec.deleted_at {
                anyhow::bail!(
                    "recording {id} was deleted at {at} ({}): nothing to export",
                    rec.deleted_reason.as_deref().unwrap_or("no reason noted")
                );
            }
            let input = match rec.kind {
                RecordingKind::Recorded => {
                    let files = safe_dir(dir, &rec.path).with_context(|| {
                        format!("recording {id} has no valid path ({:?})", rec.path)
                    })?;
                    RecordingFiles::open(&files)
                        .with_context(|| format!("opening {}", files.display()))?
                        .write_local_playlist()
                        .with_context(|| format!("writing a playlist in {}", files.display()))?
                }
                RecordingKind::Library => PathBuf::from(&rec.path),
            };
            let target = out.clone();
            let report = tokio::task::spawn_blocking(move || export_mp4(&input, &target)).await??;
            println!(
                "recording {id} written to {}: {:.1} s, {} video and {} audio frames, {:.1} MiB",
                out.display(),
                report.duration_ms as f64 / 1000.0,
                report.video_frames,
                report.audio_frames,
                report.bytes as f64 / 1_048_576.0
            );
        }
    }
    Ok(())
}

/// Recording `id`, or an error saying there is none.
async fn recording(catalog: &Catalog, id: i64) -> anyhow::Result<Recording> {
    catalog
        .recording(id)
        .await?
        .with_context(|| format!("no recording {id} (see `feiyan recording list --all`)"))
}

/// The station named by a station id or a channel.
async fn station_of(catalog: &Catalog, text: &str) -> anyhow::Result<StationId> {
    if let Ok(id) = text.parse::<i64>() {
        return Ok(StationId(id));
    }
    let channel = ChannelName::parse(text)
        .with_context(|| format!("--station {text:?} is neither a station id nor a channel"))?;
    Ok(catalog.channel_owner(&channel).await?.station_id)
}

/// One line of `recording list`: times in Asia/Shanghai, where the stations are.
fn table_row(r: &Recording, with_deleted: bool) -> String {
    let shanghai = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let started = chrono::DateTime::from_timestamp_millis(r.started_ms)
        .map(|t| {
            t.with_timezone(&shanghai)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default();
    let secs = r.duration_ms.max(0) / 1000;
    let duration = format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let deleted = match (&r.deleted_at, with_deleted) {
        (Some(at), true) => format!(
            "  {at} {}",
            r.deleted_reason.as_deref().unwrap_or("(no reason noted)")
        ),
        _ => String::new(),
    };
    format!(
        "{:>5}  {:<16} {:<24} {:<16} {:>9} {:>9.1}  {:<9} {:<4}{deleted}",
        r.id,
        truncate(&r.station, 16),
        truncate(&r.title, 24),
        started,
        duration,
        r.size_bytes as f64 / 1_048_576.0,
        if r.published { "yes" } else { "hidden" },
        if r.keep { "yes" } else { "no" },
    )
}

/// At most `n` characters of `text`.
fn truncate(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

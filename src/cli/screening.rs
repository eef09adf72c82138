//! `feiyan screening ...`: film classes, a film played into a station's channel at a time.

use anyhow::Context;
use clap::Subcommand;

use crate::audience::now_ms;
use crate::catalog::{Catalog, ScreeningStatus};
use crate::ids::{FilmId, ScreeningId};

/// `feiyan screening ...`
#[derive(Subcommand)]
pub enum ScreeningAction {
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

pub async fn run(catalog: &Catalog, action: ScreeningAction) -> anyhow::Result<()> {
    match action {
        ScreeningAction::Schedule { station, film, at } => {
            let at = chrono::DateTime::parse_from_rfc3339(&at).with_context(|| {
                format!("--at {at:?}: expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00")
            })?;
            let s = catalog
                .schedule_screening(&station, FilmId(film), at.timestamp_millis(), now_ms())
                .await?;
            println!(
                "screening {} scheduled at {} (film {}, station {})",
                s.id, s.starts_at, s.film_id, s.station_id
            );
        }
        ScreeningAction::Start { id } => {
            let s = catalog
                .start_screening_now(ScreeningId(id), now_ms())
                .await?;
            println!(
                "screening {} (film {}, station {}) starts now; a running server plays it within a second",
                s.id, s.film_id, s.station_id
            );
        }
        ScreeningAction::Stop { id } => {
            let s = catalog.stop_screening(ScreeningId(id)).await?;
            if s.status == ScreeningStatus::Stopping {
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

//! `feiyan item ...`: planned items (the programme): plan a lecture, list a station's or
//! the city's items, change or cancel one. Film classes are planned with `feiyan
//! screening schedule`; they are items too and are listed and cancelled here as well.

use anyhow::Context;
use clap::Subcommand;

use crate::audience::now_ms;
use crate::catalog::{
    Catalog, ItemChange, NewLecture, PlannedItem, ProgrammeLevel, ProgrammeQuery, shanghai_day,
};

/// `feiyan item ...`
#[derive(Subcommand)]
pub enum ItemAction {
    /// Plan a lecture: a publisher going live on the station within an hour of its time
    /// attaches to it.
    Add {
        /// Station id or channel.
        #[arg(long)]
        station: String,
        /// Title.
        #[arg(long)]
        title: String,
        /// Lecturer.
        #[arg(long, default_value = "")]
        speaker: String,
        /// Topic id (see the topic list).
        #[arg(long)]
        topic: Option<i64>,
        /// Start time, RFC 3339, e.g. 2026-12-01T19:00:00+08:00.
        #[arg(long)]
        at: String,
    },
    /// List planned items by start: one station's (or the city's) from `--from` to `--to`
    /// (Asia/Shanghai days, `to` inclusive; a week from today by default).
    List {
        /// Station id or channel; the whole city without it.
        #[arg(long)]
        station: Option<String>,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
    },
    /// Change a planned lecture (its calendar event keeps its UID; SEQUENCE goes up).
    Edit {
        /// Item id.
        id: i64,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New lecturer.
        #[arg(long)]
        speaker: Option<String>,
        /// New start time, RFC 3339.
        #[arg(long)]
        at: Option<String>,
    },
    /// Cancel a planned item (calendars show it cancelled).
    Cancel {
        /// Item id.
        id: i64,
    },
}

fn parse_at(at: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(at)
        .with_context(|| format!("--at {at:?}: expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00"))?
        .timestamp_millis())
}

fn print(item: &PlannedItem) {
    let status = serde_json::to_value(item.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        item.id,
        item.starts_at,
        item.kind.as_str(),
        status,
        item.station.channel,
        item.title,
        item.speaker.as_deref().unwrap_or("")
    );
}

pub async fn run(catalog: &Catalog, action: ItemAction) -> anyhow::Result<()> {
    let now = now_ms();
    match action {
        ItemAction::Add {
            station,
            title,
            speaker,
            topic,
            at,
        } => {
            let lecture = NewLecture {
                station,
                title,
                speaker,
                topic_id: topic,
                starts_at_ms: parse_at(&at)?,
            };
            let item = catalog.create_lecture(&lecture, now).await?;
            println!(
                "item {} planned at {} on {} ({})",
                item.id, item.starts_at, item.station.channel, item.url
            );
        }
        ItemAction::List { station, from, to } => {
            let (mut query, _) = ProgrammeQuery::parse(
                Some(if station.is_some() { "station" } else { "city" }),
                Some("1"),
                from.as_deref(),
                to.as_deref(),
                None,
                Some("1000"),
                shanghai_day(now),
            )?;
            if let Some(station) = station {
                query.level = ProgrammeLevel::Station(catalog.station_id(&station).await?);
            }
            let programme = catalog.programme(&query, now).await?;
            println!("id\tstarts_at\tkind\tstatus\tchannel\ttitle\tspeaker");
            for item in &programme.items {
                print(item);
            }
            if programme.truncated {
                println!(
                    "(only the first {}; narrow the days)",
                    programme.items.len()
                );
            }
        }
        ItemAction::Edit {
            id,
            title,
            speaker,
            at,
        } => {
            let change = ItemChange {
                title,
                speaker,
                topic_id: None,
                starts_at_ms: at.as_deref().map(parse_at).transpose()?,
            };
            let item = catalog.update_item(id, &change, now).await?;
            print(&item);
        }
        ItemAction::Cancel { id } => {
            let item = catalog.cancel_item(id, now).await?;
            println!("item {} cancelled (sequence {})", item.id, item.sequence);
        }
    }
    Ok(())
}

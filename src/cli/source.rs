//! `feiyan source ...`: pull sources, IP cameras and streams the server opens itself.

use anyhow::Context;
use clap::Subcommand;

use crate::audience::now_ms;
use crate::catalog::{Catalog, redact_url};
use crate::ids::{ChannelName, PullSourceId};

/// `feiyan source ...`
#[derive(Subcommand)]
pub enum SourceAction {
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

pub async fn run(catalog: &Catalog, action: SourceAction) -> anyhow::Result<()> {
    match action {
        SourceAction::Add { channel, url } => {
            let name = ChannelName::parse(&channel)
                .with_context(|| format!("invalid channel name {channel:?}"))?;
            let s = catalog.add_source(&name, &url, now_ms()).await?;
            println!(
                "source {} feeds {} from {}",
                s.id,
                s.channel,
                redact_url(&s.url)
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
                    redact_url(&s.url)
                );
            }
        }
        SourceAction::Disable { id } | SourceAction::Enable { id } => {
            let enable = matches!(action, SourceAction::Enable { .. });
            if !catalog.set_source_enabled(PullSourceId(id), enable).await? {
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

//! `feiyan source ...`: pull sources, IP cameras and streams the server opens itself.

use anyhow::Context;
use clap::Subcommand;

use crate::audience::now_ms;
use crate::catalog::Catalog;
use crate::config::IngestConfig;
use crate::ids::{ChannelName, PullSourceId};
use crate::ingest::pull::check_host;
use crate::redact::redact_url;

/// `feiyan source ...`
#[derive(Subcommand)]
pub enum SourceAction {
    /// Add a source; a running server connects within a second and keeps retrying.
    Add {
        /// Channel to feed.
        #[arg(long)]
        channel: String,
        /// rtsp(s)://, srt://, rtmp(s):// or http(s):// URL.
        #[arg(long)]
        url: String,
    },
    /// List sources (URLs without credentials and query-string secrets).
    List,
    /// Remove a source for good.
    Remove {
        /// Source id.
        id: i64,
    },
    /// Stop using a source.
    Disable {
        /// Source id.
        id: i64,
    },
    /// Use a disabled source again (also confirms one held since its station's key
    /// rotated).
    Enable {
        /// Source id.
        id: i64,
    },
}

/// Runs `action`; adding applies `[ingest] max_sources_per_channel` and
/// `allow_private_sources` from `config`, as the API does.
pub async fn run(
    catalog: &Catalog,
    config: &IngestConfig,
    action: SourceAction,
) -> anyhow::Result<()> {
    match action {
        SourceAction::Add { channel, url } => {
            let name = ChannelName::parse(&channel)
                .with_context(|| format!("invalid channel name {channel:?}"))?;
            check_host(&url, config.allow_private_sources)
                .await
                .map_err(anyhow::Error::msg)?;
            let s = catalog
                .add_source(&name, &url, config.max_sources_per_channel, now_ms())
                .await?;
            println!(
                "source {} feeds {} from {}",
                s.id,
                s.channel,
                redact_url(&s.url)
            );
        }
        SourceAction::List => {
            for s in catalog.list_sources().await? {
                let on = match (s.enabled, s.needs_confirm) {
                    (false, _) => "disabled",
                    (true, true) => "held",
                    (true, false) => "enabled",
                };
                println!(
                    "{:>4}  {:<12} {:<8} {}",
                    s.id,
                    s.channel,
                    on,
                    redact_url(&s.url)
                );
            }
        }
        SourceAction::Remove { id } => {
            if !catalog.remove_source(PullSourceId(id)).await? {
                anyhow::bail!("no source {id}; `feiyan source list` shows them");
            }
            println!("source {id} removed");
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

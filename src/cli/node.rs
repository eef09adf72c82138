//! `feiyan node list`: the cluster's nodes as the catalog's registry has them (URL, media
//! address, load at the last heartbeat, the channels each carries and is origin of).

use clap::Subcommand;

use crate::catalog::Catalog;
use crate::config::ClusterConfig;

/// `feiyan node ...`
#[derive(Subcommand)]
pub enum NodeAction {
    /// List the nodes seen recently, newest first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `node` command.
pub async fn run(
    catalog: &Catalog,
    cluster: &ClusterConfig,
    action: NodeAction,
) -> anyhow::Result<()> {
    match action {
        NodeAction::List { json } => {
            let nodes = catalog
                .cluster_nodes_seen(cluster.gone_after_secs as i64 * 1000)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
                return Ok(());
            }
            println!(
                "{:>5}  {:<6} {:<28} {:<22} {:>8} {:>8} {:>7}  channels (origin*)",
                "node", "state", "url", "media", "viewers", "kbit/s", "cpu%"
            );
            for n in nodes {
                let channels: Vec<String> = n
                    .channels
                    .iter()
                    .map(|c| {
                        if n.origin_of.contains(c) {
                            format!("{c}*")
                        } else {
                            c.clone()
                        }
                    })
                    .collect();
                let viewers = if n.max_viewers > 0 {
                    format!("{}/{}", n.viewers, n.max_viewers)
                } else {
                    n.viewers.to_string()
                };
                println!(
                    "{:>5}  {:<6} {:<28} {:<22} {:>8} {:>8} {:>7.1}  {}",
                    n.id,
                    if n.alive { "alive" } else { "gone" },
                    n.node_url,
                    n.media_addr,
                    viewers,
                    n.kbps,
                    n.cpu_permille as f64 / 10.0,
                    channels.join(" ")
                );
            }
            Ok(())
        }
    }
}

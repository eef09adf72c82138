//! Nodes in a cluster: several `feiyan serve` processes sharing one PostgreSQL catalog,
//! with nothing else to run (issue 24).
//!
//! - The registry: each member keeps its row in `relay_nodes` fresh with its load every
//!   `[cluster] heartbeat_secs` ([`Cluster::tick`]) and listens on PostgreSQL's
//!   `feiyan_cluster` channel for the others' changes ([`Cluster::listen`]).
//! - One origin per channel and leases: [`crate::catalog::Catalog::claim_channel`] and
//!   [`crate::catalog::Catalog::take_lease`], called where sessions go live.
//! - Origin -> edge: a WHEP viewer on a node without the channel's publisher makes the node
//!   open one signed WHEP pull from the origin ([`edge`], [`sign`]) and feed it into its
//!   own relay as a local source, so its viewers fan out here.
//! - Where a viewer goes: a node at `max_viewers` names another with room
//!   ([`Cluster::node_with_room`]) for a `307`.

pub mod edge;
mod feeds;
pub mod hls;
pub mod sign;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::audience::now_ms;
use crate::catalog::{Catalog, ClusterNode, NodeLoad};
use crate::config::ClusterConfig;
use crate::ids::ChannelName;
use crate::relay::RelayHandle;

/// How long an admitted signed pull counts before it is accepted (or given up).
const ADMITTING: Duration = Duration::from_secs(20);

/// A member's cluster state, shared by HTTP handlers and its background tasks.
pub struct Cluster {
    /// The shared catalog (registry, origins, leases).
    catalog: Catalog,
    /// The local relay edges feed.
    relay: RelayHandle,
    /// Signs this node's pulls and checks others' (never sent anywhere).
    secret: Vec<u8>,
    /// `[cluster] node_url`, without a trailing slash.
    node_url: String,
    /// `[cluster] max_viewers` (0: none).
    max_viewers: usize,
    /// `[cluster] max_edges_per_origin` (0: none).
    max_edges: usize,
    /// The address this node's edge pulls bind (its first advertised IP), so an origin on
    /// another host reaches it.
    pull_ip: IpAddr,
    /// Running edge pulls by channel: each says when it is feeding the relay.
    edges: Mutex<HashMap<ChannelName, watch::Receiver<bool>>>,
    /// Signed pulls this node serves (as an origin or an edge), by channel (resource id ->
    /// the pulling node and which stream it pulls), for `max_edges_per_origin` and
    /// `/metrics`.
    served: Mutex<HashMap<ChannelName, HashMap<String, PullKey>>>,
    /// Signed pulls admitted but not yet accepted, by channel (when admitted, and whose):
    /// they count against `max_edges_per_origin`, so two edges asking at once cannot both
    /// pass it.
    admitting: Mutex<HashMap<ChannelName, Vec<(Instant, PullKey)>>>,
    /// The node each running edge pull of this node pulls from (its `relay_nodes` id): a
    /// pull from that node is refused, so two edges never feed each other.
    pulling_from: Mutex<HashMap<ChannelName, i64>>,
    /// The session an edge pull last fed into the relay, by channel.
    fed: Mutex<HashMap<ChannelName, crate::ids::SessionId>>,
    /// The origin sessions this node feeds as an edge (not recorded here: the origin does).
    edge_sessions: Mutex<HashSet<crate::ids::SessionId>>,
    /// Bumped on every `NOTIFY` from another node; edge tasks waiting to reconnect wake on it.
    changes: watch::Sender<u64>,
    /// Figures for `/metrics`.
    pub counters: ClusterCounters,
    /// For the CPU and bandwidth figures of the next heartbeat.
    last_tick: Mutex<Option<TickSample>>,
}

/// One signed pull as its origin tells it apart: the pulling node and the stream it
/// pulls (`?quality=` and `?codec=` of the pull). An edge holds at most one pull per
/// stream, so a second one with the same key replaces the first (which dropped without
/// its `DELETE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PullKey {
    /// The pulling node's `relay_nodes` id.
    pub edge: i64,
    /// The rendition (`source` when not named).
    pub quality: String,
    /// The video codec label (`h264` when not named).
    pub codec: String,
}

/// What the load of the last heartbeat was measured from.
#[derive(Clone, Copy)]
struct TickSample {
    at: Instant,
    cpu_ticks: u64,
    packets_out: u64,
}

/// Cluster counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Signed edge pulls this node accepted as an origin.
    pub pulls_served: AtomicU64,
    /// Edge pulls this node opened to an origin.
    pub pulls_opened: AtomicU64,
    /// Requests refused for a missing, wrong or stale signature.
    pub signatures_refused: AtomicU64,
    /// WHEP viewers sent to another node with `307` (this one at `max_viewers`).
    pub redirected: AtomicU64,
    /// `NOTIFY`s received from other nodes.
    pub notifications: AtomicU64,
}

/// Why a cluster request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The origin could not be pulled from in time.
    #[error(
        "channel {0} is live on another node, but its stream did not reach this node in time; try again"
    )]
    PullTimeout(String),
    /// The node already serves as many edges as it may.
    #[error(
        "this node already feeds {0} edge nodes with the channel (max_edges_per_origin); pull from another node carrying it"
    )]
    TooManyEdges(usize),
    /// The pulling node feeds this one: accepting would make a loop.
    #[error("this node pulls the channel from node {0}; it cannot feed it too")]
    Loop(i64),
}

impl Cluster {
    /// The state of a member (`config.is_member`, checked by the caller).
    pub fn new(
        catalog: Catalog,
        relay: RelayHandle,
        config: &ClusterConfig,
        pull_ip: IpAddr,
    ) -> Arc<Cluster> {
        Arc::new(Cluster {
            catalog,
            relay,
            secret: config.secret.clone().unwrap_or_default().into_bytes(),
            node_url: config
                .node_url
                .clone()
                .unwrap_or_default()
                .trim()
                .trim_end_matches('/')
                .to_string(),
            max_viewers: config.max_viewers,
            max_edges: config.max_edges_per_origin,
            pull_ip,
            edges: Mutex::default(),
            served: Mutex::default(),
            admitting: Mutex::default(),
            pulling_from: Mutex::default(),
            fed: Mutex::default(),
            edge_sessions: Mutex::default(),
            changes: watch::channel(0).0,
            counters: ClusterCounters::default(),
            last_tick: Mutex::default(),
        })
    }

    /// Whether `session` is another node's that this one feeds as an edge.
    pub fn is_edge_session(&self, session: crate::ids::SessionId) -> bool {
        lock(&self.edge_sessions).contains(&session)
    }

    /// `[cluster] node_url`.
    pub fn node_url(&self) -> &str {
        &self.node_url
    }

    /// The cluster secret, for signing and checking pulls.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Checks a signed edge pull's header (`401` when it fails).
    pub fn verify_pull(
        &self,
        path: &str,
        header: Option<&str>,
    ) -> Result<(), sign::SignatureError> {
        let checked = sign::verify(&self.secret, "POST", path, header, now_ms() / 1000);
        if checked.is_err() {
            self.counters
                .signatures_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// Notes a signed pull `key` about to be accepted on `channel`, refusing it when its
    /// node would be past `max_edges_per_origin` nodes (counting pulls being admitted;
    /// one node's pulls of several renditions and codecs count once) or when this node
    /// pulls the channel from that node itself (a loop). An edge runs one pull per stream,
    /// so a pull with the same key replaces the node's earlier one (which dropped without
    /// its `DELETE`), and pulls of nodes no longer alive are not counted.
    pub async fn admit_pull(
        &self,
        channel: &ChannelName,
        key: &PullKey,
    ) -> Result<(), ClusterError> {
        let edge = key.edge;
        if lock(&self.pulling_from).get(channel) == Some(&edge) {
            return Err(ClusterError::Loop(edge));
        }
        let full = || {
            let mut served = lock(&self.served);
            if let Some(set) = served.get_mut(channel) {
                set.retain(|_, k| k != key);
            }
            let mut admitting = lock(&self.admitting);
            let pending = admitting.entry(channel.clone()).or_default();
            pending.retain(|(at, _)| at.elapsed() < ADMITTING);
            let nodes: HashSet<i64> = served
                .get(channel)
                .into_iter()
                .flat_map(|set| set.values().map(|k| k.edge))
                .chain(pending.iter().map(|(_, k)| k.edge))
                .collect();
            let n = nodes.len();
            if self.max_edges > 0 && n >= self.max_edges && !nodes.contains(&edge) {
                return Some(n);
            }
            pending.push((Instant::now(), key.clone()));
            None
        };
        let Some(_) = full() else {
            return Ok(());
        };
        // Full: forget the pulls of nodes that are gone, and look again.
        let alive: HashSet<i64> = self
            .catalog
            .cluster_nodes()
            .await?
            .into_iter()
            .filter(|n| n.alive)
            .map(|n| n.id)
            .collect();
        if let Some(set) = lock(&self.served).get_mut(channel) {
            set.retain(|_, k| alive.contains(&k.edge));
        }
        match full() {
            Some(n) => Err(ClusterError::TooManyEdges(n)),
            None => Ok(()),
        }
    }

    /// A signed pull admitted with [`Cluster::admit_pull`] was accepted as resource
    /// `resource` (`None`: it failed after all).
    pub fn pull_accepted(&self, channel: &ChannelName, key: &PullKey, resource: Option<&str>) {
        let mut served = lock(&self.served);
        if let Some(pending) = lock(&self.admitting).get_mut(channel)
            && let Some(i) = pending.iter().position(|(_, k)| k == key)
        {
            pending.remove(i);
        }
        let Some(resource) = resource else {
            return;
        };
        self.counters.pulls_served.fetch_add(1, Ordering::Relaxed);
        served
            .entry(channel.clone())
            .or_default()
            .insert(resource.to_string(), key.clone());
    }

    /// A WHEP resource ended (a signed pull's, perhaps).
    pub fn resource_ended(&self, channel: &ChannelName, resource: &str) {
        let mut served = lock(&self.served);
        if let Some(set) = served.get_mut(channel) {
            set.remove(resource);
            if set.is_empty() {
                served.remove(channel);
            }
        }
    }

    /// Signed pulls served now, per channel.
    pub fn pulls_now(&self) -> usize {
        lock(&self.served).values().map(HashMap::len).sum()
    }

    /// Whether this node has as many WebRTC viewers as `max_viewers`.
    pub fn at_capacity(&self) -> bool {
        self.max_viewers > 0 && self.local_viewers() >= self.max_viewers
    }

    fn local_viewers(&self) -> usize {
        self.relay
            .board()
            .live()
            .iter()
            .map(|(_, s)| s.viewers)
            .sum()
    }

    /// Another alive node with room (the least loaded), for a `307`.
    pub async fn node_with_room(&self) -> Result<Option<ClusterNode>, ClusterError> {
        let me = self.catalog.this_node();
        let mut nodes: Vec<ClusterNode> = self
            .catalog
            .cluster_nodes()
            .await?
            .into_iter()
            .filter(|n| Some(n.id) != me && n.has_room() && !n.node_url.is_empty())
            .collect();
        nodes.sort_by_key(|n| n.viewers);
        Ok(nodes.into_iter().next())
    }

    /// Makes `channel` live here from its origin on another node when it is not live
    /// here: starts (or joins) this node's one pull of it and waits until it feeds the
    /// relay. `Ok(false)` when no other node is live on the channel.
    pub async fn ensure_edge(
        self: &Arc<Self>,
        channel: &ChannelName,
    ) -> Result<bool, ClusterError> {
        if self.relay.board().get(channel).is_some_and(|s| s.live) {
            return Ok(true);
        }
        let mut ready = {
            let running = lock(&self.edges).get(channel).cloned();
            match running {
                Some(ready) => ready,
                None => {
                    if self.catalog.channel_origin(channel).await?.is_none() {
                        return Ok(false);
                    }
                    let mut edges = lock(&self.edges);
                    match edges.get(channel) {
                        Some(ready) => ready.clone(),
                        None => {
                            let (tx, rx) = watch::channel(false);
                            edges.insert(channel.clone(), rx.clone());
                            tokio::spawn(edge::run(self.clone(), channel.clone(), tx));
                            rx
                        }
                    }
                }
            }
        };
        let waited = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if *ready.borrow_and_update()
                    && self.relay.board().get(channel).is_some_and(|s| s.live)
                {
                    return true;
                }
                tokio::select! {
                    changed = ready.changed() => if changed.is_err() { return false; },
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
        .await;
        match waited {
            Ok(true) => Ok(true),
            _ => Err(ClusterError::PullTimeout(channel.to_string())),
        }
    }

    /// One heartbeat of a member: its load into the registry (which notes it alive by the
    /// database's clock), and its claims of sessions that ended released.
    pub async fn tick(&self) -> Result<(), crate::catalog::CatalogError> {
        let live = self.relay.board().live();
        let sample = TickSample {
            at: Instant::now(),
            cpu_ticks: process_cpu_ticks(),
            packets_out: self
                .relay
                .board()
                .counters
                .packets_out
                .load(Ordering::Relaxed),
        };
        let previous = lock(&self.last_tick).replace(sample);
        let (cpu_permille, kbps) = match previous {
            Some(p) => {
                let secs = sample.at.duration_since(p.at).as_secs_f64().max(0.001);
                // /proc ticks are 1/100 s on Linux.
                let cpu = (sample.cpu_ticks.saturating_sub(p.cpu_ticks) as f64 / 100.0) / secs;
                // Estimated from packets at 1,100 bytes each (the relay counts packets).
                let packets = sample.packets_out.saturating_sub(p.packets_out) as f64;
                (
                    (cpu * 1000.0) as i64,
                    (packets * 1100.0 * 8.0 / 1000.0 / secs) as i64,
                )
            }
            None => (0, 0),
        };
        let load = NodeLoad {
            viewers: live.iter().map(|(_, s)| s.viewers as i64).sum(),
            kbps,
            cpu_permille,
            channels: live.iter().map(|(c, _)| c.to_string()).collect(),
        };
        self.catalog.report_load(&load).await?;
        self.catalog.release_ended_claims().await?;
        Ok(())
    }

    /// Listens for the other nodes' changes (PostgreSQL `LISTEN feiyan_cluster`) until
    /// the server stops; reconnects when the connection drops.
    pub async fn listen(self: Arc<Self>) {
        loop {
            match self.catalog.cluster_listener().await {
                Ok(Some(mut listener)) => loop {
                    match listener.recv().await {
                        Ok(n) => {
                            debug!(payload = n.payload(), "cluster change");
                            self.counters.notifications.fetch_add(1, Ordering::Relaxed);
                            self.changes.send_modify(|v| *v += 1);
                        }
                        Err(e) => {
                            warn!(error = %e, "cluster LISTEN connection lost; reconnecting");
                            break;
                        }
                    }
                },
                Ok(None) => return,
                Err(e) => warn!(error = %e, "cannot LISTEN for cluster changes"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Stops at shutdown: gives up claims and leases so others take over at once.
    pub async fn leave(&self) {
        if let Err(e) = self.catalog.leave_cluster().await {
            warn!(error = %e, "could not leave the cluster cleanly; others take over after gone_after_secs");
        } else {
            info!("left the cluster");
        }
    }

    /// Prometheus lines of this node's cluster figures.
    pub fn metrics(&self) -> String {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let node = self.catalog.this_node().unwrap_or(0);
        let url = &self.node_url;
        let labels = format!("node=\"{node}\",node_url=\"{url}\"");
        let mut out = String::new();
        for (name, help, kind, value) in [
            (
                "feiyan_cluster_pulls_served_total",
                "signed edge pulls accepted as an origin",
                "counter",
                get(&c.pulls_served),
            ),
            (
                "feiyan_cluster_pulls_opened_total",
                "edge pulls opened to an origin",
                "counter",
                get(&c.pulls_opened),
            ),
            (
                "feiyan_cluster_signatures_refused_total",
                "edge pulls refused for a missing, wrong or stale signature",
                "counter",
                get(&c.signatures_refused),
            ),
            (
                "feiyan_cluster_redirected_total",
                "viewers sent to another node at max_viewers",
                "counter",
                get(&c.redirected),
            ),
            (
                "feiyan_cluster_notifications_total",
                "NOTIFYs received from other nodes",
                "counter",
                get(&c.notifications),
            ),
            (
                "feiyan_cluster_pulls_served",
                "signed edge pulls served now",
                "gauge",
                self.pulls_now() as u64,
            ),
            (
                "feiyan_cluster_edges",
                "channels this node pulls from an origin now",
                "gauge",
                lock(&self.edges).len() as u64,
            ),
            (
                "feiyan_cluster_node_viewers",
                "WebRTC viewers on this node",
                "gauge",
                self.local_viewers() as u64,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value}\n"
            ));
        }
        out
    }
}

/// This process's user + system CPU in clock ticks (`/proc/self/stat`); 0 elsewhere.
fn process_cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ")".
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A std Mutex held only to read or change a map, never across an await; a poisoned
    // one only means a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

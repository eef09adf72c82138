//! Nodes in a cluster: the registry (each node's URL, media address, capacity and load,
//! refreshed with its heartbeat), one origin per channel (`channel_origins`), leases for
//! work exactly one node does (`cluster_leases`: pull sources, screenings), and
//! PostgreSQL `NOTIFY` on the `feiyan_cluster` channel when any of them changes.
//!
//! "Alive" is judged by the database's clock (see [`super::nodes`]): a node seen within
//! `[cluster] gone_after_secs` that has not said it stopped. A single server (SQLite, or no
//! cluster secret) never calls [`Catalog::join_cluster`]: its claims and leases always
//! succeed without touching the tables, so a quick restart is not locked out by its own
//! predecessor's rows.

use std::sync::atomic::Ordering;

use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::{Catalog, CatalogError};
use crate::ids::{ChannelName, SessionId};

/// The PostgreSQL `LISTEN` channel nodes tell each other of changes on.
pub const NOTIFY_CHANNEL: &str = "feiyan_cluster";

/// What a node reports with each heartbeat.
#[derive(Debug, Clone, Default)]
pub struct NodeLoad {
    /// WebRTC viewers connected now (edge pulls it serves included).
    pub viewers: i64,
    /// Media sent, kbit/s, over the last heartbeat.
    pub kbps: i64,
    /// Process CPU over the last heartbeat, in thousandths of one core.
    pub cpu_permille: i64,
    /// The channels live on this node (its own publishers and the ones it pulls).
    pub channels: Vec<String>,
}

/// A node as the registry lists it (`/api/cluster`, `feiyan node list`).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterNode {
    /// Its `relay_nodes` id.
    pub id: i64,
    /// Where other nodes reach it (`[cluster] node_url`).
    pub node_url: String,
    /// Its media UDP address as advertised to viewers.
    pub media_addr: String,
    /// `[cluster] max_viewers` (0: no limit).
    pub max_viewers: i64,
    /// Load at its last heartbeat.
    pub viewers: i64,
    /// kbit/s sent at its last heartbeat.
    pub kbps: i64,
    /// CPU in thousandths of a core at its last heartbeat.
    pub cpu_permille: i64,
    /// Channels live on it.
    pub channels: Vec<String>,
    /// The channels it is the origin of.
    pub origin_of: Vec<String>,
    /// Its last heartbeat, unix ms by the database's clock.
    pub seen_at: i64,
    /// Seen within `gone_after_secs` and not stopped.
    pub alive: bool,
}

impl ClusterNode {
    /// Whether it takes another viewer.
    pub fn has_room(&self) -> bool {
        self.alive && (self.max_viewers == 0 || self.viewers < self.max_viewers)
    }
}

/// The node a channel's publisher is live on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Its `relay_nodes` id.
    pub node_id: i64,
    /// Where it is reached.
    pub node_url: String,
    /// The live session (an edge's viewers count in it).
    pub session: SessionId,
}

impl Catalog {
    /// Makes this server a cluster member: notes its URL, media address and capacity in
    /// its `relay_nodes` row; claims and leases are enforced from now on, a node unseen
    /// for `gone_after_ms` losing them.
    pub async fn join_cluster(
        &self,
        node_url: &str,
        media_addr: &str,
        max_viewers: usize,
        gone_after_ms: i64,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE relay_nodes SET node_url = $1, media_addr = $2, max_viewers = $3 WHERE id = $4",
        )
        .bind(node_url)
        .bind(media_addr)
        .bind(max_viewers as i64)
        .bind(self.node_id().unwrap_or(0))
        .execute(&self.pool)
        .await?;
        self.member_gone_after_ms
            .store(gone_after_ms.max(1), Ordering::Relaxed);
        self.notify_cluster("node").await;
        Ok(())
    }

    /// Whether [`Catalog::join_cluster`] made this server a member.
    pub fn is_member(&self) -> bool {
        self.member_gone_after_ms.load(Ordering::Relaxed) > 0
    }

    /// This server's `relay_nodes` id once registered.
    pub fn this_node(&self) -> Option<i64> {
        self.node_id()
    }

    /// SQL: the ids of the nodes alive now.
    fn alive_nodes_sql(&self) -> String {
        let gone_after = self.member_gone_after_ms.load(Ordering::Relaxed).max(1);
        format!(
            "SELECT id FROM relay_nodes WHERE stopped = 0 AND seen_at >= {} - {gone_after}",
            self.database_now_sql()
        )
    }

    /// The heartbeat of a member: alive now (database clock) with its load.
    pub async fn report_load(&self, load: &NodeLoad) -> Result<(), CatalogError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE relay_nodes SET seen_at = {}, viewers = $2, kbps = $3, cpu_permille = $4, \
             channels = $5 WHERE id = $1",
            self.database_now_sql()
        )))
        .bind(self.node_id().unwrap_or(0))
        .bind(load.viewers)
        .bind(load.kbps)
        .bind(load.cpu_permille)
        .bind(load.channels.join(","))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every node seen within ten gone-after windows, alive or not, newest first.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, CatalogError> {
        let gone_after = match self.member_gone_after_ms.load(Ordering::Relaxed) {
            0 => 60_000,
            ms => ms,
        };
        self.cluster_nodes_seen(gone_after).await
    }

    /// [`Catalog::cluster_nodes`] with `gone_after_ms` as the liveness limit (the CLI,
    /// which is no member).
    pub async fn cluster_nodes_seen(
        &self,
        gone_after_ms: i64,
    ) -> Result<Vec<ClusterNode>, CatalogError> {
        let gone_after = gone_after_ms.max(1);
        type Row = (i64, String, String, i64, i64, i64, i64, String, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, node_url, media_addr, max_viewers, viewers, kbps, cpu_permille, channels, \
             seen_at, CASE WHEN stopped = 0 AND seen_at >= t.now - {gone_after} THEN 1 ELSE 0 END \
             FROM relay_nodes, (SELECT {} AS now) t \
             WHERE node_url <> '' AND seen_at >= t.now - {} ORDER BY id DESC",
            self.database_now_sql(),
            gone_after * 10
        )))
        .fetch_all(&self.pool)
        .await?;
        let origins: Vec<(String, i64)> =
            sqlx::query_as("SELECT channel, node_id FROM channel_origins ORDER BY channel")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    node_url,
                    media_addr,
                    max_viewers,
                    viewers,
                    kbps,
                    cpu,
                    channels,
                    seen,
                    alive,
                )| {
                    ClusterNode {
                        id,
                        node_url,
                        media_addr,
                        max_viewers,
                        viewers,
                        kbps,
                        cpu_permille: cpu,
                        channels: channels
                            .split(',')
                            .filter(|c| !c.is_empty())
                            .map(str::to_string)
                            .collect(),
                        origin_of: origins
                            .iter()
                            .filter(|(_, node)| *node == id)
                            .map(|(c, _)| c.clone())
                            .collect(),
                        seen_at: seen,
                        alive: alive == 1,
                    }
                },
            )
            .collect())
    }

    /// Claims `channel` for this node's live session `session` (a publisher going live).
    /// Taken from another node only when that node is gone or its session has ended;
    /// otherwise `Conflict` naming the origin's URL. A single server always succeeds.
    pub async fn claim_channel(
        &self,
        channel: &ChannelName,
        session: SessionId,
    ) -> Result<(), CatalogError> {
        if !self.is_member() {
            return Ok(());
        }
        let me = self.node_id().unwrap_or(0);
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO channel_origins (channel, node_id, session_id, claimed_at) \
             VALUES ($1, $2, $3, {now}) \
             ON CONFLICT (channel) DO UPDATE SET node_id = excluded.node_id, \
             session_id = excluded.session_id, claimed_at = excluded.claimed_at \
             WHERE channel_origins.node_id = excluded.node_id \
             OR channel_origins.node_id NOT IN ({alive}) \
             OR NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = channel_origins.session_id \
                            AND s.ended_at IS NULL)",
            now = self.database_now_sql(),
            alive = self.alive_nodes_sql()
        )))
        .bind(channel.as_str())
        .bind(me)
        .bind(session.0)
        .execute(&self.pool)
        .await?;
        let holder: Option<(i64, String)> = sqlx::query_as(
            "SELECT o.node_id, COALESCE(n.node_url, '') FROM channel_origins o \
             LEFT JOIN relay_nodes n ON n.id = o.node_id WHERE o.channel = $1",
        )
        .bind(channel.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match holder {
            Some((node, _)) if node == me => {
                self.notify_cluster("origin").await;
                Ok(())
            }
            Some((_, url)) => Err(origin_conflict(channel, &url)),
            None => Err(CatalogError::Conflict(format!(
                "channel {channel} could not be claimed for this node; try again"
            ))),
        }
    }

    /// The origin of `channel` when it is another alive node with an open session;
    /// `None` when the channel is live nowhere else (or this is a single server).
    pub async fn channel_origin(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Origin>, CatalogError> {
        if !self.is_member() {
            return Ok(None);
        }
        let row: Option<(i64, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT o.node_id, n.node_url, o.session_id FROM channel_origins o \
             JOIN relay_nodes n ON n.id = o.node_id \
             WHERE o.channel = $1 AND o.node_id <> $2 AND o.node_id IN ({}) \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = o.session_id AND s.ended_at IS NULL)",
            self.alive_nodes_sql()
        )))
        .bind(channel.as_str())
        .bind(self.node_id().unwrap_or(0))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(node_id, node_url, session)| Origin {
            node_id,
            node_url,
            session: SessionId(session),
        }))
    }

    /// The channels live on other alive nodes (their origin and session), with how many
    /// viewers watch each session now on every node (open viewer rows): what a node lists
    /// beside its own live channels, so any node's front page shows every live lecture.
    /// Empty on a single server.
    pub async fn live_elsewhere(&self) -> Result<Vec<(String, Origin, i64)>, CatalogError> {
        if !self.is_member() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64, String, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT o.channel, o.node_id, n.node_url, o.session_id,              (SELECT COUNT(*) FROM viewers v WHERE v.session_id = o.session_id AND v.left_at IS NULL)              FROM channel_origins o JOIN relay_nodes n ON n.id = o.node_id              WHERE o.node_id <> $1 AND o.node_id IN ({})              AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = o.session_id AND s.ended_at IS NULL)              ORDER BY o.channel",
            self.alive_nodes_sql()
        )))
        .bind(self.node_id().unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(channel, node_id, node_url, session, viewers)| {
                let origin = Origin {
                    node_id,
                    node_url,
                    session: SessionId(session),
                };
                (channel, origin, viewers)
            })
            .collect())
    }

    /// `Conflict` naming the origin when another alive node is live on `channel` (checked
    /// before a publisher's session is opened; [`Catalog::claim_channel`] decides).
    pub async fn check_not_origin_elsewhere(
        &self,
        channel: &ChannelName,
    ) -> Result<(), CatalogError> {
        match self.channel_origin(channel).await? {
            Some(origin) => Err(origin_conflict(channel, &origin.node_url)),
            None => Ok(()),
        }
    }

    /// Releases this node's claims whose session has ended (every heartbeat).
    pub async fn release_ended_claims(&self) -> Result<u64, CatalogError> {
        if !self.is_member() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM channel_origins WHERE node_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM sessions s WHERE s.id = channel_origins.session_id AND s.ended_at IS NULL)",
        )
        .bind(self.node_id().unwrap_or(0))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            self.notify_cluster("origin").await;
        }
        Ok(done.rows_affected())
    }

    /// Takes (or keeps) the lease `name` (e.g. `source:12`, `screening:4`): true when this
    /// node holds it. A lease is taken from a node only once that node is gone; a single
    /// server always holds every lease.
    pub async fn take_lease(&self, name: &str) -> Result<bool, CatalogError> {
        if !self.is_member() {
            return Ok(true);
        }
        let me = self.node_id().unwrap_or(0);
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO cluster_leases (name, node_id, taken_at) VALUES ($1, $2, {now}) \
             ON CONFLICT (name) DO UPDATE SET node_id = excluded.node_id, \
             taken_at = excluded.taken_at \
             WHERE cluster_leases.node_id <> excluded.node_id \
             AND cluster_leases.node_id NOT IN ({alive})",
            now = self.database_now_sql(),
            alive = self.alive_nodes_sql()
        )))
        .bind(name)
        .bind(me)
        .execute(&self.pool)
        .await?;
        let (holder,): (i64,) =
            sqlx::query_as("SELECT node_id FROM cluster_leases WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        Ok(holder == me)
    }

    /// At a clean stop: gives up this node's claims and leases and notes it stopped, so
    /// others take over at once instead of after `gone_after_secs`.
    pub async fn leave_cluster(&self) -> Result<(), CatalogError> {
        if !self.is_member() {
            return Ok(());
        }
        let me = self.node_id().unwrap_or(0);
        for sql in [
            "DELETE FROM channel_origins WHERE node_id = $1",
            "DELETE FROM cluster_leases WHERE node_id = $1",
            "UPDATE relay_nodes SET stopped = 1 WHERE id = $1",
        ] {
            sqlx::query(sql).bind(me).execute(&self.pool).await?;
        }
        self.notify_cluster("node").await;
        Ok(())
    }

    /// Tells the other nodes something changed (PostgreSQL `NOTIFY`; nothing on SQLite).
    pub async fn notify_cluster(&self, what: &str) {
        if !self.is_postgres {
            return;
        }
        let payload = format!("{what}:{}", self.node_id().unwrap_or(0));
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
        {
            tracing::debug!(error = %e, "cluster NOTIFY failed");
        }
    }

    /// A `LISTEN`ing connection on [`NOTIFY_CHANNEL`] (PostgreSQL only).
    pub async fn cluster_listener(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, CatalogError> {
        let Some(rows) = &self.rows else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(rows).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(Some(listener))
    }
}

fn origin_conflict(channel: &ChannelName, url: &str) -> CatalogError {
    CatalogError::Conflict(format!(
        "channel {channel} is already live on another node ({url}); a channel has one origin: publish there ({url}/whip/{channel}) or stop that publisher first"
    ))
}

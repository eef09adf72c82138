//! `[catalog]` (the database and the state folder) and `[cluster]` (liveness of servers
//! sharing one PostgreSQL catalog).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Catalog settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://...` (`FEIYAN_DATABASE_URL` overrides).
    pub database_url: String,
    /// Where the server keeps its own files: the self-signed certificate, the device-id
    /// secret, the attendance spill and dead-letter files. Default: the SQLite file's folder, else `data/`.
    pub state_dir: Option<PathBuf>,
    /// Attendance events held in memory before further ones spill to a file in
    /// `state_dir` (replayed in order once the database takes writes again).
    pub audience_queue_depth: usize,
    /// Times a batch of attendance rows the database refuses is retried before it is
    /// written row by row (rows still refused go to the dead-letter file).
    pub write_retries: u32,
}

/// Cluster liveness and membership (`[cluster]`): every server notes itself alive in the
/// catalog, by the database's clock, and closes what a server silent for `gone_after_secs`
/// left open. A server with a PostgreSQL catalog and a `secret` is a cluster member (see
/// [`ClusterConfig::is_member`]): one origin per channel, edges pulling over signed WHEP.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Seconds between heartbeats.
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a server counts as gone.
    pub gone_after_secs: u64,
    /// The shared secret edge pulls are signed with (HMAC-SHA256; `FEIYAN_CLUSTER_SECRET`
    /// overrides), at least [`MIN_SECRET_BYTES`] bytes. Never sent to another node.
    pub secret: Option<String>,
    /// The URL other nodes (and redirected viewers) reach this one on, e.g.
    /// `http://10.0.0.11:8080` (`FEIYAN_NODE_URL` overrides); required for members.
    pub node_url: Option<String>,
    /// WebRTC viewers this node takes before it answers `307` to a node with room
    /// (0: no limit).
    pub max_viewers: usize,
    /// Signed edge pulls an origin serves per channel (0: no limit); an edge turned away
    /// pulls from another edge instead.
    pub max_edges_per_origin: usize,
}

/// The shortest `[cluster] secret` accepted.
pub const MIN_SECRET_BYTES: usize = 32;

impl std::fmt::Debug for ClusterConfig {
    /// The secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("gone_after_secs", &self.gone_after_secs)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("node_url", &self.node_url)
            .field("max_viewers", &self.max_viewers)
            .field("max_edges_per_origin", &self.max_edges_per_origin)
            .finish()
    }
}

impl ClusterConfig {
    /// Whether a server with the catalog `database_url` is a cluster member: PostgreSQL
    /// and a secret.
    pub fn is_member(&self, database_url: &str) -> bool {
        self.secret.is_some()
            && (database_url.starts_with("postgres://")
                || database_url.starts_with("postgresql://"))
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/feiyan.db".to_string(),
            state_dir: None,
            audience_queue_depth: 65_536,
            write_retries: 5,
        }
    }
}

impl CatalogConfig {
    /// The state folder: `state_dir`, else the SQLite file's folder, else `data/`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let sqlite_file = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty() && !path.starts_with(":memory:"));
        match sqlite_file.and_then(|f| Path::new(f).parent()) {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => PathBuf::from("data"),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 10,
            gone_after_secs: 60,
            secret: None,
            node_url: None,
            max_viewers: 0,
            max_edges_per_origin: 0,
        }
    }
}

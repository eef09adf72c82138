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

/// Cluster liveness (`[cluster]`): every server notes itself alive in the catalog, by the
/// database's clock, and closes what a server silent for `gone_after_secs` left open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Seconds between heartbeats.
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a server counts as gone.
    pub gone_after_secs: u64,
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
        }
    }
}

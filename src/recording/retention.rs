//! Retention: recordings older than `[recording] keep_days`, then the oldest while the
//! recordings take more than `max_disk_mb`, are deleted, never one an administrator marked
//! keep. Each deletion is logged and its reason stays on the catalog row
//! (`GET /api/admin/recordings?deleted=1`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use super::recorder::Recorder;
use super::store;
use crate::audience::now_ms;
use crate::catalog::{Catalog, CatalogError};

/// How often retention runs besides after every new recording.
const EVERY: Duration = Duration::from_secs(600);

/// A recording retention deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// Recording id.
    pub id: i64,
    /// Why.
    pub reason: String,
    /// Bytes freed.
    pub bytes: u64,
}

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// 0: no age limit.
    pub keep_days: u64,
    /// 0: no disk limit.
    pub max_disk_mb: u64,
}

/// Applies the limits once.
pub async fn apply(
    catalog: &Catalog,
    root: &Path,
    limits: Limits,
    now_ms: i64,
) -> Result<Vec<Deleted>, CatalogError> {
    let mut deleted = Vec::new();
    if limits.keep_days == 0 && limits.max_disk_mb == 0 {
        return Ok(deleted);
    }
    let candidates = catalog.retention_candidates().await?;
    let mut rest = Vec::new();
    for rec in candidates {
        let age_days = (now_ms - rec.started_ms) / 86_400_000;
        if limits.keep_days > 0 && age_days >= limits.keep_days as i64 {
            let reason = format!(
                "older than [recording] keep_days = {} ({age_days} days)",
                limits.keep_days
            );
            deleted.push(delete(catalog, root, rec.id, &rec.path, reason, now_ms).await?);
        } else {
            rest.push(rec);
        }
    }
    if limits.max_disk_mb > 0 {
        let max = limits.max_disk_mb * 1024 * 1024;
        let owned = root.to_path_buf();
        let mut used = tokio::task::spawn_blocking(move || store::disk_bytes(&owned))
            .await
            .unwrap_or(0);
        for rec in rest {
            if used <= max {
                break;
            }
            let reason = format!(
                "recordings used {} MiB, over [recording] max_disk_mb = {}; oldest unkept first",
                used / (1024 * 1024),
                limits.max_disk_mb
            );
            let gone = delete(catalog, root, rec.id, &rec.path, reason, now_ms).await?;
            used = used.saturating_sub(gone.bytes);
            deleted.push(gone);
        }
    }
    Ok(deleted)
}

async fn delete(
    catalog: &Catalog,
    root: &Path,
    id: i64,
    rel: &str,
    reason: String,
    now_ms: i64,
) -> Result<Deleted, CatalogError> {
    let owned = (root.to_path_buf(), rel.to_string());
    let bytes = match tokio::task::spawn_blocking(move || store::remove(&owned.0, &owned.1)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            warn!(recording = id, %err, "retention could not remove the files");
            0
        }
        Err(_) => 0,
    };
    catalog.mark_recording_deleted(id, &reason, now_ms).await?;
    info!(recording = id, bytes, %reason, "recording deleted by retention");
    Ok(Deleted { id, reason, bytes })
}

/// Runs retention after every new recording and every [`EVERY`].
pub fn spawn(recorder: &Arc<Recorder>, catalog: Catalog, limits: Limits) {
    let root = recorder.root().to_path_buf();
    let mut rows = recorder.rows();
    tokio::spawn(async move {
        loop {
            if let Err(err) = apply(&catalog, &root, limits, now_ms()).await {
                warn!(%err, "retention failed; it runs again later");
            }
            tokio::select! {
                changed = rows.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    });
}

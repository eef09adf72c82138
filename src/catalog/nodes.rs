//! Servers sharing a catalog: each start registers a node (its number goes into viewer row
//! ids) and notes now and then that it is alive, so what a server that went away left open
//! can be closed ([`Catalog::close_gone`]).

use std::sync::atomic::Ordering;

use super::{Catalog, CatalogError};

/// How often a server notes in the catalog that it is alive ([`Catalog::heartbeat`]).
pub const NODE_HEARTBEAT_MS: i64 = 10_000;
/// A server unseen for this long is gone: [`Catalog::close_gone`] closes what it left open.
pub const NODE_GONE_MS: i64 = 60_000;

impl Catalog {
    /// Records a server start and returns its node number for viewer row ids (see
    /// [`ViewerIds`](crate::audience::ViewerIds)): consecutive starts get consecutive
    /// numbers, so servers sharing one catalog never make the same id. Sessions this
    /// catalog opens from now on are the node's.
    pub async fn register_node(&self, at_ms: i64) -> Result<u64, CatalogError> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO relay_nodes (started_at, seen_at) VALUES ($1, $1) RETURNING id",
        )
        .bind(at_ms)
        .fetch_one(&self.pool)
        .await?;
        self.node.store(id, Ordering::Relaxed);
        Ok(id as u64)
    }

    /// Notes that this server is alive at `at_ms` (every [`NODE_HEARTBEAT_MS`]).
    pub async fn heartbeat(&self, at_ms: i64) -> Result<(), CatalogError> {
        sqlx::query("UPDATE relay_nodes SET seen_at = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(self.node_id().unwrap_or(0))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// This server's `relay_nodes` id, once registered.
    pub(super) fn node_id(&self) -> Option<i64> {
        Some(self.node.load(Ordering::Relaxed)).filter(|&id| id != 0)
    }
}

//! Servers sharing a catalog: each start registers a node (its number goes into viewer row
//! ids) and notes every `[cluster] heartbeat_secs` that it is alive, so what a server that
//! went away left open can be closed ([`Catalog::close_gone`]).
//!
//! Liveness is kept by the database's clock, not the servers': a heartbeat stores the
//! database's time, and "gone" compares against it, so a server whose clock is minutes off
//! neither looks gone to the others nor finds them gone.

use std::sync::atomic::Ordering;

use sqlx::AssertSqlSafe;

use super::{Catalog, CatalogError};

impl Catalog {
    /// The database's clock in unix milliseconds, as an SQL expression. PostgreSQL's
    /// `clock_timestamp()` is the time of the call (`now()` would be the transaction's
    /// start); SQLite's `julianday('now')` has millisecond precision.
    pub(super) fn database_now_sql(&self) -> &'static str {
        if self.is_postgres {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        } else {
            "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        }
    }

    /// The database's clock in unix milliseconds.
    pub async fn database_now_ms(&self) -> Result<i64, CatalogError> {
        let (now,): (i64,) =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {}", self.database_now_sql())))
                .fetch_one(&self.pool)
                .await?;
        Ok(now)
    }

    /// Records a server start (at the database's time) and returns its node number for
    /// viewer row ids (see [`ViewerIds`](crate::audience::ViewerIds)): consecutive starts
    /// get consecutive numbers, so servers sharing one catalog never make the same id.
    /// Sessions this catalog opens from now on are the node's.
    pub async fn register_node(&self) -> Result<u64, CatalogError> {
        let (id,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO relay_nodes (started_at, seen_at) \
             SELECT t.now, t.now FROM (SELECT {} AS now) t RETURNING id",
            self.database_now_sql()
        )))
        .fetch_one(&self.pool)
        .await?;
        self.node.store(id, Ordering::Relaxed);
        Ok(id as u64)
    }

    /// Notes that this server is alive now, by the database's clock (every
    /// `[cluster] heartbeat_secs`).
    pub async fn heartbeat(&self) -> Result<(), CatalogError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE relay_nodes SET seen_at = {} WHERE id = $1",
            self.database_now_sql()
        )))
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

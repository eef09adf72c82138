//! The audience writer: the relay hands attendance events to a bounded queue and never
//! waits; this task writes them in batches (one transaction per batch, ~1 s worst case)
//! and retries a failed batch instead of dropping it.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::Catalog;
use super::sessions::peak_of;
use crate::audience::{AudienceEvent, AudienceSink};

/// Starts the writer; it ends when the sink is dropped and everything queued is written.
pub fn spawn_writer(catalog: Catalog, capacity: usize) -> (AudienceSink, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<AudienceEvent>(capacity);
    let handle = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(512);
        loop {
            let Some(first) = rx.recv().await else { break };
            batch.push(first);
            // Gather what arrives within a short window so a join storm is one transaction.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            while batch.len() < 2048 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(event)) => batch.push(event),
                    Ok(None) | Err(_) => break,
                }
            }
            let mut backoff = Duration::from_millis(100);
            loop {
                match write_batch(&catalog, &batch).await {
                    Ok(()) => break,
                    Err(err) => {
                        warn!(
                            ?err,
                            events = batch.len(),
                            "audience batch failed; retrying"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            debug!(events = batch.len(), "audience batch written");
            batch.clear();
        }
    });
    (AudienceSink::new(tx), handle)
}

/// Rows per multi-row statement on SQLite: there is no round trip to save, and statements
/// with thousands of bound values were measured to write slower per row than short ones.
const ROWS_PER_STATEMENT_SQLITE: usize = 100;

/// The two `UPDATE ... FROM d(k, v)` a batch applies: leaves, then ends. Each condition
/// makes a repeated value a no-op. An end also records the session's peak from its viewer
/// rows ([`peak_of`]); every join of the session came before its end in the queue, so it is
/// written by then.
fn update_sets() -> [(&'static str, String); 2] {
    [
        (
            "viewers",
            "left_at = d.v FROM d WHERE viewers.id = d.k AND viewers.left_at IS NULL".into(),
        ),
        (
            "sessions",
            format!(
                "ended_at = d.v, peak_viewers = {} \
                 FROM d WHERE sessions.id = d.k AND sessions.ended_at IS NULL",
                peak_of("SELECT k FROM d", "sessions.id")
            ),
        ),
    ]
}

/// A join as a JSON object for `json_to_recordset` (PostgreSQL).
#[derive(serde::Serialize)]
struct JoinRow<'a> {
    id: i64,
    s: i64,
    j: i64,
    t: &'a str,
    k: &'a str,
    c: &'a str,
}

/// A (key, value) pair as a JSON object for `json_to_recordset` (PostgreSQL).
#[derive(serde::Serialize)]
struct Pair {
    k: i64,
    v: i64,
}

/// PostgreSQL: every kind of change is one statement however big the batch, its rows passed
/// as one JSON text parameter. Thousands of bound parameters cost more to send, parse and
/// plan than the rows cost to write (16.6k events/s with 1000-row VALUES lists).
async fn write_postgres(
    tx: &mut sqlx::AnyConnection,
    joins: &[&AudienceEvent],
    updates: [&Vec<(i64, i64)>; 2],
) -> Result<(), sqlx::Error> {
    // Every statement here finds rows by key. On a new database the planner's statistics
    // say `viewers` is empty, and it chose a sequential scan of viewers per leave: a
    // 50,000-viewer lecture's leaves took 20 s per batch until autovacuum analysed the
    // table. Within this transaction only, seq scans are ruled out.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<JoinRow> = joins
        .iter()
        .filter_map(|event| match event {
            AudienceEvent::ViewerJoined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } => Some(JoinRow {
                id: id.0,
                s: session.0,
                j: *at_ms,
                t: terminal,
                k: viewer_key,
                c: client_hash,
            }),
            _ => None,
        })
        .collect();
    if !rows.is_empty() {
        sqlx::query(
            "INSERT INTO viewers (id, session_id, joined_at, terminal, viewer_key, client_hash) \
             SELECT id, s, j, t, k, c FROM json_to_recordset($1::json) \
             AS x(id BIGINT, s BIGINT, j BIGINT, t TEXT, k TEXT, c TEXT) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(json(&rows))
        .execute(&mut *tx)
        .await?;
    }
    for ((table, set), rows) in update_sets().iter().zip(updates) {
        if rows.is_empty() {
            continue;
        }
        let pairs: Vec<Pair> = rows.iter().map(|&(k, v)| Pair { k, v }).collect();
        let sql = format!(
            "WITH d AS (SELECT * FROM json_to_recordset($1::json) AS x(k BIGINT, v BIGINT)) \
             UPDATE {table} SET {set}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(json(&pairs))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

fn json(rows: &impl serde::Serialize) -> String {
    // Serializing plain numbers and strings cannot fail.
    serde_json::to_string(rows).unwrap_or_default()
}

/// One batch in one transaction, as a few multi-row statements instead of one per event.
///
/// Grouping by kind keeps the outcome of writing the events one by one in order: joins
/// are inserted before any leave is applied (a leave always follows its join, in this batch
/// or an earlier one); of several leaves or ends of one row only the first counts, as with
/// the `IS NULL` guards. Every statement is idempotent, so a retried
/// batch writes nothing twice.
async fn write_batch(catalog: &Catalog, batch: &[AudienceEvent]) -> Result<(), sqlx::Error> {
    let mut joins = Vec::new();
    let mut leaves: Vec<(i64, i64)> = Vec::new();
    let mut ends: Vec<(i64, i64)> = Vec::new();
    let mut seen = HashSet::new();
    for event in batch {
        match event {
            AudienceEvent::ViewerJoined { id, .. } => {
                if seen.insert((0, id.0)) {
                    joins.push(event);
                }
            }
            AudienceEvent::ViewerLeft { id, at_ms } => {
                if seen.insert((1, id.0)) {
                    leaves.push((id.0, *at_ms));
                }
            }
            AudienceEvent::SessionEnded { session, at_ms } => {
                if seen.insert((2, session.0)) {
                    ends.push((session.0, *at_ms));
                }
            }
        }
    }
    let mut tx = catalog.pool().begin().await?;
    if catalog.is_postgres {
        write_postgres(&mut tx, &joins, [&leaves, &ends]).await?;
        return tx.commit().await;
    }
    for chunk in joins.chunks(ROWS_PER_STATEMENT_SQLITE) {
        // Idempotent so a retried batch does not fail on rows already written.
        let mut sql = String::from(
            "INSERT INTO viewers (id, session_id, joined_at, terminal, viewer_key, client_hash) \
             VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push(',');
            }
            sql += &format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            );
        }
        sql += " ON CONFLICT (id) DO NOTHING";
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for event in chunk {
            if let AudienceEvent::ViewerJoined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } = event
            {
                q = q
                    .bind(id.0)
                    .bind(session.0)
                    .bind(*at_ms)
                    .bind(*terminal)
                    .bind(viewer_key.as_str())
                    .bind(client_hash.as_str());
            }
        }
        q.execute(&mut *tx).await?;
    }
    for ((table, set), rows) in update_sets().iter().zip([&leaves, &ends]) {
        for chunk in rows.chunks(ROWS_PER_STATEMENT_SQLITE) {
            // UPDATE ... FROM a list of (key, value) pairs: SQLite >= 3.33 and PostgreSQL.
            let pairs: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "WITH d(k, v) AS (VALUES {}) UPDATE {table} SET {set}",
                pairs.join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (k, v) in chunk {
                q = q.bind(*k).bind(*v);
            }
            q.execute(&mut *tx).await?;
        }
    }
    tx.commit().await
}

//! The audience writer: the relay hands attendance events to a bounded queue and never
//! waits; this task writes them in batches (one transaction per batch, ~1 s worst case)
//! and retries a failed batch instead of dropping it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::Catalog;
use crate::ids::{SessionId, ViewerId};

/// One change to attendance.
#[derive(Debug, Clone)]
pub enum AudienceEvent {
    /// A viewer started watching a live session.
    ViewerJoined {
        /// Row id, chosen by the relay.
        id: ViewerId,
        /// The session watched.
        session: SessionId,
        /// Unix ms.
        at_ms: i64,
        /// mobile/pc/tv/other.
        terminal: &'static str,
        /// What makes two rows the same person for unique counts.
        viewer_key: String,
        /// Salted hash of the client address.
        client_hash: String,
    },
    /// A viewer stopped watching (left, failed, or the session ended).
    ViewerLeft {
        /// Row id.
        id: ViewerId,
        /// Unix ms.
        at_ms: i64,
    },
    /// A new peak of concurrent viewers.
    Peak {
        /// The session.
        session: SessionId,
        /// Viewers at once.
        peak: i64,
    },
    /// Publishing stopped.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Unix ms.
        at_ms: i64,
    },
}

/// The relay's end of the queue. Not `Clone`: its owner calls [`AudienceSink::flush`] in
/// its loop so events that met a full queue are sent later, in order, never dropped.
pub struct AudienceSink {
    tx: mpsc::Sender<AudienceEvent>,
    /// Events waiting because the queue was full; kept in order.
    overflow: VecDeque<AudienceEvent>,
}

impl AudienceSink {
    /// Queues an event without waiting.
    pub fn push(&mut self, event: AudienceEvent) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(event);
            self.flush();
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(event)) = self.tx.try_send(event) {
            warn!("audience queue full; holding events until the writer catches up");
            self.overflow.push_back(event);
        }
    }

    /// Moves held events into the queue as room frees up.
    pub fn flush(&mut self) {
        while let Some(event) = self.overflow.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.overflow.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    /// Events still held because the queue was full.
    pub fn held(&self) -> usize {
        self.overflow.len()
    }
}

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
    (
        AudienceSink {
            tx,
            overflow: VecDeque::new(),
        },
        handle,
    )
}

async fn write_batch(catalog: &Catalog, batch: &[AudienceEvent]) -> Result<(), sqlx::Error> {
    let mut tx = catalog.pool().begin().await?;
    for event in batch {
        match event {
            AudienceEvent::ViewerJoined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } => {
                // Idempotent so a retried batch does not fail on rows already written.
                sqlx::query(
                    "INSERT INTO viewers (id, session_id, joined_at, terminal, viewer_key, client_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id.0)
                .bind(session.0)
                .bind(*at_ms)
                .bind(*terminal)
                .bind(viewer_key)
                .bind(client_hash)
                .execute(&mut *tx)
                .await?;
            }
            AudienceEvent::ViewerLeft { id, at_ms } => {
                sqlx::query("UPDATE viewers SET left_at = $1 WHERE id = $2 AND left_at IS NULL")
                    .bind(*at_ms)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
            }
            AudienceEvent::Peak { session, peak } => {
                sqlx::query(
                    "UPDATE sessions SET peak_viewers = $1 WHERE id = $2 AND peak_viewers < $1",
                )
                .bind(*peak)
                .bind(session.0)
                .execute(&mut *tx)
                .await?;
            }
            AudienceEvent::SessionEnded { session, at_ms } => {
                sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                    .bind(*at_ms)
                    .bind(session.0)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await
}

//! Attendance as the relay reports it and the catalog records it: the event type, the
//! relay's end of the queue to the catalog writer, the queue's counters, viewer row ids,
//! and the clock.
//!
//! Both the relay and the catalog use this module; it uses neither, so attendance flows
//! one way (relay -> queue -> catalog writer) without the relay knowing the catalog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::error;

use crate::ids::{SessionId, ViewerId};

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The start of the viewer key of another node's signed edge pull: the catalog writes no
/// row for it (the edge's residents have their own rows, in the same session).
pub const EDGE_PULL_KEY: &str = "edge-pull:";

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
    /// Publishing stopped.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Unix ms.
        at_ms: i64,
    },
}

/// The terminal names [`AudienceEvent::ViewerJoined`] carries, for reading events back
/// from a file: a known name as the `&'static str` the relay uses, anything else `other`.
pub fn terminal_name(text: &str) -> &'static str {
    ["mobile", "pc", "tv"]
        .into_iter()
        .find(|t| *t == text)
        .unwrap_or("other")
}

/// The relay's end of the queue (and, through [`AudienceSink::sibling`], live HLS's). Sending never waits and never
/// fails while the writer runs: the channel is unbounded, and the writer's spool thread
/// drains it at once into memory (up to `[catalog] audience_queue_depth` events) or, past
/// that, into the spill file, so no file I/O happens on the relay's thread.
pub struct AudienceSink {
    tx: mpsc::Sender<AudienceEvent>,
    /// Hands out viewer row ids, shared with the sink's siblings so no two rows get one id.
    ids: std::sync::Arc<std::sync::Mutex<ViewerIds>>,
}

/// The attendance queue's figures for `/metrics`, shared by the catalog writer's parts.
#[derive(Debug, Default)]
pub struct AttendanceCounters {
    /// Events received and not yet written (in memory or in the spill file).
    pub queued: AtomicU64,
    /// Events appended to the spill file because the memory queue was full.
    pub spilled: AtomicU64,
    /// Events read back from the spill file (this run's or one a previous run left).
    pub replayed: AtomicU64,
    /// Events the database refused row by row, kept in the dead-letter file.
    pub refused: AtomicU64,
}

impl AttendanceCounters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` from `counter`, never below zero.
    pub fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    /// Name, help text, Prometheus type and value of each figure, for `/metrics`.
    pub fn snapshot(&self) -> [(&'static str, &'static str, &'static str, u64); 4] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "feiyan_audience_queue_depth",
                "attendance events waiting to be written (memory and spill file)",
                "gauge",
                get(&self.queued),
            ),
            (
                "feiyan_audience_spilled_total",
                "attendance events spilled to the file past the memory queue",
                "counter",
                get(&self.spilled),
            ),
            (
                "feiyan_audience_replayed_total",
                "attendance events read back from the spill file",
                "counter",
                get(&self.replayed),
            ),
            (
                "feiyan_audience_refused_total",
                "attendance rows the database refused, kept in the dead-letter file",
                "counter",
                get(&self.refused),
            ),
        ]
    }
}

/// Viewer row ids that grow with time, so new rows land at the end of the id index
/// instead of on random pages of it: 41 bits of milliseconds since 2024-01-01 UTC, 10 bits
/// of node number and a 12-bit sequence. One node never repeats an id (within a
/// millisecond the sequence counts up, and past 4096 it borrows the next millisecond);
/// nodes sharing a catalog get different numbers from the catalog's `register_node`.
/// With random ids each insert into a large catalog dirties its own page of the index
/// (the write rate is in docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct ViewerIds {
    node: u64,
    /// Milliseconds since the epoch below and sequence of the last id, as `ms << 12 | seq`.
    last: u64,
}

/// 2024-01-01T00:00:00Z in unix milliseconds.
const ID_EPOCH_MS: i64 = 1_704_067_200_000;

impl ViewerIds {
    /// Ids for node `node` (only its low 10 bits are used).
    pub fn new(node: u64) -> ViewerIds {
        ViewerIds {
            node: node & 0x3ff,
            last: 0,
        }
    }

    /// The next id at unix time `now_ms`.
    pub fn next_at(&mut self, now_ms: i64) -> ViewerId {
        let ms = (now_ms - ID_EPOCH_MS).max(0) as u64 & ((1 << 41) - 1);
        let next = (ms << 12).max(self.last + 1);
        self.last = next;
        let (ms, seq) = (next >> 12, next & 0xfff);
        ViewerId(((ms << 22) | (self.node << 12) | seq) as i64)
    }
}

impl AudienceSink {
    /// The sending end of an attendance queue whose receiver the catalog writer holds.
    /// Viewer ids carry a random node number until [`AudienceSink::set_node`] sets one.
    pub fn new(tx: mpsc::Sender<AudienceEvent>) -> AudienceSink {
        AudienceSink {
            tx,
            ids: std::sync::Arc::new(std::sync::Mutex::new(ViewerIds::new(rand::random()))),
        }
    }

    /// Another end of the same queue, handing out ids from the same sequence (for viewers
    /// the relay does not see: HLS players).
    pub fn sibling(&self) -> AudienceSink {
        AudienceSink {
            tx: self.tx.clone(),
            ids: self.ids.clone(),
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, ViewerIds> {
        // A panic while holding it cannot leave the ids inconsistent: take them anyway.
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event without waiting.
    pub fn push(&mut self, event: AudienceEvent) {
        if self.tx.send(event).is_err() {
            // Only after the writer was stopped past its shutdown grace.
            error!("attendance writer stopped; an attendance event is lost");
        }
    }

    /// A new viewer row id; see [`ViewerIds`].
    pub fn viewer_id(&mut self) -> ViewerId {
        self.ids().next_at(now_ms())
    }

    /// Sets the node number the ids carry (from the catalog's `register_node`).
    pub fn set_node(&mut self, node: u64) {
        let mut ids = self.ids();
        *ids = ViewerIds {
            node: node & 0x3ff,
            last: ids.last,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_ids_grow_carry_the_node_and_never_repeat() {
        let mut ids = ViewerIds::new(5);
        let t = ID_EPOCH_MS + 1_000;
        let a = ids.next_at(t).0;
        assert_eq!(a, (1_000 << 22) | (5 << 12));
        // More than a millisecond's 4096 ids: the sequence borrows the next millisecond.
        let mut last = a;
        for _ in 0..5000 {
            let id = ids.next_at(t).0;
            assert!(id > last, "{id} after {last}");
            assert_eq!((id >> 12) & 0x3ff, 5, "node bits of {id}");
            last = id;
        }
        assert_eq!(last >> 22, 1_001);
        // A clock step back does not repeat ids; a later millisecond starts at sequence 0.
        assert!(ids.next_at(t - 60_000).0 > last);
        assert_eq!(ids.next_at(t + 10).0, ((1_010i64) << 22) | (5 << 12));
        // Node numbers keep their low 10 bits; ids are positive.
        let mut far = ViewerIds::new(1024 + 7);
        let id = far.next_at(ID_EPOCH_MS + (1i64 << 40)).0;
        assert!(id > 0);
        assert_eq!((id >> 12) & 0x3ff, 7);
    }
}

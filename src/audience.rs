//! Attendance as the relay reports it and the catalog records it: the event type, the
//! relay's end of the bounded queue to the catalog writer, viewer row ids, and the clock.
//!
//! Both the relay and the catalog use this module; it uses neither, so attendance flows
//! one way (relay -> queue -> catalog writer) without the relay knowing the catalog.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::warn;

use crate::ids::{SessionId, ViewerId};

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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

/// The relay's end of the queue. Not `Clone`: its owner calls [`AudienceSink::flush`] in
/// its loop so events that met a full queue are sent later, in order, never dropped.
pub struct AudienceSink {
    tx: mpsc::Sender<AudienceEvent>,
    /// Events waiting because the queue was full; kept in order.
    overflow: VecDeque<AudienceEvent>,
    /// Hands out viewer row ids.
    ids: ViewerIds,
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
            overflow: VecDeque::new(),
            ids: ViewerIds::new(rand::random()),
        }
    }

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

    /// A new viewer row id; see [`ViewerIds`].
    pub fn viewer_id(&mut self) -> ViewerId {
        self.ids.next_at(now_ms())
    }

    /// Sets the node number the ids carry (from the catalog's `register_node`).
    pub fn set_node(&mut self, node: u64) {
        self.ids = ViewerIds {
            node: node & 0x3ff,
            last: self.ids.last,
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

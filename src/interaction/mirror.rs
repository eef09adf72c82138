//! A copy of another node's room, for this node's watchers of a channel that is live on
//! that node (its origin in a cluster): built from the origin's snapshot, kept current by
//! applying the origin's batches, which go on to the local watchers as they came (the
//! same text, so the same `ev` numbers on every node).
//!
//! No I/O and no clock: the task that follows the origin's stream feeds it.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::room::{Batch, Event, Snapshot};

/// See the module docs.
#[derive(Debug, Default)]
pub struct Mirror {
    /// Where a new watcher starts; `None` until the origin's snapshot came.
    current: Option<Snapshot>,
    /// Recent messages kept, as on the origin (`[interaction] backlog`).
    backlog: usize,
    /// This node's watchers of the channel.
    watchers: Vec<mpsc::Sender<Arc<str>>>,
}

impl Mirror {
    /// An empty mirror keeping `backlog` recent messages.
    pub fn new(backlog: usize) -> Mirror {
        Mirror {
            backlog,
            ..Mirror::default()
        }
    }

    /// Whether the origin's snapshot came.
    pub fn ready(&self) -> bool {
        self.current.is_some()
    }

    /// Starts from the origin's snapshot.
    pub fn reset(&mut self, snapshot: Snapshot) {
        self.current = Some(snapshot);
    }

    /// Adds a watcher: its snapshot (none before the origin's came), then every batch.
    pub fn watch(&mut self, tx: mpsc::Sender<Arc<str>>) -> Option<Snapshot> {
        let snapshot = self.current.clone()?;
        self.watchers.retain(|w| !w.is_closed());
        self.watchers.push(tx);
        Some(snapshot)
    }

    /// Watchers connected (the ones that left are let go here).
    pub fn watchers(&mut self) -> usize {
        self.watchers.retain(|w| !w.is_closed());
        self.watchers.len()
    }

    /// Lets every watcher go (their pages reconnect): the origin's stream ended.
    pub fn close(&mut self) {
        self.watchers.clear();
        self.current = None;
    }

    /// Applies one of the origin's batches and passes it on to every watcher; a watcher
    /// whose queue is full is let go. How many got it.
    pub fn apply(&mut self, text: Arc<str>) -> Result<usize, serde_json::Error> {
        let batch: Batch<Vec<Event>> = serde_json::from_str(&text)?;
        if let Some(s) = self.current.as_mut() {
            // Events the snapshot already reflects are skipped, as a page skips them.
            let from = s.ev;
            for event in batch.events.into_iter().filter(|e| e.ev() > from) {
                match event {
                    Event::Message { message, .. } => {
                        s.messages.push(message);
                        let excess = s.messages.len().saturating_sub(self.backlog);
                        s.messages.drain(..excess);
                    }
                    Event::Answered { id, answered, .. } => {
                        for m in s.messages.iter_mut().chain(s.pinned.as_mut()) {
                            if m.id == id {
                                m.answered = answered;
                            }
                        }
                    }
                    Event::Deleted { id, .. } => {
                        s.messages.retain(|m| m.id != id);
                        if s.pinned.as_ref().is_some_and(|p| p.id == id) {
                            s.pinned = None;
                        }
                    }
                    Event::Pinned { message, .. } => s.pinned = message,
                    Event::Session { snapshot, .. } => *s = snapshot,
                }
            }
            s.ev = batch.ev;
            s.likes = batch.likes;
            s.checkins = batch.checkins;
        }
        self.watchers.retain(|w| w.try_send(text.clone()).is_ok());
        Ok(self.watchers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::InteractionResume;
    use crate::ids::SessionId;
    use crate::interaction::room::{Kind, Limits, Moderation, Room};
    use std::time::{Duration, Instant};

    /// A mirror fed a room's snapshot and batches gives a new watcher what the room does.
    #[test]
    fn follows_a_room() {
        let limits = Limits {
            message_interval: Duration::ZERO,
            like_interval: Duration::ZERO,
            backlog: 2,
            held_words: vec![],
        };
        let now = Instant::now();
        let mut room = Room::default();
        room.begin(SessionId(3), InteractionResume::default(), limits.backlog);
        let (tx, mut from_room) = mpsc::channel(16);
        let mut mirror = Mirror::new(limits.backlog);
        assert!(mirror.watch(mpsc::channel(1).0).is_none());
        mirror.reset(room.watch(tx));
        let (tx, mut local) = mpsc::channel(16);
        mirror.watch(tx).unwrap();
        for (i, d) in ["a", "b", "c"].iter().enumerate() {
            room.post(&limits, d, "n", "t", Kind::Question, now, i as i64)
                .unwrap();
        }
        room.like(&limits, "a", 5, now).unwrap();
        room.moderate(2, Moderation::Pin, 2).unwrap();
        room.moderate(3, Moderation::Answer(true), 2).unwrap();
        room.moderate(2, Moderation::Delete, 2).unwrap();
        room.flush();
        let text = from_room.try_recv().unwrap();
        assert_eq!(mirror.apply(text.clone()).unwrap(), 1);
        assert_eq!(local.try_recv().unwrap(), text);
        let want = serde_json::to_value(room.snapshot()).unwrap();
        let got = serde_json::to_value(mirror.watch(mpsc::channel(1).0).unwrap()).unwrap();
        assert_eq!(got, want);
    }
}

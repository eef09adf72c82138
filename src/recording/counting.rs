//! Replay viewers (回看人次, 回看分钟): per recording, viewer (`vid`) and Asia/Shanghai day
//! watched, which of the replay's segments were fetched; the minutes are the distinct
//! segments' seconds, so seeking back and watching again counts once.
//!
//! Fetches change an in-memory bitmap per (recording, viewer, day), loaded from the catalog
//! the first time it is touched (a restart continues the same row); changed ones are
//! written every [`FLUSH`], and at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::catalog::{Catalog, ReplayView, shanghai_day};
use crate::device::Terminal;

/// How often changed rows are written.
pub const FLUSH: Duration = Duration::from_secs(2);
/// A written row untouched this long leaves memory.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    recording: i64,
    viewer: String,
    day: String,
}

struct Entry {
    view: ReplayView,
    dirty: bool,
    touched: Instant,
}

/// Counts replay viewers.
pub struct ReplayCounter {
    catalog: Catalog,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl ReplayCounter {
    /// Starts counting (and the periodic writes).
    pub fn start(catalog: Catalog) -> Arc<ReplayCounter> {
        let counter = Arc::new(ReplayCounter {
            catalog,
            entries: Mutex::default(),
        });
        let weak: Weak<ReplayCounter> = Arc::downgrade(&counter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH);
            loop {
                tick.tick().await;
                let Some(counter) = weak.upgrade() else {
                    return;
                };
                counter.flush().await;
            }
        });
        counter
    }

    /// Viewer `viewer_key` on a `terminal` fetched segment `index` (`duration_ms` long) of
    /// `recording` at `at_ms`.
    pub async fn fetched(
        &self,
        recording: i64,
        viewer_key: String,
        terminal: Terminal,
        index: usize,
        duration_ms: i64,
        at_ms: i64,
    ) {
        let key = Key {
            recording,
            viewer: viewer_key,
            day: shanghai_day(at_ms).format("%Y-%m-%d").to_string(),
        };
        let known = self.lock().contains_key(&key);
        let stored = if known {
            None
        } else {
            match self
                .catalog
                .replay_view(recording, &key.viewer, &key.day)
                .await
            {
                Ok(v) => v,
                Err(err) => {
                    warn!(recording, %err, "cannot read a replay viewer's row: counting from here");
                    None
                }
            }
        };
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            view: stored.unwrap_or_else(|| ReplayView {
                recording_id: recording,
                viewer_key: key.viewer.clone(),
                day: key.day.clone(),
                terminal: terminal.as_str().to_string(),
                segments: Vec::new(),
                watched_ms: 0,
                first_ms: at_ms,
                last_ms: at_ms,
            }),
            dirty: true,
            touched: Instant::now(),
        });
        entry.touched = Instant::now();
        let (byte, bit) = (index / 8, 1u8 << (index % 8));
        if entry.view.segments.len() <= byte {
            entry.view.segments.resize(byte + 1, 0);
        }
        if entry.view.segments[byte] & bit == 0 {
            entry.view.segments[byte] |= bit;
            entry.view.watched_ms += duration_ms;
        }
        entry.view.last_ms = entry.view.last_ms.max(at_ms);
        entry.dirty = true;
    }

    /// Writes what changed; forgets rows idle for a while.
    pub async fn flush(&self) {
        let changed: Vec<ReplayView> = {
            let mut entries = self.lock();
            entries.retain(|_, e| e.dirty || e.touched.elapsed() < IDLE);
            entries
                .values_mut()
                .filter(|e| e.dirty)
                .map(|e| {
                    e.dirty = false;
                    e.view.clone()
                })
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        if let Err(err) = self.catalog.record_replay_views(&changed).await {
            warn!(%err, rows = changed.len(), "replay viewers not written: trying again");
            let mut entries = self.lock();
            for view in changed {
                let key = Key {
                    recording: view.recording_id,
                    viewer: view.viewer_key,
                    day: view.day,
                };
                if let Some(e) = entries.get_mut(&key) {
                    e.dirty = true;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

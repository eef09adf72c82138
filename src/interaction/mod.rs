//! Live interaction during a session: chat messages and questions (聊天, 提问), likes
//! (点赞, counted, never stored one by one), check-ins (签到) and the host's moderation
//! (answer, approve, pin, delete, mute), delivered to a channel's watchers in batches.
//!
//! One [`room::Room`] per channel holds the current session's state behind a std `Mutex`
//! (never held across an `.await`: every room method is synchronous). A ticker sends each
//! room's news every `[interaction] batch_ms` as one serialized batch shared by all its
//! watchers, so a busy session costs per batch, not per message per watcher; a watcher
//! that falls `watcher_queue` batches behind is let go (its page reconnects). What must
//! last goes to the catalog through a bounded queue and one writer task
//! ([`crate::catalog::Catalog::write_interaction`]); the request path only queues.
//!
//! Which session a channel is in is the caller's to say (HTTP asks the relay's board):
//! this module knows no relay.

pub mod room;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use crate::catalog::{Catalog, InteractionResume, InteractionWrite};
use crate::config::InteractionConfig;
use crate::ids::{ChannelName, SessionId};
pub use room::{HostView, Kind, Moderation, Posted, Snapshot};
use room::{Limits, Room};

/// Writes waiting for the catalog at most; past it a post is refused (503) rather than
/// kept in memory without bound.
const WRITE_QUEUE: usize = 8192;
/// Writes per transaction at most.
const WRITE_BATCH: usize = 1000;

/// Why a resident's or host's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum InteractionError {
    /// Bad input; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The channel has no live session.
    #[error(
        "this channel is not live now; messages, likes and check-ins open when the session starts"
    )]
    NotLive,
    /// The host muted this device for the session.
    #[error("the host has muted this device for the rest of this session")]
    Muted,
    /// Too soon after the device's last post.
    #[error("too fast: wait {retry_ms} ms before sending again")]
    TooFast {
        /// How long to wait.
        retry_ms: u64,
    },
    /// No such message.
    #[error("{0}")]
    NotFound(String),
    /// The message is in a state that forbids the action.
    #[error("{0}")]
    Conflict(String),
    /// The catalog writer is behind; retry in a moment.
    #[error("the server is busy saving messages; try again in a second")]
    Busy,
    /// Reading the session's state from the catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// The interaction service: rooms by channel, the batch ticker and the catalog writer.
pub struct Interaction {
    config: InteractionConfig,
    limits: Limits,
    /// Rooms by channel; the map's lock is held only to find or add a room.
    rooms: Mutex<HashMap<ChannelName, Arc<Mutex<Room>>>>,
    writes: mpsc::Sender<InteractionWrite>,
    catalog: Catalog,
}

impl std::fmt::Debug for Interaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interaction").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a room leaves plain data behind; go on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Interaction {
    /// Starts the service: its batch ticker and catalog writer run until the service is
    /// dropped (the writer then saves what is queued and ends).
    pub fn start(config: InteractionConfig, catalog: Catalog) -> Arc<Interaction> {
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(catalog.clone(), rx));
        let limits = Limits {
            message_interval: Duration::from_millis(config.message_interval_ms),
            like_interval: Duration::from_millis(config.like_interval_ms),
            backlog: config.backlog,
            held_words: config
                .held_words
                .iter()
                .map(|w| w.trim().to_lowercase())
                .collect(),
        };
        let service = Arc::new(Interaction {
            config,
            limits,
            rooms: Mutex::default(),
            writes,
            catalog,
        });
        tokio::spawn(tick_loop(
            Arc::downgrade(&service),
            Duration::from_millis(service.config.batch_ms),
        ));
        service
    }

    /// The settings in force.
    pub fn config(&self) -> &InteractionConfig {
        &self.config
    }

    /// `channel`'s room, moved on to `session` when that is a new one (its state then
    /// comes from the catalog, in case this server restarted during it).
    async fn room(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
    ) -> Result<Arc<Mutex<Room>>, InteractionError> {
        let room = lock(&self.rooms)
            .entry(channel.clone())
            .or_default()
            .clone();
        let Some(session) = session else {
            return Ok(room);
        };
        if lock(&room).session() == Some(session) {
            return Ok(room);
        }
        let resume = self
            .catalog
            .interaction_resume(session, self.limits.backlog)
            .await?;
        let mut r = lock(&room);
        if r.session() != Some(session) {
            r.begin(session, resume, self.limits.backlog);
        }
        drop(r);
        Ok(room)
    }

    /// A new watcher of `channel`: where it starts and its batches.
    pub async fn watch(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
    ) -> Result<(Snapshot, mpsc::Receiver<Arc<str>>), InteractionError> {
        let room = self.room(channel, session).await?;
        let (tx, rx) = mpsc::channel(self.config.watcher_queue);
        let snapshot = lock(&room).watch(tx);
        Ok((snapshot, rx))
    }

    /// Checks a nickname and text, trimmed: not empty, not too long.
    pub fn check_text(
        &self,
        field: &str,
        text: &str,
        max: usize,
    ) -> Result<String, InteractionError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(InteractionError::Invalid(format!(
                "{field} is empty: write something"
            )));
        }
        let n = t.chars().count();
        if n > max {
            return Err(InteractionError::Invalid(format!(
                "{field} is {n} characters long; at most {max} are allowed"
            )));
        }
        if t.chars().any(|c| c.is_control() && c != '\n') {
            return Err(InteractionError::Invalid(format!(
                "{field} contains control characters"
            )));
        }
        Ok(t.to_string())
    }

    fn queue(&self, writes: impl IntoIterator<Item = InteractionWrite>) {
        for w in writes {
            if self.writes.try_send(w).is_err() {
                // Only after a permit was checked (see `reserve`): the writer has gone.
                warn!("interaction write dropped: the catalog writer is not running");
            }
        }
    }

    /// Fails when the writer's queue has no room for `n` more writes.
    fn reserve(&self, n: usize) -> Result<(), InteractionError> {
        if self.writes.capacity() < n {
            return Err(InteractionError::Busy);
        }
        Ok(())
    }

    /// A resident's message or question.
    #[allow(clippy::too_many_arguments)]
    pub async fn post(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
        device: &str,
        nickname: &str,
        text: &str,
        kind: Kind,
        now: Instant,
        at_ms: i64,
    ) -> Result<Posted, InteractionError> {
        let nickname = self.check_text("nickname", nickname, self.config.max_nickname_chars)?;
        let text = self.check_text("message", text, self.config.max_message_chars)?;
        let session = session.ok_or(InteractionError::NotLive)?;
        self.reserve(1)?;
        let room = self.room(channel, Some(session)).await?;
        let (posted, write) =
            lock(&room).post(&self.limits, device, &nickname, &text, kind, now, at_ms)?;
        self.queue([write]);
        Ok(posted)
    }

    /// Likes (`count` taps) from a device; the total.
    pub async fn like(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
        device: &str,
        count: u32,
        now: Instant,
    ) -> Result<i64, InteractionError> {
        let max = self.config.max_likes_per_post;
        if !(1..=max).contains(&count) {
            return Err(InteractionError::Invalid(format!(
                "count must be 1 to {max} (the taps since the last request)"
            )));
        }
        let session = session.ok_or(InteractionError::NotLive)?;
        self.reserve(1)?;
        let room = self.room(channel, Some(session)).await?;
        let (total, write) = lock(&room).like(&self.limits, device, count, now)?;
        self.queue([write]);
        Ok(total)
    }

    /// A device checks in: whether it is new, and how many have.
    pub async fn check_in(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
        device: &str,
        nickname: &str,
        at_ms: i64,
    ) -> Result<(bool, usize), InteractionError> {
        let nickname = self.check_text("nickname", nickname, self.config.max_nickname_chars)?;
        let session = session.ok_or(InteractionError::NotLive)?;
        self.reserve(1)?;
        let room = self.room(channel, Some(session)).await?;
        let (new, total, write) = lock(&room).check_in(device, &nickname, at_ms)?;
        self.queue(write);
        Ok((new, total))
    }

    /// The host acts on message `id` of the current session.
    pub async fn moderate(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
        id: i64,
        action: Moderation,
    ) -> Result<(), InteractionError> {
        let session = session.ok_or(InteractionError::NotLive)?;
        self.reserve(2)?;
        let room = self.room(channel, Some(session)).await?;
        let writes = lock(&room).moderate(id, action, self.limits.backlog)?;
        self.queue(writes);
        Ok(())
    }

    /// The host takes the pin down.
    pub async fn unpin(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
    ) -> Result<(), InteractionError> {
        let session = session.ok_or(InteractionError::NotLive)?;
        self.reserve(1)?;
        let room = self.room(channel, Some(session)).await?;
        let write = lock(&room).unpin();
        self.queue(write);
        Ok(())
    }

    /// The host's view of `channel`'s current (or last) session.
    pub async fn host_view(
        &self,
        channel: &ChannelName,
        session: Option<SessionId>,
    ) -> Result<HostView, InteractionError> {
        let room = self.room(channel, session).await?;
        let view = lock(&room).host_view();
        Ok(view)
    }

    /// Watchers connected, over every channel.
    pub fn watchers(&self) -> usize {
        let rooms: Vec<_> = lock(&self.rooms).values().cloned().collect();
        rooms.iter().map(|r| lock(r).watchers()).sum()
    }

    /// What a restarted session would start from (for tests of the catalog round trip).
    pub async fn resume(&self, session: SessionId) -> Result<InteractionResume, InteractionError> {
        Ok(self
            .catalog
            .interaction_resume(session, self.limits.backlog)
            .await?)
    }
}

/// Every `period`, each room's news goes out as one batch; ends with the service.
async fn tick_loop(service: Weak<Interaction>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(service) = service.upgrade() else {
            return;
        };
        let rooms: Vec<_> = lock(&service.rooms).values().cloned().collect();
        drop(service);
        for room in rooms {
            lock(&room).flush();
        }
    }
}

/// Saves queued writes, up to [`WRITE_BATCH`] per transaction, until the queue closes.
async fn write_loop(catalog: Catalog, mut rx: mpsc::Receiver<InteractionWrite>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        if let Err(e) = catalog.write_interaction(&batch).await {
            warn!(error = %e, writes = batch.len(), "interaction writes not saved");
        }
        batch.clear();
    }
}

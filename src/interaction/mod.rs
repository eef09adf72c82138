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
//!
//! ## In a cluster: one room per channel, on its origin
//! A channel's room lives on the node its publisher is live on (its origin, the
//! `channel_origins` row). Another node forwards residents' posts, likes, check-ins and
//! the host's actions to the origin over HTTP (HTTP does that, marking them
//! [`FORWARDED_HEADER`] so they never go round), and follows the origin's event stream
//! once per channel ([`Interaction::watch_remote`]): a [`mirror::Mirror`] of the room
//! gives its local watchers their snapshot and passes each batch on as it came. Chosen
//! over `NOTIFY` with each node keeping its own room because one room keeps one order of
//! message numbers, and the rate limits, mutes, word list and held queue hold across nodes
//! with no shared state to keep in step; a post costs one extra hop (~1 ms on a LAN)
//! and the origin sends one stream per node, not one per resident. Mutes are also in the
//! catalog (`chat_mutes`), so an origin restarted during a session keeps them. When the
//! origin's stream ends (it stopped), or the catalog names another origin or none (checked
//! every [`UPSTREAM_IDLE`]), the mirror lets its watchers go and their pages reconnect,
//! finding the new origin or none.

pub mod mirror;
pub mod room;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::catalog::{Catalog, InteractionResume, InteractionWrite};
use crate::config::InteractionConfig;
use crate::ids::{ChannelName, SessionId};
use mirror::Mirror;
pub use room::{HostView, Kind, Moderation, Posted, Snapshot};
use room::{Limits, Room};

/// The header a node puts on a request it forwards to a channel's origin; a node that
/// gets one handles the request itself (or refuses it), never forwarding it again.
pub const FORWARDED_HEADER: &str = "x-feiyan-forwarded";
const PENDING: u8 = 0;
const READY: u8 = 1;
const ENDED: u8 = 2;
/// How long a new watcher on another node waits for the origin's snapshot.
const UPSTREAM_WAIT: Duration = Duration::from_secs(5);
/// How often an origin's stream with no local watchers left is checked, and closed.
const UPSTREAM_IDLE: Duration = Duration::from_secs(10);

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
    /// The node the channel is live on did not answer.
    #[error("the node this channel is live on did not answer ({0}); try again in a moment")]
    Upstream(String),
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
    /// Mirrors of rooms on other nodes (channel, origin URL), for this node's watchers of
    /// channels live there; each has one task following the origin's stream.
    mirrors: Mutex<HashMap<(ChannelName, String), Arc<Upstream>>>,
    /// For forwarding to origins and following their streams (one connection pool).
    http: reqwest::Client,
    /// Figures for `/metrics`.
    pub counters: InteractionCounters,
}

/// One origin's stream followed for this node's watchers.
struct Upstream {
    mirror: Mutex<Mirror>,
    /// [`PENDING`] until the origin's snapshot came ([`READY`]) or the stream ended
    /// ([`ENDED`]).
    ready: watch::Sender<u8>,
}

/// Interaction counters for `/metrics`.
#[derive(Debug, Default)]
pub struct InteractionCounters {
    /// Messages and questions taken (visible or held).
    pub posted: AtomicU64,
    /// Of those, held for the host's review.
    pub held: AtomicU64,
    /// Posts refused (too fast, muted, bad input, not live, busy).
    pub rejected: AtomicU64,
    /// Batches sent (one per room with news per tick, and each passed on by a mirror).
    pub batches: AtomicU64,
    /// Batch deliveries to watchers (a batch to 100 watchers counts 100).
    pub deliveries: AtomicU64,
    /// Requests forwarded to the channel's origin node.
    pub forwarded: AtomicU64,
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
            mirrors: Mutex::default(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            counters: InteractionCounters::default(),
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
        let result = self
            .post_checked(channel, session, device, nickname, text, kind, now, at_ms)
            .await;
        let c = &self.counters;
        match &result {
            Ok(p) => {
                c.posted.fetch_add(1, Ordering::Relaxed);
                if p.state == "held" {
                    c.held.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(InteractionError::Catalog(_)) => {}
            Err(_) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn post_checked(
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

    /// Watchers connected, over every channel (of rooms here and of mirrors).
    pub fn watchers(&self) -> usize {
        let rooms: Vec<_> = lock(&self.rooms).values().cloned().collect();
        let mirrors: Vec<_> = lock(&self.mirrors).values().cloned().collect();
        rooms.iter().map(|r| lock(r).watchers()).sum::<usize>()
            + mirrors
                .iter()
                .map(|m| lock(&m.mirror).watchers())
                .sum::<usize>()
    }

    /// The client requests to origins go through.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A new watcher of `channel`, live on the node at `origin` (its `node_url`): the
    /// mirror of its room here, following the origin's stream from the first watcher on.
    pub async fn watch_remote(
        self: &Arc<Self>,
        channel: &ChannelName,
        origin: &str,
    ) -> Result<(Snapshot, mpsc::Receiver<Arc<str>>), InteractionError> {
        let key = (channel.clone(), origin.to_string());
        let (upstream, new) = {
            let mut mirrors = lock(&self.mirrors);
            match mirrors.get(&key) {
                Some(u) => (u.clone(), false),
                None => {
                    let u = Arc::new(Upstream {
                        mirror: Mutex::new(Mirror::new(self.limits.backlog)),
                        ready: watch::channel(PENDING).0,
                    });
                    mirrors.insert(key.clone(), u.clone());
                    (u, true)
                }
            }
        };
        let mut ready = upstream.ready.subscribe();
        if new {
            let url = format!("{origin}/api/interaction/{channel}/events");
            tokio::spawn(follow(Arc::downgrade(self), key, upstream.clone(), url));
        }
        match tokio::time::timeout(UPSTREAM_WAIT, ready.wait_for(|r| *r != PENDING)).await {
            Ok(Ok(r)) if *r == READY => {}
            _ => {
                return Err(InteractionError::Upstream(format!(
                    "no events from {origin} within {UPSTREAM_WAIT:?}"
                )));
            }
        }
        let (tx, rx) = mpsc::channel(self.config.watcher_queue);
        let snapshot = lock(&upstream.mirror)
            .watch(tx)
            .ok_or_else(|| InteractionError::Upstream(format!("the stream from {origin} ended")))?;
        Ok((snapshot, rx))
    }

    /// `/metrics` lines.
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let c = &self.counters;
        let mut out = String::new();
        for (name, help, value) in [
            (
                "feiyan_chat_posted_total",
                "chat messages and questions taken (visible or held)",
                &c.posted,
            ),
            (
                "feiyan_chat_held_total",
                "chat messages held for the host's review",
                &c.held,
            ),
            (
                "feiyan_chat_rejected_total",
                "chat posts refused (too fast, muted, bad input, not live, busy)",
                &c.rejected,
            ),
            (
                "feiyan_chat_batches_total",
                "chat batches sent (one per channel with news per tick)",
                &c.batches,
            ),
            (
                "feiyan_chat_deliveries_total",
                "chat batches delivered to watchers",
                &c.deliveries,
            ),
            (
                "feiyan_chat_forwarded_total",
                "chat requests forwarded to the channel's origin node",
                &c.forwarded,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let upstreams = lock(&self.mirrors).len();
        for (name, help, value) in [
            (
                "feiyan_chat_watchers",
                "chat watchers connected (SSE)",
                self.watchers(),
            ),
            (
                "feiyan_chat_upstreams",
                "origin event streams followed for this node's watchers",
                upstreams,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
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
        for room in rooms {
            if let Some(sent) = lock(&room).flush() {
                let c = &service.counters;
                c.batches.fetch_add(1, Ordering::Relaxed);
                c.deliveries.fetch_add(sent as u64, Ordering::Relaxed);
            }
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

/// Follows an origin's event stream for `upstream` until it ends or no watcher is left
/// here, then lets the watchers go and forgets the mirror.
async fn follow(
    service: Weak<Interaction>,
    key: (ChannelName, String),
    upstream: Arc<Upstream>,
    url: String,
) {
    let Some(http) = service.upgrade().map(|s| s.http.clone()) else {
        return;
    };
    let result = follow_stream(&service, &http, &upstream, &key.0, &url).await;
    debug!(%url, ?result, "origin's chat stream ended");
    if let Some(service) = service.upgrade() {
        let mut mirrors = lock(&service.mirrors);
        if mirrors.get(&key).is_some_and(|u| Arc::ptr_eq(u, &upstream)) {
            mirrors.remove(&key);
        }
    }
    lock(&upstream.mirror).close();
    upstream.ready.send_replace(ENDED);
}

async fn follow_stream(
    service: &Weak<Interaction>,
    http: &reqwest::Client,
    upstream: &Upstream,
    channel: &ChannelName,
    url: &str,
) -> Result<(), String> {
    let mut r = http
        .get(url)
        .header(FORWARDED_HEADER, "1")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("{url} answered {}", r.status()));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut idle =
        tokio::time::interval_at(tokio::time::Instant::now() + UPSTREAM_IDLE, UPSTREAM_IDLE);
    loop {
        tokio::select! {
            chunk = r.chunk() => {
                let Some(chunk) = chunk.map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                buf.extend_from_slice(&chunk);
                while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = buf.drain(..end + 2).collect();
                    let (event, data) = sse_frame(&frame);
                    match event.as_str() {
                        "snapshot" => {
                            let snapshot: Snapshot =
                                serde_json::from_str(&data).map_err(|e| e.to_string())?;
                            lock(&upstream.mirror).reset(snapshot);
                            upstream.ready.send_replace(READY);
                        }
                        "batch" => {
                            let sent = lock(&upstream.mirror)
                                .apply(data.into())
                                .map_err(|e| e.to_string())?;
                            let Some(service) = service.upgrade() else {
                                return Ok(());
                            };
                            service.counters.batches.fetch_add(1, Ordering::Relaxed);
                            service.counters.deliveries.fetch_add(sent as u64, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
            _ = idle.tick() => {
                if lock(&upstream.mirror).watchers() == 0 {
                    return Ok(());
                }
                // The channel's next session may go live on another node: let the
                // watchers go when this one is not its origin any more.
                let Some(service) = service.upgrade() else {
                    return Ok(());
                };
                let origin = service.catalog.channel_origin(channel).await;
                drop(service);
                if let Ok(o) = origin
                    && o.is_none_or(|o| !url.starts_with(&format!("{}/", o.node_url)))
                {
                    return Ok(());
                }
            }
        }
    }
}

/// An SSE frame's event name and data (its `data:` lines joined).
fn sse_frame(frame: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(frame);
    let (mut event, mut data) = (String::new(), Vec::new());
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    (event, data.join("\n"))
}

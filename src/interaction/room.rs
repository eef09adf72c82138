//! One channel's interaction state: the current session's messages (recent ones, every
//! question, the held ones), the pinned message, likes, check-ins, mutes and per-device
//! rate limits, the news not yet sent, and the watchers it goes to.
//!
//! No I/O and no clock: callers pass `now` (for rate limits) and the wall-clock `at_ms`
//! that is stored; what must be persisted comes back as [`InteractionWrite`]s. Every
//! change watchers see is an event with a number (`ev`) that only grows, also across
//! sessions: a new watcher's snapshot says up to which event it is current, so it skips
//! the events of the next batch it already has.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::catalog::{InteractionResume, InteractionWrite, StoredMessage};
use crate::ids::SessionId;

use super::InteractionError;

/// Questions kept in memory per session for the host's list; past it, the oldest
/// answered ones are let go (they stay in the catalog).
const MAX_QUESTIONS: usize = 2000;
/// Held messages kept per session; past it a new held message is refused (the host has
/// not looked in a long while).
const MAX_HELD: usize = 500;
/// Devices whose last post times are kept; past it the entries older than the limit go.
const MAX_TRACKED: usize = 20_000;

/// `chat` or `question`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A chat message (聊天).
    Chat,
    /// A question for the speaker (提问).
    Question,
}

impl Kind {
    /// Reads `chat` or `question`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "chat" => Some(Kind::Chat),
            "question" => Some(Kind::Question),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Question => "question",
        }
    }
}

/// A message as everyone sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its number in the session.
    pub id: i64,
    /// Chat or question.
    pub kind: Kind,
    /// The sender's nickname.
    pub nickname: String,
    /// The text.
    pub text: String,
    /// Unix ms.
    pub at: i64,
    /// Marked answered by the host (questions).
    pub answered: bool,
    /// The sender's device key: for mutes and the host, never sent to residents.
    #[serde(skip, default)]
    pub device: String,
}

impl Message {
    fn from_stored(m: StoredMessage) -> Option<Message> {
        Some(Message {
            id: m.seq,
            kind: Kind::parse(&m.kind)?,
            nickname: m.nickname,
            text: m.body,
            at: m.created_at,
            answered: m.answered,
            device: m.device_key,
        })
    }
}

/// A message in the host's view: with its state and a short tag of the sender's device
/// (so the host sees that two messages came from one device).
#[derive(Debug, Clone, Serialize)]
pub struct HostMessage {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// `visible` or `held`.
    pub state: &'static str,
    /// The first 8 hex digits of the device key.
    pub device: String,
    /// Whether that device is muted for the session.
    pub muted: bool,
}

/// A change watchers see (also read back by another node's [`super::mirror::Mirror`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message became visible (new, or approved by the host).
    Message {
        /// Its event number.
        ev: u64,
        /// The message.
        message: Message,
    },
    /// A question's answered mark changed.
    Answered {
        /// Its event number.
        ev: u64,
        /// The question.
        id: i64,
        /// The new mark.
        answered: bool,
    },
    /// A message was deleted: gone for everyone.
    Deleted {
        /// Its event number.
        ev: u64,
        /// The message.
        id: i64,
    },
    /// The pinned message (none: unpinned).
    Pinned {
        /// Its event number.
        ev: u64,
        /// The pinned message.
        message: Option<Message>,
    },
    /// A new session began on the channel: start over from this snapshot.
    Session {
        /// Its event number.
        ev: u64,
        /// Where to start over from.
        snapshot: Snapshot,
    },
}

impl Event {
    /// Its event number.
    pub fn ev(&self) -> u64 {
        match self {
            Event::Message { ev, .. }
            | Event::Answered { ev, .. }
            | Event::Deleted { ev, .. }
            | Event::Pinned { ev, .. }
            | Event::Session { ev, .. } => *ev,
        }
    }
}

/// One batch as watchers get it: the news since the last one, and the counters now.
#[derive(Debug, Serialize, Deserialize)]
pub struct Batch<E> {
    /// The last event it carries.
    pub ev: u64,
    /// The events, in order.
    pub events: E,
    /// Likes so far.
    pub likes: i64,
    /// Devices checked in.
    pub checkins: usize,
}

/// What a watcher starts from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last event it reflects.
    pub ev: u64,
    /// The session (none before the channel's first session since the server started).
    pub session_id: Option<SessionId>,
    /// The last visible messages, oldest first.
    pub messages: Vec<Message>,
    /// The pinned message.
    pub pinned: Option<Message>,
    /// Likes so far.
    pub likes: i64,
    /// Devices checked in.
    pub checkins: usize,
}

/// What a host does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Mark a question answered (`true`) or not.
    Answer(bool),
    /// Show a held message to everyone.
    Approve,
    /// Pin it above the player.
    Pin,
    /// Remove it for everyone.
    Delete,
    /// Mute its sender's device for the rest of the session.
    Mute,
}

/// The host's view of the session.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    /// The session.
    pub session_id: Option<SessionId>,
    /// Every question not deleted, in the order asked.
    pub questions: Vec<HostMessage>,
    /// Messages waiting for approval, oldest first.
    pub held: Vec<HostMessage>,
    /// The last visible messages, oldest first.
    pub recent: Vec<HostMessage>,
    /// The pinned message.
    pub pinned: Option<Message>,
    /// Likes so far.
    pub likes: i64,
    /// Devices checked in.
    pub checkins: usize,
    /// Devices muted.
    pub muted: usize,
    /// Watchers connected now.
    pub watchers: usize,
}

/// A post the room took.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Posted {
    /// The message's number.
    pub id: i64,
    /// `visible`, or `held` (only the host sees it until approved).
    pub state: &'static str,
}

/// The limits a room applies (from `[interaction]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Between two posts of a device.
    pub message_interval: Duration,
    /// Between two like requests of a device.
    pub like_interval: Duration,
    /// Recent messages kept for new watchers.
    pub backlog: usize,
    /// Lowercased words that hold a message.
    pub held_words: Vec<String>,
}

/// One channel's state; see the module docs.
#[derive(Debug, Default)]
pub struct Room {
    session: Option<SessionId>,
    next_seq: i64,
    ev: u64,
    recent: VecDeque<Message>,
    questions: BTreeMap<i64, Message>,
    held: BTreeMap<i64, Message>,
    pinned: Option<Message>,
    likes: i64,
    checked_in: HashSet<String>,
    muted: HashSet<String>,
    last_post: HashMap<String, Instant>,
    last_like: HashMap<String, Instant>,
    pending: Vec<Event>,
    counts_changed: bool,
    watchers: Vec<mpsc::Sender<Arc<str>>>,
}

impl Room {
    /// The session the room holds.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// Starts `session` from what the catalog has of it (nothing for a new one); watchers
    /// connected now start over from the new snapshot.
    pub fn begin(&mut self, session: SessionId, resume: InteractionResume, backlog: usize) {
        let keep_ev = self.ev;
        let watchers = std::mem::take(&mut self.watchers);
        *self = Room {
            session: Some(session),
            next_seq: resume.max_seq + 1,
            ev: keep_ev,
            likes: resume.likes,
            checked_in: resume.checked_in.into_iter().collect(),
            muted: resume.muted.into_iter().collect(),
            watchers,
            ..Room::default()
        };
        for stored in resume.messages {
            let state = stored.state.clone();
            let Some(m) = Message::from_stored(stored) else {
                continue;
            };
            if resume.pinned == Some(m.id) && state == "visible" {
                self.pinned = Some(m.clone());
            }
            if state == "held" {
                self.held.insert(m.id, m);
                continue;
            }
            if m.kind == Kind::Question {
                self.questions.insert(m.id, m.clone());
            }
            self.remember(m, backlog);
        }
        let snapshot = self.snapshot();
        self.ev += 1;
        self.pending.push(Event::Session {
            ev: self.ev,
            snapshot: Snapshot {
                ev: self.ev,
                ..snapshot
            },
        });
    }

    fn remember(&mut self, m: Message, backlog: usize) {
        self.recent.push_back(m);
        while self.recent.len() > backlog {
            self.recent.pop_front();
        }
    }

    /// Where a new watcher starts.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ev: self.ev,
            session_id: self.session,
            messages: self.recent.iter().cloned().collect(),
            pinned: self.pinned.clone(),
            likes: self.likes,
            checkins: self.checked_in.len(),
        }
    }

    /// Adds a watcher: its snapshot, then every batch through `tx`.
    pub fn watch(&mut self, tx: mpsc::Sender<Arc<str>>) -> Snapshot {
        // Watchers that left while nothing was sent are let go here.
        self.watchers.retain(|w| !w.is_closed());
        self.watchers.push(tx);
        self.snapshot()
    }

    /// Watchers connected.
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }

    fn check_rate(
        map: &mut HashMap<String, Instant>,
        device: &str,
        interval: Duration,
        now: Instant,
    ) -> Result<(), InteractionError> {
        if let Some(last) = map.get(device) {
            let next = *last + interval;
            if next > now {
                let wait = next - now;
                return Err(InteractionError::TooFast {
                    retry_ms: wait.as_millis().max(1) as u64,
                });
            }
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, t| now.saturating_duration_since(*t) < interval);
        }
        map.insert(device.to_string(), now);
        Ok(())
    }

    /// A resident's message or question (already checked for length); held when it
    /// contains a listed word.
    #[allow(clippy::too_many_arguments)]
    pub fn post(
        &mut self,
        limits: &Limits,
        device: &str,
        nickname: &str,
        text: &str,
        kind: Kind,
        now: Instant,
        at_ms: i64,
    ) -> Result<(Posted, InteractionWrite), InteractionError> {
        let session = self.session.ok_or(InteractionError::NotLive)?;
        if self.muted.contains(device) {
            return Err(InteractionError::Muted);
        }
        let lower = text.to_lowercase();
        let held = limits.held_words.iter().any(|w| lower.contains(w.as_str()));
        if held && self.held.len() >= MAX_HELD {
            return Err(InteractionError::Conflict(
                "too many messages are waiting for the host's review; try again later".into(),
            ));
        }
        Self::check_rate(&mut self.last_post, device, limits.message_interval, now)?;
        let id = self.next_seq;
        self.next_seq += 1;
        let m = Message {
            id,
            kind,
            nickname: nickname.to_string(),
            text: text.to_string(),
            at: at_ms,
            answered: false,
            device: device.to_string(),
        };
        let state = if held { "held" } else { "visible" };
        let write = InteractionWrite::Message(StoredMessage {
            session,
            seq: id,
            kind: kind.as_str().into(),
            device_key: device.into(),
            nickname: m.nickname.clone(),
            body: m.text.clone(),
            state: state.into(),
            answered: false,
            created_at: at_ms,
        });
        if held {
            self.held.insert(id, m);
        } else {
            self.show(m, limits.backlog);
        }
        Ok((Posted { id, state }, write))
    }

    fn show(&mut self, m: Message, backlog: usize) {
        if m.kind == Kind::Question {
            self.questions.insert(m.id, m.clone());
            if self.questions.len() > MAX_QUESTIONS {
                let old = self
                    .questions
                    .iter()
                    .find(|(_, q)| q.answered)
                    .map(|(id, _)| *id);
                if let Some(id) = old.or_else(|| self.questions.keys().next().copied()) {
                    self.questions.remove(&id);
                }
            }
        }
        self.ev += 1;
        self.pending.push(Event::Message {
            ev: self.ev,
            message: m.clone(),
        });
        self.remember(m, backlog);
    }

    /// Likes from a device (its taps since its last request).
    pub fn like(
        &mut self,
        limits: &Limits,
        device: &str,
        count: u32,
        now: Instant,
    ) -> Result<(i64, InteractionWrite), InteractionError> {
        let session = self.session.ok_or(InteractionError::NotLive)?;
        Self::check_rate(&mut self.last_like, device, limits.like_interval, now)?;
        self.likes += i64::from(count);
        self.counts_changed = true;
        Ok((
            self.likes,
            InteractionWrite::Likes {
                session,
                count: i64::from(count),
            },
        ))
    }

    /// A device checks in; `None` as the write when it already had.
    pub fn check_in(
        &mut self,
        device: &str,
        nickname: &str,
        at_ms: i64,
    ) -> Result<(bool, usize, Option<InteractionWrite>), InteractionError> {
        let session = self.session.ok_or(InteractionError::NotLive)?;
        if !self.checked_in.insert(device.to_string()) {
            return Ok((false, self.checked_in.len(), None));
        }
        self.counts_changed = true;
        Ok((
            true,
            self.checked_in.len(),
            Some(InteractionWrite::CheckIn {
                session,
                device_key: device.into(),
                nickname: nickname.into(),
                at: at_ms,
            }),
        ))
    }

    /// The host acts on message `id`; the writes to persist.
    pub fn moderate(
        &mut self,
        id: i64,
        action: Moderation,
        backlog: usize,
    ) -> Result<Vec<InteractionWrite>, InteractionError> {
        let session = self.session.ok_or(InteractionError::NotLive)?;
        if id < 1 || id >= self.next_seq {
            return Err(InteractionError::NotFound(format!(
                "no message {id} in this session"
            )));
        }
        let mut writes = Vec::new();
        match action {
            Moderation::Answer(answered) => {
                let q = self.questions.get_mut(&id).ok_or_else(|| {
                    InteractionError::Conflict(format!(
                        "message {id} is not a visible question; only questions are answered"
                    ))
                })?;
                if q.answered != answered {
                    q.answered = answered;
                    for m in self.recent.iter_mut().filter(|m| m.id == id) {
                        m.answered = answered;
                    }
                    if let Some(p) = self.pinned.as_mut().filter(|p| p.id == id) {
                        p.answered = answered;
                    }
                    self.ev += 1;
                    self.pending.push(Event::Answered {
                        ev: self.ev,
                        id,
                        answered,
                    });
                    writes.push(InteractionWrite::Answered {
                        session,
                        seq: id,
                        answered,
                    });
                }
            }
            Moderation::Approve => {
                let m = self.held.remove(&id).ok_or_else(|| {
                    InteractionError::Conflict(format!("message {id} is not waiting for review"))
                })?;
                self.show(m, backlog);
                writes.push(InteractionWrite::State {
                    session,
                    seq: id,
                    state: "visible",
                });
            }
            Moderation::Pin => {
                let m = self.visible(id).ok_or_else(|| {
                    InteractionError::Conflict(format!(
                        "message {id} is held, deleted or too old to pin; approve a held one first"
                    ))
                })?;
                self.pinned = Some(m.clone());
                self.ev += 1;
                self.pending.push(Event::Pinned {
                    ev: self.ev,
                    message: Some(m),
                });
                writes.push(InteractionWrite::Pinned {
                    session,
                    seq: Some(id),
                });
            }
            Moderation::Delete => {
                self.held.remove(&id);
                self.questions.remove(&id);
                self.recent.retain(|m| m.id != id);
                if self.pinned.as_ref().is_some_and(|p| p.id == id) {
                    writes.extend(self.unpin());
                }
                self.ev += 1;
                self.pending.push(Event::Deleted { ev: self.ev, id });
                writes.push(InteractionWrite::State {
                    session,
                    seq: id,
                    state: "deleted",
                });
            }
            Moderation::Mute => {
                let device = self.find(id).map(|m| m.device.clone()).ok_or_else(|| {
                    InteractionError::Conflict(format!(
                        "message {id} is too old to tell its sender; mute from a recent message"
                    ))
                })?;
                if self.muted.insert(device.clone()) {
                    writes.push(InteractionWrite::Mute {
                        session,
                        device_key: device,
                    });
                }
            }
        }
        Ok(writes)
    }

    /// Unpins; the write when something was pinned.
    pub fn unpin(&mut self) -> Option<InteractionWrite> {
        let session = self.session?;
        self.pinned.take()?;
        self.ev += 1;
        self.pending.push(Event::Pinned {
            ev: self.ev,
            message: None,
        });
        Some(InteractionWrite::Pinned { session, seq: None })
    }

    fn visible(&self, id: i64) -> Option<Message> {
        self.questions
            .get(&id)
            .or_else(|| self.recent.iter().find(|m| m.id == id))
            .cloned()
    }

    fn find(&self, id: i64) -> Option<&Message> {
        self.questions
            .get(&id)
            .or_else(|| self.held.get(&id))
            .or_else(|| self.recent.iter().find(|m| m.id == id))
    }

    /// The host's view.
    pub fn host_view(&self) -> HostView {
        let host = |m: &Message, state: &'static str| HostMessage {
            message: m.clone(),
            state,
            device: m.device.chars().take(8).collect(),
            muted: self.muted.contains(&m.device),
        };
        HostView {
            session_id: self.session,
            questions: self
                .questions
                .values()
                .map(|m| host(m, "visible"))
                .collect(),
            held: self.held.values().map(|m| host(m, "held")).collect(),
            recent: self.recent.iter().map(|m| host(m, "visible")).collect(),
            pinned: self.pinned.clone(),
            likes: self.likes,
            checkins: self.checked_in.len(),
            muted: self.muted.len(),
            watchers: self.watchers.len(),
        }
    }

    /// Sends the news since the last flush to every watcher as one batch, serialized once;
    /// a watcher whose queue is full or closed is let go. How many got it, `None` when
    /// there was no news.
    pub fn flush(&mut self) -> Option<usize> {
        if self.pending.is_empty() && !self.counts_changed {
            return None;
        }
        let batch = Batch {
            ev: self.ev,
            events: &self.pending[..],
            likes: self.likes,
            checkins: self.checked_in.len(),
        };
        let text: Arc<str> = match serde_json::to_string(&batch) {
            Ok(t) => t.into(),
            Err(e) => {
                tracing::error!(error = %e, "interaction batch not serializable");
                return None;
            }
        };
        self.pending.clear();
        self.counts_changed = false;
        self.watchers.retain(|w| w.try_send(text.clone()).is_ok());
        Some(self.watchers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            message_interval: Duration::from_secs(2),
            like_interval: Duration::from_secs(1),
            backlog: 3,
            held_words: vec!["广告".into()],
        }
    }

    #[test]
    fn posts_rate_limits_held_words_and_moderation() {
        let l = limits();
        let now = Instant::now();
        let mut room = Room::default();
        assert!(matches!(
            room.post(&l, "d1", "甲", "hi", Kind::Chat, now, 1),
            Err(InteractionError::NotLive)
        ));
        room.begin(SessionId(7), InteractionResume::default(), l.backlog);
        let (tx, mut rx) = mpsc::channel(8);
        let snap = room.watch(tx);
        assert_eq!(snap.session_id, Some(SessionId(7)));
        let (p, _) = room
            .post(&l, "d1", "甲", "你好", Kind::Chat, now, 1)
            .unwrap();
        assert_eq!((p.id, p.state), (1, "visible"));
        match room.post(
            &l,
            "d1",
            "甲",
            "again",
            Kind::Chat,
            now + Duration::from_millis(500),
            2,
        ) {
            Err(InteractionError::TooFast { retry_ms }) => assert_eq!(retry_ms, 1500),
            other => panic!("{other:?}"),
        }
        let (q, _) = room
            .post(&l, "d2", "乙", "问题?", Kind::Question, now, 3)
            .unwrap();
        let (h, _) = room
            .post(&l, "d3", "丙", "看广告", Kind::Chat, now, 4)
            .unwrap();
        assert_eq!(h.state, "held");
        assert_eq!(room.flush(), Some(1));
        let batch: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        let ids: Vec<i64> = batch["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "message")
            .map(|e| e["message"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2], "held message {} not sent: {batch}", h.id);
        assert!(!batch.to_string().contains("d1"), "no device keys: {batch}");
        room.moderate(q.id, Moderation::Answer(true), l.backlog)
            .unwrap();
        room.moderate(h.id, Moderation::Approve, l.backlog).unwrap();
        room.moderate(1, Moderation::Delete, l.backlog).unwrap();
        room.moderate(h.id, Moderation::Mute, l.backlog).unwrap();
        assert!(matches!(
            room.post(
                &l,
                "d3",
                "丙",
                "x",
                Kind::Chat,
                now + Duration::from_secs(9),
                5
            ),
            Err(InteractionError::Muted)
        ));
        room.flush();
        let batch: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        let types: Vec<&str> = batch["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["answered", "message", "deleted"]);
        let view = room.host_view();
        assert_eq!(view.questions.len(), 1);
        assert!(view.questions[0].message.answered);
        assert!(view.held.is_empty());
        assert_eq!(view.muted, 1);
    }
}

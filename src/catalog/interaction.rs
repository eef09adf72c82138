//! Live interaction in the catalog: chat messages and questions, check-ins, mutes, and each
//! session's counts (messages, questions, answered, likes, check-ins) for the statistics.
//!
//! Writes come from the interaction service through [`Catalog::write_interaction`], a
//! batch per transaction, off the request path; the counts in `session_interaction` move
//! in the same transaction as the rows they count. Reads: what a restarted server needs to
//! carry on a live session ([`Catalog::interaction_resume`]), a session's visible messages
//! for its replay, and the counts per session ([`Catalog::interaction_counts`]).

use std::collections::HashMap;

use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::{Catalog, CatalogError};
use crate::ids::SessionId;

/// One change to persist, in the order the interaction service made them.
#[derive(Debug, Clone)]
pub enum InteractionWrite {
    /// A new message or question.
    Message(StoredMessage),
    /// A message's state changed (`visible`, `held`, `deleted`).
    State {
        /// Its session.
        session: SessionId,
        /// Its number in the session.
        seq: i64,
        /// The new state.
        state: &'static str,
    },
    /// A question was marked answered (or not any more).
    Answered {
        /// Its session.
        session: SessionId,
        /// Its number in the session.
        seq: i64,
        /// The new mark.
        answered: bool,
    },
    /// The pinned message (`None`: nothing pinned).
    Pinned {
        /// The session.
        session: SessionId,
        /// The pinned message's number.
        seq: Option<i64>,
    },
    /// Likes since the last write.
    Likes {
        /// The session.
        session: SessionId,
        /// How many.
        count: i64,
    },
    /// A device checked in (once per session; a repeat is ignored).
    CheckIn {
        /// The session.
        session: SessionId,
        /// The device's key (hash of its id).
        device_key: String,
        /// The nickname it gave.
        nickname: String,
        /// Unix ms.
        at: i64,
    },
    /// The host muted a device for the session.
    Mute {
        /// The session.
        session: SessionId,
        /// The device's key (hash of its id).
        device_key: String,
    },
}

/// A message or question as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMessage {
    /// Its session.
    pub session: SessionId,
    /// Its number in the session (1, 2, ...): the id watchers and the host use.
    pub seq: i64,
    /// `chat` or `question`.
    pub kind: String,
    /// SHA-256 prefix of the sender's signed device id (never shown to residents).
    pub device_key: String,
    /// The sender's nickname.
    pub nickname: String,
    /// The text.
    pub body: String,
    /// `visible`, `held` or `deleted`.
    pub state: String,
    /// Whether the host marked it answered (questions).
    pub answered: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// What a server needs to carry on a session's interaction after a restart.
#[derive(Debug, Clone, Default)]
pub struct InteractionResume {
    /// The highest message number used.
    pub max_seq: i64,
    /// Likes so far.
    pub likes: i64,
    /// Devices checked in (their keys).
    pub checked_in: Vec<String>,
    /// Devices the host muted (their keys).
    pub muted: Vec<String>,
    /// The pinned message's number.
    pub pinned: Option<i64>,
    /// Messages not deleted, oldest first: the last `recent` visible ones, every question
    /// and every held message.
    pub messages: Vec<StoredMessage>,
}

/// A session's interaction counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InteractionCounts {
    /// Messages and questions posted (held and deleted ones included).
    pub messages: i64,
    /// Questions posted.
    pub questions: i64,
    /// Questions marked answered.
    pub questions_answered: i64,
    /// Likes.
    pub likes: i64,
    /// Devices checked in online (签到).
    pub checkins: i64,
}

type MessageRow = (i64, i64, String, String, String, String, String, i64, i64);

fn message(row: MessageRow) -> StoredMessage {
    let (session, seq, kind, device_key, nickname, body, state, answered, created_at) = row;
    StoredMessage {
        session: SessionId(session),
        seq,
        kind,
        device_key,
        nickname,
        body,
        state,
        answered: answered != 0,
        created_at,
    }
}

const MESSAGE_COLUMNS: &str =
    "session_id, seq, kind, device_key, nickname, body, state, answered, created_at";

/// Count changes of one session within a batch.
#[derive(Default)]
struct Delta {
    messages: i64,
    questions: i64,
    answered: i64,
    likes: i64,
    checkins: i64,
    pinned: Option<Option<i64>>,
}

impl Catalog {
    /// Persists `writes` in one transaction, with the per-session counts they change.
    pub async fn write_interaction(&self, writes: &[InteractionWrite]) -> Result<(), CatalogError> {
        let mut deltas: HashMap<SessionId, Delta> = HashMap::new();
        let mut tx = self.pool.begin().await?;
        for w in writes {
            match w {
                InteractionWrite::Message(m) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO chat_messages ({MESSAGE_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (session_id, seq) DO NOTHING"
                    )))
                    .bind(m.session.0)
                    .bind(m.seq)
                    .bind(&m.kind)
                    .bind(&m.device_key)
                    .bind(&m.nickname)
                    .bind(&m.body)
                    .bind(&m.state)
                    .bind(i64::from(m.answered))
                    .bind(m.created_at)
                    .execute(&mut *tx)
                    .await?;
                    let d = deltas.entry(m.session).or_default();
                    d.messages += 1;
                    d.questions += i64::from(m.kind == "question");
                }
                InteractionWrite::State {
                    session,
                    seq,
                    state,
                } => {
                    sqlx::query(
                        "UPDATE chat_messages SET state = $1 WHERE session_id = $2 AND seq = $3",
                    )
                    .bind(*state)
                    .bind(session.0)
                    .bind(*seq)
                    .execute(&mut *tx)
                    .await?;
                }
                InteractionWrite::Answered {
                    session,
                    seq,
                    answered,
                } => {
                    let changed = sqlx::query(
                        "UPDATE chat_messages SET answered = $1 \
                         WHERE session_id = $2 AND seq = $3 AND answered <> $1",
                    )
                    .bind(i64::from(*answered))
                    .bind(session.0)
                    .bind(*seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                    deltas.entry(*session).or_default().answered +=
                        if *answered { changed } else { -changed };
                }
                InteractionWrite::Pinned { session, seq } => {
                    deltas.entry(*session).or_default().pinned = Some(*seq);
                }
                InteractionWrite::Likes { session, count } => {
                    deltas.entry(*session).or_default().likes += count;
                }
                InteractionWrite::CheckIn {
                    session,
                    device_key,
                    nickname,
                    at,
                } => {
                    let added = sqlx::query(
                        "INSERT INTO chat_checkins (session_id, device_key, nickname, at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, device_key) DO NOTHING",
                    )
                    .bind(session.0)
                    .bind(device_key)
                    .bind(nickname)
                    .bind(*at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                    deltas.entry(*session).or_default().checkins += added;
                }
                InteractionWrite::Mute {
                    session,
                    device_key,
                } => {
                    sqlx::query(
                        "INSERT INTO chat_mutes (session_id, device_key) VALUES ($1, $2) \
                         ON CONFLICT (session_id, device_key) DO NOTHING",
                    )
                    .bind(session.0)
                    .bind(device_key)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        for (session, d) in deltas {
            sqlx::query(
                "INSERT INTO session_interaction \
                 (session_id, messages, questions, answered, likes, checkins) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO UPDATE SET \
                 messages = session_interaction.messages + excluded.messages, \
                 questions = session_interaction.questions + excluded.questions, \
                 answered = session_interaction.answered + excluded.answered, \
                 likes = session_interaction.likes + excluded.likes, \
                 checkins = session_interaction.checkins + excluded.checkins",
            )
            .bind(session.0)
            .bind(d.messages)
            .bind(d.questions)
            .bind(d.answered)
            .bind(d.likes)
            .bind(d.checkins)
            .execute(&mut *tx)
            .await?;
            if let Some(pinned) = d.pinned {
                sqlx::query("UPDATE session_interaction SET pinned_seq = $1 WHERE session_id = $2")
                    .bind(pinned)
                    .bind(session.0)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the interaction service needs to go on with `session` after a restart: its
    /// counters, check-ins, pinned message, every question and held message and the last
    /// `recent` visible messages.
    pub async fn interaction_resume(
        &self,
        session: SessionId,
        recent: usize,
    ) -> Result<InteractionResume, CatalogError> {
        let (max_seq,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(seq) FROM chat_messages WHERE session_id = $1")
                .bind(session.0)
                .fetch_one(&self.pool)
                .await?;
        let counts: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT likes, pinned_seq FROM session_interaction WHERE session_id = $1",
        )
        .bind(session.0)
        .fetch_optional(&self.pool)
        .await?;
        let checked_in: Vec<(String,)> =
            sqlx::query_as("SELECT device_key FROM chat_checkins WHERE session_id = $1")
                .bind(session.0)
                .fetch_all(&self.pool)
                .await?;
        let muted: Vec<(String,)> =
            sqlx::query_as("SELECT device_key FROM chat_mutes WHERE session_id = $1")
                .bind(session.0)
                .fetch_all(&self.pool)
                .await?;
        let kept: Vec<MessageRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE session_id = $1 \
             AND state <> 'deleted' AND (kind = 'question' OR state = 'held') ORDER BY seq"
        )))
        .bind(session.0)
        .fetch_all(&self.pool)
        .await?;
        let mut recent_rows: Vec<MessageRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE session_id = $1 \
             AND state = 'visible' AND kind = 'chat' ORDER BY seq DESC LIMIT $2"
        )))
        .bind(session.0)
        .bind(recent as i64)
        .fetch_all(&self.pool)
        .await?;
        recent_rows.extend(kept);
        let mut messages: Vec<StoredMessage> = recent_rows.into_iter().map(message).collect();
        messages.sort_by_key(|m| m.seq);
        let (likes, pinned) = counts.unwrap_or((0, None));
        Ok(InteractionResume {
            max_seq: max_seq.unwrap_or(0),
            likes,
            checked_in: checked_in.into_iter().map(|(k,)| k).collect(),
            muted: muted.into_iter().map(|(k,)| k).collect(),
            pinned,
            messages,
        })
    }

    /// A session's visible messages and questions, oldest first (at most `limit`): what its
    /// replay shows beside the video.
    pub async fn session_messages(
        &self,
        session: SessionId,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, CatalogError> {
        let rows: Vec<MessageRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE session_id = $1 \
             AND state = 'visible' ORDER BY seq LIMIT $2"
        )))
        .bind(session.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(message).collect())
    }

    /// The interaction counts of `sessions` (absent: none yet).
    pub async fn interaction_counts(
        &self,
        sessions: &[i64],
    ) -> Result<HashMap<i64, InteractionCounts>, CatalogError> {
        if sessions.is_empty() {
            return Ok(HashMap::new());
        }
        // Ids straight from rows just read, written in as numbers (a listing has up to
        // 10,000, more than either database binds comfortably).
        let ids: Vec<String> = sessions.iter().map(i64::to_string).collect();
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT session_id, messages, questions, answered, likes, checkins \
             FROM session_interaction WHERE session_id IN ({})",
            ids.join(", ")
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, messages, questions, answered, likes, checkins)| {
                (
                    id,
                    InteractionCounts {
                        messages,
                        questions,
                        questions_answered: answered,
                        likes,
                        checkins,
                    },
                )
            })
            .collect())
    }
}

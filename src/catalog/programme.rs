//! What a session was about and who came in person: speaker, topic (from a managed list),
//! film, scheduled time and the in-person headcount a station reports afterwards.
//!
//! SQL text built with `format!` here only ever splices `&'static str` table and column
//! names chosen in this file; values are always bound.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use super::sessions::decode;
use super::{Catalog, CatalogError, SessionKind, check_name, rfc3339};
use crate::ids::{FilmId, StationId};

/// A managed list entry: a topic tag or a film.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    /// Row id.
    pub id: i64,
    /// Topic name or film title.
    pub name: String,
}

/// Changes to a session's metadata; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionUpdate {
    /// The lecturer, so reports can credit them.
    pub speaker: Option<String>,
    /// A topic id from `topics`; 0 clears it. A managed list keeps reports groupable.
    pub topic_id: Option<i64>,
    /// A film id from `films` (film classes); 0 clears it.
    pub film_id: Option<i64>,
    /// When the session was planned to start, unix ms, so punctuality can be reviewed.
    pub scheduled_at: Option<i64>,
    /// People who attended in the room, counted by the station.
    pub in_person: Option<i64>,
}

/// A session as the dashboard and station page list it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Row id.
    pub id: i64,
    /// The station that held it.
    pub station_id: i64,
    /// What the session was.
    pub kind: SessionKind,
    /// Title.
    pub title: String,
    /// Lecturer.
    pub speaker: String,
    /// Topic tag, if set.
    pub topic: Option<String>,
    /// Film title, if set.
    pub film: Option<String>,
    /// Planned start, RFC 3339.
    pub scheduled_at: Option<String>,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339; absent while live.
    pub ended_at: Option<String>,
    /// In-person headcount.
    pub in_person: i64,
}

type InfoRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
);

impl Catalog {
    /// Adds a topic tag (city admins manage the list).
    pub async fn add_topic(&self, name: &str) -> Result<i64, CatalogError> {
        self.add_named("topics", "name", "topic", name).await
    }

    /// Adds a film.
    pub async fn add_film(&self, title: &str) -> Result<FilmId, CatalogError> {
        self.add_named("films", "title", "film", title)
            .await
            .map(FilmId)
    }

    /// The topic list.
    pub async fn topics(&self) -> Result<Vec<Named>, CatalogError> {
        self.list_named("SELECT id, name FROM topics ORDER BY name")
            .await
    }

    /// The film list.
    pub async fn films(&self) -> Result<Vec<Named>, CatalogError> {
        self.list_named("SELECT id, title FROM films ORDER BY title")
            .await
    }

    async fn list_named(&self, sql: &'static str) -> Result<Vec<Named>, CatalogError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(sql).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| Named { id, name })
            .collect())
    }

    async fn add_named(
        &self,
        table: &'static str,
        column: &'static str,
        field: &'static str,
        value: &str,
    ) -> Result<i64, CatalogError> {
        let value = check_name(field, value)?;
        let existing: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE {column} = $1"
        )))
        .bind(&value)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((id,)) = existing {
            return Err(CatalogError::Invalid {
                field,
                reason: format!("{value:?} already exists (id {id})"),
            });
        }
        let (id,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO {table} ({column}) VALUES ($1) RETURNING id"
        )))
        .bind(&value)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The station a session belongs to, or `None` when there is no such session.
    pub async fn session_station(&self, session: i64) -> Result<Option<StationId>, CatalogError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT station_id FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(s,)| StationId(s)))
    }

    /// Applies `update` to a session after checking every field.
    pub async fn update_session(
        &self,
        session: i64,
        update: &SessionUpdate,
    ) -> Result<SessionInfo, CatalogError> {
        if let Some(speaker) = &update.speaker
            && speaker.chars().count() > 200
        {
            return Err(CatalogError::Invalid {
                field: "speaker",
                reason: "must be at most 200 characters".into(),
            });
        }
        if let Some(n) = update.in_person
            && !(0..=1_000_000).contains(&n)
        {
            return Err(CatalogError::Invalid {
                field: "in_person",
                reason: format!("{n} is not a headcount between 0 and 1000000"),
            });
        }
        if let Some(at) = update.scheduled_at
            && !(946_684_800_000..=4_102_444_800_000).contains(&at)
        {
            return Err(CatalogError::Invalid {
                field: "scheduled_at",
                reason: "must be unix milliseconds between 2000 and 2100".into(),
            });
        }
        for (table, field, id) in [
            ("topics", "topic_id", update.topic_id),
            ("films", "film_id", update.film_id),
        ] {
            if let Some(id) = id.filter(|id| *id != 0) {
                let known: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT id FROM {table} WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                if known.is_none() {
                    return Err(CatalogError::Invalid {
                        field,
                        reason: format!("no {} with id {id}", &table[..table.len() - 1]),
                    });
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        if let Some(speaker) = &update.speaker {
            sqlx::query("UPDATE sessions SET speaker = $1 WHERE id = $2")
                .bind(speaker.trim())
                .bind(session)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(topic) = update.topic_id {
            sqlx::query("UPDATE sessions SET topic_id = $1 WHERE id = $2")
                .bind((topic != 0).then_some(topic))
                .bind(session)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(film) = update.film_id {
            sqlx::query("UPDATE sessions SET film_id = $1 WHERE id = $2")
                .bind((film != 0).then_some(film))
                .bind(session)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(at) = update.scheduled_at {
            sqlx::query("UPDATE sessions SET scheduled_at = $1 WHERE id = $2")
                .bind(at)
                .bind(session)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(n) = update.in_person {
            sqlx::query("UPDATE sessions SET in_person = $1 WHERE id = $2")
                .bind(n)
                .bind(session)
                .execute(&mut *tx)
                .await?;
        }
        // Headcount and film are in the day rollups of a frozen session: rebuild its rows.
        if update.in_person.is_some() || update.film_id.is_some() {
            self.refresh_rollups(&mut tx, session).await?;
        }
        tx.commit().await?;
        self.session_info(session)
            .await?
            .ok_or_else(|| CatalogError::Invalid {
                field: "session",
                reason: format!("no session {session}"),
            })
    }

    /// One session's metadata.
    pub async fn session_info(&self, session: i64) -> Result<Option<SessionInfo>, CatalogError> {
        Ok(self
            .session_infos("s.id = $1", session, 1)
            .await?
            .into_iter()
            .next())
    }

    /// A station's most recent sessions (newest first), for its page.
    pub async fn station_sessions(
        &self,
        station: i64,
        limit: i64,
    ) -> Result<Vec<SessionInfo>, CatalogError> {
        self.session_infos("s.station_id = $1", station, limit)
            .await
    }

    async fn session_infos(
        &self,
        condition: &'static str,
        id: i64,
        limit: i64,
    ) -> Result<Vec<SessionInfo>, CatalogError> {
        let rows: Vec<InfoRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT s.id, s.station_id, s.kind, s.title, s.speaker, t.name, f.title, \
             s.scheduled_at, s.started_at, s.ended_at, s.in_person FROM sessions s \
             LEFT JOIN topics t ON t.id = s.topic_id LEFT JOIN films f ON f.id = s.film_id \
             WHERE {condition} ORDER BY s.started_at DESC LIMIT $2"
        )))
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(id, station_id, kind, title, speaker, topic, film, sched, start, end, n)| {
                    Ok(SessionInfo {
                        id,
                        station_id,
                        kind: decode(id, "kind", &kind, SessionKind::parse)?,
                        title,
                        speaker,
                        topic,
                        film,
                        scheduled_at: sched.map(rfc3339),
                        started_at: rfc3339(start),
                        ended_at: end.map(rfc3339),
                        in_person: n,
                    })
                },
            )
            .collect()
    }
}

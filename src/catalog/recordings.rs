//! Replay (回看) in the catalog: one `recordings` row per session (its files or the
//! library film it replays from, published, kept, deleted and why) and the `replay_views`
//! rows that count who watched which replay on which Asia/Shanghai day.
//!
//! The files themselves belong to the recording module; this one only keeps their rows.
//! In a cluster a row names the node it was made on (`node_id`, stamped at insert), whose
//! files serve it.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Catalog, CatalogError, rfc3339};
use crate::audience::now_ms;
use crate::ids::{ChannelName, SessionId, StationId};

/// Where a replay's media is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingKind {
    /// The session's own HLS segments under `[recording] dir`.
    Recorded,
    /// A film class replayed from the library file it played (H.264 + AAC films).
    Library,
}

impl RecordingKind {
    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingKind::Recorded => "recorded",
            RecordingKind::Library => "library",
        }
    }

    /// Parses the database and API spelling.
    pub fn parse(text: &str) -> Option<RecordingKind> {
        match text {
            "recorded" => Some(RecordingKind::Recorded),
            "library" => Some(RecordingKind::Library),
            _ => None,
        }
    }
}

/// A recording as the recorder hands it to the catalog when a session ends.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// The session recorded (one recording per session).
    pub session: SessionId,
    /// Segments on disk or the library file.
    pub kind: RecordingKind,
    /// `{channel}/{session_id}` under `[recording] dir` (recorded), or the film file's
    /// path (library).
    pub path: String,
    /// First media, unix ms.
    pub started_ms: i64,
    /// Last media, unix ms.
    pub ended_ms: i64,
    /// Playable length, ms.
    pub duration_ms: i64,
    /// Bytes on disk (recorded) or of the library file.
    pub size_bytes: i64,
}

/// A recording with its session's place, for the API and the command line.
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    /// Row id: the replay id of `/replay/{id}`.
    pub id: i64,
    /// The session recorded.
    pub session_id: i64,
    /// Segments on disk or the library file.
    pub kind: RecordingKind,
    /// Relative to `[recording] dir` (recorded) or the film file (library); never sent to
    /// clients.
    #[serde(skip)]
    pub path: String,
    /// The channel the session ran on.
    pub channel: String,
    /// Station row id.
    pub station_id: i64,
    /// Station name.
    pub station: String,
    /// Institute row id.
    pub institute_id: i64,
    /// Institute name.
    pub institute: String,
    /// Center row id.
    pub center_id: i64,
    /// Center name.
    pub center: String,
    /// The session's title.
    pub title: String,
    /// The session's kind: lecture, film_class, other.
    pub session_kind: String,
    /// The lecturer, when the station reported one.
    pub speaker: Option<String>,
    /// The film of a film class.
    pub film_id: Option<i64>,
    /// Its title.
    pub film: Option<String>,
    /// First media, RFC 3339 UTC.
    pub started_at: String,
    /// Last media, RFC 3339 UTC.
    pub ended_at: String,
    /// First media, unix ms (for sorting and retention by age).
    #[serde(skip)]
    pub started_ms: i64,
    /// Playable length, ms.
    pub duration_ms: i64,
    /// Bytes.
    pub size_bytes: i64,
    /// Shown to the public (`/api/recordings`, `/replay/{id}`).
    pub published: bool,
    /// Never deleted by retention.
    pub keep: bool,
    /// When it was deleted, RFC 3339 UTC.
    pub deleted_at: Option<String>,
    /// Why (retention's rule, or who deleted it).
    pub deleted_reason: Option<String>,
    /// The cluster node it was made on (its files are there); `None` on a single server.
    #[serde(skip)]
    pub node_id: Option<i64>,
    /// That node's `node_url`, when it has one.
    #[serde(skip)]
    pub node_url: Option<String>,
}

/// One viewer's replay of one recording on one Asia/Shanghai day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayView {
    /// The recording watched.
    pub recording_id: i64,
    /// The viewer's key (16-byte hex, as live viewer rows).
    pub viewer_key: String,
    /// The Asia/Shanghai day watched, `YYYY-MM-DD`.
    pub day: String,
    /// mobile, pc, tv or other.
    pub terminal: String,
    /// Bit i (of byte i / 8, least significant bit first) set: segment i fetched that day.
    pub segments: Vec<u8>,
    /// Distinct segment time fetched that day, ms.
    pub watched_ms: i64,
    /// First fetch, unix ms.
    pub first_ms: i64,
    /// Latest fetch, unix ms.
    pub last_ms: i64,
}

/// The columns [`recording_from_row`] reads, in its order.
const COLUMNS: &str = "r.id, r.session_id, r.kind, r.path, s.channel, st.id, st.name, \
     i.id, i.name, c.id, c.name, s.title, s.kind, s.speaker, s.film_id, f.title, \
     r.started_ms, r.ended_ms, r.duration_ms, r.size_bytes, r.published, r.keep, \
     r.deleted_ms, r.deleted_reason, r.node_id, n.node_url";

/// A recording with its session, station, institute, center and film.
const JOINS: &str = "FROM recordings r JOIN sessions s ON s.id = r.session_id \
     JOIN stations st ON st.id = s.station_id JOIN institutes i ON i.id = st.institute_id \
     JOIN centers c ON c.id = i.center_id LEFT JOIN films f ON f.id = s.film_id \
     LEFT JOIN relay_nodes n ON n.id = r.node_id";

/// Newest first; the id breaks ties so listings are stable.
const NEWEST_FIRST: &str = "ORDER BY r.started_ms DESC, r.id DESC";

fn recording_from_row(row: &AnyRow) -> Result<Recording, CatalogError> {
    let id: i64 = row.try_get(0)?;
    let kind: String = row.try_get(2)?;
    let kind = RecordingKind::parse(&kind).ok_or_else(|| {
        CatalogError::Database(sqlx::Error::Decode(
            format!("recording {id}: unknown kind {kind:?}").into(),
        ))
    })?;
    let speaker: String = row.try_get(13)?;
    let started_ms: i64 = row.try_get(16)?;
    let ended_ms: i64 = row.try_get(17)?;
    let published: i64 = row.try_get(20)?;
    let keep: i64 = row.try_get(21)?;
    let deleted_ms: Option<i64> = row.try_get(22)?;
    Ok(Recording {
        id,
        session_id: row.try_get(1)?,
        kind,
        path: row.try_get(3)?,
        channel: row.try_get(4)?,
        station_id: row.try_get(5)?,
        station: row.try_get(6)?,
        institute_id: row.try_get(7)?,
        institute: row.try_get(8)?,
        center_id: row.try_get(9)?,
        center: row.try_get(10)?,
        title: row.try_get(11)?,
        session_kind: row.try_get(12)?,
        speaker: (!speaker.is_empty()).then_some(speaker),
        film_id: row.try_get(14)?,
        film: row.try_get(15)?,
        started_at: rfc3339(started_ms),
        ended_at: rfc3339(ended_ms),
        started_ms,
        duration_ms: row.try_get(18)?,
        size_bytes: row.try_get(19)?,
        published: published != 0,
        keep: keep != 0,
        deleted_at: deleted_ms.map(rfc3339),
        deleted_reason: row.try_get(23)?,
        node_id: row.try_get(24)?,
        node_url: row
            .try_get::<Option<String>, _>(25)?
            .filter(|u| !u.is_empty()),
    })
}

fn not_found(id: i64) -> CatalogError {
    CatalogError::NotFound(format!("no recording {id}"))
}

impl Catalog {
    /// Records a session's recording. One recording per session: a second insert for the
    /// same session (a recorder that finished after a restart, a grace period that ran
    /// on) moves its end, duration and size up when larger and returns the same id. The
    /// film comes from the session.
    pub async fn insert_recording(&self, r: &NewRecording) -> Result<i64, CatalogError> {
        if r.path.is_empty() {
            return Err(CatalogError::Invalid {
                field: "recording path",
                reason: "must not be empty".into(),
            });
        }
        if self.session_station(r.session.0).await?.is_none() {
            return Err(CatalogError::NotFound(format!("no session {}", r.session)));
        }
        let larger = |column: &str| {
            format!(
                "{column} = CASE WHEN excluded.{column} > recordings.{column} \
                 THEN excluded.{column} ELSE recordings.{column} END"
            )
        };
        let sql = format!(
            "INSERT INTO recordings (session_id, kind, path, started_ms, ended_ms, duration_ms, \
             size_bytes, created_ms, node_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (session_id) DO UPDATE SET {}, {}, {} RETURNING id",
            larger("ended_ms"),
            larger("duration_ms"),
            larger("size_bytes"),
        );
        let (id,): (i64,) = sqlx::query_as(AssertSqlSafe(sql))
            .bind(r.session.0)
            .bind(r.kind.as_str())
            .bind(&r.path)
            .bind(r.started_ms)
            .bind(r.ended_ms)
            .bind(r.duration_ms)
            .bind(r.size_bytes)
            .bind(now_ms())
            // The node whose recorder wrote it (its files are there).
            .bind(self.node_id())
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// One recording by id, deleted ones too (`deleted_at` set).
    pub async fn recording(&self, id: i64) -> Result<Option<Recording>, CatalogError> {
        let sql = format!("SELECT {COLUMNS} {JOINS} WHERE r.id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// The recording of a session, if it has one (deleted ones too).
    pub async fn recording_for_session(
        &self,
        session: SessionId,
    ) -> Result<Option<Recording>, CatalogError> {
        let sql = format!("SELECT {COLUMNS} {JOINS} WHERE r.session_id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(session.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// The recordings of the station owning `channel`, not deleted, newest first; hidden
    /// ones only with `include_hidden`. An unknown channel is `UnknownChannel`.
    pub async fn station_recordings(
        &self,
        channel: &ChannelName,
        include_hidden: bool,
    ) -> Result<Vec<Recording>, CatalogError> {
        let station: Option<(i64,)> =
            sqlx::query_as("SELECT station_id FROM channels WHERE name = $1")
                .bind(channel.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let (station,) =
            station.ok_or_else(|| CatalogError::UnknownChannel(channel.to_string()))?;
        let hidden = if include_hidden {
            ""
        } else {
            " AND r.published = 1"
        };
        let sql = format!(
            "SELECT {COLUMNS} {JOINS} WHERE s.station_id = $1 AND r.deleted_ms IS NULL{hidden} \
             {NEWEST_FIRST}"
        );
        self.recordings_where(sql, Some(station)).await
    }

    /// Recordings of one station or of all, newest first, hidden ones included; deleted
    /// ones only with `include_deleted`.
    pub async fn list_recordings(
        &self,
        station: Option<StationId>,
        include_deleted: bool,
    ) -> Result<Vec<Recording>, CatalogError> {
        let mut conditions = Vec::new();
        if station.is_some() {
            conditions.push("s.station_id = $1");
        }
        if !include_deleted {
            conditions.push("r.deleted_ms IS NULL");
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!("SELECT {COLUMNS} {JOINS} {filter} {NEWEST_FIRST}");
        self.recordings_where(sql, station.map(|s| s.0)).await
    }

    /// The recordings `sql` selects, with `$1` bound to `arg` when given.
    async fn recordings_where(
        &self,
        sql: String,
        arg: Option<i64>,
    ) -> Result<Vec<Recording>, CatalogError> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(arg) = arg {
            query = query.bind(arg);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(recording_from_row)
            .collect()
    }

    /// Shows a recording to the public or hides it; an unknown id is `NotFound`.
    pub async fn set_recording_published(
        &self,
        id: i64,
        published: bool,
    ) -> Result<Recording, CatalogError> {
        self.update_recording(id, "published = $2", i64::from(published))
            .await
    }

    /// Marks a recording as kept (retention never deletes it) or not; an unknown id is
    /// `NotFound`.
    pub async fn set_recording_keep(&self, id: i64, keep: bool) -> Result<Recording, CatalogError> {
        self.update_recording(id, "keep = $2", i64::from(keep))
            .await
    }

    /// Notes that a recording's media was deleted, when and why; the row stays (listings
    /// with deleted ones show it, statistics keep its replay figures). A recording already
    /// deleted keeps its first time and reason. An unknown id is `NotFound`.
    pub async fn mark_recording_deleted(
        &self,
        id: i64,
        reason: &str,
        at_ms: i64,
    ) -> Result<Recording, CatalogError> {
        sqlx::query(
            "UPDATE recordings SET deleted_ms = $2, deleted_reason = $3 \
             WHERE id = $1 AND deleted_ms IS NULL",
        )
        .bind(id)
        .bind(at_ms)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        self.recording(id).await?.ok_or_else(|| not_found(id))
    }

    /// `UPDATE recordings SET {set}` (with `$2` = `value`) of recording `id`, then the row.
    async fn update_recording(
        &self,
        id: i64,
        set: &'static str,
        value: i64,
    ) -> Result<Recording, CatalogError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE recordings SET {set} WHERE id = $1"
        )))
        .bind(id)
        .bind(value)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        self.recording(id).await?.ok_or_else(|| not_found(id))
    }

    /// What retention may delete, in the order it should: recorded (library replays cost
    /// no disk of their own), not deleted, not kept, oldest first.
    pub async fn retention_candidates(&self) -> Result<Vec<Recording>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} {JOINS} WHERE r.kind = 'recorded' AND r.keep = 0 \
             AND r.deleted_ms IS NULL ORDER BY r.started_ms, r.id"
        );
        self.recordings_where(sql, None).await
    }

    /// Writes replay views in one transaction. A view of the same recording, viewer and
    /// day replaces the row's segments, watched time and last fetch (the caller merged
    /// them with what it read); its first fetch and terminal stay.
    pub async fn record_replay_views(&self, views: &[ReplayView]) -> Result<(), CatalogError> {
        for v in views {
            if NaiveDate::parse_from_str(&v.day, "%Y-%m-%d").is_err() {
                return Err(CatalogError::Invalid {
                    field: "replay day",
                    reason: format!("{:?} is not a date like 2026-03-31", v.day),
                });
            }
        }
        let mut tx = self.pool.begin().await?;
        for v in views {
            sqlx::query(
                "INSERT INTO replay_views (recording_id, viewer_key, day, terminal, segments, \
                 watched_ms, first_ms, last_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (recording_id, viewer_key, day) DO UPDATE SET \
                 segments = excluded.segments, watched_ms = excluded.watched_ms, \
                 last_ms = excluded.last_ms",
            )
            .bind(v.recording_id)
            .bind(&v.viewer_key)
            .bind(&v.day)
            .bind(&v.terminal)
            .bind(&v.segments)
            .bind(v.watched_ms)
            .bind(v.first_ms)
            .bind(v.last_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One viewer's replay view of a recording on a day (`YYYY-MM-DD`).
    pub async fn replay_view(
        &self,
        recording_id: i64,
        viewer_key: &str,
        day: &str,
    ) -> Result<Option<ReplayView>, CatalogError> {
        type Row = (String, Vec<u8>, i64, i64, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT terminal, segments, watched_ms, first_ms, last_ms FROM replay_views \
             WHERE recording_id = $1 AND viewer_key = $2 AND day = $3",
        )
        .bind(recording_id)
        .bind(viewer_key)
        .bind(day)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(terminal, segments, watched_ms, first_ms, last_ms)| ReplayView {
                recording_id,
                viewer_key: viewer_key.to_string(),
                day: day.to_string(),
                terminal,
                segments,
                watched_ms,
                first_ms,
                last_ms,
            },
        ))
    }
}

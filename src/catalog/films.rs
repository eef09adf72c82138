//! Film library and screenings (scheduled film classes, 电影党史课): the `film_class` rows
//! of `planned_items` (see [`super::planned`]), with the ids screenings always had.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{Catalog, CatalogError, rfc3339};
use crate::ids::{FilmId, ScreeningId, SessionId, StationId};

/// Where a screening stands. Stored as its lowercase name (`as_str`) in `planned_items.status`
/// and sent with the same spelling in API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreeningStatus {
    /// Waiting for its time (the column's default).
    Scheduled,
    /// A server is playing it.
    Playing,
    /// The film ended.
    Done,
    /// Its time passed beyond the grace period while no server ran.
    Missed,
    /// The playout failed, or the server stopped while it played.
    Failed,
    /// An operator asked for a stop; the server playing it is ending the session.
    Stopping,
    /// Ended by an operator's stop.
    Stopped,
    /// Stopped before it started.
    Cancelled,
}

impl ScreeningStatus {
    /// Every status, in the order a screening may pass through them.
    pub const ALL: [ScreeningStatus; 8] = [
        ScreeningStatus::Scheduled,
        ScreeningStatus::Playing,
        ScreeningStatus::Done,
        ScreeningStatus::Missed,
        ScreeningStatus::Failed,
        ScreeningStatus::Stopping,
        ScreeningStatus::Stopped,
        ScreeningStatus::Cancelled,
    ];

    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScreeningStatus::Scheduled => "scheduled",
            ScreeningStatus::Playing => "playing",
            ScreeningStatus::Done => "done",
            ScreeningStatus::Missed => "missed",
            ScreeningStatus::Failed => "failed",
            ScreeningStatus::Stopping => "stopping",
            ScreeningStatus::Stopped => "stopped",
            ScreeningStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ScreeningStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `planned_items.status` value (film classes) this server does not know (a newer server wrote it, or
/// the row was edited by hand).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown screening status {0:?}")]
pub struct UnknownScreeningStatus(pub String);

impl FromStr for ScreeningStatus {
    type Err = UnknownScreeningStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ScreeningStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownScreeningStatus(text.to_string()))
    }
}

/// A film row.
#[derive(Debug, Clone, Serialize)]
pub struct Film {
    /// Row id.
    pub id: FilmId,
    /// Title (the file name without extension unless given).
    pub title: String,
    /// Path of the file the server plays.
    pub path: String,
    /// Duration, ms.
    pub duration_ms: i64,
    /// Container format found by probing.
    pub container: String,
    /// Video codec, if any.
    pub video_codec: Option<String>,
    /// Audio codec, if any.
    pub audio_codec: Option<String>,
    /// Picture width.
    pub width: i64,
    /// Picture height.
    pub height: i64,
}

/// What `film import` learned about a file (from probing it).
#[derive(Debug, Clone)]
pub struct NewFilm {
    /// Title.
    pub title: String,
    /// Path.
    pub path: String,
    /// Duration, ms.
    pub duration_ms: i64,
    /// Container format.
    pub container: String,
    /// Video codec.
    pub video_codec: Option<String>,
    /// Audio codec.
    pub audio_codec: Option<String>,
    /// Width.
    pub width: i64,
    /// Height.
    pub height: i64,
}

/// A screening row.
#[derive(Debug, Clone, Serialize)]
pub struct Screening {
    /// Row id.
    pub id: ScreeningId,
    /// Station whose channel plays it.
    pub station_id: StationId,
    /// The film.
    pub film_id: FilmId,
    /// Scheduled start, unix ms.
    pub starts_at_ms: i64,
    /// Scheduled start, RFC 3339.
    pub starts_at: String,
    /// Where it stands.
    pub status: ScreeningStatus,
    /// The live session once it started.
    pub session_id: Option<SessionId>,
    /// Why it was missed or failed.
    pub note: String,
}

type ScreeningRow = (i64, i64, i64, i64, String, Option<i64>, String);

/// A screening from its row; an unknown status is a decode error, not a panic.
fn screening(row: ScreeningRow) -> Result<Screening, CatalogError> {
    let (id, station, film, at, status, session, note) = row;
    let status = status
        .parse::<ScreeningStatus>()
        .map_err(|err| sqlx::Error::Decode(format!("screening {id}: {err}").into()))?;
    Ok(Screening {
        id: ScreeningId(id),
        station_id: StationId(station),
        film_id: FilmId(film),
        starts_at_ms: at,
        starts_at: rfc3339(at),
        status,
        session_id: session.map(SessionId),
        note,
    })
}

impl Catalog {
    /// Records a probed film and returns its id. Re-importing the same path updates it; a
    /// title an administrator already listed (without a file) gets this file; a title that
    /// belongs to another file is refused (titles name films in the statistics).
    pub async fn import_film(&self, film: &NewFilm, now_ms: i64) -> Result<FilmId, CatalogError> {
        let existing: Option<(i64, String)> =
            sqlx::query_as("SELECT id, path FROM films WHERE title = $1")
                .bind(&film.title)
                .fetch_optional(&self.pool)
                .await?;
        let id = match existing {
            Some((id, path)) if path.is_empty() || path == film.path => id,
            Some((_, path)) => {
                return Err(CatalogError::Invalid {
                    field: "film title",
                    reason: format!(
                        "a film titled {:?} already exists ({path}); rename the file",
                        film.title
                    ),
                });
            }
            None => {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO films (title, path, imported_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (path) WHERE path <> '' DO UPDATE SET title = excluded.title \
                     RETURNING id",
                )
                .bind(&film.title)
                .bind(&film.path)
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await?;
                id
            }
        };
        sqlx::query(
            "UPDATE films SET path = $2, duration_ms = $3, container = $4, video_codec = $5, \
             audio_codec = $6, width = $7, height = $8, imported_at = $9 WHERE id = $1",
        )
        .bind(id)
        .bind(&film.path)
        .bind(film.duration_ms)
        .bind(&film.container)
        .bind(&film.video_codec)
        .bind(&film.audio_codec)
        .bind(film.width)
        .bind(film.height)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(FilmId(id))
    }

    /// One film by id.
    pub async fn film(&self, id: FilmId) -> Result<Film, CatalogError> {
        let row: Option<FilmRow> = sqlx::query_as(
            "SELECT id, title, path, duration_ms, container, video_codec, audio_codec, width, \
             height FROM films WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| CatalogError::Invalid {
            field: "film",
            reason: format!("no film with id {id}; `feiyan film list` shows them"),
        })?;
        Ok(film(row))
    }

    /// Every film.
    pub async fn list_films(&self) -> Result<Vec<Film>, CatalogError> {
        let rows: Vec<FilmRow> = sqlx::query_as(
            "SELECT id, title, path, duration_ms, container, video_codec, audio_codec, width, \
             height FROM films ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(film).collect())
    }

    /// Schedules `film` on `station` (id or channel) at `starts_at_ms`.
    pub async fn schedule_screening(
        &self,
        station: &str,
        film_id: FilmId,
        starts_at_ms: i64,
        now_ms: i64,
    ) -> Result<Screening, CatalogError> {
        let station_id = self.resolve_station(station).await?;
        self.film(film_id).await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO planned_items (kind, station_id, film_id, starts_at, created_at, \
             updated_at) VALUES ('film_class', $1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(station_id.0)
        .bind(film_id.0)
        .bind(starts_at_ms)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        self.screening(ScreeningId(id)).await
    }

    /// One screening by id.
    pub async fn screening(&self, id: ScreeningId) -> Result<Screening, CatalogError> {
        let row: Option<ScreeningRow> = sqlx::query_as(
            "SELECT id, station_id, film_id, starts_at, status, session_id, note \
                 FROM planned_items WHERE id = $1 AND kind = 'film_class'",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| CatalogError::Invalid {
            field: "screening",
            reason: format!("no screening with id {id}"),
        })?;
        screening(row)
    }

    /// Screenings still waiting whose time has come (`starts_at <= now_ms`), oldest first.
    pub async fn due_screenings(&self, now_ms: i64) -> Result<Vec<Screening>, CatalogError> {
        let rows: Vec<ScreeningRow> = sqlx::query_as(
            "SELECT id, station_id, film_id, starts_at, status, session_id, note \
             FROM planned_items WHERE status = $2 AND starts_at <= $1 AND kind = 'film_class' \
             ORDER BY starts_at",
        )
        .bind(now_ms)
        .bind(ScreeningStatus::Scheduled.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(screening).collect()
    }

    /// Moves a screening to `status` (with its session and a note), only from `from`:
    /// returns false when another worker moved it first.
    pub async fn set_screening_status(
        &self,
        id: ScreeningId,
        from: ScreeningStatus,
        status: ScreeningStatus,
        session: Option<SessionId>,
        note: &str,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE planned_items SET status = $1, session_id = COALESCE($2, session_id), \
             note = $3, sequence = sequence + CASE WHEN $1 IN ('cancelled', 'stopped') \
             THEN 1 ELSE 0 END WHERE id = $4 AND status = $5 AND kind = 'film_class'",
        )
        .bind(status.as_str())
        .bind(session.map(|s| s.0))
        .bind(note)
        .bind(id.0)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Start-now: moves a waiting (or missed) screening's start to `now_ms`, so the
    /// server's scheduler plays it within a poll (~0.2 s). Works whether the request
    /// comes through the API or the CLI, and from any host that reaches the catalog.
    pub async fn start_screening_now(
        &self,
        id: ScreeningId,
        now_ms: i64,
    ) -> Result<Screening, CatalogError> {
        let done = sqlx::query(
            "UPDATE planned_items SET starts_at = $1, status = $3, note = '', \
             session_id = NULL, sequence = sequence + 1, updated_at = $1 \
             WHERE id = $2 AND status IN ($3, $4) AND kind = 'film_class'",
        )
        .bind(now_ms)
        .bind(id.0)
        .bind(ScreeningStatus::Scheduled.as_str())
        .bind(ScreeningStatus::Missed.as_str())
        .execute(&self.pool)
        .await?;
        let screening = self.screening(id).await?;
        if done.rows_affected() == 1 {
            return Ok(screening);
        }
        Err(CatalogError::Conflict(match screening.status {
            ScreeningStatus::Playing | ScreeningStatus::Stopping => format!(
                "screening {id} is already {} (session {})",
                screening.status,
                screening.session_id.map(|s| s.0).unwrap_or_default()
            ),
            other => format!(
                "screening {id} is {other}; to show the film again, schedule a new screening"
            ),
        }))
    }

    /// Stop: a playing screening is marked `stopping` (the server playing it ends the
    /// session within a poll and marks it `stopped`); a waiting one is `cancelled`.
    pub async fn stop_screening(&self, id: ScreeningId) -> Result<Screening, CatalogError> {
        let done = sqlx::query(
            "UPDATE planned_items SET status = CASE status WHEN $2 THEN $3 ELSE $4 END, \
             note = CASE status WHEN $2 THEN 'stop requested' \
             ELSE 'cancelled before it started' END, sequence = sequence + 1 \
             WHERE id = $1 AND status IN ($2, $5) AND kind = 'film_class'",
        )
        .bind(id.0)
        .bind(ScreeningStatus::Playing.as_str())
        .bind(ScreeningStatus::Stopping.as_str())
        .bind(ScreeningStatus::Cancelled.as_str())
        .bind(ScreeningStatus::Scheduled.as_str())
        .execute(&self.pool)
        .await?;
        let screening = self.screening(id).await?;
        if done.rows_affected() == 1 {
            return Ok(screening);
        }
        Err(CatalogError::Conflict(format!(
            "screening {id} is {}; only a scheduled or playing screening can be stopped",
            screening.status
        )))
    }

    /// Links a screening to the session playing it, whatever its status (a stop may
    /// already have been asked for while the session opened).
    pub async fn link_screening_session(
        &self,
        id: ScreeningId,
        session: SessionId,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE planned_items SET session_id = $1 WHERE id = $2 AND kind = 'film_class'",
        )
        .bind(session.0)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The film a session played, for film-class sessions.
    pub async fn session_film(&self, session: SessionId) -> Result<Option<FilmId>, CatalogError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT film_id FROM planned_items WHERE session_id = $1 AND kind = 'film_class'",
        )
        .bind(session.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| FilmId(id)))
    }
}

type FilmRow = (
    i64,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn film(row: FilmRow) -> Film {
    let (id, title, path, duration_ms, container, video_codec, audio_codec, width, height) = row;
    Film {
        id: FilmId(id),
        title,
        path,
        duration_ms,
        container,
        video_codec,
        audio_codec,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::ScreeningStatus;

    #[test]
    fn screening_status_keeps_its_database_and_api_spelling() {
        for status in ScreeningStatus::ALL {
            assert_eq!(status.as_str().parse::<ScreeningStatus>().unwrap(), status);
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
        assert!("Playing".parse::<ScreeningStatus>().is_err());
        assert!("".parse::<ScreeningStatus>().is_err());
    }
}

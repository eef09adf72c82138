//! Live sessions: their rows from the start of publishing to the end, the sessions servers
//! that went away left open, and a session's figures, its peak computed from viewer rows.

use serde::Serialize;
use sqlx::AssertSqlSafe;
use tracing::{info, warn};

use super::films::ScreeningStatus;
use super::{Catalog, CatalogError, rfc3339};
use crate::ids::{ChannelName, SessionId, StationId};

/// What kind of live session a broadcast is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A theory lecture (理论宣讲), the default.
    Lecture,
    /// A Party-history film class (电影党史课).
    FilmClass,
    /// Anything else a station broadcasts.
    Other,
}

impl SessionKind {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Lecture => "lecture",
            SessionKind::FilmClass => "film_class",
            SessionKind::Other => "other",
        }
    }

    /// Parses the database/API spelling.
    pub fn parse(text: &str) -> Option<SessionKind> {
        match text {
            "lecture" => Some(SessionKind::Lecture),
            "film_class" => Some(SessionKind::FilmClass),
            "other" => Some(SessionKind::Other),
            _ => None,
        }
    }
}

/// How a session's media came in. Stored as its lowercase name in `sessions.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionSource {
    /// A WHIP publisher (browser or encoder).
    Whip,
    /// An RTMP encoder.
    Rtmp,
    /// A pull source the server opened itself (RTSP, SRT, RTMP, HTTP).
    Pull,
    /// A film the server played (a screening).
    Playout,
}

impl SessionSource {
    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionSource::Whip => "whip",
            SessionSource::Rtmp => "rtmp",
            SessionSource::Pull => "pull",
            SessionSource::Playout => "playout",
        }
    }

    /// Parses the database spelling.
    pub fn parse(text: &str) -> Option<SessionSource> {
        [
            SessionSource::Whip,
            SessionSource::Rtmp,
            SessionSource::Pull,
            SessionSource::Playout,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A session's kind or source as read from its row; an unknown spelling is a decode
/// error naming the session, not a panic.
pub(super) fn decode<T>(
    session: i64,
    column: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, CatalogError> {
    parse(text).ok_or_else(|| {
        CatalogError::Database(sqlx::Error::Decode(
            format!("session {session}: unknown {column} {text:?}").into(),
        ))
    })
}

/// A session's figures as `GET /api/sessions/{id}` reports them.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    /// Row id.
    pub id: SessionId,
    /// Channel it ran on.
    pub channel: String,
    /// Station row id.
    pub station_id: StationId,
    /// What the session was.
    pub kind: SessionKind,
    /// Title.
    pub title: String,
    /// How its media came in.
    pub source: SessionSource,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC; absent while live.
    pub ended_at: Option<String>,
    /// Whether it is still live.
    pub live: bool,
    /// Most viewers at once.
    pub peak_viewers: i64,
    /// Distinct viewers.
    pub unique_viewers: i64,
    /// Number of WHEP attendance rows.
    pub viewer_sessions: i64,
    /// Sum of watched time, seconds.
    pub viewer_seconds: f64,
    /// Sum of watched time, minutes.
    pub viewer_minutes: f64,
}

/// The most viewers of each of the sessions `ids` (SQL selecting session ids, or a
/// parameter) watching at once, from their viewer rows, as rows `(session_id, peak)`.
/// Every join counts up and every leave down, in time order, a leave before a join of the
/// same millisecond; an open row has not left. Rows of every terminal and node count alike.
/// Sessions without viewer rows have no row here.
pub(super) fn session_peaks(ids: &str) -> String {
    format!(
        "SELECT e.session_id, CAST(MAX(e.n) AS BIGINT) AS peak FROM (\
         SELECT session_id, SUM(step) OVER (PARTITION BY session_id ORDER BY t, step \
         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n FROM (\
         SELECT session_id, joined_at AS t, 1 AS step FROM viewers WHERE session_id IN ({ids}) \
         UNION ALL SELECT session_id, left_at AS t, -1 AS step FROM viewers \
         WHERE session_id IN ({ids}) AND left_at IS NOT NULL) w) e GROUP BY e.session_id"
    )
}

/// The peak ([`session_peaks`]) of the session whose id is the SQL expression `id`, one of
/// the sessions `ids`, as a scalar; 0 without viewer rows.
pub(super) fn peak_of(ids: &str, id: &str) -> String {
    format!(
        "COALESCE((SELECT p.peak FROM ({}) p WHERE p.session_id = {id}), 0)",
        session_peaks(ids)
    )
}

/// A `sessions` row as selected by [`Catalog::session_summary`]: id, channel, station,
/// kind, title, source, started, ended, peak.
type SessionRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    i64,
);

impl Catalog {
    /// Opens a live session row when publishing starts.
    pub async fn open_session(
        &self,
        channel: &ChannelName,
        station: StationId,
        kind: SessionKind,
        title: &str,
        source: SessionSource,
        started_at_ms: i64,
    ) -> Result<SessionId, CatalogError> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO sessions (channel, station_id, kind, title, source, started_at, node_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(channel.as_str())
        .bind(station.0)
        .bind(kind.as_str())
        .bind(title)
        .bind(source.as_str())
        .bind(started_at_ms)
        .bind(self.node_id())
        .fetch_one(&self.pool)
        .await?;
        let session = SessionId(id);
        // A publisher going live near a planned lecture's time attaches to it. Off the
        // publish path: the publisher is answered without waiting for it, and a failure
        // only leaves the lecture unattached. A film class is linked by the playout.
        if source != SessionSource::Playout {
            let catalog = self.clone();
            tokio::spawn(async move {
                match catalog
                    .attach_session(session, station, started_at_ms)
                    .await
                {
                    Ok(Some(item)) => info!(%session, item, "session attached to its planned item"),
                    Ok(None) => {}
                    Err(err) => {
                        warn!(%session, %err, "cannot attach the session to a planned item")
                    }
                }
            });
        }
        Ok(session)
    }

    /// Ends one session now (used when a publish attempt fails after the row was made) and
    /// records its peak.
    pub async fn close_session(&self, id: SessionId, at_ms: i64) -> Result<(), CatalogError> {
        let sql = format!(
            "UPDATE sessions SET ended_at = $1, peak_viewers = {} \
             WHERE id = $2 AND ended_at IS NULL",
            peak_of("$2", "sessions.id")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(at_ms)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the row of a session opened for a publish attempt that failed before it
    /// went live (an offer the relay refused, an RTMP source that could not take the
    /// channel): such an attempt is no 场次, and a closed zero-minute row would be counted
    /// as one. Only a row nothing else refers to yet goes; otherwise it is closed at
    /// `at_ms` as [`Catalog::close_session`] does.
    pub async fn discard_session(&self, id: SessionId, at_ms: i64) -> Result<(), CatalogError> {
        let gone = sqlx::query(
            "DELETE FROM sessions WHERE id = $1 AND ended_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM viewers WHERE session_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM planned_items WHERE session_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM session_figures WHERE session_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM recordings WHERE session_id = $1)",
        )
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if gone.rows_affected() == 0 {
            self.close_session(id, at_ms).await?;
        }
        Ok(())
    }

    /// At a server's start: closes the sessions and viewer rows that servers silent for
    /// `gone_after_ms` left open (see [`Catalog::close_gone`]), and those of servers too
    /// old to record themselves, as of the database's time now. Returns how many sessions
    /// were closed.
    pub async fn close_stale(&self, gone_after_ms: i64) -> Result<u64, CatalogError> {
        self.close_open(gone_after_ms, true).await
    }

    /// Closes the sessions and viewer rows left open by servers whose last heartbeat is
    /// more than `gone_after_ms` old by the database's clock (a crash, a power cut), each
    /// as of its server's last heartbeat so no one is credited with the hours the server
    /// was down; ends the screenings those sessions played (an operator's pending stop
    /// becomes `stopped`, an interrupted film class `failed`). Every server calls it now
    /// and then, so what a crashed server left is closed even when it never comes back;
    /// the caller's own clock plays no part. Returns how many sessions were closed.
    pub async fn close_gone(&self, gone_after_ms: i64) -> Result<u64, CatalogError> {
        self.close_open(gone_after_ms, false).await
    }

    /// [`Catalog::close_gone`], and with `unowned` also the sessions and screenings no
    /// server claims (rows from before migration 0010).
    async fn close_open(&self, gone_after_ms: i64, unowned: bool) -> Result<u64, CatalogError> {
        // One reading of the database's clock for every statement below, so they agree on
        // which servers are gone.
        let at_ms = self.database_now_ms().await?;
        let gone_after_ms = gone_after_ms.max(0);
        let gone =
            format!("SELECT id FROM relay_nodes WHERE seen_at < $1 - {gone_after_ms} AND id <> $2");
        let stale = format!(
            "ended_at IS NULL AND (node_id IN ({gone}){})",
            if unowned { " OR node_id IS NULL" } else { "" }
        );
        // When each stale session ended: its server's last heartbeat, else now.
        let end = "COALESCE((SELECT n.seen_at FROM relay_nodes n WHERE n.id = s.node_id), $1)";
        // Usually nothing is: an index probe answers that without a write transaction.
        let any: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id FROM sessions WHERE {stale} LIMIT 1"
        )))
        .bind(at_ms)
        .bind(self.node_id().unwrap_or(0))
        .fetch_optional(&self.pool)
        .await?;
        // Viewer rows a gone node wrote in another node's session (an edge's viewers).
        let gone_viewers = format!(
            "UPDATE viewers SET left_at = (SELECT CASE WHEN n.seen_at > viewers.joined_at \
             THEN n.seen_at ELSE viewers.joined_at END FROM relay_nodes n WHERE n.id = viewers.node_id) \
             WHERE left_at IS NULL AND node_id IN ({gone})"
        );
        if any.is_none() && !unowned {
            let any_viewer: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT id FROM viewers WHERE left_at IS NULL AND node_id IN ({gone}) LIMIT 1"
            )))
            .bind(at_ms)
            .bind(self.node_id().unwrap_or(0))
            .fetch_optional(&self.pool)
            .await?;
            if any_viewer.is_some() {
                sqlx::query(AssertSqlSafe(gone_viewers))
                    .bind(at_ms)
                    .bind(self.node_id().unwrap_or(0))
                    .execute(&self.pool)
                    .await?;
            }
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(gone_viewers.clone()))
            .bind(at_ms)
            .bind(self.node_id().unwrap_or(0))
            .execute(&mut *tx)
            .await?;
        let bind = |sql: String| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(at_ms)
                .bind(self.node_id().unwrap_or(0))
        };
        bind(format!(
            "UPDATE viewers SET left_at = (SELECT CASE WHEN {end} > viewers.joined_at \
             THEN {end} ELSE viewers.joined_at END FROM sessions s WHERE s.id = viewers.session_id) \
             WHERE left_at IS NULL AND session_id IN (SELECT id FROM sessions WHERE {stale})"
        ))
        .execute(&mut *tx)
        .await?;
        let unowned_screening = if unowned {
            " OR session_id IS NULL"
        } else {
            ""
        };
        bind(format!(
            "UPDATE planned_items SET \
                 status = CASE status WHEN $3 THEN $4 ELSE $5 END, \
                 note = CASE status WHEN $3 THEN 'stopped (the server ended first)' \
                        ELSE 'interrupted: the server stopped while the film played' END \
             WHERE kind = 'film_class' AND status IN ($6, $3) AND \
             (session_id IN (SELECT id FROM sessions WHERE {stale}){unowned_screening})"
        ))
        .bind(ScreeningStatus::Stopping.as_str())
        .bind(ScreeningStatus::Stopped.as_str())
        .bind(ScreeningStatus::Failed.as_str())
        .bind(ScreeningStatus::Playing.as_str())
        .execute(&mut *tx)
        .await?;
        let peak = peak_of(
            &format!("SELECT id FROM sessions WHERE {stale}"),
            "sessions.id",
        );
        let done = bind(format!(
            "UPDATE sessions SET ended_at = (SELECT CASE WHEN {end} > s.started_at \
             THEN {end} ELSE s.started_at END FROM sessions s WHERE s.id = sessions.id), \
             peak_viewers = {peak} WHERE {stale}"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// A session's times and audience figures; open viewer rows count up to `now_ms`, and
    /// a live session's peak is computed from its viewer rows so far.
    pub async fn session_summary(
        &self,
        id: SessionId,
        now_ms: i64,
    ) -> Result<Option<SessionSummary>, CatalogError> {
        let sql = format!(
            "SELECT id, channel, station_id, kind, title, source, started_at, ended_at, \
                 CASE WHEN ended_at IS NULL THEN {} ELSE peak_viewers END \
             FROM sessions WHERE id = $1",
            peak_of("$1", "sessions.id")
        );
        let row: Option<SessionRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        let Some((id, channel, station_id, kind, title, source, started, ended, peak)) = row else {
            return Ok(None);
        };
        let (unique, rows, millis): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(DISTINCT viewer_key), COUNT(*), \
             CAST(COALESCE(SUM(COALESCE(left_at, $2) - joined_at), 0) AS BIGINT) \
             FROM viewers WHERE session_id = $1",
        )
        .bind(id)
        .bind(ended.unwrap_or(now_ms))
        .fetch_one(&self.pool)
        .await?;
        let viewer_seconds = millis.max(0) as f64 / 1000.0;
        Ok(Some(SessionSummary {
            id: SessionId(id),
            channel,
            station_id: StationId(station_id),
            kind: decode(id, "kind", &kind, SessionKind::parse)?,
            title,
            source: decode(id, "source", &source, SessionSource::parse)?,
            started_at: rfc3339(started),
            ended_at: ended.map(rfc3339),
            live: ended.is_none(),
            peak_viewers: peak,
            unique_viewers: unique,
            viewer_sessions: rows,
            viewer_seconds,
            viewer_minutes: (viewer_seconds / 60.0 * 100.0).round() / 100.0,
        }))
    }

    /// Viewer rows of a session as (joined_ms, left_ms, terminal), for tests and reports.
    pub async fn session_viewers(
        &self,
        id: SessionId,
    ) -> Result<Vec<(i64, Option<i64>, String)>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT joined_at, left_at, terminal FROM viewers WHERE session_id = $1 ORDER BY joined_at",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?)
    }
}

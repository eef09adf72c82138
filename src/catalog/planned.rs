//! Planned items (issue 25): what a station plans to show, before anything is live. A
//! planned lecture (kind `lecture`) or a film class (kind `film_class`: the screenings of
//! [`super::films`], whose ids are item ids). Residents see them in the programme, on the
//! station page, in calendar feeds and at `/e/{id}`.
//!
//! A lecture is `scheduled`, then `live` once a session on its station's channel opened
//! within [`ATTACH_WINDOW_MS`] of its start attached to it ([`Catalog::attach_session`]),
//! or `cancelled`; whether it ended is read from its session, and a scheduled one whose
//! window passed reads as `missed`. `sequence` is the iCalendar SEQUENCE: every change a
//! calendar should pick up (time, title, speaker, cancellation) bumps it.
//!
//! The programme's parameters and reads (by city, center, institute or station, and the
//! calendar feeds' per-station and per-center lists) are [`programme`]'s.
//!
//! SQL text built with `format!` here only splices `&'static str` fragments chosen in this
//! file; values are always bound.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use super::directory::IdName;
use super::films::ScreeningStatus;
use super::{Catalog, CatalogError, check_name, rfc3339};
use crate::ids::{SessionId, StationId};

mod programme;

pub use programme::{
    PROGRAMME_MAX_DAYS, PROGRAMME_MAX_ITEMS, Programme, ProgrammeLevel, ProgrammeQuery,
};

/// A session opened this close to a planned lecture's start (either side) attaches to it.
pub const ATTACH_WINDOW_MS: i64 = 60 * 60_000;

/// What a planned item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A theory lecture (理论宣讲) a publisher will broadcast.
    Lecture,
    /// A film class (电影党史课) the server plays from the library.
    FilmClass,
}

impl ItemKind {
    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Lecture => "lecture",
            ItemKind::FilmClass => "film_class",
        }
    }

    /// Parses the database and API spelling.
    pub fn parse(text: &str) -> Option<ItemKind> {
        match text {
            "lecture" => Some(ItemKind::Lecture),
            "film_class" => Some(ItemKind::FilmClass),
            _ => None,
        }
    }
}

/// Where an item stands, as residents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// Waiting for its time.
    Scheduled,
    /// Its session is live.
    Live,
    /// Its session ended.
    Ended,
    /// Called off (or a film class stopped by an operator).
    Cancelled,
    /// Its time passed with nothing live.
    Missed,
}

/// The station an item belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct ItemStation {
    /// Station row id.
    pub id: i64,
    /// Station name.
    pub name: String,
    /// Its channel.
    pub channel: String,
}

/// The film of a film class.
#[derive(Debug, Clone, Serialize)]
pub struct ItemFilm {
    /// Film row id.
    pub id: i64,
    /// Title.
    pub title: String,
}

/// A planned item as the API sends it (`GET /api/items/{id}`, the programme, the station
/// page) and the calendar feeds render it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedItem {
    /// Row id (also the screening id of a film class).
    pub id: i64,
    /// Lecture or film class.
    pub kind: ItemKind,
    /// Title (a film class without its own title shows the film's).
    pub title: String,
    /// Lecturer, when known.
    pub speaker: Option<String>,
    /// Topic tag, when set.
    pub topic: Option<String>,
    /// The film of a film class.
    pub film: Option<ItemFilm>,
    /// Planned start, RFC 3339 UTC.
    pub starts_at: String,
    /// End: the session's end once it ended, else a film class's start plus the film's
    /// length; absent for a lecture not ended.
    pub ends_at: Option<String>,
    /// Where it stands.
    pub status: ItemStatus,
    /// Its station.
    pub station: ItemStation,
    /// The live session once it started.
    pub session_id: Option<i64>,
    /// The replay (recording id, `/replay/{id}`) of its session, once published.
    pub replay_id: Option<i64>,
    /// The in-person headcount the station reported, after the session.
    pub headcount: Option<i64>,
    /// The item's page.
    pub url: String,
    /// iCalendar SEQUENCE: bumped on every change.
    pub sequence: i64,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
    /// Planned start, unix ms (for the calendar feeds).
    #[serde(skip)]
    pub starts_at_ms: i64,
    /// End, unix ms, when known.
    #[serde(skip)]
    pub ends_at_ms: Option<i64>,
    /// Last change, unix ms.
    #[serde(skip)]
    pub updated_at_ms: i64,
}

/// A planned lecture to create.
#[derive(Debug, Clone)]
pub struct NewLecture {
    /// Station id or channel.
    pub station: String,
    /// Title.
    pub title: String,
    /// Lecturer (may be empty).
    pub speaker: String,
    /// Topic id from `topics`.
    pub topic_id: Option<i64>,
    /// Planned start, unix ms.
    pub starts_at_ms: i64,
}

/// Changes to a planned lecture; absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct ItemChange {
    /// New title.
    pub title: Option<String>,
    /// New lecturer ("" clears).
    pub speaker: Option<String>,
    /// New topic (0 clears).
    pub topic_id: Option<i64>,
    /// New start, unix ms.
    pub starts_at_ms: Option<i64>,
}

pub(super) fn bad(field: &'static str, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The columns of an item with its station, film, topic, session and replay.
const ITEM_COLUMNS: &str = "SELECT p.id, p.kind, p.title, p.speaker, t.name AS topic, \
     p.film_id, f.title AS film_title, f.duration_ms AS film_ms, p.starts_at, p.status, \
     p.sequence, p.updated_at, p.station_id, s.name AS station_name, \
     ch.name AS channel, p.session_id, se.ended_at AS session_ended, \
     se.in_person AS in_person, r.id AS replay_id";

/// What an item's columns come from besides `planned_items p` and `stations s`.
const ITEM_JOINS: &str = "LEFT JOIN channels ch ON ch.station_id = p.station_id \
     LEFT JOIN topics t ON t.id = p.topic_id LEFT JOIN films f ON f.id = p.film_id \
     LEFT JOIN sessions se ON se.id = p.session_id \
     LEFT JOIN recordings r ON r.session_id = p.session_id AND r.deleted_ms IS NULL \
     AND r.published = 1";

/// Items whose station matches `stations` (SQL on `s`) and whose row matches `range` (SQL
/// on `p`), by start, at most `limit` (SQL). On PostgreSQL each station's items are read
/// through its own index range (`LATERAL`): with a prepared statement's generic plan the
/// planner otherwise walked every station's items of the whole time range (a center's week
/// took 45 ms instead of 1). SQLite has no `LATERAL`; its `CROSS JOIN` fixes the order.
fn items_sql(postgres: bool, stations: &str, range: &str, limit: &str) -> String {
    if postgres {
        format!(
            "{ITEM_COLUMNS} FROM stations s CROSS JOIN LATERAL (SELECT * FROM planned_items p \
             WHERE p.station_id = s.id AND {range} ORDER BY p.starts_at, p.id LIMIT {limit}) p \
             {ITEM_JOINS} WHERE {stations} ORDER BY p.starts_at, p.id LIMIT {limit}"
        )
    } else {
        // SQLite takes `CROSS JOIN` as the join order: the stations first, each one's
        // items through its index range.
        format!(
            "{ITEM_COLUMNS} FROM stations s CROSS JOIN planned_items p ON p.station_id = s.id \
             {ITEM_JOINS} WHERE {stations} AND {range} ORDER BY p.starts_at, p.id LIMIT {limit}"
        )
    }
}

/// The same for one station's items or every station's: the station's index range or the
/// time index, on both databases.
fn station_items_sql(condition: &str, range: &str, limit: &str) -> String {
    format!(
        "{ITEM_COLUMNS} FROM planned_items p JOIN stations s ON s.id = p.station_id \
         {ITEM_JOINS} WHERE {condition} AND {range} ORDER BY p.starts_at, p.id LIMIT {limit}"
    )
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: i64,
    kind: String,
    title: String,
    speaker: String,
    topic: Option<String>,
    film_id: Option<i64>,
    film_title: Option<String>,
    film_ms: Option<i64>,
    starts_at: i64,
    status: String,
    sequence: i64,
    updated_at: i64,
    station_id: i64,
    station_name: String,
    channel: Option<String>,
    session_id: Option<i64>,
    session_ended: Option<i64>,
    in_person: Option<i64>,
    replay_id: Option<i64>,
}

fn item(row: ItemRow, now_ms: i64) -> Result<PlannedItem, CatalogError> {
    let kind = ItemKind::parse(&row.kind).ok_or_else(|| {
        CatalogError::Database(sqlx::Error::Decode(
            format!("planned item {}: unknown kind {:?}", row.id, row.kind).into(),
        ))
    })?;
    let status = match kind {
        ItemKind::Lecture => match row.status.as_str() {
            "cancelled" => ItemStatus::Cancelled,
            _ if row.session_ended.is_some() => ItemStatus::Ended,
            "live" => ItemStatus::Live,
            _ if now_ms > row.starts_at + ATTACH_WINDOW_MS => ItemStatus::Missed,
            _ => ItemStatus::Scheduled,
        },
        ItemKind::FilmClass => match row.status.parse::<ScreeningStatus>() {
            Ok(ScreeningStatus::Scheduled) => ItemStatus::Scheduled,
            Ok(ScreeningStatus::Playing | ScreeningStatus::Stopping) => ItemStatus::Live,
            Ok(ScreeningStatus::Done | ScreeningStatus::Failed) => ItemStatus::Ended,
            Ok(ScreeningStatus::Missed) => ItemStatus::Missed,
            Ok(ScreeningStatus::Stopped | ScreeningStatus::Cancelled) => ItemStatus::Cancelled,
            Err(err) => {
                return Err(CatalogError::Database(sqlx::Error::Decode(
                    format!("planned item {}: {err}", row.id).into(),
                )));
            }
        },
    };
    let ends_at_ms = row.session_ended.or_else(|| {
        row.film_ms
            .filter(|ms| *ms > 0 && kind == ItemKind::FilmClass)
            .map(|ms| row.starts_at + ms)
    });
    let film = match (row.film_id, row.film_title) {
        (Some(id), Some(title)) => Some(ItemFilm { id, title }),
        _ => None,
    };
    let title = if row.title.is_empty() {
        film.as_ref().map(|f| f.title.clone()).unwrap_or_default()
    } else {
        row.title
    };
    let channel = row.channel.unwrap_or_else(|| {
        crate::ids::ChannelName::for_station(StationId(row.station_id)).to_string()
    });
    Ok(PlannedItem {
        id: row.id,
        kind,
        title,
        speaker: Some(row.speaker).filter(|s| !s.is_empty()),
        topic: row.topic,
        film,
        starts_at: rfc3339(row.starts_at),
        ends_at: ends_at_ms.map(rfc3339),
        status,
        station: ItemStation {
            id: row.station_id,
            name: row.station_name,
            channel,
        },
        session_id: row.session_id,
        replay_id: row.replay_id,
        headcount: row
            .in_person
            .filter(|n| *n > 0 && row.session_ended.is_some()),
        url: format!("/e/{}", row.id),
        sequence: row.sequence,
        updated_at: rfc3339(row.updated_at),
        starts_at_ms: row.starts_at,
        ends_at_ms,
        updated_at_ms: row.updated_at,
    })
}

fn check_time(field: &'static str, at_ms: i64) -> Result<i64, CatalogError> {
    if (946_684_800_000..=4_102_444_800_000).contains(&at_ms) {
        Ok(at_ms)
    } else {
        Err(bad(field, "must be a time between 2000 and 2100"))
    }
}

fn check_speaker(speaker: &str) -> Result<String, CatalogError> {
    let speaker = speaker.trim();
    if speaker.chars().count() > 200 {
        return Err(bad("speaker", "must be at most 200 characters"));
    }
    Ok(speaker.to_string())
}

/// A station with its place, for its page.
#[derive(Debug, Clone, Serialize)]
pub struct StationCard {
    /// Station id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its channel.
    pub channel: String,
    /// Its institute.
    pub institute: IdName,
    /// Its center.
    pub center: IdName,
}

/// A live session on a station page.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSession {
    /// Session id.
    pub session_id: i64,
    /// `lecture`, `film_class` or `other`.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// Viewers now (the live count residents may see).
    pub live_viewers: i64,
    /// The planned item it attached to.
    pub item_id: Option<i64>,
}

/// An ended session on a station page.
#[derive(Debug, Clone, Serialize)]
pub struct RecentSession {
    /// Session id.
    pub session_id: i64,
    /// `lecture`, `film_class` or `other`.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    pub ended_at: String,
    /// Its published replay.
    pub replay_id: Option<i64>,
    /// In-person headcount, when the station reported one.
    pub headcount: Option<i64>,
    /// The planned item it played.
    pub item_id: Option<i64>,
}

/// `GET /api/stations/{channel}/page`.
#[derive(Debug, Clone, Serialize)]
pub struct StationPage {
    /// The station and its place.
    pub station: StationCard,
    /// What is live now.
    pub live: Option<LiveSession>,
    /// The next items by start (not ended or cancelled), at most 10.
    pub upcoming: Vec<PlannedItem>,
    /// The last ended sessions, newest first, at most 10.
    pub recent: Vec<RecentSession>,
}

impl Catalog {
    /// One planned item, or `NotFound`.
    pub async fn planned_item(&self, id: i64, now_ms: i64) -> Result<PlannedItem, CatalogError> {
        let row: Option<ItemRow> = sqlx::query_as(AssertSqlSafe(format!(
            "{ITEM_COLUMNS} FROM planned_items p JOIN stations s ON s.id = p.station_id \
                 {ITEM_JOINS} WHERE p.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| CatalogError::NotFound(format!("no planned item {id}")))?;
        item(row, now_ms)
    }

    /// The station with this channel, with its place.
    pub async fn station_by_channel(&self, channel: &str) -> Result<StationCard, CatalogError> {
        let row: Option<(i64, String, String, i64, String, i64, String)> = sqlx::query_as(
            "SELECT s.id, s.name, ch.name, i.id, i.name, c.id, c.name FROM channels ch \
             JOIN stations s ON s.id = ch.station_id \
             JOIN institutes i ON i.id = s.institute_id \
             JOIN centers c ON c.id = i.center_id WHERE ch.name = $1",
        )
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        let (id, name, channel_name, iid, iname, cid, cname) =
            row.ok_or_else(|| CatalogError::UnknownChannel(channel.to_string()))?;
        Ok(StationCard {
            id,
            name,
            channel: channel_name,
            institute: IdName {
                id: iid,
                name: iname,
            },
            center: IdName {
                id: cid,
                name: cname,
            },
        })
    }

    /// Plans a lecture on a station (id or channel).
    pub async fn create_lecture(
        &self,
        lecture: &NewLecture,
        now_ms: i64,
    ) -> Result<PlannedItem, CatalogError> {
        let station = self.resolve_station(&lecture.station).await?;
        let title = check_name("title", &lecture.title)?;
        let speaker = check_speaker(&lecture.speaker)?;
        let at = check_time("at", lecture.starts_at_ms)?;
        let topic = self.check_topic(lecture.topic_id).await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO planned_items (kind, station_id, title, speaker, topic_id, starts_at, \
             created_at, updated_at) VALUES ('lecture', $1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(station.0)
        .bind(&title)
        .bind(&speaker)
        .bind(topic)
        .bind(at)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        self.planned_item(id, now_ms).await
    }

    async fn check_topic(&self, topic: Option<i64>) -> Result<Option<i64>, CatalogError> {
        let Some(id) = topic.filter(|t| *t != 0) else {
            return Ok(None);
        };
        let known: Option<(i64,)> = sqlx::query_as("SELECT id FROM topics WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        known
            .map(|(id,)| Some(id))
            .ok_or_else(|| bad("topic_id", format!("no topic with id {id}")))
    }

    /// Changes a planned lecture (title, speaker, topic, time); bumps its sequence. A new
    /// time is only for a lecture not yet live; a cancelled one cannot change.
    pub async fn update_item(
        &self,
        id: i64,
        change: &ItemChange,
        now_ms: i64,
    ) -> Result<PlannedItem, CatalogError> {
        let current = self.planned_item(id, now_ms).await?;
        if current.kind != ItemKind::Lecture {
            return Err(CatalogError::Conflict(format!(
                "item {id} is a film class: change it with the screening commands (start, stop) or schedule a new one"
            )));
        }
        if current.status == ItemStatus::Cancelled {
            return Err(CatalogError::Conflict(format!(
                "item {id} is cancelled; plan a new lecture instead"
            )));
        }
        let title = change
            .title
            .as_deref()
            .map(|t| check_name("title", t))
            .transpose()?;
        let speaker = change.speaker.as_deref().map(check_speaker).transpose()?;
        let at = change
            .starts_at_ms
            .map(|at| check_time("at", at))
            .transpose()?;
        if at.is_some() && current.session_id.is_some() {
            return Err(CatalogError::Conflict(format!(
                "item {id} already started (session {}); its time cannot change",
                current.session_id.unwrap_or_default()
            )));
        }
        let topic = match change.topic_id {
            None => None,
            Some(t) => Some(self.check_topic(Some(t)).await?),
        };
        sqlx::query(
            "UPDATE planned_items SET title = COALESCE($2, title), \
             speaker = COALESCE($3, speaker), starts_at = COALESCE($4, starts_at), \
             topic_id = CASE WHEN $5 = 1 THEN $6 ELSE topic_id END, \
             sequence = sequence + 1, updated_at = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(title)
        .bind(speaker)
        .bind(at)
        .bind(i64::from(topic.is_some()))
        .bind(topic.flatten())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.planned_item(id, now_ms).await
    }

    /// Cancels a planned item: a lecture not yet live becomes `cancelled`; a film class is
    /// stopped as [`Catalog::stop_screening`] does. Bumps the sequence.
    pub async fn cancel_item(&self, id: i64, now_ms: i64) -> Result<PlannedItem, CatalogError> {
        let current = self.planned_item(id, now_ms).await?;
        if current.kind == ItemKind::FilmClass {
            self.stop_screening(crate::ids::ScreeningId(id)).await?;
            sqlx::query("UPDATE planned_items SET updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            return self.planned_item(id, now_ms).await;
        }
        let done = sqlx::query(
            "UPDATE planned_items SET status = 'cancelled', sequence = sequence + 1, \
             updated_at = $2 WHERE id = $1 AND status = 'scheduled'",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return self.planned_item(id, now_ms).await;
        }
        Err(CatalogError::Conflict(format!(
            "item {id} is {}; only a scheduled lecture can be cancelled",
            serde_json::to_value(current.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )))
    }

    /// Attaches a session that just opened on `station` at `started_at_ms` to the station's
    /// scheduled lecture nearest in time within [`ATTACH_WINDOW_MS`], if any: the item
    /// becomes `live` with the session, and the session takes the item's speaker, topic and
    /// planned time (and its title when it has none). Returns the item's id.
    pub async fn attach_session(
        &self,
        session: SessionId,
        station: StationId,
        started_at_ms: i64,
    ) -> Result<Option<i64>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(i64, String, String, Option<i64>, i64)> = sqlx::query_as(
            "UPDATE planned_items SET session_id = $1, status = 'live', updated_at = $3 \
             WHERE id = (SELECT id FROM planned_items WHERE station_id = $2 \
             AND kind = 'lecture' AND status = 'scheduled' \
             AND starts_at >= $3 - $4 AND starts_at <= $3 + $4 \
             ORDER BY ABS(starts_at - $3), id LIMIT 1) AND status = 'scheduled' \
             RETURNING id, title, speaker, topic_id, starts_at",
        )
        .bind(session.0)
        .bind(station.0)
        .bind(started_at_ms)
        .bind(ATTACH_WINDOW_MS)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((item, title, speaker, topic, at)) = row else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE sessions SET title = CASE WHEN title = '' THEN $2 ELSE title END, \
             speaker = CASE WHEN speaker = '' THEN $3 ELSE speaker END, \
             topic_id = COALESCE(topic_id, $4), scheduled_at = $5 WHERE id = $1",
        )
        .bind(session.0)
        .bind(title)
        .bind(speaker)
        .bind(topic)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(item))
    }

    /// A station's page: the station, its live session (`live`: the relay's live session
    /// and its viewers now), its next items and its last ended sessions.
    pub async fn station_page(
        &self,
        channel: &str,
        live: Option<(SessionId, i64)>,
        now_ms: i64,
    ) -> Result<StationPage, CatalogError> {
        let station = self.station_by_channel(channel).await?;
        // Not ended or cancelled: waiting (not yet missed) or live. Filtered here, not in
        // SQL: a status condition made PostgreSQL's generic plan walk `planned_items_due`
        // (every scheduled item of the city) instead of the station's own range.
        let rows: Vec<ItemRow> = sqlx::query_as(AssertSqlSafe(station_items_sql(
            "p.station_id = $1",
            "p.starts_at >= $2",
            "30",
        )))
        .bind(station.id)
        .bind(now_ms - ATTACH_WINDOW_MS)
        .fetch_all(&self.pool)
        .await?;
        let upcoming = rows
            .into_iter()
            .map(|r| item(r, now_ms))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|i| matches!(i.status, ItemStatus::Scheduled | ItemStatus::Live))
            .take(10)
            .collect::<Vec<_>>();
        let live = match live {
            None => None,
            Some((session, viewers)) => {
                let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT se.kind, se.title, se.started_at, \
                     (SELECT MIN(p.id) FROM planned_items p WHERE p.session_id = se.id) \
                     FROM sessions se WHERE se.id = $1",
                )
                .bind(session.0)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|(kind, title, started, item_id)| LiveSession {
                    session_id: session.0,
                    kind,
                    title,
                    started_at: rfc3339(started),
                    live_viewers: viewers,
                    item_id,
                })
            }
        };
        type RecentRow = (i64, String, String, i64, i64, Option<i64>, i64, Option<i64>);
        let rows: Vec<RecentRow> = sqlx::query_as(
            "SELECT se.id, se.kind, se.title, se.started_at, se.ended_at, r.id, se.in_person, \
             (SELECT MIN(p.id) FROM planned_items p WHERE p.session_id = se.id) \
             FROM sessions se LEFT JOIN recordings r ON r.session_id = se.id \
             AND r.deleted_ms IS NULL AND r.published = 1 \
             WHERE se.station_id = $1 AND se.ended_at IS NOT NULL \
             ORDER BY se.started_at DESC LIMIT 10",
        )
        .bind(station.id)
        .fetch_all(&self.pool)
        .await?;
        let recent = rows
            .into_iter()
            .map(
                |(session_id, kind, title, started, ended, replay_id, n, item_id)| RecentSession {
                    session_id,
                    kind,
                    title,
                    started_at: rfc3339(started),
                    ended_at: rfc3339(ended),
                    replay_id,
                    headcount: (n > 0).then_some(n),
                    item_id,
                },
            )
            .collect();
        Ok(StationPage {
            station,
            live,
            upcoming,
            recent,
        })
    }

    /// Resolves a station id or channel (for the CLI and the API).
    pub async fn station_id(&self, station_or_channel: &str) -> Result<StationId, CatalogError> {
        self.resolve_station(station_or_channel).await
    }
}

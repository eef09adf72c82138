//! The request cycle (点单 -> 制单/派单 -> 接单, issue 26 item 2): a service menu per
//! center (lecture topics with their speakers, films from the library), residents'
//! requests at a station for an item on its center's menu, administrators turning one or
//! several into a planned item (a lecture or a film class) assigned to a station, and the
//! station accepting or declining it. A request whose planned item's session ended is
//! `done` ([`Catalog::settle_requests`], run by the server's periodic catalog task).
//!
//! Residents have no account: a request belongs to a device (the `fy_dev` cookie), stored
//! only as a hash. A contact phone is kept only with the resident's consent, shown only to
//! administrators in scope ([`ServiceRequest::phone`]), masked everywhere else, and blanked
//! [`PHONE_KEEP_MS`] after the request closed ([`Catalog::forget_phones`]).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::planned::{ItemKind, ItemStatus, NewLecture};
use super::{Catalog, CatalogError, rfc3339};
use crate::ids::{CenterId, FilmId, StationId};

/// Open requests (requested, scheduled, accepted) one device may have at one station.
pub const MAX_OPEN_PER_DEVICE: i64 = 3;

/// How long a closed request keeps its phone number: 90 days.
pub const PHONE_KEEP_MS: i64 = 90 * 24 * 3600 * 1000;

/// Longest nickname, in characters.
pub const MAX_NICKNAME_CHARS: usize = 40;

/// Longest preferred period, in characters.
pub const MAX_PERIOD_CHARS: usize = 100;

/// Longest decline reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Waiting for an administrator.
    Requested,
    /// Turned into a planned item assigned to a station, waiting for the station.
    Scheduled,
    /// The station took it.
    Accepted,
    /// The station declined it (with a reason).
    Declined,
    /// The planned item's session ended.
    Done,
    /// Withdrawn.
    Cancelled,
}

impl RequestStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Requested => "requested",
            RequestStatus::Scheduled => "scheduled",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Declined => "declined",
            RequestStatus::Done => "done",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> RequestStatus {
        match text {
            "scheduled" => RequestStatus::Scheduled,
            "accepted" => RequestStatus::Accepted,
            "declined" => RequestStatus::Declined,
            "done" => RequestStatus::Done,
            "cancelled" => RequestStatus::Cancelled,
            _ => RequestStatus::Requested,
        }
    }
}

/// One item of a center's service menu.
#[derive(Debug, Clone, Serialize)]
pub struct MenuItem {
    /// Row id.
    pub id: i64,
    /// The center whose stations offer it.
    pub center_id: i64,
    /// Lecture or film class.
    pub kind: ItemKind,
    /// Lecture topic, or the film's title.
    pub title: String,
    /// Lecturer, when known.
    pub speaker: Option<String>,
    /// The film of a film class.
    pub film_id: Option<i64>,
}

/// A menu item to add.
#[derive(Debug, Clone)]
pub struct NewMenuItem {
    /// The center.
    pub center_id: CenterId,
    /// Lecture or film class.
    pub kind: ItemKind,
    /// Topic; for a film class, empty takes the film's title.
    pub title: String,
    /// Lecturer (may be empty).
    pub speaker: String,
    /// The film of a film class.
    pub film_id: Option<i64>,
}

/// A resident's request as it arrives.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Menu item id.
    pub menu_id: i64,
    /// When they would like it (free text or dates).
    pub period: String,
    /// The name they chose.
    pub nickname: String,
    /// A contact phone, only with consent.
    pub phone: Option<String>,
    /// Whether they ticked consent to keep the phone.
    pub consent: bool,
}

/// A request as its device sees it: no phone, only whether one was left (masked).
#[derive(Debug, Clone, Serialize)]
pub struct MyRequest {
    /// Row id.
    pub id: i64,
    /// The menu item.
    pub item: MenuItem,
    /// Preferred period.
    pub period: String,
    /// Nickname.
    pub nickname: String,
    /// The phone, masked (`138****5678`), when one was left.
    pub phone_masked: Option<String>,
    /// Where it stands.
    pub status: RequestStatus,
    /// Why the station declined it.
    pub decline_reason: Option<String>,
    /// The planned item it became (`/e/{id}`).
    pub planned_item_id: Option<i64>,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A request as administrators in scope see it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRequest {
    /// What the device sees, plus what follows.
    #[serde(flatten)]
    pub request: MyRequest,
    /// The phone in full (only administrators in scope get this struct).
    pub phone: Option<String>,
    /// Station where it was made.
    pub station_id: i64,
    /// Its name.
    pub station: String,
    /// Its center.
    pub center_id: i64,
    /// The station its planned item was assigned to.
    pub assigned_station_id: Option<i64>,
}

/// How many open or closed requests name one item at one station (the popular ones first).
#[derive(Debug, Clone, Serialize)]
pub struct RequestCount {
    /// Menu item id.
    pub menu_id: i64,
    /// Its title.
    pub title: String,
    /// Station id.
    pub station_id: i64,
    /// Station name.
    pub station: String,
    /// Requests still waiting for an administrator.
    pub waiting: i64,
    /// All requests.
    pub total: i64,
}

/// Which requests an administrator sees.
#[derive(Debug, Clone, Copy)]
pub enum RequestScope {
    /// All of them.
    City,
    /// Those made at one center's stations.
    Center(CenterId),
    /// Those made at or assigned to one station.
    Station(StationId),
}

/// Request figures of one station or center.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestStatsRow {
    /// Station or center id (0: everything).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Requests made in the period.
    pub received: i64,
    /// Of those, done (their session ran).
    pub fulfilled: i64,
    /// Of those, declined.
    pub declined: i64,
    /// Median days from request to the start of its session, fulfilled ones only.
    pub median_days: Option<f64>,
}

/// What rows of the request figures stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestGroup {
    /// One row.
    All,
    /// Per center.
    Center,
    /// Per station where requests were made.
    Station,
    /// Per menu item: a lecture topic or a film (its title).
    Item,
}

impl RequestGroup {
    /// `group=` of `/api/stats/requests`; absent is `station`.
    pub fn parse(text: Option<&str>) -> Result<RequestGroup, CatalogError> {
        match text.unwrap_or("station") {
            "all" => Ok(RequestGroup::All),
            "center" => Ok(RequestGroup::Center),
            "station" => Ok(RequestGroup::Station),
            "item" => Ok(RequestGroup::Item),
            other => Err(CatalogError::Invalid {
                field: "group",
                reason: format!("{other:?}; use all, center, station or item"),
            }),
        }
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// What identifies a device's requests without storing its id.
fn device_hash(device: &str) -> String {
    hex::encode(Sha256::digest(
        format!("feiyan-request:{device}").as_bytes(),
    ))
}

/// A phone number as it is stored: digits (a leading `+` kept), spaces and dashes dropped;
/// 7 to 15 digits, or 11 starting with 1 for a mainland mobile.
pub fn check_phone(phone: &str) -> Result<String, CatalogError> {
    let trimmed = phone.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", trimmed),
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' => {}
            _ => {
                return Err(bad(
                    "phone",
                    "use digits only, e.g. 13812345678 or 010-12345678",
                ));
            }
        }
    }
    if !(7..=15).contains(&digits.len()) {
        return Err(bad(
            "phone",
            format!(
                "{} digits; a phone number has 7 to 15 (a mobile 11)",
                digits.len()
            ),
        ));
    }
    if plus.is_empty() && digits.starts_with('1') && digits.len() != 11 {
        return Err(bad(
            "phone",
            "a mobile number starting with 1 has 11 digits",
        ));
    }
    Ok(format!("{plus}{digits}"))
}

/// `138****5678`: the first three and last four digits of a phone.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<String, CatalogError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(bad(field, "is missing; fill it in"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(bad(field, format!("{chars} characters; at most {max}")));
    }
    Ok(value.to_string())
}

/// Median of day counts, one decimal.
fn median(mut days: Vec<f64>) -> Option<f64> {
    if days.is_empty() {
        return None;
    }
    days.sort_by(|a, b| a.total_cmp(b));
    let n = days.len();
    let m = if n % 2 == 1 {
        days[n / 2]
    } else {
        (days[n / 2 - 1] + days[n / 2]) / 2.0
    };
    Some((m * 10.0).round() / 10.0)
}

type MenuRow = (i64, i64, String, String, String, Option<i64>);

fn menu_item((id, center_id, kind, title, speaker, film_id): MenuRow) -> MenuItem {
    MenuItem {
        id,
        center_id,
        kind: ItemKind::parse(&kind).unwrap_or(ItemKind::Lecture),
        title,
        speaker: (!speaker.is_empty()).then_some(speaker),
        film_id,
    }
}

const MENU_COLUMNS: &str = "SELECT id, center_id, kind, title, speaker, film_id FROM service_menu";

/// The columns of a request with its menu item, station and center.
const REQUEST_COLUMNS: &str = "SELECT r.id, r.period, r.nickname, r.phone, r.status, \
     r.decline_reason, r.planned_item_id, r.created_at, r.updated_at, r.station_id, \
     s.name AS station, i.center_id, r.assigned_station_id, m.id AS menu_id, \
     m.center_id AS menu_center_id, m.kind AS menu_kind, m.title AS menu_title, \
     m.speaker AS menu_speaker, m.film_id AS menu_film_id FROM service_requests r JOIN service_menu m ON m.id = r.menu_id \
     JOIN stations s ON s.id = r.station_id JOIN institutes i ON i.id = s.institute_id";

/// One row of [`REQUEST_COLUMNS`].
#[derive(sqlx::FromRow)]
struct RequestRow {
    id: i64,
    period: String,
    nickname: String,
    phone: Option<String>,
    status: String,
    decline_reason: String,
    planned_item_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
    station_id: i64,
    station: String,
    center_id: i64,
    assigned_station_id: Option<i64>,
    menu_id: i64,
    menu_center_id: i64,
    menu_kind: String,
    menu_title: String,
    menu_speaker: String,
    menu_film_id: Option<i64>,
}

fn request(row: RequestRow) -> ServiceRequest {
    let reason = row.decline_reason;
    ServiceRequest {
        request: MyRequest {
            id: row.id,
            item: menu_item((
                row.menu_id,
                row.menu_center_id,
                row.menu_kind,
                row.menu_title,
                row.menu_speaker,
                row.menu_film_id,
            )),
            period: row.period,
            nickname: row.nickname,
            phone_masked: row.phone.as_deref().map(mask_phone),
            status: RequestStatus::parse(&row.status),
            decline_reason: (!reason.is_empty()).then_some(reason),
            planned_item_id: row.planned_item_id,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        },
        phone: row.phone,
        station_id: row.station_id,
        station: row.station,
        center_id: row.center_id,
        assigned_station_id: row.assigned_station_id,
    }
}

/// Station id and name, center id and name, menu item id and title, status, made at, its
/// session's start.
type StatsSource = (
    i64,
    String,
    i64,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
);

impl Catalog {
    /// A center's service menu (retired items left out), by kind and title.
    pub async fn service_menu(&self, center: CenterId) -> Result<Vec<MenuItem>, CatalogError> {
        let rows: Vec<MenuRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{MENU_COLUMNS} WHERE center_id = $1 AND retired = 0 ORDER BY kind, title, id"
        )))
        .bind(center.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(menu_item).collect())
    }

    /// One menu item, retired or not.
    pub async fn menu_item(&self, id: i64) -> Result<MenuItem, CatalogError> {
        let row: Option<MenuRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{MENU_COLUMNS} WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(menu_item)
            .ok_or_else(|| CatalogError::NotFound(format!("no menu item {id}")))
    }

    /// Adds an item to a center's menu: a lecture needs a topic; a film class a film of
    /// the library (its title when none is given).
    pub async fn add_menu_item(
        &self,
        item: &NewMenuItem,
        now_ms: i64,
    ) -> Result<MenuItem, CatalogError> {
        self.center(item.center_id).await?;
        let speaker = check_text("speaker", &item.speaker, 100, false)?;
        let (title, film) = match item.kind {
            ItemKind::Lecture => {
                if item.film_id.is_some() {
                    return Err(bad("film_id", "a lecture has no film; leave film_id out"));
                }
                (check_text("title", &item.title, 200, true)?, None)
            }
            ItemKind::FilmClass => {
                let film_id = item
                    .film_id
                    .ok_or_else(|| bad("film_id", "a film class needs a film of the library"))?;
                let film = self.film(FilmId(film_id)).await.map_err(|e| match e {
                    CatalogError::NotFound(_) | CatalogError::Invalid { .. } => bad(
                        "film_id",
                        format!("no film {film_id} in the library (`feiyan film list` shows them)"),
                    ),
                    other => other,
                })?;
                let title = check_text("title", &item.title, 200, false)?;
                (
                    if title.is_empty() { film.title } else { title },
                    Some(film_id),
                )
            }
        };
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO service_menu (center_id, kind, title, speaker, film_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(item.center_id.0)
        .bind(item.kind.as_str())
        .bind(&title)
        .bind(&speaker)
        .bind(film)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        self.menu_item(id).await
    }

    /// Takes an item off its center's menu; requests naming it keep it.
    pub async fn retire_menu_item(&self, id: i64) -> Result<MenuItem, CatalogError> {
        let item = self.menu_item(id).await?;
        sqlx::query("UPDATE service_menu SET retired = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(item)
    }

    /// Records a resident's request at `station` (of `center`) for an item of the center's
    /// menu: 404 when the item is not on it, 400 for a missing nickname or a phone without
    /// consent or not a phone number, 409 past [`MAX_OPEN_PER_DEVICE`].
    pub async fn create_request(
        &self,
        station: StationId,
        center: CenterId,
        device: &str,
        new: &NewRequest,
        now_ms: i64,
    ) -> Result<MyRequest, CatalogError> {
        let nickname = check_text("nickname", &new.nickname, MAX_NICKNAME_CHARS, true)?;
        let period = check_text("period", &new.period, MAX_PERIOD_CHARS, false)?;
        let phone = match new.phone.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(_) if !new.consent => {
                return Err(bad(
                    "phone",
                    "tick consent (consent: true) to leave a phone number, or leave it out",
                ));
            }
            Some(p) => Some(check_phone(p)?),
        };
        let on_menu: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM service_menu WHERE id = $1 AND center_id = $2 AND retired = 0",
        )
        .bind(new.menu_id)
        .bind(center.0)
        .fetch_optional(&self.pool)
        .await?;
        if on_menu.is_none() {
            return Err(CatalogError::NotFound(format!(
                "item {} is not on this station's menu; pick one from GET /api/stations/{{channel}}/menu",
                new.menu_id
            )));
        }
        let hash = device_hash(device);
        let (open,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM service_requests WHERE device_hash = $1 AND station_id = $2 \
             AND status IN ('requested', 'scheduled', 'accepted')",
        )
        .bind(&hash)
        .bind(station.0)
        .fetch_one(&self.pool)
        .await?;
        if open >= MAX_OPEN_PER_DEVICE {
            return Err(CatalogError::Conflict(format!(
                "this device has {open} open requests at this station (at most {MAX_OPEN_PER_DEVICE}); wait until one is done or declined"
            )));
        }
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO service_requests (station_id, menu_id, period, nickname, phone, \
             device_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             RETURNING id",
        )
        .bind(station.0)
        .bind(new.menu_id)
        .bind(&period)
        .bind(&nickname)
        .bind(phone)
        .bind(&hash)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(self.request(id).await?.request)
    }

    /// One request with everything administrators see.
    pub async fn request(&self, id: i64) -> Result<ServiceRequest, CatalogError> {
        let row: Option<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{REQUEST_COLUMNS} WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(request)
            .ok_or_else(|| CatalogError::NotFound(format!("no request {id}")))
    }

    /// A device's requests at a station, newest first.
    pub async fn device_requests(
        &self,
        station: StationId,
        device: &str,
    ) -> Result<Vec<MyRequest>, CatalogError> {
        let rows: Vec<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{REQUEST_COLUMNS} WHERE r.station_id = $1 AND r.device_hash = $2 \
             ORDER BY r.created_at DESC, r.id DESC"
        )))
        .bind(station.0)
        .bind(device_hash(device))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| request(r).request).collect())
    }

    /// The requests in an administrator's scope, newest first, with the counts per item and
    /// station (most waiting first).
    pub async fn scoped_requests(
        &self,
        scope: RequestScope,
    ) -> Result<(Vec<ServiceRequest>, Vec<RequestCount>), CatalogError> {
        let (filter, id) = match scope {
            RequestScope::City => ("$1 = 0", 0),
            RequestScope::Center(c) => ("i.center_id = $1", c.0),
            RequestScope::Station(s) => ("(r.station_id = $1 OR r.assigned_station_id = $1)", s.0),
        };
        let rows: Vec<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{REQUEST_COLUMNS} WHERE {filter} ORDER BY r.created_at DESC, r.id DESC LIMIT 5000"
        )))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let requests: Vec<ServiceRequest> = rows.into_iter().map(request).collect();
        let mut counts: Vec<RequestCount> = Vec::new();
        for r in &requests {
            let waiting = i64::from(r.request.status == RequestStatus::Requested);
            match counts
                .iter_mut()
                .find(|c| c.menu_id == r.request.item.id && c.station_id == r.station_id)
            {
                Some(c) => {
                    c.waiting += waiting;
                    c.total += 1;
                }
                None => counts.push(RequestCount {
                    menu_id: r.request.item.id,
                    title: r.request.item.title.clone(),
                    station_id: r.station_id,
                    station: r.station.clone(),
                    waiting,
                    total: 1,
                }),
            }
        }
        counts.sort_by(|a, b| {
            (b.waiting, b.total)
                .cmp(&(a.waiting, a.total))
                .then(a.menu_id.cmp(&b.menu_id))
                .then(a.station_id.cmp(&b.station_id))
        });
        Ok((requests, counts))
    }

    /// Turns waiting requests for one menu item into one planned item on `station` at
    /// `at_ms`: a lecture (title and speaker from the menu unless given) or a film class
    /// of the item's film. The requests become `scheduled`, assigned to the station.
    pub async fn schedule_requests(
        &self,
        ids: &[i64],
        station: StationId,
        at_ms: i64,
        title: Option<&str>,
        speaker: Option<&str>,
        now_ms: i64,
    ) -> Result<i64, CatalogError> {
        let Some(first) = ids.first() else {
            return Err(bad("request_ids", "name at least one request"));
        };
        let mut menu_id = None;
        for id in ids {
            let r = self.request(*id).await?;
            if r.request.status != RequestStatus::Requested {
                return Err(CatalogError::Conflict(format!(
                    "request {id} is {}; only waiting (requested) ones can be scheduled",
                    r.request.status.as_str()
                )));
            }
            match menu_id {
                None => menu_id = Some(r.request.item.id),
                Some(m) if m != r.request.item.id => {
                    return Err(bad(
                        "request_ids",
                        format!(
                            "request {id} asks for menu item {}, request {first} for {m}; schedule one item at a time",
                            r.request.item.id
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let item = self.menu_item(menu_id.unwrap_or_default()).await?;
        let planned = match item.kind {
            ItemKind::Lecture => {
                let lecture = NewLecture {
                    station: station.0.to_string(),
                    title: title.unwrap_or(&item.title).to_string(),
                    speaker: speaker
                        .map(str::to_string)
                        .or(item.speaker.clone())
                        .unwrap_or_default(),
                    topic_id: None,
                    starts_at_ms: at_ms,
                };
                self.create_lecture(&lecture, now_ms).await?.id
            }
            ItemKind::FilmClass => {
                let film = item
                    .film_id
                    .ok_or_else(|| CatalogError::Conflict("the menu item has no film".into()))?;
                self.schedule_screening(&station.0.to_string(), FilmId(film), at_ms, now_ms)
                    .await?
                    .id
                    .0
            }
        };
        for id in ids {
            sqlx::query(
                "UPDATE service_requests SET status = 'scheduled', planned_item_id = $2, \
                 assigned_station_id = $3, updated_at = $4 WHERE id = $1 AND status = 'requested'",
            )
            .bind(id)
            .bind(planned)
            .bind(station.0)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        }
        Ok(planned)
    }

    /// The assigned station accepts (`decline` None) or declines (with a reason) a
    /// scheduled request. Declining the last scheduled or accepted request of a planned
    /// item calls it off: a lecture is cancelled, a film class that has not started yet is
    /// cancelled like `feiyan screening stop` (one already playing plays on).
    pub async fn answer_request(
        &self,
        id: i64,
        decline: Option<&str>,
        now_ms: i64,
    ) -> Result<ServiceRequest, CatalogError> {
        let current = self.request(id).await?;
        if current.request.status != RequestStatus::Scheduled {
            return Err(CatalogError::Conflict(format!(
                "request {id} is {}; only a scheduled one can be accepted or declined",
                current.request.status.as_str()
            )));
        }
        match decline {
            None => {
                sqlx::query(
                    "UPDATE service_requests SET status = 'accepted', updated_at = $2 \
                     WHERE id = $1 AND status = 'scheduled'",
                )
                .bind(id)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            }
            Some(reason) => {
                let reason = check_text("reason", reason, MAX_REASON_CHARS, true)?;
                sqlx::query(
                    "UPDATE service_requests SET status = 'declined', decline_reason = $2, \
                     updated_at = $3, closed_at = $3 WHERE id = $1 AND status = 'scheduled'",
                )
                .bind(id)
                .bind(reason)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                // A lecture nobody still expects is called off (residents' calendars see it).
                if let Some(item) = current.request.planned_item_id {
                    let (open,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM service_requests WHERE planned_item_id = $1 \
                         AND status IN ('scheduled', 'accepted')",
                    )
                    .bind(item)
                    .fetch_one(&self.pool)
                    .await?;
                    let waiting = match current.request.item.kind {
                        ItemKind::Lecture => true,
                        ItemKind::FilmClass => {
                            self.planned_item(item, now_ms).await?.status == ItemStatus::Scheduled
                        }
                    };
                    if open == 0 && waiting {
                        match self.cancel_item(item, now_ms).await {
                            Ok(_) | Err(CatalogError::Conflict(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        self.request(id).await
    }

    /// Marks `done` every scheduled or accepted request whose planned item's session
    /// ended (closed at the session's end); returns how many. Requests whose item was
    /// cancelled before it ran go back to `requested`.
    pub async fn settle_requests(&self, now_ms: i64) -> Result<u64, CatalogError> {
        let done = sqlx::query(
            "UPDATE service_requests SET status = 'done', updated_at = $1, \
             closed_at = (SELECT s.ended_at FROM planned_items p \
                 JOIN sessions s ON s.id = p.session_id \
                 WHERE p.id = service_requests.planned_item_id) \
             WHERE status IN ('scheduled', 'accepted') AND planned_item_id IN \
             (SELECT p.id FROM planned_items p JOIN sessions s ON s.id = p.session_id \
              WHERE s.ended_at IS NOT NULL)",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        // An item called off before it ran (an administrator cancelled it): its requests
        // wait again, to be scheduled anew.
        sqlx::query(
            "UPDATE service_requests SET status = 'requested', planned_item_id = NULL, \
             assigned_station_id = NULL, updated_at = $1 \
             WHERE status IN ('scheduled', 'accepted') AND planned_item_id IN \
             (SELECT id FROM planned_items WHERE status = 'cancelled' AND session_id IS NULL)",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Blanks the phone of requests closed more than [`PHONE_KEEP_MS`] ago.
    pub async fn forget_phones(&self, now_ms: i64) -> Result<u64, CatalogError> {
        let done = sqlx::query(
            "UPDATE service_requests SET phone = NULL WHERE phone IS NOT NULL \
             AND closed_at IS NOT NULL AND closed_at < $1",
        )
        .bind(now_ms - PHONE_KEEP_MS)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A device withdraws its waiting request; its phone goes at once.
    pub async fn cancel_request(
        &self,
        id: i64,
        device: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        let done = sqlx::query(
            "UPDATE service_requests SET status = 'cancelled', phone = NULL, updated_at = $3, \
             closed_at = $3 WHERE id = $1 AND device_hash = $2 AND status = 'requested'",
        )
        .bind(id)
        .bind(device_hash(device))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::Conflict(format!(
                "request {id} is not a waiting request of this device; only those can be withdrawn"
            )));
        }
        Ok(())
    }

    /// Deletes the phone of this device's request at once (whatever its state).
    pub async fn forget_request_phone(&self, id: i64, device: &str) -> Result<(), CatalogError> {
        let done = sqlx::query(
            "UPDATE service_requests SET phone = NULL WHERE id = $1 AND device_hash = $2",
        )
        .bind(id)
        .bind(device_hash(device))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound(format!(
                "request {id} is not one of this device's"
            )));
        }
        Ok(())
    }

    /// Requests received from `from_ms` to `to_ms` (made then), in `scope`, grouped (by
    /// center, station or menu item: a lecture topic or a film):
    /// received, fulfilled (done), declined and the median days from request to the start
    /// of its session.
    pub async fn request_stats(
        &self,
        scope: RequestScope,
        group: RequestGroup,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<RequestStatsRow>, CatalogError> {
        self.settle_requests(now_ms).await?;
        let (filter, id) = match scope {
            RequestScope::City => ("$3 = 0", 0),
            RequestScope::Center(c) => ("i.center_id = $3", c.0),
            RequestScope::Station(s) => ("r.station_id = $3", s.0),
        };
        let rows: Vec<StatsSource> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT r.station_id, s.name, c.id, c.name, m.id, m.title, r.status, \
                 r.created_at, ss.started_at FROM service_requests r \
                 JOIN service_menu m ON m.id = r.menu_id \
                 JOIN stations s ON s.id = r.station_id \
                 JOIN institutes i ON i.id = s.institute_id \
                 JOIN centers c ON c.id = i.center_id \
                 LEFT JOIN planned_items p ON p.id = r.planned_item_id \
                 LEFT JOIN sessions ss ON ss.id = p.session_id \
                 WHERE r.created_at >= $1 AND r.created_at < $2 AND {filter} \
                 ORDER BY r.station_id"
        )))
        .bind(from_ms)
        .bind(to_ms)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(RequestStatsRow, Vec<f64>)> = Vec::new();
        for (sid, sname, cid, cname, mid, title, status, created, started) in rows {
            let (key, name) = match group {
                RequestGroup::All => (0, "全部".to_string()),
                RequestGroup::Center => (cid, cname),
                RequestGroup::Station => (sid, sname),
                RequestGroup::Item => (mid, title),
            };
            let slot = match out.iter().position(|(r, _)| r.id == key) {
                Some(i) => i,
                None => {
                    out.push((
                        RequestStatsRow {
                            id: key,
                            name,
                            received: 0,
                            fulfilled: 0,
                            declined: 0,
                            median_days: None,
                        },
                        Vec::new(),
                    ));
                    out.len() - 1
                }
            };
            let (row, days) = &mut out[slot];
            row.received += 1;
            match RequestStatus::parse(&status) {
                RequestStatus::Done => {
                    row.fulfilled += 1;
                    if let Some(started) = started {
                        days.push((started - created).max(0) as f64 / 86_400_000.0);
                    }
                }
                RequestStatus::Declined => row.declined += 1,
                _ => {}
            }
        }
        Ok(out
            .into_iter()
            .map(|(mut row, days)| {
                row.median_days = median(days);
                row
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_digits_of_a_plausible_length_and_masked_to_head_and_tail() {
        assert_eq!(check_phone("138 1234-5678").unwrap(), "13812345678");
        assert_eq!(check_phone("010-12345678").unwrap(), "01012345678");
        assert_eq!(check_phone("+86 13812345678").unwrap(), "+8613812345678");
        for bad in ["12345", "1381234567", "abc13812345678", "138123456789"] {
            assert!(check_phone(bad).is_err(), "{bad}");
        }
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("1234567"), "*******");
        assert!(!mask_phone("13812345678").contains("1234567"));
    }

    #[test]
    fn the_median_of_days_is_the_middle_one_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(device_hash("a").len(), 64);
        assert_ne!(device_hash("a"), device_hash("b"));
    }
}

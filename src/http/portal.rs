//! The residents' front door, JSON and calendars (issue 25): planned items, station pages,
//! the directory, the programme and the iCalendar feeds. The pages that show them are
//! [`super::pages`]'.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/items/{id}` | one planned item (lecture or film class) |
//! | `POST /api/lectures` | plan a lecture `{"channel","title","speaker","topic_id","at"}` (administrator in scope) |
//! | `PATCH /api/items/{id}` | change a lecture `{"title"?,"speaker"?,"topic_id"?,"at"?}` (administrator in scope) |
//! | `POST /api/items/{id}/cancel` | cancel an item (administrator in scope) |
//! | `GET /api/stations/{channel}/page` | a station: live now, upcoming items, recent sessions |
//! | `GET /api/directory[?center=ID][?q=TEXT]` | centers; one center's institutes and stations; a search |
//! | `GET /api/programme?level=&id=&from=&to=&kind=&limit=` | items by start (Asia/Shanghai days, `to` inclusive) |
//! | `GET /s/{channel}.ics`, `/c/{center_id}.ics`, `/e/{id}.ics` | calendar feeds and one event |
//!
//! The `.ics` filters match only names ending in `.ics`, so the pages' `/s/{channel}` and
//! `/e/{id}` sit beside them. Public answers carry no viewer figures except `live_viewers`.

use std::collections::HashMap;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::admin::{UnreadBody, allow_station, authenticate, unread_body};
use super::error::ApiError;
use super::{State, finish, ical, with_state};
use crate::audience::now_ms;
use crate::catalog::{
    ItemChange, NewLecture, ProgrammeLevel, ProgrammeQuery, shanghai_day, shanghai_midnight_ms,
};
use crate::ids::{CenterId, StationId};

/// Most stations a directory search lists.
const SEARCH_LIMIT: i64 = 50;

/// Most events in a calendar feed (from a week ago on).
const FEED_LIMIT: i64 = 500;

/// How far back a feed reaches, so a calendar keeps last week's events.
const FEED_PAST_MS: i64 = 7 * 86_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LectureBody {
    channel: String,
    title: String,
    #[serde(default)]
    speaker: String,
    #[serde(default)]
    topic_id: Option<i64>,
    at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    title: Option<String>,
    speaker: Option<String>,
    topic_id: Option<i64>,
    at: Option<String>,
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    warp::reply::json(value).into_response()
}

/// A JSON route's answer: its errors too are JSON, `{"error": "..."}` with the status of
/// [`ApiError::status`], for the pages' scripts.
fn finish_json(result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(r) => r,
        Err(err) => {
            let status = err.status();
            let message = err.to_string();
            // Logs an internal error's details; its body is not sent.
            drop(err.into_response());
            let mut r = json(&serde_json::json!({ "error": message }));
            *r.status_mut() = status;
            r
        }
    }
}

fn parse_at(at: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "at {at:?}: {e}; expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00"
            ))
        })
}

/// A name ending in `.ics` after `prefix` (`/s/st-1.ics`), without the suffix; any other
/// name is left to the other routes.
fn ics(prefix: &'static str) -> impl Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::path(prefix))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and_then(|name: String| async move {
            match name.strip_suffix(".ics") {
                Some(base) if !base.is_empty() => Ok(base.to_string()),
                _ => Err(warp::reject::not_found()),
            }
        })
}

/// Every route here; merged into [`super::routes`].
pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let auth = warp::header::optional::<String>("authorization");
    let host = warp::header::optional::<String>("host");

    let item = warp::get()
        .and(warp::path!("api" / "items" / i64))
        .and(with_state(state.clone()))
        .then(|id: i64, state: State| async move {
            finish_json(
                state
                    .catalog
                    .planned_item(id, now_ms())
                    .await
                    .map(|i| json(&i))
                    .map_err(ApiError::from),
            )
        });
    let lecture = warp::post()
        .and(warp::path!("api" / "lectures"))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, body: UnreadBody, state: State| async move {
                finish_json(create_lecture(h, body, state).await)
            },
        );
    let change = warp::patch()
        .and(warp::path!("api" / "items" / i64))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |id: i64, h: Option<String>, body: UnreadBody, state: State| async move {
                finish_json(change_item(id, h, body, state).await)
            },
        );
    let cancel = warp::post()
        .and(warp::path!("api" / "items" / i64 / "cancel"))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|id: i64, h: Option<String>, state: State| async move {
            finish_json(cancel_item(id, h, state).await)
        });
    let station = warp::get()
        .and(warp::path!("api" / "stations" / String / "page"))
        .and(with_state(state.clone()))
        .then(|channel: String, state: State| async move {
            finish_json(station_page(channel, state).await)
        });
    let directory = warp::get()
        .and(warp::path!("api" / "directory"))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .then(|q: HashMap<String, String>, state: State| async move {
            finish_json(directory(q, state).await)
        });
    let programme = warp::get()
        .and(warp::path!("api" / "programme"))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .then(|q: HashMap<String, String>, state: State| async move {
            finish_json(programme(q, state).await)
        });
    let station_ics = ics("s").and(host).and(with_state(state.clone())).then(
        |channel: String, host: Option<String>, state: State| async move {
            finish(station_feed(channel, host, state).await)
        },
    );
    let center_ics = ics("c").and(host).and(with_state(state.clone())).then(
        |center: String, host: Option<String>, state: State| async move {
            finish(center_feed(center, host, state).await)
        },
    );
    let item_ics = ics("e").and(host).and(with_state(state)).then(
        |id: String, host: Option<String>, state: State| async move {
            finish(item_event(id, host, state).await)
        },
    );
    item.or(lecture)
        .unify()
        .or(change)
        .unify()
        .or(cancel)
        .unify()
        .or(station)
        .unify()
        .or(directory)
        .unify()
        .or(programme)
        .unify()
        .or(station_ics)
        .unify()
        .or(center_ics)
        .unify()
        .or(item_ics)
        .unify()
        .boxed()
}

async fn create_lecture(
    h: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    let account = authenticate(&state, &h).await?;
    let body: LectureBody = body.json().await?;
    let station = state.catalog.station_id(&body.channel).await?;
    allow_station(&state, &account, station).await?;
    let lecture = NewLecture {
        station: station.0.to_string(),
        title: body.title,
        speaker: body.speaker,
        topic_id: body.topic_id,
        starts_at_ms: parse_at(&body.at)?,
    };
    let item = state.catalog.create_lecture(&lecture, now_ms()).await?;
    let mut r = json(&item);
    *r.status_mut() = StatusCode::CREATED;
    if let Ok(v) = HeaderValue::from_str(&format!("/api/items/{}", item.id)) {
        r.headers_mut().insert("location", v);
    }
    Ok(r)
}

/// The item `id` when the account behind `h` may change it: 401 without a valid login, 404
/// when there is no such item, 403 when it is another station's.
async fn item_in_scope(h: &Option<String>, id: i64, state: &State) -> Result<(), ApiError> {
    let account = authenticate(state, h).await?;
    let item = state.catalog.planned_item(id, now_ms()).await?;
    allow_station(state, &account, StationId(item.station.id)).await
}

async fn change_item(
    id: i64,
    h: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    item_in_scope(&h, id, &state).await?;
    let body: ChangeBody = body.json().await?;
    let change = ItemChange {
        title: body.title,
        speaker: body.speaker,
        topic_id: body.topic_id,
        starts_at_ms: body.at.as_deref().map(parse_at).transpose()?,
    };
    Ok(json(
        &state.catalog.update_item(id, &change, now_ms()).await?,
    ))
}

async fn cancel_item(id: i64, h: Option<String>, state: State) -> Result<Response, ApiError> {
    item_in_scope(&h, id, &state).await?;
    Ok(json(&state.catalog.cancel_item(id, now_ms()).await?))
}

async fn station_page(channel: String, state: State) -> Result<Response, ApiError> {
    let name = super::parse_channel(&channel)?;
    let live = state
        .relay
        .board()
        .get(&name)
        .filter(|s| s.live)
        .and_then(|s| s.session_id.map(|id| (id, s.viewers as i64)));
    Ok(json(
        &state
            .catalog
            .station_page(name.as_str(), live, now_ms())
            .await?,
    ))
}

async fn directory(q: HashMap<String, String>, state: State) -> Result<Response, ApiError> {
    if let Some(text) = q.get("q") {
        let stations = state.catalog.search_stations(text, SEARCH_LIMIT).await?;
        return Ok(json(&serde_json::json!({ "stations": stations })));
    }
    if let Some(center) = q.get("center") {
        let id = center.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!("center {center:?} is not a numeric center id"))
        })?;
        return Ok(json(&state.catalog.directory_center(CenterId(id)).await?));
    }
    let centers = state.catalog.directory_centers().await?;
    Ok(json(&serde_json::json!({ "centers": centers })))
}

async fn programme(q: HashMap<String, String>, state: State) -> Result<Response, ApiError> {
    let now = now_ms();
    let get = |k: &str| q.get(k).map(String::as_str);
    let (mut query, channel) = ProgrammeQuery::parse(
        get("level"),
        get("id"),
        get("from"),
        get("to"),
        get("kind"),
        get("limit"),
        shanghai_day(now),
    )?;
    if let Some(channel) = channel {
        let station = state.catalog.station_by_channel(&channel).await?;
        query.level = ProgrammeLevel::Station(StationId(station.id));
    }
    Ok(json(&state.catalog.programme(&query, now).await?))
}

/// The UID host and the base of event URLs for a request to `host`.
fn origin(host: &Option<String>, state: &State) -> (String, String) {
    let uid = ical::uid_host(host.as_deref());
    let authority: String = host
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        .collect();
    let authority = if authority.is_empty() {
        uid.clone()
    } else {
        authority
    };
    let scheme = if state.https { "https" } else { "http" };
    (uid, format!("{scheme}://{authority}"))
}

fn calendar_response(body: String, name: &str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}.ics\"")) {
        h.insert("content-disposition", v);
    }
    r
}

fn feed_start(now: i64) -> i64 {
    shanghai_midnight_ms(shanghai_day(now - FEED_PAST_MS))
}

async fn station_feed(
    channel: String,
    host: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    let name = super::parse_channel(&channel)?;
    let station = state.catalog.station_by_channel(name.as_str()).await?;
    let now = now_ms();
    let items = state
        .catalog
        .station_items(StationId(station.id), feed_start(now), FEED_LIMIT, now)
        .await?;
    let (uid, base) = origin(&host, &state);
    let body = ical::calendar(&station.name, &items, &uid, &base);
    Ok(calendar_response(body, name.as_str()))
}

async fn center_feed(
    center: String,
    host: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    let id = center
        .parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("no center {center:?}")))?;
    let now = now_ms();
    let center = state.catalog.center(CenterId(id)).await?;
    let items = state
        .catalog
        .center_items(CenterId(id), feed_start(now), FEED_LIMIT, now)
        .await?;
    let (uid, base) = origin(&host, &state);
    let body = ical::calendar(&center.name, &items, &uid, &base);
    Ok(calendar_response(body, &format!("center-{id}")))
}

async fn item_event(id: String, host: Option<String>, state: State) -> Result<Response, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("no planned item {id:?}")))?;
    let item = state.catalog.planned_item(id, now_ms()).await?;
    let (uid, base) = origin(&host, &state);
    let body = ical::calendar(&item.title, std::slice::from_ref(&item), &uid, &base);
    Ok(calendar_response(body, &format!("item-{id}")))
}

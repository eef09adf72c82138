//! Pull sources (IP cameras and streams the server opens itself), managed by their station.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/sources` (`?station={id}` optional) | the caller's sources with their status |
//! | `POST /api/sources` `{"channel", "url"}` | adds one (201); the channel's station key |
//! | `POST /api/sources/{id}/disable` | stops using it |
//! | `POST /api/sources/{id}/enable` | uses it again; after a key rotation, confirms it |
//! | `DELETE /api/sources/{id}` | removes it (200 with what was removed) |
//!
//! Credentials: `Authorization: Bearer <stream key>` (a station sees and changes only its
//! own sources) or `Bearer <token>` of an administrator (from `POST /api/login`, within
//! the account's scope). No credentials: 401; another station's source: 403.
//! URLs are shown without `user:password@` and without query-string secrets
//! ([`crate::redact::redact_url`]). Adding checks the scheme (rtsp, rtsps, srt, rtmp,
//! rtmps, http, https), `[ingest] max_sources_per_channel` (409) and, for http(s),
//! `[ingest] allow_private_sources` (400).

use std::collections::HashMap;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::ApiError;
use super::{State, finish, parse_channel, with_state};
use crate::audience::now_ms;
use crate::catalog::{Account, PullSource};
use crate::ids::{PullSourceId, StationId};
use crate::ingest::pull::{SourceStatus, check_host};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSource {
    channel: String,
    url: String,
}

/// Who is asking.
enum Caller {
    /// A station, by its current stream key.
    Station(StationId),
    /// A logged-in administrator.
    Admin(Account),
}

pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let auth = warp::header::optional::<String>("authorization");
    let list = warp::get()
        .and(warp::path!("api" / "sources"))
        .and(warp::query::<HashMap<String, String>>())
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |query: HashMap<String, String>, h: Option<String>, state: State| async move {
                finish(list(&state, &h, query).await)
            },
        );
    let add = warp::post()
        .and(warp::path!("api" / "sources"))
        .and(auth)
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::json())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, body: NewSource, state: State| async move {
                finish(add(&state, &h, body).await)
            },
        );
    let action = warp::post()
        .and(warp::path!("api" / "sources" / i64 / String))
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |id: i64, action: String, h: Option<String>, state: State| async move {
                finish(change(&state, &h, PullSourceId(id), &action).await)
            },
        );
    let remove = warp::delete()
        .and(warp::path!("api" / "sources" / i64))
        .and(auth)
        .and(with_state(state))
        .then(|id: i64, h: Option<String>, state: State| async move {
            finish(remove(&state, &h, PullSourceId(id)).await)
        });
    list.or(add)
        .unify()
        .or(action)
        .unify()
        .or(remove)
        .unify()
        .boxed()
}

fn bearer(header: &Option<String>) -> Option<&str> {
    header
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

async fn caller(state: &State, header: &Option<String>) -> Result<Caller, ApiError> {
    let token = bearer(header).ok_or_else(|| {
        ApiError::Unauthorized(
            "send Authorization: Bearer <stream key> (the station's) or Bearer <token> (an \
             administrator's, from POST /api/login)"
                .into(),
        )
    })?;
    if let Some(station) = state.catalog.station_by_key(token).await? {
        return Ok(Caller::Station(station));
    }
    match state.catalog.account_for_token(token, now_ms()).await? {
        Some(account) => Ok(Caller::Admin(account)),
        None => Err(ApiError::Unauthorized(
            "neither a station's current stream key nor a valid login (a rotated key no \
             longer works; an expired login needs POST /api/login again)"
                .into(),
        )),
    }
}

async fn allow(state: &State, caller: &Caller, station: StationId) -> Result<(), ApiError> {
    match caller {
        Caller::Station(s) if *s == station => Ok(()),
        Caller::Station(_) => Err(ApiError::Forbidden(format!(
            "station {station}'s sources need that station's key"
        ))),
        Caller::Admin(account) => super::admin::allow_station(state, account, station).await,
    }
}

fn json_with(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut r = warp::reply::json(body).into_response();
    *r.status_mut() = status;
    r
}

async fn list(
    state: &State,
    header: &Option<String>,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let caller = caller(state, header).await?;
    let mut station = None;
    for (name, value) in &query {
        match name.as_str() {
            "station" => {
                let id = value.parse().map_err(|_| {
                    ApiError::BadRequest(format!("station={value:?} is not a station id"))
                })?;
                allow(state, &caller, StationId(id)).await?;
                station = Some(StationId(id));
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {other:?}; known: station"
                )));
            }
        }
    }
    let mut allowed: HashMap<StationId, bool> = HashMap::new();
    let mut out: Vec<SourceStatus> = Vec::new();
    for source in state.catalog.list_sources().await? {
        if station.is_some_and(|s| s != source.station_id) {
            continue;
        }
        let ok = match allowed.get(&source.station_id) {
            Some(ok) => *ok,
            None => {
                let ok = allow(state, &caller, source.station_id).await.is_ok();
                allowed.insert(source.station_id, ok);
                ok
            }
        };
        if ok {
            out.push(state.pull.view(&source));
        }
    }
    Ok(json_with(StatusCode::OK, &out))
}

async fn add(
    state: &State,
    header: &Option<String>,
    body: NewSource,
) -> Result<Response, ApiError> {
    let caller = caller(state, header).await?;
    let channel = parse_channel(&body.channel)?;
    let owner = state.catalog.channel_owner(&channel).await?;
    allow(state, &caller, owner.station_id).await?;
    let rules = state.pull.rules;
    check_host(&body.url, rules.allow_private)
        .await
        .map_err(ApiError::BadRequest)?;
    let source = state
        .catalog
        .add_source(&channel, &body.url, rules.max_per_channel, now_ms())
        .await?;
    Ok(json_with(StatusCode::CREATED, &state.pull.view(&source)))
}

async fn source_in_scope(
    state: &State,
    caller: &Caller,
    id: PullSourceId,
) -> Result<PullSource, ApiError> {
    let source = state
        .catalog
        .source(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no source {id}")))?;
    allow(state, caller, source.station_id).await?;
    Ok(source)
}

async fn change(
    state: &State,
    header: &Option<String>,
    id: PullSourceId,
    action: &str,
) -> Result<Response, ApiError> {
    let enable = match action {
        "enable" => true,
        "disable" => false,
        other => {
            return Err(ApiError::NotFound(format!(
                "no action {other:?} on sources: use enable or disable"
            )));
        }
    };
    let caller = caller(state, header).await?;
    source_in_scope(state, &caller, id).await?;
    if !state.catalog.set_source_enabled(id, enable).await? {
        return Err(ApiError::NotFound(format!("no source {id}")));
    }
    let source = source_in_scope(state, &caller, id).await?;
    Ok(json_with(StatusCode::OK, &state.pull.view(&source)))
}

async fn remove(
    state: &State,
    header: &Option<String>,
    id: PullSourceId,
) -> Result<Response, ApiError> {
    let caller = caller(state, header).await?;
    let source = source_in_scope(state, &caller, id).await?;
    let view = state.pull.view(&source);
    if !state.catalog.remove_source(id).await? {
        return Err(ApiError::NotFound(format!("no source {id}")));
    }
    Ok(json_with(StatusCode::OK, &view))
}

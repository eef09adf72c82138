//! The request cycle (点单 -> 制单/派单 -> 接单, issue 26 item 2) over HTTP.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /api/stations/{channel}/menu` | everyone | the station's center's service menu |
//! | `POST /api/stations/{channel}/requests` `{menu_id, nickname, period?, phone?, consent?}` | a device (`fy_dev` cookie) | 201; 400 bad input, 404 not on the menu, 409 too many open |
//! | `GET /api/stations/{channel}/requests/mine` | a device | its requests there and their states (phones masked) |
//! | `POST /api/stations/{channel}/requests/{id}/cancel` | the device | withdraws a waiting request; its phone goes |
//! | `DELETE /api/stations/{channel}/requests/{id}/phone` | the device | deletes the phone it left, at once |
//! | `GET /api/admin/menu[?center=ID]` / `POST /api/admin/menu` `{center_id, kind, title, speaker?, film_id?}` or `{retire: id}` | center admins (their center), city | the menus |
//! | `GET /api/admin/requests[?format=csv]` | in scope | requests (phones in full in JSON only) and counts per item and station |
//! | `POST /api/admin/requests/schedule` `{request_ids, station, at, title?, speaker?}` | city, center admins in scope | one planned item on `station`; the requests become scheduled |
//! | `POST /api/admin/requests/{id}/accept` / `decline` `{reason}` | the assigned station (or admins above it) | 403 for another station's assignment |
//! | `GET /api/stats/requests[?group=station\|center\|item\|all&from=&to=&format=csv]` | in scope | received, fulfilled, declined, median days to the session |

use std::collections::HashMap;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::admin::{self, UnreadBody, unread_body};
use super::csv::{request_stats_csv, requests_csv};
use super::error::ApiError;
use super::{State, finish, with_state};
use crate::audience::now_ms;
use crate::catalog::{
    Account, ItemKind, NewMenuItem, NewRequest, RequestGroup, RequestScope, Scope,
    shanghai_midnight_ms,
};
use crate::device;
use crate::ids::{CenterId, StationId};

/// The resident's signed device id from the `Cookie` header, if valid.
fn device_of(state: &State, cookie: Option<&str>) -> Option<String> {
    cookie
        .and_then(device::from_cookie)
        .filter(|id| state.device_ids.verify(id))
        .map(str::to_string)
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body ({e}); send {shape}")))
}

fn private(mut reply: Response) -> Response {
    reply.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    reply.headers_mut().insert(
        warp::http::header::VARY,
        HeaderValue::from_static("authorization, cookie"),
    );
    reply
}

fn created(value: &impl serde::Serialize) -> Response {
    let mut reply = warp::reply::json(value).into_response();
    *reply.status_mut() = StatusCode::CREATED;
    private(reply)
}

fn scope_of(account: &Account) -> RequestScope {
    match account.scope {
        Scope::City => RequestScope::City,
        Scope::Center(c) => RequestScope::Center(c),
        Scope::Station(s) => RequestScope::Station(s),
    }
}

/// What a resident sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    menu_id: i64,
    nickname: Option<String>,
    #[serde(default)]
    period: String,
    phone: Option<String>,
    #[serde(default)]
    consent: bool,
}

async fn menu(channel: String, state: State) -> Result<Response, ApiError> {
    let station = state.catalog.station_by_channel(&channel).await?;
    let items = state
        .catalog
        .service_menu(CenterId(station.center.id))
        .await?;
    Ok(warp::reply::json(&serde_json::json!({
        "station": {"id": station.id, "name": station.name, "channel": station.channel},
        "center": station.center,
        "items": items,
    }))
    .into_response())
}

async fn post_request(
    channel: String,
    cookie: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    let device = device_of(&state, cookie.as_deref()).ok_or_else(|| {
        ApiError::BadRequest(
            "no device id: open the station's page (it sets the fy_dev cookie) and request from there"
                .into(),
        )
    })?;
    let station = state.catalog.station_by_channel(&channel).await?;
    let body: RequestBody = json_body(
        &body.bytes(4 * 1024).await?,
        "{\"menu_id\": 1, \"nickname\": \"...\", \"period\": \"...\", \"phone\"?: \"...\", \"consent\"?: true}",
    )?;
    let new = NewRequest {
        menu_id: body.menu_id,
        period: body.period,
        nickname: body.nickname.unwrap_or_default(),
        phone: body.phone,
        consent: body.consent,
    };
    let mine = state
        .catalog
        .create_request(
            StationId(station.id),
            CenterId(station.center.id),
            &device,
            &new,
            now_ms(),
        )
        .await?;
    Ok(created(&mine))
}

async fn my_requests(
    channel: String,
    cookie: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    let station = state.catalog.station_by_channel(&channel).await?;
    let requests = match device_of(&state, cookie.as_deref()) {
        Some(device) => {
            state.catalog.settle_requests(now_ms()).await?;
            state
                .catalog
                .device_requests(StationId(station.id), &device)
                .await?
        }
        None => Vec::new(),
    };
    Ok(private(
        warp::reply::json(&serde_json::json!({ "requests": requests })).into_response(),
    ))
}

async fn cancel_mine(id: i64, cookie: Option<String>, state: State) -> Result<Response, ApiError> {
    let device = device_of(&state, cookie.as_deref()).ok_or_else(|| {
        ApiError::BadRequest("no device id; withdraw from the station's page".into())
    })?;
    state.catalog.cancel_request(id, &device, now_ms()).await?;
    Ok(private(
        warp::reply::json(&serde_json::json!({"cancelled": id})).into_response(),
    ))
}

async fn forget_phone(id: i64, cookie: Option<String>, state: State) -> Result<Response, ApiError> {
    let device = device_of(&state, cookie.as_deref()).ok_or_else(|| {
        ApiError::BadRequest("no device id; delete it from the station's page".into())
    })?;
    state.catalog.forget_request_phone(id, &device).await?;
    Ok(private(
        warp::reply::json(&serde_json::json!({"phone_deleted": id})).into_response(),
    ))
}

/// `POST /api/admin/menu`: an item to add or one to retire.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MenuBody {
    center_id: Option<i64>,
    kind: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    speaker: String,
    film_id: Option<i64>,
    retire: Option<i64>,
}

fn allow_center(account: &Account, center: i64) -> Result<(), ApiError> {
    match account.scope {
        Scope::City => Ok(()),
        Scope::Center(c) if c.0 == center => Ok(()),
        _ => Err(ApiError::Forbidden(format!(
            "the menu of center {center} is outside the scope of this account; center administrators keep their own center's menu"
        ))),
    }
}

async fn admin_menu(
    authorization: Option<String>,
    params: HashMap<String, String>,
    state: State,
) -> Result<Response, ApiError> {
    let account = admin::authenticate(&state, &authorization).await?;
    let center = match (params.get("center"), account.scope) {
        (Some(c), _) => {
            let c: i64 = c
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("center {c:?} is not a center id")))?;
            allow_center(&account, c)?;
            c
        }
        (None, Scope::Center(c)) => c.0,
        (None, Scope::Station(s)) => state.catalog.station_placement(s).await?.center_id.0,
        (None, Scope::City) => {
            return Err(ApiError::BadRequest(
                "name the center: /api/admin/menu?center=ID".into(),
            ));
        }
    };
    let items = state.catalog.service_menu(CenterId(center)).await?;
    Ok(private(
        warp::reply::json(&serde_json::json!({"center_id": center, "items": items}))
            .into_response(),
    ))
}

async fn post_menu(
    authorization: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    let account = admin::authenticate(&state, &authorization).await?;
    let body: MenuBody = json_body(
        &body.bytes(8 * 1024).await?,
        "{\"center_id\": 1, \"kind\": \"lecture\"|\"film_class\", \"title\": \"...\", \"speaker\"?: \"...\", \"film_id\"?: 1} or {\"retire\": menu_id}",
    )?;
    if let Some(id) = body.retire {
        let item = state.catalog.menu_item(id).await?;
        allow_center(&account, item.center_id)?;
        let item = state.catalog.retire_menu_item(id).await?;
        return Ok(private(warp::reply::json(&item).into_response()));
    }
    let center = match (body.center_id, account.scope) {
        (Some(c), _) => c,
        (None, Scope::Center(c)) => c.0,
        _ => {
            return Err(ApiError::BadRequest(
                "center_id is missing: which center's menu?".into(),
            ));
        }
    };
    allow_center(&account, center)?;
    let kind = body.kind.as_deref().unwrap_or("lecture");
    let kind = ItemKind::parse(kind)
        .ok_or_else(|| ApiError::BadRequest(format!("kind {kind:?}; use lecture or film_class")))?;
    let item = state
        .catalog
        .add_menu_item(
            &NewMenuItem {
                center_id: CenterId(center),
                kind,
                title: body.title,
                speaker: body.speaker,
                film_id: body.film_id,
            },
            now_ms(),
        )
        .await?;
    Ok(created(&item))
}

async fn admin_requests(
    authorization: Option<String>,
    params: HashMap<String, String>,
    state: State,
) -> Result<Response, ApiError> {
    let account = admin::authenticate(&state, &authorization).await?;
    let as_csv = admin::wants_csv(&params)?;
    state.catalog.settle_requests(now_ms()).await?;
    let (requests, counts) = state.catalog.scoped_requests(scope_of(&account)).await?;
    if as_csv {
        return Ok(admin::csv(requests_csv(&requests), "feiyan-requests.csv"));
    }
    Ok(private(
        warp::reply::json(&serde_json::json!({"requests": requests, "counts": counts}))
            .into_response(),
    ))
}

/// `POST /api/admin/requests/schedule`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    request_ids: Vec<i64>,
    station: String,
    at: String,
    title: Option<String>,
    speaker: Option<String>,
}

async fn schedule(
    authorization: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    let account = admin::authenticate(&state, &authorization).await?;
    if let Scope::Station(_) = account.scope {
        return Err(ApiError::Forbidden(
            "city and center administrators assign requests; a station accepts or declines them"
                .into(),
        ));
    }
    let body: ScheduleBody = json_body(
        &body.bytes(8 * 1024).await?,
        "{\"request_ids\": [1], \"station\": \"channel or id\", \"at\": \"2026-12-01T19:00:00+08:00\"}",
    )?;
    let at = chrono::DateTime::parse_from_rfc3339(&body.at)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "at {:?}: {e}; expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00",
                body.at
            ))
        })?;
    let station = state.catalog.station_id(&body.station).await?;
    admin::allow_station(&state, &account, station).await?;
    for id in &body.request_ids {
        let r = state.catalog.request(*id).await?;
        admin::allow_station(&state, &account, StationId(r.station_id)).await?;
    }
    let planned = state
        .catalog
        .schedule_requests(
            &body.request_ids,
            station,
            at,
            body.title.as_deref(),
            body.speaker.as_deref(),
            now_ms(),
        )
        .await?;
    let item = state.catalog.planned_item(planned, now_ms()).await?;
    Ok(created(&serde_json::json!({
        "planned_item": item,
        "request_ids": body.request_ids,
    })))
}

/// `POST /api/admin/requests/{id}/decline`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclineBody {
    reason: Option<String>,
}

async fn answer(
    id: i64,
    verb: String,
    authorization: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    let account = admin::authenticate(&state, &authorization).await?;
    let current = state.catalog.request(id).await?;
    let assigned = current.assigned_station_id.ok_or_else(|| {
        ApiError::Conflict(format!(
            "request {id} is {}; it has no station to accept it yet",
            current.request.status.as_str()
        ))
    })?;
    admin::allow_station(&state, &account, StationId(assigned)).await?;
    let decline = match verb.as_str() {
        "accept" => None,
        "decline" => {
            let bytes = body.bytes(4 * 1024).await?;
            let body: DeclineBody = if bytes.is_empty() {
                DeclineBody { reason: None }
            } else {
                json_body(&bytes, "{\"reason\": \"...\"}")?
            };
            Some(body.reason.unwrap_or_default())
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no action {other:?}; use accept or decline"
            )));
        }
    };
    let r = state
        .catalog
        .answer_request(id, decline.as_deref(), now_ms())
        .await?;
    Ok(private(warp::reply::json(&r).into_response()))
}

/// `YYYY-MM-DD` (Beijing) to the ms of that midnight.
fn day_ms(params: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(key)
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(shanghai_midnight_ms)
                .map_err(|_| ApiError::BadRequest(format!("{key} {d:?}: use YYYY-MM-DD")))
        })
        .transpose()
}

async fn stats(
    authorization: Option<String>,
    params: HashMap<String, String>,
    state: State,
) -> Result<Response, ApiError> {
    let account = admin::authenticate(&state, &authorization).await?;
    let as_csv = admin::wants_csv(&params)?;
    let group = RequestGroup::parse(params.get("group").map(String::as_str))?;
    let from = day_ms(&params, "from")?.unwrap_or(0);
    let to = day_ms(&params, "to")?
        .map(|t| t + 86_400_000)
        .unwrap_or(i64::MAX);
    let rows = state
        .catalog
        .request_stats(scope_of(&account), group, from, to, now_ms())
        .await?;
    Ok(if as_csv {
        admin::csv(request_stats_csv(&rows), "feiyan-requests-stats.csv")
    } else {
        private(warp::reply::json(&rows).into_response())
    })
}

/// The request routes; merged into [`super::routes`].
pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let cookie = || warp::header::optional::<String>("cookie");
    let auth = || warp::header::optional::<String>("authorization");
    let get_menu = warp::get()
        .and(warp::path!("api" / "stations" / String / "menu"))
        .and(with_state(state.clone()))
        .then(|c, s| async move { finish(menu(c, s).await) });
    let post = warp::post()
        .and(warp::path!("api" / "stations" / String / "requests"))
        .and(cookie())
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(|c, k, b, s| async move { finish(post_request(c, k, b, s).await) });
    let mine = warp::get()
        .and(warp::path!(
            "api" / "stations" / String / "requests" / "mine"
        ))
        .and(cookie())
        .and(with_state(state.clone()))
        .then(|c, k, s| async move { finish(my_requests(c, k, s).await) });
    let cancel = warp::post()
        .and(warp::path!(
            "api" / "stations" / String / "requests" / i64 / "cancel"
        ))
        .and(cookie())
        .and(with_state(state.clone()))
        .then(|_c: String, id, k, s| async move { finish(cancel_mine(id, k, s).await) });
    let forget = warp::delete()
        .and(warp::path!(
            "api" / "stations" / String / "requests" / i64 / "phone"
        ))
        .and(cookie())
        .and(with_state(state.clone()))
        .then(|_c: String, id, k, s| async move { finish(forget_phone(id, k, s).await) });
    let get_admin_menu = warp::get()
        .and(warp::path!("api" / "admin" / "menu"))
        .and(auth())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .then(|a, p, s| async move { finish(admin_menu(a, p, s).await) });
    let post_admin_menu = warp::post()
        .and(warp::path!("api" / "admin" / "menu"))
        .and(auth())
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(|a, b, s| async move { finish(post_menu(a, b, s).await) });
    let list = warp::get()
        .and(warp::path!("api" / "admin" / "requests"))
        .and(auth())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .then(|a, p, s| async move { finish(admin_requests(a, p, s).await) });
    let sched = warp::post()
        .and(warp::path!("api" / "admin" / "requests" / "schedule"))
        .and(auth())
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(|a, b, s| async move { finish(schedule(a, b, s).await) });
    let ans = warp::post()
        .and(warp::path!("api" / "admin" / "requests" / i64 / String))
        .and(auth())
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(|id, v, a, b, s| async move { finish(answer(id, v, a, b, s).await) });
    let stats = warp::get()
        .and(warp::path!("api" / "stats" / "requests"))
        .and(auth())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state))
        .then(|a, p, s| async move { finish(stats(a, p, s).await) });
    get_menu
        .or(post)
        .unify()
        .or(mine)
        .unify()
        .or(cancel)
        .unify()
        .or(forget)
        .unify()
        .or(get_admin_menu)
        .unify()
        .or(post_admin_menu)
        .unify()
        .or(list)
        .unify()
        .or(sched)
        .unify()
        .or(ans)
        .unify()
        .or(stats)
        .unify()
        .boxed()
}

//! Ingest resources: screenings (film classes); pull sources are in [`super::sources`].
//!
//! - `POST /api/screenings` `{"channel", "film_id", "at"}` (`at` RFC 3339): schedules a film
//!   class on the channel's station. `GET /api/screenings/{id}`: its status and session.
//! - `POST /api/screenings/{id}/start`: start-now (a scheduled or missed screening plays
//!   within a second). `POST /api/screenings/{id}/stop`: a playing screening ends its
//!   session (`stopping`, then `stopped`); a waiting one is `cancelled`. Both answer
//!   `202 Accepted` with the screening; 409 when its status does not allow it.
//!
//! Changes need the key of the station that shows the screening
//! (`Authorization: Bearer <stream key>`), as WHIP.

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::ApiError;
use super::{State, finish, parse_channel, with_state};
use crate::audience::now_ms;
use crate::ids::{FilmId, ScreeningId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewScreening {
    channel: String,
    film_id: FilmId,
    at: String,
}

pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let schedule = warp::post()
        .and(warp::path!("api" / "screenings"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::json())
        .and(with_state(state.clone()))
        .then(
            |auth: Option<String>, body: NewScreening, state: State| async move {
                finish(schedule(auth, body, state).await)
            },
        );
    let control = warp::post()
        .and(warp::path!("api" / "screenings" / i64 / String))
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state.clone()))
        .then(
            |id: i64, action: String, auth: Option<String>, state: State| async move {
                finish(control_screening(ScreeningId(id), &action, auth, state).await)
            },
        );
    let screening = warp::get()
        .and(warp::path!("api" / "screenings" / i64))
        .and(with_state(state))
        .then(|id: i64, state: State| async move {
            finish(
                state
                    .catalog
                    .screening(ScreeningId(id))
                    .await
                    .map(|s| warp::reply::json(&s).into_response())
                    .map_err(|_| ApiError::NotFound(format!("no screening {id}"))),
            )
        });
    schedule.or(screening).unify().or(control).unify().boxed()
}

async fn authorize(
    auth: Option<String>,
    channel: &str,
    state: &State,
) -> Result<crate::ids::ChannelName, ApiError> {
    let channel = parse_channel(channel)?;
    let key = auth
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing stream key: send Authorization: Bearer <stream key>".into(),
            )
        })?;
    state.catalog.authorize_publisher(&channel, key).await?;
    Ok(channel)
}

async fn schedule(
    auth: Option<String>,
    body: NewScreening,
    state: State,
) -> Result<Response, ApiError> {
    let channel = authorize(auth, &body.channel, &state).await?;
    let at = chrono::DateTime::parse_from_rfc3339(&body.at).map_err(|e| {
        ApiError::BadRequest(format!(
            "at {:?}: {e}; expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00",
            body.at
        ))
    })?;
    let s = state
        .catalog
        .schedule_screening(
            channel.as_str(),
            body.film_id,
            at.timestamp_millis(),
            now_ms(),
        )
        .await?;
    let mut r = warp::reply::json(&s).into_response();
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// `POST /api/screenings/{id}/start|stop` with the stream key of the screening's station.
async fn control_screening(
    id: ScreeningId,
    action: &str,
    auth: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    if action != "start" && action != "stop" {
        return Err(ApiError::NotFound(format!(
            "no action {action:?} on screenings: use start or stop"
        )));
    }
    let screening = state
        .catalog
        .screening(id)
        .await
        .map_err(|_| ApiError::NotFound(format!("no screening {id}")))?;
    let channel = crate::ids::ChannelName::for_station(screening.station_id);
    authorize(auth, channel.as_str(), &state).await?;
    let changed = if action == "start" {
        state.catalog.start_screening_now(id, now_ms()).await?
    } else {
        state.catalog.stop_screening(id).await?
    };
    let mut r = warp::reply::json(&changed).into_response();
    *r.status_mut() = StatusCode::ACCEPTED;
    Ok(r)
}

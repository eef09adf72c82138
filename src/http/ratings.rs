//! Residents rate what they watched (评单).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/sessions/{id}/ratings` `{"score": 1-5, "comment"?}` | one rating per device (the `fy_dev` cookie) once the session has ended: 201; 400 bad score or comment, 404 unknown session, 409 still on or rated already |
//! | `GET /api/sessions/{id}/ratings` | `{count, average, rated}` for everyone (`rated`: this device has); an administrator in scope also gets `ratings` with the comments |
//!
//! The figures by station, speaker, topic, film and period are `GET /api/stats/ratings`
//! (`http::admin`).

use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::admin::{self, UnreadBody, unread_body};
use super::error::ApiError;
use super::{State, finish, with_state};
use crate::audience::now_ms;
use crate::device;
use crate::ids::SessionId;

/// The resident's signed device id from the `Cookie` header, if valid.
fn device_of(state: &State, cookie: Option<&str>) -> Option<String> {
    cookie
        .and_then(device::from_cookie)
        .filter(|id| state.device_ids.verify(id))
        .map(str::to_string)
}

/// Reads `{"score", "comment"}` with messages a resident's page can show as they are.
fn parse_rating(body: &[u8]) -> Result<(i64, String), ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid JSON body ({e}); send {{\"score\": 1-5, \"comment\": \"...\"}}"
        ))
    })?;
    let object = value.as_object().ok_or_else(|| {
        ApiError::BadRequest("send a JSON object {\"score\": 1-5, \"comment\": \"...\"}".into())
    })?;
    if let Some(key) = object.keys().find(|k| *k != "score" && *k != "comment") {
        return Err(ApiError::BadRequest(format!(
            "unknown field {key:?}; a rating has score and comment"
        )));
    }
    let score = match object.get("score") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        None => {
            return Err(ApiError::BadRequest(
                "score is missing: give a whole number from 1 to 5".into(),
            ));
        }
        Some(_) => None,
    }
    .ok_or_else(|| {
        ApiError::BadRequest(format!(
            "score {} is not a whole number from 1 to 5",
            object["score"]
        ))
    })?;
    let comment = match object.get("comment") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "comment must be text, not {other}"
            )));
        }
    };
    Ok((score, comment))
}

async fn post_rating(
    id: i64,
    cookie: Option<String>,
    body: UnreadBody,
    state: State,
) -> Result<Response, ApiError> {
    let device = device_of(&state, cookie.as_deref()).ok_or_else(|| {
        ApiError::BadRequest(
            "no device id: open the session's page (it sets the fy_dev cookie) and rate from there"
                .into(),
        )
    })?;
    let (score, comment) = parse_rating(&body.bytes(4 * 1024).await?)?;
    let session = SessionId(id);
    state
        .catalog
        .rate_session(session, &device, score, &comment, now_ms())
        .await?;
    let summary = state.catalog.session_rating(session).await?;
    let mut reply = warp::reply::json(&serde_json::json!({
        "count": summary.count,
        "average": summary.average,
        "rated": true,
    }))
    .into_response();
    *reply.status_mut() = StatusCode::CREATED;
    Ok(reply)
}

async fn get_ratings(
    id: i64,
    cookie: Option<String>,
    authorization: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    let session = SessionId(id);
    let station = state
        .catalog
        .session_summary(session, now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?
        .station_id;
    let summary = state.catalog.session_rating(session).await?;
    let rated = match device_of(&state, cookie.as_deref()) {
        Some(device) => state.catalog.has_rated(session, &device).await?,
        None => false,
    };
    let mut body = serde_json::json!({
        "count": summary.count,
        "average": summary.average,
        "rated": rated,
    });
    if authorization.is_some()
        && let Ok(account) = admin::authenticate(&state, &authorization).await
        && admin::allow_station(&state, &account, station)
            .await
            .is_ok()
    {
        body["ratings"] =
            serde_json::to_value(state.catalog.session_ratings(session).await?).unwrap_or_default();
    }
    let mut reply = warp::reply::json(&body).into_response();
    // Who asks changes the answer (their device, their token).
    reply.headers_mut().insert(
        warp::http::header::VARY,
        HeaderValue::from_static("authorization, cookie"),
    );
    reply.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(reply)
}

/// The rating routes; merged into [`super::routes`].
pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let post = warp::post()
        .and(warp::path!("api" / "sessions" / i64 / "ratings"))
        .and(warp::header::optional::<String>("cookie"))
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(|id, cookie, body, state| async move {
            finish(post_rating(id, cookie, body, state).await)
        });
    let get = warp::get()
        .and(warp::path!("api" / "sessions" / i64 / "ratings"))
        .and(warp::header::optional::<String>("cookie"))
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state))
        .then(|id, cookie, authorization, state| async move {
            finish(get_ratings(id, cookie, authorization, state).await)
        });
    post.or(get).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> String {
        match parse_rating(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn ratings_that_are_not_whole_numbers_or_not_objects_get_a_reason() {
        assert!(message(r#"{"score": "five"}"#).contains("not a whole number from 1 to 5"));
        assert!(message(r#"{"score": 3.5}"#).contains("not a whole number"));
        assert!(message(r#"{}"#).contains("score is missing"));
        assert!(message(r#"[4]"#).contains("JSON object"));
        assert!(message(r#"{"score": 4, "stars": 4}"#).contains("unknown field \"stars\""));
        assert!(message(r#"{"score": 4, "comment": 7}"#).contains("comment must be text"));
        assert!(message("not json").contains("invalid JSON body"));
        assert_eq!(
            parse_rating(r#"{"score": 4, "comment": "讲得好"}"#.as_bytes()).unwrap(),
            (4, "讲得好".to_string())
        );
        assert_eq!(
            parse_rating(br#"{"score": 0}"#).unwrap().0,
            0,
            "range is the catalog's"
        );
    }
}

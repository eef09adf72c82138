//! Live interaction over HTTP (see [`crate::interaction`]): residents post with their
//! signed device id (the `fy_dev` cookie) and a nickname; watchers follow a channel over
//! Server-Sent Events (one long GET on the same port, through TLS and plain HTTP proxies);
//! the host (the station's stream key, or an administrator's token in scope) moderates.
//! Errors are JSON `{"error": reason}` (429 adds `retry_after_s` and `Retry-After`).
//!
//! In a cluster the room of a channel is on its origin node (see [`crate::interaction`]):
//! another node forwards posts, likes, check-ins and host actions there (the host's
//! token checked here first, then again there) and serves its watchers from a mirror of
//! the origin's stream. A member ends a stream of a channel live nowhere after 20 s, so the
//! page's reconnect finds the node its next session goes live on.
//!
//! | route | who |
//! |---|---|
//! | `GET /api/interaction/{c}/events` | anyone: SSE, first `snapshot` (last messages, pinned, likes, check-ins, `ev`), then a `batch` every `[interaction] batch_ms` with news (events with `ev` numbers; skip those up to the snapshot's) |
//! | `POST /api/interaction/{c}/messages` `{nickname, text, kind: chat or question}` -> 201 `{id, state}` | a device (cookie); `state` `held` when a listed word held it |
//! | `POST /api/interaction/{c}/likes` `{count}` -> `{likes}` | a device |
//! | `POST /api/interaction/{c}/checkin` `{nickname}` -> `{new, checkins}` | a device |
//! | `GET /api/interaction/{c}/host` -> questions in order, held, recent, pinned, counts | host |
//! | `POST /api/interaction/{c}/messages/{id}/answer`, `/unanswer`, `/approve`, `/pin`, `/mute` | host |
//! | `DELETE /api/interaction/{c}/messages/{id}`, `DELETE /api/interaction/{c}/pin` | host |
//! | `GET /api/interaction/sessions/{id}/messages` | anyone: a session's visible messages, for its replay |

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::ApiError;
use super::{State, parse_channel, with_state};
use crate::audience::now_ms;
use crate::device;
use crate::ids::{ChannelName, SessionId};
use crate::interaction::{FORWARDED_HEADER, InteractionError, Kind, Moderation};

/// Largest request body here.
const BODY_LIMIT: u64 = 8 * 1024;
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What a browser waits before reconnecting a dropped stream.
const RECONNECT: Duration = Duration::from_secs(2);
/// How long a cluster member keeps a watcher of a channel that is live nowhere.
const IDLE_MEMBER_STREAM: Duration = Duration::from_secs(20);
/// How long a request forwarded to the channel's origin may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of `POST .../messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    nickname: String,
    text: String,
    #[serde(default)]
    kind: Option<String>,
}

/// Body of `POST .../likes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LikeBody {
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// Body of `POST .../checkin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInBody {
    nickname: String,
}

/// Every interaction route; merged into [`super::routes`].
pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let cookie = warp::header::optional::<String>("cookie");
    let auth = warp::header::optional::<String>("authorization");
    let ctx = warp::header::optional::<String>(FORWARDED_HEADER)
        .and(warp::path::full())
        .map(|f: Option<String>, p: warp::path::FullPath| Ctx {
            forwarded: f.is_some(),
            path: p.as_str().to_string(),
        });
    let body = warp::body::content_length_limit(BODY_LIMIT).and(warp::body::bytes());
    let events_route = warp::get()
        .and(warp::path!("api" / "interaction" / String / "events"))
        .and(ctx)
        .and(with_state(state.clone()))
        .then(|c: String, x: Ctx, s: State| async move { reply(events(c, x, s).await) });
    let post_route = warp::post()
        .and(warp::path!("api" / "interaction" / String / "messages"))
        .and(ctx)
        .and(cookie)
        .and(body)
        .and(with_state(state.clone()))
        .then(
            |c: String, x: Ctx, k: Option<String>, b: Bytes, s: State| async move {
                reply(post(c, x, k, b, s).await)
            },
        );
    let like_route = warp::post()
        .and(warp::path!("api" / "interaction" / String / "likes"))
        .and(ctx)
        .and(cookie)
        .and(body)
        .and(with_state(state.clone()))
        .then(
            |c: String, x: Ctx, k: Option<String>, b: Bytes, s: State| async move {
                reply(like(c, x, k, b, s).await)
            },
        );
    let checkin_route = warp::post()
        .and(warp::path!("api" / "interaction" / String / "checkin"))
        .and(ctx)
        .and(cookie)
        .and(body)
        .and(with_state(state.clone()))
        .then(
            |c: String, x: Ctx, k: Option<String>, b: Bytes, s: State| async move {
                reply(check_in(c, x, k, b, s).await)
            },
        );
    let host_route = warp::get()
        .and(warp::path!("api" / "interaction" / String / "host"))
        .and(ctx)
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |c: String, x: Ctx, a: Option<String>, s: State| async move {
                reply(host_view(c, x, a, s).await)
            },
        );
    let moderate_route = warp::post()
        .and(warp::path!(
            "api" / "interaction" / String / "messages" / i64 / String
        ))
        .and(ctx)
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |c: String, id: i64, action: String, x: Ctx, a: Option<String>, s: State| async move {
                let action = match action.as_str() {
                    "answer" => Moderation::Answer(true),
                    "unanswer" => Moderation::Answer(false),
                    "approve" => Moderation::Approve,
                    "pin" => Moderation::Pin,
                    "mute" => Moderation::Mute,
                    other => {
                        return fail(ApiError::NotFound(format!(
                            "no action {other:?}; use answer, unanswer, approve, pin or mute"
                        )));
                    }
                };
                reply(moderate(c, Some(id), action, x, a, s).await)
            },
        );
    let delete_route = warp::delete()
        .and(warp::path!(
            "api" / "interaction" / String / "messages" / i64
        ))
        .and(ctx)
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |c: String, id: i64, x: Ctx, a: Option<String>, s: State| async move {
                reply(moderate(c, Some(id), Moderation::Delete, x, a, s).await)
            },
        );
    let unpin_route = warp::delete()
        .and(warp::path!("api" / "interaction" / String / "pin"))
        .and(ctx)
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |c: String, x: Ctx, a: Option<String>, s: State| async move {
                reply(moderate(c, None, Moderation::Delete, x, a, s).await)
            },
        );
    let replay_route = warp::get()
        .and(warp::path!(
            "api" / "interaction" / "sessions" / i64 / "messages"
        ))
        .and(with_state(state))
        .then(|id: i64, s: State| async move {
            reply(
                async {
                    let messages = s.catalog.session_messages(SessionId(id), 5000).await?;
                    let out: Vec<_> = messages
                        .into_iter()
                        .map(|m| {
                            serde_json::json!({
                                "id": m.seq, "kind": m.kind, "nickname": m.nickname,
                                "text": m.body, "at": m.created_at, "answered": m.answered,
                            })
                        })
                        .collect();
                    Ok(warp::reply::json(&out).into_response())
                }
                .await,
            )
        });
    replay_route
        .or(events_route)
        .unify()
        .or(post_route)
        .unify()
        .or(like_route)
        .unify()
        .or(checkin_route)
        .unify()
        .or(host_route)
        .unify()
        .or(moderate_route)
        .unify()
        .or(delete_route)
        .unify()
        .or(unpin_route)
        .unify()
        .boxed()
}

impl From<InteractionError> for ApiError {
    fn from(err: InteractionError) -> Self {
        match err {
            InteractionError::Invalid(why) => ApiError::BadRequest(why),
            InteractionError::NotLive => ApiError::Conflict(err.to_string()),
            InteractionError::Muted => ApiError::Forbidden(err.to_string()),
            InteractionError::TooFast { retry_ms } => {
                ApiError::TooManyRequests(err.to_string(), retry_ms.div_ceil(1000).max(1))
            }
            InteractionError::NotFound(why) => ApiError::NotFound(why),
            InteractionError::Conflict(why) => ApiError::Conflict(why),
            InteractionError::Busy | InteractionError::Upstream(_) => {
                ApiError::Busy(err.to_string(), 1)
            }
            InteractionError::Catalog(e) => e.into(),
        }
    }
}

fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(fail)
}

/// An error as JSON, with the status and `Retry-After` [`ApiError`] gives it.
fn fail(err: ApiError) -> Response {
    let status = err.status();
    let retry = match &err {
        ApiError::TooManyRequests(_, s) | ApiError::Busy(_, s) => Some(*s),
        _ => None,
    };
    if let ApiError::Internal(detail) = &err {
        tracing::error!(%detail, "internal error answering an interaction request");
    }
    let mut body = serde_json::json!({ "error": err.to_string() });
    if let Some(s) = retry {
        body["retry_after_s"] = s.into();
    }
    let mut r = warp::reply::json(&body).into_response();
    *r.status_mut() = status;
    if let Some(s) = retry
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be JSON like the API describes: {e}"))
    })
}

/// The key of the request's device: a hash of its verified `fy_dev` id (as WHEP counts it).
fn device_key(state: &State, cookie: &Option<String>) -> Result<String, ApiError> {
    let id = cookie
        .as_deref()
        .and_then(device::from_cookie)
        .filter(|id| state.device_ids.verify(id))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "no valid device id: open the watch page first (it gives this browser one), then try again"
                    .into(),
            )
        })?;
    Ok(hex::encode(&Sha256::digest(id.as_bytes())[..16]))
}

/// What a request says about where it came from.
#[derive(Debug, Clone)]
struct Ctx {
    /// Another node forwarded it (see [`FORWARDED_HEADER`]).
    forwarded: bool,
    /// Its path, to forward it by.
    path: String,
}

/// Where a channel's room is.
enum Where {
    /// Here: the channel and its live session, if any.
    Here(ChannelName, Option<SessionId>),
    /// On another node of the cluster, the channel's origin (its `node_url`).
    There(ChannelName, String),
}

/// Where `channel`'s room is: here when this server is single, or the channel's origin,
/// or live nowhere; on the origin node otherwise. 404 for a channel that does not exist.
/// A forwarded request is never sent on: a node that is not the origin (any more)
/// answers it as not live.
async fn locate(state: &State, channel: &str, ctx: &Ctx) -> Result<Where, ApiError> {
    let channel = parse_channel(channel)?;
    let live = state
        .relay
        .board()
        .get(&channel)
        .filter(|s| s.live)
        .and_then(|s| s.session_id);
    if let Some(cluster) = &state.cluster {
        // An edge feeds the origin's session: its room is the origin's.
        let origin_here = live.is_some_and(|s| !cluster.is_edge_session(s));
        if !origin_here {
            if ctx.forwarded {
                state.catalog.channel_owner(&channel).await?;
                return Ok(Where::Here(channel, None));
            }
            if let Some(origin) = state.catalog.channel_origin(&channel).await? {
                return Ok(Where::There(channel, origin.node_url));
            }
            state.catalog.channel_owner(&channel).await?;
            return Ok(Where::Here(channel, None));
        }
    }
    if live.is_none() {
        state.catalog.channel_owner(&channel).await?;
    }
    Ok(Where::Here(channel, live))
}

/// Sends a request on to the channel's origin node and its answer back as it came.
async fn forward(
    state: &State,
    origin: &str,
    method: warp::http::Method,
    ctx: &Ctx,
    headers: &[(&str, &Option<String>)],
    body: Bytes,
) -> Result<Response, ApiError> {
    state
        .interaction
        .counters
        .forwarded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut req = state
        .interaction
        .http()
        .request(method, format!("{origin}{}", ctx.path))
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED_HEADER, "1");
    for (name, value) in headers {
        if let Some(v) = value {
            req = req.header(*name, v);
        }
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json").body(body);
    }
    let r = req.send().await.map_err(|e| {
        ApiError::Busy(
            format!("the node this channel is live on ({origin}) did not answer ({e}); try again in a moment"),
            1,
        )
    })?;
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers: Vec<(&str, HeaderValue)> = ["content-type", "retry-after", "cache-control"]
        .into_iter()
        .filter_map(|name| {
            let v = r.headers().get(name)?;
            Some((name, HeaderValue::from_bytes(v.as_bytes()).ok()?))
        })
        .collect();
    let body = r.bytes().await.map_err(|e| {
        ApiError::Busy(
            format!(
                "the node this channel is live on ({origin}) broke off its answer ({e}); try again"
            ),
            1,
        )
    })?;
    let mut out = warp::reply::with_status(body.to_vec(), status).into_response();
    for (name, v) in headers {
        out.headers_mut().insert(name, v);
    }
    Ok(out)
}

fn created(body: serde_json::Value) -> Response {
    let mut r = warp::reply::json(&body).into_response();
    *r.status_mut() = StatusCode::CREATED;
    r
}

async fn post(
    channel: String,
    ctx: Ctx,
    cookie: Option<String>,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let device = device_key(&state, &cookie)?;
    let b: PostBody = json_body(&body)?;
    let kind = match b.kind.as_deref() {
        None | Some("") => Kind::Chat,
        Some(k) => Kind::parse(k)
            .ok_or_else(|| ApiError::BadRequest(format!("kind {k:?} is not chat or question")))?,
    };
    let (channel, session) = match locate(&state, &channel, &ctx).await? {
        Where::Here(c, s) => (c, s),
        Where::There(_, origin) => {
            let h = [("cookie", &cookie)];
            return forward(&state, &origin, warp::http::Method::POST, &ctx, &h, body).await;
        }
    };
    let posted = state
        .interaction
        .post(
            &channel,
            session,
            &device,
            &b.nickname,
            &b.text,
            kind,
            Instant::now(),
            now_ms(),
        )
        .await?;
    Ok(created(serde_json::json!(posted)))
}

async fn like(
    channel: String,
    ctx: Ctx,
    cookie: Option<String>,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let device = device_key(&state, &cookie)?;
    let b: LikeBody = if body.is_empty() {
        LikeBody { count: 1 }
    } else {
        json_body(&body)?
    };
    let (channel, session) = match locate(&state, &channel, &ctx).await? {
        Where::Here(c, s) => (c, s),
        Where::There(_, origin) => {
            let h = [("cookie", &cookie)];
            return forward(&state, &origin, warp::http::Method::POST, &ctx, &h, body).await;
        }
    };
    let likes = state
        .interaction
        .like(&channel, session, &device, b.count, Instant::now())
        .await?;
    Ok(warp::reply::json(&serde_json::json!({ "likes": likes })).into_response())
}

async fn check_in(
    channel: String,
    ctx: Ctx,
    cookie: Option<String>,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let device = device_key(&state, &cookie)?;
    let b: CheckInBody = json_body(&body)?;
    let (channel, session) = match locate(&state, &channel, &ctx).await? {
        Where::Here(c, s) => (c, s),
        Where::There(_, origin) => {
            let h = [("cookie", &cookie)];
            return forward(&state, &origin, warp::http::Method::POST, &ctx, &h, body).await;
        }
    };
    let (new, checkins) = state
        .interaction
        .check_in(&channel, session, &device, &b.nickname, now_ms())
        .await?;
    Ok(warp::reply::json(&serde_json::json!({ "new": new, "checkins": checkins })).into_response())
}

/// The host: the channel's station key, or an administrator whose scope covers it.
async fn authorize_host(
    state: &State,
    channel: &ChannelName,
    authorization: &Option<String>,
) -> Result<(), ApiError> {
    let token = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "send Authorization: Bearer <stream key> (the station's) or Bearer <token> (an administrator's)"
                    .into(),
            )
        })?;
    let owner = state.catalog.channel_owner(channel).await?;
    if state
        .catalog
        .authorize_publisher(channel, token)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let account = state
        .catalog
        .account_for_token(token, now_ms())
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "neither this station's stream key nor a valid login (log in again: POST /api/login)"
                    .into(),
            )
        })?;
    super::admin::allow_station(state, &account, owner.station_id).await
}

async fn host_view(
    channel: String,
    ctx: Ctx,
    authorization: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    let (channel, session) = match locate(&state, &channel, &ctx).await? {
        Where::Here(c, s) => (c, s),
        Where::There(channel, origin) => {
            authorize_host(&state, &channel, &authorization).await?;
            let h = [("authorization", &authorization)];
            let get = warp::http::Method::GET;
            return forward(&state, &origin, get, &ctx, &h, Bytes::new()).await;
        }
    };
    authorize_host(&state, &channel, &authorization).await?;
    let view = state.interaction.host_view(&channel, session).await?;
    let mut r = warp::reply::json(&view).into_response();
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A host action; `id` none with `Delete` takes the pin down.
async fn moderate(
    channel: String,
    id: Option<i64>,
    action: Moderation,
    ctx: Ctx,
    authorization: Option<String>,
    state: State,
) -> Result<Response, ApiError> {
    let (channel, session) = match locate(&state, &channel, &ctx).await? {
        Where::Here(c, s) => (c, s),
        Where::There(channel, origin) => {
            authorize_host(&state, &channel, &authorization).await?;
            let method = match action {
                Moderation::Delete => warp::http::Method::DELETE,
                _ => warp::http::Method::POST,
            };
            let h = [("authorization", &authorization)];
            return forward(&state, &origin, method, &ctx, &h, Bytes::new()).await;
        }
    };
    authorize_host(&state, &channel, &authorization).await?;
    match id {
        Some(id) => {
            state
                .interaction
                .moderate(&channel, session, id, action)
                .await?
        }
        None => state.interaction.unpin(&channel, session).await?,
    }
    Ok(warp::reply::json(&serde_json::json!({ "ok": true })).into_response())
}

/// `GET .../events`: the snapshot, then the channel's batches as they come.
async fn events(channel: String, ctx: Ctx, state: State) -> Result<Response, ApiError> {
    let (snapshot, rx, until) = match locate(&state, &channel, &ctx).await? {
        Where::Here(channel, session) => {
            let (snapshot, rx) = state.interaction.watch(&channel, session).await?;
            // A member's watcher of a channel live nowhere is let go after a while: the
            // next session may go live on another node, which its reconnect finds.
            let until = (state.cluster.is_some() && session.is_none())
                .then(|| Box::pin(tokio::time::sleep(IDLE_MEMBER_STREAM)));
            (snapshot, rx, until)
        }
        Where::There(channel, origin) => {
            let (snapshot, rx) = state.interaction.watch_remote(&channel, &origin).await?;
            (snapshot, rx, None)
        }
    };
    let first = serde_json::to_string(&snapshot)
        .map_err(|e| ApiError::Internal(format!("snapshot: {e}")))?;
    let stream = Batches {
        first: Some(
            warp::sse::Event::default()
                .event("snapshot")
                .retry(RECONNECT)
                .data(first),
        ),
        rx,
        until,
    };
    let stream = warp::sse::keep_alive().interval(KEEP_ALIVE).stream(stream);
    let mut r = warp::sse::reply(stream).into_response();
    let h = r.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    // nginx and similar proxies pass the stream on as it comes instead of buffering it.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// A watcher's events: its snapshot, then each batch (shared text, one `Event` each).
struct Batches {
    first: Option<warp::sse::Event>,
    rx: mpsc::Receiver<Arc<str>>,
    /// When the stream ends by itself (the page then reconnects).
    until: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl futures::Stream for Batches {
    type Item = Result<warp::sse::Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if let Some(until) = self.until.as_mut()
            && until.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|batch| {
            batch.map(|text| Ok(warp::sse::Event::default().event("batch").data(&*text)))
        })
    }
}

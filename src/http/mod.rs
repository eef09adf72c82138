//! HTTP: WHIP (RFC 9725) and WHEP resources, the JSON API and the pages, as warp filters.
//!
//! | route | what |
//! |---|---|
//! | `POST /whip/{channel}` | publish (SDP offer, `Authorization: Bearer <stream key>`) |
//! | `DELETE /whip/{channel}/{id}` | stop publishing |
//! | `POST /whep/{channel}` | watch (SDP offer); in a cluster, `307` to a node with room when this one is full, and `?edge={node}` with `x-feiyan-cluster` is another node's signed pull (see [`crate::cluster`]) |
//! | `DELETE /whep/{channel}/{id}` | stop watching |
//! | `PATCH .../{id}` | 405: trickle ICE and ICE restart are not supported (RFC 9725 §4.3.1) |
//! | `GET /api/live`, `/api/channels/{c}`, `/api/sessions/{id}`, `/healthz` | API; viewer figures of a session only with an administrator's token in scope |
//! | `GET /`, `/watch/{c}`, `/tv/{c}`, `/publish/{c}` | pages; their scripts and styles under `/assets/`, see [`pages`] |
//! | `GET /stations`, `/s/{c}`, `/e/{id}`, `/e/{id}/poster`, `/tv` | residents' pages, see [`residents`]; other page paths get its 404 page |
//! | `GET /hls/{c}/index.m3u8`, `/hls/{c}/ts.m3u8` | live HLS (see [`crate::hls::routes`]) |
//! | `/api/login`, `/api/admin/...`, `/api/stats/...` | administrators, see [`admin`] |
//! | `/api/sources...` | pull sources, for their station or an administrator, see [`sources`] |
//! | `/api/sessions/{id}/ratings` | residents rate an ended session (评单), see [`ratings`] |
//! | `/api/items/...`, `/api/lectures`, `/api/programme`, `/api/directory`, `/api/stations/{c}/page`, `/s/{c}.ics`, `/c/{id}.ics`, `/e/{id}.ics` | the programme and calendars, see [`portal`] |
//! | `/api/interaction/...` | live chat, questions, likes, check-ins and their host, see [`interaction`] |
//!
//! Security headers (CSP, nosniff, ...) go on every answer and CORS only on WHIP/WHEP and
//! the public reads: see [`security`].

pub mod admin;
mod cluster;
pub mod csv;
pub mod error;
pub mod files;
mod ical;
mod ingest;
mod interaction;
pub mod pages;
mod portal;
pub mod rate;
mod ratings;
mod replay;
mod requests;
mod residents;
pub mod security;
pub mod serve;
mod sources;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warp::http::{HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::audience::now_ms;
use crate::catalog::{Catalog, SessionKind, SessionSource, rfc3339};
use crate::device::{DeviceIds, Terminal};
use crate::ids::{ChannelName, SessionId};
use crate::relay::{RelayHandle, ViewerInfo};
use error::{ApiError, recover, text};
pub use security::ResponsePolicy;

/// What every handler shares.
pub struct AppState {
    /// The catalog.
    pub catalog: Catalog,
    /// The relay engine.
    pub relay: RelayHandle,
    /// Largest accepted SDP body.
    pub max_sdp_bytes: u64,
    /// Per-process salt for hashing client addresses (never stored in clear).
    pub salt: [u8; 16],
    /// Live HLS (`/hls/...`).
    pub hls: Arc<crate::hls::Hls>,
    /// Pull source statuses and the `[ingest]` rules for adding sources (`/api/sources`).
    pub pull: Arc<crate::ingest::pull::PullBoard>,
    /// What the RTMP door turned away (`feiyan_rtmp_*_total` in `/metrics`).
    pub rtmp_counters: Arc<crate::ingest::rtmp::RtmpCounters>,
    /// Token buckets per client address on `POST /whep` (`[http] whep_posts_per_sec`,
    /// `whep_post_burst`).
    pub whep_rate: rate::RateLimiter,
    /// Slows down password guessing on `POST /api/login`.
    pub login_throttle: crate::catalog::LoginThrottle,
    /// The bounded pool login password checks run on (`[http] login_checks`).
    pub password_checks: crate::catalog::PasswordChecks,
    /// Whether the relay answers as ICE-lite (`[webrtc] ice_lite`), told to the watch page
    /// in `/api/channels/{channel}`: it then posts its offer without waiting for ICE
    /// gathering, since the server learns the viewer's address from its checks.
    pub ice_lite: bool,
    /// Issues and checks the signed device ids (`fy_dev`): the player pages give one to a
    /// browser without a valid one, WHEP (and HLS) count a `vid` only when it verifies.
    pub device_ids: Arc<DeviceIds>,
    /// Whether the listener speaks HTTPS (`[http] tls` on): the device cookie is then
    /// `Secure`.
    pub https: bool,
    /// Where `/assets/vendor/hls.min.js` is read from (`[http] vendor_dir`).
    pub vendor_dir: PathBuf,
    /// Replays (`/replay/...`) and their viewers.
    pub replays: Arc<crate::recording::replays::Replays>,
    /// Open HTTP connections and what the HTTP limits turned away (`feiyan_http_*` in
    /// `/metrics`), shared with [`serve::serve`].
    pub connections: Arc<serve::Connections>,
    /// Live chat, questions, likes and check-ins (`/api/interaction/...`).
    pub interaction: Arc<crate::interaction::Interaction>,
    /// Cluster state when this server is a member (`[cluster] secret` and PostgreSQL).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

pub(crate) type State = Arc<AppState>;

fn with_state(state: State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Query of `POST /whip/{channel}`.
#[derive(Debug, Deserialize)]
pub struct WhipQuery {
    /// Session title.
    pub title: Option<String>,
    /// `lecture` (default), `film_class` or `other`.
    pub kind: Option<String>,
}

/// Query of `POST /whep/{channel}`.
#[derive(Debug, Deserialize)]
pub struct WhepQuery {
    /// The browser's signed device id (the `fy_dev` cookie), for unique-viewer counts;
    /// one that does not verify counts as none.
    pub vid: Option<String>,
    /// Which rendition to receive (`source`, or a name from the channel's ladder, listed
    /// in `/api/channels/{channel}` as `qualities`); the source when absent.
    pub quality: Option<String>,
    /// Set by another cluster node's edge pull (its node id); such a request must carry
    /// a valid `x-feiyan-cluster` signature (see [`crate::cluster::sign`]).
    pub edge: Option<i64>,
    /// An edge pull's video codec label (`h264`, the default, or `vp8`): an edge holds
    /// one pull per rendition and codec its viewers use, told apart by `quality` and this.
    pub codec: Option<String>,
}

/// All routes with error recovery, security and CORS headers, for plain HTTP and a
/// single node (see [`routes_with_policy`]).
pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    routes_with_policy(state, ResponsePolicy::new(&[], false))
}

/// All routes, answering with `policy`'s headers: the hook for HTTPS
/// (`ResponsePolicy::new(.., true)` adds HSTS) and for a cluster's node origins in the
/// pages' `connect-src`.
pub fn routes_with_policy(
    state: State,
    policy: ResponsePolicy,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let limit = state.max_sdp_bytes;

    let whip_post = warp::post()
        .and(warp::path!("whip" / String))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<WhipQuery>())
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and(with_state(state.clone()))
        .then(whip_post);
    let whep_post = warp::post()
        .and(warp::path!("whep" / String))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("user-agent"))
        .and(warp::query::<WhepQuery>())
        .and(warp::header::optional::<String>(
            crate::cluster::sign::HEADER,
        ))
        .and(serve::client_addr())
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and(with_state(state.clone()))
        .then(whep_post);
    let delete = warp::delete()
        .and(warp::path!(String / String / String))
        .and(with_state(state.clone()))
        .then(delete_resource);
    let patch = warp::patch()
        .and(warp::path!(String / String / String))
        .map(|_: String, _: String, _: String| {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "trickle ICE and ICE restart are not supported: send the complete offer in the POST\n"
                    .into(),
            );
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("DELETE, OPTIONS"));
            r
        });
    let options = warp::options()
        .and(warp::path::full())
        .map(|path: warp::path::FullPath| {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let p = path.as_str();
            if (p.starts_with("/whip/") || p.starts_with("/whep/")) && p.matches('/').count() == 2 {
                r.headers_mut()
                    .insert("accept-post", HeaderValue::from_static("application/sdp"));
            }
            r
        });

    let live = warp::get()
        .and(warp::path!("api" / "live"))
        .and(with_state(state.clone()))
        .then(api_live);
    let channel = warp::get()
        .and(warp::path!("api" / "channels" / String))
        .and(with_state(state.clone()))
        .then(api_channel);
    let session = warp::get()
        .and(warp::path!("api" / "sessions" / i64))
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state.clone()))
        .then(api_session);
    let metrics = warp::get()
        .and(warp::path!("metrics"))
        .and(with_state(state.clone()))
        .map(|state: State| metrics(&state));
    let health = warp::get()
        .and(warp::path!("healthz"))
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());

    let media = whip_post
        .or(whep_post)
        .unify()
        .or(ratings::routes(state.clone()))
        .unify()
        .or(requests::routes(state.clone()))
        .unify()
        .boxed();
    // Before `delete`, which takes every `DELETE /{kind}/{channel}/{id}`.
    let routes = media
        .or(interaction::routes(state.clone()))
        .unify()
        .or(sources::routes(state.clone()))
        .unify()
        // Before `patch` (which answers every `PATCH /{a}/{b}/{c}` with 405) for
        // `PATCH /api/items/{id}`, and before the pages: its `.ics` routes take only names
        // ending in `.ics`, which the pages' `/s/{channel}` and `/e/{id}` would answer 404.
        .or(portal::routes(state.clone()))
        .unify()
        .or(delete)
        .unify()
        .or(patch)
        .unify()
        .or(options)
        .unify()
        .or(live)
        .unify()
        .or(channel)
        .unify()
        .or(session)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .boxed()
        .or(admin::routes(state.clone()))
        .unify()
        .or(cluster::routes(state.clone()))
        .unify()
        .or(replay::page_elsewhere(state.clone()))
        .unify()
        .or(pages::routes(state.clone()))
        .unify()
        .or(ingest::routes(state.clone()))
        .unify()
        .or(crate::hls::routes::routes(
            state.hls.clone(),
            serve::client_addr(),
        ))
        .unify()
        .or(replay::routes(state.clone()))
        .unify()
        .or(residents::routes(state.clone()))
        .unify()
        // Last: a browser's page request nobody answered gets the 404 page.
        .or(residents::fallback())
        .unify()
        .recover(recover)
        .unify();
    let policy = Arc::new(policy);
    warp::method().and(warp::path::full()).and(routes).map(
        move |method: Method, path: warp::path::FullPath, mut response: Response| {
            policy.apply(&method, path.as_str(), response.headers_mut());
            response
        },
    )
}

fn parse_channel(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no channel {name:?} (channel names are lowercase letters, digits, - and _)"
        ))
    })
}

fn check_sdp_body(content_type: Option<String>, body: &Bytes) -> Result<String, ApiError> {
    let ct = content_type.unwrap_or_default();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/sdp" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/sdp (got {:?})",
            if ct.is_empty() {
                "nothing"
            } else {
                ct.as_str()
            }
        )));
    }
    let sdp = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("bad SDP offer: the body is not UTF-8 text".into()))?;
    if sdp.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "bad SDP offer: the body is empty".into(),
        ));
    }
    Ok(sdp.to_string())
}

fn created(location: String, answer: String) -> Response {
    let mut r = answer.into_response();
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert("location", v);
    }
    r
}

fn finish(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.into_response())
}

async fn whip_post(
    channel: String,
    content_type: Option<String>,
    authorization: Option<String>,
    query: WhipQuery,
    body: Bytes,
    state: State,
) -> Response {
    finish(whip_post_inner(channel, content_type, authorization, query, body, state).await)
}

async fn whip_post_inner(
    channel: String,
    content_type: Option<String>,
    authorization: Option<String>,
    query: WhipQuery,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let channel = parse_channel(&channel)?;
    let token = authorization
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing stream key: send Authorization: Bearer <stream key>".into(),
            )
        })?;
    let offer = check_sdp_body(content_type, &body)?;
    let kind = match query.kind.as_deref() {
        None | Some("") => SessionKind::Lecture,
        Some(k) => SessionKind::parse(k).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "kind {k:?} is not one of lecture, film_class, other"
            ))
        })?,
    };
    let title = query.title.unwrap_or_default();
    if title.chars().count() > 200 {
        return Err(ApiError::BadRequest(
            "title is longer than 200 characters".into(),
        ));
    }
    let owner = state.catalog.authorize_publisher(&channel, token).await?;
    if state.relay.board().get(&channel).is_some_and(|s| s.live) {
        return Err(ApiError::Conflict(format!(
            "channel {channel} already has a live publisher; stop it first"
        )));
    }
    // One origin per channel: a publisher live on another node keeps it.
    state.catalog.check_not_origin_elsewhere(&channel).await?;
    let started = now_ms();
    // A publisher back within the reconnect grace continues its session.
    let resumed = state.relay.resume(channel.clone()).await?;
    let session = match resumed {
        Some(session) => session,
        None => {
            state
                .catalog
                .open_session(
                    &channel,
                    owner.station_id,
                    kind,
                    &title,
                    SessionSource::Whip,
                    started,
                )
                .await?
        }
    };
    let claimed = state.catalog.claim_channel(&channel, session).await;
    let published = match claimed {
        Ok(()) => {
            state
                .relay
                .publish(channel.clone(), offer, session, title, started)
                .await
        }
        Err(conflict) => {
            let _ = match resumed {
                Some(_) => state.catalog.close_session(session, started).await,
                None => state.catalog.discard_session(session, started).await,
            };
            return Err(conflict.into());
        }
    };
    match published {
        Ok(accepted) => Ok(created(
            format!("/whip/{channel}/{}", accepted.resource),
            accepted.answer,
        )),
        Err(err) => {
            // The attempt never went live: a row opened for it goes (no 场次); a resumed
            // session ends as it would have when its grace ran out.
            let _ = match resumed {
                Some(_) => state.catalog.close_session(session, started).await,
                None => state.catalog.discard_session(session, started).await,
            };
            Err(err.into())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn whep_post(
    channel: String,
    content_type: Option<String>,
    user_agent: Option<String>,
    query: WhepQuery,
    signature: Option<String>,
    remote: Option<SocketAddr>,
    body: Bytes,
    state: State,
) -> Response {
    if let Some(edge) = query.edge {
        return finish(
            cluster::edge_pull(channel, content_type, query, edge, signature, body, state).await,
        );
    }
    finish(
        async {
            // First, before anything else is looked at: every request spends a token.
            if let Some(addr) = remote
                && let Err(seconds) = state.whep_rate.take(addr.ip(), std::time::Instant::now())
            {
                return Err(ApiError::TooManyRequests(
                    format!(
                        "too many requests to watch from your address (more than {} at once or {} a second); try again in {seconds} s",
                        state.whep_rate.burst(),
                        state.whep_rate.rate(),
                    ),
                    seconds,
                ));
            }
            let channel = parse_channel(&channel)?;
            let offer = check_sdp_body(content_type, &body)?;
            // What a 307 to another node repeats.
            let forwarded_query: Vec<(&str, String)> = [("vid", &query.vid), ("quality", &query.quality)]
                .into_iter()
                .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
                .collect();
            let terminal = Terminal::from_user_agent(user_agent.as_deref().unwrap_or("")).as_str();
            let client = remote.map(|a| a.ip().to_string()).unwrap_or_default();
            let mut hasher = Sha256::new();
            hasher.update(state.salt);
            hasher.update(client.as_bytes());
            let client_hash = hex::encode(&hasher.finalize()[..16]);
            // A signed device id is the viewer across sessions; anything else (none, forged,
            // another server's) counts once per session.
            let viewer_key = match query.vid.filter(|v| state.device_ids.verify(v)) {
                Some(vid) => hex::encode(&Sha256::digest(vid.as_bytes())[..16]),
                None => uuid::Uuid::new_v4().simple().to_string(),
            };
            let viewer = ViewerInfo {
                terminal,
                viewer_key,
                client_hash,
                quality: query.quality,
                client: remote.map(|a| rate::client_group(a.ip())),
                edge_pull: false,
            };
            if let Some(cluster) = &state.cluster {
                // At capacity: a node with room takes the viewer (RFC 9725 clients follow
                // a 307 with the same offer).
                if cluster.at_capacity()
                    && let Some(node) = cluster.node_with_room().await.map_err(cluster::cluster_error)?
                {
                    cluster
                        .counters
                        .redirected
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let target = format!("{}/whep/{channel}", node.node_url);
                    let mut target = reqwest::Url::parse(&target).map_err(|e| {
                        ApiError::Internal(format!("node URL {:?}: {e}", node.node_url))
                    })?;
                    for (name, value) in &forwarded_query {
                        target.query_pairs_mut().append_pair(name, value);
                    }
                    return Ok(cluster::redirect(target.as_str()));
                }
                // The publisher is on another node: this one serves as its edge.
                cluster.ensure_edge(&channel).await.map_err(cluster::cluster_error)?;
            }
            let accepted = state.relay.view(channel.clone(), offer, viewer).await?;
            Ok(created(
                format!("/whep/{channel}/{}", accepted.resource),
                accepted.answer,
            ))
        }
        .await,
    )
}

async fn delete_resource(
    kind: String,
    channel: String,
    resource: String,
    state: State,
) -> Response {
    finish(
        async {
            let publisher = match kind.as_str() {
                "whip" => true,
                "whep" => false,
                _ => return Err(ApiError::NotFound("not found".into())),
            };
            let channel = parse_channel(&channel)?;
            if let Some(cluster) = &state.cluster
                && !publisher
            {
                cluster.resource_ended(&channel, &resource);
            }
            state.relay.delete(channel, resource, publisher).await?;
            Ok(text(StatusCode::OK, "session ended\n".into()))
        }
        .await,
    )
}

/// Prometheus text exposition of the relay's counters and live gauges.
fn metrics(state: &AppState) -> Response {
    use std::fmt::Write;
    let board = state.relay.board();
    let mut out = String::new();
    for (name, help, value) in board.counters.snapshot() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    for (name, help, value) in state.rtmp_counters.snapshot() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    for (name, help, kind, value) in state.connections.snapshot() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    for (name, help, kind, value) in state.catalog.attendance_counters().snapshot() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    if let Some(cluster) = &state.cluster {
        out.push_str(&cluster.metrics());
        out.push_str(&state.hls.metrics());
    }
    out.push_str(&state.interaction.metrics());
    let live = board.live();
    let viewers: usize = live.iter().map(|(_, s)| s.viewers).sum();
    let _ = writeln!(
        out,
        "# HELP feiyan_live_channels channels with a live source\n# TYPE feiyan_live_channels gauge\nfeiyan_live_channels {}",
        live.len()
    );
    let _ = writeln!(
        out,
        "# HELP feiyan_viewers connected viewers of live channels\n# TYPE feiyan_viewers gauge\nfeiyan_viewers {viewers}"
    );
    let mut r = out.into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// One entry of `GET /api/live`.
#[derive(Debug, Serialize)]
pub struct LiveEntry {
    /// Channel name.
    pub channel: String,
    /// Station name.
    pub station: String,
    /// Institute name.
    pub institute: String,
    /// Center name.
    pub center: String,
    /// Session title.
    pub title: String,
    /// Session id.
    pub session_id: Option<SessionId>,
    /// Start, RFC 3339.
    pub started_at: String,
    /// Viewers now: on this node, or for a channel live on another node that this one
    /// does not carry yet, the session's on every node.
    pub viewers: usize,
    /// What `?quality=` accepts on `/whep/{channel}` (empty for a channel live on another
    /// node that this one does not carry yet: its edge learns them when it starts).
    pub qualities: Vec<String>,
}

/// The station, institute and center names of `channel` (empty when it has no owner).
async fn owner_names(state: &AppState, channel: &ChannelName) -> (String, String, String) {
    match state.catalog.channel_owner(channel).await {
        Ok(o) => (o.station, o.institute, o.center),
        Err(_) => Default::default(),
    }
}

async fn api_live(state: State) -> Response {
    finish(
        async {
            let mut out = Vec::new();
            for (channel, status) in state.relay.board().live() {
                let (station, institute, center) = owner_names(&state, &channel).await;
                out.push(LiveEntry {
                    channel: channel.to_string(),
                    station,
                    institute,
                    center,
                    title: status.title,
                    session_id: status.session_id,
                    started_at: rfc3339(status.started_at_ms),
                    viewers: status.viewers,
                    qualities: status.qualities,
                });
            }
            // In a cluster, the channels live on other nodes too: this node serves them as
            // their edge. Their viewers are the session's on every node; their qualities
            // are known here once this node carries the channel.
            let elsewhere = state.catalog.live_elsewhere().await?;
            for (channel, origin, viewers) in elsewhere {
                if out.iter().any(|e| e.channel == channel) {
                    continue;
                }
                let Some(summary) = state.catalog.session_summary(origin.session, 0).await? else {
                    continue;
                };
                let Some(name) = ChannelName::parse(&channel) else {
                    continue;
                };
                let (station, institute, center) = owner_names(&state, &name).await;
                out.push(LiveEntry {
                    station,
                    institute,
                    center,
                    channel,
                    title: summary.title,
                    session_id: Some(origin.session),
                    started_at: summary.started_at,
                    viewers: usize::try_from(viewers).unwrap_or(0),
                    qualities: Vec::new(),
                });
            }
            out.sort_by(|a, b| a.channel.cmp(&b.channel));
            Ok(warp::reply::json(&out).into_response())
        }
        .await,
    )
}

async fn api_channel(channel: String, state: State) -> Response {
    finish(
        async {
            let channel = parse_channel(&channel)?;
            let owner = state.catalog.channel_owner(&channel).await?;
            let status = state.relay.board().get(&channel);
            let mut live = status.as_ref().is_some_and(|s| s.live);
            let mut session_id = status.as_ref().and_then(|s| s.session_id);
            // In a cluster: live on another node is live here too (this node serves as
            // its edge), and a full node names one with room.
            let mut watch_on = None;
            if let Some(cluster) = &state.cluster {
                if !live && let Some(origin) = state.catalog.channel_origin(&channel).await? {
                    live = true;
                    session_id = Some(origin.session);
                }
                if cluster.at_capacity() {
                    watch_on = cluster
                        .node_with_room()
                        .await
                        .map_err(cluster::cluster_error)?
                        .map(|n| n.node_url);
                }
            }
            let mut answer = serde_json::json!({
                "channel": channel,
                "station": owner.station,
                "institute": owner.institute,
                "center": owner.center,
                "live": live,
                "title": status.as_ref().map(|s| s.title.clone()).unwrap_or_default(),
                "session_id": session_id,
                "viewers": status.as_ref().map(|s| s.viewers).unwrap_or(0),
                "qualities": status.map(|s| s.qualities).unwrap_or_default(),
                "ice_lite": state.ice_lite,
            });
            if let Some(cluster) = &state.cluster {
                answer["watch_on"] = serde_json::json!(watch_on);
                // Where the watch page goes when this node stops answering.
                answer["nodes"] = serde_json::json!(cluster.other_node_urls().await);
            }
            Ok(warp::reply::json(&answer).into_response())
        }
        .await,
    )
}

/// A session as residents see it (`../shared/DECISIONS.md`, Pages and URLs): what it is
/// and when, no viewer figures. Named fields, so a figure added to
/// [`crate::catalog::SessionSummary`] stays private until it is listed here.
#[derive(Debug, Serialize)]
struct PublicSession<'a> {
    id: SessionId,
    channel: &'a str,
    station_id: crate::ids::StationId,
    kind: SessionKind,
    title: &'a str,
    source: SessionSource,
    started_at: &'a str,
    ended_at: Option<&'a str>,
    live: bool,
}

/// `GET /api/sessions/{id}`: the viewer figures (peak, unique viewers, viewer minutes)
/// only for an administrator whose scope covers the session's station; everyone else,
/// a wrong or expired token included, gets the public fields.
async fn api_session(id: i64, authorization: Option<String>, state: State) -> Response {
    finish(
        async {
            let summary = state
                .catalog
                .session_summary(SessionId(id), now_ms())
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
            let in_scope = match authorization {
                None => false,
                Some(_) => match admin::authenticate(&state, &authorization).await {
                    Ok(account) => admin::allow_station(&state, &account, summary.station_id)
                        .await
                        .is_ok(),
                    Err(_) => false,
                },
            };
            let mut reply = if in_scope {
                warp::reply::json(&summary).into_response()
            } else {
                warp::reply::json(&PublicSession {
                    id: summary.id,
                    channel: &summary.channel,
                    station_id: summary.station_id,
                    kind: summary.kind,
                    title: &summary.title,
                    source: summary.source,
                    started_at: &summary.started_at,
                    ended_at: summary.ended_at.as_deref(),
                    live: summary.live,
                })
                .into_response()
            };
            // The answer depends on who asks: no shared cache may keep one for another.
            reply.headers_mut().insert(
                warp::http::header::VARY,
                HeaderValue::from_static("authorization"),
            );
            Ok(reply)
        }
        .await,
    )
}

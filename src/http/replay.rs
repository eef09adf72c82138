//! Replays over HTTP ([`crate::recording::replays`] does the work).
//!
//! | route | what |
//! |---|---|
//! | `GET /replay/{id}/index.m3u8?vid=` | the VOD playlist (`EXT-X-PLAYLIST-TYPE:VOD`); without a valid `vid`, `302` to the same URL with a new one |
//! | `GET /replay/{id}/init-{g}.mp4` | init segment generation `g` |
//! | `GET /replay/{id}/seg-{i}.m4s?vid=` | segment `i` (0-based); counted for the `vid` (回看) |
//! | `GET /replay/{id}/replay.mp4` | the whole replay as one MP4 (remuxed once, then served from disk; `Range`) |
//! | `GET /api/recordings?station={channel}` | a station's published replays, newest first |
//! | `GET /api/recordings/{id}` | one replay |
//!
//! Replay media carries the viewer's id, so it is `Cache-Control: private`. A deleted or
//! unknown replay is 404; a hidden one is 404 unless the request carries the bearer token
//! of an administrator whose scope covers its station. Names are matched against these
//! forms; the only paths opened are a catalogued recording's folder and its library film.
//! `/replay/{id}` itself (the page) is left to the pages.
//!
//! In a cluster a recording's files are on the node that made it: another node answers its
//! page and media with `307` to that node's `node_url`, same path and query ([`elsewhere`]).

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::ApiError;
use super::{State, admin};
use crate::catalog::Recording;
use crate::device::Terminal;
use crate::ids::{ChannelName, StationId};
use crate::recording::replays::Viewer;

/// What a replay request carries.
struct ReplayRequest {
    head: bool,
    id: i64,
    file: String,
    query: String,
    agent: String,
    range: Option<String>,
    authorization: Option<String>,
}

/// The `/replay/{id}/...` and `/api/recordings` routes.
pub(super) fn routes(state: State) -> warp::filters::BoxedFilter<(Response,)> {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let media = warp::path("replay")
        .and(warp::method())
        .and(warp::path::tail())
        .and_then(|method: Method, tail: warp::path::Tail| async move {
            // `{id}/{file}` only; `{id}` alone is the page.
            match tail.as_str().split_once('/') {
                Some((id, file)) if !file.is_empty() => {
                    Ok((method, id.to_string(), file.to_string()))
                }
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("user-agent"))
        .and(warp::header::optional::<String>("range"))
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state.clone())
        .then(
            |method: Method,
             id: String,
             file: String,
             query: String,
             agent: Option<String>,
             range: Option<String>,
             authorization: Option<String>,
             state: State| async move {
                if method == Method::OPTIONS {
                    return text(StatusCode::NO_CONTENT, "");
                }
                if method != Method::GET && method != Method::HEAD {
                    return text(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "replays answer GET and HEAD\n",
                    );
                }
                if [&id, &file].iter().any(|p| {
                    p.contains("..") || p.contains('%') || p.contains('\\') || p.contains('/')
                }) {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "replay paths are /replay/{id}/index.m3u8 and the names its playlist gives\n",
                    );
                }
                let Ok(id) = id.parse::<i64>() else {
                    return ApiError::NotFound("no such replay".into()).into_response();
                };
                let request = ReplayRequest {
                    head: method == Method::HEAD,
                    id,
                    file,
                    query,
                    agent: agent.unwrap_or_default(),
                    range,
                    authorization,
                };
                answer(&state, request)
                    .await
                    .unwrap_or_else(|e| e.into_response())
            },
        );
    let list = warp::get()
        .and(warp::path!("api" / "recordings"))
        .and(warp::query::<ListQuery>())
        .and(with_state.clone())
        .then(|q: ListQuery, state: State| async move {
            station_list(&state, q)
                .await
                .unwrap_or_else(|e| e.into_response())
        });
    let one = warp::get()
        .and(warp::path!("api" / "recordings" / i64))
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state)
        .then(
            |id: i64, authorization: Option<String>, state: State| async move {
                match visible(&state, id, &authorization).await {
                    Ok(rec) => no_cache(warp::reply::json(&public(&rec)).into_response()),
                    Err(e) => e.into_response(),
                }
            },
        );
    media.or(list).unify().or(one).unify().boxed()
}

/// `GET /replay/{id}` (the page) of a recording made on another node: `307` there. Any
/// other is rejected, for the pages to answer (mounted before them).
pub(super) fn page_elsewhere(state: State) -> warp::filters::BoxedFilter<(Response,)> {
    warp::get()
        .and(warp::path!("replay" / i64))
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::any().map(move || state.clone()))
        .and_then(
            |id: i64, path: warp::path::FullPath, query: String, state: State| async move {
                if state.cluster.is_none() {
                    return Err(warp::reject::not_found());
                }
                match state.replays.row(id).await {
                    Ok(rec) => elsewhere(&state, &rec, path.as_str(), &query)
                        .ok_or_else(warp::reject::not_found),
                    Err(_) => Err(warp::reject::not_found()),
                }
            },
        )
        .boxed()
}

/// `307` to the node `rec` was made on, when that is another cluster node with a
/// `node_url` (`path` and `query` as asked).
fn elsewhere(state: &State, rec: &Recording, path: &str, query: &str) -> Option<Response> {
    let cluster = state.cluster.as_ref()?;
    let url = rec.node_url.as_deref()?.trim_end_matches('/');
    if rec.node_id.is_none()
        || rec.node_id == state.catalog.this_node()
        || url == cluster.node_url()
    {
        return None;
    }
    let location = if query.is_empty() {
        format!("{url}{path}")
    } else {
        format!("{url}{path}?{query}")
    };
    let mut r = text(
        StatusCode::TEMPORARY_REDIRECT,
        "this replay is kept on another node\n",
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}

/// Query of `GET /api/recordings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The station's channel.
    pub station: String,
}

/// A replay as residents see it (no viewer figures, no folder).
#[derive(Debug, serde::Serialize)]
struct PublicReplay<'a> {
    #[serde(flatten)]
    recording: &'a Recording,
    page: String,
    playlist: String,
    download: String,
}

fn public(r: &Recording) -> PublicReplay<'_> {
    PublicReplay {
        recording: r,
        page: format!("/replay/{}", r.id),
        playlist: format!("/replay/{}/index.m3u8", r.id),
        download: format!("/replay/{}/replay.mp4", r.id),
    }
}

fn no_cache(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn station_list(state: &State, q: ListQuery) -> Result<Response, ApiError> {
    let channel = ChannelName::parse(&q.station)
        .ok_or_else(|| ApiError::BadRequest(format!("{:?} is not a channel name", q.station)))?;
    // An unknown channel is 404, not an empty list.
    state.catalog.channel_owner(&channel).await?;
    let rows = state.catalog.station_recordings(&channel, false).await?;
    let list: Vec<PublicReplay> = rows.iter().map(public).collect();
    Ok(no_cache(warp::reply::json(&list).into_response()))
}

/// The row, if this request may see it: published, or hidden and asked for by an
/// administrator whose scope covers its station.
async fn visible(
    state: &State,
    id: i64,
    authorization: &Option<String>,
) -> Result<Recording, ApiError> {
    let rec = state.replays.row(id).await?;
    if rec.deleted_at.is_some() {
        return Err(ApiError::NotFound(format!(
            "replay {} was deleted: {}",
            rec.id,
            rec.deleted_reason.as_deref().unwrap_or("")
        )));
    }
    if !rec.published {
        let hidden = || ApiError::NotFound(format!("no replay {}", rec.id));
        if authorization.is_none() {
            return Err(hidden());
        }
        let account = admin::authenticate(state, authorization)
            .await
            .map_err(|_| hidden())?;
        admin::allow_station(state, &account, StationId(rec.station_id))
            .await
            .map_err(|_| hidden())?;
    }
    Ok(rec)
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn answer(state: &State, request: ReplayRequest) -> Result<Response, ApiError> {
    enum Want {
        Playlist,
        Init(u32),
        Segment(usize),
        Mp4,
    }
    let file = request.file.as_str();
    let want = if file == "index.m3u8" {
        Some(Want::Playlist)
    } else if file == "replay.mp4" {
        Some(Want::Mp4)
    } else if let Some(g) = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        g.parse().ok().map(Want::Init)
    } else if let Some(i) = file
        .strip_prefix("seg-")
        .and_then(|f| f.strip_suffix(".m4s"))
    {
        i.parse().ok().map(Want::Segment)
    } else {
        None
    };
    let Some(want) = want else {
        return Err(ApiError::NotFound(format!(
            "replay {} has no {file:?}",
            request.id
        )));
    };
    let replays = &state.replays;
    let vid = param(&request.query, "vid").filter(|v| replays.devices.verify(v));
    // Known (and visible) replays only: a redirect for an unknown id would hide the 404.
    let rec = visible(state, request.id, &request.authorization).await?;
    let path = format!("/replay/{}/{}", request.id, request.file);
    if let Some(redirect) = elsewhere(state, &rec, &path, &request.query) {
        return Ok(redirect);
    }
    let (body, content_type, cache) = match want {
        Want::Playlist => {
            let Some(vid) = vid else {
                let location = format!(
                    "/replay/{}/index.m3u8?vid={}",
                    request.id,
                    replays.devices.issue()
                );
                let mut r = text(StatusCode::FOUND, "a viewer id was added\n");
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return Ok(r);
            };
            let text = replays.playlist(&rec, vid).await?;
            (
                Bytes::from(text),
                "application/vnd.apple.mpegurl",
                "private, no-cache",
            )
        }
        Want::Init(g) => (
            replays.init(&rec, g).await?,
            "video/mp4",
            "private, max-age=86400",
        ),
        Want::Segment(i) => {
            let viewer = vid.filter(|_| !request.head).map(|vid| Viewer {
                vid,
                terminal: Terminal::from_user_agent(&request.agent),
            });
            (
                replays.segment(&rec, i, viewer).await?,
                "video/iso.segment",
                "private, max-age=86400",
            )
        }
        Want::Mp4 => {
            let path = replays.mp4(&rec).await?;
            let day = rec.started_at.get(..10).unwrap_or("replay");
            let name = format!("{}-{day}-{}.mp4", rec.station, rec.id);
            return super::files::file_response(
                &path,
                request.head,
                request.range.as_deref(),
                "video/mp4",
                "private, max-age=3600",
                Some(&name),
            )
            .await
            .map_err(|e| ApiError::Internal(format!("serving replay {}'s MP4: {e}", rec.id)));
        }
    };
    let len = body.len();
    let mut r = Response::new(if request.head {
        Bytes::new().into()
    } else {
        body.into()
    });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

fn text(code: StatusCode, body: &'static str) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

//! Replays over HTTP.
//!
//! | route | what |
//! |---|---|
//! | `GET /replay/{id}/index.m3u8?vid=` | the VOD playlist (`EXT-X-PLAYLIST-TYPE:VOD`); without a valid `vid`, `302` to the same URL with a new one |
//! | `GET /replay/{id}/init-{g}.mp4` | init segment generation `g` |
//! | `GET /replay/{id}/seg-{i}.m4s?vid=` | segment `i` (0-based); counted for the `vid` (回看) |
//! | `GET /replay/{id}/replay.mp4` | the whole replay as one MP4 (remuxed once, then served from disk; `Range`) |
//! | `GET /api/recordings?station={channel}` | a station's published replays, newest first |
//! | `GET /api/recordings/{id}` | one replay (hidden ones for administrators in scope, as above) |
//!
//! Replay media carries the viewer's id, so it is `Cache-Control: private`. A deleted or
//! unknown replay is 404; a hidden one is 404 unless the request carries the bearer token
//! of an administrator whose scope covers its station. Names are matched against these
//! forms; the only paths opened are a catalogued recording's folder (checked by
//! [`store::safe_dir`]) and its library film.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::counting::ReplayCounter;
use super::library::LibraryVod;
use super::store::{self, RecordingFiles, VodSegment};
use crate::audience::now_ms;
use crate::catalog::{Catalog, Recording, RecordingKind};
use crate::device::{DeviceIds, Terminal};
use crate::http::error::ApiError;
use crate::http::{State, admin};
use crate::ids::{ChannelName, StationId};

/// How long a catalog row read for a media request is reused.
const ROW_FRESH: Duration = Duration::from_secs(2);

/// A replay's media, recorded or cut from a library film.
enum Source {
    Recorded(RecordingFiles),
    Library(LibraryVod),
}

impl Source {
    fn segments(&self) -> Vec<VodSegment> {
        match self {
            Source::Recorded(files) => files.vod_segments(),
            Source::Library(lib) => lib
                .durations()
                .into_iter()
                .map(|duration| VodSegment {
                    duration,
                    init: 0,
                    discontinuity: false,
                })
                .collect(),
        }
    }
}

/// Replays: sources opened once, rows read at most every [`ROW_FRESH`], viewers counted.
pub struct Replays {
    catalog: Catalog,
    root: PathBuf,
    devices: Arc<DeviceIds>,
    /// Counts replay viewers.
    pub counter: Arc<ReplayCounter>,
    /// Library films are cut into segments of about this many seconds.
    segment_secs: f64,
    sources: Mutex<HashMap<i64, Arc<Source>>>,
    rows: Mutex<HashMap<i64, (Instant, Recording)>>,
    /// One MP4 export at a time (they are disk-bound).
    exporting: tokio::sync::Mutex<()>,
}

impl Replays {
    /// Replays of the recordings under `root`.
    pub fn new(catalog: Catalog, root: PathBuf, devices: Arc<DeviceIds>, segment_secs: f64) -> Arc<Replays> {
        Arc::new(Replays {
            counter: ReplayCounter::start(catalog.clone()),
            catalog,
            root,
            devices,
            segment_secs,
            sources: Mutex::default(),
            rows: Mutex::default(),
            exporting: tokio::sync::Mutex::new(()),
        })
    }

    /// The server stops: replay viewers are written.
    pub async fn shutdown(&self) {
        self.counter.flush().await;
    }

    /// Forgets what is cached of `id` (it was hidden, deleted...).
    pub fn forget(&self, id: i64) {
        lock(&self.sources).remove(&id);
        lock(&self.rows).remove(&id);
    }

    async fn row(&self, id: i64) -> Result<Recording, ApiError> {
        if let Some((at, row)) = lock(&self.rows).get(&id)
            && at.elapsed() < ROW_FRESH
        {
            return Ok(row.clone());
        }
        let row = self
            .catalog
            .recording(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no replay {id}")))?;
        lock(&self.rows).insert(id, (Instant::now(), row.clone()));
        Ok(row)
    }

    async fn source(&self, rec: &Recording) -> Result<Arc<Source>, ApiError> {
        if let Some(s) = lock(&self.sources).get(&rec.id) {
            return Ok(s.clone());
        }
        let source = match rec.kind {
            RecordingKind::Recorded => {
                let dir = store::safe_dir(&self.root, &rec.path).ok_or_else(|| {
                    ApiError::Internal(format!("recording {} has a bad path", rec.id))
                })?;
                let files = tokio::task::spawn_blocking(move || RecordingFiles::open(&dir))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?
                    .map_err(|e| {
                        ApiError::NotFound(format!("replay {}'s files are gone: {e}", rec.id))
                    })?;
                Source::Recorded(files)
            }
            RecordingKind::Library => {
                let path = PathBuf::from(&rec.path);
                let secs = self.segment_secs;
                let lib = tokio::task::spawn_blocking(move || LibraryVod::open(&path, secs))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?
                    .map_err(|e| {
                        ApiError::NotFound(format!("replay {}'s film cannot be read: {e:#}", rec.id))
                    })?;
                Source::Library(lib)
            }
        };
        let source = Arc::new(source);
        lock(&self.sources).insert(rec.id, source.clone());
        Ok(source)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a media request carries.
struct ReplayRequest {
    head: bool,
    id: i64,
    file: String,
    query: String,
    agent: String,
    range: Option<String>,
    authorization: Option<String>,
}

/// The `/replay/{id}/...` and `/api/recordings` routes. `/replay/{id}` itself (the page)
/// is left to the pages.
pub fn routes(state: State) -> warp::filters::BoxedFilter<(Response,)> {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let media = warp::path("replay")
        .and(warp::method())
        .and(warp::path::tail())
        .and_then(|method: Method, tail: warp::path::Tail| async move {
            // `{id}/{file}` only; `{id}` alone is the page.
            let path = tail.as_str().to_string();
            match path.split_once('/') {
                Some((id, file)) if !file.is_empty() => Ok((method, id.to_string(), file.to_string())),
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
                    return text(StatusCode::METHOD_NOT_ALLOWED, "replays answer GET and HEAD\n");
                }
                if [&id, &file]
                    .iter()
                    .any(|p| p.contains("..") || p.contains('%') || p.contains('\\') || p.contains('/'))
                {
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
                match answer(&state, request).await {
                    Ok(r) => r,
                    Err(e) => e.into_response(),
                }
            },
        );
    let list = warp::get()
        .and(warp::path!("api" / "recordings"))
        .and(warp::query::<ListQuery>())
        .and(with_state.clone())
        .then(|q: ListQuery, state: State| async move {
            match station_list(&state, q).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        });
    let one = warp::get()
        .and(warp::path!("api" / "recordings" / i64))
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state)
        .then(|id: i64, authorization: Option<String>, state: State| async move {
            let request = ReplayRequest {
                head: false,
                id,
                file: String::new(),
                query: String::new(),
                agent: String::new(),
                range: None,
                authorization,
            };
            match visible(&state, &request).await {
                Ok(rec) => no_cache(warp::reply::json(&public(&rec)).into_response()),
                Err(e) => e.into_response(),
            }
        });
    media.or(list).unify().or(one).unify().boxed()
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

/// Query of `GET /api/recordings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The station's channel.
    pub station: String,
}

/// A replay as residents see it (no viewer figures).
#[derive(Debug, serde::Serialize)]
struct PublicReplay<'a> {
    #[serde(flatten)]
    recording: &'a Recording,
    page: String,
    playlist: String,
    download: String,
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
async fn visible(state: &State, request: &ReplayRequest) -> Result<Recording, ApiError> {
    let replays = &state.replays;
    let rec = replays.row(request.id).await?;
    if rec.deleted_at.is_some() {
        return Err(ApiError::NotFound(format!(
            "replay {} was deleted: {}",
            rec.id,
            rec.deleted_reason.as_deref().unwrap_or("")
        )));
    }
    if !rec.published {
        let hidden = || ApiError::NotFound(format!("no replay {}", rec.id));
        if request.authorization.is_none() {
            return Err(hidden());
        }
        let account = admin::authenticate(state, &request.authorization)
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
    } else if let Some(g) = file.strip_prefix("init-").and_then(|f| f.strip_suffix(".mp4")) {
        g.parse().ok().map(Want::Init)
    } else if let Some(i) = file.strip_prefix("seg-").and_then(|f| f.strip_suffix(".m4s")) {
        i.parse().ok().map(Want::Segment)
    } else {
        None
    };
    let Some(want) = want else {
        return Err(ApiError::NotFound(format!("replay {} has no {file:?}", request.id)));
    };
    let replays = &state.replays;
    let vid = param(&request.query, "vid").filter(|v| replays.devices.verify(v));
    if matches!(want, Want::Playlist) && vid.is_none() {
        // Known replays only: a redirect for an unknown id would hide the 404.
        visible(state, &request).await?;
        let location = format!("/replay/{}/index.m3u8?vid={}", request.id, replays.devices.issue());
        let mut r = text(StatusCode::FOUND, "a viewer id was added\n");
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(r);
    }
    let rec = visible(state, &request).await?;
    if let Want::Mp4 = want {
        return download(state, &rec, &request).await;
    }
    let source = replays.source(&rec).await?;
    let segments = source.segments();
    match want {
        Want::Playlist => {
            let vid = vid.unwrap_or_default();
            let text = store::vod_playlist(
                &segments,
                |i| format!("seg-{i}.m4s?vid={vid}"),
                |g| format!("init-{g}.mp4"),
            );
            Ok(media_response(
                Bytes::from(text),
                "application/vnd.apple.mpegurl",
                "private, no-cache",
                request.head,
            ))
        }
        Want::Init(g) => {
            if !segments.iter().any(|s| s.init == g) {
                return Err(ApiError::NotFound(format!("replay {} has no init segment {g}", rec.id)));
            }
            let bytes = match &*source {
                Source::Recorded(files) => tokio::fs::read(files.dir.join(store::init_file(g)))
                    .await
                    .map(Bytes::from)
                    .map_err(|e| ApiError::NotFound(format!("init segment {g} is gone: {e}")))?,
                Source::Library(lib) => lib.init(),
            };
            Ok(media_response(bytes, "video/mp4", "private, max-age=86400", request.head))
        }
        Want::Segment(i) => {
            let Some(segment) = segments.get(i) else {
                return Err(ApiError::NotFound(format!(
                    "replay {} has {} segments; there is no {i}",
                    rec.id,
                    segments.len()
                )));
            };
            let bytes = match &*source {
                Source::Recorded(files) => {
                    let path = files.dir.join(store::segment_file(files.entries[i].msn));
                    tokio::fs::read(path)
                        .await
                        .map(Bytes::from)
                        .map_err(|e| ApiError::NotFound(format!("segment {i} is gone: {e}")))?
                }
                Source::Library(_) => {
                    let source = source.clone();
                    tokio::task::spawn_blocking(move || match &*source {
                        Source::Library(lib) => lib.segment(i),
                        Source::Recorded(_) => unreachable!("matched as a library source"),
                    })
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?
                    .map_err(|e| ApiError::Internal(format!("cutting segment {i}: {e:#}")))?
                }
            };
            if let Some(vid) = vid
                && !request.head
            {
                replays
                    .counter
                    .fetched(
                        rec.id,
                        crate::hls::viewers::viewer_key(vid),
                        Terminal::from_user_agent(&request.agent),
                        i,
                        (segment.duration * 1000.0).round() as i64,
                        now_ms(),
                    )
                    .await;
            }
            Ok(media_response(bytes, "video/iso.segment", "private, max-age=86400", request.head))
        }
        Want::Mp4 => unreachable!("answered above"),
    }
}

/// The whole replay as one MP4: remuxed on the first request, then served from disk.
async fn download(state: &State, rec: &Recording, request: &ReplayRequest) -> Result<Response, ApiError> {
    let replays = &state.replays;
    let (input, out) = match rec.kind {
        RecordingKind::Recorded => {
            let dir = store::safe_dir(&replays.root, &rec.path)
                .ok_or_else(|| ApiError::Internal(format!("recording {} has a bad path", rec.id)))?;
            (None, dir.join("replay.mp4"))
        }
        RecordingKind::Library => (
            Some(PathBuf::from(&rec.path)),
            replays.root.join("exports").join(format!("{}.mp4", rec.id)),
        ),
    };
    if !out.is_file() {
        let _one = replays.exporting.lock().await;
        if !out.is_file() {
            let target = out.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let input = match input {
                    Some(path) => path,
                    None => {
                        let dir = target.parent().map(PathBuf::from).unwrap_or_default();
                        RecordingFiles::open(&dir)?.write_local_playlist()?
                    }
                };
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                super::export::export_mp4(&input, &target)?;
                Ok(())
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(format!("exporting replay {} as MP4: {e:#}", rec.id)))?;
        }
    }
    let day = rec.started_at.get(..10).unwrap_or("replay");
    let name = format!("{}-{day}-{}.mp4", rec.station, rec.id);
    crate::http::files::file_response(
        &out,
        request.head,
        request.range.as_deref(),
        "video/mp4",
        "private, max-age=3600",
        Some(&name),
    )
    .await
    .map_err(|e| ApiError::Internal(format!("serving replay {}'s MP4: {e}", rec.id)))
}

fn media_response(body: Bytes, content_type: &'static str, cache: &'static str, head: bool) -> Response {
    let len = body.len();
    let mut r = Response::new(if head { Bytes::new().into() } else { body.into() });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
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

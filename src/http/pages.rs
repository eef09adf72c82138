//! The pages and their assets.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the live list |
//! | `GET /watch/{channel}` | the live player (WebRTC first, HLS fallback) |
//! | `GET /tv/{channel}` | the live player for TV browsers (HLS first, big type, remote keys) |
//! | `GET /replay/{id}` | a replay's player (VOD HLS, download link); its media, `/replay/{id}/...`, is `replay`'s |
//! | `GET /publish/{channel}` | the station operator's publish page |
//! | `GET /stations`, `/s/{channel}`, `/e/{id}`, `/e/{id}/poster`, `/tv` | the residents' pages the server fills, see [`super::residents`] |
//! | `GET /assets/{name}` | every page's script and style sheet (none is inline, so the CSP holds) |
//! | `GET /assets/vendor/hls.min.js` | hls.js from `[http] vendor_dir` (`scripts/deps.sh` fetches it) |
//!
//! Every resident page loads `/assets/prefs.js` in its head: the large-type mode (大字模式),
//! remembered in `localStorage`.
//!
//! The player pages give a browser without a valid device id a new one (the `fy_dev`
//! cookie, [`crate::device`]); their scripts send it back as `vid`.

use std::path::PathBuf;

use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{ApiError, text};
use super::{State, with_state};
use crate::device;

const INDEX: &str = include_str!("pages/index.html");
const WATCH: &str = include_str!("pages/watch.html");
const TV: &str = include_str!("pages/tv.html");
const PUBLISH: &str = include_str!("pages/publish.html");
const REPLAY: &str = include_str!("pages/replay.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The one file served from `[http] vendor_dir`.
pub const HLS_JS: &str = "hls.min.js";

/// `/assets/{name}`: every page's script and style sheet and the helpers they share.
fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "feiyan.css" => (include_str!("pages/feiyan.css"), CSS),
        "feiyan.js" => (include_str!("pages/feiyan.js"), JS),
        "index.css" => (include_str!("pages/index.css"), CSS),
        "index.js" => (include_str!("pages/index.js"), JS),
        "watch.css" => (include_str!("pages/watch.css"), CSS),
        "watch.js" => (include_str!("pages/watch.js"), JS),
        "tv.css" => (include_str!("pages/tv.css"), CSS),
        "tv.js" => (include_str!("pages/tv.js"), JS),
        "replay.css" => (include_str!("pages/replay.css"), CSS),
        "replay.js" => (include_str!("pages/replay.js"), JS),
        "rating.js" => (include_str!("pages/rating.js"), JS),
        "publish.css" => (include_str!("pages/publish.css"), CSS),
        "publish.js" => (include_str!("pages/publish.js"), JS),
        "admin.css" => (include_str!("pages/admin.css"), CSS),
        "admin.js" => (include_str!("pages/admin.js"), JS),
        "prefs.js" => (include_str!("pages/prefs.js"), JS),
        "portal.css" => (include_str!("pages/portal.css"), CSS),
        "portal.js" => (include_str!("pages/portal.js"), JS),
        "home.js" => (include_str!("pages/home.js"), JS),
        "stations.js" => (include_str!("pages/stations.js"), JS),
        "programme.js" => (include_str!("pages/programme.js"), JS),
        "station.js" => (include_str!("pages/station.js"), JS),
        // The request menu (点单) on the station page (`http::requests`).
        "request.js" => (include_str!("pages/request.js"), JS),
        "item.js" => (include_str!("pages/item.js"), JS),
        "poster.css" => (include_str!("pages/poster.css"), CSS),
        "poster.js" => (include_str!("pages/poster.js"), JS),
        "tvhome.css" => (include_str!("pages/tvhome.css"), CSS),
        "tvhome.js" => (include_str!("pages/tvhome.js"), JS),
        // Live interaction: the residents' widget and the host's panel (`http::interaction`).
        "chat.css" => (include_str!("pages/chat.css"), CSS),
        "chat.js" => (include_str!("pages/chat.js"), JS),
        "chat-host.js" => (include_str!("pages/chat-host.js"), JS),
        _ => return None,
    })
}

pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let index = warp::get().and(warp::path::end()).map(|| page(INDEX));
    let vendor = warp::get()
        .and(warp::path!("assets" / "vendor" / String))
        .and(with_state(state.clone()))
        .then(
            |name: String, state: State| async move { vendor_file(&name, &state.vendor_dir).await },
        );
    let assets = warp::get()
        .and(warp::path!("assets" / String))
        .map(|name: String| match asset(&name) {
            Some((body, content_type)) => asset_response(body, content_type),
            None => ApiError::NotFound(format!("no asset {name:?}")).into_response(),
        });
    let cookie = warp::header::optional::<String>("cookie");
    let watch = warp::get()
        .and(warp::path!("watch" / String))
        .and(cookie)
        .and(with_state(state.clone()))
        .map(|_: String, cookie: Option<String>, state: State| player(WATCH, cookie, &state));
    let tv = warp::get()
        .and(warp::path!("tv" / String))
        .and(cookie)
        .and(with_state(state.clone()))
        .map(|_: String, cookie: Option<String>, state: State| player(TV, cookie, &state));
    // `/replay/{id}` exactly: `/replay/{id}/{file}` (the media) is not matched here and goes
    // on to the replay routes (`http::replay`), which leave `/replay/{id}` alone.
    let replay = warp::get()
        .and(warp::path!("replay" / i64))
        .and(cookie)
        .and(with_state(state))
        .map(|_: i64, cookie: Option<String>, state: State| player(REPLAY, cookie, &state));
    let publish = warp::get()
        .and(warp::path!("publish" / String))
        .map(|_: String| page(PUBLISH));
    index
        .or(vendor)
        .unify()
        .or(assets)
        .unify()
        .or(watch)
        .unify()
        .or(tv)
        .unify()
        .or(replay)
        .unify()
        .or(publish)
        .unify()
        .boxed()
}

fn asset_response(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub(super) fn page(html: &'static str) -> Response {
    let mut r = html.into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A player page; with a new `fy_dev` cookie when the request carries no valid one (a
/// forged or stale id is replaced). An answer that sets the cookie is never stored by a
/// shared cache, which would hand one resident's id to the next.
fn player(html: &'static str, cookie: Option<String>, state: &State) -> Response {
    with_device_cookie(page(html), cookie, state)
}

/// `r` with a new `fy_dev` cookie when the request carries no valid one (see [`player`]).
pub(super) fn with_device_cookie(
    mut r: Response,
    cookie: Option<String>,
    state: &State,
) -> Response {
    let known = cookie
        .as_deref()
        .and_then(device::from_cookie)
        .is_some_and(|id| state.device_ids.verify(id));
    if !known {
        let set = device::set_cookie(&state.device_ids.issue(), state.https);
        if let Ok(v) = HeaderValue::from_str(&set) {
            let h = r.headers_mut();
            h.append("set-cookie", v);
            h.insert(
                "cache-control",
                HeaderValue::from_static("private, no-store"),
            );
        }
    }
    r
}

/// `/assets/vendor/{name}`: hls.js read from `[http] vendor_dir` (a day in caches: its
/// folder is named by version, so a new release is a new deployment anyway).
async fn vendor_file(name: &str, dir: &std::path::Path) -> Response {
    if name != HLS_JS {
        return ApiError::NotFound(format!("no vendor asset {name:?}")).into_response();
    }
    let path: PathBuf = dir.join(HLS_JS);
    match tokio::fs::read(&path).await {
        Ok(body) => {
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert("content-type", HeaderValue::from_static(JS));
            h.insert(
                "cache-control",
                HeaderValue::from_static("public, max-age=86400"),
            );
            r
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "hls.js is not available");
            text(
                StatusCode::NOT_FOUND,
                format!(
                    "hls.js is not installed on this server: run scripts/deps.sh, or set \
                     [http] vendor_dir to the folder holding {HLS_JS}\n"
                ),
            )
        }
    }
}

//! `/hls/...`: playlists (with the player's `vid`, `no-cache`, blocking reloads) and media
//! (no viewer id, `public, max-age=60, immutable`, so any HTTP cache can sit in front).
//!
//! | path | what |
//! |---|---|
//! | `/hls/{c}/index.m3u8` | fMP4 low-latency: multivariant with renditions, else the media playlist |
//! | `/hls/{c}/ts.m3u8` | the same in MPEG-TS (HLS version 3) |
//! | `/hls/{c}/{r}/media.m3u8`, `/hls/{c}/{r}/ts.m3u8` | rendition `r`'s media playlist |
//! | `/hls/{c}/{session}/{r}/init-{g}.mp4` | init segment generation `g` |
//! | `/hls/{c}/{session}/{r}/seg-{n}.m4s`, `.ts` | segment `n` |
//! | `/hls/{c}/{session}/{r}/part-{p}.m4s` | part `p` (numbered across segments, so the preload hint always names the next one) |
//!
//! Names are matched against these forms and never touch a file, so no path reaches
//! outside the server's memory; anything else is 404 (400 for `..`, encoded bytes or
//! backslashes).
//!
//! In a cluster, a channel not on air here but live on another node is answered from that
//! node ([`super::upstream`]): the player's `vid` and its count stay here, the origin's
//! bytes are served as they are. A signed fetch from another node gets no `vid` redirect,
//! no count, and multivariant URIs without a `vid` (the edge adds its player's).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use warp::Filter;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::playlist::{self, Entry, Form};
use super::service::{ChannelHls, Hls};
use super::upstream::{SIGNATURE_HEADER, UpstreamRequest, Upstreamed};
use super::viewers::Request;
use crate::audience::now_ms;
use crate::device::Terminal;
use crate::ids::ChannelName;

/// Largest `_HLS_part` accepted (parts of one segment, with room for long ones).
const MAX_PART: usize = 64;

/// The `/hls/` routes. `client` yields the client's address (the HTTP side's filter).
pub fn routes<F>(hls: Arc<Hls>, client: F) -> warp::filters::BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    warp::path("hls")
        .and(warp::method())
        .and(warp::path::tail())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("user-agent"))
        .and(warp::header::optional::<String>("range"))
        .and(warp::header::optional::<String>(SIGNATURE_HEADER))
        .and(client)
        .and(warp::any().map(move || hls.clone()))
        .then(
            |method: Method,
             tail: warp::path::Tail,
             query: String,
             agent: Option<String>,
             range: Option<String>,
             signature: Option<String>,
             client: Option<SocketAddr>,
             hls: Arc<Hls>| async move {
                let path = tail.as_str().to_string();
                let signed = signature.is_some()
                    && hls
                        .upstream()
                        .is_some_and(|u| u.signed(&format!("/hls/{path}"), signature.as_deref()));
                let request = HlsRequest {
                    head: method == Method::HEAD,
                    signed,
                    path,
                    query,
                    agent: agent.unwrap_or_default(),
                    range,
                    client,
                };
                match method {
                    Method::GET | Method::HEAD => answer(&hls, request).await,
                    Method::OPTIONS => status(StatusCode::NO_CONTENT, ""),
                    _ => status(StatusCode::METHOD_NOT_ALLOWED, "HLS answers GET and HEAD\n"),
                }
            },
        )
        .boxed()
}

struct HlsRequest {
    head: bool,
    /// Another node's signed fetch: no `vid`, not counted, never forwarded again.
    signed: bool,
    /// The path after `/hls/`, as sent (not decoded).
    path: String,
    query: String,
    agent: String,
    range: Option<String>,
    client: Option<SocketAddr>,
}

async fn answer(hls: &Hls, request: HlsRequest) -> Response {
    let path = request.path.clone();
    if path.contains("..") || path.contains('%') || path.contains('\\') || path.starts_with('/') {
        return status(
            StatusCode::BAD_REQUEST,
            "HLS paths are /hls/{channel}/index.m3u8 and the names its playlists give\n",
        );
    }
    let parts: Vec<&str> = path.split('/').collect();
    let Some(channel) = parts.first().and_then(|c| ChannelName::parse(c)) else {
        return not_found("no such channel");
    };
    match parts[1..] {
        ["index.m3u8"] => playlist(hls, &request, &channel, Form::Fmp4, None).await,
        ["ts.m3u8"] => playlist(hls, &request, &channel, Form::Ts, None).await,
        [r, "media.m3u8"] => match r.parse() {
            Ok(r) => playlist(hls, &request, &channel, Form::Fmp4, Some(r)).await,
            Err(_) => not_found("no such rendition"),
        },
        [r, "ts.m3u8"] => match r.parse() {
            Ok(r) => playlist(hls, &request, &channel, Form::Ts, Some(r)).await,
            Err(_) => not_found("no such rendition"),
        },
        [session, r, file] => media(hls, &request, &channel, session, r, file).await,
        _ => not_found("no such HLS resource"),
    }
}

/// The query's parameters (values as sent; ours never need decoding).
fn params(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    params(query)
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Which variant a playlist request is for, and how long a blocking reload may wait.
async fn playlist(
    hls: &Hls,
    request: &HlsRequest,
    channel: &ChannelName,
    form: Form,
    rendition: Option<usize>,
) -> Response {
    // A player without a valid id gets one: the same URL with a new `vid` (another
    // node's fetch needs none: it counts its own players).
    let vid = match param(&request.query, "vid") {
        _ if request.signed => String::new(),
        Some(v) if hls.devices.verify(v) => v.to_string(),
        _ => {
            let mut query: Vec<String> = params(&request.query)
                .into_iter()
                .filter(|(k, _)| *k != "vid")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            query.push(format!("vid={}", hls.devices.issue()));
            let location = format!("/hls/{}?{}", request.path, query.join("&"));
            let mut response = status(StatusCode::FOUND, "a viewer id was added\n");
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
    };
    let Some(on_air) = hls.channel(channel) else {
        return remote_playlist(hls, request, channel, &vid).await;
    };
    let msn = match param(&request.query, "_HLS_msn").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad_request("_HLS_msn must be a segment number"),
    };
    let part = match param(&request.query, "_HLS_part").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) if n <= MAX_PART && msn.is_some() => Some(n),
        Some(Ok(_)) if msn.is_none() => return bad_request("_HLS_part needs _HLS_msn"),
        Some(_) => return bad_request("_HLS_part is not a part this server makes"),
    };
    // Multivariant when the channel has started renditions besides the source.
    let started: Vec<usize> = on_air.with(|s| {
        s.variants
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                v.as_ref()
                    .is_some_and(|v| v.format().is_some() || !v.segments().is_empty())
            })
            .map(|(i, _)| i)
            .collect()
    });
    if rendition.is_none() && started.len() > 1 {
        return multivariant(&on_air, form, &started, (!request.signed).then_some(&*vid));
    }
    // The channel's playlist is its first variant's: the source, or for a VP8 publisher
    // the H.264 made from it.
    let first_started = |on_air: &ChannelHls| {
        on_air.with(|s| {
            s.variants.iter().position(|v| {
                v.as_ref()
                    .is_some_and(|v| v.started() || !v.segments().is_empty())
            })
        })
    };
    let session = on_air.with(|s| s.session);
    if !on_air.with(|s| s.ended) && !request.signed {
        let terminal = Terminal::from_user_agent(&request.agent).as_str();
        hls.viewers.playlist_request(
            Request {
                session,
                vid: &vid,
                terminal,
                client_hash: client_hash(hls, request.client),
            },
            now_ms(),
        );
    }
    // Wait for what was asked: the first segment of a channel just on air, or the
    // segment/part of a blocking reload.
    let target = hls.settings.targets.segment;
    let limit = Duration::from_secs_f64((3.0 * target).max(6.0));
    let ready = |on_air: &ChannelHls| -> Result<bool, &'static str> {
        let Some(rendition) = rendition.or_else(|| first_started(on_air)) else {
            return Ok(false);
        };
        on_air.with(|s| {
            if s.names.len().max(s.variants.len()) <= rendition
                || (s.variants.len() <= rendition && s.ended)
            {
                return Err("no such rendition");
            }
            let Some(Some(v)) = s.variants.get(rendition) else {
                return Ok(false);
            };
            if s.ended || v.ended() {
                return Ok(true);
            }
            let (open_msn, parts) = v.open().map_or((v.next_msn(), 0), |o| (o.0, o.3.len()));
            let last_complete = v.segments().back().map(|s| s.msn);
            if let Some(msn) = msn {
                if msn > open_msn + 2 {
                    return Err("_HLS_msn is more than two segments ahead of the playlist");
                }
                let have = match part {
                    Some(p) if form == Form::Fmp4 => {
                        // A part past the last of a finished segment is part 0 of the
                        // next (RFC 8216bis 6.2.5.2).
                        let (msn, p) = match v.segments().iter().find(|s| s.msn == msn) {
                            Some(seg) if p >= seg.parts.len() => (msn + 1, 0),
                            _ => (msn, p),
                        };
                        last_complete.is_some_and(|l| msn <= l) || (msn == open_msn && parts > p)
                    }
                    _ => last_complete.is_some_and(|l| msn <= l),
                };
                return Ok(have);
            }
            Ok(last_complete.is_some())
        })
    };
    match wait_for(&on_air, limit, ready).await {
        Ok(true) => {}
        Ok(false) => {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the playlist did not reach that point in time; reload\n",
            );
        }
        Err(why) if why == "no such rendition" => return not_found(why),
        Err(why) => return bad_request(why),
    }
    let rendition = rendition.or_else(|| first_started(&on_air)).unwrap_or(0);
    let body = on_air.playlist(rendition, form, |s| {
        s.variants.get(rendition).and_then(|v| v.as_ref()).map(|v| {
            let base = format!("/hls/{channel}/{}/{rendition}/", s.session.0);
            playlist::media(form, v, &base, hls.settings.targets)
        })
    });
    match body {
        Some(body) => playlist_response(body, request.head),
        None => not_found("no such rendition"),
    }
}

/// Waits until `ready` holds (or fails) or `limit` passes.
async fn wait_for(
    on_air: &ChannelHls,
    limit: Duration,
    ready: impl Fn(&ChannelHls) -> Result<bool, &'static str>,
) -> Result<bool, &'static str> {
    let mut progress = on_air.progress();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        progress.borrow_and_update();
        if ready(on_air)? {
            return Ok(true);
        }
        match tokio::time::timeout_at(deadline, progress.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return ready(on_air),
        }
    }
}

/// The multivariant playlist; its URIs carry `vid` when given.
fn multivariant(on_air: &ChannelHls, form: Form, started: &[usize], vid: Option<&str>) -> Response {
    let query = vid.map(|v| format!("?vid={v}")).unwrap_or_default();
    let body = on_air.with(|s| {
        let entries: Vec<Entry> = started
            .iter()
            .filter_map(|&i| {
                let v = s.variants.get(i)?.as_ref()?;
                let format = v.format()?;
                Some(Entry {
                    uri: match form {
                        Form::Fmp4 => format!("{i}/media.m3u8{query}"),
                        Form::Ts => format!("{i}/ts.m3u8{query}"),
                    },
                    name: s.names.get(i).map_or("rendition", String::as_str),
                    codecs: &format.codecs,
                    resolution: format.video.as_ref().map(|v| (v.width, v.height)),
                    bandwidth: v.peak_bps(),
                })
            })
            .collect();
        playlist::multivariant(form, &entries)
    });
    playlist_response(body, false)
}

/// Init segments, segments and parts.
async fn media(
    hls: &Hls,
    request: &HlsRequest,
    channel: &ChannelName,
    session: &str,
    rendition: &str,
    file: &str,
) -> Response {
    let Some(on_air) = hls.channel(channel) else {
        return remote_media(hls, request, channel, file).await;
    };
    let (Ok(session), Ok(rendition)) = (session.parse::<i64>(), rendition.parse::<usize>()) else {
        return not_found("no such HLS resource");
    };
    if on_air.with(|s| s.session.0 != session) {
        return not_found("that session is no longer on air");
    }
    enum Want {
        Init(u32),
        Segment(u64, Form),
        Part(u64),
    }
    let want = if let Some(g) = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        g.parse().map(Want::Init).ok()
    } else if let Some(n) = file
        .strip_prefix("seg-")
        .and_then(|f| f.strip_suffix(".m4s"))
    {
        n.parse().map(|n| Want::Segment(n, Form::Fmp4)).ok()
    } else if let Some(n) = file
        .strip_prefix("seg-")
        .and_then(|f| f.strip_suffix(".ts"))
    {
        n.parse().map(|n| Want::Segment(n, Form::Ts)).ok()
    } else if let Some(p) = file
        .strip_prefix("part-")
        .and_then(|f| f.strip_suffix(".m4s"))
    {
        p.parse().map(Want::Part).ok()
    } else {
        None
    };
    let Some(want) = want else {
        return not_found("no such HLS resource");
    };
    // What the variant has for it now: bytes, "wait" (the open segment or the hinted next
    // part), or nothing.
    let look = |on_air: &ChannelHls| -> Result<Option<Bytes>, ()> {
        on_air.with(|s| {
            let v = s
                .variants
                .get(rendition)
                .and_then(|v| v.as_ref())
                .ok_or(())?;
            match want {
                Want::Init(g) => v.init(g).map(Some).ok_or(()),
                Want::Segment(n, form) => {
                    if let Some(seg) = v.segments().iter().find(|s| s.msn == n) {
                        return Ok(Some(match form {
                            Form::Fmp4 => seg.fmp4.clone(),
                            Form::Ts => seg.ts.clone(),
                        }));
                    }
                    match v.open() {
                        Some(o) if o.0 == n && !v.ended() => Ok(None),
                        _ => Err(()),
                    }
                }
                Want::Part(id) => match v.part(id) {
                    Some(part) => Ok(Some(part.bytes.clone())),
                    // The preload hint: held until it is cut.
                    None if id == v.next_part() && !v.ended() => Ok(None),
                    None => Err(()),
                },
            }
        })
    };
    let limit = Duration::from_secs_f64((3.0 * hls.settings.targets.segment).max(6.0));
    let found = match look(&on_air) {
        Ok(Some(bytes)) => Some(bytes),
        Err(()) => None,
        Ok(None) => {
            let outcome = wait_for(&on_air, limit, |c| match look(c) {
                Ok(Some(_)) => Ok(true),
                Ok(None) => Ok(false),
                Err(()) => Err("gone"),
            })
            .await;
            match outcome {
                Ok(true) => look(&on_air).ok().flatten(),
                _ => None,
            }
        }
    };
    let Some(bytes) = found else {
        return not_found("no such segment or part (it may have left the playlist)");
    };
    let content_type = match want {
        Want::Segment(_, Form::Ts) => "video/mp2t",
        Want::Init(_) => "video/mp4",
        _ => "video/iso.segment",
    };
    serve_bytes(bytes, content_type, request.range.as_deref(), request.head)
}

/// A playlist of a channel not on air here, from the node it is live on (in a cluster);
/// the player counts here, in that node's session.
async fn remote_playlist(
    hls: &Hls,
    request: &HlsRequest,
    channel: &ChannelName,
    vid: &str,
) -> Response {
    let blocking: Vec<String> = params(&request.query)
        .into_iter()
        .filter(|(k, _)| *k == "_HLS_msn" || *k == "_HLS_part")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let Some(got) = fetch_remote(hls, request, channel, blocking.join("&"), true).await else {
        return not_found(&format!("channel {channel} is not live"));
    };
    if got.status != 200 {
        return passed_on(got);
    }
    let terminal = Terminal::from_user_agent(&request.agent).as_str();
    hls.viewers.playlist_request(
        Request {
            session: got.session,
            vid,
            terminal,
            client_hash: client_hash(hls, request.client),
        },
        now_ms(),
    );
    // A multivariant playlist's URIs come without a `vid`: this player's goes on them.
    let text = String::from_utf8_lossy(&got.body);
    if text.contains("#EXT-X-STREAM-INF") {
        let body: String = text
            .lines()
            .map(|l| {
                if l.is_empty() || l.starts_with('#') {
                    format!("{l}\n")
                } else {
                    format!("{l}?vid={vid}\n")
                }
            })
            .collect();
        return playlist_response(body, request.head);
    }
    playlist_response(got.body, request.head)
}

/// Media of a channel not on air here, from the node it is live on (in a cluster).
async fn remote_media(
    hls: &Hls,
    request: &HlsRequest,
    channel: &ChannelName,
    file: &str,
) -> Response {
    let Some(got) = fetch_remote(hls, request, channel, String::new(), false).await else {
        return not_found(&format!("channel {channel} is not live"));
    };
    if got.status != 200 {
        return passed_on(got);
    }
    let content_type = if file.ends_with(".ts") {
        "video/mp2t"
    } else if file.ends_with(".mp4") {
        "video/mp4"
    } else {
        "video/iso.segment"
    };
    serve_bytes(
        got.body,
        content_type,
        request.range.as_deref(),
        request.head,
    )
}

/// Asks the cluster (never for another node's signed fetch: no second hop).
async fn fetch_remote(
    hls: &Hls,
    request: &HlsRequest,
    channel: &ChannelName,
    query: String,
    playlist: bool,
) -> Option<Upstreamed> {
    if request.signed {
        return None;
    }
    let upstream = hls.upstream()?;
    upstream
        .fetch(UpstreamRequest {
            channel,
            path: &request.path,
            query,
            playlist,
            playlist_ttl: Duration::from_secs_f64(hls.settings.targets.part.max(0.1)),
        })
        .await
}

/// Another node's refusal, passed on as it said it.
fn passed_on(got: Upstreamed) -> Response {
    let code = StatusCode::from_u16(got.status).unwrap_or(StatusCode::BAD_GATEWAY);
    status(code, &String::from_utf8_lossy(&got.body))
}

fn client_hash(hls: &Hls, client: Option<SocketAddr>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(hls.settings.salt);
    hasher.update(
        client
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    hex::encode(&hasher.finalize()[..16])
}

fn playlist_response(body: impl Into<Bytes>, head: bool) -> Response {
    let body: Bytes = body.into();
    let len = body.len();
    let mut response = Response::new(if head {
        Bytes::new().into()
    } else {
        body.into()
    });
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// Media bytes with HEAD and single-range support.
fn serve_bytes(
    bytes: Bytes,
    content_type: &'static str,
    range: Option<&str>,
    head: bool,
) -> Response {
    let total = bytes.len();
    let (code, body, content_range) = match range.map(|r| parse_range(r, total as u64)) {
        None => (StatusCode::OK, bytes, None),
        Some(Some((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            bytes.slice(start as usize..=end as usize),
            Some(format!("bytes {start}-{end}/{total}")),
        ),
        Some(None) => {
            let mut response = status(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let len = body.len();
    let mut response = Response::new(if head {
        Bytes::new().into()
    } else {
        body.into()
    });
    *response.status_mut() = code;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60, immutable"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    response
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` -> inclusive bounds within `total`; `None` when it
/// cannot be satisfied (several ranges are answered with the first). Shared with
/// `http::files`, which serves files from disk (`hls` may not import `http`).
pub fn parse_range(range: &str, total: u64) -> Option<(u64, u64)> {
    let spec = range
        .trim()
        .strip_prefix("bytes=")?
        .split(',')
        .next()?
        .trim();
    let (a, b) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (total.saturating_sub(n), total - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            total - 1
        } else {
            b.parse::<u64>().ok()?.min(total - 1)
        };
        (start, end)
    };
    (start <= end && start < total).then_some((start, end))
}

fn status(code: StatusCode, text: &str) -> Response {
    let mut response = Response::new(text.to_string().into());
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn not_found(why: &str) -> Response {
    status(StatusCode::NOT_FOUND, &format!("{why}\n"))
}

fn bad_request(why: &str) -> Response {
    status(StatusCode::BAD_REQUEST, &format!("{why}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Some((0, 1)));
    }

    #[test]
    fn query_parameters() {
        let q = "vid=abc&_HLS_msn=4&_HLS_part=2&flag";
        assert_eq!(param(q, "vid"), Some("abc"));
        assert_eq!(param(q, "_HLS_msn"), Some("4"));
        assert_eq!(param(q, "flag"), Some(""));
        assert_eq!(param(q, "x"), None);
    }
}

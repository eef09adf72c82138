//! The residents' front door: the pages the server fills itself, so that a link pasted
//! into a chat app (which runs no script) shows a title, a time and a station.
//!
//! | route | what |
//! |---|---|
//! | `GET /stations` | the directory: center -> institute -> station, and search by name |
//! | `GET /programme[?center=&institute=&range=today\|week&kind=]` | the programme (节目单): city, a center or an institute, today or this week, by kind |
//! | `GET /s/{channel}` | a station: live now, the programme ahead, past sessions |
//! | `GET /e/{id}` | one planned item: countdown, then the player, then its replay |
//! | `GET /e/{id}/poster` | the item's A4 poster with a QR code made here |
//! | `GET /tv` | the TV home: live channels as tiles for a remote's arrow keys |
//! | any other `GET` a browser makes for a page | the 404 page in Chinese, with a link home |
//!
//! The pages are HTML templates (`pages/*.html`) whose `{{name}}` holes are filled with
//! escaped text; their scripts (`/assets/*.js`) read the JSON API for the rest. Absolute
//! URLs (share cards, the QR code) are built from the request's `Host` header.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::ApiError;
use super::pages::{page, with_device_cookie};
use super::{State, with_state};
use crate::audience::now_ms;
use crate::catalog::ItemStatus;
use crate::ids::{ChannelName, StationId};

const STATIONS: &str = include_str!("pages/stations.html");
const PROGRAMME: &str = include_str!("pages/programme.html");
const STATION: &str = include_str!("pages/station.html");
const ITEM: &str = include_str!("pages/item.html");
const POSTER: &str = include_str!("pages/poster.html");
const TV_HOME: &str = include_str!("pages/tvhome.html");
const NOT_FOUND: &str = include_str!("pages/notfound.html");

/// First path segments that are never pages: their own routes answer a miss in plain text
/// (API clients, players and publishers read that, not HTML).
const NOT_PAGES: [&str; 10] = [
    "api", "whip", "whep", "hls", "replay", "assets", "metrics", "healthz", "publish", "admin",
];

pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let host = warp::header::optional::<String>("host");
    let cookie = warp::header::optional::<String>("cookie");
    let stations = warp::get()
        .and(warp::path!("stations"))
        .map(|| page(STATIONS));
    let programme = warp::get()
        .and(warp::path!("programme"))
        .map(|| page(PROGRAMME));
    let tv_home = warp::get().and(warp::path!("tv")).map(|| page(TV_HOME));
    // A name that is no channel name (`x.ics`, the calendar feed) is left to other routes.
    let station =
        warp::get()
            .and(warp::path!("s" / String))
            .and_then(|name: String| async move {
                ChannelName::parse(&name).ok_or_else(warp::reject::not_found)
            })
            .and(host)
            .and(cookie)
            .and(with_state(state.clone()))
            .then(
                |channel: ChannelName,
                 host: Option<String>,
                 cookie: Option<String>,
                 state: State| async move {
                    station_page(&channel, host.as_deref(), cookie, &state).await
                },
            );
    let item = warp::get()
        .and(warp::path!("e" / i64))
        .and(host)
        .and(cookie)
        .and(with_state(state.clone()))
        .then(
            |id: i64, host: Option<String>, cookie: Option<String>, state: State| async move {
                item_page(id, host.as_deref(), cookie, &state).await
            },
        );
    let poster = warp::get()
        .and(warp::path!("e" / i64 / "poster"))
        .and(host)
        .and(with_state(state.clone()))
        .then(|id: i64, host: Option<String>, state: State| async move {
            poster_page(id, host.as_deref(), &state).await
        });
    stations
        .or(programme)
        .unify()
        .or(tv_home)
        .unify()
        .or(station)
        .unify()
        .or(item)
        .unify()
        .or(poster)
        .unify()
        .boxed()
}

/// The last route: a browser asking for a page nobody serves gets the 404 page; anything
/// else (API clients, players) keeps the plain-text answer of the route it missed.
pub(super) fn fallback() -> BoxedFilter<(Response,)> {
    warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("accept"))
        .and_then(|path: FullPath, accept: Option<String>| async move {
            let first = path.as_str().trim_start_matches('/').split('/').next();
            let wants_html = accept.is_some_and(|a| a.contains("text/html"));
            if wants_html && !first.is_some_and(|f| NOT_PAGES.contains(&f)) {
                Ok(not_found(
                    "这个地址没有对应的页面，可能是链接输错了或已失效。",
                ))
            } else {
                Err(warp::reject::not_found())
            }
        })
        .boxed()
}

/// The 404 page saying `why`.
pub(super) fn not_found(why: &str) -> Response {
    let mut r = filled(NOT_FOUND, &[("why", why)]);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// An error as a page: a miss is the 404 page, anything else the plain answer.
fn error_page(err: ApiError, why: &str) -> Response {
    match err {
        ApiError::NotFound(_) => not_found(why),
        other => other.into_response(),
    }
}

/// `template` with every `{{name}}` replaced by the escaped text of `name` in `values`,
/// or by the markup of `name` in `raw` (made here: the fact lines, the QR code).
fn fill(template: &str, values: &[(&str, &str)], raw: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        if let Some((_, v)) = values.iter().find(|(k, _)| *k == name) {
            escape_into(&mut out, v);
        } else if let Some((_, markup)) = raw.iter().find(|(k, _)| *k == name) {
            out.push_str(markup);
        } else {
            tracing::error!(name, "a page template names a value nobody gives");
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn filled(template: &str, values: &[(&str, &str)]) -> Response {
    html(fill(template, values, &[]))
}

fn html(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// `http(s)://host` of this request: the `Host` header when it looks like a host name
/// (letters, digits, `.-:[]`), else loopback.
fn origin(host: Option<&str>, state: &State) -> String {
    let scheme = if state.https { "https" } else { "http" };
    let host = host
        .map(str::trim)
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// A time as residents read it, in Beijing time: `2026年12月7日 星期一 19:30`.
fn beijing(ms: i64) -> String {
    let Some(tz) = FixedOffset::east_opt(8 * 3600) else {
        return String::new();
    };
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    let t = t.with_timezone(&tz);
    let weekday =
        ["一", "二", "三", "四", "五", "六", "日"][t.weekday().num_days_from_monday() as usize];
    format!(
        "{}年{}月{}日 星期{weekday} {:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "lecture" => "理论宣讲",
        "film_class" => "电影党史课",
        _ => "节目",
    }
}

fn status_text(status: &str) -> &'static str {
    match status {
        "live" => "正在直播",
        "ended" => "本场已结束",
        "cancelled" => "本场已取消",
        "missed" => "本场未能按时开始",
        _ => "",
    }
}

/// A station's names, for its page and its items'.
struct StationFacts {
    id: i64,
    name: String,
    institute: String,
    center: String,
    center_id: i64,
}

impl StationFacts {
    fn place(&self) -> String {
        format!("{} · {} · {}", self.center, self.institute, self.name)
    }
}

async fn station_facts(state: &State, channel: &str) -> Result<StationFacts, ApiError> {
    let card = state.catalog.station_by_channel(channel).await?;
    Ok(StationFacts {
        id: card.id,
        name: card.name,
        institute: card.institute.name,
        center: card.center.name,
        center_id: card.center.id,
    })
}

/// `/s/{channel}`.
async fn station_page(
    channel: &ChannelName,
    host: Option<&str>,
    cookie: Option<String>,
    state: &State,
) -> Response {
    let facts = match station_facts(state, channel.as_str()).await {
        Ok(f) => f,
        Err(e) => {
            return error_page(
                e,
                &format!("没有频道为“{channel}”的站点，请从站点目录查找。"),
            );
        }
    };
    let url = format!("{}/s/{channel}", origin(host, state));
    let now = now_ms();
    let next = match state
        .catalog
        .station_items(StationId(facts.id), now, 10, now)
        .await
    {
        // The next one that will take place (not a cancelled one).
        Ok(items) => items
            .into_iter()
            .find(|i| matches!(i.status, ItemStatus::Scheduled | ItemStatus::Live))
            .map(|i| format!("下一场：{} {}", beijing(i.starts_at_ms), i.title)),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let description = match next {
        Some(next) => format!("{} · {next}", facts.place()),
        None => format!("{} · 直播、节目预告与回看", facts.place()),
    };
    let center_href = format!("/stations?center={}", facts.center_id);
    let where_ = format!("{} · {}", facts.center, facts.institute);
    let body = fill(
        STATION,
        &[
            ("title", &format!("{} · 飞燕", facts.name)),
            ("og_title", &format!("{}（{}）", facts.name, facts.center)),
            ("description", &description),
            ("url", &url),
            ("channel", channel.as_str()),
            ("center_href", &center_href),
            ("center", &facts.center),
            ("station", &facts.name),
            ("where", &where_),
        ],
        &[],
    );
    with_device_cookie(html(body), cookie, state)
}

/// What the pages show of one planned item.
struct ItemFacts {
    id: i64,
    /// `lecture` or `film_class`.
    kind: String,
    title: String,
    speaker: Option<String>,
    topic: Option<String>,
    film: Option<String>,
    starts_at_ms: i64,
    /// `scheduled`, `live`, `ended`, `cancelled` or `missed`.
    status: String,
    channel: String,
    station: StationFacts,
}

impl ItemFacts {
    fn when(&self) -> String {
        beijing(self.starts_at_ms)
    }

    /// `<li>` lines for the speaker, topic and film (escaped).
    fn fact_lines(&self, labelled: bool) -> String {
        let mut out = String::new();
        for (label, value) in [
            ("主讲", &self.speaker),
            ("主题", &self.topic),
            ("影片", &self.film.as_ref().map(|f| format!("《{f}》"))),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                if labelled {
                    out.push_str(&format!(
                        "<li><span class=\"label\">{label}</span><span>{}</span></li>",
                        escape(v)
                    ));
                } else {
                    out.push_str(&format!("<li>{label}：{}</li>", escape(v)));
                }
            }
        }
        out
    }

    fn description(&self) -> String {
        let mut d = format!("{} · {}", self.when(), self.station.place());
        if let Some(s) = self.speaker.as_deref().filter(|s| !s.is_empty()) {
            d.push_str(&format!(" · 主讲：{s}"));
        }
        if let Some(f) = self.film.as_deref() {
            d.push_str(&format!(" · 影片：《{f}》"));
        }
        d
    }
}

async fn item_facts(state: &State, id: i64) -> Result<ItemFacts, ApiError> {
    let item = state.catalog.planned_item(id, now_ms()).await?;
    let station = station_facts(state, &item.station.channel).await?;
    Ok(ItemFacts {
        id,
        kind: item.kind.as_str().to_string(),
        title: item.title,
        speaker: item.speaker,
        topic: item.topic,
        film: item.film.map(|f| f.title),
        starts_at_ms: item.starts_at_ms,
        status: serde_json::to_value(item.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        channel: item.station.channel,
        station,
    })
}

fn item_missing(id: i64) -> String {
    format!("没有编号为 {id} 的节目，它可能已被删除；请到站点页面查看最新节目单。")
}

/// `/e/{id}`.
async fn item_page(id: i64, host: Option<&str>, cookie: Option<String>, state: &State) -> Response {
    let item = match item_facts(state, id).await {
        Ok(i) => i,
        Err(e) => return error_page(e, &item_missing(id)),
    };
    let url = format!("{}/e/{id}", origin(host, state));
    let when = item.when();
    let kind_label = kind_label(&item.kind);
    let body = fill(
        ITEM,
        &[
            (
                "title",
                &format!("{} · {} · 飞燕", item.title, item.station.name),
            ),
            ("og_title", &format!("{kind_label}：{}", item.title)),
            ("description", &item.description()),
            ("url", &url),
            ("id", &item.id.to_string()),
            ("channel", &item.channel),
            ("status", &item.status),
            ("station", &item.station.name),
            ("kind", &item.kind),
            ("kind_label", kind_label),
            ("item_title", &item.title),
            ("starts_at", &crate::catalog::rfc3339(item.starts_at_ms)),
            ("when", &when),
            ("where", &item.station.place()),
            ("state_text", status_text(&item.status)),
        ],
        &[("facts", &item.fact_lines(true))],
    );
    with_device_cookie(html(body), cookie, state)
}

/// `/e/{id}/poster`.
async fn poster_page(id: i64, host: Option<&str>, state: &State) -> Response {
    let item = match item_facts(state, id).await {
        Ok(i) => i,
        Err(e) => return error_page(e, &item_missing(id)),
    };
    let url = format!("{}/e/{id}", origin(host, state));
    let qr = match qr_svg(&url) {
        Ok(svg) => svg,
        Err(e) => return ApiError::Internal(format!("QR code for {url}: {e}")).into_response(),
    };
    let body = fill(
        POSTER,
        &[
            ("title", &format!("海报 · {} · 飞燕", item.title)),
            ("id", &item.id.to_string()),
            ("kind_label", kind_label(&item.kind)),
            ("item_title", &item.title),
            ("when", &item.when()),
            ("where", &item.station.place()),
            ("url", &url),
        ],
        &[("facts", &item.fact_lines(false)), ("qr", &qr)],
    );
    html(body)
}

/// The QR code of `text` as inline SVG markup (no XML declaration), black on white with
/// its quiet zone, error correction M (a poster may get a crease or a pin through it).
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let svg = code
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build();
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].replacen(
        "<svg",
        "<svg role=\"img\" aria-label=\"本节目页面的二维码\"",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_escapes_values_and_puts_markup_as_is() {
        let t = "<title>{{a}}</title><p>{{b}}</p>{{m}}{{";
        assert_eq!(
            fill(
                t,
                &[("a", "x<y>&\"'"), ("b", "中文")],
                &[("m", "<i>ok</i>")]
            ),
            "<title>x&lt;y&gt;&amp;&quot;&#39;</title><p>中文</p><i>ok</i>{{"
        );
    }

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        // 2026-12-06T12:30:00Z is 20:30 on a Sunday in Beijing.
        assert_eq!(beijing(1_796_560_200_000), "2026年12月6日 星期日 20:30");
    }

    #[test]
    fn qr_svg_is_inline_markup() {
        let svg = qr_svg("http://127.0.0.1:8080/e/42").unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{svg}");
        assert!(!svg.contains("<?xml"));
        assert!(!svg.contains("style="));
    }
}

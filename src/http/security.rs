//! Security and CORS headers, decided in one place for every answer.
//!
//! - Every answer carries the page policy: `Content-Security-Policy` (built by
//!   [`content_security_policy`]), `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: strict-origin-when-cross-origin` and `X-Frame-Options: DENY`. A JSON
//!   or SDP answer opened in a tab is a document too, so the API gets the same headers as
//!   the pages; they cost nothing to a `fetch`.
//! - `Strict-Transport-Security` only when [`ResponsePolicy::new`] is told the listener is
//!   HTTPS (`secure`); plain HTTP never sends it (browsers ignore it there anyway).
//! - CORS (`Access-Control-Allow-Origin: *`) only for WHIP/WHEP resources and the public
//!   read endpoints ([`RouteClass`]); administrator routes, statistics, CSV exports and
//!   `/metrics` get none, so a page on another origin cannot read them with a token it
//!   stole or guessed.
//!
//! Referrer policy: `strict-origin-when-cross-origin` rather than `no-referrer`. Other sites
//! learn only our origin (never a channel, a `?quality=`, a viewer id or a replay id in a
//! path), while same-origin POSTs keep a real `Origin` header (under `no-referrer` browsers
//! send `Origin: null` on them), which a check against cross-site requests on the
//! cookie-carrying interaction routes can rely on later.

use warp::http::Method;
use warp::http::header::{HeaderMap, HeaderName, HeaderValue};

/// The `Content-Security-Policy` of every page: scripts and styles only from `/assets/`,
/// media from the server or `blob:` (hls.js), and fetches to the server itself plus
/// `connect_origins` (the cluster's other nodes, e.g. `https://node2.example:8443`).
pub fn content_security_policy(connect_origins: &[String]) -> String {
    let mut connect = String::from("'self'");
    for origin in connect_origins {
        connect.push(' ');
        connect.push_str(origin);
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob:; worker-src 'self' blob:; connect-src {connect}; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// What kind of route a request reached, for CORS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// `/whip/...`, `/whep/...`: any origin may publish and watch (RFC 9725 §4.2 expects
    /// browser clients on other origins).
    Media,
    /// Unauthenticated reads residents' pages on other origins may show: `/api/live`,
    /// `/api/channels/{c}`, `/api/screenings/{id}`, the programme (`/api/items/{id}`,
    /// `/api/programme`, `/api/directory`, `/api/stations/{c}/page`), `/healthz`, live HLS under `/hls/`
    /// (players on other origins) (GET, HEAD, OPTIONS).
    PublicRead,
    /// Everything else: pages (same origin), administrators, statistics, CSV, metrics,
    /// pull sources, session figures.
    SameOrigin,
}

impl RouteClass {
    /// The class of `method path`.
    pub fn of(method: &Method, path: &str) -> RouteClass {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["whip" | "whep", ..] => RouteClass::Media,
            _ if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) => {
                RouteClass::SameOrigin
            }
            ["api", "live"]
            | ["api", "channels", _]
            | ["api", "screenings", _]
            | ["api", "items", _]
            | ["api", "programme"]
            | ["api", "directory"]
            | ["api", "stations", _, "page"]
            | ["healthz"]
            | ["hls", ..] => RouteClass::PublicRead,
            _ => RouteClass::SameOrigin,
        }
    }
}

/// The headers every answer gets, built once when the routes are made.
#[derive(Debug, Clone)]
pub struct ResponsePolicy {
    /// The page policy, with the cluster's origins in `connect-src`.
    csp: HeaderValue,
    /// `Strict-Transport-Security`, only when served over HTTPS.
    hsts: Option<HeaderValue>,
}

impl ResponsePolicy {
    /// The policy for a listener: `connect_origins` go into `connect-src` (see
    /// [`content_security_policy`]); `secure` (the listener speaks HTTPS) adds
    /// `Strict-Transport-Security: max-age=31536000` (one year, this host only: a
    /// station's LAN names are not ours to pin).
    ///
    /// Origins that are not valid header text are left out rather than breaking every page.
    pub fn new(connect_origins: &[String], secure: bool) -> ResponsePolicy {
        let origins: Vec<String> = connect_origins
            .iter()
            .filter(|o| HeaderValue::from_str(o).is_ok() && !o.contains([';', ' ', ',']))
            .cloned()
            .collect();
        let csp = HeaderValue::from_str(&content_security_policy(&origins))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
        ResponsePolicy {
            csp,
            hsts: secure.then(|| HeaderValue::from_static("max-age=31536000")),
        }
    }

    /// Adds the security headers and, by [`RouteClass`], the CORS headers to an answer.
    pub fn apply(&self, method: &Method, path: &str, headers: &mut HeaderMap) {
        let set = |h: &mut HeaderMap, name: &'static str, value: HeaderValue| {
            h.insert(HeaderName::from_static(name), value);
        };
        set(headers, "content-security-policy", self.csp.clone());
        set(
            headers,
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        set(
            headers,
            "referrer-policy",
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        );
        set(headers, "x-frame-options", HeaderValue::from_static("DENY"));
        if let Some(hsts) = &self.hsts {
            set(headers, "strict-transport-security", hsts.clone());
        }
        match RouteClass::of(method, path) {
            RouteClass::Media => {
                set(
                    headers,
                    "access-control-allow-origin",
                    HeaderValue::from_static("*"),
                );
                set(
                    headers,
                    "access-control-allow-methods",
                    HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
                );
                set(
                    headers,
                    "access-control-allow-headers",
                    HeaderValue::from_static("authorization, content-type, if-match"),
                );
                set(
                    headers,
                    "access-control-expose-headers",
                    HeaderValue::from_static("location, link, etag, accept-patch, accept-post"),
                );
            }
            RouteClass::PublicRead => {
                set(
                    headers,
                    "access-control-allow-origin",
                    HeaderValue::from_static("*"),
                );
                if *method == Method::OPTIONS {
                    set(
                        headers,
                        "access-control-allow-methods",
                        HeaderValue::from_static("GET, HEAD, OPTIONS"),
                    );
                }
            }
            // A preflight for a same-origin route gets no CORS headers: the browser refuses
            // the cross-origin request.
            RouteClass::SameOrigin => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classed_for_cors() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(RouteClass::of(&post, "/whip/st-1"), RouteClass::Media);
        assert_eq!(
            RouteClass::of(&Method::DELETE, "/whep/st-1/abc"),
            RouteClass::Media
        );
        assert_eq!(
            RouteClass::of(&Method::OPTIONS, "/whep/st-1"),
            RouteClass::Media
        );
        assert_eq!(RouteClass::of(&get, "/api/live"), RouteClass::PublicRead);
        assert_eq!(
            RouteClass::of(&get, "/api/channels/st-1"),
            RouteClass::PublicRead
        );
        assert_eq!(
            RouteClass::of(&get, "/api/screenings/3"),
            RouteClass::PublicRead
        );
        assert_eq!(RouteClass::of(&get, "/healthz"), RouteClass::PublicRead);
        for (m, p) in [
            (&post, "/api/login"),
            (&Method::OPTIONS, "/api/login"),
            (&post, "/api/logout"),
            (&get, "/api/me"),
            (&get, "/api/admin/hierarchy"),
            (&get, "/api/stats/table"),
            (&get, "/api/sessions/1"),
            (&get, "/api/sources"),
            (&post, "/api/screenings/3/start"),
            (&post, "/api/screenings"),
            (&get, "/metrics"),
            (&get, "/admin"),
            (&get, "/"),
        ] {
            assert_eq!(RouteClass::of(m, p), RouteClass::SameOrigin, "{m} {p}");
        }
    }

    #[test]
    fn cluster_origins_extend_connect_src_only() {
        let csp = content_security_policy(&["https://node2.example:8443".into()]);
        assert!(
            csp.contains("connect-src 'self' https://node2.example:8443;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self';"), "{csp}");
        let p = ResponsePolicy::new(&["bad; script-src *".into()], false);
        assert!(!p.csp.to_str().unwrap().contains("script-src *"));
        assert!(p.hsts.is_none());
        assert!(ResponsePolicy::new(&[], true).hsts.is_some());
    }
}

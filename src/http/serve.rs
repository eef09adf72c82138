//! The HTTP accept loop: warp's filters served by hyper's HTTP/1 connections, with idle
//! keep-alive connections closed.
//!
//! `warp::serve` keeps a keep-alive connection open for as long as the client does, and
//! hyper holds a read and a write buffer for each. Every WHEP viewer's
//! browser leaves such a connection behind after its POST and keeps it up to five
//! minutes: a lecture's audience would hold thousands of them. Here a connection with no
//! request in flight for `idle` is closed (a later DELETE opens a new one), and the
//! client's address reaches the filters as [`ClientAddr`] (warp's own `addr::remote`
//! only works under `warp::serve`).
//!
//! With TLS (`[http] tls`), each connection's handshake runs in its own task, and a
//! plain-HTTP request that reaches the HTTPS port is answered with a short 400 naming
//! the `https://` address instead of a TLS alert a person cannot read.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::debug;
use warp::Filter;
use warp::reply::Response;

use crate::config::IpRange;

/// The client a request came from, as [`TrustedProxies::client`] found it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A filter extracting the client's address, when the request came through [`serve`]:
/// the connection's peer, or, when that peer is a trusted proxy, the address its
/// `X-Forwarded-For` names (with port 0). The one place every route (login throttle,
/// WHEP and HLS client hashes) learns who is asking.
pub fn client_addr() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|addr: Option<ClientAddr>| addr.map(|a| a.0))
}

/// `[http] trusted_proxies`: the peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpRange>>);

impl TrustedProxies {
    /// Believes `X-Forwarded-For` from peers in `ranges` only.
    pub fn new(ranges: Vec<IpRange>) -> TrustedProxies {
        TrustedProxies(Arc::new(ranges))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The client of a request that came from `peer`: `peer` itself unless it is trusted;
    /// then the right-most `X-Forwarded-For` entry that is not a trusted proxy (each
    /// proxy appends the address it saw, so entries left of the first untrusted one are
    /// the client's own claims). An entry that is not an address stops the walk.
    pub fn client(&self, peer: SocketAddr, headers: &warp::http::HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop
                .parse::<IpAddr>()
                .ok()
                .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
            else {
                break;
            };
            client = SocketAddr::new(ip.to_canonical(), 0);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// Requests in flight on one connection and when the last one finished.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last finished.
    last_done_ms: AtomicU64,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let done = Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        Some(self.opened.elapsed().saturating_sub(done))
    }

    fn finished(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_done_ms.store(ms, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `routes` on `listener` (over TLS when `tls` is given) until `stop` fires, then
/// lets the open connections finish their requests and returns when all are closed.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    idle: Duration,
    tls: Option<TlsAcceptor>,
    proxies: TrustedProxies,
    mut stop: oneshot::Receiver<()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let (closing, closing_rx) = watch::channel(false);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let (routes, closing) = (routes.clone(), closing_rx.clone());
        let proxies = proxies.clone();
        match tls.clone() {
            None => {
                tokio::spawn(connection(stream, addr, proxies, routes, idle, closing));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    if let Some(stream) = handshake(acceptor, stream, addr).await {
                        connection(stream, addr, proxies, routes, idle, closing).await;
                    }
                });
            }
        }
    }
    drop(listener);
    drop(closing_rx);
    let _ = closing.send(true);
    // Every connection task holds a receiver: this returns when the last one is done.
    closing.closed().await;
}

/// Completes a TLS handshake, or answers a plain-HTTP request with a readable 400.
async fn handshake(
    acceptor: TlsAcceptor,
    mut stream: TcpStream,
    addr: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    // A TLS ClientHello starts with record type 22; an HTTP request with a method name.
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if matches!(peeked, Ok(Ok(1))) && first[0].is_ascii_uppercase() {
        let body = "This port speaks HTTPS: use an https:// address.\n";
        let reply = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            debug!(%addr, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%addr, "TLS handshake timed out");
            None
        }
    }
}

async fn connection<S, F>(
    stream: S,
    addr: SocketAddr,
    proxies: TrustedProxies,
    routes: F,
    idle: Duration,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_done_ms: AtomicU64::new(0),
    });
    let warp_service = warp::service(routes);
    let seen = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let client = proxies.client(addr, req.headers());
        req.extensions_mut().insert(ClientAddr(client));
        seen.in_flight.fetch_add(1, Ordering::AcqRel);
        let response = warp_service.clone().call(req);
        let seen = seen.clone();
        async move {
            let response = response.await;
            seen.finished();
            response
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut check = tokio::time::interval(idle.min(Duration::from_secs(1)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(%addr, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = closing.changed(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick(), if !shutting_down => {
                if activity.idle_for().is_some_and(|d| d >= idle) {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Plain HTTP answered with `308 Permanent Redirect` to the same host and path on HTTPS
/// port `https_port` (`[http] redirect_listen`); 308 keeps the method, so a WHIP POST
/// to the old address still arrives as a POST.
pub fn https_redirect(
    https_port: u16,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::header::headers_cloned()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            move |headers: warp::http::HeaderMap, path: warp::path::FullPath, query: String| {
                use warp::Reply;
                use warp::http::{StatusCode, header};
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                let Some(host) = host.and_then(host_without_port) else {
                    return warp::reply::with_status(
                        "This address redirects to HTTPS, but the request named no Host.\n",
                        StatusCode::BAD_REQUEST,
                    )
                    .into_response();
                };
                let port = if https_port == 443 {
                    String::new()
                } else {
                    format!(":{https_port}")
                };
                let query = if query.is_empty() {
                    query
                } else {
                    format!("?{query}")
                };
                let location = format!("https://{host}{port}{}{query}", path.as_str());
                let mut reply = warp::reply::with_status(
                    format!("Moved to {location}\n"),
                    StatusCode::PERMANENT_REDIRECT,
                )
                .into_response();
                if let Ok(value) = header::HeaderValue::from_str(&location) {
                    reply.headers_mut().insert(header::LOCATION, value);
                }
                reply
            },
        )
}

/// `example.org:80` -> `example.org`, `[::1]:80` -> `[::1]`; `None` when it is not a
/// plausible host (so nothing odd reaches the Location header).
fn host_without_port(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let plausible = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    plausible.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::{TrustedProxies, host_without_port};
    use crate::config::IpRange;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let proxies = TrustedProxies::new(vec![
            IpRange::parse("127.0.0.1").unwrap(),
            IpRange::parse("10.0.0.0/8").unwrap(),
        ]);
        let mut h = warp::http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.1.1.1".parse().unwrap(),
        );
        let client = |peer: &str, h: &warp::http::HeaderMap| {
            proxies.client(peer.parse().unwrap(), h).ip().to_string()
        };
        // Through two trusted hops: the first untrusted address from the right.
        assert_eq!(client("127.0.0.1:5000", &h), "203.0.113.9");
        // From an untrusted peer the header is ignored.
        assert_eq!(client("198.51.100.1:5000", &h), "198.51.100.1");
        assert_eq!(
            TrustedProxies::default()
                .client("127.0.0.1:5000".parse().unwrap(), &h)
                .ip()
                .to_string(),
            "127.0.0.1"
        );
        // Garbage stops the walk at the last trusted hop.
        h.insert("x-forwarded-for", "nonsense, 10.2.2.2".parse().unwrap());
        assert_eq!(client("127.0.0.1:5000", &h), "10.2.2.2");
        // No header: the peer.
        assert_eq!(client("127.0.0.1:5000", &Default::default()), "127.0.0.1");
    }

    #[test]
    fn hosts_lose_their_port_and_odd_ones_are_refused() {
        assert_eq!(host_without_port("station.lan:8080"), Some("station.lan"));
        assert_eq!(host_without_port("10.0.0.5"), Some("10.0.0.5"));
        assert_eq!(host_without_port("[::1]:80"), Some("[::1]"));
        assert_eq!(host_without_port("evil.test/path"), None);
        assert_eq!(host_without_port(""), None);
    }
}

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
//!
//! Hostile clients meet [`Limits`]: past `max_connections` (or `max_connections_per_client`
//! from one peer address) a new connection is closed as it is accepted; a request's
//! headers (and a TLS handshake) must arrive within `header_timeout`, its body within
//! `body_timeout` (else 408 and the connection closes), and an answer whose client stops
//! reading may stall for `write_timeout` before the connection is dropped. What was turned
//! away is counted in [`Connections::snapshot`] (`/metrics`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::debug;
use warp::Filter;
use warp::reply::Response;

use crate::config::{HttpConfig, IpRange};

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

/// What one listener allows a connection (`[http]` keys of the same names).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection with no request in flight this long is closed.
    pub idle: Duration,
    /// Open connections at most; the next is closed at accept.
    pub max_connections: usize,
    /// Open connections from one peer address at most (trusted proxies are exempt).
    pub max_connections_per_client: usize,
    /// From a request's first byte to the end of its headers; also the TLS handshake.
    pub header_timeout: Duration,
    /// From the end of a request's headers to the end of its body.
    pub body_timeout: Duration,
    /// How long writing an answer may make no progress.
    pub write_timeout: Duration,
}

impl Limits {
    /// The limits `[http]` sets.
    pub fn from_config(http: &HttpConfig) -> Limits {
        Limits {
            idle: Duration::from_secs(http.idle_timeout_secs),
            max_connections: http.max_connections,
            max_connections_per_client: http.max_connections_per_client,
            header_timeout: Duration::from_secs(http.header_timeout_secs),
            body_timeout: Duration::from_secs(http.body_timeout_secs),
            write_timeout: Duration::from_secs(http.write_timeout_secs),
        }
    }
}

/// The open connections of the listeners sharing it, per peer address, and what the
/// limits turned away; read by `/metrics`.
#[derive(Debug, Default)]
pub struct Connections {
    /// Connections open now (a gauge).
    open: AtomicUsize,
    /// Open connections per peer address (canonical IP). A std mutex: held for one map
    /// update, never across an `.await`.
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Closed at accept: `max_connections` or `max_connections_per_client` reached.
    refused: AtomicU64,
    /// Requests answered 408 because their body did not arrive within `body_timeout`.
    body_timeouts: AtomicU64,
    /// Connections dropped because an answer made no progress for `write_timeout`.
    write_timeouts: AtomicU64,
}

impl Connections {
    /// `(name, help, type, value)` for `/metrics`.
    pub fn snapshot(&self) -> [(&'static str, &'static str, &'static str, u64); 4] {
        [
            (
                "feiyan_http_connections",
                "open HTTP connections",
                "gauge",
                self.open.load(Ordering::Relaxed) as u64,
            ),
            (
                "feiyan_http_connections_refused_total",
                "HTTP connections closed at accept: max_connections or max_connections_per_client open",
                "counter",
                self.refused.load(Ordering::Relaxed),
            ),
            (
                "feiyan_http_body_timeouts_total",
                "HTTP requests answered 408: the body did not arrive within body_timeout_secs",
                "counter",
                self.body_timeouts.load(Ordering::Relaxed),
            ),
            (
                "feiyan_http_write_timeouts_total",
                "HTTP connections dropped: the client read nothing for write_timeout_secs",
                "counter",
                self.write_timeouts.load(Ordering::Relaxed),
            ),
        ]
    }

    /// Counts a new connection from `ip` in, or `None` (counted as refused) when a cap
    /// is reached. `ip` is `None` for a peer the per-client cap does not apply to.
    fn admit(self: &Arc<Self>, ip: Option<IpAddr>, limits: &Limits) -> Option<Admitted> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if let Some(ip) = ip {
            let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= limits.max_connections_per_client {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *n += 1;
        }
        Some(Admitted {
            connections: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; counted out when dropped.
struct Admitted {
    connections: Arc<Connections>,
    ip: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self
                .connections
                .per_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// Serves `routes` on `listener` (over TLS when `tls` is given) until `stop` fires, then
/// lets the open connections finish their requests and returns when all are closed.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    proxies: TrustedProxies,
    connections: Arc<Connections>,
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
        // A proxy carries many clients: only the total cap applies to it.
        let ip = addr.ip().to_canonical();
        let per_client = (!proxies.trusts(ip)).then_some(ip);
        let Some(admitted) = connections.admit(per_client, &limits) else {
            debug!(%addr, "HTTP connection closed at accept: connection cap reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (routes, closing) = (routes.clone(), closing_rx.clone());
        let proxies = proxies.clone();
        let counted = connections.clone();
        match tls.clone() {
            None => {
                tokio::spawn(async move {
                    let _admitted = admitted;
                    connection(stream, addr, proxies, routes, limits, counted, closing).await;
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _admitted = admitted;
                    if let Some(stream) =
                        handshake(acceptor, stream, addr, limits.header_timeout).await
                    {
                        connection(stream, addr, proxies, routes, limits, counted, closing).await;
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
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    // A TLS ClientHello starts with record type 22; an HTTP request with a method name.
    let peeked = tokio::time::timeout(timeout, stream.peek(&mut first)).await;
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
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
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
    limits: Limits,
    connections: Arc<Connections>,
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
    let counted = connections.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let client = proxies.client(addr, req.headers());
        let timed_out = Arc::new(AtomicBool::new(false));
        let mut req = req.map(|body| DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
            timed_out: timed_out.clone(),
        });
        req.extensions_mut().insert(ClientAddr(client));
        seen.in_flight.fetch_add(1, Ordering::AcqRel);
        let response = warp_service.clone().call(req);
        let (seen, counted) = (seen.clone(), counted.clone());
        async move {
            let response = response.await;
            seen.finished();
            if timed_out.load(Ordering::Acquire) {
                counted.body_timeouts.fetch_add(1, Ordering::Relaxed);
                debug!(%addr, "HTTP request body timed out");
                return Ok(body_timed_out(limits.body_timeout));
            }
            response
        }
    });
    let stream = WriteDeadline {
        inner: stream,
        timeout: limits.write_timeout,
        stalled: None,
        connections,
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let idle = limits.idle;
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

/// 408 with `Connection: close`: the rest of the body may still be on its way.
fn body_timed_out(limit: Duration) -> Response {
    use warp::Reply;
    let mut r = warp::reply::with_status(
        format!(
            "the request body did not arrive within {} s; send it faster or in smaller parts\n",
            limit.as_secs()
        ),
        warp::http::StatusCode::REQUEST_TIMEOUT,
    )
    .into_response();
    r.headers_mut().insert(
        warp::http::header::CONNECTION,
        warp::http::HeaderValue::from_static("close"),
    );
    r
}

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Read(#[from] hyper::Error),
    #[error("the request body did not arrive in time")]
    TimedOut,
}

/// A request body that fails once its deadline passes (`[http] body_timeout_secs`,
/// counted from the end of the headers), flagging `timed_out` so the answer becomes 408
/// whatever the handler made of the error.
struct DeadlineBody {
    inner: Incoming,
    /// Not registered with the timer until a read of the body waits.
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(BodyError::TimedOut)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BodyError::from))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(BodyError::TimedOut)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once they have made no progress for `timeout`: a
/// client that stops reading a large answer (a replay MP4, a segment) frees its task and
/// buffers instead of holding them for as long as it stays connected.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Since when writes have been waiting, as the sleep that ends the wait; `None` while
    /// they progress.
    stalled: Option<Pin<Box<Sleep>>>,
    connections: Arc<Connections>,
}

impl<S> WriteDeadline<S> {
    /// A write, flush or shutdown is pending: fail it once the stall is `timeout` old.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.connections
                    .write_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                debug!("HTTP answer made no progress: connection dropped");
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client read nothing for write_timeout_secs",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, ready: std::io::Result<T>) -> Poll<std::io::Result<T>> {
        self.stalled = None;
        Poll::Ready(ready)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stall(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stall(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stall(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stall(cx),
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

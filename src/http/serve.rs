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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower_service::Service;
use tracing::debug;
use warp::Filter;
use warp::reply::Response;

/// The remote address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A filter extracting the client's address, when the request came through [`serve`].
pub fn client_addr() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|addr: Option<ClientAddr>| addr.map(|a| a.0))
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

/// Serves `routes` on `listener` until `stop` fires, then lets the open connections
/// finish their requests and returns when all are closed.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    idle: Duration,
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
        tokio::spawn(connection(
            stream,
            addr,
            routes.clone(),
            idle,
            closing_rx.clone(),
        ));
    }
    drop(listener);
    drop(closing_rx);
    let _ = closing.send(true);
    // Every connection task holds a receiver: this returns when the last one is done.
    closing.closed().await;
}

async fn connection<F>(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    routes: F,
    idle: Duration,
    mut closing: watch::Receiver<bool>,
) where
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
        req.extensions_mut().insert(ClientAddr(addr));
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

//! Standards-following WHIP (RFC 9725) and WHEP client, used by tests and by `feiyan-bench`.
//!
//! The client deliberately talks to the server only through the public protocols: an HTTP
//! `POST` of an `application/sdp` offer, a `201 Created` answer with a `Location` header, and a
//! `DELETE` of that location to end the session. Nothing here knows about feiyan's internals,
//! so the same code can measure any WHIP/WHEP server.
//!
//! * [`media`] turns an H.264 Annex-B file and an Ogg Opus file into pre-packetized RTP
//!   payloads, so a publisher knows the exact bytes it sends.
//! * [`whip`] publishes that media in real time ([`WhipPublisher`]).
//! * [`whep`] receives a stream and records what arrived and when ([`WhepViewer`]), on
//!   webrtc-rs or, for benchmarks with many viewers, on rtc's sans-IO stack.

pub mod media;
pub mod whep;
pub mod whip;

pub use media::{SyntheticMedia, make_test_media, make_test_media_sized};
pub use whep::{
    PreparedViewer, TrackStats, VideoCodecs, ViewerOptions, ViewerStack, ViewerStats, WhepViewer,
};
pub use whip::{PublisherOptions, PublisherStats, WhipPublisher};

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use tokio::sync::watch;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Everything that can go wrong while publishing or viewing.
///
/// Messages are meant to be read by a person running a test or a benchmark, so they carry the
/// URL, the HTTP status and the response body where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL given to the client, or a `Location` header, could not be parsed.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The text that failed to parse.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The HTTP request could not be sent or its response could not be read.
    #[error("{method} {url} failed: {}", error_chain(.source))]
    Http {
        /// `POST` or `DELETE`.
        method: &'static str,
        /// The URL that was requested.
        url: String,
        /// The transport-level error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (e.g. an unusable TLS or proxy setting).
    #[error("cannot build HTTP client: {}", error_chain(.0))]
    HttpClient(#[source] reqwest::Error),
    /// The server answered with a status other than the one the protocol requires.
    #[error("{method} {url} returned HTTP {status} (expected {expected}): {body}")]
    UnexpectedStatus {
        /// `POST` or `DELETE`.
        method: &'static str,
        /// The URL that was requested.
        url: String,
        /// The status the server sent.
        status: u16,
        /// What the protocol expects, e.g. `201 Created`.
        expected: &'static str,
        /// The response body as text (truncated), usually the server's explanation.
        body: String,
    },
    /// A `201 Created` arrived without the `Location` header WHIP/WHEP require.
    #[error("POST {url} returned 201 Created without a Location header")]
    MissingLocation {
        /// The URL that was requested.
        url: String,
    },
    /// The WebRTC stack rejected an operation.
    #[error("WebRTC error while {context}: {source}")]
    WebRtc {
        /// What the client was doing.
        context: &'static str,
        /// The error from the `webrtc` crate.
        #[source]
        source: webrtc::error::Error,
    },
    /// Negotiation finished but not in a usable way (e.g. no common codec).
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    /// Something did not happen within its deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long the client waited.
        after: Duration,
    },
    /// Reading a media file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A media file is not what the source expects (not Annex-B H.264, not Ogg Opus, ...).
    #[error("invalid media: {0}")]
    InvalidMedia(String),
    /// Running the ffmpeg CLI failed.
    #[error("ffmpeg failed: {0}")]
    Ffmpeg(String),
}

/// `error: cause: root cause`, because reqwest's top-level message ("error sending request")
/// hides the useful part (e.g. "Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl ClientError {
    pub(crate) fn webrtc(context: &'static str) -> impl FnOnce(webrtc::error::Error) -> Self {
        move |source| ClientError::WebRtc { context, source }
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ClientError>;

/// Which of a session's two tracks, audio or video: it indexes the client's per-track
/// counters and payload logs. Its own type, not the relay's `MediaKind`: the client speaks only
/// the public protocols and shares no types with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The Opus track.
    Audio,
    /// The H.264 (or, for viewers, any negotiated video codec) track.
    Video,
}

impl fmt::Display for TrackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        })
    }
}

/// Packet and byte counters for one kind of media.
///
/// Bytes are RTP *payload* bytes: headers and header extensions are rewritten by servers and
/// interceptors, the payload is the part that must arrive unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounters {
    /// Number of RTP packets.
    pub packets: u64,
    /// Sum of their payload sizes in bytes.
    pub bytes: u64,
}

impl KindCounters {
    pub(crate) fn add(&mut self, payload_len: usize) {
        self.packets += 1;
        self.bytes += payload_len as u64;
    }
}

/// Locks `m`, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave counters inconsistent in a harmful way.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sums a `(instant, bytes)` log over `[from, to)`; the log is in time order.
pub(crate) fn count_between(
    log: &[(Instant, u32)],
    from: Instant,
    to: Option<Instant>,
) -> KindCounters {
    let start = log.partition_point(|(t, _)| *t < from);
    let end = to.map_or(log.len(), |to| log.partition_point(|(t, _)| *t < to));
    let mut c = KindCounters::default();
    for (_, len) in log.get(start..end).unwrap_or(&[]) {
        c.add(*len as usize);
    }
    c
}

/// Settings shared by publishers and viewers for building the local peer connection and for
/// the HTTP exchange.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Local UDP addresses the peer connection binds (one host candidate each). The default,
    /// `127.0.0.1:0`, keeps test traffic on loopback; use a LAN address to reach a remote
    /// server. A wildcard binds every non-loopback interface.
    pub udp_addrs: Vec<SocketAddr>,
    /// Upper bound on ICE candidate gathering before the offer is sent (non-trickle WHIP/WHEP
    /// sends one complete offer).
    pub gather_timeout: Duration,
    /// Upper bound on the HTTP POST/DELETE exchange.
    pub http_timeout: Duration,
    /// Upper bound on ICE + DTLS reaching `connected` after the answer is applied.
    pub connect_timeout: Duration,
    /// An HTTP client to reuse (its connection pool is shared), e.g. across the many viewers
    /// of a benchmark. When `None`, each session builds its own with `http_timeout`.
    pub http_client: Option<reqwest::Client>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            gather_timeout: Duration::from_secs(5),
            http_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            http_client: None,
        }
    }
}

/// The result of a successful WHIP/WHEP `POST`.
pub(crate) struct SessionResource {
    /// Absolute URL of the session resource (the `Location` header resolved against the
    /// endpoint URL); `DELETE` goes here.
    pub(crate) location: reqwest::Url,
    /// The SDP answer.
    pub(crate) answer_sdp: String,
}

/// Maximum number of body bytes quoted in an error message.
const MAX_ERROR_BODY: usize = 2000;

fn truncate_body(mut body: String) -> String {
    if body.len() > MAX_ERROR_BODY {
        let mut cut = MAX_ERROR_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push_str("...");
    }
    body.trim().to_owned()
}

pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|e| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

pub(crate) fn http_client(opts: &ConnectOptions) -> Result<reqwest::Client> {
    if let Some(client) = &opts.http_client {
        return Ok(client.clone());
    }
    reqwest::Client::builder()
        .timeout(opts.http_timeout)
        .build()
        .map_err(ClientError::HttpClient)
}

/// A webrtc-rs peer connection not yet handed to its publisher or viewer: stopped (its
/// tasks aborted, the connection closed, its socket released) when dropped, unless
/// disarmed. A caller that gives up on a `connect` part-way (a timeout around it during
/// the POST) drops the future; without this the connection would keep its socket.
pub(crate) struct CloseOnDrop {
    pc: Option<Arc<dyn webrtc::peer_connection::PeerConnection>>,
    tasks: Option<Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>>,
}

impl CloseOnDrop {
    pub(crate) fn new(
        pc: Arc<dyn webrtc::peer_connection::PeerConnection>,
        tasks: Option<Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>>,
    ) -> CloseOnDrop {
        CloseOnDrop {
            pc: Some(pc),
            tasks,
        }
    }

    /// The connection is in use: leave it running.
    pub(crate) fn disarm(&mut self) {
        self.pc = None;
    }

    fn abort_tasks(&self) {
        if let Some(tasks) = &self.tasks {
            for task in lock(tasks).drain(..) {
                task.abort();
            }
        }
    }

    /// Stops the connection now and waits for it to close.
    pub(crate) async fn close(&mut self) {
        if let Some(pc) = self.pc.take() {
            self.abort_tasks();
            let _ = pc.close().await;
        }
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(pc) = self.pc.take() {
            self.abort_tasks();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = pc.close().await;
                });
            }
        }
    }
}

/// A webrtc-rs peer connection on `udp_addrs` that reports its events to `handler`.
pub(crate) async fn build_peer_connection(
    media_engine: webrtc::peer_connection::MediaEngine,
    registry: webrtc::peer_connection::Registry,
    handler: &Arc<StateHandler>,
    udp_addrs: &[SocketAddr],
) -> Result<Arc<dyn webrtc::peer_connection::PeerConnection>> {
    let pc = webrtc::peer_connection::PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(handler.clone() as Arc<dyn PeerConnectionEventHandler>)
        .with_udp_addrs(udp_addrs.to_vec())
        .build()
        .await
        .map_err(ClientError::webrtc("creating the peer connection"))?;
    Ok(Arc::new(pc))
}

/// Creates and applies an offer, waits for ICE gathering (non-trickle WHIP/WHEP sends one
/// complete offer) and returns the offer SDP with its candidates.
pub(crate) async fn complete_offer(
    pc: &dyn webrtc::peer_connection::PeerConnection,
    handler: &StateHandler,
    gather_timeout: Duration,
) -> Result<String> {
    let offer = pc
        .create_offer(None)
        .await
        .map_err(ClientError::webrtc("creating the offer"))?;
    pc.set_local_description(offer)
        .await
        .map_err(ClientError::webrtc("applying the offer"))?;
    handler.wait_gathering_complete(gather_timeout).await?;
    let offer = pc.local_description().await.ok_or_else(|| {
        ClientError::Negotiation("no local description after gathering".to_owned())
    })?;
    Ok(offer.sdp)
}

/// `POST`s an SDP offer as WHIP/WHEP specify and returns the session resource and answer.
pub(crate) async fn post_offer(
    client: &reqwest::Client,
    url: &reqwest::Url,
    bearer_token: Option<&str>,
    offer_sdp: String,
) -> Result<SessionResource> {
    let mut request = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/sdp")
        .body(offer_sdp);
    if let Some(token) = bearer_token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let http_err = |source| ClientError::Http {
        method: "POST",
        url: url.to_string(),
        source,
    };
    let response = request.send().await.map_err(http_err)?;
    let status = response.status();
    let answered_at = response.url().clone();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().map(str::to_owned));
    let body = response.text().await.map_err(http_err)?;
    if status != reqwest::StatusCode::CREATED {
        return Err(ClientError::UnexpectedStatus {
            method: "POST",
            url: url.to_string(),
            status: status.as_u16(),
            expected: "201 Created",
            body: truncate_body(body),
        });
    }
    let location = match location {
        Some(Ok(text)) => text,
        Some(Err(_)) => {
            return Err(ClientError::InvalidUrl {
                url: "<non-ASCII Location header>".to_owned(),
                reason: "Location header is not visible ASCII".to_owned(),
            });
        }
        None => {
            return Err(ClientError::MissingLocation {
                url: url.to_string(),
            });
        }
    };
    // Relative to where the answer came from: a 307 (RFC 9725 §4.2) may have moved it.
    let location = answered_at
        .join(&location)
        .map_err(|e| ClientError::InvalidUrl {
            url: location.clone(),
            reason: e.to_string(),
        })?;
    if body.trim().is_empty() {
        return Err(ClientError::Negotiation(format!(
            "POST {url} returned 201 Created with an empty SDP answer"
        )));
    }
    Ok(SessionResource {
        location,
        answer_sdp: body,
    })
}

/// `DELETE`s a session resource; any 2xx counts as success.
pub(crate) async fn delete_resource(
    client: &reqwest::Client,
    location: &reqwest::Url,
    bearer_token: Option<&str>,
) -> Result<()> {
    let mut request = client.delete(location.clone());
    if let Some(token) = bearer_token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let http_err = |source| ClientError::Http {
        method: "DELETE",
        url: location.to_string(),
        source,
    };
    let response = request.send().await.map_err(http_err)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(ClientError::UnexpectedStatus {
            method: "DELETE",
            url: location.to_string(),
            status: status.as_u16(),
            expected: "2xx",
            body: truncate_body(body),
        });
    }
    Ok(())
}

/// Callback type for remote tracks; publishers ignore them, viewers record them.
pub(crate) type TrackCallback = Arc<dyn Fn(Arc<dyn TrackRemote>) + Send + Sync>;

/// Peer connection event handler shared by publishers and viewers: it publishes the gathering
/// and connection states through `watch` channels so the async API can wait on them, and hands
/// remote tracks to an optional callback.
pub(crate) struct StateHandler {
    pub(crate) gathering: watch::Sender<RTCIceGatheringState>,
    pub(crate) connection: watch::Sender<RTCPeerConnectionState>,
    pub(crate) on_track: Option<TrackCallback>,
}

impl StateHandler {
    pub(crate) fn new(on_track: Option<TrackCallback>) -> Arc<Self> {
        Arc::new(Self {
            gathering: watch::channel(RTCIceGatheringState::New).0,
            connection: watch::channel(RTCPeerConnectionState::New).0,
            on_track,
        })
    }

    /// Waits until ICE gathering is complete (or `timeout` elapses).
    pub(crate) async fn wait_gathering_complete(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.gathering.subscribe();
        let wait = rx.wait_for(|s| *s == RTCIceGatheringState::Complete);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClientError::Timeout {
                what: "ICE gathering to complete",
                after: timeout,
            }),
        }
    }

    /// Waits until the peer connection is `connected`; fails early on `failed`/`closed`.
    pub(crate) async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.connection.subscribe();
        let wait = rx.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(state)) if *state == RTCPeerConnectionState::Connected => Ok(()),
            Ok(Ok(state)) => Err(ClientError::Negotiation(format!(
                "peer connection became {} before connecting",
                *state
            ))),
            _ => Err(ClientError::Timeout {
                what: "the peer connection to connect (ICE + DTLS)",
                after: timeout,
            }),
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for StateHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        self.connection.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(cb) = &self.on_track {
            cb(track);
        }
    }
}

/// A WHIP/WHEP endpoint that never answers, for tests of callers that give up.
#[cfg(test)]
pub(crate) mod silent_endpoint {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    /// Runs the `connect` that `make` builds for a URL (with `path`) on an endpoint that
    /// never answers, gives up on it (drops the future) once its offer is POSTed, and
    /// asserts that the offer's UDP socket is then released.
    pub(crate) async fn assert_giving_up_releases_the_socket<F: Future>(
        path: &str,
        make: impl FnOnce(String) -> F,
    ) {
        let (addr, offer, endpoint) = start().await;
        let mut connect = Box::pin(make(format!("http://{addr}{path}")));
        let offer = tokio::select! {
            offer = offer => offer.expect("the offer was POSTed"),
            _ = &mut connect => panic!("the POST cannot have been answered"),
        };
        let port = candidate_port(&offer);
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
        // The caller gives up while the POST is in flight.
        drop(connect);
        assert!(released(port).await, "UDP port {port} is still held");
        endpoint.abort();
    }

    /// Listens on 127.0.0.1; the first request's body (the SDP offer) is handed over and
    /// the request is then left unanswered until the task is aborted.
    async fn start() -> (SocketAddr, oneshot::Receiver<String>, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break text[end + 4..].to_owned();
                }
            };
            let _ = tx.send(body);
            // Holds the connection open without a reply.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            let _ = stream.shutdown().await;
        });
        (addr, rx, task)
    }

    /// The port of the offer's 127.0.0.1 host candidate.
    fn candidate_port(sdp: &str) -> u16 {
        sdp.lines()
            .find_map(|l| {
                let fields: Vec<&str> =
                    l.strip_prefix("a=candidate:")?.split_whitespace().collect();
                (fields.get(4) == Some(&"127.0.0.1")).then(|| fields.get(5)?.parse().ok())?
            })
            .expect("the offer has a 127.0.0.1 host candidate")
    }

    /// Whether the UDP port can be bound again within five seconds (its socket closed).
    async fn released(port: u16) -> bool {
        for _ in 0..50 {
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_resolves_relative_to_endpoint() {
        let base = parse_url("http://127.0.0.1:8080/whip/live?x=1").expect("valid url");
        let abs = base.join("/session/abc").expect("joins");
        assert_eq!(abs.as_str(), "http://127.0.0.1:8080/session/abc");
        let rel = base.join("abc").expect("joins");
        assert_eq!(rel.as_str(), "http://127.0.0.1:8080/whip/abc");
        let full = base.join("http://other:1/r").expect("joins");
        assert_eq!(full.as_str(), "http://other:1/r");
    }

    #[test]
    fn long_bodies_are_truncated() {
        let body = "é".repeat(MAX_ERROR_BODY);
        let out = truncate_body(body);
        assert!(out.len() <= MAX_ERROR_BODY + 3);
        assert!(out.ends_with("..."));
    }

    #[test]
    fn count_between_uses_half_open_ranges() {
        let t0 = Instant::now();
        let log: Vec<(Instant, u32)> = (0..10)
            .map(|i| (t0 + Duration::from_millis(i * 10), 100))
            .collect();
        let all = count_between(&log, t0, None);
        assert_eq!(
            all,
            KindCounters {
                packets: 10,
                bytes: 1000
            }
        );
        let mid = count_between(
            &log,
            t0 + Duration::from_millis(20),
            Some(t0 + Duration::from_millis(50)),
        );
        assert_eq!(mid.packets, 3);
        let none = count_between(&log, t0 + Duration::from_secs(1), None);
        assert_eq!(none.packets, 0);
    }
}

//! WHEP viewer: offers receive-only audio + video and records what arrives.
//!
//! The viewer `POST`s its offer, applies the answer and `DELETE`s the session at the end;
//! the peer connection runs on one of two stacks ([`ViewerStack`]): webrtc-rs's
//! (`webrtc_rs`) or rtc's sans-IO one driven by a single task (`light`). Both record into
//! the same `record` of what arrived, whose timeline starts at the `POST`.

mod light;
mod offer;
mod options;
mod record;
mod webrtc_rs;

pub use options::{VideoCodecs, ViewerOptions, ViewerStack};
pub use record::{TrackStats, ViewerStats};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use webrtc::peer_connection::PeerConnection;

use record::ReceiveRecord;

use super::{
    ClientError, CloseOnDrop, KindCounters, Result, SessionResource, StateHandler, TrackKind,
    delete_resource, http_client, lock, parse_url, post_offer,
};

/// The running peer connection of a viewer.
enum Stack {
    /// See [`ViewerStack::WebRtc`].
    WebRtc {
        /// The local peer connection; closed by `close`.
        pc: Arc<dyn PeerConnection>,
        /// Keeps the state channels alive and exposes the connection state.
        handler: Arc<StateHandler>,
        /// The remote video track once open, for [`WhepViewer::send_video_rtcp`].
        video_track: webrtc_rs::VideoTrackSlot,
    },
    /// See [`ViewerStack::Light`]; its driver task is in `tasks`.
    Light {
        /// Tells the driver to close the connection and stop.
        stop: Mutex<Option<oneshot::Sender<()>>>,
        /// `Some(true)` once connected, `Some(false)` once failed or closed.
        connected: watch::Receiver<Option<bool>>,
    },
}

/// A WHEP session receiving audio + video.
pub struct WhepViewer {
    /// The peer connection and how to close it.
    stack: Stack,
    /// HTTP client reused for the `DELETE`.
    http: reqwest::Client,
    /// The session resource URL (resolved `Location`).
    location: reqwest::Url,
    /// Bearer token repeated on `DELETE`.
    bearer_token: Option<String>,
    /// Written by the receive tasks.
    state: Arc<Mutex<ReceiveRecord>>,
    /// Receive tasks, aborted on close/drop.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// When the `POST` was sent.
    posted_at: Instant,
    /// When the answer arrived.
    answered_at: Instant,
    /// Set once `close` has run, so it is idempotent and drop does not close twice.
    closed: AtomicBool,
}

/// A viewer with its offer made and not yet sent ([`WhepViewer::prepare`]).
pub struct PreparedViewer {
    /// Taken by [`PreparedViewer::connect`]; still here on drop means never sent.
    offer: Option<Offer>,
    parts: Parts,
}

/// What a prepared viewer keeps beside its peer connection.
struct Parts {
    opts: ViewerOptions,
    http: reqwest::Client,
    state: Arc<Mutex<ReceiveRecord>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// A prepared peer connection of either stack.
enum Offer {
    Light(Box<light::LightSession>),
    WebRtc(webrtc_rs::WebRtcSession),
}

impl PreparedViewer {
    /// The offer this viewer will `POST` (`None` once sent): for tests that send offers
    /// themselves, e.g. ones that never go on to connect.
    pub fn offer_sdp(&self) -> Option<&str> {
        match self.offer.as_ref()? {
            Offer::Light(session) => Some(&session.offer_sdp),
            Offer::WebRtc(session) => Some(&session.offer_sdp),
        }
    }

    /// `POST`s the prepared offer to the WHEP endpoint `url` and continues as
    /// [`WhepViewer::connect`] does.
    pub async fn connect(mut self, url: &str, bearer_token: Option<&str>) -> Result<WhepViewer> {
        let offer = self
            .offer
            .take()
            .ok_or_else(|| ClientError::Negotiation("this offer was already sent".to_owned()))?;
        // Closes a webrtc-rs peer connection if this future is dropped part-way (a caller's
        // timeout during the POST, say), as on an error.
        let mut guard = match &offer {
            Offer::WebRtc(session) => Some(CloseOnDrop::new(
                session.pc.clone(),
                Some(self.parts.tasks.clone()),
            )),
            Offer::Light(_) => None,
        };
        let viewer = async {
            let offer_sdp = match &offer {
                Offer::Light(session) => session.offer_sdp.clone(),
                Offer::WebRtc(session) => session.offer_sdp.clone(),
            };
            let posted = self.parts.post(offer_sdp, url, bearer_token).await?;
            match offer {
                Offer::Light(session) => {
                    self.parts
                        .connect_light(*session, posted, bearer_token)
                        .await
                }
                Offer::WebRtc(session) => {
                    self.parts
                        .connect_webrtc(session, posted, bearer_token)
                        .await
                }
            }
        }
        .await;
        if let Some(guard) = &mut guard {
            match viewer {
                Ok(_) => guard.disarm(),
                Err(_) => guard.close().await,
            }
        }
        viewer
    }
}

impl Parts {
    /// `POST`s `offer_sdp` to the WHEP endpoint `url`; the session resource and
    /// `[posted_at, answered_at]`, the start of the viewer's timeline.
    async fn post(
        &self,
        offer_sdp: String,
        url: &str,
        bearer_token: Option<&str>,
    ) -> Result<(SessionResource, [Instant; 2])> {
        let endpoint = parse_url(url)?;
        let posted_at = Instant::now();
        let resource = post_offer(&self.http, &endpoint, bearer_token, offer_sdp).await?;
        Ok((resource, [posted_at, Instant::now()]))
    }

    /// [`PreparedViewer::connect`] on rtc's sans-IO peer connection, once the offer is posted.
    async fn connect_light(
        &self,
        mut session: light::LightSession,
        (resource, [posted_at, answered_at]): (SessionResource, [Instant; 2]),
        bearer_token: Option<&str>,
    ) -> Result<WhepViewer> {
        if let Err(e) = light::answer(&mut session, resource.answer_sdp.clone()) {
            let _ = delete_resource(&self.http, &resource.location, bearer_token).await;
            return Err(e);
        }
        let (connected_tx, mut connected_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let driver = tokio::spawn(light::drive(
            session,
            self.state.clone(),
            self.opts.request_keyframe_on_start,
            connected_tx,
            stop_rx,
        ));
        lock(&self.tasks).push(driver);
        let viewer = self.viewer(
            Stack::Light {
                stop: Mutex::new(Some(stop_tx)),
                connected: connected_rx.clone(),
            },
            resource.location,
            bearer_token,
            [posted_at, answered_at],
        );
        if self.opts.wait_connected {
            let after = self.opts.connect.connect_timeout;
            let outcome = tokio::time::timeout(after, connected_rx.wait_for(Option::is_some))
                .await
                .map(|r| r.map(|c| *c == Some(true)).unwrap_or(false));
            let failed = match outcome {
                Ok(true) => None,
                Ok(false) => Some(ClientError::Negotiation(
                    "the peer connection failed before connecting (ICE or DTLS)".to_owned(),
                )),
                Err(_) => Some(ClientError::Timeout {
                    what: "ICE + DTLS to connect",
                    after,
                }),
            };
            if let Some(e) = failed {
                let _ = viewer.close().await;
                return Err(e);
            }
        }
        Ok(viewer)
    }

    /// [`PreparedViewer::connect`] on webrtc-rs's async peer connection, once the offer is
    /// posted; the caller closes the session's `pc` when this fails.
    async fn connect_webrtc(
        &self,
        session: webrtc_rs::WebRtcSession,
        (resource, [posted_at, answered_at]): (SessionResource, [Instant; 2]),
        bearer_token: Option<&str>,
    ) -> Result<WhepViewer> {
        let wait_connected = self
            .opts
            .wait_connected
            .then_some(self.opts.connect.connect_timeout);
        let applied = webrtc_rs::answer(
            &session,
            resource.answer_sdp.clone(),
            wait_connected,
            &self.state,
        )
        .await;
        if let Err(e) = applied {
            let _ = delete_resource(&self.http, &resource.location, bearer_token).await;
            return Err(e);
        }
        Ok(self.viewer(
            Stack::WebRtc {
                pc: session.pc,
                handler: session.handler,
                video_track: session.video_track,
            },
            resource.location,
            bearer_token,
            [posted_at, answered_at],
        ))
    }

    /// The viewer of an answered offer; `[posted_at, answered_at]`.
    fn viewer(
        &self,
        stack: Stack,
        location: reqwest::Url,
        bearer_token: Option<&str>,
        [posted_at, answered_at]: [Instant; 2],
    ) -> WhepViewer {
        WhepViewer {
            stack,
            http: self.http.clone(),
            location,
            bearer_token: bearer_token.map(str::to_owned),
            state: self.state.clone(),
            tasks: self.tasks.clone(),
            posted_at,
            answered_at,
            closed: AtomicBool::new(false),
        }
    }
}

impl Drop for PreparedViewer {
    /// An offer never sent: webrtc-rs's peer connection has tasks to stop (the light one
    /// is only a socket and memory).
    fn drop(&mut self) {
        if let Some(Offer::WebRtc(session)) = self.offer.take() {
            drop(CloseOnDrop::new(session.pc, Some(self.parts.tasks.clone())));
        }
    }
}

impl WhepViewer {
    /// Starts viewing the WHEP endpoint `url`: [`WhepViewer::prepare`], then
    /// [`PreparedViewer::connect`].
    ///
    /// Builds a peer connection with receive-only audio and video transceivers (Opus; H.264
    /// constrained-baseline and baseline with packetization-mode=1, and VP8), waits for ICE
    /// gathering, `POST`s the offer (with `Authorization: Bearer` when a token is given),
    /// requires `201 Created` with a `Location`, applies the answer and, unless disabled,
    /// waits for the connection. Must be called inside a tokio runtime; the receive tasks run
    /// on it.
    pub async fn connect(
        url: &str,
        bearer_token: Option<&str>,
        opts: ViewerOptions,
    ) -> Result<WhepViewer> {
        parse_url(url)?;
        Self::prepare(opts).await?.connect(url, bearer_token).await
    }

    /// Makes a viewer's peer connection and its complete offer without sending it.
    ///
    /// A benchmark prepares its whole audience this way before the first `POST`: in a
    /// real audience each browser makes its own offer on its own device, so the offers
    /// should not compete with the server for the benchmark machine's CPU.
    pub async fn prepare(opts: ViewerOptions) -> Result<PreparedViewer> {
        let http = http_client(&opts.connect)?;
        let state = Arc::new(Mutex::new(ReceiveRecord::for_options(&opts)));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let offer = match opts.stack {
            ViewerStack::Light => Offer::Light(Box::new(light::offer(&opts).await?)),
            ViewerStack::WebRtc => Offer::WebRtc(webrtc_rs::offer(&opts, &state, &tasks).await?),
        };
        Ok(PreparedViewer {
            offer: Some(offer),
            parts: Parts {
                opts,
                http,
                state,
                tasks,
            },
        })
    }

    /// The session resource URL returned in `Location` (resolved to an absolute URL).
    pub fn location(&self) -> &str {
        self.location.as_str()
    }

    /// A snapshot of what has been received so far.
    pub fn stats(&self) -> ViewerStats {
        let connected = match &self.stack {
            Stack::WebRtc { handler, .. } => {
                *handler.connection.borrow()
                    == webrtc::peer_connection::RTCPeerConnectionState::Connected
            }
            Stack::Light { connected, .. } => *connected.borrow() == Some(true),
        };
        let mut s = lock(&self.state);
        if connected && s.connected_at.is_none() {
            // Approximation when `wait_connected` was off: first time a snapshot saw it.
            s.connected_at = Some(Instant::now());
        }
        s.stats(self.posted_at, self.answered_at)
    }

    /// Every payload received so far for `kind`, in arrival order. Empty unless
    /// [`ViewerOptions::record_payloads`] was set.
    pub fn received_payloads(&self, kind: TrackKind) -> Vec<Bytes> {
        lock(&self.state).payloads(kind)
    }

    /// `(RTP timestamp, arrival instant)` of every video picture completed so far, in
    /// arrival order. Empty unless [`ViewerOptions::record_frame_log`] was set.
    pub fn video_frame_log(&self) -> Vec<(u32, Instant)> {
        lock(&self.state).frame_log()
    }

    /// Packets and bytes of `kind` that arrived at or after `from` and before `to` (`None`: up
    /// to now). Zero unless [`ViewerOptions::record_arrival_log`] was set.
    pub fn received_between(
        &self,
        kind: TrackKind,
        from: Instant,
        to: Option<Instant>,
    ) -> KindCounters {
        lock(&self.state).received_between(kind, from, to)
    }

    /// The SSRC the server sends video with, once the video track is open (webrtc-rs
    /// stack only).
    pub async fn video_ssrc(&self) -> Option<u32> {
        let track = self.video_track()?;
        track.ssrcs().await.first().copied()
    }

    /// Sends RTCP about the video track, as crafted by the caller (a NACK, a receiver
    /// report): for tests of how the server takes feedback, well-formed or not. webrtc-rs
    /// stack only, once the video track is open.
    pub async fn send_video_rtcp(&self, packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> Result<()> {
        let track = self.video_track().ok_or_else(|| {
            ClientError::Negotiation("no open video track on a webrtc-rs viewer".to_owned())
        })?;
        track
            .write_rtcp(packets)
            .await
            .map_err(ClientError::webrtc("sending RTCP"))
    }

    fn video_track(&self) -> Option<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>> {
        match &self.stack {
            Stack::WebRtc { video_track, .. } => lock(video_track).clone(),
            Stack::Light { .. } => None,
        }
    }

    /// Ends the session: `DELETE`s the session resource and closes the peer connection. The
    /// connection is closed even if the `DELETE` fails; that error is returned. Calling it
    /// again does nothing. Counters stay readable afterwards.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let deleted =
            delete_resource(&self.http, &self.location, self.bearer_token.as_deref()).await;
        let closed = match &self.stack {
            Stack::WebRtc { pc, .. } => pc.close().await,
            Stack::Light { stop, .. } => {
                // The driver closes the connection (DTLS close_notify) and ends.
                if let Some(stop) = lock(stop).take() {
                    let _ = stop.send(());
                }
                let driver = lock(&self.tasks).pop();
                if let Some(mut driver) = driver {
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut driver).await;
                    driver.abort();
                }
                Ok(())
            }
        };
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        deleted?;
        closed.map_err(ClientError::webrtc("closing the peer connection"))
    }
}

impl Drop for WhepViewer {
    fn drop(&mut self) {
        if let Stack::Light { stop, .. } = &self.stack
            && let Some(stop) = lock(stop).take()
            && stop.send(()).is_ok()
        {
            // The driver closes the connection (DTLS close_notify) and ends by itself.
            return;
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if !self.closed.load(Ordering::SeqCst)
            && let Stack::WebRtc { pc, .. } = &self.stack
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let pc = pc.clone();
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller that gives up during the POST (a timeout around `connect`) must not leave
    /// a webrtc-rs peer connection holding its socket.
    #[tokio::test]
    async fn a_connect_dropped_during_the_post_releases_its_socket() {
        let prepared = WhepViewer::prepare(ViewerOptions::default()).await.unwrap();
        assert!(matches!(prepared.offer, Some(Offer::WebRtc(_))));
        crate::client::silent_endpoint::assert_giving_up_releases_the_socket(
            "/whep/st-1",
            |url| async move { prepared.connect(&url, None).await },
        )
        .await;
    }
}

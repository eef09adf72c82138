//! An edge's pulls beside its source pull: one per lower rendition and per codec its
//! viewers use, each a signed WHEP pull of the node the source comes from, fed into this
//! node's relay as that rendition or codec bridge stream. Sans decisions about media: the
//! relay says what is watched (`stream_viewers`, codec bridge requests), this starts a
//! pull for it and stops it [`IDLE_STOP`] after nobody here watches it any more.
//!
//! - A rendition `i` of the origin's ladder is stream `i` of the edge's local source
//!   (declared when the source pull opened); its pull asks `?quality=` its name and
//!   sends the video with [`LocalPublisher::send_rendition`]. Audio is shared and comes
//!   from the source pull, so a rendition pull's audio is dropped.
//! - A codec bridge the relay asks for (a VP8-only viewer of the H.264 edge source) is
//!   fed with [`SourceHandle::feed_bridge`] from a pull with `?codec=vp8`: the origin's
//!   bridge encodes it once for all its edges; the edge decodes and encodes nothing.
//!
//! A pull that drops is opened again (at most once a second) while it is wanted; its
//! stream's viewers keep their connections and pick up at the next keyframe. A rendition
//! whose pull stops or drops is paused in the relay ([`LocalPublisher::pause_rendition`]):
//! a viewer joining then starts on the next pull's keyframe, not on stale pictures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::Cluster;
use super::edge::{IDLE_STOP, SILENT, open_pull};
use crate::client::TrackKind;
use crate::ids::{ChannelName, SessionId};
use crate::media::{Codec, MediaKind};
use crate::relay::{BridgeRequest, LocalPublisher};

/// How long a dropped feed waits before its pull is opened again.
const RETRY: Duration = Duration::from_secs(1);

/// What one feed pulls and where its video goes.
#[derive(Clone, Debug)]
enum Want {
    /// Lower rendition `name`, stream `stream` (1-based) of the edge's local source.
    Rendition { stream: u8, name: String },
    /// The codec bridge stream `stream` in `codec`, pulled from the origin's bridge.
    Bridge { stream: u8, codec: Codec },
}

struct Feed {
    /// A codec bridge's (else a rendition's).
    bridge: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Since when no viewer here watches its stream (its start counts as unwatched, so a
    /// bridge asked for by a viewer still connecting gets [`IDLE_STOP`] to be watched).
    unwatched_since: Option<Instant>,
}

/// The feeds of one source pull.
pub(super) struct Feeds {
    cluster: Arc<Cluster>,
    channel: ChannelName,
    /// The node the source pull comes from: the feeds pull from it too.
    from: String,
    session: SessionId,
    /// The source pull's publisher, for the rendition feeds (`None` once released).
    publisher: Option<Arc<LocalPublisher>>,
    /// The lower renditions the local source declares (stream `i + 1` is `renditions[i]`).
    renditions: Vec<String>,
    running: HashMap<u8, Feed>,
}

impl Feeds {
    pub(super) fn new(
        cluster: Arc<Cluster>,
        channel: ChannelName,
        from: String,
        session: SessionId,
        publisher: Arc<LocalPublisher>,
        renditions: Vec<String>,
    ) -> Feeds {
        Feeds {
            cluster,
            channel,
            from,
            session,
            publisher: Some(publisher),
            renditions,
            running: HashMap::new(),
        }
    }

    /// The relay asks for a codec bridge of this source: pulled from the origin, which
    /// encodes it (H.264 sources only: an edge's source pull is always H.264).
    pub(super) fn bridge(&mut self, request: BridgeRequest) {
        if request.to != Codec::Vp8 {
            warn!(channel = %self.channel, to = ?request.to, "an edge source is H.264: no bridge to that codec");
            return;
        }
        if self.running.contains_key(&request.stream) {
            return;
        }
        self.start(Want::Bridge {
            stream: request.stream,
            codec: request.to,
        });
    }

    /// Starts the pulls of renditions viewers here watch now and stops those nobody has
    /// watched for [`IDLE_STOP`]; `watchers` is the relay's viewers per stream.
    pub(super) fn check(&mut self, watchers: &[usize]) {
        let watched = |stream: u8| watchers.get(usize::from(stream)).is_some_and(|n| *n > 0);
        for i in 0..self.renditions.len() {
            let stream = (i + 1) as u8;
            if watched(stream) && !self.running.contains_key(&stream) && self.publisher.is_some() {
                let name = self.renditions[i].clone();
                self.start(Want::Rendition { stream, name });
            }
        }
        let now = Instant::now();
        let mut idle = Vec::new();
        for (stream, feed) in &mut self.running {
            if watched(*stream) {
                feed.unwatched_since = None;
            } else if now.duration_since(*feed.unwatched_since.get_or_insert(now)) >= IDLE_STOP {
                idle.push(*stream);
            }
        }
        for stream in idle {
            if let Some(feed) = self.running.remove(&stream) {
                debug!(channel = %self.channel, stream, "edge feed idle: stopped");
                let _ = feed.stop.send(true);
            }
        }
    }

    /// Stops the rendition feeds, waiting for their pulls to close, so that the source
    /// pull's publisher is the last holder of the source (dropping it ends the source).
    /// Codec bridges go on until [`Feeds::stop`].
    pub(super) async fn stop_renditions(&mut self) {
        self.publisher = None;
        self.stop_where(|f| !f.bridge).await;
    }

    /// Stops every feed and waits for their pulls to close.
    pub(super) async fn stop(&mut self) {
        self.stop_where(|_| true).await;
    }

    async fn stop_where(&mut self, which: impl Fn(&Feed) -> bool) {
        let streams: Vec<u8> = self
            .running
            .iter()
            .filter(|(_, f)| which(f))
            .map(|(s, _)| *s)
            .collect();
        let feeds: Vec<Feed> = streams
            .iter()
            .filter_map(|s| self.running.remove(s))
            .collect();
        for feed in &feeds {
            let _ = feed.stop.send(true);
        }
        for feed in feeds {
            let _ = tokio::time::timeout(Duration::from_secs(3), feed.task).await;
        }
    }

    fn start(&mut self, want: Want) {
        let (stream, bridge) = match &want {
            Want::Rendition { stream, .. } => (*stream, false),
            Want::Bridge { stream, .. } => (*stream, true),
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(feed(
            self.cluster.clone(),
            self.channel.clone(),
            self.from.clone(),
            self.session,
            // A bridge sends through its own handle: holding the source would keep it
            // live after the source pull ends.
            if bridge { None } else { self.publisher.clone() },
            want,
            stopped,
        ));
        self.running.insert(
            stream,
            Feed {
                bridge,
                stop,
                task,
                unwatched_since: Some(Instant::now()),
            },
        );
    }
}

/// One feed: its pull, opened again while it is wanted, until `stop` says so.
async fn feed(
    cluster: Arc<Cluster>,
    channel: ChannelName,
    from: String,
    session: SessionId,
    publisher: Option<Arc<LocalPublisher>>,
    want: Want,
    mut stop: watch::Receiver<bool>,
) {
    // A bridge's stream exists while its handle does (dropping it lets its viewers go).
    let bridge = match &want {
        Want::Bridge { stream, .. } => {
            match cluster
                .relay
                .sources()
                .feed_bridge(channel.clone(), session, *stream)
                .await
            {
                Ok(handle) => Some(handle),
                Err(e) => {
                    warn!(%channel, stream, error = %e, "cannot feed the codec bridge");
                    return;
                }
            }
        }
        Want::Rendition { .. } => None,
    };
    let (stream, quality, vp8) = match &want {
        Want::Rendition { stream, name } => (*stream, Some(name.as_str()), false),
        Want::Bridge { stream, codec } => (*stream, None, *codec == Codec::Vp8),
    };
    let sink: &LocalPublisher = match (&bridge, &publisher) {
        (Some(b), _) => &b.publisher,
        (None, Some(p)) => p,
        (None, None) => return, // The source pull is ending.
    };
    // A rendition not fed keeps no pictures for late joiners (a bridge's stream goes with
    // its handle).
    let pause = || async {
        if bridge.is_none() {
            let _ = sink.pause_rendition(stream).await;
        }
    };
    loop {
        match open_pull(&cluster, &channel, &from, quality, vp8).await {
            Ok((viewer, mut packets)) => {
                info!(%channel, from, stream, ?quality, vp8, "edge feed up");
                let mut check = tokio::time::interval(Duration::from_millis(250));
                let mut last_media = Instant::now();
                let why = loop {
                    tokio::select! {
                        packet = packets.recv() => {
                            let Some((kind, packet)) = packet else {
                                break "the pull's receiver ended".to_string();
                            };
                            last_media = Instant::now();
                            if kind != TrackKind::Video {
                                continue;
                            }
                            if let Err(e) = sink.send_rendition(MediaKind::Video, stream, packet).await {
                                let _ = viewer.close().await;
                                debug!(%channel, stream, error = %e, "the relay took the feed's stream away");
                                return;
                            }
                        }
                        _ = check.tick() => {
                            if last_media.elapsed() > SILENT {
                                break format!("no media for {} s", SILENT.as_secs());
                            }
                        }
                        _ = stop.changed() => {
                            pause().await;
                            let _ = viewer.close().await;
                            return;
                        }
                    }
                };
                pause().await;
                let _ = viewer.close().await;
                warn!(%channel, from, stream, %why, "edge feed dropped; reopening");
            }
            Err(e) => warn!(%channel, from, stream, ?quality, error = %e, "edge feed refused"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

//! An edge's one pull of a channel: a signed WHEP session
//! ([`crate::client::WhepViewer`], H.264 + Opus) whose packets go into this node's relay
//! as a local source for the origin's session, so this node's viewers fan out here and
//! count in that one session.
//!
//! - **Where from.** The origin first, then the other alive nodes the registry says carry
//!   the channel (edges), least loaded first: a node past `[cluster]
//!   max_edges_per_origin` refuses (`503`), so past the limit nodes form a tree under the
//!   origin. A node refuses a pull from the node it pulls from itself (`409`), so two
//!   edges never feed each other.
//! - **Reconnects.** The pull stops [`IDLE_STOP`] after the channel's last viewer here
//!   leaves. It survives the origin's publisher reconnecting (the origin holds it like any
//!   viewer); when it drops (no media for [`SILENT`], the origin gone) it is opened again
//!   while viewers remain, woken by the other nodes' `NOTIFY`s: to the same session (the
//!   relay's reconnect grace continues it) or, when the channel went live again on another
//!   node, to the new one. This node's viewers keep their connections throughout: the
//!   relay holds a channel's viewers across a change of its source.
//!
//! - **Renditions and codecs.** The pull carries the source rendition in H.264 + Opus,
//!   and the edge offers the renditions of the node it pulls from (its `qualities`, read
//!   when the pull opens). A rendition or codec is pulled only while viewers here use it
//!   ([`super::feeds`]): a `?quality=360p` viewer makes the edge open a second signed
//!   pull with `?quality=360p`, a VP8-only viewer (the relay's codec bridge request) one
//!   with `?codec=vp8` whose video the origin's bridge encodes once for every edge. Both
//!   end [`IDLE_STOP`] after their last viewer here; an edge never transcodes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::rtp::packet::Packet as RtpPacket;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use super::feeds::Feeds;
use super::{Cluster, lock, sign};
use crate::audience::now_ms;
use crate::catalog::Origin;
use crate::client::{
    ConnectOptions, TrackKind, VideoCodecs, ViewerOptions, ViewerStack, WhepViewer,
};
use crate::config::SOURCE_QUALITY;
use crate::ids::ChannelName;
use crate::media::MediaKind;
use crate::relay::{BridgeRequest, LocalTracks, h264_codec, opus_codec};

/// How long a pull outlives the channel's last viewer on this node.
pub const IDLE_STOP: Duration = Duration::from_secs(5);

/// A pull that brought no media for this long is taken as dropped.
pub(super) const SILENT: Duration = Duration::from_secs(4);

/// How often a pull looks at this node's viewers (whether it is idle, which renditions
/// and codecs to pull).
const CHECK: Duration = Duration::from_millis(100);

/// How one pull ended.
enum Ended {
    /// No viewer here for [`IDLE_STOP`].
    Idle,
    /// The origin or the link went away.
    Dropped(String),
    /// The node asked did not take the pull (full, not carrying the channel, gone).
    Refused(String),
}

/// Pulls `channel` while this node has viewers of it; says on `ready` when it feeds the
/// relay. Ends (and leaves the edge table) [`IDLE_STOP`] after the channel's last viewer
/// here left; while viewers remain it keeps trying, also while no node is live on the
/// channel (its origin died and no other took it yet): they keep their connections.
pub(super) async fn run(cluster: Arc<Cluster>, channel: ChannelName, ready: watch::Sender<bool>) {
    let mut changes = cluster.changes.subscribe();
    // Subscribed before the first viewer is let in, so no codec bridge it needs is missed.
    let mut bridges = cluster.relay.sources().bridge_requests();
    let mut idle_since: Option<Instant> = None;
    loop {
        match cluster.catalog.channel_origin(&channel).await {
            Ok(Some(origin)) => {
                match pull_from_any(&cluster, &channel, &origin, &ready, &mut bridges).await {
                    Ended::Idle => break,
                    Ended::Dropped(why) | Ended::Refused(why) => {
                        let _ = ready.send(false);
                        warn!(%channel, origin = %origin.node_url, %why, "edge pull dropped; reconnecting");
                    }
                }
            }
            Ok(None) => {
                let _ = ready.send(false);
                debug!(%channel, "no node is live on the channel; waiting while viewers remain");
            }
            Err(e) => warn!(%channel, error = %e, "cannot look up the channel's origin"),
        }
        // Retry while viewers remain (or for IDLE_STOP after the last one).
        let viewers = cluster.relay.board().get(&channel).map_or(0, |s| s.viewers);
        if viewers == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= IDLE_STOP {
                info!(%channel, "edge pull ends: no viewers here");
                break;
            }
        } else {
            idle_since = None;
        }
        // A change from another node (a new origin) wakes the retry at once.
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    let _ = ready.send(false);
    lock(&cluster.edges).remove(&channel);
}

/// Where this node may pull `channel` from, in order: the origin, then the other alive
/// nodes carrying it (edges, by the registry's `channels`), the least loaded first. A
/// node past `max_edges_per_origin` refuses the pull, and the next one is tried: so the
/// nodes form a tree under the origin.
async fn sources(cluster: &Cluster, channel: &ChannelName, origin: &Origin) -> Vec<(i64, String)> {
    let me = cluster.catalog.this_node();
    let mut out = vec![(origin.node_id, origin.node_url.clone())];
    match cluster.catalog.cluster_nodes().await {
        Ok(mut nodes) => {
            nodes.sort_by_key(|n| n.viewers);
            out.extend(
                nodes
                    .into_iter()
                    .filter(|n| {
                        n.alive
                            && Some(n.id) != me
                            && n.id != origin.node_id
                            && !n.node_url.is_empty()
                            && n.channels.iter().any(|c| c == channel.as_str())
                    })
                    .map(|n| (n.id, n.node_url)),
            );
        }
        Err(e) => warn!(%channel, error = %e, "cannot list the nodes carrying the channel"),
    }
    out
}

/// Pulls from the first of [`sources`] that accepts this node's pull.
async fn pull_from_any(
    cluster: &Arc<Cluster>,
    channel: &ChannelName,
    origin: &Origin,
    ready: &watch::Sender<bool>,
    bridges: &mut broadcast::Receiver<BridgeRequest>,
) -> Ended {
    let mut refused = Vec::new();
    for (node, url) in sources(cluster, channel, origin).await {
        lock(&cluster.pulling_from).insert(channel.clone(), node);
        match pull_once(cluster, channel, origin, &url, ready, bridges).await {
            Ended::Refused(why) => refused.push(format!("{url}: {why}")),
            ended => {
                lock(&cluster.pulling_from).remove(channel);
                return ended;
            }
        }
    }
    lock(&cluster.pulling_from).remove(channel);
    Ended::Dropped(format!("no node took the pull ({})", refused.join("; ")))
}

/// A signed WHEP pull of `channel` from node `from`: rendition `quality` (the source when
/// `None`), its video in VP8 when `vp8` (the origin's codec bridge), else H.264. Its
/// packets arrive on the receiver.
pub(super) async fn open_pull(
    cluster: &Cluster,
    channel: &ChannelName,
    from: &str,
    quality: Option<&str>,
    vp8: bool,
) -> Result<(WhepViewer, mpsc::Receiver<(TrackKind, RtpPacket)>), String> {
    let path = format!("/whep/{channel}");
    let node = cluster.catalog.this_node().unwrap_or(0);
    let mut url = reqwest::Url::parse(&format!("{}{path}", from.trim_end_matches('/')))
        .map_err(|e| format!("node URL {from:?}: {e}"))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("edge", &node.to_string());
        if let Some(quality) = quality {
            query.append_pair("quality", quality);
        }
        if vp8 {
            query.append_pair("codec", "vp8");
        }
    }
    let signature = sign::sign(cluster.secret(), "POST", &path, now_ms() / 1000);
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&signature)
        .map_err(|e| format!("signature header: {e}"))?;
    headers.insert(sign::HEADER, value);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let (tx, packets) = mpsc::channel(4096);
    let options = ViewerOptions {
        connect: ConnectOptions {
            udp_addrs: vec![std::net::SocketAddr::new(cluster.pull_ip, 0)],
            http_client: Some(http),
            ..ConnectOptions::default()
        },
        record_arrival_log: false,
        stack: ViewerStack::Light,
        video_codecs: if vp8 {
            VideoCodecs::Vp8Only
        } else {
            VideoCodecs::H264Only
        },
        request_keyframe_on_start: true,
        forward: Some(tx),
        ..ViewerOptions::default()
    };
    let viewer = WhepViewer::connect(url.as_str(), None, options)
        .await
        .map_err(|e| e.to_string())?;
    cluster
        .counters
        .pulls_opened
        .fetch_add(1, Ordering::Relaxed);
    Ok((viewer, packets))
}

/// The lower renditions node `from` offers of `channel` now (its `qualities` but
/// `source`): what this node offers too. None when it cannot tell (then the edge offers
/// the source alone until its pull reconnects).
async fn offered_renditions(from: &str, channel: &ChannelName) -> Vec<String> {
    let url = format!("{}/api/channels/{channel}", from.trim_end_matches('/'));
    let asked = async {
        let status: serde_json::Value = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>(status)
    };
    match asked.await {
        Ok(status) => status["qualities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q.as_str())
            .filter(|q| *q != SOURCE_QUALITY)
            .map(str::to_string)
            .collect(),
        Err(e) => {
            warn!(%channel, from, error = %e, "cannot read the renditions offered: the source alone");
            Vec::new()
        }
    }
}

/// One WHEP session with `from` (the origin or an edge carrying the channel), fed into
/// the relay until it drops or goes idle, with the renditions and codecs this node's
/// viewers use pulled beside it.
async fn pull_once(
    cluster: &Arc<Cluster>,
    channel: &ChannelName,
    origin: &Origin,
    from: &str,
    ready: &watch::Sender<bool>,
    bridges: &mut broadcast::Receiver<BridgeRequest>,
) -> Ended {
    let (viewer, mut packets) = match open_pull(cluster, channel, from, None, false).await {
        Ok(pull) => pull,
        Err(e) => return Ended::Refused(e),
    };
    let renditions = offered_renditions(from, channel).await;
    let (title, started) = match cluster
        .catalog
        .session_summary(origin.session, now_ms())
        .await
    {
        Ok(Some(s)) => (
            s.title,
            chrono::DateTime::parse_from_rfc3339(&s.started_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| now_ms()),
        ),
        _ => (String::new(), now_ms()),
    };
    lock(&cluster.edge_sessions).insert(origin.session);
    let sources = cluster.relay.sources();
    // The relay may hold the session from this node's previous pull (its reconnect grace):
    // continue it. A pull of another session (the channel went live again on another
    // node) starts afresh, and the old one ends here when the grace runs out, as on the
    // origin.
    let resume = lock(&cluster.fed)
        .get(channel)
        .is_none_or(|s| *s == origin.session);
    if resume {
        let _ = sources.resume(channel.clone()).await;
    }
    let tracks = LocalTracks {
        video: Some(h264_codec()),
        audio: Some(opus_codec()),
        renditions: renditions.clone(),
    };
    let publisher = match sources
        .publish_local(channel.clone(), origin.session, title, started, tracks)
        .await
    {
        Ok(p) => {
            lock(&cluster.fed).insert(channel.clone(), origin.session);
            Arc::new(p)
        }
        Err(e) => {
            let _ = viewer.close().await;
            return Ended::Dropped(format!("local relay refused the pull: {e}"));
        }
    };
    info!(%channel, from, origin = %origin.node_url, session = %origin.session, ?renditions, "edge pull up");
    let mut feeds = Feeds::new(
        cluster.clone(),
        channel.clone(),
        from.to_string(),
        origin.session,
        publisher.clone(),
        renditions,
    );
    let mut check = tokio::time::interval(CHECK);
    let mut idle_since: Option<Instant> = None;
    let mut last_media = Instant::now();
    let mut announced = false;
    let mut bridges_open = true;
    let ended = loop {
        tokio::select! {
            packet = packets.recv() => {
                let Some((kind, packet)) = packet else {
                    break Ended::Dropped("the pull's receiver ended".into());
                };
                let kind = match kind {
                    TrackKind::Video => MediaKind::Video,
                    TrackKind::Audio => MediaKind::Audio,
                };
                if let Err(e) = publisher.send(kind, packet).await {
                    break Ended::Dropped(format!("local relay stopped taking media: {e}"));
                }
                last_media = Instant::now();
                if !announced {
                    announced = true;
                    let _ = ready.send(true);
                }
            }
            request = bridges.recv(), if bridges_open => match request {
                Ok(request) if request.channel == *channel && request.session == origin.session => {
                    feeds.bridge(request);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    warn!(%channel, missed, "codec bridge requests missed; those viewers get no video");
                }
                Err(RecvError::Closed) => bridges_open = false,
            },
            _ = check.tick() => {
                if last_media.elapsed() > SILENT {
                    break Ended::Dropped(format!("no media for {} s", SILENT.as_secs()));
                }
                let status = cluster.relay.board().get(channel);
                let viewers = status.as_ref().map_or(0, |s| s.viewers);
                if viewers == 0 {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= IDLE_STOP {
                        break Ended::Idle;
                    }
                } else {
                    idle_since = None;
                }
                feeds.check(status.map(|s| s.stream_viewers).as_deref().unwrap_or(&[]));
            }
        }
    };
    // The source leaves first (the rendition feeds hold it too), so the relay parks this
    // node's codec-bridge viewers for the next pull's source instead of letting them go
    // with their bridge feed.
    feeds.stop_renditions().await;
    let _ = viewer.close().await;
    drop(publisher);
    let gone = tokio::time::timeout(Duration::from_secs(1), async {
        while cluster.relay.board().get(channel).is_some_and(|s| s.live) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if gone.is_err() {
        debug!(%channel, "the edge's source still live after 1 s; its bridges stop anyway");
    }
    feeds.stop().await;
    if matches!(ended, Ended::Idle) {
        info!(%channel, "edge pull stopped: no viewers here");
    }
    ended
}

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
//! Not covered yet (issue 24 asks for one pull per rendition and codec viewers use): a
//! pull carries the source rendition in H.264 + Opus only. On an edge `?quality=` offers
//! `source` alone (a viewer asking for a lower rendition is refused with the list of what
//! the edge offers, as the relay refuses any unknown quality), and a VP8-only viewer gets
//! what the edge's relay makes for it from H.264 (its codec bridge, where configured). The
//! way to it: pull each rendition a viewer asks for with `?quality=` on the signed pull
//! and feed it as a rendition of the local source (`LocalTracks::renditions`,
//! `LocalPublisher::send_rendition`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{Cluster, lock, sign};
use crate::audience::now_ms;
use crate::catalog::Origin;
use crate::client::{
    ConnectOptions, TrackKind, VideoCodecs, ViewerOptions, ViewerStack, WhepViewer,
};
use crate::ids::ChannelName;
use crate::media::MediaKind;
use crate::relay::{LocalTracks, h264_codec, opus_codec};

/// How long a pull outlives the channel's last viewer on this node.
pub const IDLE_STOP: Duration = Duration::from_secs(5);

/// A pull that brought no media for this long is taken as dropped.
const SILENT: Duration = Duration::from_secs(4);

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
    let mut idle_since: Option<Instant> = None;
    loop {
        match cluster.catalog.channel_origin(&channel).await {
            Ok(Some(origin)) => match pull_from_any(&cluster, &channel, &origin, &ready).await {
                Ended::Idle => break,
                Ended::Dropped(why) | Ended::Refused(why) => {
                    let _ = ready.send(false);
                    warn!(%channel, origin = %origin.node_url, %why, "edge pull dropped; reconnecting");
                }
            },
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
    cluster: &Cluster,
    channel: &ChannelName,
    origin: &Origin,
    ready: &watch::Sender<bool>,
) -> Ended {
    let mut refused = Vec::new();
    for (node, url) in sources(cluster, channel, origin).await {
        lock(&cluster.pulling_from).insert(channel.clone(), node);
        match pull_once(cluster, channel, origin, &url, ready).await {
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

/// One WHEP session with `from` (the origin or an edge carrying the channel), fed into
/// the relay until it drops or goes idle.
async fn pull_once(
    cluster: &Cluster,
    channel: &ChannelName,
    origin: &Origin,
    from: &str,
    ready: &watch::Sender<bool>,
) -> Ended {
    let path = format!("/whep/{channel}");
    let node = cluster.catalog.this_node().unwrap_or(0);
    let url = format!("{}{path}?edge={node}", from.trim_end_matches('/'));
    let signature = sign::sign(cluster.secret(), "POST", &path, now_ms() / 1000);
    let mut headers = reqwest::header::HeaderMap::new();
    match reqwest::header::HeaderValue::from_str(&signature) {
        Ok(v) => {
            headers.insert(sign::HEADER, v);
        }
        Err(e) => return Ended::Dropped(format!("signature header: {e}")),
    }
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
    {
        Ok(http) => http,
        Err(e) => return Ended::Dropped(format!("HTTP client: {e}")),
    };
    let (tx, mut packets) = mpsc::channel(4096);
    let options = ViewerOptions {
        connect: ConnectOptions {
            udp_addrs: vec![std::net::SocketAddr::new(cluster.pull_ip, 0)],
            http_client: Some(http),
            ..ConnectOptions::default()
        },
        record_arrival_log: false,
        stack: ViewerStack::Light,
        video_codecs: VideoCodecs::H264Only,
        request_keyframe_on_start: true,
        forward: Some(tx),
        ..ViewerOptions::default()
    };
    let viewer = match WhepViewer::connect(&url, None, options).await {
        Ok(viewer) => viewer,
        Err(e) => return Ended::Refused(e.to_string()),
    };
    cluster
        .counters
        .pulls_opened
        .fetch_add(1, Ordering::Relaxed);
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
        renditions: Vec::new(),
    };
    let publisher = match sources
        .publish_local(channel.clone(), origin.session, title, started, tracks)
        .await
    {
        Ok(p) => {
            lock(&cluster.fed).insert(channel.clone(), origin.session);
            p
        }
        Err(e) => {
            let _ = viewer.close().await;
            return Ended::Dropped(format!("local relay refused the pull: {e}"));
        }
    };
    info!(%channel, from, origin = %origin.node_url, session = %origin.session, "edge pull up");
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut idle_since: Option<Instant> = None;
    let mut last_media = Instant::now();
    let mut announced = false;
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
            _ = check.tick() => {
                if last_media.elapsed() > SILENT {
                    break Ended::Dropped(format!("no media for {} s", SILENT.as_secs()));
                }
                let viewers = cluster.relay.board().get(channel).map_or(0, |s| s.viewers);
                if viewers == 0 {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= IDLE_STOP {
                        break Ended::Idle;
                    }
                } else {
                    idle_since = None;
                }
            }
        }
    };
    let _ = viewer.close().await;
    drop(publisher);
    if matches!(ended, Ended::Idle) {
        info!(%channel, "edge pull stopped: no viewers here");
    }
    ended
}

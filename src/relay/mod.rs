//! The relay hub: every WebRTC peer (station publishers and resident viewers) lives in one
//! engine task that owns the single media UDP socket and drives the sans-IO `rtc` peer
//! connections. A publisher's packet is received once; each viewer's work is a header
//! rewrite, SRTP and a send (no per-viewer task, lock or channel hop).
//!
//! Other modules talk to the engine through [`RelayHandle`] (commands over a bounded
//! queue) and read live figures from [`LiveBoard`].

mod attendance;
mod codecs;
mod engine;
mod feedback;
#[doc(hidden)]
pub mod fuzz;
pub mod hub;
mod layers;
pub mod media;
mod negotiate;
mod output;
mod peers;
pub mod shards;
mod srtp;
mod stun;
mod tap;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::audience::AudienceSink;
use crate::config::{H264FromVp8, OnDemand, RelayConfig, WebRtcConfig};
use crate::ids::{ChannelName, SessionId};

pub use engine::Engine;
pub use media::{h264_codec, opus_codec, vp8_codec};
pub use negotiate::check_viewer_offer_shape;
pub use output::MAX_NACKED_PER_RTCP;
pub use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
pub use tap::{ChannelMedia, LiveMedia, Subscription};

#[cfg(target_os = "linux")]
pub use udp::send_batch;

use crate::media::MediaKind;

/// The codecs a server-side source sends. Viewers negotiate these.
#[derive(Debug, Clone, Default)]
pub struct LocalTracks {
    /// Video codec, e.g. [`h264_codec`].
    pub video: Option<RTCRtpCodec>,
    /// Audio codec, e.g. [`opus_codec`].
    pub audio: Option<RTCRtpCodec>,
    /// Names of the lower renditions the source also sends (video rendition 1, 2, ...),
    /// in the same codec as `video`. The original is always
    /// [`SOURCE_QUALITY`](crate::config::SOURCE_QUALITY).
    pub renditions: Vec<String>,
}

/// What a local source hands the engine.
pub(crate) enum LocalInput {
    /// A packet of one track; video carries its rendition (0 is the source).
    Packet(MediaKind, u8, rtc::rtp::Packet),
    /// An access unit of a track WebRTC viewers never see (e.g. the original AAC).
    Unit(crate::media::AccessUnit),
    /// Video rendition `n` (not the source) is not fed for now.
    Pause(u8),
    End,
}

/// A server-side publisher (RTMP ingest, pull source, film playout) feeding a channel with
/// RTP packets. The channel is live while this exists; dropping it ends the session.
pub struct LocalPublisher {
    tx: mpsc::Sender<LocalInput>,
    keyframe_wanted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LocalPublisher {
    /// Sends one RTP packet (H.264 per RFC 6184 packetization-mode 1, or Opus per RFC 7587).
    /// Waits while the bounded queue to the engine is full.
    pub async fn send(&self, kind: MediaKind, packet: rtc::rtp::Packet) -> Result<(), RelayError> {
        self.send_rendition(kind, 0, packet).await
    }

    /// Sends one packet of rendition `rendition` (0 is the source video, `i + 1` is
    /// `LocalTracks::renditions[i]`; audio is shared, so it always goes as 0).
    pub async fn send_rendition(
        &self,
        kind: MediaKind,
        rendition: u8,
        packet: rtc::rtp::Packet,
    ) -> Result<(), RelayError> {
        self.tx
            .send(LocalInput::Packet(kind, rendition, packet))
            .await
            .map_err(|_| RelayError::Closed)
    }

    /// Says rendition `rendition` (not 0) is not fed for now (a cluster edge stopped
    /// pulling it while nobody watches it): its cached keyframe group is dropped, so a
    /// viewer joining before it is fed again starts on a fresh keyframe, not on stale
    /// pictures.
    pub async fn pause_rendition(&self, rendition: u8) -> Result<(), RelayError> {
        self.tx
            .send(LocalInput::Pause(rendition))
            .await
            .map_err(|_| RelayError::Closed)
    }

    /// Hands over an access unit of a track WebRTC viewers never see (the source's
    /// original AAC) for the channel's subscribers ([`RelayHandle::subscribe`]).
    pub async fn send_unit(&self, unit: crate::media::AccessUnit) -> Result<(), RelayError> {
        self.tx
            .send(LocalInput::Unit(unit))
            .await
            .map_err(|_| RelayError::Closed)
    }

    /// Whether a viewer asked for a keyframe since the last call (the encoder should force
    /// an IDR). Requests are already rate-limited by the relay.
    pub fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the session now (the same happens on drop).
    pub fn finish(self) {}
}

/// Feeds renditions into a channel whose source does not make them
/// ([`SourceHandle::feed_renditions`]).
pub struct FeedHandle {
    /// Sends the renditions' packets.
    pub publisher: LocalPublisher,
    /// The rendition number of the first fed rendition (the source's own streams come
    /// before it).
    pub first: u8,
}

/// Why the relay refused or failed a request. Each maps to one HTTP status in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The SDP offer could not be used.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// A publisher is already live on the channel.
    #[error("channel {0} already has a live publisher; stop it first (DELETE its session)")]
    Busy(String),
    /// Nothing is being published on the channel.
    #[error("channel {0} is not live; try again when the station is broadcasting")]
    NotLive(String),
    /// The session resource does not exist (ended or never existed).
    #[error("no such session {0}")]
    UnknownResource(String),
    /// The viewer asked for a rendition the channel does not offer.
    #[error("channel {channel} offers no quality {asked:?}; choose one of: {}", offered.join(", "))]
    UnknownQuality {
        /// The channel.
        channel: String,
        /// What was asked for.
        asked: String,
        /// What the channel offers now.
        offered: Vec<String>,
    },
    /// The viewer's offer has no video codec the channel (or its rendition) sends, or no
    /// codec at all in common with it.
    #[error("this channel sends {sends}; your offer has {offered}")]
    NoCommonCodec {
        /// What the channel sends, e.g. `video H.264 (constrained baseline) and audio Opus`.
        sends: String,
        /// What the offer had, e.g. `video VP8, VP9, AV1 and audio Opus`.
        offered: String,
    },
    /// The channel has as many viewers as it accepts.
    #[error("channel {0} is full ({1} viewers)")]
    Full(String, usize),
    /// The channel has as many viewers still connecting as it accepts at once.
    #[error(
        "too many viewers are connecting to channel {0} at this moment; try again in a few seconds"
    )]
    Connecting(String),
    /// The client's address has as many viewers still connecting as it may.
    #[error(
        "{0} viewers from your address are still connecting; try again in a few seconds (a viewer that has not connected within the timeout is let go)"
    )]
    ClientConnecting(usize),
    /// The engine is gone (shutting down).
    #[error("relay is shutting down")]
    Closed,
    /// The WebRTC stack failed.
    #[error("internal WebRTC error: {0}")]
    Internal(String),
}

/// What the relay may ask the transcode stage for when a viewer cannot decode the codec a
/// channel sends (`[ingest] vp8_rendition`, `h264_from_vp8`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CodecBridges {
    /// A VP8 rendition of an H.264 channel for viewers without H.264.
    pub vp8_rendition: OnDemand,
    /// H.264 from a VP8 publisher for viewers without VP8.
    pub h264_from_vp8: H264FromVp8,
}

/// What a viewer brings to a WHEP request, for attendance.
#[derive(Debug, Clone)]
pub struct ViewerInfo {
    /// mobile/pc/tv/other.
    pub terminal: &'static str,
    /// Stable per person when the page sends one, else unique per WHEP session.
    pub viewer_key: String,
    /// Salted hash of the client address.
    pub client_hash: String,
    /// The rendition asked for with `?quality=`; `None` is the source.
    pub quality: Option<String>,
    /// The client's address group (its IPv4 address, or its IPv6 /64), for the cap on
    /// viewers still connecting per client (`[relay] max_unconnected_per_client`); `None`
    /// when unknown (not capped).
    pub client: Option<std::net::IpAddr>,
    /// A signed cluster edge pull (`viewer_key` starts with
    /// [`crate::audience::EDGE_PULL_KEY`]): exempt from `max_viewers_per_channel` and the
    /// caps on viewers still connecting (it takes no place; see `relay::hub::Seats`).
    pub edge_pull: bool,
}

/// An accepted WHIP/WHEP offer.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Resource id for the session URL (`/whip/{channel}/{resource}`).
    pub resource: String,
    /// The SDP answer.
    pub answer: String,
}

/// A request to the engine.
pub(crate) enum EngineCommand {
    Publish {
        channel: ChannelName,
        offer: String,
        session: hub::LiveSession,
        reply: oneshot::Sender<Result<Accepted, RelayError>>,
    },
    View {
        channel: ChannelName,
        offer: String,
        viewer: ViewerInfo,
        /// Handed here by another shard to answer itself (it never hands it on again).
        direct: bool,
        reply: oneshot::Sender<Result<Accepted, RelayError>>,
    },
    Delete {
        channel: ChannelName,
        resource: String,
        publisher: bool,
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    PublishLocal {
        channel: ChannelName,
        session: hub::LiveSession,
        tracks: LocalTracks,
        reply: oneshot::Sender<Result<LocalPublisher, RelayError>>,
    },
    Subscribe {
        channel: ChannelName,
        reply: oneshot::Sender<Result<Subscription, RelayError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Fault injection (`FEIYAN_FAULT=engine-panic`): the engine panics.
    Panic,
    Feed {
        channel: ChannelName,
        session: SessionId,
        names: Vec<String>,
        reply: oneshot::Sender<Result<FeedHandle, RelayError>>,
    },
    FeedBridge {
        channel: ChannelName,
        session: SessionId,
        stream: u8,
        reply: oneshot::Sender<Result<FeedHandle, RelayError>>,
    },
    WantBridge {
        channel: ChannelName,
        codec: RTCRtpCodec,
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    /// A feeder's decoder needs the source's next keyframe.
    KeyframeWanted {
        channel: ChannelName,
    },
    /// A publisher is about to start on `channel`: the session its predecessor left within
    /// the reconnect grace, if any, which it continues.
    Resume {
        channel: ChannelName,
        reply: oneshot::Sender<Result<Option<SessionId>, RelayError>>,
    },
}

/// What `/api/live` and the pages show about a channel, kept current by the engine.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    /// Whether a publisher's media is flowing into the channel.
    pub live: bool,
    /// The live session, when live.
    pub session_id: Option<SessionId>,
    /// Session title.
    pub title: String,
    /// Unix ms the session started.
    pub started_at_ms: i64,
    /// Connected viewers now.
    pub viewers: usize,
    /// What `?quality=` accepts while live: `source` first, then the lower renditions.
    pub qualities: Vec<String>,
    /// Viewers of each video stream (by index, bridges included), for feeders that stop
    /// when nobody watches.
    #[serde(skip)]
    pub stream_viewers: Vec<usize>,
}

/// Counters for benchmarks and metrics. Relaxed atomics: exactness across threads is not needed.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// RTP packets received from publishers.
    pub packets_in: AtomicU64,
    /// RTP packets handed to viewers.
    pub packets_out: AtomicU64,
    /// Datagrams sent on the media socket.
    pub datagrams_sent: AtomicU64,
    /// Datagrams dropped because the socket stayed full.
    pub datagrams_dropped: AtomicU64,
    /// Datagrams of those sent that went in a segmented send (`UDP_SEGMENT`) with others
    /// to the same viewer.
    pub datagrams_segmented: AtomicU64,
    /// Datagrams received that matched no peer.
    pub datagrams_unrouted: AtomicU64,
    /// STUN checks naming a peer's ICE username from an address not yet that peer's,
    /// dropped because they were not signed with its ICE password (no address learned).
    pub stun_unverified: AtomicU64,
    /// Viewers that had not connected and gave their place to a newer one, the channel's
    /// connecting places (`max_unconnected_per_channel`) being full.
    pub connecting_given_up: AtomicU64,
    /// Keyframe requests forwarded to publishers.
    pub plis_forwarded: AtomicU64,
    /// Packets resent to viewers in answer to NACKs.
    pub retransmissions: AtomicU64,
    /// NACKed packets not resent because the viewer's RTCP named more than
    /// [`MAX_NACKED_PER_RTCP`] of them or its retransmission budget was spent.
    pub retransmissions_refused: AtomicU64,
    /// Times a lossy viewer's video was cut to the next keyframe.
    pub viewers_skipped: AtomicU64,
    /// Viewers disconnected because their link lost too much for too long.
    pub viewers_dropped: AtomicU64,
    /// Viewers served without their peer connection once connected (see `Engine::detach`).
    pub viewers_detached: AtomicU64,
    /// Transport-wide congestion control feedback packets sent to WHIP publishers (what
    /// their encoders ramp on; see `feedback::CountTwcc`).
    pub twcc_feedback_sent: AtomicU64,
}

impl RelayCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Name, help text and value of every counter, for `/metrics`.
    pub fn snapshot(&self) -> [(&'static str, &'static str, u64); 15] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "feiyan_rtp_packets_in_total",
                "RTP packets received from publishers",
                get(&self.packets_in),
            ),
            (
                "feiyan_rtp_packets_out_total",
                "RTP packets handed to viewers",
                get(&self.packets_out),
            ),
            (
                "feiyan_udp_datagrams_sent_total",
                "datagrams sent on the media socket",
                get(&self.datagrams_sent),
            ),
            (
                "feiyan_udp_datagrams_dropped_total",
                "datagrams dropped because the socket stayed full",
                get(&self.datagrams_dropped),
            ),
            (
                "feiyan_udp_datagrams_segmented_total",
                "datagrams sent in one segmented send with others to the same viewer",
                get(&self.datagrams_segmented),
            ),
            (
                "feiyan_udp_datagrams_unrouted_total",
                "datagrams that matched no peer",
                get(&self.datagrams_unrouted),
            ),
            (
                "feiyan_stun_unverified_total",
                "STUN checks from a new address not signed with the named peer's ICE password",
                get(&self.stun_unverified),
            ),
            (
                "feiyan_viewers_connecting_given_up_total",
                "unconnected viewers removed for a newer one, the channel's connecting places being full",
                get(&self.connecting_given_up),
            ),
            (
                "feiyan_plis_forwarded_total",
                "keyframe requests sent to sources",
                get(&self.plis_forwarded),
            ),
            (
                "feiyan_retransmissions_total",
                "packets resent to viewers for NACKs",
                get(&self.retransmissions),
            ),
            (
                "feiyan_retransmissions_refused_total",
                "NACKed packets not resent: over the per-RTCP cap or the viewer's budget",
                get(&self.retransmissions_refused),
            ),
            (
                "feiyan_viewers_skipped_total",
                "lossy viewers cut to the next keyframe",
                get(&self.viewers_skipped),
            ),
            (
                "feiyan_viewers_dropped_total",
                "viewers disconnected for sustained loss",
                get(&self.viewers_dropped),
            ),
            (
                "feiyan_viewers_detached_total",
                "connected viewers served without their peer connection",
                get(&self.viewers_detached),
            ),
            (
                "feiyan_twcc_feedback_sent_total",
                "transport-cc feedback packets sent to publishers",
                get(&self.twcc_feedback_sent),
            ),
        ]
    }
}

/// Live state readable from HTTP handlers without asking the engine.
#[derive(Debug)]
pub struct LiveBoard {
    // A std Mutex: held only to copy or replace a map entry, never across an await.
    channels: Mutex<HashMap<ChannelName, ChannelStatus>>,
    /// Each shard's own status of a channel, by shard number, when several run: the
    /// board shows them merged (the home shard's session, every shard's viewers).
    parts: Mutex<HashMap<ChannelName, Vec<Option<ChannelStatus>>>>,
    /// Packets each shard resent for its viewers' NACKs, by shard number.
    shard_retransmissions: Mutex<Vec<u64>>,
    /// Relay counters (shared with the hub, which counts what it forwards).
    pub counters: Arc<RelayCounters>,
    /// Every session going live, for services that attach to channels as they go live
    /// (the WHIP ladder's encoder).
    notices: tokio::sync::broadcast::Sender<LiveNotice>,
    /// Codec bridges viewers need ([`SourceHandle::bridge_requests`]).
    bridges: tokio::sync::broadcast::Sender<BridgeRequest>,
}

/// A viewer needs a channel's video in another codec ([`SourceHandle::bridge_requests`]):
/// decode the source, encode `codec`, feed stream `stream` ([`SourceHandle::feed_bridge`]).
#[derive(Debug, Clone)]
pub struct BridgeRequest {
    /// The channel.
    pub channel: ChannelName,
    /// Its live session.
    pub session: SessionId,
    /// The stream to feed.
    pub stream: u8,
    /// What the source sends.
    pub from: crate::media::Codec,
    /// What to encode.
    pub to: crate::media::Codec,
}

impl Default for LiveBoard {
    fn default() -> Self {
        LiveBoard {
            channels: Mutex::default(),
            parts: Mutex::default(),
            shard_retransmissions: Mutex::default(),
            counters: Arc::default(),
            notices: tokio::sync::broadcast::channel(256).0,
            bridges: tokio::sync::broadcast::channel(256).0,
        }
    }
}

/// A session went live on a channel ([`SourceHandle::live_notices`]).
#[derive(Debug, Clone)]
pub struct LiveNotice {
    /// The channel.
    pub channel: ChannelName,
    /// Its tracks.
    pub live: LiveMedia,
    /// Whether a WebRTC publisher (WHIP) sends it; else a server-side source, which
    /// makes its own renditions.
    pub from_peer: bool,
}

impl LiveBoard {
    /// The status of one channel (`None` when it never had a publisher or viewer).
    pub fn get(&self, channel: &ChannelName) -> Option<ChannelStatus> {
        self.lock().get(channel).cloned()
    }

    /// All live channels.
    pub fn live(&self) -> Vec<(ChannelName, ChannelStatus)> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, s)| s.live)
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(crate) fn request_bridge(&self, request: BridgeRequest) {
        // Nobody listening: the viewers wait (and ingest is not running, e.g. in tests of
        // the relay alone).
        let _ = self.bridges.send(request);
    }

    pub(crate) fn notify_live(&self, notice: LiveNotice) {
        // Nobody listening is fine.
        let _ = self.notices.send(notice);
    }

    pub(crate) fn set(&self, channel: &ChannelName, status: Option<ChannelStatus>) {
        let mut map = self.lock();
        match status {
            Some(status) => {
                map.insert(channel.clone(), status);
            }
            None => {
                map.remove(channel);
            }
        }
    }

    /// Shard `shard` of `count` says what `channel` is on it (`home`: the shard of its
    /// source); the board shows the home's session with every shard's viewers.
    pub(crate) fn set_part(
        &self,
        channel: &ChannelName,
        shard: usize,
        home: usize,
        count: usize,
        status: Option<ChannelStatus>,
    ) {
        if count <= 1 {
            return self.set(channel, status);
        }
        // Parts first, then the merged map: a reader sees one or the other, never both
        // locks are held by one reader.
        let merged = {
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            let slots = parts
                .entry(channel.clone())
                .or_insert_with(|| vec![None; count]);
            if let Some(slot) = slots.get_mut(shard) {
                *slot = status;
            }
            let merged = shards::merge_parts(slots, home);
            if merged.is_none() {
                parts.remove(channel);
            }
            merged
        };
        self.set(channel, merged);
    }

    /// Packets each engine shard resent for its own viewers' NACKs (by shard number; a
    /// shard that resent none yet may be missing at the end).
    pub fn shard_retransmissions(&self) -> Vec<u64> {
        self.shard_retransmissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn count_retransmissions(&self, shard: usize, n: u64) {
        let mut counts = self
            .shard_retransmissions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if counts.len() <= shard {
            counts.resize(shard + 1, 0);
        }
        counts[shard] += n;
    }

    /// Connected viewers of `channel` on each engine shard (one entry when one runs).
    pub fn shard_viewers(&self, channel: &ChannelName) -> Vec<usize> {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        match parts.get(channel) {
            Some(parts) => parts
                .iter()
                .map(|p| p.as_ref().map_or(0, |p| p.viewers))
                .collect(),
            None => vec![self.get(channel).map_or(0, |s| s.viewers)],
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelName, ChannelStatus>> {
        // A poisoned lock only means a panic elsewhere; the map itself is still valid.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Cheap-to-clone handle for talking to the engine shards.
#[derive(Clone)]
pub struct RelayHandle {
    shards: Arc<shards::ShardSet>,
    board: Arc<LiveBoard>,
    udp_addr: SocketAddr,
}

impl RelayHandle {
    /// Live figures.
    pub fn board(&self) -> &Arc<LiveBoard> {
        &self.board
    }

    /// The bound media UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// How many engine shards run (`[webrtc] shards`).
    pub fn shards(&self) -> usize {
        self.shards.senders.len()
    }

    /// A handle that can only start server-side sources: what ingest gets.
    pub fn sources(&self) -> SourceHandle {
        SourceHandle {
            shards: self.shards.clone(),
            board: self.board.clone(),
        }
    }

    /// Starts a publisher on `channel` with a WHIP offer.
    pub async fn publish(
        &self,
        channel: ChannelName,
        offer: String,
        session: SessionId,
        title: String,
        started_at_ms: i64,
    ) -> Result<Accepted, RelayError> {
        let tx = self.shards.for_channel(&channel);
        ask(tx, |reply| EngineCommand::Publish {
            channel,
            offer,
            session: hub::LiveSession {
                id: session,
                title,
                started_at_ms,
            },
            reply,
        })
        .await
    }

    /// Adds a viewer to `channel` with a WHEP offer. An offer of a shape no browser sends
    /// (see [`check_viewer_offer_shape`]) is refused here, before it reaches the engine.
    pub async fn view(
        &self,
        channel: ChannelName,
        offer: String,
        viewer: ViewerInfo,
    ) -> Result<Accepted, RelayError> {
        check_viewer_offer_shape(&offer)?;
        ask(self.shards.next_viewer(), |reply| EngineCommand::View {
            channel,
            offer,
            viewer,
            direct: false,
            reply,
        })
        .await
    }

    /// Ends a WHIP (`publisher`) or WHEP session resource.
    pub async fn delete(
        &self,
        channel: ChannelName,
        resource: String,
        publisher: bool,
    ) -> Result<(), RelayError> {
        let Some(tx) = self.shards.for_resource(&resource) else {
            return Err(RelayError::UnknownResource(resource));
        };
        ask(tx, |reply| EngineCommand::Delete {
            channel,
            resource,
            publisher,
            reply,
        })
        .await
    }

    /// Subscribes to a channel's access units (see [`ChannelMedia`]): once per channel,
    /// whatever its source, for HLS, recording and other consumers that are not WebRTC.
    /// The channel need not be live yet.
    pub async fn subscribe(&self, channel: ChannelName) -> Result<Subscription, RelayError> {
        let tx = self.shards.for_channel(&channel);
        ask(tx, |reply| EngineCommand::Subscribe { channel, reply }).await
    }

    /// The session a publisher that dropped from `channel` within the reconnect grace
    /// left waiting: a publisher starting there continues it (no new catalog session),
    /// and it no longer ends when the grace runs out.
    pub async fn resume(&self, channel: ChannelName) -> Result<Option<SessionId>, RelayError> {
        let tx = self.shards.for_channel(&channel);
        ask(tx, |reply| EngineCommand::Resume { channel, reply }).await
    }

    /// Makes the engine panic, for `FEIYAN_FAULT=engine-panic` (checking that the process
    /// exits and its service manager restarts it).
    pub async fn inject_panic(&self) {
        let _ = self.shards.senders[0].send(EngineCommand::Panic).await;
    }

    /// Closes every peer, writes their attendance and stops every engine shard.
    pub async fn shutdown(&self) {
        let waits = self.shards.senders.iter().map(|tx| async move {
            let (reply, rx) = oneshot::channel();
            if tx.send(EngineCommand::Shutdown { reply }).await.is_ok() {
                let _ = rx.await;
            }
        });
        futures::future::join_all(waits).await;
    }
}

/// Starts server-side sources (RTMP ingest, pull sources, film playout) and nothing else:
/// the only relay handle ingest holds.
#[derive(Clone)]
pub struct SourceHandle {
    shards: Arc<shards::ShardSet>,
    board: Arc<LiveBoard>,
}

impl SourceHandle {
    /// Sessions going live from now on.
    pub fn live_notices(&self) -> tokio::sync::broadcast::Receiver<LiveNotice> {
        self.board.notices.subscribe()
    }

    /// Codec bridges viewers ask for from now on.
    pub fn bridge_requests(&self) -> tokio::sync::broadcast::Receiver<BridgeRequest> {
        self.board.bridges.subscribe()
    }

    /// A channel's status now (its viewers per stream among it).
    pub fn status(&self, channel: &ChannelName) -> Option<ChannelStatus> {
        self.board.get(channel)
    }

    /// Asks the channel's source for a keyframe (rate-limited as viewers' requests are):
    /// a feeder's decoder that has none yet, or lost some of the source, starts there.
    pub async fn request_keyframe(&self, channel: ChannelName) {
        let _ = self
            .shards
            .for_channel(&channel)
            .send(EngineCommand::KeyframeWanted { channel })
            .await;
    }

    /// Asks for the channel's video in `codec` even before a viewer needs it (a VP8
    /// publisher with `[ingest] h264_from_vp8 = "always"`): a [`BridgeRequest`] follows.
    pub async fn want_bridge(
        &self,
        channel: ChannelName,
        codec: RTCRtpCodec,
    ) -> Result<(), RelayError> {
        ask(self.shards.for_channel(&channel), |reply| {
            EngineCommand::WantBridge {
                channel,
                codec,
                reply,
            }
        })
        .await
    }

    /// Feeds the bridge stream `stream` of the live session `session` of `channel` (see
    /// [`BridgeRequest`]); dropping the handle withdraws it (its viewers are let go).
    pub async fn feed_bridge(
        &self,
        channel: ChannelName,
        session: SessionId,
        stream: u8,
    ) -> Result<FeedHandle, RelayError> {
        ask(self.shards.for_channel(&channel), |reply| {
            EngineCommand::FeedBridge {
                channel,
                session,
                stream,
                reply,
            }
        })
        .await
    }

    /// See [`RelayHandle::resume`].
    pub async fn resume(&self, channel: ChannelName) -> Result<Option<SessionId>, RelayError> {
        ask(self.shards.for_channel(&channel), |reply| {
            EngineCommand::Resume { channel, reply }
        })
        .await
    }

    /// A channel's access units (see [`RelayHandle::subscribe`]).
    pub async fn subscribe(&self, channel: ChannelName) -> Result<Subscription, RelayError> {
        ask(self.shards.for_channel(&channel), |reply| {
            EngineCommand::Subscribe { channel, reply }
        })
        .await
    }

    /// Feeds renditions `names` of the live session `session` of `channel`, whose source
    /// does not make them itself (a WHIP publisher's ladder, encoded here). The handle
    /// sends video with [`LocalPublisher::send_rendition`] (rendition 1 is `names[0]`
    /// counted after the source's own streams: use [`FeedHandle::first`]); dropping it
    /// withdraws the renditions. Nothing else about the session changes.
    pub async fn feed_renditions(
        &self,
        channel: ChannelName,
        session: SessionId,
        names: Vec<String>,
    ) -> Result<FeedHandle, RelayError> {
        ask(self.shards.for_channel(&channel), |reply| {
            EngineCommand::Feed {
                channel,
                session,
                names,
                reply,
            }
        })
        .await
    }

    /// Starts a server-side source on `channel` for the live session `session` (already
    /// opened in the catalog). `Busy` when another publisher is live there.
    pub async fn publish_local(
        &self,
        channel: ChannelName,
        session: SessionId,
        title: String,
        started_at_ms: i64,
        tracks: LocalTracks,
    ) -> Result<LocalPublisher, RelayError> {
        ask(self.shards.for_channel(&channel), |reply| {
            EngineCommand::PublishLocal {
                channel,
                session: hub::LiveSession {
                    id: session,
                    title,
                    started_at_ms,
                },
                tracks,
                reply,
            }
        })
        .await
    }
}

/// Sends a command to the engine and waits for its reply.
async fn ask<T>(
    tx: &mpsc::Sender<EngineCommand>,
    make: impl FnOnce(oneshot::Sender<Result<T, RelayError>>) -> EngineCommand,
) -> Result<T, RelayError> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).await.map_err(|_| RelayError::Closed)?;
    rx.await.map_err(|_| RelayError::Closed)?
}

/// Binds the media port and starts the engine shards (`[webrtc] shards`), each on its own
/// thread `fy-shard-{i}`. The task returned ends when every shard has; a shard that
/// panics makes it panic with the shard's message.
pub async fn start(
    webrtc: &WebRtcConfig,
    relay: &RelayConfig,
    bridges: CodecBridges,
    audience: AudienceSink,
) -> std::io::Result<(RelayHandle, tokio::task::JoinHandle<()>)> {
    let count = shards::shard_count(webrtc.shards);
    let board = Arc::new(LiveBoard::default());
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::channel(1024)).unzip();
    let routes = Arc::new(shards::Routes::default());
    let links = shards::ShardSet::links(&senders, &routes);
    // The first shard binds the configured address (port 0: any); the others the port it got.
    let mut addr = webrtc.udp_bind;
    if count > 1 && addr.port() != 0 {
        // Sockets with SO_REUSEPORT share a port with any other process of this user that
        // sets it too: a second server started by mistake would take half the traffic
        // instead of failing. A plain bind first fails on a port in use, as with one shard
        // (and makes a later server's plain bind fail on ours).
        drop(std::net::UdpSocket::bind(addr)?);
    }
    let mut engines = Vec::with_capacity(count);
    for (rx, links) in receivers.into_iter().zip(links) {
        let engine = Engine::bind(
            webrtc,
            addr,
            relay,
            bridges,
            audience.sibling(),
            rx,
            board.clone(),
            links,
        )?;
        addr = engine.local_addr();
        engines.push(engine);
    }
    drop(audience);
    let mut done = Vec::with_capacity(count);
    for (index, engine) in engines.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("fy-shard-{index}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(engine.run())
                }));
                let _ = tx.send(result);
            })?;
        done.push(rx);
    }
    let task = tokio::spawn(async move {
        // Whichever shard panics first, at once (not after the shards before it end).
        let mut done: futures::stream::FuturesUnordered<_> = done.into_iter().collect();
        while let Some(result) = futures::StreamExt::next(&mut done).await {
            if let Ok(Err(panic)) = result {
                std::panic::resume_unwind(panic);
            }
        }
    });
    if count > 1 {
        info!(shards = count, %addr, "relay engine shards share the media port");
    }
    Ok((
        RelayHandle {
            shards: Arc::new(shards::ShardSet::new(senders)),
            board,
            udp_addr: addr,
        },
        task,
    ))
}

//! Engine shards: `[webrtc] shards = N` engines, each on its own thread (`fy-shard-{i}`)
//! with its own peers and hub, all behind the one UDP port.
//!
//! - **Sockets**: every shard binds the port with `SO_REUSEPORT`; the kernel hands a
//!   remote address's datagrams to one socket (by 4-tuple hash), whichever shard owns its
//!   peer. A datagram that lands on the wrong shard takes one hop ([`ShardMsg::Datagram`])
//!   to its owner: a STUN check by the shard tag that starts our ICE ufrag, anything else
//!   by [`Routes`], the addresses each shard learned from signed checks.
//! - **Channels**: a channel's *home* shard ([`home_of`], a hash of its name) takes its
//!   publisher or server-side source, its feeders, bridges, access-unit subscribers and its
//!   catalog session (start, reconnect grace, end). Viewers are spread over all shards;
//!   every other shard holds a *mirror* of the channel whose source is
//!   [`Source::Origin`](super::hub::Source::Origin): the home shard hands each run of
//!   packets it forwarded to every mirror once ([`ShardMsg::Media`], one `Arc` of packets
//!   whose payloads are shared `Bytes`), and a mirror's keyframe requests go back to it.
//!   Each shard's hub keeps its own keyframe group, NACK buffer and PLI throttle, so a
//!   viewer's NACK is answered by its own shard.
//! - **Commands** ([`ShardSet::for_channel`], [`ShardSet::next_viewer`],
//!   [`ShardSet::for_resource`]): a channel's commands go to its home, viewers round-robin;
//!   a mirror that cannot serve a viewer (not live there yet, a quality or codec bridge
//!   only the home has) hands the request to the home. Resource ids start with their
//!   shard's tag, so a DELETE finds its shard.
//! - **Renditions fed by the server and codec bridges stay on the home**: their feeders
//!   (a WHIP ladder's encoder, a bridge's transcoder) attach to the home's hub
//!   ([`Hub::attach_feeder`](super::hub::Hub::attach_feeder),
//!   [`Hub::bridge`](super::hub::Hub::bridge)), which alone knows those streams; the
//!   home hands their runs to the mirrors like the source's, but a mirror has no stream
//!   of that index and drops them, so their viewers are all the home's. Spreading them
//!   needs the stream list mirrored (a message when a feeder attaches or detaches and a
//!   bridge is made or withdrawn, in order with the media) and a mirror's bridge request
//!   sent home; a lecture's audience mostly watches the source stream, which is spread.
//! - **Caps**: `[relay] max_viewers_per_channel`, `max_unconnected_per_channel` and
//!   `max_unconnected_per_client` count every shard's viewers: the hubs share one table
//!   of places ([`Seats`], in [`ShardLinks::seats`]), checked and taken in one step when a
//!   viewer is admitted and given back when it connects or leaves, never touched per
//!   packet. When every connecting place of a channel is held and none by this shard's
//!   viewers, the request goes to the shard holding the most (`direct`), whose
//!   longest-waiting offer gives its place up as on one shard.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::hub::{LiveSession, LiveTracks, Seats};
use super::{ChannelStatus, EngineCommand};
use crate::ids::ChannelName;
use crate::media::MediaKind;

/// Most shards a server runs, whatever the configuration or core count (each needs a tag
/// character, and more threads than this on one port gain nothing).
pub const MAX_SHARDS: usize = 32;

/// Characters that tag a shard's ICE ufrags and resource ids (the first of each).
const TAGS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEF";

/// How many messages a shard's inbox holds; past it, forwarded datagrams and media are
/// dropped (counted) rather than waiting.
const INBOX_DEPTH: usize = 8192;

/// Packets of one run, shared between shards.
pub(super) type SharedRun = Arc<Vec<(MediaKind, rtc::rtp::Packet)>>;

/// The tag character of shard `index`.
pub(super) fn tag(index: usize) -> char {
    TAGS[index % TAGS.len()] as char
}

/// The shard a tagged token (ufrag, resource id) belongs to.
pub(super) fn shard_of_token(token: &str, count: usize) -> Option<usize> {
    let first = *token.as_bytes().first()?;
    TAGS.iter().position(|t| *t == first).filter(|i| *i < count)
}

/// The home shard of `channel` among `count`.
pub fn home_of(channel: &ChannelName, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    // SipHash with fixed keys: the same answer in every shard and every run.
    let mut hasher = std::hash::DefaultHasher::new();
    channel.as_str().hash(&mut hasher);
    (hasher.finish() % count as u64) as usize
}

/// The shard count `[webrtc] shards` asks for: 0 is one per core; capped at [`MAX_SHARDS`].
pub fn shard_count(configured: usize) -> usize {
    let wanted = if configured == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        configured
    };
    wanted.clamp(1, MAX_SHARDS)
}

/// What one shard hands another.
pub(super) enum ShardMsg {
    /// A datagram that arrived on this shard's socket for a peer of the receiver.
    Datagram(BytesMut, SocketAddr),
    /// The home shard's channel went live (again): mirror it.
    Live {
        channel: ChannelName,
        session: LiveSession,
        tracks: LiveTracks,
    },
    /// A run of packets the home shard forwarded for video stream `rendition`.
    Media {
        channel: ChannelName,
        rendition: usize,
        packets: SharedRun,
    },
    /// The home shard's source stopped feeding video stream `rendition` for now.
    Paused {
        channel: ChannelName,
        rendition: usize,
    },
    /// The home shard's session ended (its viewers stay, as on the home).
    Ended { channel: ChannelName },
    /// A mirror's viewer wants a keyframe (already throttled by the mirror's hub).
    KeyframeWanted { channel: ChannelName },
}

/// Which shard learned which remote address (from a STUN check signed with the password
/// of one of its peers). Written on signed checks and removals, read per datagram only
/// when more than one shard runs.
#[derive(Default)]
pub(super) struct Routes {
    // A std RwLock: held for one map operation, never across an await.
    by_addr: RwLock<HashMap<SocketAddr, usize>>,
}

impl Routes {
    pub(super) fn get(&self, addr: SocketAddr) -> Option<usize> {
        self.read().get(&addr).copied()
    }

    /// `addr` is shard `shard`'s now.
    pub(super) fn claim(&self, addr: SocketAddr, shard: usize) {
        if self.get(addr) != Some(shard) {
            self.write().insert(addr, shard);
        }
    }

    /// Shard `shard` forgot `addrs` (its peer left); addresses another shard took since
    /// stay that shard's.
    pub(super) fn release(&self, addrs: &[SocketAddr], shard: usize) {
        if addrs.is_empty() {
            return;
        }
        let mut map = self.write();
        for addr in addrs {
            if map.get(addr) == Some(&shard) {
                map.remove(addr);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SocketAddr, usize>> {
        // A poisoned lock only means a panic elsewhere (which ends the process).
        self.by_addr.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SocketAddr, usize>> {
        self.by_addr.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// One channel's status from its shards' parts: the home shard's session (else any
/// shard's), the viewers of all.
pub(super) fn merge_parts(parts: &[Option<ChannelStatus>], home: usize) -> Option<ChannelStatus> {
    let base = parts
        .get(home)
        .and_then(Option::as_ref)
        .or_else(|| parts.iter().flatten().next())?;
    let mut merged = base.clone();
    merged.viewers = parts.iter().flatten().map(|p| p.viewers).sum();
    for part in parts.iter().flatten() {
        if merged.stream_viewers.len() < part.stream_viewers.len() {
            merged.stream_viewers.resize(part.stream_viewers.len(), 0);
        }
    }
    merged.stream_viewers.iter_mut().for_each(|n| *n = 0);
    for part in parts.iter().flatten() {
        for (sum, n) in merged.stream_viewers.iter_mut().zip(&part.stream_viewers) {
            *sum += n;
        }
    }
    Some(merged)
}

/// What one engine knows of the others.
pub(super) struct ShardLinks {
    /// This shard's number.
    pub(super) index: usize,
    /// How many run.
    pub(super) count: usize,
    /// Messages from the other shards.
    pub(super) inbox: mpsc::Receiver<ShardMsg>,
    /// Every shard's inbox (this one's too, unused).
    pub(super) inboxes: Vec<mpsc::Sender<ShardMsg>>,
    /// Every shard's command queue, weak: the engines stop when every handle is gone.
    pub(super) commands: Vec<mpsc::WeakSender<EngineCommand>>,
    pub(super) routes: Arc<Routes>,
    /// Every shard's viewers' places, for the caps (one table for all).
    pub(super) seats: Arc<Seats>,
}

impl ShardLinks {
    /// Whether this shard is `channel`'s home.
    pub(super) fn is_home(&self, channel: &ChannelName) -> bool {
        home_of(channel, self.count) == self.index
    }

    /// Sends `msg` to shard `shard` without waiting; false when its inbox is full (a
    /// shard already stopped, at shutdown, takes nothing and is not counted).
    pub(super) fn send(&self, shard: usize, msg: ShardMsg) -> bool {
        self.inboxes
            .get(shard)
            .is_none_or(|tx| !matches!(tx.try_send(msg), Err(mpsc::error::TrySendError::Full(_))))
    }

    /// Sends a message made by `make` to every other shard; how many refused it.
    pub(super) fn to_mirrors(&self, make: impl Fn() -> ShardMsg) -> usize {
        (0..self.count)
            .filter(|&i| i != self.index)
            .filter(|&i| !self.send(i, make()))
            .count()
    }

    /// Hands a command to shard `shard`'s engine (a viewer for the home).
    pub(super) fn forward(&self, shard: usize, command: EngineCommand) {
        if let Some(tx) = self.commands.get(shard).and_then(|w| w.upgrade()) {
            // A full queue: the reply is dropped and the caller gets `Closed`, as when the
            // engine is gone; it never waits here.
            let _ = tx.try_send(command);
        }
    }
}

/// The command queues of every shard, and how a request picks one.
pub(super) struct ShardSet {
    pub(super) senders: Vec<mpsc::Sender<EngineCommand>>,
    next: AtomicUsize,
}

impl ShardSet {
    pub(super) fn new(senders: Vec<mpsc::Sender<EngineCommand>>) -> ShardSet {
        ShardSet {
            senders,
            next: AtomicUsize::new(0),
        }
    }

    /// The home shard of `channel`.
    pub(super) fn for_channel(&self, channel: &ChannelName) -> &mpsc::Sender<EngineCommand> {
        &self.senders[home_of(channel, self.senders.len())]
    }

    /// The shard the next viewer goes to (round robin).
    pub(super) fn next_viewer(&self) -> &mpsc::Sender<EngineCommand> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        &self.senders[i]
    }

    /// The shard that made resource id `resource`.
    pub(super) fn for_resource(&self, resource: &str) -> Option<&mpsc::Sender<EngineCommand>> {
        if self.senders.len() == 1 {
            return self.senders.first();
        }
        shard_of_token(resource, self.senders.len()).map(|i| &self.senders[i])
    }

    /// Makes the inboxes and links of `count` shards.
    pub(super) fn links(
        commands: &[mpsc::Sender<EngineCommand>],
        routes: &Arc<Routes>,
    ) -> Vec<ShardLinks> {
        let count = commands.len();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::channel(INBOX_DEPTH)).unzip();
        let seats = Arc::new(Seats::new(count));
        rxs.into_iter()
            .enumerate()
            .map(|(index, inbox)| ShardLinks {
                index,
                count,
                inbox,
                inboxes: txs.clone(),
                commands: commands.iter().map(mpsc::Sender::downgrade).collect(),
                routes: routes.clone(),
                seats: seats.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_shard_and_channels_have_one_home() {
        for i in 0..MAX_SHARDS {
            let token = format!("{}rest", tag(i));
            assert_eq!(shard_of_token(&token, MAX_SHARDS), Some(i));
        }
        assert_eq!(shard_of_token("Zzz", 4), None);
        let channel = ChannelName::parse("lecture").expect("a channel name");
        let home = home_of(&channel, 4);
        assert!(home < 4);
        assert_eq!(home_of(&channel, 4), home);
        assert_eq!(home_of(&channel, 1), 0);
        assert_eq!(shard_count(1_000), MAX_SHARDS);
        assert!(shard_count(0) >= 1);
    }

    fn status(live: bool, viewers: usize, streams: Vec<usize>) -> ChannelStatus {
        ChannelStatus {
            live,
            session_id: live.then_some(crate::ids::SessionId(7)),
            title: if live {
                "lecture".into()
            } else {
                String::new()
            },
            started_at_ms: 0,
            viewers,
            qualities: Vec::new(),
            stream_viewers: streams,
        }
    }

    #[test]
    fn the_board_shows_the_homes_session_and_every_shards_viewers() {
        // The mirror (0) has not heard the session ended; the home (1) has.
        let parts = vec![
            Some(status(true, 3, vec![3])),
            Some(status(false, 2, vec![])),
        ];
        let merged = merge_parts(&parts, 1).expect("a status");
        assert!(!merged.live, "the home's session decides");
        assert_eq!(merged.viewers, 5);
        let parts = vec![
            None,
            Some(status(true, 2, vec![1, 1])),
            Some(status(true, 4, vec![4])),
        ];
        let merged = merge_parts(&parts, 0).expect("a status");
        assert!(merged.live);
        assert_eq!(merged.viewers, 6);
        assert_eq!(merged.stream_viewers, vec![5, 1]);
        assert!(merge_parts(&[None, None], 0).is_none());
    }

    #[test]
    fn an_address_taken_by_another_shard_stays_its() {
        let routes = Routes::default();
        let a: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
        routes.claim(a, 0);
        routes.claim(a, 1);
        routes.release(&[a], 0);
        assert_eq!(routes.get(a), Some(1));
        routes.release(&[a], 1);
        assert_eq!(routes.get(a), None);
    }
}

//! The peer table: every WebRTC peer connection of the engine and the three ways a peer is
//! found (the address a datagram came from, the ICE username in a STUN check, the WHIP/WHEP
//! resource id), kept consistent in one place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use rustc_hash::FxHashMap;

use super::hub::{LiveSession, PeerKey};
use super::output::ViewerOutput;
use super::srtp::KeyTap;
use super::stun;
use crate::ids::ChannelName;

/// A track a publisher opened (one RTP stream: a simulcast section opens one per layer).
pub(super) struct TrackIn {
    pub(super) kind: RtpCodecKind,
    pub(super) codec: RTCRtpCodec,
    pub(super) receiver_id: RTCRtpReceiverId,
    pub(super) media_ssrc: u32,
    /// The simulcast layer it carries (`a=rid`), for a simulcast publisher's video.
    pub(super) rid: Option<String>,
    /// Its picture size, read from its first keyframe while the channel is not yet live
    /// (a simulcast layer's only): names the rendition and picks the source.
    pub(super) size: Option<(u32, u32)>,
    /// The channel's video stream its packets feed (0: the source; audio says 0).
    pub(super) rendition: usize,
}

/// A WHIP publisher's state until and while it is live.
pub(super) struct PublisherState {
    pub(super) session: LiveSession,
    /// Audio/video sections in the offer: the channel goes live when all have opened.
    pub(super) expected_tracks: usize,
    /// The simulcast layers (RIDs) the offer's video sends, in its order; empty without
    /// simulcast.
    pub(super) layers: Vec<String>,
    /// The layers' RIDs by the channel's video stream they feed, once live.
    pub(super) streams: Vec<String>,
    /// Opened tracks by SSRC: looked up for every packet (Fx: SSRCs are the peer's
    /// numbers, but a publisher's table holds a handful of entries it chose itself).
    pub(super) tracks: FxHashMap<u32, TrackIn>,
    /// When every section had opened: a simulcast publisher waits a little for each layer's
    /// first keyframe (its size) before going live.
    pub(super) opened_at: Option<Instant>,
    pub(super) live: bool,
}

impl PublisherState {
    pub(super) fn new(session: LiveSession, expected_tracks: usize, layers: Vec<String>) -> Self {
        PublisherState {
            session,
            expected_tracks,
            layers,
            streams: Vec::new(),
            tracks: FxHashMap::default(),
            opened_at: None,
            live: false,
        }
    }

    /// Records opened tracks; a layer opening after the channel went live feeds the stream
    /// its RID was given.
    pub(super) fn open(&mut self, opened: Vec<TrackIn>) {
        for mut track in opened {
            if let Some(rid) = &track.rid {
                track.rendition = self.streams.iter().position(|r| r == rid).unwrap_or(0);
            }
            self.tracks.insert(track.media_ssrc, track);
        }
    }

    /// How many of the offer's sections have opened a track.
    pub(super) fn sections_open(&self) -> usize {
        let mut receivers: Vec<usize> = self
            .tracks
            .values()
            .map(|t| usize::from(t.receiver_id))
            .collect();
        receivers.sort_unstable();
        receivers.dedup();
        receivers.len()
    }
}

pub(super) enum Role {
    Publisher(PublisherState),
    Viewer(Box<ViewerOutput>),
}

pub(super) struct Peer {
    /// The sans-IO peer connection; `None` once a viewer is detached.
    pub(super) pc: Option<Box<RTCPeerConnection>>,
    pub(super) channel: ChannelName,
    pub(super) resource: String,
    pub(super) ufrag: String,
    pub(super) role: Role,
    pub(super) remotes: Vec<SocketAddr>,
    pub(super) created: Instant,
    /// The timeout currently scheduled in the engine's heap for this peer.
    pub(super) scheduled: Option<Instant>,
    pub(super) closing: bool,
    /// Whether ICE and DTLS ever completed; peers that never connect are removed.
    pub(super) ever_connected: bool,
    /// The viewer's SRTP key tap (viewers only).
    pub(super) tap: Option<Arc<KeyTap>>,
    /// Where rtc last sent a datagram for this peer: the selected ICE pair's remote.
    pub(super) send_to: Option<SocketAddr>,
}

impl Peer {
    /// A new peer that has not connected yet.
    pub(super) fn new(
        pc: Box<RTCPeerConnection>,
        channel: ChannelName,
        ufrag: String,
        role: Role,
        tap: Option<Arc<KeyTap>>,
        now: Instant,
    ) -> Peer {
        Peer {
            pc: Some(pc),
            channel,
            resource: super::negotiate::random_token(24),
            ufrag,
            role,
            remotes: Vec::new(),
            created: now,
            scheduled: None,
            closing: false,
            ever_connected: false,
            tap,
            send_to: None,
        }
    }

    /// The viewer's output state, for viewers.
    pub(super) fn viewer(&mut self) -> Option<&mut ViewerOutput> {
        match &mut self.role {
            Role::Viewer(v) => Some(v),
            Role::Publisher(_) => None,
        }
    }
}

/// Every peer, by key, with its lookups.
#[derive(Default)]
pub(super) struct PeerTable {
    /// Boxed: a `Peer` is several KB, and a map holding them inline keeps that much for
    /// every empty slot and copies them all when it grows. Keyed by the engine's own
    /// numbers, so Fx hashing (a multiply) is safe; looked up per viewer per packet.
    peers: FxHashMap<PeerKey, Box<Peer>>,
    by_addr: HashMap<SocketAddr, PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    by_resource: HashMap<String, PeerKey>,
}

impl PeerTable {
    /// Adds a peer under `key` (from the engine's counter).
    pub(super) fn insert(&mut self, key: PeerKey, peer: Peer) {
        self.by_ufrag.insert(peer.ufrag.clone(), key);
        self.by_resource.insert(peer.resource.clone(), key);
        self.peers.insert(key, Box::new(peer));
    }

    /// Removes a peer and every lookup that leads to it.
    pub(super) fn remove(&mut self, key: PeerKey) -> Option<Box<Peer>> {
        let peer = self.peers.remove(&key)?;
        self.by_ufrag.remove(&peer.ufrag);
        self.by_resource.remove(&peer.resource);
        for addr in &peer.remotes {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        Some(peer)
    }

    pub(super) fn get(&self, key: PeerKey) -> Option<&Peer> {
        self.peers.get(&key).map(Box::as_ref)
    }

    pub(super) fn get_mut(&mut self, key: PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(&key).map(Box::as_mut)
    }

    pub(super) fn keys(&self) -> Vec<PeerKey> {
        self.peers.keys().copied().collect()
    }

    /// The peer of a WHIP/WHEP resource id.
    pub(super) fn by_resource(&self, resource: &str) -> Option<PeerKey> {
        self.by_resource.get(resource).copied()
    }

    /// Whose datagram this is: by its address, or, for a STUN check naming one of our ICE
    /// usernames from a new address, that peer (the address is learned).
    pub(super) fn route(&mut self, data: &[u8], from: SocketAddr) -> Option<PeerKey> {
        let key = self.by_addr.get(&from).copied();
        if stun::is_stun(data)
            && let Some(ufrag) = stun::local_ufrag(data)
            && let Some(&owner) = self.by_ufrag.get(ufrag)
            && key != Some(owner)
        {
            self.by_addr.insert(from, owner);
            if let Some(peer) = self.peers.get_mut(&owner) {
                peer.remotes.push(from);
            }
            return Some(owner);
        }
        key
    }
}

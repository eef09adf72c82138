//! The peer table: every WebRTC peer connection of the engine and the three ways a peer is
//! found (the address a datagram came from, the ICE username in a STUN check, the WHIP/WHEP
//! resource id), kept consistent in one place.
//!
//! An address becomes a peer's only through a STUN check from it that names the peer's
//! ICE username *and* is signed with its ICE password (short-term MESSAGE-INTEGRITY): the
//! username is public (it is in the SDP answer and in every check, in the clear), the
//! password never leaves the answer sent to the peer. Each peer keeps at most
//! [`MAX_REMOTES_PER_PEER`] addresses, so the address map is bounded by the peer count.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtc::crypto::RTCCrypto;
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
    /// Our ICE password for it, to verify its STUN checks before routing by their address.
    pub(super) pwd: String,
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
    pub(super) fn new(
        session: LiveSession,
        pwd: String,
        expected_tracks: usize,
        layers: Vec<String>,
    ) -> Self {
        PublisherState {
            session,
            pwd,
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
            created: now,
            scheduled: None,
            closing: false,
            ever_connected: false,
            tap,
            send_to: None,
        }
    }

    /// Our ICE password for this peer: what its STUN checks are signed with.
    pub(super) fn ice_pwd(&self) -> &str {
        match &self.role {
            Role::Viewer(v) => &v.pwd,
            Role::Publisher(p) => &p.pwd,
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

/// How many remote addresses one peer may be reached from. Only addresses that proved
/// the peer's ICE password get here: its candidates' pairs during ICE (a browser rarely
/// has more than a host, a server-reflexive and a relay candidate per family) and a new
/// one when its network changes. The ninth replaces the oldest, never the one media goes
/// to: refusing it instead would strand a viewer that moved networks after trying many
/// pairs, while a replaced stale address costs at most one more signed check.
pub(super) const MAX_REMOTES_PER_PEER: usize = 8;

/// Which peer each remote address belongs to, and each peer's addresses, oldest first.
/// `by_addr[a] == k` exactly when `a` is in `of[k]`, so it holds at most
/// [`MAX_REMOTES_PER_PEER`] addresses per peer.
#[derive(Default)]
pub(super) struct AddressBook {
    by_addr: HashMap<SocketAddr, PeerKey>,
    of: FxHashMap<PeerKey, VecDeque<SocketAddr>>,
}

impl AddressBook {
    /// The peer `addr` belongs to.
    pub(super) fn get(&self, addr: SocketAddr) -> Option<PeerKey> {
        self.by_addr.get(&addr).copied()
    }

    /// Makes `addr` the peer `key`'s (taking it from another peer: a verified check says
    /// it is this one's now), replacing the peer's oldest address other than `keep` when
    /// it has [`MAX_REMOTES_PER_PEER`] already.
    pub(super) fn bind(&mut self, addr: SocketAddr, key: PeerKey, keep: Option<SocketAddr>) {
        match self.by_addr.insert(addr, key) {
            Some(old) if old == key => return,
            Some(old) => self.unlist(old, addr),
            None => {}
        }
        let list = self.of.entry(key).or_default();
        list.push_back(addr);
        if list.len() > MAX_REMOTES_PER_PEER
            && let Some(at) = list.iter().position(|a| Some(*a) != keep)
            && let Some(evicted) = list.remove(at)
        {
            self.by_addr.remove(&evicted);
        }
    }

    /// Forgets every address of `key`.
    pub(super) fn forget(&mut self, key: PeerKey) {
        for addr in self.of.remove(&key).unwrap_or_default() {
            self.by_addr.remove(&addr);
        }
    }

    /// The addresses of `key`, oldest first.
    pub(super) fn of(&self, key: PeerKey) -> impl Iterator<Item = SocketAddr> + '_ {
        self.of.get(&key).into_iter().flatten().copied()
    }

    /// How many addresses are bound, over all peers.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_addr.len()
    }

    fn unlist(&mut self, key: PeerKey, addr: SocketAddr) {
        if let Some(list) = self.of.get_mut(&key) {
            list.retain(|a| *a != addr);
            if list.is_empty() {
                self.of.remove(&key);
            }
        }
    }
}

/// Where [`PeerTable::route`] sends a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Routed {
    /// To this peer.
    Peer(PeerKey),
    /// Nowhere: it came from no peer's address and names no peer.
    Unknown,
    /// Nowhere: a STUN check naming a peer's ICE username from an address that is not
    /// that peer's, not signed with its password (dropped before any address is learned).
    Unverified,
}

/// Every peer, by key, with its lookups.
#[derive(Default)]
pub(super) struct PeerTable {
    /// Boxed: a `Peer` is several KB, and a map holding them inline keeps that much for
    /// every empty slot and copies them all when it grows. Keyed by the engine's own
    /// numbers, so Fx hashing (a multiply) is safe; looked up per viewer per packet.
    peers: FxHashMap<PeerKey, Box<Peer>>,
    addresses: AddressBook,
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
        self.addresses.forget(key);
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

    /// The remote addresses bound to `key`.
    pub(super) fn addresses_of(&self, key: PeerKey) -> Vec<SocketAddr> {
        self.addresses.of(key).collect()
    }

    /// The peer of a WHIP/WHEP resource id.
    pub(super) fn by_resource(&self, resource: &str) -> Option<PeerKey> {
        self.by_resource.get(resource).copied()
    }

    /// Whose datagram this is: by its address, or, for a STUN check naming one of our ICE
    /// usernames from an address that is not that peer's, that peer when the check is
    /// signed with its ICE password (the address is learned); an unsigned or badly signed
    /// one is [`Routed::Unverified`] and binds nothing.
    pub(super) fn route(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        crypto: &dyn RTCCrypto,
    ) -> Routed {
        let bound = self.addresses.get(from);
        if stun::is_stun(data)
            && let Some(ufrag) = stun::local_ufrag(data)
            && let Some(&owner) = self.by_ufrag.get(ufrag)
            && bound != Some(owner)
        {
            let Some(peer) = self.peers.get(&owner) else {
                return Routed::Unknown;
            };
            if !stun::signed_request(data, peer.ice_pwd(), crypto) {
                return Routed::Unverified;
            }
            self.addresses.bind(from, owner, peer.send_to);
            return Routed::Peer(owner);
        }
        bound.map_or(Routed::Unknown, Routed::Peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// The map holds at most the cap per peer: the oldest address goes first, never the
    /// one media is sent to; taking an address from another peer and forgetting a peer
    /// leave nothing behind.
    #[test]
    fn the_address_book_is_bounded_per_peer() {
        let (a, b) = (PeerKey(1), PeerKey(2));
        let mut book = AddressBook::default();
        for port in 1..=100 {
            book.bind(addr(port), a, Some(addr(1)));
        }
        assert_eq!(book.len(), MAX_REMOTES_PER_PEER);
        let kept: Vec<SocketAddr> = book.of(a).collect();
        let newest = (100 - MAX_REMOTES_PER_PEER as u16 + 2..=100).map(addr);
        assert_eq!(
            kept,
            std::iter::once(addr(1)).chain(newest).collect::<Vec<_>>()
        );
        assert_eq!(
            book.get(addr(50)),
            None,
            "an evicted address routes nowhere"
        );
        assert_eq!(
            book.get(addr(1)),
            Some(a),
            "the address media goes to stays"
        );

        book.bind(addr(100), a, None);
        assert_eq!(
            book.len(),
            MAX_REMOTES_PER_PEER,
            "binding twice adds nothing"
        );
        book.bind(addr(100), b, None);
        assert_eq!(book.get(addr(100)), Some(b));
        assert_eq!(book.of(a).count(), MAX_REMOTES_PER_PEER - 1);
        assert_eq!(book.len(), MAX_REMOTES_PER_PEER);
        for port in 1000..1100 {
            book.bind(addr(port), b, None);
        }
        assert_eq!(book.len(), 2 * MAX_REMOTES_PER_PEER - 1);
        book.forget(a);
        book.forget(b);
        assert_eq!(book.len(), 0);
        assert!(book.of.is_empty());
    }

    fn publisher(ufrag: &str, pwd: &str) -> Peer {
        let session = LiveSession {
            id: crate::ids::SessionId(1),
            title: String::new(),
            started_at_ms: 0,
        };
        Peer {
            pc: None,
            channel: ChannelName::parse("st-1").unwrap(),
            resource: ufrag.to_string(),
            ufrag: ufrag.to_string(),
            role: Role::Publisher(PublisherState::new(session, pwd.into(), 1, Vec::new())),
            created: Instant::now(),
            scheduled: None,
            closing: false,
            ever_connected: false,
            tap: None,
            send_to: None,
        }
    }

    /// Only a check signed with the named peer's password binds its sender's address;
    /// any number of signed checks from new addresses binds at most the cap.
    #[test]
    fn routes_by_address_only_after_a_signed_check() {
        let provider = rtc::crypto::default_provider().unwrap();
        let crypto = provider.crypto();
        let mut table = PeerTable::default();
        let key = PeerKey(7);
        table.insert(key, publisher("ours", "our-password"));
        let rtp = [0x80u8; 40];

        for check in [
            stun::tests::signed_check("ours:theirs", None, crypto),
            stun::tests::signed_check("ours:theirs", Some("guessed"), crypto),
        ] {
            assert_eq!(table.route(&check, addr(1), crypto), Routed::Unverified);
            assert_eq!(table.route(&rtp, addr(1), crypto), Routed::Unknown);
        }
        assert_eq!(table.addresses.len(), 0);

        let check = stun::tests::signed_check("ours:theirs", Some("our-password"), crypto);
        assert_eq!(table.route(&check, addr(1), crypto), Routed::Peer(key));
        assert_eq!(table.route(&rtp, addr(1), crypto), Routed::Peer(key));
        // An unsigned check from a bound address goes to its peer, whose stack rejects it.
        let unsigned = stun::tests::signed_check("ours:theirs", None, crypto);
        assert_eq!(table.route(&unsigned, addr(1), crypto), Routed::Peer(key));

        for port in 2..200 {
            assert_eq!(table.route(&check, addr(port), crypto), Routed::Peer(key));
        }
        assert_eq!(table.addresses.len(), MAX_REMOTES_PER_PEER);
        table.remove(key);
        assert_eq!(table.addresses.len(), 0);
        assert_eq!(table.route(&check, addr(199), crypto), Routed::Unknown);
    }
}

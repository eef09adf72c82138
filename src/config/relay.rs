//! `[webrtc]` (media transport) and `[relay]` (fan-out and the WHEP door's limits).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// `[webrtc] shards` when the file does not say: 0, one per core (at most 32).
pub const DEFAULT_SHARDS: usize = 0;

/// WebRTC transport settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Address the single media UDP socket binds (all peers share it; open this one port).
    pub udp_bind: SocketAddr,
    /// Addresses put in our ICE candidates: the LAN or public IPs clients reach us on
    /// (NAT 1:1 included). `FEIYAN_ADVERTISED_IPS` (comma-separated) overrides.
    pub advertised_ips: Vec<IpAddr>,
    /// The UDP port put in our ICE candidates when a port forward maps a different
    /// external port to `udp_bind` (default: the bound port).
    pub advertised_port: Option<u16>,
    /// Seconds without ICE traffic before a peer counts as disconnected.
    pub disconnected_timeout_secs: u64,
    /// Further seconds (after `disconnected_timeout_secs`) without ICE traffic before a peer
    /// is failed and removed: a silent peer is gone after the sum of both.
    pub failed_timeout_secs: u64,
    /// Answer as an ICE-lite agent (RFC 8445 §2.5): we only answer the client's checks, so
    /// a browser nominates the first pair that works instead of waiting for a later check.
    /// Needs `advertised_ips` the clients can reach,
    /// which every deployment needs anyway; turn it off only if this server sits behind a
    /// NAT without a port forward and must punch out with checks of its own.
    pub ice_lite: bool,
    /// Send each viewer's run of same-size packets (a video frame) as one segmented UDP
    /// send (`UDP_SEGMENT`, Linux 4.18+): one pass through the IP stack instead of one per
    /// packet. The server turns it off by itself when the interface refuses it.
    pub udp_segmentation: bool,
    /// Relay engine shards, each on its own thread with its own peers, all on `udp_bind`
    /// (`SO_REUSEPORT`); a channel's viewers spread over them. 0: one per core. At most
    /// 32.
    pub shards: usize,
}

/// Relay limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Upper bound on cached packets of the latest keyframe group per channel; a group
    /// larger than this is not cached (new viewers then wait for the next keyframe).
    pub gop_cache_max_packets: usize,
    /// Minimum milliseconds between keyframe requests (PLI) forwarded to a publisher.
    pub pli_min_interval_ms: u64,
    /// Most viewers one channel accepts; further WHEP requests get 503. Viewers still
    /// connecting count too.
    pub max_viewers_per_channel: usize,
    /// Most viewers of one channel still connecting (answered, ICE and DTLS not done) at
    /// once; further WHEP requests get 503 with `Retry-After`, so offers that never
    /// connect cannot take a channel's places.
    pub max_unconnected_per_channel: usize,
    /// Most viewers still connecting from one client address (an IPv6 /64) at once,
    /// across channels; further WHEP requests from it get 429 with `Retry-After`.
    pub max_unconnected_per_client: usize,
    /// Seconds a viewer may take to connect after its answer before it is let go and its
    /// place comes back.
    pub unconnected_timeout_secs: u64,
    /// How long a session whose publisher dropped waits for it before it ends: not a key
    /// of `[relay]` but `[hls] reconnect_grace_secs`, copied here by the app (zero: the
    /// session ends when the publisher leaves).
    #[serde(skip)]
    pub reconnect_grace: std::time::Duration,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            udp_bind: SocketAddr::from(([0, 0, 0, 0], 8189)),
            advertised_ips: vec![IpAddr::from([127, 0, 0, 1])],
            advertised_port: None,
            disconnected_timeout_secs: 5,
            failed_timeout_secs: 15,
            ice_lite: true,
            udp_segmentation: true,
            shards: DEFAULT_SHARDS,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            gop_cache_max_packets: 4096,
            pli_min_interval_ms: 500,
            max_viewers_per_channel: 5000,
            max_unconnected_per_channel: 500,
            max_unconnected_per_client: 20,
            unconnected_timeout_secs: 10,
            reconnect_grace: std::time::Duration::ZERO,
        }
    }
}

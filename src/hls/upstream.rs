//! Channels on air on another node: what live HLS asks of a cluster (the cluster
//! implements [`Upstream`]; live HLS knows nothing of nodes).
//!
//! On an edge, a request for a channel whose origin is another node is answered from that
//! node's `/hls/...` over HTTP (cached, so many players here cost the origin one fetch per
//! segment); on the origin, such a signed fetch is neither redirected for a `vid` nor
//! counted as a player (the edge counts its own players).

use std::time::Duration;

use bytes::Bytes;

use crate::ids::{ChannelName, SessionId};

/// The header a node's signed fetch carries (the same as a cluster's signed pulls).
pub const SIGNATURE_HEADER: &str = "x-feiyan-cluster";

/// A request this node cannot answer from its own channels.
pub struct UpstreamRequest<'a> {
    /// The channel, not on air here.
    pub channel: &'a ChannelName,
    /// The path after `/hls/`, as sent (already checked).
    pub path: &'a str,
    /// A blocking reload's `_HLS_msn` / `_HLS_part` (`a=b&c=d`, possibly empty): the rest
    /// of the player's query (its `vid`) stays here.
    pub query: String,
    /// A playlist (reused for at most `playlist_ttl`), or media (immutable once cut).
    pub playlist: bool,
    /// How long a playlist may be reused for other players: the part target.
    pub playlist_ttl: Duration,
}

/// What the other node answered.
pub struct Upstreamed {
    /// Its HTTP status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: String,
    /// The body (shared with every player that asked for the same thing).
    pub body: Bytes,
    /// The session live there (this node's players count in it).
    pub session: SessionId,
}

/// Another node's HLS, for channels on air there.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync {
    /// Whether `header` is a valid signature of `GET path` (`path` starting `/hls/`): the
    /// request is another node's fetch.
    fn signed(&self, path: &str, header: Option<&str>) -> bool;
    /// The answer of the node `request.channel` is live on; `None` when it is live on no
    /// other node.
    async fn fetch(&self, request: UpstreamRequest<'_>) -> Option<Upstreamed>;
    /// Prometheus lines of its figures.
    fn metrics(&self) -> String;
}

//! Live HLS: every live channel as fMP4/CMAF segments with low-latency parts and as plain
//! MPEG-TS, cut from the hub's access units ([`crate::relay::SourceHandle::subscribe`]) with
//! no second ingest and no video decode. Players are counted in the catalog like WebRTC
//! viewers.
//!
//! - [`segmenter`]: one variant (a video rendition with the channel's AAC) cut into parts and
//!   segments (sans-IO).
//! - [`fmp4`], [`ts`]: the two containers (sans-IO).
//! - [`playlist`]: playlist text.
//! - [`service`]: one task per live channel (subscription, Opus->AAC where the channel has
//!   no AAC, reconnect grace) and the state HTTP reads.
//! - [`viewers`]: HLS players as attendance rows.
//! - [`routes`] answers `/hls/...`.
//! - [`upstream`]: channels on air on another node of a cluster (answered from there).

pub mod fmp4;
pub mod playlist;
pub mod routes;
pub mod segmenter;
pub mod service;
#[cfg(test)]
pub(crate) mod test_media;
pub mod ts;
pub mod upstream;
pub mod viewers;

pub use service::{Hls, HlsSettings};

//! Live HLS: per live channel, fMP4/CMAF segments with low-latency parts and a plain
//! MPEG-TS variant, cut from the hub's access units ([`crate::relay::RelayHandle::subscribe`]).

pub mod fmp4;
pub mod ts;

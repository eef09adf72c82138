//! Replay (回看): every live session recorded as its live HLS fMP4 segments, written once,
//! served back as VOD, counted, kept within the retention limits, exported as one MP4.
//!
//! - [`store`]: the on-disk layout of one recording (init segments, segments, an
//!   append-only journal a crash cannot corrupt) and the VOD playlist made from it.
//! - [`recorder`]: writes a live channel's source rendition as HLS cuts it, and makes the
//!   catalog row when the session ends (and, at start, for recordings a crash left).
//! - [`library`]: a film class whose library file is H.264 + AAC replays from that file,
//!   cut into the same fMP4 segments on request.
//! - [`export`]: the whole recording as one MP4, remuxed (no re-encoding).
//! - [`counting`]: replay viewers (回看人次, 回看分钟) from the segments they fetch.
//! - [`retention`]: `keep_days` and `max_disk_mb`.
//! - [`routes`]: `/replay/...` and `/api/recordings`.

pub mod export;
pub mod library;
pub mod store;

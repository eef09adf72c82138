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
//! - [`replays`]: what `/replay/...` serves (playlists, segments, the MP4), opened once.

pub mod export;
pub mod library;
pub mod store;
pub mod counting;
pub mod recorder;
pub mod retention;
pub mod replays;

use crate::catalog::CatalogError;

/// Why a replay could not be served, exported or cut.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// No such replay, or its files are gone.
    #[error("{0}")]
    NotFound(String),
    /// The media cannot be read, cut or remuxed (a damaged file, a film that is not
    /// H.264 + AAC, a full disk); the message names the file and the reason.
    #[error("{0}")]
    Media(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Results of this module.
pub type Result<T, E = RecordingError> = std::result::Result<T, E>;

/// A [`RecordingError::Media`] with `message`.
pub(crate) fn media(message: String) -> RecordingError {
    RecordingError::Media(message)
}

/// Turns a failure (or a `None`) into a [`RecordingError::Media`] that says what was being
/// done: `what(): why`.
pub(crate) trait Because<T> {
    fn media(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Because<T> for std::result::Result<T, E> {
    fn media(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| RecordingError::Media(format!("{}: {e}", what())))
    }
}

impl<T> Because<T> for Option<T> {
    fn media(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| RecordingError::Media(what()))
    }
}

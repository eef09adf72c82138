//! `[hls]` (live HLS) and `[recording]` (every session kept for replay).

use std::path::PathBuf;

use serde::Deserialize;

/// Live HLS (`[hls]`): every live channel as fMP4/CMAF with low-latency parts and as
/// MPEG-TS, under `/hls/{channel}/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Seconds a channel whose publisher dropped stays on air waiting for it: a publisher
    /// that returns within them continues the same session (one lecture, one session).
    pub reconnect_grace_secs: u64,
    /// Target segment length in seconds (segments start on keyframes, so they are at
    /// least this long when the publisher's keyframes are further apart).
    pub segment_secs: f64,
    /// Target length of a low-latency part in seconds (0.2 to 1).
    pub part_secs: f64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            reconnect_grace_secs: 30,
            segment_secs: 2.0,
            part_secs: 0.5,
        }
    }
}

/// Recording for replay: every live session's HLS segments, kept on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record live sessions (channels listed in `channels` override it).
    pub enabled: bool,
    /// Where recordings are written (relative paths from the working directory).
    pub dir: PathBuf,
    /// Recordings older than this many days are deleted unless kept (0: no age limit).
    pub keep_days: u64,
    /// The recordings together may use at most this many MiB; the oldest unkept go first
    /// (0: no limit).
    pub max_disk_mb: u64,
    /// Per-channel override of `enabled`: `{ "st-1" = false }`.
    pub channels: std::collections::BTreeMap<String, bool>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("media/recordings"),
            keep_days: 0,
            max_disk_mb: 0,
            channels: Default::default(),
        }
    }
}

impl RecordingConfig {
    /// Whether `channel`'s sessions are recorded.
    pub fn records(&self, channel: &str) -> bool {
        self.channels.get(channel).copied().unwrap_or(self.enabled)
    }
}

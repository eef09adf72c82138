//! A recording as one MP4 file: remuxed with FFmpeg (no re-encoding), `moov` first.

use std::path::Path;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ExportReport {
    /// Video frames written.
    pub video_frames: u64,
    /// Audio frames written.
    pub audio_frames: u64,
    /// Duration of the longest stream, ms.
    pub duration_ms: i64,
    /// Size of the MP4, bytes.
    pub bytes: u64,
}

/// Remuxes `input` (a local VOD playlist written by [`super::store::Recording::write_local_playlist`],
/// or any media file FFmpeg reads, e.g. a library film) into the MP4 `out`.
pub fn export_mp4(input: &Path, out: &Path) -> anyhow::Result<ExportReport> {
    let _ = (input, out);
    anyhow::bail!("MP4 export is not built yet")
}

//! LOCAL STUB (not committed): replaced by the rec-media branch.
#![allow(missing_docs, unused)]
use std::path::Path;
pub fn library_eligible(video_codec: Option<&str>, audio_codec: Option<&str>) -> bool { video_codec == Some("h264") && matches!(audio_codec, None | Some("aac")) }
pub struct LibraryVod;
impl LibraryVod {
    pub fn open(path: &Path, target_secs: f64) -> anyhow::Result<LibraryVod> { anyhow::bail!("stub") }
    pub fn durations(&self) -> Vec<f64> { vec![] }
    pub fn init(&self) -> bytes::Bytes { bytes::Bytes::new() }
    pub fn segment(&self, index: usize) -> anyhow::Result<bytes::Bytes> { anyhow::bail!("stub") }
}

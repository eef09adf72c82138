//! LOCAL STUB (not committed): replaced by the rec-catalog branch.
#![allow(missing_docs, unused)]
use serde::Serialize;
use super::{Catalog, CatalogError};
use crate::ids::{ChannelName, SessionId, StationId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingKind { Recorded, Library }
pub struct NewRecording { pub session: SessionId, pub kind: RecordingKind, pub path: String, pub started_ms: i64, pub ended_ms: i64, pub duration_ms: i64, pub size_bytes: i64 }
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    pub id: i64, pub session_id: i64, pub kind: RecordingKind,
    #[serde(skip)] pub path: String,
    pub channel: String, pub station_id: i64, pub station: String, pub institute_id: i64, pub institute: String, pub center_id: i64, pub center: String,
    pub title: String, pub session_kind: String, pub speaker: Option<String>, pub film_id: Option<i64>, pub film: Option<String>,
    pub started_at: String, pub ended_at: String, #[serde(skip)] pub started_ms: i64,
    pub duration_ms: i64, pub size_bytes: i64, pub published: bool, pub keep: bool,
    pub deleted_at: Option<String>, pub deleted_reason: Option<String>,
}
#[derive(Debug, Clone)]
pub struct ReplayView { pub recording_id: i64, pub viewer_key: String, pub day: String, pub terminal: String, pub segments: Vec<u8>, pub watched_ms: i64, pub first_ms: i64, pub last_ms: i64 }
impl Catalog {
    pub async fn insert_recording(&self, r: &NewRecording) -> Result<i64, CatalogError> { todo!() }
    pub async fn recording(&self, id: i64) -> Result<Option<Recording>, CatalogError> { todo!() }
    pub async fn recording_for_session(&self, session: SessionId) -> Result<Option<Recording>, CatalogError> { todo!() }
    pub async fn station_recordings(&self, channel: &ChannelName, include_hidden: bool) -> Result<Vec<Recording>, CatalogError> { todo!() }
    pub async fn list_recordings(&self, station: Option<StationId>, include_deleted: bool) -> Result<Vec<Recording>, CatalogError> { todo!() }
    pub async fn set_recording_published(&self, id: i64, published: bool) -> Result<Recording, CatalogError> { todo!() }
    pub async fn set_recording_keep(&self, id: i64, keep: bool) -> Result<Recording, CatalogError> { todo!() }
    pub async fn mark_recording_deleted(&self, id: i64, reason: &str, at_ms: i64) -> Result<Recording, CatalogError> { todo!() }
    pub async fn retention_candidates(&self) -> Result<Vec<Recording>, CatalogError> { todo!() }
    pub async fn record_replay_views(&self, views: &[ReplayView]) -> Result<(), CatalogError> { todo!() }
    pub async fn replay_view(&self, recording_id: i64, viewer_key: &str, day: &str) -> Result<Option<ReplayView>, CatalogError> { todo!() }
}

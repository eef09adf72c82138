//! Replays as the HTTP side serves them: catalog rows read at most every [`ROW_FRESH`],
//! each replay's media opened once (a recording's journal, or a library film's index),
//! VOD playlists, segments (counted for the viewer who fetched them) and the MP4 export.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::counting::ReplayCounter;
use super::library::LibraryVod;
use super::store::{self, RecordingFiles, VodSegment};
use super::{Because as _, RecordingError, Result};
use crate::audience::now_ms;
use crate::catalog::{Catalog, Recording, RecordingKind};
use crate::device::{DeviceIds, Terminal};

/// How long a catalog row read for a media request is reused.
pub const ROW_FRESH: Duration = Duration::from_secs(2);
/// Replays kept open at once (a 90-minute recording's index is ~150 KB); past it one is
/// closed (opening again reads its journal or indexes its film once more).
const OPEN_SOURCES: usize = 256;

/// A replay's media, recorded or cut from a library film.
enum Source {
    Recorded(RecordingFiles),
    Library(LibraryVod),
}

impl Source {
    fn segments(&self) -> Vec<VodSegment> {
        match self {
            Source::Recorded(files) => files.vod_segments(),
            Source::Library(lib) => lib
                .durations()
                .into_iter()
                .map(|duration| VodSegment {
                    duration,
                    init: 0,
                    discontinuity: false,
                })
                .collect(),
        }
    }
}

/// Who fetched a segment, for counting.
pub struct Viewer<'a> {
    /// Their verified `vid`.
    pub vid: &'a str,
    /// Their device kind.
    pub terminal: Terminal,
}

/// Every replay this server serves.
pub struct Replays {
    catalog: Catalog,
    root: PathBuf,
    /// Checks and issues `vid`s.
    pub devices: Arc<DeviceIds>,
    /// Counts replay viewers.
    pub counter: Arc<ReplayCounter>,
    /// Library films are cut into segments of about this many seconds.
    segment_secs: f64,
    sources: Mutex<HashMap<i64, Arc<Source>>>,
    rows: Mutex<HashMap<i64, (Instant, Recording)>>,
    /// One MP4 export at a time (they are disk-bound).
    exporting: tokio::sync::Mutex<()>,
}

impl Replays {
    /// Replays of the recordings under `root`.
    pub fn new(
        catalog: Catalog,
        root: PathBuf,
        devices: Arc<DeviceIds>,
        segment_secs: f64,
    ) -> Arc<Replays> {
        Arc::new(Replays {
            counter: ReplayCounter::start(catalog.clone()),
            catalog,
            root,
            devices,
            segment_secs,
            sources: Mutex::default(),
            rows: Mutex::default(),
            exporting: tokio::sync::Mutex::new(()),
        })
    }

    /// Where recordings are.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The server stops: replay viewers are written.
    pub async fn shutdown(&self) {
        self.counter.flush().await;
    }

    /// Forgets what is cached of `id` (it was hidden, deleted...).
    pub fn forget(&self, id: i64) {
        lock(&self.sources).remove(&id);
        lock(&self.rows).remove(&id);
    }

    /// The catalog row of replay `id` (deleted and hidden ones too; the caller decides).
    pub async fn row(&self, id: i64) -> Result<Recording> {
        if let Some((at, row)) = lock(&self.rows).get(&id)
            && at.elapsed() < ROW_FRESH
        {
            return Ok(row.clone());
        }
        let row = self
            .catalog
            .recording(id)
            .await?
            .ok_or_else(|| RecordingError::NotFound(format!("no replay {id}")))?;
        let mut rows = lock(&self.rows);
        if rows.len() >= OPEN_SOURCES {
            rows.retain(|_, (at, _)| at.elapsed() < ROW_FRESH);
        }
        rows.insert(id, (Instant::now(), row.clone()));
        Ok(row)
    }

    async fn source(&self, rec: &Recording) -> Result<Arc<Source>> {
        if let Some(s) = lock(&self.sources).get(&rec.id) {
            return Ok(s.clone());
        }
        let id = rec.id;
        let source = match rec.kind {
            RecordingKind::Recorded => {
                let dir = self.folder(rec)?;
                let files = blocking(move || {
                    RecordingFiles::open(&dir).map_err(|e| {
                        RecordingError::NotFound(format!("replay {id}'s files are gone: {e}"))
                    })
                })
                .await?;
                Source::Recorded(files)
            }
            RecordingKind::Library => {
                let path = PathBuf::from(&rec.path);
                let secs = self.segment_secs;
                Source::Library(blocking(move || LibraryVod::open(&path, secs)).await?)
            }
        };
        let source = Arc::new(source);
        let mut sources = lock(&self.sources);
        if sources.len() >= OPEN_SOURCES
            && let Some(old) = sources.keys().next().copied()
        {
            sources.remove(&old);
        }
        sources.insert(rec.id, source.clone());
        Ok(source)
    }

    fn folder(&self, rec: &Recording) -> Result<PathBuf> {
        store::safe_dir(&self.root, &rec.path)
            .media(|| format!("recording {} has a bad path {:?}", rec.id, rec.path))
    }

    /// The VOD playlist of `rec` for the viewer `vid` (its segment URLs carry it).
    pub async fn playlist(&self, rec: &Recording, vid: &str) -> Result<String> {
        let segments = self.source(rec).await?.segments();
        Ok(store::vod_playlist(
            &segments,
            |i| format!("seg-{i}.m4s?vid={vid}"),
            |g| format!("init-{g}.mp4"),
        ))
    }

    /// Init segment generation `g` of `rec`.
    pub async fn init(&self, rec: &Recording, g: u32) -> Result<Bytes> {
        let source = self.source(rec).await?;
        if !source.segments().iter().any(|s| s.init == g) {
            return Err(RecordingError::NotFound(format!(
                "replay {} has no init segment {g}",
                rec.id
            )));
        }
        match &*source {
            Source::Recorded(files) => tokio::fs::read(files.dir.join(store::init_file(g)))
                .await
                .map(Bytes::from)
                .map_err(|e| RecordingError::NotFound(format!("init segment {g} is gone: {e}"))),
            Source::Library(lib) => Ok(lib.init()),
        }
    }

    /// Segment `i` of `rec`; counted for `viewer` when there is one.
    pub async fn segment(
        &self,
        rec: &Recording,
        i: usize,
        viewer: Option<Viewer<'_>>,
    ) -> Result<Bytes> {
        let source = self.source(rec).await?;
        let segments = source.segments();
        let Some(segment) = segments.get(i) else {
            return Err(RecordingError::NotFound(format!(
                "replay {} has {} segments; there is no {i}",
                rec.id,
                segments.len()
            )));
        };
        let bytes = match &*source {
            Source::Recorded(files) => {
                let path = files.dir.join(store::segment_file(files.entries[i].msn));
                tokio::fs::read(path)
                    .await
                    .map(Bytes::from)
                    .map_err(|e| RecordingError::NotFound(format!("segment {i} is gone: {e}")))?
            }
            Source::Library(_) => {
                let source = source.clone();
                blocking(move || match &*source {
                    Source::Library(lib) => lib.segment(i),
                    Source::Recorded(_) => Err(super::media("not a library replay".into())),
                })
                .await?
            }
        };
        if let Some(viewer) = viewer {
            self.counter
                .fetched(
                    rec.id,
                    crate::hls::viewers::viewer_key(viewer.vid),
                    viewer.terminal,
                    i,
                    (segment.duration * 1000.0).round() as i64,
                    now_ms(),
                )
                .await;
        }
        Ok(bytes)
    }

    /// The whole replay as one MP4 file: remuxed on the first request (one export at a
    /// time), then kept (inside the recording's folder, so retention removes it too).
    pub async fn mp4(&self, rec: &Recording) -> Result<PathBuf> {
        let (input, out) = match rec.kind {
            RecordingKind::Recorded => (None, self.folder(rec)?.join("replay.mp4")),
            RecordingKind::Library => (
                Some(PathBuf::from(&rec.path)),
                self.root.join("exports").join(format!("{}.mp4", rec.id)),
            ),
        };
        if out.is_file() {
            return Ok(out);
        }
        let _one = self.exporting.lock().await;
        if out.is_file() {
            return Ok(out);
        }
        let target = out.clone();
        blocking(move || {
            let input = match input {
                Some(path) => path,
                None => {
                    let dir = target.parent().map(PathBuf::from).unwrap_or_default();
                    RecordingFiles::open(&dir)
                        .and_then(|f| f.write_local_playlist())
                        .media(|| format!("reading the recording in {}", dir.display()))?
                }
            };
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).media(|| format!("making {}", parent.display()))?;
            }
            super::export::export_mp4(&input, &target).map(|_| ())
        })
        .await?;
        Ok(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(super::media(format!("a replay task failed: {e}"))))
}

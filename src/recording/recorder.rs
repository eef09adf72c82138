//! Writes every recorded live session's source rendition as live HLS cuts it, and makes
//! the catalog row when the session ends.
//!
//! The HLS channel task hands finished segments over ([`ChannelRecording::collect`]): the
//! bytes are the live segments' own (`Bytes`, shared), so recording adds file writes and
//! nothing else. One thread (`fy-rec`) writes every channel's files in order; an async task
//! makes the rows. A film class whose library file is H.264 + AAC is not written: its
//! replay points at the library file. At start, recordings an earlier run left without a
//! row (a crash, a kill -9, a catalog outage) get theirs from what is on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::library::library_eligible;
use super::store::{self, JournalEntry, RecordingFiles, Writer};
use crate::audience::now_ms;
use crate::catalog::{Catalog, NewRecording, RecordingKind};
use crate::config::RecordingConfig;
use crate::hls::segmenter::Variant;
use crate::hls::service::{SegmentSink, SessionSink};
use crate::ids::{ChannelName, SessionId};

/// What the writer thread is asked to do, in order.
enum Job {
    /// A session's recording starts at `rel` (`{channel}/{session}`).
    Start {
        session: SessionId,
        rel: String,
    },
    /// Whether the session is written (false: a library film class).
    Decided {
        session: SessionId,
        write: bool,
    },
    Init {
        session: SessionId,
        generation: u32,
        bytes: Bytes,
    },
    Segment {
        session: SessionId,
        entry: JournalEntry,
        bytes: Bytes,
    },
    End {
        session: SessionId,
        ended_ms: i64,
    },
}

/// A session's recording, to the writer thread.
enum Writing {
    /// Waiting for the decision; what came meanwhile.
    Pending {
        rel: String,
        held: Vec<Job>,
    },
    Open(Writer),
    /// Not written (a library film class), or the disk refused.
    Skipped {
        library: bool,
    },
}

/// What the writer thread tells the row maker.
enum Finished {
    Recorded {
        session: SessionId,
        rel: String,
        dir: PathBuf,
    },
    Library {
        session: SessionId,
        ended_ms: i64,
    },
}

/// Recording for every channel: the writer thread and the row maker.
pub struct Recorder {
    root: PathBuf,
    config: RecordingConfig,
    catalog: Catalog,
    jobs: std::sync::mpsc::Sender<Job>,
    /// Sessions being recorded now, with when they started (the start-up recovery
    /// leaves them alone; a library row takes its start from here).
    active: Mutex<HashMap<SessionId, i64>>,
    /// Told after every new row (retention runs then).
    rows: tokio::sync::watch::Sender<u64>,
    /// Sessions another node records (a cluster edge re-serves the origin's session; the
    /// origin records it): set once by the wiring, see [`Recorder::skip_sessions`].
    skip: std::sync::OnceLock<SkipSession>,
}

/// Whether a session is recorded elsewhere (see [`Recorder::skip_sessions`]).
pub type SkipSession = Arc<dyn Fn(SessionId) -> bool + Send + Sync>;

impl Recorder {
    /// Sessions for which `skip` is true are not recorded here (a cluster edge's feed of
    /// the origin's session: one recording per session, made where the publisher is).
    /// Set once; later calls are ignored.
    pub fn skip_sessions(&self, skip: SkipSession) {
        let _ = self.skip.set(skip);
    }

    /// Starts the writer thread and the row maker, and makes rows for recordings an
    /// earlier run left without one.
    pub fn start(config: &RecordingConfig, catalog: Catalog) -> std::io::Result<Arc<Recorder>> {
        std::fs::create_dir_all(&config.dir)?;
        let (jobs, rx) = std::sync::mpsc::channel();
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let root = config.dir.clone();
        std::thread::Builder::new()
            .name("fy-rec".into())
            .spawn(move || write_loop(root, rx, finished_tx))?;
        let recorder = Arc::new(Recorder {
            root: config.dir.clone(),
            config: config.clone(),
            catalog,
            jobs,
            active: Mutex::default(),
            rows: tokio::sync::watch::channel(0).0,
            skip: std::sync::OnceLock::new(),
        });
        tokio::spawn(make_rows(Arc::downgrade(&recorder), finished_rx));
        let recovering = recorder.clone();
        tokio::spawn(async move { recovering.recover().await });
        super::retention::spawn(
            &recorder,
            recorder.catalog.clone(),
            super::retention::Limits {
                keep_days: config.keep_days,
                max_disk_mb: config.max_disk_mb,
            },
        );
        Ok(recorder)
    }

    /// Where recordings are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Changes with every new row.
    pub fn rows(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rows.subscribe()
    }

    async fn library_film_class(catalog: &Catalog, session: SessionId) -> bool {
        let film = match catalog.session_film(session).await {
            Ok(Some(film)) => film,
            Ok(None) => return false,
            Err(err) => {
                warn!(%session, %err, "cannot tell whether the session plays a library film: recording it");
                return false;
            }
        };
        match catalog.film(film).await {
            Ok(film) => library_eligible(film.video_codec.as_deref(), film.audio_codec.as_deref()),
            Err(err) => {
                warn!(%session, %err, "cannot read the session's film: recording it");
                false
            }
        }
    }

    /// Rows for recordings on disk that have none (an earlier run ended before making it).
    async fn recover(self: Arc<Self>) {
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || {
            store::list(&root)
                .into_iter()
                .filter_map(|rel| {
                    let dir = store::safe_dir(&root, &rel)?;
                    let files = RecordingFiles::open(&dir).ok()?;
                    files.row.is_none().then_some((rel, dir, files))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (rel, dir, files) in found {
            let Some(session) = rel
                .split_once('/')
                .and_then(|(_, s)| s.parse::<i64>().ok())
                .map(SessionId)
            else {
                continue;
            };
            if self
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&session)
            {
                continue;
            }
            info!(%session, segments = files.entries.len(), "a recording an earlier run left: making its row");
            self.row_for(session, &rel, &dir, files).await;
        }
    }

    /// Makes the row of a written recording (none for an empty one, whose folder goes).
    async fn row_for(&self, session: SessionId, rel: &str, dir: &Path, files: RecordingFiles) {
        let (Some(started_ms), Some(ended_ms)) = (files.started_ms(), files.end_ms()) else {
            debug!(%session, "an empty recording: removed");
            let _ = store::remove(&self.root, rel);
            return;
        };
        let new = NewRecording {
            session,
            kind: RecordingKind::Recorded,
            path: rel.to_string(),
            started_ms,
            ended_ms,
            duration_ms: files.duration_ms(),
            size_bytes: files.size_bytes() as i64,
        };
        match self.catalog.insert_recording(&new).await {
            Ok(id) => {
                info!(%session, recording = id, duration_ms = new.duration_ms, bytes = new.size_bytes, "recording catalogued");
                if let Err(err) = Writer::catalogued(dir, id) {
                    warn!(%session, %err, "cannot note the row in the journal");
                }
                self.rows.send_modify(|n| *n += 1);
            }
            Err(err) => {
                warn!(%session, %err, "recording not catalogued: it is tried again at the next start")
            }
        }
    }

    async fn library_row(&self, session: SessionId, started_ms: i64, ended_ms: i64) {
        let film = match self.catalog.session_film(session).await {
            Ok(Some(id)) => self.catalog.film(id).await.ok(),
            _ => None,
        };
        let Some(film) = film else {
            warn!(%session, "the film class's film is gone: no replay");
            return;
        };
        let size = std::fs::metadata(&film.path).map(|m| m.len()).unwrap_or(0);
        let new = NewRecording {
            session,
            kind: RecordingKind::Library,
            path: film.path.clone(),
            started_ms,
            ended_ms,
            duration_ms: film.duration_ms,
            size_bytes: size as i64,
        };
        match self.catalog.insert_recording(&new).await {
            Ok(id) => {
                info!(%session, recording = id, film = film.id.0, "film class replays from the library file");
                self.rows.send_modify(|n| *n += 1);
            }
            Err(err) => warn!(%session, %err, "film class replay not catalogued"),
        }
    }

    fn ended(&self, session: SessionId) -> Option<i64> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session)
    }
}

impl SegmentSink for Recorder {
    /// A session went live on `channel`: its recording, unless the channel is not recorded.
    fn begin(&self, channel: &ChannelName, session: SessionId) -> Option<Box<dyn SessionSink>> {
        if !self.config.records(channel.as_str()) {
            debug!(%channel, %session, "this channel is not recorded");
            return None;
        }
        if self.skip.get().is_some_and(|skip| skip(session)) {
            debug!(%channel, %session, "recorded by the origin node");
            return None;
        }
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session, now_ms());
        let rel = format!("{}/{}", channel.as_str(), session.0);
        let _ = self.jobs.send(Job::Start { session, rel });
        // A film class of an H.264 + AAC library file is not written again.
        let (catalog, jobs) = (self.catalog.clone(), self.jobs.clone());
        tokio::spawn(async move {
            let write = !Recorder::library_film_class(&catalog, session).await;
            let _ = jobs.send(Job::Decided { session, write });
        });
        Some(Box::new(ChannelRecording {
            session,
            next_msn: 0,
            inits: Vec::new(),
            jobs: self.jobs.clone(),
        }))
    }
}

/// One session's recording, held by the HLS channel task.
pub struct ChannelRecording {
    session: SessionId,
    /// The next segment to write.
    next_msn: u64,
    /// Init generations sent.
    inits: Vec<u32>,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl SessionSink for ChannelRecording {
    /// Hands the source variant's segments finished since the last call to the writer.
    fn collect(&mut self, variant: &Variant) {
        for seg in variant.segments() {
            if seg.msn < self.next_msn {
                continue;
            }
            if !self.inits.contains(&seg.init) {
                if let Some(bytes) = variant.init(seg.init) {
                    let _ = self.jobs.send(Job::Init {
                        session: self.session,
                        generation: seg.init,
                        bytes,
                    });
                }
                self.inits.push(seg.init);
            }
            let entry = JournalEntry {
                msn: seg.msn,
                duration: seg.duration,
                init: seg.init,
                discontinuity: seg.discontinuity,
                bytes: seg.fmp4.len() as u64,
                started_ms: seg.started_ms,
            };
            let _ = self.jobs.send(Job::Segment {
                session: self.session,
                entry,
                bytes: seg.fmp4.clone(),
            });
            self.next_msn = seg.msn + 1;
        }
    }

    /// The session ended: the recording is finished and gets its row.
    fn end(self: Box<Self>) {
        let _ = self.jobs.send(Job::End {
            session: self.session,
            ended_ms: now_ms(),
        });
    }
}

fn write_loop(
    root: PathBuf,
    jobs: std::sync::mpsc::Receiver<Job>,
    finished: mpsc::UnboundedSender<Finished>,
) {
    let mut writing: HashMap<SessionId, Writing> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Start { session, rel } => {
                writing.insert(
                    session,
                    Writing::Pending {
                        rel,
                        held: Vec::new(),
                    },
                );
            }
            Job::Decided { session, write } => {
                let Some(Writing::Pending { rel, held }) = writing.remove(&session) else {
                    continue;
                };
                if !write {
                    writing.insert(session, Writing::Skipped { library: true });
                    let ended = held.iter().any(|j| matches!(j, Job::End { .. }));
                    if ended {
                        finish(&mut writing, session, now_ms(), &finished);
                    }
                    continue;
                }
                writing.insert(session, open(&root, session, &rel));
                for job in held {
                    apply(&mut writing, job, &finished);
                }
            }
            job => apply(&mut writing, job, &finished),
        }
    }
}

fn open(root: &Path, session: SessionId, rel: &str) -> Writing {
    match Writer::create(root, rel) {
        Ok(w) => Writing::Open(w),
        Err(err) => {
            warn!(%session, %err, "cannot make the recording folder: this session is not recorded");
            Writing::Skipped { library: false }
        }
    }
}

fn apply(
    writing: &mut HashMap<SessionId, Writing>,
    job: Job,
    finished: &mpsc::UnboundedSender<Finished>,
) {
    let session = match &job {
        Job::Start { session, .. }
        | Job::Decided { session, .. }
        | Job::Init { session, .. }
        | Job::Segment { session, .. }
        | Job::End { session, .. } => *session,
    };
    let Some(state) = writing.get_mut(&session) else {
        return;
    };
    match (state, job) {
        (Writing::Pending { held, .. }, job) => held.push(job),
        (
            Writing::Open(w),
            Job::Init {
                generation, bytes, ..
            },
        ) => {
            if let Err(err) = w.init(generation, &bytes) {
                warn!(%session, %err, "recording: init segment not written");
            }
        }
        (Writing::Open(w), Job::Segment { entry, bytes, .. }) => {
            if let Err(err) = w.segment(&entry, &bytes) {
                warn!(%session, msn = entry.msn, %err, "recording: segment not written");
            }
        }
        (_, Job::End { ended_ms, .. }) => finish(writing, session, ended_ms, finished),
        _ => {}
    }
}

fn finish(
    writing: &mut HashMap<SessionId, Writing>,
    session: SessionId,
    ended_ms: i64,
    finished: &mpsc::UnboundedSender<Finished>,
) {
    match writing.remove(&session) {
        Some(Writing::Open(mut w)) => {
            if let Err(err) = w.end(ended_ms) {
                warn!(%session, %err, "recording: end not noted");
            }
            let dir = w.dir().to_path_buf();
            let rel = dir
                .parent()
                .and_then(|p| p.file_name())
                .map(|c| format!("{}/{}", c.to_string_lossy(), session.0))
                .unwrap_or_default();
            let _ = finished.send(Finished::Recorded { session, rel, dir });
        }
        Some(Writing::Skipped { library: true }) => {
            let _ = finished.send(Finished::Library { session, ended_ms });
        }
        _ => {}
    }
}

async fn make_rows(
    recorder: std::sync::Weak<Recorder>,
    mut finished: mpsc::UnboundedReceiver<Finished>,
) {
    while let Some(done) = finished.recv().await {
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        match done {
            Finished::Recorded { session, rel, dir } => {
                recorder.ended(session);
                let read = dir.clone();
                let files = tokio::task::spawn_blocking(move || RecordingFiles::open(&read)).await;
                match files {
                    Ok(Ok(files)) => recorder.row_for(session, &rel, &dir, files).await,
                    Ok(Err(err)) => warn!(%session, %err, "cannot read the recording back"),
                    Err(err) => warn!(%session, %err, "reading the recording back failed"),
                }
            }
            Finished::Library { session, ended_ms } => {
                let started = recorder.ended(session).unwrap_or(ended_ms);
                recorder.library_row(session, started, ended_ms).await;
            }
        }
    }
}

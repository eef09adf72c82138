//! Pull sources: the server opens an RTSP/SRT/RTMP/HTTP URL with libavformat and feeds the
//! channel while media flows. When the input fails or ends, the session ends (the channel
//! goes not-live; connected viewers stay and resume with the next session) and the server
//! retries with backoff: 1 s, doubling to 30 s, back to 1 s after a good connection.
//! Sources are read from the catalog every second, so `feiyan source add` on a running
//! server takes effect without a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use super::{IngestContext, IngestError, forward, local_tracks, transcode_options};
use crate::audience::now_ms;
use crate::catalog::{PullSource, SessionKind, SessionSource, redact_url};
use crate::ids::{ChannelName, PullSourceId, SessionId};
use crate::transcode::demux::Demuxer;
use crate::transcode::{TranscodeError, Transcoder};

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Network reads that stall this long fail (then the source retries).
const IO_TIMEOUT_US: &str = "5000000";
const CATALOG_POLL: Duration = Duration::from_secs(1);

/// Where a pull source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Opening the URL.
    Connecting,
    /// Media is flowing into the channel.
    Connected,
    /// Waiting before the next attempt.
    Retrying,
}

/// A source's status as `GET /api/sources` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Source id.
    pub id: PullSourceId,
    /// Channel it feeds.
    pub channel: String,
    /// URL without credentials.
    pub url: String,
    /// Current state.
    pub state: SourceState,
    /// Connection attempts so far.
    pub attempts: u64,
    /// Why the last attempt or connection ended.
    pub last_error: Option<String>,
    /// Delay before the next attempt, while retrying.
    pub retry_in_ms: Option<u64>,
    /// The live session while connected.
    pub session_id: Option<SessionId>,
    /// When the state last changed, unix ms.
    pub since_ms: i64,
}

/// Statuses of running sources, shared with HTTP handlers.
#[derive(Debug, Default)]
pub struct PullBoard {
    // A std Mutex: held only to copy or replace an entry, never across an await.
    sources: Mutex<HashMap<PullSourceId, SourceStatus>>,
}

impl PullBoard {
    /// Every running source, by id.
    pub fn list(&self) -> Vec<SourceStatus> {
        let mut out: Vec<_> = self.lock().values().cloned().collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// One source.
    pub fn get(&self, id: PullSourceId) -> Option<SourceStatus> {
        self.lock().get(&id).cloned()
    }

    fn update(&self, id: PullSourceId, change: impl FnOnce(&mut SourceStatus)) {
        if let Some(status) = self.lock().get_mut(&id) {
            change(status);
            status.since_ms = now_ms();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PullSourceId, SourceStatus>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps one runner per enabled source until `stop` flips.
pub(crate) async fn supervisor(
    ctx: Arc<IngestContext>,
    board: Arc<PullBoard>,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: HashMap<PullSourceId, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    loop {
        match ctx.catalog.list_sources().await {
            Ok(sources) => {
                let enabled: HashMap<PullSourceId, PullSource> = sources
                    .into_iter()
                    .filter(|s| s.enabled)
                    .map(|s| (s.id, s))
                    .collect();
                running.retain(|id, (halt, task)| {
                    let keep = enabled.contains_key(id) && !task.is_finished();
                    if !keep {
                        let _ = halt.send(true);
                        board.lock().remove(id);
                    }
                    keep
                });
                for (id, source) in enabled {
                    if running.contains_key(&id) {
                        continue;
                    }
                    board.lock().insert(
                        id,
                        SourceStatus {
                            id,
                            channel: source.channel.clone(),
                            url: redact_url(&source.url),
                            state: SourceState::Connecting,
                            attempts: 0,
                            last_error: None,
                            retry_in_ms: None,
                            session_id: None,
                            since_ms: now_ms(),
                        },
                    );
                    let (halt, halted) = watch::channel(false);
                    let span = info_span!("pull", source = id.0, channel = %source.channel);
                    let task = tokio::spawn(
                        run_source(ctx.clone(), board.clone(), source, halted).instrument(span),
                    );
                    running.insert(id, (halt, task));
                }
            }
            Err(err) => warn!(%err, "cannot read pull sources"),
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(CATALOG_POLL) => {}
        }
    }
    for (_, (halt, task)) in running {
        let _ = halt.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
    }
}

async fn run_source(
    ctx: Arc<IngestContext>,
    board: Arc<PullBoard>,
    source: PullSource,
    mut halt: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        board.update(source.id, |s| {
            s.state = SourceState::Connecting;
            s.attempts += 1;
            s.retry_in_ms = None;
        });
        let (connected, ended) = attempt(&ctx, &board, &source, halt.clone()).await;
        if *halt.borrow() {
            break;
        }
        if connected {
            backoff = BACKOFF_MIN;
        }
        warn!(%ended, retry_in_s = backoff.as_secs(), "pull source down");
        board.update(source.id, |s| {
            s.state = SourceState::Retrying;
            s.last_error = Some(ended.clone());
            s.retry_in_ms = Some(backoff.as_millis() as u64);
            s.session_id = None;
        });
        tokio::select! {
            _ = halt.changed() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: open, go live, play until the input ends or fails. Returns whether
/// media flowed and why it ended.
async fn attempt(
    ctx: &IngestContext,
    board: &PullBoard,
    source: &PullSource,
    mut halt: watch::Receiver<bool>,
) -> (bool, String) {
    let Some(channel) = ChannelName::parse(&source.channel) else {
        return (false, format!("invalid channel name {:?}", source.channel));
    };
    let url = source.url.clone();
    let options = transcode_options(ctx, channel.as_str());
    let opened = tokio::task::spawn_blocking(move || {
        let mut demuxer = Demuxer::open(
            &url,
            &[("rw_timeout", IO_TIMEOUT_US), ("timeout", IO_TIMEOUT_US)],
        )?;
        let (transcoder, encoded) =
            Transcoder::start(demuxer.take_video(), demuxer.take_audio(), &options)?;
        Ok::<_, TranscodeError>((demuxer, transcoder, encoded))
    })
    .await;
    let (demuxer, transcoder, encoded) = match opened {
        Ok(Ok(parts)) => parts,
        Ok(Err(err)) => return (false, redact_url(&err.to_string())),
        Err(err) => return (false, format!("open task failed: {err}")),
    };
    let live = async {
        let owner = ctx.catalog.channel_owner(&channel).await?;
        let started = now_ms();
        let title = String::new();
        // A camera back within the reconnect grace continues its session.
        let session = match ctx.relay.resume(channel.clone()).await? {
            Some(session) => session,
            None => {
                ctx.catalog
                    .open_session(
                        &channel,
                        owner.station_id,
                        SessionKind::Lecture,
                        &title,
                        SessionSource::Pull,
                        started,
                    )
                    .await?
            }
        };
        let tracks = local_tracks(transcoder.tracks());
        match ctx
            .relay
            .publish_local(channel.clone(), session, title, started, tracks)
            .await
        {
            Ok(publisher) => Ok((session, publisher)),
            Err(err) => {
                let _ = ctx.catalog.close_session(session, now_ms()).await;
                Err(IngestError::from(err))
            }
        }
    }
    .await;
    let (session, publisher) = match live {
        Ok(parts) => parts,
        Err(err) => return (false, err.to_string()),
    };
    info!(%session, passthrough = transcoder.video_passthrough(), "pull source live");
    board.update(source.id, |s| {
        s.state = SourceState::Connected;
        s.session_id = Some(session);
    });
    let forwarder = tokio::spawn(forward(
        encoded,
        publisher,
        transcoder.keyframe_requester(),
        0,
        crate::media::Codec::H264,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = tokio::task::spawn_blocking(move || {
        super::playout::pace(demuxer, transcoder, &stop_reader)
    });
    let watcher = tokio::spawn(async move {
        let _ = halt.changed().await;
        stop.store(true, Ordering::Relaxed);
    });
    let ended = match reader.await {
        Ok(Ok(())) => "the source ended its stream".to_string(),
        Ok(Err(err)) => redact_url(&err.to_string()),
        Err(err) => format!("reader thread failed: {err}"),
    };
    watcher.abort();
    let _ = forwarder.await;
    (true, ended)
}

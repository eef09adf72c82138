//! Film classes: `film import` probing, and the scheduler that plays a screening's film in
//! real time (paced by its timestamps) into the station's channel as a `film_class`
//! session, ending at the end of the file. A screening whose time passed while the server
//! was down starts late within `ingest.screening_grace_secs`, else it is marked `missed`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::{IngestContext, IngestError, forward, local_tracks, transcode_options};
use crate::audience::now_ms;
use crate::catalog::{NewFilm, Screening, ScreeningStatus, SessionKind, SessionSource};
use crate::ids::ChannelName;
use crate::transcode::demux::{Demuxer, probe};
use crate::transcode::{TranscodeError, Transcoder};

/// How often the scheduler looks for due screenings (start-now acts within this).
const POLL: Duration = Duration::from_millis(200);
/// How often a playing screening checks whether an operator asked it to stop.
const STOP_POLL: Duration = Duration::from_millis(250);
/// How often a film class waiting for a transcode slot tries again.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Probes a file for `film import`: the error names what makes it unplayable. Blocking.
pub fn probe_film(path: &Path) -> Result<NewFilm, IngestError> {
    probe_film_with_progress(path, |_| {})
}

/// How far `film import` got with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeProgress {
    /// Media time read so far, ms.
    pub done_ms: u64,
    /// The file's stated duration, ms (0 until the header was read).
    pub total_ms: u64,
}

/// A scan that ends before this share of the stated duration means a truncated copy.
const TRUNCATED_BELOW: f64 = 0.8;

/// [`probe_film`], then reads every packet of the file (without decoding) so a damaged
/// or truncated copy is refused at import rather than in the middle of a film class;
/// `progress` hears how far the scan got (media time against the stated duration).
/// Blocking; the scan is bounded by disk speed.
pub fn probe_film_with_progress(
    path: &Path,
    mut progress: impl FnMut(ProbeProgress),
) -> Result<NewFilm, IngestError> {
    let text = path.to_str().ok_or_else(|| {
        IngestError::Refused(format!("{}: the path is not valid UTF-8", path.display()))
    })?;
    if !path.is_file() {
        return Err(IngestError::Refused(format!("{text}: no such file")));
    }
    let probe = probe(text)?;
    let total_ms = u64::try_from(probe.duration_ms).unwrap_or(0);
    progress(ProbeProgress {
        done_ms: 0,
        total_ms,
    });
    let mut demuxer = Demuxer::open(text, &[])?;
    let mut first_us = None;
    let mut end_ms = 0u64;
    loop {
        let packet = match demuxer.read() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(err) => {
                return Err(IngestError::Refused(format!(
                    "damaged at {:.1} s of {:.1} s: {err}",
                    end_ms as f64 / 1000.0,
                    total_ms as f64 / 1000.0
                )));
            }
        };
        let origin = *first_us.get_or_insert(packet.dts_us);
        let at_ms = u64::try_from((packet.dts_us - origin) / 1000).unwrap_or(0);
        if at_ms > end_ms {
            end_ms = at_ms;
            progress(ProbeProgress {
                done_ms: end_ms.min(total_ms),
                total_ms,
            });
        }
    }
    if (end_ms as f64) < total_ms as f64 * TRUNCATED_BELOW {
        return Err(IngestError::Refused(format!(
            "its media ends at {:.1} s of a stated {:.1} s (a truncated copy?)",
            end_ms as f64 / 1000.0,
            total_ms as f64 / 1000.0
        )));
    }
    progress(ProbeProgress {
        done_ms: total_ms,
        total_ms,
    });
    let absolute = std::fs::canonicalize(path)?;
    Ok(NewFilm {
        title: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| text.to_string()),
        path: absolute.to_string_lossy().into_owned(),
        duration_ms: probe.duration_ms,
        container: probe.container,
        video_codec: probe.video_codec,
        audio_codec: probe.audio_codec,
        width: i64::from(probe.width),
        height: i64::from(probe.height),
    })
}

/// Starts due screenings until `stop` flips.
pub(crate) async fn scheduler(ctx: Arc<IngestContext>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = now_ms();
        let due = match ctx.catalog.due_screenings(now).await {
            Ok(due) => due,
            Err(err) => {
                warn!(%err, "cannot read due screenings");
                continue;
            }
        };
        for screening in due {
            let late_ms = now - screening.starts_at_ms;
            let grace_ms = ctx.config.screening_grace_secs as i64 * 1000;
            if late_ms > grace_ms {
                let note = format!(
                    "missed: the server was not running at the scheduled time ({} s late, grace {} s)",
                    late_ms / 1000,
                    grace_ms / 1000
                );
                warn!(screening = screening.id.0, %note, "screening missed");
                let _ = ctx
                    .catalog
                    .set_screening_status(
                        screening.id,
                        ScreeningStatus::Scheduled,
                        ScreeningStatus::Missed,
                        None,
                        &note,
                    )
                    .await;
                continue;
            }
            match ctx
                .catalog
                .set_screening_status(
                    screening.id,
                    ScreeningStatus::Scheduled,
                    ScreeningStatus::Playing,
                    None,
                    "",
                )
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    warn!(%err, "cannot claim screening");
                    continue;
                }
            }
            let ctx = ctx.clone();
            let stop = stop.clone();
            let id = screening.id;
            tokio::spawn(
                async move {
                    let (status, note) = match play(&ctx, &screening, stop).await {
                        Ok(()) => (ScreeningStatus::Done, String::new()),
                        Err(err) => {
                            warn!(%err, "screening failed");
                            (ScreeningStatus::Failed, err.to_string())
                        }
                    };
                    // An operator's stop wins over how the playout itself ended.
                    let stopped = ctx
                        .catalog
                        .set_screening_status(
                            screening.id,
                            ScreeningStatus::Stopping,
                            ScreeningStatus::Stopped,
                            None,
                            "stopped by an operator",
                        )
                        .await;
                    if !matches!(stopped, Ok(true)) {
                        let _ = ctx
                            .catalog
                            .set_screening_status(
                                screening.id,
                                ScreeningStatus::Playing,
                                status,
                                None,
                                &note,
                            )
                            .await;
                    }
                }
                .instrument(info_span!("screening", id = id.0)),
            );
        }
    }
}

async fn play(
    ctx: &IngestContext,
    screening: &Screening,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let film = ctx.catalog.film(screening.film_id).await?;
    let channel = ChannelName::for_station(screening.station_id);
    let options = transcode_options(ctx, channel.as_str());
    // Past `[ingest] max_transcodes` a film class waits for a slot (within the grace a
    // late start has), then fails with the reason.
    let waiting_since = Instant::now();
    let grace = Duration::from_secs(ctx.config.screening_grace_secs);
    let (demuxer, transcoder, encoded) = loop {
        let path = film.path.clone();
        let options = options.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut demuxer = Demuxer::open(&path, &[])?;
            let (transcoder, encoded) =
                Transcoder::start(demuxer.take_video(), demuxer.take_audio(), &options)?;
            Ok::<_, TranscodeError>((demuxer, transcoder, encoded))
        })
        .await
        .map_err(|e| IngestError::Refused(format!("playout task failed: {e}")))?;
        match opened {
            Err(err @ TranscodeError::Busy { .. }) => {
                if waiting_since.elapsed() >= grace || *stop.borrow() {
                    return Err(err.into());
                }
                if waiting_since.elapsed() < SLOT_WAIT {
                    warn!(%err, "film class waiting for a transcode slot");
                }
                tokio::select! {
                    _ = stop.changed() => return Err(err.into()),
                    _ = tokio::time::sleep(SLOT_WAIT) => {}
                }
            }
            other => break other?,
        }
    };
    let started = now_ms();
    let session = ctx
        .catalog
        .open_session(
            &channel,
            screening.station_id,
            SessionKind::FilmClass,
            &film.title,
            SessionSource::Playout,
            started,
        )
        .await?;
    // Link the session to its film and schedule, so statistics group film classes by film.
    ctx.catalog
        .update_session(
            session.0,
            &crate::catalog::SessionUpdate {
                film_id: Some(film.id.0),
                scheduled_at: Some(screening.starts_at_ms),
                ..Default::default()
            },
        )
        .await?;
    ctx.catalog
        .link_screening_session(screening.id, session)
        .await?;
    let tracks = local_tracks(transcoder.tracks());
    // One origin per channel: in a cluster the screening's node claims it (the screening
    // itself runs once: its Scheduled -> Playing change is one node's).
    if let Err(conflict) = ctx.catalog.claim_channel(&channel, session).await {
        let _ = ctx.catalog.close_session(session, now_ms()).await;
        return Err(conflict.into());
    }
    let publisher = match ctx
        .relay
        .publish_local(
            channel.clone(),
            session,
            film.title.clone(),
            started,
            tracks,
        )
        .await
    {
        Ok(p) => p,
        Err(err) => {
            let _ = ctx.catalog.close_session(session, now_ms()).await;
            return Err(err.into());
        }
    };
    info!(%channel, %session, film = film.id.0, passthrough = transcoder.video_passthrough(), "film class started");
    let forwarder = tokio::spawn(forward(
        encoded,
        publisher,
        transcoder.keyframe_requester(),
        0,
        crate::media::Codec::H264,
    ));
    let halt = Arc::new(AtomicBool::new(false));
    let halt_pacer = halt.clone();
    let pacer = tokio::task::spawn_blocking(move || pace(demuxer, transcoder, &halt_pacer));
    // Ends the playout on server shutdown or when an operator asks for a stop (the
    // request comes through the catalog, so the API and the CLI on any host reach it).
    let catalog = ctx.catalog.clone();
    let id = screening.id;
    let watcher = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(STOP_POLL) => {}
            }
            if catalog
                .screening(id)
                .await
                .is_ok_and(|s| s.status == ScreeningStatus::Stopping)
            {
                info!(screening = id.0, "stop requested");
                break;
            }
        }
        halt.store(true, Ordering::Relaxed);
    });
    let paced = pacer
        .await
        .map_err(|e| IngestError::Refused(format!("playout thread failed: {e}")))?;
    let _ = forwarder.await;
    watcher.abort();
    info!(%session, "film class ended");
    Ok(paced?)
}

/// Reads the input and hands packets on at the pace of their decode timestamps, so
/// viewers get files in real time (live inputs arrive at that pace anyway and are never
/// held back). Ends at the end of the input or when `halt` is set.
pub(crate) fn pace(
    mut demuxer: Demuxer,
    transcoder: Transcoder,
    halt: &AtomicBool,
) -> Result<(), TranscodeError> {
    let start = Instant::now();
    let mut first = None;
    while !halt.load(Ordering::Relaxed) {
        let Some(packet) = demuxer.read()? else { break };
        let origin = *first.get_or_insert(packet.dts_us);
        let due = Duration::from_micros((packet.dts_us - origin).max(0) as u64);
        let elapsed = start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        transcoder.push_blocking(packet)?;
    }
    transcoder.finish();
    Ok(())
}

//! Ways media comes into a channel from outside WebRTC: RTMP push ([`rtmp`]), and the
//! shared path every such source takes: [`crate::transcode`] -> [`packetize`] -> a
//! [`LocalPublisher`] on the relay. A viewer cannot tell how a lecture came in.

mod ladder;
pub mod packetize;
pub mod playout;
pub mod pull;
pub mod rtmp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::catalog::{Catalog, CatalogError};
use crate::config::IngestConfig;
use crate::media::{Codec, MediaKind, SourceTracks};
use crate::relay::{LocalPublisher, LocalTracks, RelayError, SourceHandle};
use crate::transcode::{
    Encoded, InputLimits, KeyframeRequester, TranscodeError, TranscodeOptions, TranscodeSlots,
};
use packetize::RtpPacketizer;

/// Transcode options for sources on `channel`: the channel's overrides, else the
/// `[ingest]` defaults, with the server's input limits and transcode slots.
pub(crate) fn transcode_options(ctx: &IngestContext, channel: &str) -> TranscodeOptions {
    let config = &ctx.config;
    let overrides = config.channels.get(channel);
    TranscodeOptions {
        video_mode: overrides.and_then(|c| c.video).unwrap_or(config.video),
        renditions: overrides
            .and_then(|c| c.renditions.clone())
            .unwrap_or_else(|| config.renditions.clone()),
        video_kbps: config.video_kbps,
        x264_preset: config.x264_preset.clone(),
        audio_kbps: config.audio_kbps,
        limits: input_limits(config),
        slots: Some(ctx.transcode_slots.clone()),
        ..TranscodeOptions::default()
    }
}

/// `[ingest] max_input_width`, `max_input_height` and `max_input_fps`.
pub(crate) fn input_limits(config: &IngestConfig) -> InputLimits {
    InputLimits {
        max_width: config.max_input_width,
        max_height: config.max_input_height,
        max_fps: config.max_input_fps,
    }
}

/// What the relay needs to know about a source's output: the codecs viewers negotiate and
/// the renditions' names.
pub(crate) fn local_tracks(tracks: SourceTracks) -> LocalTracks {
    // The packetizer sends H.264 and Opus, the only codecs the transcoder makes; a track of
    // any other codec would have no packets, so it is not offered to viewers.
    let negotiated = |codec: Codec| match codec {
        Codec::H264 => Some(crate::relay::h264_codec()),
        Codec::Opus => Some(crate::relay::opus_codec()),
        Codec::Vp8 | Codec::Aac => None,
    };
    LocalTracks {
        video: tracks.video.and_then(negotiated),
        audio: tracks.audio.and_then(negotiated),
        renditions: tracks.renditions,
    }
}

/// Why an ingest connection or source ended. The log line carries it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The peer broke the RTMP protocol (or is not speaking RTMP at all).
    #[error("RTMP protocol error: {0}")]
    Protocol(String),
    /// The publisher was refused (unknown channel, wrong key, wrong app).
    #[error("publish refused: {0}")]
    Refused(String),
    /// The media cannot be used.
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
    /// The relay refused the source (e.g. the channel already has a publisher).
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The protocol library panicked on the peer's bytes (a bug there, reachable by anyone
    /// who can connect): this connection is closed, others carry on.
    #[error("rml_rtmp panicked on the peer's input: {0}")]
    Panic(String),
    /// The socket failed or timed out.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// What every ingest task needs.
pub(crate) struct IngestContext {
    pub(crate) catalog: Catalog,
    pub(crate) relay: SourceHandle,
    pub(crate) config: IngestConfig,
    /// What the RTMP door turned away (shared with [`Ingest::rtmp_counters`]).
    pub(crate) rtmp_counters: Arc<rtmp::RtmpCounters>,
    /// `[ingest] max_transcodes`, shared by every source that decodes video.
    pub(crate) transcode_slots: TranscodeSlots,
    /// Sessions whose codec bridges another part of the server feeds (a cluster edge's,
    /// from its origin): set once by the wiring, see [`Ingest::bridges_elsewhere`].
    pub(crate) bridged_elsewhere: std::sync::OnceLock<SkipSession>,
}

/// Whether a session is taken care of elsewhere (see [`Ingest::bridges_elsewhere`]).
pub type SkipSession = Arc<dyn Fn(crate::ids::SessionId) -> bool + Send + Sync>;

/// The running ingest services.
pub struct Ingest {
    /// Where RTMP listens, when enabled.
    pub rtmp_addr: Option<SocketAddr>,
    /// Pull source statuses, for the API.
    pub pull: Arc<pull::PullBoard>,
    /// RTMP connections closed for a panic, the connection cap or the auth deadline, for
    /// `/metrics`.
    pub rtmp_counters: Arc<rtmp::RtmpCounters>,
    ctx: Arc<IngestContext>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds the RTMP listener (when configured) and starts accepting.
pub async fn start(
    config: &IngestConfig,
    catalog: Catalog,
    relay: SourceHandle,
) -> Result<Ingest, IngestError> {
    let (stop, stopped) = watch::channel(false);
    let rtmp_counters = Arc::new(rtmp::RtmpCounters::default());
    let ctx = Arc::new(IngestContext {
        catalog,
        relay,
        config: config.clone(),
        rtmp_counters: rtmp_counters.clone(),
        transcode_slots: TranscodeSlots::new(config.transcodes()),
        bridged_elsewhere: std::sync::OnceLock::new(),
    });
    let mut tasks = Vec::new();
    let mut rtmp_addr = None;
    if let Some(addr) = config.rtmp_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        info!(rtmp = %bound, "RTMP ingest listening");
        rtmp_addr = Some(bound);
        tasks.push(tokio::spawn(rtmp::accept_loop(
            listener,
            ctx.clone(),
            stopped.clone(),
        )));
    }
    tasks.push(tokio::spawn(playout::scheduler(
        ctx.clone(),
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(ladder::supervisor(
        ctx.clone(),
        stopped.clone(),
    )));
    let pull = Arc::new(pull::PullBoard::new(pull::SourceRules {
        max_per_channel: config.max_sources_per_channel,
        allow_private: config.allow_private_sources,
    }));
    tasks.push(tokio::spawn(pull::supervisor(
        ctx.clone(),
        pull.clone(),
        stopped,
    )));
    Ok(Ingest {
        rtmp_addr,
        pull,
        rtmp_counters,
        ctx,
        stop,
        tasks,
    })
}

impl Ingest {
    /// Sessions for which `skip` is true get no codec bridge encoded here: a cluster
    /// edge pulls its sessions' bridges from their origin.
    pub fn bridges_elsewhere(&self, skip: SkipSession) {
        let _ = self.ctx.bridged_elsewhere.set(skip);
    }

    /// Stops accepting and ends every ingest connection (their sessions end).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    }
}

/// Moves one source's encoded media into the relay until the transcoder's output ends,
/// passing viewers' keyframe requests back to the encoder. Ends the session when done.
/// Rendition `r` of the transcoder goes out as `r + shift` (a feeder's renditions follow
/// the source's own streams).
pub(crate) async fn forward(
    mut encoded: mpsc::Receiver<Encoded>,
    publisher: LocalPublisher,
    keyframes: KeyframeRequester,
    shift: u8,
    video: Codec,
) {
    let packetizer = || match video {
        Codec::Vp8 => RtpPacketizer::vp8(),
        _ => RtpPacketizer::new(),
    };
    // One packetizer per rendition: each is its own RTP stream (SSRC, sequence numbers).
    let mut rtp = vec![packetizer()];
    while let Some(media) = encoded.recv().await {
        if publisher.take_keyframe_request() {
            keyframes.request();
        }
        let sent = match media {
            Encoded::Video {
                access_unit,
                pts_90k,
                rendition,
                ..
            } => {
                let rendition = rendition.saturating_add(shift);
                let index = usize::from(rendition);
                if rtp.len() <= index {
                    rtp.resize_with(index + 1, packetizer);
                }
                let mut result = Ok(());
                for packet in rtp[index].video(&access_unit, pts_90k) {
                    result = publisher
                        .send_rendition(MediaKind::Video, rendition, packet)
                        .await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Encoded::OriginalAudio(unit) => publisher.send_unit(unit).await,
            Encoded::Audio { packet, pts_48k } => {
                publisher
                    .send(MediaKind::Audio, rtp[0].audio(packet, pts_48k))
                    .await
            }
        };
        if let Err(err) = sent {
            debug!(%err, "relay stopped taking media");
            break;
        }
    }
    publisher.finish();
}

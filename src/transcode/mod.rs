//! The transcode stage: the only code that touches FFmpeg (through `ffmpeg_next`).
//!
//! A source (RTMP ingest, pull source, film playout) describes its tracks with
//! [`VideoInput`] / [`AudioInput`], starts a [`Transcoder`] and pushes [`SourcePacket`]s;
//! browser-playable [`Encoded`] media comes out of the returned channel:
//! - audio of any codec and rate -> Opus 48 kHz stereo, 20 ms (960-sample) packets;
//! - video H.264 without B-frames -> passed through (Annex-B, SPS/PPS before each IDR);
//!   anything else -> decoded and encoded with libx264 (zerolatency, constrained baseline,
//!   so no B-frames; an IDR every 2 s; an IDR forced on viewer request, rate-limited);
//! - optionally a ladder of lower renditions (e.g. 720p, 360p), each encoded with libx264
//!   from the same decoded frames, tagged with its rendition number.
//!
//! Each track runs on its own OS thread with bounded channels on both sides, so the async
//! runtime never waits on a codec and a slow codec pushes back on its source. Closing the
//! input (dropping the [`Transcoder`]) makes the threads flush their codecs and exit; the
//! output channel closes when both have finished.

pub mod aac;
pub mod demux;
pub mod h264;
pub mod mux;
pub mod remux;

mod audio;
mod log;
mod video;

use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;

use crate::config::{RenditionSpec, VideoMode};
use crate::media::{Codec, MediaKind, SourceTracks};
use h264::AvcConfig;

/// Transcode failures. `BadInput` is the source's fault; `Codec` and `Unsupported` say what
/// FFmpeg could not do.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The source sent data that cannot be parsed.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A codec this server needs is missing from the FFmpeg build.
    #[error(
        "FFmpeg has no {0}; install an FFmpeg built with it (Debian's libavcodec has libx264 and libopus)"
    )]
    MissingCodec(&'static str),
    /// The input uses something this server cannot play.
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// FFmpeg failed.
    #[error("{context}: {source}")]
    Codec {
        /// What was being done.
        context: &'static str,
        /// FFmpeg's error.
        source: ffmpeg::Error,
    },
    /// The transcode threads have stopped (the source should end its session).
    #[error("transcoder stopped")]
    Stopped,
    /// A thread could not be started.
    #[error("cannot start transcode thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Every transcode slot is taken (`[ingest] max_transcodes`).
    #[error(
        "every transcode slot is taken ([ingest] max_transcodes = {max}); publish H.264 \
         without B-frames (passed through, no transcode) or try again when a transcode ends"
    )]
    Busy {
        /// The configured limit.
        max: usize,
    },
    /// The source is over the size or frame rate this server transcodes
    /// (`[ingest] max_input_width`, `max_input_height`, `max_input_fps`).
    #[error("{0}")]
    OverLimit(String),
}

impl TranscodeError {
    fn codec(context: &'static str) -> impl FnOnce(ffmpeg::Error) -> TranscodeError {
        move |source| TranscodeError::Codec { context, source }
    }
}

/// Encoder settings. `Default` is what a lecture needs on a small machine.
#[derive(Debug, Clone)]
pub struct TranscodeOptions {
    /// Passthrough or transcode (see [`VideoMode`]).
    pub video_mode: VideoMode,
    /// libx264 target bitrate, kbit/s.
    pub video_kbps: u32,
    /// libx264 preset: the CPU/quality trade-off.
    pub x264_preset: String,
    /// Output height when transcoding (width follows the aspect ratio); `None` keeps the
    /// source size.
    pub scale_height: Option<u32>,
    /// Lower renditions encoded beside the main video, from one decode. Their output
    /// carries `rendition` 1, 2, ... in this order; the main video is rendition 0.
    pub renditions: Vec<RenditionSpec>,
    /// Whether the main video comes out (passed through or encoded). Off when the source
    /// already reaches viewers itself and only the renditions are wanted (a WHIP
    /// publisher's ladder).
    pub main_video: bool,
    /// What the renditions are encoded in: H.264 (libx264), or VP8 (libvpx, realtime) for
    /// viewers whose browser has no H.264.
    pub rendition_codec: Codec,
    /// Name of the video thread (`fy-tc-*`), so a look at the process's threads says
    /// which encodes run.
    pub video_thread: &'static str,
    /// Opus bitrate, kbit/s.
    pub audio_kbps: u32,
    /// Minimum time between IDRs forced by viewer requests, so a storm of PLIs cannot turn
    /// the stream into all keyframes.
    pub keyframe_min_interval: Duration,
    /// Capacity of each bounded channel (packets).
    pub queue: usize,
    /// The largest picture and frame rate decoded (passthrough is not limited).
    pub limits: InputLimits,
    /// The server's transcode slots: a transcoder that decodes video holds one while its
    /// video thread runs. `None`: unlimited (benchmarks, the CLI).
    pub slots: Option<TranscodeSlots>,
}

/// The largest input a transcoder decodes: sources past it are refused (or end, when
/// they grow mid-stream) with a reason naming the configuration. Sizes are compared
/// either way round, so a portrait 1080x1920 camera fits a 1920x1080 limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Longest side, pixels.
    pub max_width: u32,
    /// Shortest side, pixels.
    pub max_height: u32,
    /// Frames per second, as the source declares it; frames arriving faster are decoded
    /// but not encoded.
    pub max_fps: u32,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_width: 1920,
            max_height: 1080,
            max_fps: 60,
        }
    }
}

impl InputLimits {
    /// Why a picture of `width` x `height` is over the limits, if it is.
    pub fn check_size(&self, width: u32, height: u32) -> Result<(), TranscodeError> {
        let (long, short) = (width.max(height), width.min(height));
        if long > self.max_width || short > self.max_height {
            return Err(TranscodeError::OverLimit(format!(
                "the source's pictures are {width}x{height}, larger than this server transcodes \
                 ({}x{}, [ingest] max_input_width / max_input_height); lower the encoder's \
                 output size, or publish H.264 without B-frames, which is passed through",
                self.max_width, self.max_height
            )));
        }
        Ok(())
    }

    /// Why a declared frame rate of `fps` is over the limit, if it is.
    pub fn check_fps(&self, fps: f64) -> Result<(), TranscodeError> {
        if fps > f64::from(self.max_fps) + 0.5 {
            return Err(TranscodeError::OverLimit(format!(
                "the source declares {fps:.0} frames per second, more than this server \
                 transcodes ({}, [ingest] max_input_fps); lower the encoder's frame rate",
                self.max_fps
            )));
        }
        Ok(())
    }
}

/// The server's transcode slots (`[ingest] max_transcodes`): each transcoder that decodes
/// video (one decode feeding all its encoders) takes one for as long as its video thread
/// runs; past the limit [`Transcoder::start`] answers [`TranscodeError::Busy`]. Audio-only
/// work (Opus, the Opus->AAC of live HLS) takes none.
#[derive(Debug, Clone)]
pub struct TranscodeSlots(Arc<SlotCount>);

#[derive(Debug)]
struct SlotCount {
    max: usize,
    taken: std::sync::atomic::AtomicUsize,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub struct TranscodeSlot(Arc<SlotCount>);

impl TranscodeSlots {
    /// `max` slots.
    pub fn new(max: usize) -> TranscodeSlots {
        TranscodeSlots(Arc::new(SlotCount {
            max,
            taken: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.0.taken.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.0.max
    }

    /// Takes a slot, or says the server is busy.
    pub fn take(&self) -> Result<TranscodeSlot, TranscodeError> {
        let max = self.0.max;
        self.0
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| TranscodeSlot(self.0.clone()))
            .map_err(|_| TranscodeError::Busy { max })
    }
}

impl Drop for TranscodeSlot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            video_mode: VideoMode::Auto,
            video_kbps: 1500,
            x264_preset: "veryfast".into(),
            scale_height: None,
            renditions: Vec::new(),
            main_video: true,
            rendition_codec: Codec::H264,
            video_thread: "fy-tc-video",
            audio_kbps: 64,
            keyframe_min_interval: Duration::from_secs(1),
            queue: 256,
            limits: InputLimits::default(),
            slots: None,
        }
    }
}

/// How to open a decoder: a codec id plus its configuration record (RTMP), or the full
/// stream parameters a demuxer found (files, pull sources).
enum DecoderSpec {
    Raw {
        id: ffmpeg::codec::Id,
        extradata: Vec<u8>,
    },
    Params(ffmpeg::codec::Parameters),
}

/// A source's video track.
pub struct VideoInput {
    spec: DecoderSpec,
    /// For H.264: its configuration, when the source gave one out of band (avcC).
    avc: Option<AvcConfig>,
    /// For Annex-B H.264: parameter sets the source gave out of band (Annex-B extradata).
    annexb_extradata: Vec<u8>,
    /// Whether the stream is H.264 at all (passthrough is only possible then).
    is_h264: bool,
    /// Whether the stream may reorder frames (B-frames). `Auto` mode transcodes when true.
    may_have_b_frames: bool,
    /// Frames per second the encoder should assume, when known.
    frame_rate: Option<(i32, i32)>,
    /// Picture size, when the source's header says it (an SPS, a container's stream).
    size: Option<(u32, u32)>,
    /// Short description for logs and the catalog, e.g. `h264 high 1280x720`.
    pub description: String,
}

impl VideoInput {
    /// H.264 described by an `avcC` record (the FLV/RTMP AVC sequence header). Only the
    /// baseline profile rules out B-frames from the header alone, so `Auto` transcodes
    /// main/high-profile streams.
    pub fn h264_avcc(record: &[u8], frame_rate: Option<f64>) -> Result<VideoInput, TranscodeError> {
        let avc = AvcConfig::parse(record)?;
        let may_have_b_frames = avc.profile_idc != 66;
        let size = avc
            .sps
            .first()
            .and_then(|sps| h264::parse_sps(sps).ok())
            .map(|sps| (sps.width, sps.height));
        Ok(VideoInput {
            size,
            description: format!("h264 profile {}", avc.profile_idc),
            spec: DecoderSpec::Raw {
                id: ffmpeg::codec::Id::H264,
                extradata: record.to_vec(),
            },
            avc: Some(avc),
            annexb_extradata: Vec::new(),
            is_h264: true,
            may_have_b_frames,
            frame_rate: frame_rate
                .filter(|f| f.is_finite() && *f > 0.0 && *f < 1000.0)
                .map(|f| ((f * 1000.0).round() as i32, 1000)),
        })
    }

    /// Video as a channel's access units carry it ([`crate::media::AccessUnit`]): H.264
    /// Annex-B with its parameter sets in-band, or VP8 frames. Timestamps come in µs.
    pub fn from_units(codec: Codec) -> Result<VideoInput, TranscodeError> {
        let (id, is_h264) = match codec {
            Codec::H264 => (ffmpeg::codec::Id::H264, true),
            Codec::Vp8 => (ffmpeg::codec::Id::VP8, false),
            other => {
                return Err(TranscodeError::Unsupported(format!(
                    "{other:?} is not a video codec"
                )));
            }
        };
        Ok(VideoInput {
            description: format!("{codec:?} access units"),
            spec: DecoderSpec::Raw {
                id,
                extradata: Vec::new(),
            },
            avc: None,
            annexb_extradata: Vec::new(),
            is_h264,
            // A WebRTC publisher's H.264 is constrained baseline: no reordering.
            may_have_b_frames: false,
            frame_rate: None,
            size: None,
        })
    }

    /// Whether `limits` refuse what the source's header declares (size, frame rate).
    fn check(&self, limits: &InputLimits) -> Result<(), TranscodeError> {
        if let Some((w, h)) = self.size {
            limits.check_size(w, h)?;
        }
        if let Some((num, den)) = self.frame_rate
            && den > 0
        {
            limits.check_fps(f64::from(num) / f64::from(den))?;
        }
        Ok(())
    }

    /// Whether the stream is H.264.
    pub fn is_h264(&self) -> bool {
        self.is_h264
    }

    /// For H.264: a converter of its samples (length-prefixed with the stream's `avcC`,
    /// or Annex-B with any out-of-band parameter sets) into Annex-B access units with
    /// SPS/PPS before each IDR. `None` for other codecs.
    pub fn annexb_writer(&self) -> Option<h264::AnnexbWriter> {
        if !self.is_h264 {
            return None;
        }
        Some(match &self.avc {
            Some(avc) => h264::AnnexbWriter::for_avcc(avc),
            None => h264::AnnexbWriter::for_annexb_seeded(&self.annexb_extradata),
        })
    }

    /// Whether this input would be passed through under `mode`.
    pub fn passthrough(&self, mode: VideoMode) -> bool {
        self.is_h264
            && match mode {
                VideoMode::Auto => !self.may_have_b_frames,
                VideoMode::Passthrough => true,
                VideoMode::Transcode => false,
            }
    }
}

/// A source's audio track.
pub struct AudioInput {
    spec: DecoderSpec,
    /// Short description for logs, e.g. `aac 44100 Hz`.
    pub description: String,
}

impl AudioInput {
    /// AAC described by its AudioSpecificConfig (the FLV/RTMP AAC sequence header).
    pub fn aac(audio_specific_config: &[u8]) -> Result<AudioInput, TranscodeError> {
        if audio_specific_config.len() < 2 {
            return Err(TranscodeError::BadInput(
                "AAC AudioSpecificConfig shorter than 2 bytes".into(),
            ));
        }
        Ok(AudioInput {
            spec: DecoderSpec::Raw {
                id: ffmpeg::codec::Id::AAC,
                extradata: audio_specific_config.to_vec(),
            },
            description: "aac".into(),
        })
    }
}

impl AudioInput {
    /// The AudioSpecificConfig of an AAC track that carries one out of band (MP4, MKV,
    /// RTMP); `None` for other codecs and for ADTS streams (MPEG-TS), whose frames carry
    /// their configuration in each header.
    pub fn aac_config(&self) -> Option<Bytes> {
        passthrough_aac_config(&self.spec)
    }

    /// Whether the track is AAC (with or without an out-of-band configuration).
    pub fn is_aac(&self) -> bool {
        match &self.spec {
            DecoderSpec::Raw { id, .. } => *id == ffmpeg::codec::Id::AAC,
            DecoderSpec::Params(params) => params.id() == ffmpeg::codec::Id::AAC,
        }
    }
}

/// One compressed source packet, timestamps in microseconds on the source's clock.
#[derive(Debug, Clone)]
pub struct SourcePacket {
    /// Which track.
    pub kind: MediaKind,
    /// The packet as the container carries it (H.264: length-prefixed with an avcC
    /// config, or Annex-B; AAC: raw).
    pub data: Bytes,
    /// Presentation time, µs.
    pub pts_us: i64,
    /// Decode time, µs (equals `pts_us` without B-frames).
    pub dts_us: i64,
    /// Whether the container marked it a keyframe.
    pub keyframe: bool,
}

/// Browser-playable media out of the transcoder.
#[derive(Debug, Clone)]
pub enum Encoded {
    /// One H.264 access unit, Annex-B, SPS/PPS in-band before IDRs.
    Video {
        /// The access unit.
        access_unit: Bytes,
        /// Presentation time on a 90 kHz clock, from the source's clock.
        pts_90k: i64,
        /// Whether it is an IDR.
        keyframe: bool,
        /// 0 for the main video, `i + 1` for `TranscodeOptions::renditions[i]`.
        rendition: u8,
    },
    /// One frame of the source's original AAC, passed on as it came (not re-encoded) for
    /// consumers that are not WebRTC (HLS, recording), timestamps in µs of the source.
    OriginalAudio(crate::media::AccessUnit),
    /// One Opus packet of 20 ms.
    Audio {
        /// The packet.
        packet: Bytes,
        /// Presentation time on a 48 kHz clock, from the source's clock.
        pts_48k: i64,
    },
}

/// Running transcode threads for one source. Drop it (or call [`Transcoder::finish`]) to
/// flush and stop them.
pub struct Transcoder {
    video_tx: Option<mpsc::Sender<SourcePacket>>,
    audio_tx: Option<mpsc::Sender<SourcePacket>>,
    /// Set by [`Transcoder::request_keyframe`], consumed by the video thread.
    keyframe_wanted: Arc<AtomicBool>,
    /// Whether video is passed through (keyframe requests then cannot be honoured).
    video_passthrough: bool,
    /// Names of the renditions encoded beside the main video (empty without video).
    renditions: Vec<String>,
}

/// Initializes FFmpeg once per process, quiets its logging to errors and sends those
/// lines through `tracing`, redacted ([`log`]).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(err) = ffmpeg::init() {
            tracing::error!(?err, "FFmpeg failed to initialize");
        }
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        log::forward_to_tracing();
    });
}

impl Transcoder {
    /// Opens the decoders (so bad inputs fail here, not later) and starts one thread per
    /// track. The returned channel yields encoded media until the input ends.
    pub fn start(
        video: Option<VideoInput>,
        audio: Option<AudioInput>,
        options: &TranscodeOptions,
    ) -> Result<(Transcoder, mpsc::Receiver<Encoded>), TranscodeError> {
        init();
        if video.is_none() && audio.is_none() {
            return Err(TranscodeError::Unsupported(
                "neither audio nor video found".into(),
            ));
        }
        let (out_tx, out_rx) = mpsc::channel(options.queue);
        let keyframe_wanted = Arc::new(AtomicBool::new(false));
        let mut video_passthrough = false;
        let renditions = match &video {
            Some(_) => options.renditions.iter().map(|r| r.name.clone()).collect(),
            None => Vec::new(),
        };
        let video_tx = match video {
            Some(input) => {
                video_passthrough = input.passthrough(options.video_mode);
                let decodes =
                    (options.main_video && !video_passthrough) || !options.renditions.is_empty();
                // Only what is decoded is limited: passthrough costs no codec time.
                let slot = if decodes {
                    input.check(&options.limits)?;
                    options
                        .slots
                        .as_ref()
                        .map(TranscodeSlots::take)
                        .transpose()?
                } else {
                    None
                };
                let keyframes = keyframe_wanted.clone();
                let opts = options.clone();
                let (tx, rx) = mpsc::channel(options.queue);
                let out = out_tx.clone();
                // FFmpeg's scaler is not Send, so the stage is built on its own thread;
                // opening errors come back before `start` returns. The slot goes with
                // the thread: it is free once the last frame is flushed.
                spawn_stage(options.video_thread, move || {
                    video::VideoStage::new(input, &opts, video_passthrough, keyframes).map(
                        |stage| {
                            move || {
                                stage.run(rx, out);
                                drop(slot);
                            }
                        },
                    )
                })?;
                Some(tx)
            }
            None => None,
        };
        let audio_tx = match audio {
            Some(input) => {
                let opts = options.clone();
                let (tx, rx) = mpsc::channel(options.queue);
                let out = out_tx.clone();
                spawn_stage("fy-tc-audio", move || {
                    audio::AudioStage::new(input, &opts).map(|stage| move || stage.run(rx, out))
                })?;
                Some(tx)
            }
            None => None,
        };
        Ok((
            Transcoder {
                video_tx,
                audio_tx,
                keyframe_wanted,
                video_passthrough,
                renditions,
            },
            out_rx,
        ))
    }

    /// Whether video is passed through unchanged.
    pub fn video_passthrough(&self) -> bool {
        self.video_passthrough
    }

    /// What comes out: H.264 and/or Opus, and the renditions' names.
    pub fn tracks(&self) -> SourceTracks {
        SourceTracks {
            video: self.has(MediaKind::Video).then_some(Codec::H264),
            audio: self.has(MediaKind::Audio).then_some(Codec::Opus),
            renditions: self.renditions.clone(),
        }
    }

    /// Whether the transcoder has a track of `kind`.
    pub fn has(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Video => self.video_tx.is_some(),
            MediaKind::Audio => self.audio_tx.is_some(),
        }
    }

    /// Hands one packet to its track's thread, waiting while that thread is busy. Packets
    /// for a track the transcoder does not have are dropped.
    pub async fn push(&self, packet: SourcePacket) -> Result<(), TranscodeError> {
        let tx = match packet.kind {
            MediaKind::Video => &self.video_tx,
            MediaKind::Audio => &self.audio_tx,
        };
        match tx {
            Some(tx) => tx.send(packet).await.map_err(|_| TranscodeError::Stopped),
            None => Ok(()),
        }
    }

    /// The blocking twin of [`Transcoder::push`], for demuxer threads.
    pub fn push_blocking(&self, packet: SourcePacket) -> Result<(), TranscodeError> {
        let tx = match packet.kind {
            MediaKind::Video => &self.video_tx,
            MediaKind::Audio => &self.audio_tx,
        };
        match tx {
            Some(tx) => tx
                .blocking_send(packet)
                .map_err(|_| TranscodeError::Stopped),
            None => Ok(()),
        }
    }

    /// Asks for an IDR as soon as possible (a viewer sent PLI/FIR). Honoured only when
    /// transcoding, at most once per `keyframe_min_interval`.
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// A cloneable handle for [`Transcoder::request_keyframe`], for the task that reads
    /// viewers' keyframe requests from the relay.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        KeyframeRequester(self.keyframe_wanted.clone())
    }

    /// Ends the input: the threads flush what they hold and the output channel closes.
    pub fn finish(self) {}
}

/// Asks a [`Transcoder`] for an IDR from another task.
#[derive(Clone)]
pub struct KeyframeRequester(Arc<AtomicBool>);

impl KeyframeRequester {
    /// See [`Transcoder::request_keyframe`].
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts a thread that builds a stage with `build` and then runs it; returns the build
/// error, if any, to the caller.
fn spawn_stage<B, R>(name: &str, build: B) -> Result<(), TranscodeError>
where
    B: FnOnce() -> Result<R, TranscodeError> + Send + 'static,
    R: FnOnce(),
{
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || match build() {
            Ok(run) => {
                let _ = ready_tx.send(Ok(()));
                run();
            }
            Err(err) => {
                let _ = ready_tx.send(Err(err));
            }
        })?;
    ready_rx.recv().map_err(|_| TranscodeError::Stopped)?
}

/// The AudioSpecificConfig of an AAC track with one, which is what lets its frames pass on
/// to HLS and recordings as they came (an ADTS stream without one is only transcoded).
fn passthrough_aac_config(spec: &DecoderSpec) -> Option<Bytes> {
    match spec {
        DecoderSpec::Raw { id, extradata } => (*id == ffmpeg::codec::Id::AAC
            && extradata.len() >= 2)
            .then(|| Bytes::copy_from_slice(extradata)),
        DecoderSpec::Params(params) => {
            if params.id() != ffmpeg::codec::Id::AAC {
                return None;
            }
            // SAFETY: the parameters own `extradata` of `extradata_size` bytes (or null);
            // it is only read, while `params` is borrowed.
            unsafe {
                let raw = params.as_ptr();
                let size = usize::try_from((*raw).extradata_size).ok()?;
                if (*raw).extradata.is_null() || size < 2 {
                    return None;
                }
                Some(Bytes::copy_from_slice(std::slice::from_raw_parts(
                    (*raw).extradata,
                    size,
                )))
            }
        }
    }
}

/// `ffmpeg` codec context with `extradata` copied in (FFmpeg frees it with the context).
fn context_for(spec: &DecoderSpec) -> Result<ffmpeg::codec::Context, TranscodeError> {
    match spec {
        DecoderSpec::Params(params) => ffmpeg::codec::Context::from_parameters(params.clone())
            .map_err(TranscodeError::codec("reading stream parameters")),
        DecoderSpec::Raw { id, extradata } => {
            let codec =
                ffmpeg::decoder::find(*id).ok_or(TranscodeError::MissingCodec("decoder"))?;
            let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
            let padding = ffmpeg::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
            // SAFETY: the buffer is allocated with FFmpeg's allocator, zero-padded as
            // libavcodec requires, fully initialized before the context sees it, and owned
            // (freed) by the context from here on.
            unsafe {
                let buf = ffmpeg::ffi::av_mallocz(extradata.len() + padding) as *mut u8;
                if buf.is_null() {
                    return Err(TranscodeError::Unsupported("out of memory".into()));
                }
                std::ptr::copy_nonoverlapping(extradata.as_ptr(), buf, extradata.len());
                let raw = ctx.as_mut_ptr();
                (*raw).extradata = buf;
                (*raw).extradata_size = extradata.len() as i32;
            }
            Ok(ctx)
        }
    }
}

/// Microsecond time base used for every packet and frame inside the stage.
const MICROS: ffmpeg::Rational = ffmpeg::Rational(1, 1_000_000);

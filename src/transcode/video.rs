//! The video thread: H.264 passthrough and/or one decode -> (scale) -> libx264 per rung of
//! the rendition ladder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::h264::AnnexbWriter;
use super::{
    Encoded, InputLimits, MICROS, SourcePacket, TranscodeError, TranscodeOptions, VideoInput,
    context_for,
};
use crate::media::Codec;

/// One encoder of the ladder: the main video when it is transcoded, or a lower rendition.
struct Rung {
    /// 0 for the main video, `i + 1` for `TranscodeOptions::renditions[i]`.
    rendition: u8,
    /// H.264 (libx264) or VP8 (libvpx).
    codec: Codec,
    /// Output height (width follows the aspect ratio); `None` keeps the source size.
    height: Option<u32>,
    kbps: u32,
    /// Opened on the first decoded frame, when the size is known.
    encoder: Option<ffmpeg::encoder::Video>,
    /// The size the encoder was opened at: it stays for the session (viewers' decoders
    /// and HLS init segments know it), whatever the source does later.
    out: (u32, u32),
    /// Converts to YUV 4:2:0 at the output size when the source differs.
    scaler: Option<scaling::Context>,
    /// The source geometry the scaler (or its absence) was chosen for.
    scaled_from: Option<(u32, u32, Pixel)>,
}

/// The video thread's state: an optional passthrough of the main video, and one decoder
/// feeding every encoder of the ladder (so N renditions cost one decode).
pub(super) struct VideoStage {
    /// Rewrites the source's H.264 to Annex-B when the main video is passed through.
    passthrough: Option<AnnexbWriter>,
    /// Present when at least one rung encodes.
    decoder: Option<ffmpeg::decoder::Video>,
    rungs: Vec<Rung>,
    frame_rate: (i32, i32),
    preset: String,
    /// Last pts handed to the encoders (µs), to keep them strictly increasing.
    last_pts: Option<i64>,
    keyframe_wanted: Arc<AtomicBool>,
    /// When the last IDR was forced, for rate limiting.
    last_forced: Option<Instant>,
    min_interval: Duration,
    limits: InputLimits,
    /// The last decoded picture size, checked against `limits` when it changes.
    size: Option<(u32, u32)>,
    /// Pts of the last frame encoded (µs): frames closer than the limit's frame interval
    /// are decoded (later frames need them) but not encoded.
    last_encoded: Option<i64>,
}

impl VideoStage {
    pub(super) fn new(
        input: VideoInput,
        options: &TranscodeOptions,
        passthrough: bool,
        keyframe_wanted: Arc<AtomicBool>,
    ) -> Result<VideoStage, TranscodeError> {
        let mut rungs = Vec::new();
        let passthrough = passthrough && options.main_video;
        if options.main_video && !passthrough {
            rungs.push(Rung::new(
                0,
                Codec::H264,
                options.scale_height,
                options.video_kbps,
            ));
        }
        for (i, spec) in options.renditions.iter().enumerate() {
            let rendition = u8::try_from(i + 1)
                .map_err(|_| TranscodeError::Unsupported("more than 255 renditions".into()))?;
            rungs.push(Rung::new(
                rendition,
                options.rendition_codec,
                Some(spec.height),
                spec.video_kbps,
            ));
        }
        let decoder = if rungs.is_empty() {
            None
        } else {
            let mut ctx = context_for(&input.spec)?;
            ctx.set_threading(ffmpeg::threading::Config {
                kind: ffmpeg::threading::Type::Slice,
                count: 0,
                ..Default::default()
            });
            let mut decoder = ctx
                .decoder()
                .video()
                .map_err(TranscodeError::codec("opening the video decoder"))?;
            decoder.set_packet_time_base(MICROS);
            for rung in &rungs {
                let (name, what) = rung.encoder_name();
                if ffmpeg::encoder::find_by_name(name).is_none() {
                    return Err(TranscodeError::MissingCodec(what));
                }
            }
            Some(decoder)
        };
        let passthrough = passthrough.then(|| match &input.avc {
            Some(avc) => AnnexbWriter::for_avcc(avc),
            None => AnnexbWriter::for_annexb_seeded(&input.annexb_extradata),
        });
        Ok(VideoStage {
            passthrough,
            decoder,
            rungs,
            frame_rate: input.frame_rate.unwrap_or((30, 1)),
            preset: options.x264_preset.clone(),
            last_pts: None,
            keyframe_wanted,
            last_forced: None,
            min_interval: options.keyframe_min_interval,
            limits: options.limits,
            size: None,
            last_encoded: None,
        })
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<SourcePacket>, out: mpsc::Sender<Encoded>) {
        while let Some(packet) = rx.blocking_recv() {
            if let Err(err) = self.push(Some(&packet), &out) {
                if !matches!(err, TranscodeError::Stopped) {
                    warn!(%err, "video transcoding stopped");
                }
                return;
            }
        }
        if let Err(err) = self.push(None, &out)
            && !matches!(err, TranscodeError::Stopped)
        {
            warn!(%err, "flushing the video transcoder failed");
        }
        debug!("video thread done");
    }

    /// Passes `packet` through and/or decodes it (flushes on `None`) and encodes every
    /// frame that comes out on every rung.
    fn push(
        &mut self,
        packet: Option<&SourcePacket>,
        out: &mpsc::Sender<Encoded>,
    ) -> Result<(), TranscodeError> {
        if let (Some(p), Some(writer)) = (packet, &mut self.passthrough) {
            match writer.convert(&p.data) {
                Ok((access_unit, keyframe)) => out
                    .blocking_send(Encoded::Video {
                        access_unit,
                        pts_90k: p.pts_us * 9 / 100,
                        keyframe,
                        rendition: 0,
                    })
                    .map_err(|_| TranscodeError::Stopped)?,
                Err(err) => warn!(%err, "dropping a video packet"),
            }
        }
        let Some(decoder) = &mut self.decoder else {
            // Nothing is encoded, so a keyframe request cannot be honoured.
            self.keyframe_wanted.store(false, Ordering::Relaxed);
            return Ok(());
        };
        match packet {
            Some(p) => {
                let mut pkt = ffmpeg::Packet::copy(&p.data);
                pkt.set_pts(Some(p.pts_us));
                pkt.set_dts(Some(p.dts_us));
                if p.keyframe {
                    pkt.set_flags(ffmpeg::packet::Flags::KEY);
                }
                if let Err(err) = decoder.send_packet(&pkt) {
                    // Corrupt data is the source's problem; the decoder resyncs at the
                    // next keyframe.
                    debug!(?err, "video decoder rejected a packet");
                    return Ok(());
                }
            }
            None => {
                let _ = decoder.send_eof();
            }
        }
        let mut frame = ffmpeg::frame::Video::empty();
        // Three quarters of the limit's frame interval: a source at the limit with some
        // jitter keeps every frame, one at twice the limit loses every other.
        let min_gap = 750_000 / i64::from(self.limits.max_fps.max(1));
        while decoder.receive_frame(&mut frame).is_ok() {
            let size = (frame.width(), frame.height());
            if self.size != Some(size) {
                self.limits.check_size(size.0, size.1)?;
                if let Some((w, h)) = self.size {
                    info!(
                        from = %format!("{w}x{h}"),
                        to = %format!("{}x{}", size.0, size.1),
                        "the source changed its picture size; rescaling to the size viewers have"
                    );
                }
                self.size = Some(size);
            }
            let stated = frame.timestamp().or(frame.pts()).unwrap_or(0);
            // Only frames whose own timestamps say they come too fast are left out; a
            // source without usable timestamps (all equal, or going back) keeps every
            // frame, numbered on as before.
            if self
                .last_encoded
                .is_some_and(|last| stated > last && stated - last < min_gap)
            {
                continue;
            }
            let pts = match self.last_pts {
                Some(last) if stated <= last => last + 1,
                _ => stated,
            };
            self.last_pts = Some(pts);
            self.last_encoded = Some(pts);
            let force = self.keyframe_wanted.load(Ordering::Relaxed)
                && self
                    .last_forced
                    .is_none_or(|at| at.elapsed() >= self.min_interval);
            if force {
                self.keyframe_wanted.store(false, Ordering::Relaxed);
                self.last_forced = Some(Instant::now());
            }
            for rung in &mut self.rungs {
                rung.encode(&frame, pts, force, self.frame_rate, &self.preset, out)?;
            }
        }
        if packet.is_none() {
            for rung in &mut self.rungs {
                if let Some(encoder) = &mut rung.encoder {
                    let _ = encoder.send_eof();
                    drain(encoder, rung.rendition, out)?;
                }
            }
        }
        Ok(())
    }
}

impl Rung {
    fn new(rendition: u8, codec: Codec, height: Option<u32>, kbps: u32) -> Rung {
        Rung {
            rendition,
            codec,
            height,
            kbps,
            encoder: None,
            out: (0, 0),
            scaler: None,
            scaled_from: None,
        }
    }

    /// The FFmpeg encoder this rung uses, and how to name it when it is missing.
    fn encoder_name(&self) -> (&'static str, &'static str) {
        match self.codec {
            Codec::Vp8 => ("libvpx", "libvpx (VP8) encoder"),
            _ => ("libx264", "libx264 encoder"),
        }
    }

    fn open_encoder(
        &mut self,
        frame: &ffmpeg::frame::Video,
        frame_rate: (i32, i32),
        preset: &str,
    ) -> Result<(), TranscodeError> {
        let (sw, sh) = (frame.width(), frame.height());
        if sw == 0 || sh == 0 {
            return Err(TranscodeError::BadInput("video frame of size 0".into()));
        }
        let (w, h) = match self.height {
            Some(h) if h < sh => {
                let w = (u64::from(sw) * u64::from(h) / u64::from(sh)) as u32;
                (w & !1, h & !1)
            }
            _ => (sw & !1, sh & !1),
        };
        self.out = (w, h);
        let (name, what) = self.encoder_name();
        let codec =
            ffmpeg::encoder::find_by_name(name).ok_or(TranscodeError::MissingCodec(what))?;
        let mut enc = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(TranscodeError::codec("creating the video encoder"))?;
        let (num, den) = frame_rate;
        let fps = (f64::from(num) / f64::from(den.max(1))).clamp(1.0, 120.0);
        enc.set_width(w);
        enc.set_height(h);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(MICROS);
        enc.set_frame_rate(Some(ffmpeg::Rational(num, den.max(1))));
        enc.set_gop((fps * 2.0).round() as u32);
        enc.set_max_b_frames(0);
        enc.set_bit_rate(self.kbps as usize * 1000);
        let mut opts = ffmpeg::Dictionary::new();
        if self.codec == Codec::Vp8 {
            // Realtime VP8 for live viewers: no look-ahead, the fastest speed that keeps
            // quality, frames a lossy link can lose without stalling the rest; an I
            // picture asked through pict_type becomes a keyframe.
            opts.set("deadline", "realtime");
            opts.set("cpu-used", "8");
            opts.set("lag-in-frames", "0");
            opts.set("error-resilient", "1");
            opts.set("auto-alt-ref", "0");
            opts.set("threads", "2");
            enc.set_max_bit_rate(self.kbps as usize * 1000);
        } else {
            opts.set("preset", preset);
            opts.set("tune", "zerolatency");
            opts.set("profile", "baseline");
            // An I-frame requested through pict_type becomes an IDR (what a joining viewer
            // needs).
            opts.set("forced-idr", "1");
            let vbv = format!("vbv-maxrate={0}:vbv-bufsize={0}:scenecut=0", self.kbps);
            opts.set("x264-params", &vbv);
        }
        let encoder = enc
            .open_with(opts)
            .map_err(TranscodeError::codec("opening the video encoder"))?;
        debug!(
            w,
            h,
            fps,
            kbps = self.kbps,
            rendition = self.rendition,
            encoder = name,
            "video encoder opened"
        );
        self.encoder = Some(encoder);
        Ok(())
    }

    /// Chooses how the source's pictures reach the encoder's size and format: as they
    /// are, or through a scaler, built again when the source's geometry changes (an
    /// encoder changing its output size mid-stream sends a new SPS; the encoder here keeps
    /// its size, so viewers and HLS see one stream).
    fn fit_scaler(&mut self, frame: &ffmpeg::frame::Video) -> Result<(), TranscodeError> {
        let from = (frame.width(), frame.height(), frame.format());
        if self.scaled_from == Some(from) {
            return Ok(());
        }
        let (w, h) = self.out;
        self.scaler = if from.2 != Pixel::YUV420P || (w, h) != (from.0, from.1) {
            Some(
                scaling::Context::get(
                    from.2,
                    from.0,
                    from.1,
                    Pixel::YUV420P,
                    w,
                    h,
                    scaling::Flags::BILINEAR,
                )
                .map_err(TranscodeError::codec("setting up the scaler"))?,
            )
        } else {
            None
        };
        self.scaled_from = Some(from);
        Ok(())
    }

    fn encode(
        &mut self,
        frame: &ffmpeg::frame::Video,
        pts: i64,
        force_idr: bool,
        frame_rate: (i32, i32),
        preset: &str,
        out: &mpsc::Sender<Encoded>,
    ) -> Result<(), TranscodeError> {
        if self.encoder.is_none() {
            self.open_encoder(frame, frame_rate, preset)?;
        }
        self.fit_scaler(frame)?;
        let mut scaled;
        let mut own;
        let input: &mut ffmpeg::frame::Video = match &mut self.scaler {
            Some(scaler) => {
                scaled = ffmpeg::frame::Video::empty();
                scaler
                    .run(frame, &mut scaled)
                    .map_err(TranscodeError::codec("scaling a frame"))?;
                &mut scaled
            }
            None => {
                own = frame.clone();
                &mut own
            }
        };
        input.set_pts(Some(pts));
        // The decoder marks frames with the source's picture types; x264 would obey them.
        input.set_kind(if force_idr {
            ffmpeg::picture::Type::I
        } else {
            ffmpeg::picture::Type::None
        });
        let Some(encoder) = &mut self.encoder else {
            return Ok(());
        };
        encoder
            .send_frame(input)
            .map_err(TranscodeError::codec("encoding a frame"))?;
        drain(encoder, self.rendition, out)
    }
}

fn drain(
    encoder: &mut ffmpeg::encoder::Video,
    rendition: u8,
    out: &mpsc::Sender<Encoded>,
) -> Result<(), TranscodeError> {
    let mut packet = ffmpeg::Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        let Some(data) = packet.data() else { continue };
        let pts_us = packet.pts().or(packet.dts()).unwrap_or(0);
        out.blocking_send(Encoded::Video {
            access_unit: bytes::Bytes::copy_from_slice(data),
            pts_90k: pts_us * 9 / 100,
            keyframe: packet.is_key(),
            rendition,
        })
        .map_err(|_| TranscodeError::Stopped)?;
    }
    Ok(())
}

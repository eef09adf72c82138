//! The video thread: H.264 passthrough, or decode -> (scale) -> libx264.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::h264::AnnexbWriter;
use super::{
    Encoded, MICROS, SourcePacket, TranscodeError, TranscodeOptions, VideoInput, context_for,
};

enum Mode {
    Passthrough(AnnexbWriter),
    Transcode(Box<Transcode>),
}

struct Transcode {
    decoder: ffmpeg::decoder::Video,
    /// Opened on the first decoded frame, when the size is known.
    encoder: Option<ffmpeg::encoder::Video>,
    /// Converts to YUV 4:2:0 at the output size when the source differs.
    scaler: Option<scaling::Context>,
    frame_rate: (i32, i32),
    kbps: u32,
    preset: String,
    scale_height: Option<u32>,
    /// Last pts handed to the encoder (µs), to keep them strictly increasing.
    last_pts: Option<i64>,
    /// When the last IDR was forced, for rate limiting.
    last_forced: Option<Instant>,
    min_interval: Duration,
}

pub(super) struct VideoStage {
    mode: Mode,
    keyframe_wanted: Arc<AtomicBool>,
}

impl VideoStage {
    pub(super) fn new(
        input: VideoInput,
        options: &TranscodeOptions,
        passthrough: bool,
        keyframe_wanted: Arc<AtomicBool>,
    ) -> Result<VideoStage, TranscodeError> {
        let mode = if passthrough {
            Mode::Passthrough(match &input.avc {
                Some(avc) => AnnexbWriter::for_avcc(avc),
                None => AnnexbWriter::for_annexb(),
            })
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
            if ffmpeg::encoder::find_by_name("libx264").is_none() {
                return Err(TranscodeError::MissingCodec("libx264 encoder"));
            }
            Mode::Transcode(Box::new(Transcode {
                decoder,
                encoder: None,
                scaler: None,
                frame_rate: input.frame_rate.unwrap_or((30, 1)),
                kbps: options.video_kbps,
                preset: options.x264_preset.clone(),
                scale_height: options.scale_height,
                last_pts: None,
                last_forced: None,
                min_interval: options.keyframe_min_interval,
            }))
        };
        Ok(VideoStage {
            mode,
            keyframe_wanted,
        })
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<SourcePacket>, out: mpsc::Sender<Encoded>) {
        while let Some(packet) = rx.blocking_recv() {
            let result = match &mut self.mode {
                Mode::Passthrough(writer) => match writer.convert(&packet.data) {
                    Ok((access_unit, keyframe)) => {
                        self.keyframe_wanted.store(false, Ordering::Relaxed);
                        out.blocking_send(Encoded::Video {
                            access_unit,
                            pts_90k: packet.pts_us * 9 / 100,
                            keyframe,
                        })
                        .map_err(|_| TranscodeError::Stopped)
                    }
                    Err(err) => {
                        warn!(%err, "dropping a video packet");
                        Ok(())
                    }
                },
                Mode::Transcode(t) => t.push(Some(&packet), &self.keyframe_wanted, &out),
            };
            if let Err(err) = result {
                if !matches!(err, TranscodeError::Stopped) {
                    warn!(%err, "video transcoding stopped");
                }
                return;
            }
        }
        if let Mode::Transcode(t) = &mut self.mode
            && let Err(err) = t.push(None, &self.keyframe_wanted, &out)
            && !matches!(err, TranscodeError::Stopped)
        {
            warn!(%err, "flushing the video transcoder failed");
        }
        debug!("video thread done");
    }
}

impl Transcode {
    /// Decodes `packet` (or flushes on `None`) and encodes every frame that comes out.
    fn push(
        &mut self,
        packet: Option<&SourcePacket>,
        keyframe_wanted: &AtomicBool,
        out: &mpsc::Sender<Encoded>,
    ) -> Result<(), TranscodeError> {
        match packet {
            Some(p) => {
                let mut pkt = ffmpeg::Packet::copy(&p.data);
                pkt.set_pts(Some(p.pts_us));
                pkt.set_dts(Some(p.dts_us));
                if p.keyframe {
                    pkt.set_flags(ffmpeg::packet::Flags::KEY);
                }
                if let Err(err) = self.decoder.send_packet(&pkt) {
                    // Corrupt data is the source's problem; the decoder resyncs at the
                    // next keyframe.
                    debug!(?err, "video decoder rejected a packet");
                    return Ok(());
                }
            }
            None => {
                let _ = self.decoder.send_eof();
            }
        }
        let mut frame = ffmpeg::frame::Video::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            let pts = frame.timestamp().or(frame.pts()).unwrap_or(0);
            self.encode(&frame, pts, keyframe_wanted, out)?;
        }
        if packet.is_none()
            && let Some(encoder) = &mut self.encoder
        {
            let _ = encoder.send_eof();
            drain(encoder, out)?;
        }
        Ok(())
    }

    fn open_encoder(&mut self, frame: &ffmpeg::frame::Video) -> Result<(), TranscodeError> {
        let (sw, sh) = (frame.width(), frame.height());
        if sw == 0 || sh == 0 {
            return Err(TranscodeError::BadInput("video frame of size 0".into()));
        }
        let (w, h) = match self.scale_height {
            Some(h) if h < sh => {
                let w = (u64::from(sw) * u64::from(h) / u64::from(sh)) as u32;
                (w & !1, h & !1)
            }
            _ => (sw & !1, sh & !1),
        };
        if frame.format() != Pixel::YUV420P || (w, h) != (sw, sh) {
            self.scaler = Some(
                scaling::Context::get(
                    frame.format(),
                    sw,
                    sh,
                    Pixel::YUV420P,
                    w,
                    h,
                    scaling::Flags::BILINEAR,
                )
                .map_err(TranscodeError::codec("setting up the scaler"))?,
            );
        }
        let codec = ffmpeg::encoder::find_by_name("libx264")
            .ok_or(TranscodeError::MissingCodec("libx264"))?;
        let mut enc = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(TranscodeError::codec("creating the H.264 encoder"))?;
        let (num, den) = self.frame_rate;
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
        opts.set("preset", &self.preset);
        opts.set("tune", "zerolatency");
        opts.set("profile", "baseline");
        // An I-frame requested through pict_type becomes an IDR (what a joining viewer needs).
        opts.set("forced-idr", "1");
        let vbv = format!("vbv-maxrate={0}:vbv-bufsize={0}:scenecut=0", self.kbps);
        opts.set("x264-params", &vbv);
        let encoder = enc
            .open_with(opts)
            .map_err(TranscodeError::codec("opening libx264"))?;
        debug!(w, h, fps, kbps = self.kbps, "libx264 opened");
        self.encoder = Some(encoder);
        Ok(())
    }

    fn encode(
        &mut self,
        frame: &ffmpeg::frame::Video,
        pts: i64,
        keyframe_wanted: &AtomicBool,
        out: &mpsc::Sender<Encoded>,
    ) -> Result<(), TranscodeError> {
        if self.encoder.is_none() {
            self.open_encoder(frame)?;
        }
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
        let pts = match self.last_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        self.last_pts = Some(pts);
        input.set_pts(Some(pts));
        // The decoder marks frames with the source's picture types; x264 would obey them.
        let force = keyframe_wanted.load(Ordering::Relaxed)
            && self
                .last_forced
                .is_none_or(|at| at.elapsed() >= self.min_interval);
        if force {
            keyframe_wanted.store(false, Ordering::Relaxed);
            self.last_forced = Some(Instant::now());
            input.set_kind(ffmpeg::picture::Type::I);
        } else {
            input.set_kind(ffmpeg::picture::Type::None);
        }
        let Some(encoder) = &mut self.encoder else {
            return Ok(());
        };
        encoder
            .send_frame(input)
            .map_err(TranscodeError::codec("encoding a frame"))?;
        drain(encoder, out)
    }
}

fn drain(
    encoder: &mut ffmpeg::encoder::Video,
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
        })
        .map_err(|_| TranscodeError::Stopped)?;
    }
    Ok(())
}

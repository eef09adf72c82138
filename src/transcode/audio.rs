//! The audio thread: any codec and rate -> PCM -> 48 kHz stereo float -> a sample FIFO ->
//! libopus in 960-sample (20 ms) frames.

use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;

use crate::media::{AccessUnit, Codec, Track};
use tracing::{debug, warn};

use super::{
    AudioInput, Encoded, MICROS, SourcePacket, TranscodeError, TranscodeOptions, context_for,
};

/// Opus frame: 20 ms at 48 kHz, the only size libopus accepts here.
const FRAME: usize = 960;
const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
const OUT_FORMAT: Sample = Sample::F32(SampleType::Packed);

pub(super) struct AudioStage {
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    /// Built on the first decoded frame, when the input format is known.
    resampler: Option<resampling::Context>,
    /// Interleaved stereo samples waiting for a full Opus frame.
    fifo: Vec<f32>,
    /// Samples handed to the encoder so far (its pts).
    samples_out: i64,
    /// Source time of the first sample, on the 48 kHz clock.
    base_48k: Option<i64>,
    /// The AudioSpecificConfig when the source is AAC: its frames also go out as they came.
    original_aac: Option<bytes::Bytes>,
}

impl AudioStage {
    pub(super) fn new(
        input: AudioInput,
        options: &TranscodeOptions,
    ) -> Result<AudioStage, TranscodeError> {
        let original_aac = super::passthrough_aac_config(&input.spec);
        let ctx = context_for(&input.spec)?;
        let mut decoder = ctx
            .decoder()
            .audio()
            .map_err(TranscodeError::codec("opening the audio decoder"))?;
        decoder.set_packet_time_base(MICROS);
        let codec = ffmpeg::encoder::find_by_name("libopus")
            .ok_or(TranscodeError::MissingCodec("libopus"))?;
        let mut enc = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(TranscodeError::codec("creating the Opus encoder"))?;
        enc.set_rate(RATE as i32);
        enc.set_format(OUT_FORMAT);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_time_base(ffmpeg::Rational(1, RATE as i32));
        enc.set_bit_rate(options.audio_kbps as usize * 1000);
        let encoder = enc
            .open_with(ffmpeg::Dictionary::new())
            .map_err(TranscodeError::codec("opening libopus"))?;
        Ok(AudioStage {
            decoder,
            encoder,
            resampler: None,
            fifo: Vec::with_capacity(FRAME * CHANNELS * 4),
            samples_out: 0,
            base_48k: None,
            original_aac,
        })
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<SourcePacket>, out: mpsc::Sender<Encoded>) {
        while let Some(packet) = rx.blocking_recv() {
            if let Err(err) = self.push(Some(&packet), &out) {
                if !matches!(err, TranscodeError::Stopped) {
                    warn!(%err, "audio transcoding stopped");
                }
                return;
            }
        }
        if let Err(err) = self.push(None, &out)
            && !matches!(err, TranscodeError::Stopped)
        {
            warn!(%err, "flushing the audio transcoder failed");
        }
        debug!("audio thread done");
    }

    fn push(
        &mut self,
        packet: Option<&SourcePacket>,
        out: &mpsc::Sender<Encoded>,
    ) -> Result<(), TranscodeError> {
        match packet {
            Some(p) => {
                if let Some(config) = &self.original_aac {
                    let unit = AccessUnit {
                        track: Track::OriginalAac {
                            config: config.clone(),
                        },
                        codec: Codec::Aac,
                        pts: p.pts_us,
                        dts: p.dts_us,
                        timescale: 1_000_000,
                        keyframe: true,
                        data: p.data.clone(),
                    };
                    out.blocking_send(Encoded::OriginalAudio(unit))
                        .map_err(|_| TranscodeError::Stopped)?;
                }
                let mut pkt = ffmpeg::Packet::copy(&p.data);
                pkt.set_pts(Some(p.pts_us));
                pkt.set_dts(Some(p.dts_us));
                if let Err(err) = self.decoder.send_packet(&pkt) {
                    debug!(?err, "audio decoder rejected a packet");
                    return Ok(());
                }
            }
            None => {
                let _ = self.decoder.send_eof();
            }
        }
        let mut frame = ffmpeg::frame::Audio::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            if self.base_48k.is_none() {
                let pts_us = frame.timestamp().or(frame.pts()).unwrap_or(0);
                self.base_48k = Some(pts_us * 48 / 1000);
            }
            self.resample(&frame)?;
            self.encode_full_frames(out)?;
        }
        if packet.is_none() {
            if let Some(resampler) = &mut self.resampler {
                let mut tail =
                    ffmpeg::frame::Audio::new(OUT_FORMAT, FRAME * 2, ChannelLayout::STEREO);
                if resampler.flush(&mut tail).is_ok() {
                    append(&mut self.fifo, &tail);
                }
            }
            // Pad the last partial frame with silence so nothing is lost.
            let rem = self.fifo.len() % (FRAME * CHANNELS);
            if rem != 0 {
                self.fifo
                    .resize(self.fifo.len() + FRAME * CHANNELS - rem, 0.0);
            }
            self.encode_full_frames(out)?;
            let _ = self.encoder.send_eof();
            self.drain(out)?;
        }
        Ok(())
    }

    fn resample(&mut self, frame: &ffmpeg::frame::Audio) -> Result<(), TranscodeError> {
        if self.resampler.is_none() {
            let mut layout = frame.channel_layout();
            if layout.is_empty() {
                layout = ChannelLayout::default(i32::from(frame.channels().max(1)));
            }
            self.resampler = Some(
                resampling::Context::get(
                    frame.format(),
                    layout,
                    frame.rate(),
                    OUT_FORMAT,
                    ChannelLayout::STEREO,
                    RATE,
                )
                .map_err(TranscodeError::codec("setting up the audio resampler"))?,
            );
        }
        let Some(resampler) = &mut self.resampler else {
            return Ok(());
        };
        // Room for every converted sample plus what swr holds back, so nothing piles up
        // inside the resampler (latency would grow).
        let capacity = frame.samples() * RATE as usize / frame.rate().max(1) as usize + FRAME;
        let mut converted = ffmpeg::frame::Audio::new(OUT_FORMAT, capacity, ChannelLayout::STEREO);
        resampler
            .run(frame, &mut converted)
            .map_err(TranscodeError::codec("resampling audio"))?;
        append(&mut self.fifo, &converted);
        Ok(())
    }

    fn encode_full_frames(&mut self, out: &mpsc::Sender<Encoded>) -> Result<(), TranscodeError> {
        let chunk = FRAME * CHANNELS;
        let mut taken = 0;
        while self.fifo.len() - taken >= chunk {
            let mut frame = ffmpeg::frame::Audio::new(OUT_FORMAT, FRAME, ChannelLayout::STEREO);
            frame.set_rate(RATE);
            let bytes = frame.data_mut(0);
            for (dst, sample) in bytes
                .chunks_exact_mut(4)
                .zip(&self.fifo[taken..taken + chunk])
            {
                dst.copy_from_slice(&sample.to_ne_bytes());
            }
            frame.set_pts(Some(self.samples_out));
            self.samples_out += FRAME as i64;
            taken += chunk;
            self.encoder
                .send_frame(&frame)
                .map_err(TranscodeError::codec("encoding Opus"))?;
            self.drain(out)?;
        }
        self.fifo.drain(..taken);
        Ok(())
    }

    fn drain(&mut self, out: &mpsc::Sender<Encoded>) -> Result<(), TranscodeError> {
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let Some(data) = packet.data() else { continue };
            let pts = packet.pts().unwrap_or(0) + self.base_48k.unwrap_or(0);
            out.blocking_send(Encoded::Audio {
                packet: bytes::Bytes::copy_from_slice(data),
                pts_48k: pts,
            })
            .map_err(|_| TranscodeError::Stopped)?;
        }
        Ok(())
    }
}

/// Appends the samples of a packed stereo f32 frame to the FIFO.
fn append(fifo: &mut Vec<f32>, frame: &ffmpeg::frame::Audio) {
    let n = frame.samples() * CHANNELS * 4;
    if n == 0 {
        return;
    }
    let data = frame.data(0);
    let n = n.min(data.len());
    fifo.extend(
        data[..n]
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
    );
}

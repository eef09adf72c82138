//! Opus -> AAC-LC for the live HLS of WebRTC (WHIP) channels: HLS players need AAC, WHIP
//! publishers send Opus. One [`AacEncoder`] per channel that needs it runs the thread
//! `fy-tc-aac`: Opus access units -> FFmpeg's Opus decoder -> planar float stereo 48 kHz
//! (resampled only if the decoder gives anything else) -> a sample FIFO -> FFmpeg's native
//! `aac` encoder in 1024-sample frames, ~128 kb/s.
//!
//! Timing follows the input: the output timeline starts at the first decoded unit's pts and
//! advances 1024 per frame. Holes of up to 200 ms (lost packets, DTX) are filled with
//! silence so the output stays on the input's clock; a unit that starts before audio already
//! queued (late, repeated) keeps only its new samples; a jump further than 200 ms either
//! way (a publisher that reconnects) pads and encodes what is queued, resets the decoder and
//! starts again at the new pts.
//!
//! Like the other transcode threads it has bounded channels on both sides; unlike them the
//! input never waits: the caller is an async task fanning out a live channel, so a full queue
//! drops the unit and counts it ([`AacEncoder::dropped`]).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ffmpeg::ChannelLayout;
use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg_next as ffmpeg;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tracing::{debug, warn};

use super::mux::aac_rate_and_channels;
use super::{DecoderSpec, TranscodeError, context_for, spawn_stage};
use crate::media::{AccessUnit, Codec, Track};

/// The name of the thread, so a look at the process's threads shows how many run.
const THREAD: &str = "fy-tc-aac";
/// Output (and Opus) sample rate.
const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
/// What FFmpeg's `aac` encoder takes.
const FORMAT: Sample = Sample::F32(SampleType::Planar);
/// Samples per AAC-LC frame.
const FRAME: usize = 1024;
const BIT_RATE: usize = 128_000;
/// The largest hole or backward step (48 kHz samples, 200 ms) that is bridged rather than
/// re-anchored.
const MAX_GAP: i64 = 9_600;
/// Capacity of the input and output queues, in units (about 5 s of 20 ms Opus).
const QUEUE: usize = 256;

/// A running Opus -> AAC-LC encoder for one channel: AAC-LC, 48 kHz, stereo, ~128 kb/s
/// (FFmpeg's native `aac` encoder, 1024-sample frames). Dropping it ends the thread.
pub struct AacEncoder {
    /// Opus units for the thread; `None` after [`AacEncoder::finish`]. Closing it makes the
    /// thread flush and exit.
    input: Option<mpsc::Sender<AccessUnit>>,
    /// AAC units from the thread; ends when the thread has flushed and exited.
    output: mpsc::Receiver<AccessUnit>,
    /// The AudioSpecificConfig every output unit carries, kept for muxers' `esds`.
    config: Bytes,
    /// Units dropped because the input queue was full (atomic: `push` takes `&self`).
    dropped: AtomicU64,
    /// The channel name, for logs.
    label: String,
}

impl AacEncoder {
    /// Opens the codecs and starts the thread `fy-tc-aac`; opening errors come back here.
    /// `label` names the channel in logs.
    pub fn start(label: &str) -> Result<AacEncoder, TranscodeError> {
        super::init();
        let (input, input_rx) = mpsc::channel(QUEUE);
        let (output_tx, output) = mpsc::channel(QUEUE);
        let (config_tx, config_rx) = std::sync::mpsc::sync_channel(1);
        let stage_label = label.to_owned();
        // The resampler is not Send, so the stage is built on its thread; `spawn_stage`
        // returns once it is (with the build error, if any), by which time the config has
        // been sent.
        spawn_stage(THREAD, move || {
            AacStage::new(stage_label).map(|stage| {
                let _ = config_tx.send(stage.config.clone());
                move || stage.run(input_rx, output_tx)
            })
        })?;
        let config = config_rx.recv().map_err(|_| TranscodeError::Stopped)?;
        debug!(channel = %label, ?config, "AAC encoder started");
        Ok(AacEncoder {
            input: Some(input),
            output,
            config,
            dropped: AtomicU64::new(0),
            label: label.to_owned(),
        })
    }

    /// The output's AudioSpecificConfig (ISO 14496-3): `0x11 0x90` for LC, 48 kHz, stereo.
    pub fn config(&self) -> Bytes {
        self.config.clone()
    }

    /// Hands one Opus access unit (pts on the 48 kHz clock) to the thread without waiting.
    /// When the queue is full the unit is dropped and counted. Returns false once the
    /// thread is gone (or after [`AacEncoder::finish`]).
    pub fn push(&self, unit: AccessUnit) -> bool {
        let Some(input) = &self.input else {
            return false;
        };
        match input.try_send(unit) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // 1, 2, 4, 8, ...: a queue that stays full does not flood the log.
                if dropped.is_power_of_two() {
                    warn!(channel = %self.label, dropped, "AAC encoder behind: Opus units dropped");
                }
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Opus units dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Ends the input: the thread encodes what it holds (the last frame padded with
    /// silence), [`AacEncoder::recv`] yields those units and then `None`.
    pub fn finish(&mut self) {
        self.input = None;
    }

    /// The next AAC unit: `AccessUnit { track: Track::OriginalAac { config }, codec:
    /// Codec::Aac, pts == dts on a 48 kHz timescale, keyframe: true, data: a raw AAC frame
    /// without ADTS }`. `None` once the thread has ended.
    pub async fn recv(&mut self) -> Option<AccessUnit> {
        self.output.recv().await
    }

    /// The next AAC unit if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Result<AccessUnit, TryRecvError> {
        self.output.try_recv()
    }
}

/// The thread's state.
struct AacStage {
    /// The channel name, for logs.
    label: String,
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    /// The output's AudioSpecificConfig, put on every unit.
    config: Bytes,
    /// Built when a decoded frame is not already planar float stereo 48 kHz (FFmpeg's
    /// native Opus decoder gives exactly that, so normally never), with the input format
    /// it was built for.
    resampler: Option<(resampling::Context, (Sample, ChannelLayout, u32))>,
    /// Samples waiting for a full AAC frame, one vector per channel (the encoder is
    /// planar). Contiguous on the input timeline: holes are filled, overlaps cut.
    fifo: [Vec<f32>; CHANNELS],
    /// Input-timeline pts (48 kHz) of the FIFO's first sample; `None` before the first
    /// decoded audio and after a jump, until the next.
    fifo_pts: Option<i64>,
    /// Whether the encoder's first packet has been dropped: it carries the 1024 samples of
    /// silence the encoder primes with, which come before the first input sample.
    primed: bool,
}

impl AacStage {
    fn new(label: String) -> Result<AacStage, TranscodeError> {
        let ctx = context_for(&DecoderSpec::Raw {
            id: ffmpeg::codec::Id::OPUS,
            extradata: opus_head(),
        })?;
        let mut decoder = ctx
            .decoder()
            .audio()
            .map_err(TranscodeError::codec("opening the Opus decoder"))?;
        decoder.set_packet_time_base(ffmpeg::Rational(1, RATE as i32));

        let codec =
            ffmpeg::encoder::find_by_name("aac").ok_or(TranscodeError::MissingCodec("aac"))?;
        let mut ctx = ffmpeg::codec::Context::new_with_codec(codec);
        // Raw frames go out; the AudioSpecificConfig travels beside them.
        ctx.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        let mut enc = ctx
            .encoder()
            .audio()
            .map_err(TranscodeError::codec("creating the AAC encoder"))?;
        enc.set_rate(RATE as i32);
        enc.set_format(FORMAT);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_time_base(ffmpeg::Rational(1, RATE as i32));
        enc.set_bit_rate(BIT_RATE);
        let encoder = enc
            .open_with(ffmpeg::Dictionary::new())
            .map_err(TranscodeError::codec("opening the AAC encoder"))?;
        if encoder.frame_size() as usize != FRAME {
            return Err(TranscodeError::Unsupported(format!(
                "the AAC encoder wants {}-sample frames, not {FRAME}",
                encoder.frame_size()
            )));
        }
        // SAFETY: the opened encoder owns `extradata` of `extradata_size` bytes (or null);
        // it is only read, while `encoder` is borrowed.
        let extradata = unsafe {
            let raw = encoder.as_ptr();
            let size = usize::try_from((*raw).extradata_size).unwrap_or(0);
            if (*raw).extradata.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts((*raw).extradata, size).to_vec()
            }
        };
        // FFmpeg writes the 2-byte LC config (object type 2, 48 kHz, 2 channels, 1024-sample
        // frames) and then a sync extension that only says "no SBR" (`56 e5 00`). The
        // 2 bytes alone describe the stream fully and are what most encoders and players
        // know, so that is what goes out.
        let config = Bytes::copy_from_slice(extradata.get(..2).unwrap_or_default());
        if config.first().map(|b| b >> 3) != Some(2)
            || config.get(1).map(|b| b & 0x07) != Some(0)
            || aac_rate_and_channels(&config) != Some((RATE, CHANNELS as u32))
        {
            return Err(TranscodeError::Unsupported(format!(
                "the AAC encoder's AudioSpecificConfig {extradata:02x?} is not LC, 48 kHz, stereo"
            )));
        }
        Ok(AacStage {
            label,
            decoder,
            encoder,
            config,
            resampler: None,
            fifo: [Vec::with_capacity(FRAME * 4), Vec::with_capacity(FRAME * 4)],
            fifo_pts: None,
            primed: false,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<AccessUnit>, out: mpsc::Sender<AccessUnit>) {
        let span = tracing::debug_span!("aac", channel = %self.label);
        let _entered = span.enter();
        while let Some(unit) = rx.blocking_recv() {
            if let Err(err) = self.push(&unit, &out) {
                if !matches!(err, TranscodeError::Stopped) {
                    warn!(%err, "AAC encoding stopped");
                }
                return;
            }
        }
        if let Err(err) = self.flush(&out)
            && !matches!(err, TranscodeError::Stopped)
        {
            warn!(%err, "flushing the AAC encoder failed");
        }
        debug!("AAC encoder thread done");
    }

    /// Input-timeline pts of the sample after the last one queued.
    fn expected(&self) -> Option<i64> {
        self.fifo_pts.map(|pts| pts + self.fifo[0].len() as i64)
    }

    fn push(
        &mut self,
        unit: &AccessUnit,
        out: &mpsc::Sender<AccessUnit>,
    ) -> Result<(), TranscodeError> {
        if unit.codec != Codec::Opus || unit.timescale == 0 || unit.data.is_empty() {
            // (An empty packet would read as end of stream to the decoder.)
            debug!(codec = ?unit.codec, timescale = unit.timescale, bytes = unit.data.len(),
                "not an Opus packet: skipped");
            return Ok(());
        }
        let pts = if unit.timescale == RATE {
            unit.pts
        } else {
            (i128::from(unit.pts) * i128::from(RATE) / i128::from(unit.timescale)) as i64
        };
        if let Some(expected) = self.expected()
            && !(-MAX_GAP..=MAX_GAP).contains(&(pts - expected))
        {
            debug!(
                jump_ms = (pts - expected) / 48,
                "Opus timeline jumped: starting again at the new pts"
            );
            self.pad_and_encode(out)?;
            self.fifo_pts = None;
            self.decoder.flush();
        }
        let mut packet = ffmpeg::Packet::copy(&unit.data);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(pts));
        if let Err(err) = self.decoder.send_packet(&packet) {
            debug!(?err, pts, "undecodable Opus unit skipped");
            // Whatever state the bad packet left behind, the next unit starts clean.
            self.decoder.flush();
            return Ok(());
        }
        let mut at = pts;
        let mut frame = ffmpeg::frame::Audio::empty();
        loop {
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    break;
                }
                Err(err) => {
                    debug!(?err, pts, "undecodable Opus unit skipped");
                    self.decoder.flush();
                    break;
                }
            }
            at += self.place(&frame, at)?;
            self.encode_full_frames(out)?;
        }
        Ok(())
    }

    /// Queues a decoded frame whose first sample is at `at` on the input timeline: fills a
    /// hole before it with silence, or cuts what overlaps audio already queued. Returns the
    /// frame's length in samples.
    fn place(&mut self, frame: &ffmpeg::frame::Audio, at: i64) -> Result<i64, TranscodeError> {
        let converted;
        let frame = if frame.format() == FORMAT
            && frame.channels() as usize == CHANNELS
            && frame.rate() == RATE
        {
            frame
        } else {
            converted = self.resample(frame)?;
            &converted
        };
        let samples = frame.samples();
        if samples == 0 {
            return Ok(0);
        }
        let expected = *self.fifo_pts.get_or_insert(at) + self.fifo[0].len() as i64;
        let mut skip = 0;
        if at > expected {
            let hole = (at - expected) as usize;
            debug!(
                hole_ms = hole / 48,
                "hole in the Opus timeline filled with silence"
            );
            for channel in &mut self.fifo {
                channel.resize(channel.len() + hole, 0.0);
            }
        } else if at < expected {
            skip = ((expected - at) as usize).min(samples);
            debug!(
                overlap = skip,
                "late or repeated Opus unit: only its new samples kept"
            );
        }
        for (index, channel) in self.fifo.iter_mut().enumerate() {
            let plane = frame.plane::<f32>(index);
            channel.extend_from_slice(&plane[skip.min(plane.len())..]);
        }
        Ok(samples as i64)
    }

    /// A frame of any format, rate and layout as planar float stereo 48 kHz.
    fn resample(
        &mut self,
        frame: &ffmpeg::frame::Audio,
    ) -> Result<ffmpeg::frame::Audio, TranscodeError> {
        let mut layout = frame.channel_layout();
        if layout.is_empty() {
            layout = ChannelLayout::default(i32::from(frame.channels().max(1)));
        }
        let input = (frame.format(), layout, frame.rate());
        if self
            .resampler
            .as_ref()
            .is_none_or(|(_, built)| *built != input)
        {
            let context = resampling::Context::get(
                input.0,
                input.1,
                input.2,
                FORMAT,
                ChannelLayout::STEREO,
                RATE,
            )
            .map_err(TranscodeError::codec("setting up the audio resampler"))?;
            self.resampler = Some((context, input));
        }
        let Some((resampler, _)) = &mut self.resampler else {
            return Err(TranscodeError::Stopped);
        };
        // Room for every converted sample plus what swr holds back, so nothing piles up
        // inside the resampler.
        let capacity = frame.samples() * RATE as usize / frame.rate().max(1) as usize + FRAME;
        let mut converted = ffmpeg::frame::Audio::new(FORMAT, capacity, ChannelLayout::STEREO);
        resampler
            .run(frame, &mut converted)
            .map_err(TranscodeError::codec("resampling audio"))?;
        Ok(converted)
    }

    /// Encodes every full frame in the FIFO.
    fn encode_full_frames(&mut self, out: &mpsc::Sender<AccessUnit>) -> Result<(), TranscodeError> {
        let Some(start) = self.fifo_pts else {
            return Ok(());
        };
        let mut taken = 0;
        while self.fifo[0].len() - taken >= FRAME {
            let mut frame = ffmpeg::frame::Audio::new(FORMAT, FRAME, ChannelLayout::STEREO);
            frame.set_rate(RATE);
            for (index, channel) in self.fifo.iter().enumerate() {
                frame
                    .plane_mut::<f32>(index)
                    .copy_from_slice(&channel[taken..taken + FRAME]);
            }
            frame.set_pts(Some(start + taken as i64));
            taken += FRAME;
            self.encoder
                .send_frame(&frame)
                .map_err(TranscodeError::codec("encoding AAC"))?;
            self.drain(out)?;
        }
        for channel in &mut self.fifo {
            channel.drain(..taken);
        }
        self.fifo_pts = Some(start + taken as i64);
        Ok(())
    }

    /// Pads a partial frame in the FIFO with silence and encodes it, so nothing queued is
    /// lost at a jump or at the end.
    fn pad_and_encode(&mut self, out: &mpsc::Sender<AccessUnit>) -> Result<(), TranscodeError> {
        let rem = self.fifo[0].len() % FRAME;
        if rem != 0 {
            for channel in &mut self.fifo {
                channel.resize(channel.len() + FRAME - rem, 0.0);
            }
        }
        self.encode_full_frames(out)
    }

    /// End of input: the last samples, then what the encoder still holds.
    fn flush(&mut self, out: &mpsc::Sender<AccessUnit>) -> Result<(), TranscodeError> {
        self.pad_and_encode(out)?;
        self.encoder
            .send_eof()
            .map_err(TranscodeError::codec("flushing the AAC encoder"))?;
        self.drain(out)
    }

    /// Sends the packets the encoder has ready. The encoder keeps the frame pts it was
    /// given, one packet behind (each packet's pts is that of the frame it completes).
    fn drain(&mut self, out: &mpsc::Sender<AccessUnit>) -> Result<(), TranscodeError> {
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let Some(data) = packet.data() else { continue };
            if !self.primed {
                self.primed = true;
                continue;
            }
            let pts = packet.pts().unwrap_or(0);
            out.blocking_send(AccessUnit {
                track: Track::OriginalAac {
                    config: self.config.clone(),
                },
                codec: Codec::Aac,
                pts,
                dts: pts,
                timescale: RATE,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
            })
            .map_err(|_| TranscodeError::Stopped)?;
        }
        Ok(())
    }
}

/// An `OpusHead` (RFC 7845 §5.1) for 48 kHz stereo without pre-skip: WebRTC's Opus has none
/// (each RTP packet's audio starts at its timestamp), and the decoder then keeps the input
/// timeline sample for sample.
fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(CHANNELS as u8);
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&RATE.to_le_bytes()); // input sample rate
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family: mono or stereo
    head
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// The tests run one at a time: the thread test counts every `fy-tc-aac` thread of the
    /// process, and the machine has two cores.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// First input pts of the tests: not zero, so a stage that ignores it shows.
    const START: i64 = 123_456;

    /// `seconds` of a 440 Hz sine (amplitude 0.5, both channels) encoded with libopus in
    /// 20 ms frames, as the units a WHIP publisher's channel carries: one packet each,
    /// `pts` from `start` in steps of 960.
    fn opus_units(seconds: usize, start: i64) -> Vec<AccessUnit> {
        init_ffmpeg();
        let codec = ffmpeg::encoder::find_by_name("libopus").expect("libopus");
        let mut enc = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .unwrap();
        let format = Sample::F32(SampleType::Packed);
        enc.set_rate(RATE as i32);
        enc.set_format(format);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_time_base(ffmpeg::Rational(1, RATE as i32));
        enc.set_bit_rate(64_000);
        let mut enc = enc.open_with(ffmpeg::Dictionary::new()).unwrap();
        let mut packets = Vec::new();
        let mut collect = |enc: &mut ffmpeg::encoder::Audio| {
            let mut packet = ffmpeg::Packet::empty();
            while enc.receive_packet(&mut packet).is_ok() {
                packets.push(Bytes::copy_from_slice(packet.data().unwrap()));
            }
        };
        for i in 0..seconds * 50 {
            let mut frame = ffmpeg::frame::Audio::new(format, 960, ChannelLayout::STEREO);
            frame.set_rate(RATE);
            for (n, pair) in frame.plane_mut::<f32>(0).chunks_exact_mut(2).enumerate() {
                let t = (i * 960 + n) as f32 / RATE as f32;
                let v = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
                pair.fill(v);
            }
            frame.set_pts(Some(i as i64 * 960));
            enc.send_frame(&frame).unwrap();
            collect(&mut enc);
        }
        enc.send_eof().unwrap();
        collect(&mut enc);
        packets
            .into_iter()
            .enumerate()
            .map(|(i, data)| opus_unit(start + i as i64 * 960, data))
            .collect()
    }

    fn opus_unit(pts: i64, data: Bytes) -> AccessUnit {
        AccessUnit {
            track: Track::Audio,
            codec: Codec::Opus,
            pts,
            dts: pts,
            timescale: RATE,
            keyframe: true,
            data,
        }
    }

    fn init_ffmpeg() {
        crate::transcode::init();
    }

    /// Pushes `units` (fewer than the queue holds), ends the input and returns everything
    /// that comes out.
    async fn encode(units: Vec<AccessUnit>) -> (Bytes, Vec<AccessUnit>) {
        assert!(units.len() <= QUEUE);
        let mut encoder = AacEncoder::start("test").unwrap();
        for unit in units {
            assert!(encoder.push(unit));
        }
        encoder.finish();
        let mut out = Vec::new();
        while let Some(unit) = encoder.recv().await {
            out.push(unit);
        }
        assert_eq!(encoder.dropped(), 0);
        (encoder.config(), out)
    }

    /// Decodes AAC units with FFmpeg's AAC decoder; returns the left channel.
    fn decode_aac(config: &Bytes, units: &[AccessUnit]) -> Vec<f32> {
        let ctx = context_for(&DecoderSpec::Raw {
            id: ffmpeg::codec::Id::AAC,
            extradata: config.to_vec(),
        })
        .unwrap();
        let mut decoder = ctx.decoder().audio().unwrap();
        let mut left = Vec::new();
        let mut take = |decoder: &mut ffmpeg::decoder::Audio| {
            let mut frame = ffmpeg::frame::Audio::empty();
            while decoder.receive_frame(&mut frame).is_ok() {
                assert_eq!(frame.rate(), RATE);
                assert_eq!(frame.channels(), 2);
                assert_eq!(frame.format(), FORMAT);
                left.extend_from_slice(frame.plane::<f32>(0));
            }
        };
        for unit in units {
            decoder
                .send_packet(&ffmpeg::Packet::copy(&unit.data))
                .unwrap();
            take(&mut decoder);
        }
        decoder.send_eof().unwrap();
        take(&mut decoder);
        left
    }

    /// Frequency from upward zero crossings.
    fn frequency(samples: &[f32]) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        crossings as f64 * f64::from(RATE) / samples.len() as f64
    }

    fn assert_steps(units: &[AccessUnit], from: i64) {
        for (i, unit) in units.iter().enumerate() {
            assert_eq!(unit.pts, from + i as i64 * FRAME as i64, "unit {i}");
            assert_eq!(unit.dts, unit.pts);
        }
    }

    #[tokio::test]
    async fn five_seconds_of_opus_come_out_as_aac_of_the_same_tone() {
        let _serial = SERIAL.lock().await;
        let (config, out) = encode(opus_units(5, START)).await;

        assert_eq!(&config[..], &[0x11, 0x90]);
        assert_eq!(aac_rate_and_channels(&config), Some((48_000, 2)));
        let expected = 5.0 * 48_000.0 / FRAME as f64;
        assert!(
            (out.len() as f64 - expected).abs() <= 2.0,
            "{} frames, about {expected} expected",
            out.len()
        );
        assert_steps(&out, START);
        for unit in &out {
            assert_eq!(
                unit.track,
                Track::OriginalAac {
                    config: config.clone()
                }
            );
            assert_eq!(unit.codec, Codec::Aac);
            assert_eq!(unit.timescale, 48_000);
            assert!(unit.keyframe);
            assert!(!unit.data.is_empty());
            // Raw frames: no ADTS sync word.
            assert!(!(unit.data.len() >= 2 && unit.data[0] == 0xff && unit.data[1] & 0xf0 == 0xf0));
        }
        let bytes: usize = out.iter().map(|u| u.data.len()).sum();
        let kbps = bytes as f64 * 8.0 / 5.0 / 1000.0;
        assert!((64.0..=192.0).contains(&kbps), "{kbps:.0} kb/s");

        let pcm = decode_aac(&config, &out);
        let seconds = pcm.len() as f64 / 48_000.0;
        assert!((4.9..=5.2).contains(&seconds), "{seconds:.3} s decoded");
        // Past the first frames, where the codecs start up, and before the padded end.
        let steady = &pcm[4096..pcm.len() - 4096];
        let hz = frequency(steady);
        assert!((435.0..=445.0).contains(&hz), "{hz:.1} Hz");
        let rms = (steady.iter().map(|s| s * s).sum::<f32>() / steady.len() as f32).sqrt();
        assert!((0.25..=0.45).contains(&rms), "rms {rms}");
    }

    #[tokio::test]
    async fn a_jump_in_the_input_starts_the_output_again_at_the_new_pts() {
        let _serial = SERIAL.lock().await;
        let jump = 10 * 48_000;
        let mut units = opus_units(1, START);
        let first_part = units.len();
        let resumed = START + jump;
        units.extend(opus_units(1, resumed));
        let (_, out) = encode(units).await;

        let at = out
            .iter()
            .position(|u| u.pts >= resumed)
            .expect("output after the jump");
        // Before: the first second on its own timeline, its last frame padded.
        let before = (first_part * 960).div_ceil(FRAME);
        assert_eq!(at, before);
        assert_steps(&out[..at], START);
        // After: exactly the new pts, then 1024 apart again.
        assert_steps(&out[at..], resumed);
        assert!(out.len() - at >= 45);

        // And a publisher that comes back with an earlier clock.
        let mut units = opus_units(1, START + jump);
        units.extend(opus_units(1, START));
        let (_, out) = encode(units).await;
        let at = out.iter().position(|u| u.pts < START + jump).unwrap();
        assert_steps(&out[..at], START + jump);
        assert_steps(&out[at..], START);
    }

    #[tokio::test]
    async fn holes_are_filled_and_late_units_cut_so_the_output_keeps_the_input_clock() {
        let _serial = SERIAL.lock().await;
        let mut units = opus_units(2, START);
        // A lost packet (a 20 ms hole), and a packet that arrives twice.
        units.remove(30);
        let repeated = units[60].clone();
        units.insert(61, repeated);
        let last_end = units.last().unwrap().pts + 960;
        let (_, out) = encode(units).await;
        assert_steps(&out, START);
        let end = out.last().unwrap().pts + FRAME as i64;
        assert!(
            (last_end..last_end + FRAME as i64).contains(&end),
            "output ends at {end}, input at {last_end}"
        );
    }

    #[tokio::test]
    async fn garbage_is_skipped_and_good_units_after_it_still_come_out() {
        let _serial = SERIAL.lock().await;
        let mut units = opus_units(2, START);
        // Random bytes (a fixed LCG) in place of a few packets, and an empty one.
        let mut state = 0x2545_f491_u32;
        for index in [10, 11, 50] {
            let garbage: Vec<u8> = (0..200)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 24) as u8
                })
                .collect();
            units[index].data = Bytes::from(garbage);
        }
        units[70].data = Bytes::new();
        let last_end = units.last().unwrap().pts + 960;
        let (config, out) = encode(units).await;
        assert_steps(&out, START);
        let end = out.last().unwrap().pts + FRAME as i64;
        assert!(end >= last_end, "output ends at {end}, input at {last_end}");
        let pcm = decode_aac(&config, &out);
        // From 1.5 s (after the last bad unit) to the padded end: the tone again. (Where
        // the bad units were there are clicks: some random bytes parse as Opus.)
        let hz = frequency(&pcm[72_000..pcm.len() - 4096]);
        assert!(
            (435.0..=445.0).contains(&hz),
            "{hz:.1} Hz after the garbage"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let _serial = SERIAL.lock().await;
        let units = opus_units(2, START);
        let mut encoder = AacEncoder::start("test").unwrap();
        // Nobody reads: the output fills, the thread waits, the input fills.
        let mut pushed = 0;
        while encoder.dropped() < 10 && pushed < 100 * QUEUE {
            let unit = units[pushed % units.len()].clone();
            assert!(encoder.push(unit));
            pushed += 1;
        }
        assert!(
            encoder.dropped() >= 10,
            "nothing dropped after {pushed} pushes"
        );
        // The thread is still there and delivers what it made.
        assert!(encoder.recv().await.is_some());
        encoder.finish();
        assert!(!encoder.push(units[0].clone()));
    }

    /// Threads of this process named `fy-tc-aac`.
    fn aac_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == THREAD)
            .count()
    }

    #[tokio::test]
    async fn dropping_the_encoder_ends_its_thread() {
        let _serial = SERIAL.lock().await;
        let encoder = AacEncoder::start("test").unwrap();
        for unit in opus_units(1, START) {
            assert!(encoder.push(unit));
        }
        assert!(aac_threads() >= 1);
        drop(encoder);
        let since = Instant::now();
        while aac_threads() > 0 {
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "fy-tc-aac still running 1 s after the drop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

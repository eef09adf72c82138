//! A file muxer for access units: remuxes H.264, Opus and AAC into MP4 (or another
//! container FFmpeg can write) without re-encoding. The first consumer is a test of the
//! relay's access-unit subscriptions; the replay's MP4 download will be the next.
//!
//! Stream parameters come from the units themselves: an H.264 track's size and
//! configuration from the SPS/PPS in front of its first keyframe (the file's header is
//! written once that has arrived; units of other tracks wait until then), AAC's from the
//! AudioSpecificConfig its track carries, Opus's are fixed (48 kHz stereo, an `OpusHead`).
//! FFmpeg's mov muxer turns Annex-B extradata and samples into `avcC` form itself.

use std::collections::VecDeque;
use std::path::Path;

use bytes::Bytes;
use ffmpeg_next as ffmpeg;

use super::TranscodeError;
use super::h264::{parse_sps, split_annexb};
use crate::media::{AccessUnit, Codec, Track};

/// Units held while the header waits for the video's first keyframe; older ones are
/// dropped beyond this (about 20 s of Opus).
const MAX_HELD: usize = 1024;

/// One track a [`FileMuxer`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSpec {
    /// The track, as units name it.
    pub track: Track,
    /// Its codec.
    pub codec: Codec,
}

/// What became of a unit handed to [`FileMuxer::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// It is in the file (or in the muxer's interleaving queue).
    Written,
    /// It waits for the header (the video's first keyframe).
    Held,
    /// It was left out: video before its first keyframe, or a decode time not after the
    /// track's previous one.
    Skipped,
}

/// How one declared track is doing.
struct TrackState {
    spec: TrackSpec,
    /// The stream's index in the file.
    stream: usize,
    /// Unit clock -> stream time base, known once the header is written.
    time_base: Option<ffmpeg::Rational>,
    /// Whether the track has started (video: its first keyframe arrived).
    started: bool,
    /// The previous packet, written when the next one gives its duration.
    pending: Option<ffmpeg::Packet>,
    /// Duration of the last packet written, for the final one.
    last_duration: i64,
    /// Decode time (stream time base) of the last packet taken.
    last_dts: Option<i64>,
}

/// Writes access units of declared tracks into a file. Call [`FileMuxer::finish`] to write
/// the trailer; a muxer dropped without it leaves an unfinished file.
pub struct FileMuxer {
    output: ffmpeg::format::context::Output,
    tracks: Vec<TrackState>,
    /// Whether the header is written.
    started: bool,
    /// Units waiting for the header.
    held: VecDeque<AccessUnit>,
    /// Time origin (µs on the units' clocks): the first unit written sits at zero.
    origin_us: Option<i64>,
    /// Units left out so far.
    skipped: u64,
}

impl FileMuxer {
    /// Creates `path` (the container follows its extension, e.g. `.mp4`) for `tracks`,
    /// at most one of them video. Nothing is written until the video track, if any, has
    /// its first keyframe.
    pub fn create(path: &Path, tracks: &[TrackSpec]) -> Result<FileMuxer, TranscodeError> {
        super::init();
        if tracks.is_empty() {
            return Err(TranscodeError::BadInput("a file needs a track".into()));
        }
        let videos = tracks
            .iter()
            .filter(|t| matches!(t.track, Track::Video { .. }))
            .count();
        if videos > 1 {
            return Err(TranscodeError::Unsupported(
                "one video track per file".into(),
            ));
        }
        for (i, spec) in tracks.iter().enumerate() {
            let fits = match (&spec.track, spec.codec) {
                (Track::Video { .. }, Codec::H264) => true,
                (Track::Video { .. }, Codec::Vp8) => {
                    return Err(TranscodeError::Unsupported("VP8 in a file".into()));
                }
                (Track::Audio, Codec::Opus) => true,
                (Track::OriginalAac { config }, Codec::Aac) => {
                    aac_rate_and_channels(config).is_some()
                }
                _ => false,
            };
            if !fits {
                return Err(TranscodeError::BadInput(format!(
                    "track {:?} cannot carry {:?}",
                    spec.track, spec.codec
                )));
            }
            if tracks[..i].iter().any(|t| t.track == spec.track) {
                return Err(TranscodeError::BadInput(format!(
                    "track {:?} declared twice",
                    spec.track
                )));
            }
        }
        let mut output =
            ffmpeg::format::output(path).map_err(TranscodeError::codec("creating the file"))?;
        let mut states = Vec::with_capacity(tracks.len());
        for spec in tracks {
            let stream = output
                .add_stream(None::<ffmpeg::Codec>)
                .map_err(TranscodeError::codec("adding a stream"))?
                .index();
            states.push(TrackState {
                spec: spec.clone(),
                stream,
                time_base: None,
                started: !matches!(spec.track, Track::Video { .. }),
                pending: None,
                last_duration: 0,
                last_dts: None,
            });
        }
        Ok(FileMuxer {
            output,
            tracks: states,
            started: false,
            held: VecDeque::new(),
            origin_us: None,
            skipped: 0,
        })
    }

    /// Units left out so far (see [`Written::Skipped`]).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Takes one unit. A unit of a track that was not declared, or with a codec other than
    /// its track's, is an error; so is a failing write.
    pub fn write(&mut self, unit: &AccessUnit) -> Result<Written, TranscodeError> {
        let index = self
            .tracks
            .iter()
            .position(|t| t.spec.track == unit.track)
            .ok_or_else(|| {
                TranscodeError::BadInput(format!("unit of undeclared track {:?}", unit.track))
            })?;
        let track = &mut self.tracks[index];
        if track.spec.codec != unit.codec {
            return Err(TranscodeError::BadInput(format!(
                "{:?} unit on a {:?} track",
                unit.codec, track.spec.codec
            )));
        }
        if unit.timescale == 0 {
            return Err(TranscodeError::BadInput("unit with timescale 0".into()));
        }
        if !track.started {
            if !unit.keyframe {
                self.skipped += 1;
                return Ok(Written::Skipped);
            }
            let params = h264_parameters(&unit.data)?;
            set_parameters(&mut self.output, track.stream, params)?;
            track.started = true;
        }
        if !self.started {
            if self.tracks.iter().all(|t| t.started) {
                self.start()?;
                let held = std::mem::take(&mut self.held);
                // The earliest unit of any track sits at zero.
                self.origin_us = held
                    .iter()
                    .chain(std::iter::once(unit))
                    .map(|u| micros(u.dts, u.timescale))
                    .min();
                for held in &held {
                    self.put(held)?;
                }
            } else {
                if self.held.len() == MAX_HELD {
                    self.held.pop_front();
                    self.skipped += 1;
                }
                self.held.push_back(unit.clone());
                return Ok(Written::Held);
            }
        }
        self.put(unit)
    }

    /// Writes the header: audio tracks get their parameters here (video got its own from
    /// its first keyframe).
    fn start(&mut self) -> Result<(), TranscodeError> {
        for i in 0..self.tracks.len() {
            let params = match &self.tracks[i].spec.track {
                Track::Video { .. } => continue,
                Track::Audio => audio_parameters(ffmpeg::codec::Id::OPUS, 48_000, 2, &opus_head())?,
                Track::OriginalAac { config } => {
                    let (rate, channels) = aac_rate_and_channels(config).ok_or_else(|| {
                        TranscodeError::BadInput("unreadable AudioSpecificConfig".into())
                    })?;
                    audio_parameters(ffmpeg::codec::Id::AAC, rate, channels, config)?
                }
            };
            set_parameters(&mut self.output, self.tracks[i].stream, params)?;
        }
        // SAFETY: `strict_std_compliance` is a plain int field of the live format context;
        // -2 (experimental) lets FFmpeg versions that call Opus in MP4 experimental write it.
        unsafe {
            (*self.output.as_mut_ptr()).strict_std_compliance = -2;
        }
        self.output
            .write_header()
            .map_err(TranscodeError::codec("writing the file header"))?;
        for track in &mut self.tracks {
            track.time_base = Some(
                self.output
                    .stream(track.stream)
                    .map_or(ffmpeg::Rational(1, 90_000), |s| s.time_base()),
            );
        }
        self.started = true;
        Ok(())
    }

    /// Puts a unit of a started track into the file, its timestamps moved to the stream's
    /// time base with the file's origin at zero.
    fn put(&mut self, unit: &AccessUnit) -> Result<Written, TranscodeError> {
        let origin = *self
            .origin_us
            .get_or_insert(micros(unit.dts, unit.timescale));
        let index = self
            .tracks
            .iter()
            .position(|t| t.spec.track == unit.track)
            .ok_or_else(|| TranscodeError::BadInput("undeclared track".into()))?;
        let track = &mut self.tracks[index];
        let tb = track.time_base.unwrap_or(ffmpeg::Rational(1, 90_000));
        // Through microseconds, the origin's own unit: the unit that set the origin lands
        // exactly on zero (a round trip through its own time base could round below it).
        let us = ffmpeg::Rational(1, 1_000_000);
        let mut dts_us = micros(unit.dts, unit.timescale) - origin;
        let mut pts_us = micros(unit.pts, unit.timescale) - origin;
        // A track's first unit may sit a little before the origin another track's first
        // unit set (units of one moment, rounded on different clocks, written in the order
        // they came): it starts at zero instead of being lost. Later units never move.
        if dts_us < 0 && track.last_dts.is_none() && dts_us > -FIRST_UNIT_SLACK_US {
            pts_us -= dts_us;
            dts_us = 0;
        }
        let dts = ffmpeg::Rescale::rescale(&dts_us, us, tb);
        let pts = ffmpeg::Rescale::rescale(&pts_us, us, tb);
        if dts < 0 || pts < dts || track.last_dts.is_some_and(|last| dts <= last) {
            self.skipped += 1;
            return Ok(Written::Skipped);
        }
        let mut packet = ffmpeg::Packet::copy(&unit.data);
        packet.set_stream(track.stream);
        packet.set_dts(Some(dts));
        packet.set_pts(Some(pts));
        if unit.keyframe {
            packet.set_flags(ffmpeg::packet::Flags::KEY);
        }
        if let (Some(mut previous), Some(last)) = (track.pending.take(), track.last_dts) {
            track.last_duration = dts - last;
            previous.set_duration(track.last_duration);
            previous
                .write_interleaved(&mut self.output)
                .map_err(TranscodeError::codec("writing a packet"))?;
        }
        track.last_dts = Some(dts);
        track.pending = Some(packet);
        Ok(Written::Written)
    }

    /// Writes what is pending and the trailer. A file whose header never got written (no
    /// keyframe arrived) is an error.
    pub fn finish(mut self) -> Result<(), TranscodeError> {
        if !self.started {
            return Err(TranscodeError::BadInput(
                "no keyframe arrived: nothing was written".into(),
            ));
        }
        for track in &mut self.tracks {
            if let Some(mut last) = track.pending.take() {
                last.set_duration(track.last_duration);
                last.write_interleaved(&mut self.output)
                    .map_err(TranscodeError::codec("writing a packet"))?;
            }
        }
        self.output
            .write_trailer()
            .map_err(TranscodeError::codec("writing the file trailer"))
    }
}

/// `t` ticks of a `timescale` clock in µs.
/// How far before the file's origin a track's first unit may be and still be written (at
/// zero): less than a frame of video, enough for the rounding of two clocks.
const FIRST_UNIT_SLACK_US: i64 = 20_000;

fn micros(t: i64, timescale: u32) -> i64 {
    (i128::from(t) * 1_000_000 / i128::from(timescale.max(1)))
        .clamp(i128::from(i64::MIN / 2), i128::from(i64::MAX / 2)) as i64
}

/// Stream parameters of H.264 from a keyframe's in-band SPS/PPS (Annex-B).
fn h264_parameters(keyframe: &[u8]) -> Result<ffmpeg::codec::Parameters, TranscodeError> {
    let nals = split_annexb(keyframe);
    let sps = nals
        .iter()
        .find(|n| n[0] & 0x1f == 7)
        .ok_or_else(|| TranscodeError::BadInput("H.264 keyframe without an SPS".into()))?;
    let info = parse_sps(sps)?;
    let mut extradata = Vec::new();
    for nal in nals.iter().filter(|n| matches!(n[0] & 0x1f, 7 | 8)) {
        extradata.extend_from_slice(&[0, 0, 0, 1]);
        extradata.extend_from_slice(nal);
    }
    let mut params = ffmpeg::codec::Parameters::new();
    // SAFETY: `params` owns a freshly allocated AVCodecParameters; only plain fields are
    // written, and the extradata is set through `set_extradata`, which allocates it with
    // FFmpeg's allocator.
    unsafe {
        let raw = params.as_mut_ptr();
        (*raw).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
        (*raw).codec_id = ffmpeg::ffi::AVCodecID::AV_CODEC_ID_H264;
        (*raw).width = info.width as i32;
        (*raw).height = info.height as i32;
        (*raw).profile = i32::from(info.profile_idc);
        (*raw).level = i32::from(info.level_idc);
        set_extradata(raw, &extradata)?;
    }
    Ok(params)
}

/// Stream parameters of an audio track.
fn audio_parameters(
    id: ffmpeg::codec::Id,
    sample_rate: u32,
    channels: u32,
    extradata: &[u8],
) -> Result<ffmpeg::codec::Parameters, TranscodeError> {
    let mut params = ffmpeg::codec::Parameters::new();
    // SAFETY: as in `h264_parameters`; the channel layout is set with FFmpeg's own
    // initializer on the parameters' own field.
    unsafe {
        let raw = params.as_mut_ptr();
        (*raw).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
        (*raw).codec_id = id.into();
        (*raw).sample_rate = sample_rate as i32;
        ffmpeg::ffi::av_channel_layout_default(&mut (*raw).ch_layout, channels as i32);
        set_extradata(raw, extradata)?;
    }
    Ok(params)
}

/// Copies `data` into `raw`'s extradata, allocated with FFmpeg's allocator and zero-padded
/// as libavcodec requires (FFmpeg frees it with the parameters).
///
/// # Safety
/// `raw` must point to live codec parameters without extradata.
unsafe fn set_extradata(
    raw: *mut ffmpeg::ffi::AVCodecParameters,
    data: &[u8],
) -> Result<(), TranscodeError> {
    let padding = ffmpeg::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: the buffer is allocated zeroed with room for `data` and the padding, fully
    // written before the parameters see it, and owned by them from here on.
    unsafe {
        let buf = ffmpeg::ffi::av_mallocz(data.len() + padding) as *mut u8;
        if buf.is_null() {
            return Err(TranscodeError::Unsupported("out of memory".into()));
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        (*raw).extradata = buf;
        (*raw).extradata_size = data.len() as i32;
    }
    Ok(())
}

/// Gives stream `index` of `output` the parameters (copied; `params` is freed after).
fn set_parameters(
    output: &mut ffmpeg::format::context::Output,
    index: usize,
    params: ffmpeg::codec::Parameters,
) -> Result<(), TranscodeError> {
    let mut stream = output
        .stream_mut(index)
        .ok_or_else(|| TranscodeError::BadInput("no such stream".into()))?;
    stream.set_parameters(params);
    Ok(())
}

/// An `OpusHead` (RFC 7845 §5.1) for 48 kHz stereo with the usual 312-sample pre-skip.
fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(2); // channels
    head.extend_from_slice(&312u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    head
}

/// Sample rate and channel count of an AAC AudioSpecificConfig (ISO 14496-3 §1.6.2.1),
/// when it is one this muxer can describe.
pub fn aac_rate_and_channels(config: &Bytes) -> Option<(u32, u32)> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let mut bits = config
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| u32::from((b >> i) & 1)));
    let mut read =
        |n: u32| -> Option<u32> { (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | bits.next()?)) };
    let object_type = match read(5)? {
        31 => 32 + read(6)?,
        t => t,
    };
    if object_type == 0 {
        return None;
    }
    let rate = match read(4)? {
        15 => read(24)?,
        i => *RATES.get(i as usize)?,
    };
    let channels = match read(4)? {
        c @ 1..=6 => c,
        7 => 8,
        _ => return None,
    };
    (rate > 0).then_some((rate, channels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_configs() {
        // AAC-LC 44.1 kHz stereo, 48 kHz mono, an explicit 22.05 kHz rate.
        assert_eq!(
            aac_rate_and_channels(&Bytes::from_static(&[0x12, 0x10])),
            Some((44_100, 2))
        );
        assert_eq!(
            aac_rate_and_channels(&Bytes::from_static(&[0x11, 0x88])),
            Some((48_000, 1))
        );
        assert_eq!(
            aac_rate_and_channels(&Bytes::from_static(&[0x17, 0x80, 0x2b, 0x11, 0x10])),
            Some((22_050, 2))
        );
        assert_eq!(
            aac_rate_and_channels(&Bytes::from_static(&[0x12])),
            None,
            "truncated"
        );
        assert_eq!(
            aac_rate_and_channels(&Bytes::from_static(&[0x12, 0x00])),
            None,
            "no channels"
        );
    }

    #[test]
    fn opus_head_is_19_bytes() {
        let head = opus_head();
        assert_eq!(head.len(), 19);
        assert_eq!(&head[10..12], &312u16.to_le_bytes());
    }
    /// `frames` pictures of H.264 (constrained baseline, an IDR every 10) from the ffmpeg
    /// CLI, one Annex-B access unit each, and whether each is an IDR.
    fn h264_clip(dir: &Path, frames: usize) -> Vec<(Bytes, bool)> {
        let path = dir.join("clip.h264");
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=30"])
            .args(["-frames:v", &frames.to_string(), "-c:v", "libx264"])
            .args(["-profile:v", "baseline", "-g", "10", "-pix_fmt", "yuv420p"])
            .args(["-f", "h264"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
        let data = std::fs::read(&path).unwrap();
        let mut units = Vec::new();
        let mut current = Vec::new();
        for nal in split_annexb(&data) {
            current.extend_from_slice(&[0, 0, 0, 1]);
            current.extend_from_slice(nal);
            let kind = nal[0] & 0x1f;
            if kind == 1 || kind == 5 {
                units.push((Bytes::from(std::mem::take(&mut current)), kind == 5));
            }
        }
        units
    }

    fn ffprobe(path: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(path)
            .output()
            .expect("ffprobe runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn unit(
        track: Track,
        codec: Codec,
        t: i64,
        timescale: u32,
        key: bool,
        data: Bytes,
    ) -> AccessUnit {
        AccessUnit {
            track,
            codec,
            pts: t,
            dts: t,
            timescale,
            keyframe: key,
            data,
        }
    }

    #[test]
    fn remuxes_from_the_first_keyframe_and_skips_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let clip = h264_clip(dir.path(), 25);
        let video = Track::Video { rendition: 0 };
        let path = dir.path().join("out.mp4");
        let mut mux = FileMuxer::create(
            &path,
            &[
                TrackSpec {
                    track: video.clone(),
                    codec: Codec::H264,
                },
                TrackSpec {
                    track: Track::Audio,
                    codec: Codec::Opus,
                },
            ],
        )
        .unwrap();
        // A 20 ms Opus frame of silence (stereo CELT, no payload: concealment).
        let opus = Bytes::from_static(&[0xfc]);
        let base = 90_000 * 7; // units do not start at zero
        assert_eq!(
            mux.write(&unit(
                Track::Audio,
                Codec::Opus,
                48_000 * 7,
                48_000,
                true,
                opus.clone()
            ))
            .unwrap(),
            Written::Held
        );
        // The clip from its second IDR (frame 10): frames 5..10 come before any keyframe.
        for (i, (data, key)) in clip.iter().enumerate().skip(5) {
            let t = base + i as i64 * 3000;
            let outcome = mux
                .write(&unit(
                    video.clone(),
                    Codec::H264,
                    t,
                    90_000,
                    *key,
                    data.clone(),
                ))
                .unwrap();
            let expected = if i < 10 {
                Written::Skipped
            } else {
                Written::Written
            };
            assert_eq!(outcome, expected, "frame {i}");
            let audio_t = 48_000 * 7 + (i as i64 - 4) * 1600;
            mux.write(&unit(
                Track::Audio,
                Codec::Opus,
                audio_t,
                48_000,
                true,
                opus.clone(),
            ))
            .unwrap();
        }
        assert_eq!(mux.skipped(), 5);
        // A decode time that does not move forward is left out; undeclared tracks and
        // codecs other than the track's are errors.
        let (idr, _) = &clip[10];
        assert_eq!(
            mux.write(&unit(
                video.clone(),
                Codec::H264,
                base,
                90_000,
                false,
                idr.clone()
            ))
            .unwrap(),
            Written::Skipped
        );
        let aac = Track::OriginalAac {
            config: Bytes::from_static(&[0x12, 0x10]),
        };
        assert!(
            mux.write(&unit(aac, Codec::Aac, 0, 44_100, true, opus.clone()))
                .is_err()
        );
        assert!(
            mux.write(&unit(video, Codec::Vp8, base, 90_000, true, opus))
                .is_err()
        );
        mux.finish().unwrap();

        let frames = ffprobe(
            &path,
            &[
                "-select_streams",
                "v:0",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames,width,height,codec_name",
                "-of",
                "csv=p=0",
            ],
        );
        assert_eq!(frames.trim(), "h264,320,180,15");
        let audio = ffprobe(
            &path,
            &[
                "-select_streams",
                "a:0",
                "-count_packets",
                "-show_entries",
                "stream=codec_name,sample_rate,channels,nb_read_packets",
                "-of",
                "csv=p=0",
            ],
        );
        assert_eq!(audio.trim(), "opus,48000,2,21");
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mp4");
        assert!(FileMuxer::create(&path, &[]).is_err());
        let vp8 = TrackSpec {
            track: Track::Video { rendition: 0 },
            codec: Codec::Vp8,
        };
        assert!(matches!(
            FileMuxer::create(&path, &[vp8]),
            Err(TranscodeError::Unsupported(_))
        ));
        let bad_aac = TrackSpec {
            track: Track::OriginalAac {
                config: Bytes::from_static(&[0]),
            },
            codec: Codec::Aac,
        };
        assert!(FileMuxer::create(&path, &[bad_aac]).is_err());
        let h264 = TrackSpec {
            track: Track::Video { rendition: 0 },
            codec: Codec::H264,
        };
        let mut mux = FileMuxer::create(&path, &[h264.clone(), h264.clone()]);
        assert!(mux.is_err(), "a track declared twice");
        mux = FileMuxer::create(&path, &[h264]);
        let mut mux = mux.unwrap();
        let p_frame = unit(
            Track::Video { rendition: 0 },
            Codec::H264,
            0,
            90_000,
            false,
            Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9a]),
        );
        assert_eq!(mux.write(&p_frame).unwrap(), Written::Skipped);
        let no_sps = AccessUnit {
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
            ..p_frame
        };
        assert!(mux.write(&no_sps).is_err(), "a keyframe without an SPS");
        assert!(mux.finish().is_err(), "no keyframe, no file");
    }
}

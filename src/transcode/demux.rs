//! Reading media files and network URLs with libavformat (film playout, pull sources and
//! `film import` probing). Blocking: run it on a dedicated thread.

use bytes::Bytes;
use ffmpeg::media::Type as Medium;
use ffmpeg::util::mathematics::rescale::Rescale;
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use super::h264::AvcConfig;
use super::{AudioInput, DecoderSpec, MICROS, SourcePacket, TranscodeError, VideoInput};
use crate::media::MediaKind;

/// What `film import` records about a file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MediaProbe {
    /// Container format name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Video codec name (`h264`, `hevc`, ...), if any.
    pub video_codec: Option<String>,
    /// Video width and height.
    pub width: u32,
    /// Video height.
    pub height: u32,
    /// Audio codec name, if any.
    pub audio_codec: Option<String>,
}

fn codec_name(id: ffmpeg::codec::Id) -> String {
    id.name().to_string()
}

/// An opened input: a file path or a URL libavformat understands (rtsp, srt, rtmp, http).
pub struct Demuxer {
    input: ffmpeg::format::context::Input,
    video: Option<(usize, ffmpeg::Rational)>,
    audio: Option<(usize, ffmpeg::Rational)>,
    video_input: Option<VideoInput>,
    audio_input: Option<AudioInput>,
    /// Total duration in µs, when the container knows it.
    pub duration_us: Option<i64>,
}

impl Demuxer {
    /// Opens `location` and finds its best video and audio streams. `options` are passed to
    /// libavformat (e.g. `rw_timeout` in µs for network inputs).
    pub fn open(location: &str, options: &[(&str, &str)]) -> Result<Demuxer, TranscodeError> {
        super::init();
        let mut dict = ffmpeg::Dictionary::new();
        for (k, v) in options {
            dict.set(k, v);
        }
        let input = ffmpeg::format::input_with_dictionary(location, dict).map_err(|source| {
            TranscodeError::Unsupported(format!(
                "cannot open {location} as media ({source}): not a media file, damaged, \
                 unreachable, or a container FFmpeg does not know"
            ))
        })?;
        let mut video = None;
        let mut video_input = None;
        if let Some(stream) = input.streams().best(Medium::Video) {
            let params = stream.parameters();
            let id = params.id();
            // SAFETY: reading plain integer/pointer fields of the stream's own parameters,
            // which live as long as `input`.
            let (delay, extradata) = unsafe {
                let raw = params.as_ptr();
                let extra = if (*raw).extradata.is_null() || (*raw).extradata_size <= 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts((*raw).extradata, (*raw).extradata_size as usize)
                        .to_vec()
                };
                ((*raw).video_delay, extra)
            };
            let is_h264 = id == ffmpeg::codec::Id::H264;
            let avc = if is_h264 && extradata.first() == Some(&1) {
                Some(AvcConfig::parse(&extradata)?)
            } else {
                None
            };
            let rate = stream.avg_frame_rate();
            let (w, h) = unsafe { ((*params.as_ptr()).width, (*params.as_ptr()).height) };
            let annexb_extradata = if is_h264 && avc.is_none() {
                extradata
            } else {
                Vec::new()
            };
            video_input = Some(VideoInput {
                spec: DecoderSpec::Params(params),
                avc,
                annexb_extradata,
                is_h264,
                may_have_b_frames: delay > 0,
                frame_rate: (rate.numerator() > 0 && rate.denominator() > 0)
                    .then_some((rate.numerator(), rate.denominator())),
                size: (w > 0 && h > 0).then_some((w as u32, h as u32)),
                description: format!("{} {w}x{h}", codec_name(id)),
            });
            video = Some((stream.index(), stream.time_base()));
        }
        let mut audio = None;
        let mut audio_input = None;
        if let Some(stream) = input.streams().best(Medium::Audio) {
            let params = stream.parameters();
            audio_input = Some(AudioInput {
                description: codec_name(params.id()),
                spec: DecoderSpec::Params(params),
            });
            audio = Some((stream.index(), stream.time_base()));
        }
        let duration = input.duration();
        Ok(Demuxer {
            input,
            video,
            audio,
            video_input,
            audio_input,
            duration_us: (duration > 0).then_some(duration),
        })
    }

    /// The video track, while it has not been taken.
    pub fn video(&self) -> Option<&VideoInput> {
        self.video_input.as_ref()
    }

    /// The audio track, while it has not been taken.
    pub fn audio(&self) -> Option<&AudioInput> {
        self.audio_input.as_ref()
    }

    /// Moves to the last point at or before `us` (the input's own clock, µs) from which
    /// every chosen stream can be read; the next [`Demuxer::read`] starts there. Where the
    /// container lands is its own: callers that need exact packets filter by timestamp.
    pub fn seek_us(&mut self, us: i64) -> Result<(), TranscodeError> {
        self.input
            .seek(us, ..us)
            .map_err(TranscodeError::codec("seeking the input"))
    }

    /// The video track for [`super::Transcoder::start`] (taken once).
    pub fn take_video(&mut self) -> Option<VideoInput> {
        self.video_input.take()
    }

    /// The audio track for [`super::Transcoder::start`] (taken once).
    pub fn take_audio(&mut self) -> Option<AudioInput> {
        self.audio_input.take()
    }

    /// The next packet of the chosen streams; `Ok(None)` at the end of the input.
    pub fn read(&mut self) -> Result<Option<SourcePacket>, TranscodeError> {
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(source) => {
                    return Err(TranscodeError::Codec {
                        context: "reading the input",
                        source,
                    });
                }
            }
            let index = packet.stream();
            let (kind, tb) = match (self.video, self.audio) {
                (Some((v, tb)), _) if v == index => (MediaKind::Video, tb),
                (_, Some((a, tb))) if a == index => (MediaKind::Audio, tb),
                _ => continue,
            };
            let Some(data) = packet.data() else { continue };
            let dts = packet.dts().or(packet.pts()).unwrap_or(0);
            let pts = packet.pts().unwrap_or(dts);
            return Ok(Some(SourcePacket {
                kind,
                data: Bytes::copy_from_slice(data),
                pts_us: pts.rescale(tb, MICROS),
                dts_us: dts.rescale(tb, MICROS),
                keyframe: packet.is_key(),
            }));
        }
    }
}

/// Opens `path`, checks a browser-playable result can be made from it (a decodable video
/// or audio stream), and describes it. The error says why a file cannot be played.
pub fn probe(path: &str) -> Result<MediaProbe, TranscodeError> {
    let demuxer = Demuxer::open(path, &[])?;
    let container = demuxer.input.format().name().to_string();
    let mut probe = MediaProbe {
        container,
        duration_ms: demuxer.duration_us.unwrap_or(0) / 1000,
        video_codec: None,
        width: 0,
        height: 0,
        audio_codec: None,
    };
    if let Some(v) = &demuxer.video_input {
        let ctx = super::context_for(&v.spec)?;
        let decoder = ctx.decoder().video().map_err(|e| {
            TranscodeError::Unsupported(format!(
                "no decoder for its video ({}): {e}",
                v.description
            ))
        })?;
        probe.width = decoder.width();
        probe.height = decoder.height();
        if probe.width == 0 || probe.height == 0 {
            return Err(TranscodeError::Unsupported(
                "its video stream has no picture size (damaged file?)".into(),
            ));
        }
        probe.video_codec = Some(v.description.split(' ').next().unwrap_or("").to_string());
    }
    if let Some(a) = &demuxer.audio_input {
        let ctx = super::context_for(&a.spec)?;
        ctx.decoder().audio().map_err(|e| {
            TranscodeError::Unsupported(format!(
                "no decoder for its audio ({}): {e}",
                a.description
            ))
        })?;
        probe.audio_codec = Some(a.description.clone());
    }
    if probe.video_codec.is_none() && probe.audio_codec.is_none() {
        return Err(TranscodeError::Unsupported(
            "it has neither a video nor an audio stream".into(),
        ));
    }
    if probe.duration_ms <= 0 {
        return Err(TranscodeError::Unsupported(
            "its duration is unknown (damaged or a live stream?)".into(),
        ));
    }
    Ok(probe)
}

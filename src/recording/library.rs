//! A film class whose library file is H.264 + AAC is not recorded again: its replay is
//! the library file, cut on request into the same fMP4 segments a recording has and
//! served by the same VOD code.
//!
//! [`LibraryVod::open`] reads the file once without decoding and keeps only where each
//! segment starts (a video IDR at least `target_secs` after the previous start) and how
//! many packets of each track it holds. [`LibraryVod::segment`] reads that segment's
//! packets again (a seek, then a filter on decode times), so a segment's bytes depend
//! only on the file and its number: players may ask for segments in any order.
//!
//! Timelines: every sample's decode time is the file's own, minus the file's earliest
//! decode time, converted to the track's clock (90 kHz video, the sample rate for
//! audio); a sample lasts until the next one's decode time, the next segment's first
//! included, so decode times run on without a gap from one segment to the next.

use std::path::{Path, PathBuf};

use super::{Because as _, Result, media};
use bytes::Bytes;

use crate::hls::fmp4::{
    self, AUDIO_TRACK, AudioConfig, Sample, TrackRun, VIDEO_TIMESCALE, VIDEO_TRACK, VideoConfig,
};
use crate::media::MediaKind;
use crate::transcode::demux::Demuxer;
use crate::transcode::h264::AnnexbWriter;

/// Whether a library film with these codecs (as `film import` records them, FFmpeg's
/// names: `h264`, `aac`) replays from its file rather than from a recording.
pub fn library_eligible(video_codec: Option<&str>, audio_codec: Option<&str>) -> bool {
    let is = |codec: &str, name: &str| codec.trim().eq_ignore_ascii_case(name);
    video_codec.is_some_and(|v| is(v, "h264")) && audio_codec.is_none_or(|a| is(a, "aac"))
}

/// Where one segment's packets are in the file (decode times on the file's clock, µs).
#[derive(Debug, Clone)]
struct Cut {
    /// Decode time of its first video packet (an IDR).
    video_start_us: i64,
    /// Video packets in it.
    video_count: usize,
    /// Decode time where its last video sample ends: the next segment's start, or for the
    /// last segment the last packet's plus the one before it's duration.
    video_end_us: i64,
    /// Audio packets in it: those with decode times from `video_start_us` (from the
    /// file's start for the first segment) up to the next segment's start.
    audio_count: usize,
    /// Decode time of its first audio packet, if it has any.
    audio_start_us: Option<i64>,
    /// Decode time where its last audio sample ends (the next audio packet's, or the last
    /// packet's plus the one before it's duration).
    audio_end_us: i64,
}

/// How a track's samples come out of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AudioFraming {
    /// Raw AAC frames, the configuration out of band (MP4, MKV).
    Raw,
    /// Each frame behind an ADTS header (MPEG-TS), stripped for fMP4.
    Adts,
}

/// A library file's replay: its init segment and an index of its segments.
#[derive(Debug, Clone)]
pub struct LibraryVod {
    /// The file, reopened for each segment.
    path: PathBuf,
    /// The init segment (the file's first SPS/PPS and its AAC configuration).
    init: Bytes,
    /// The audio track's clock, when the file has AAC.
    audio_rate: Option<u32>,
    audio_framing: AudioFraming,
    /// The file's earliest decode time (µs), which becomes zero on the replay's clocks.
    origin_us: i64,
    cuts: Vec<Cut>,
}

/// `us` (relative to the origin) on a clock of `rate` ticks per second, rounded.
fn ticks(us: i64, rate: u32) -> i64 {
    let scaled = i128::from(us) * i128::from(rate);
    let rounded = if scaled >= 0 {
        (scaled + 500_000) / 1_000_000
    } else {
        (scaled - 500_000) / 1_000_000
    };
    rounded as i64
}

/// The AudioSpecificConfig an ADTS header describes and the header's length.
fn adts_header(frame: &[u8]) -> Option<([u8; 2], usize)> {
    if frame.len() < 7 || frame[0] != 0xff || frame[1] & 0xf6 != 0xf0 {
        return None;
    }
    let object_type = (frame[2] >> 6) + 1;
    let frequency_index = (frame[2] >> 2) & 0x0f;
    let channels = ((frame[2] & 1) << 2) | (frame[3] >> 6);
    let asc = (u16::from(object_type) << 11)
        | (u16::from(frequency_index) << 7)
        | (u16::from(channels) << 3);
    let protection_absent = frame[1] & 1 == 1;
    Some((asc.to_be_bytes(), if protection_absent { 7 } else { 9 }))
}

fn open_demuxer(path: &Path) -> Result<Demuxer> {
    let text = path
        .to_str()
        .media(|| format!("{}: the path is not valid UTF-8", path.display()))?;
    Demuxer::open(text, &[]).media(|| format!("cannot read {}", path.display()))
}

impl LibraryVod {
    /// Indexes the file (demux only, no decode): segments start on keyframes, about
    /// `target_secs` long. Blocking (reads the whole file once; disk-bound).
    ///
    /// Refused, with the reason: no H.264 video, audio other than AAC, no IDR, or decode
    /// times that do not rise (such a film is recorded instead).
    pub fn open(path: &Path, target_secs: f64) -> Result<LibraryVod> {
        let what = || format!("{} cannot replay from its file", path.display());
        let mut demuxer = open_demuxer(path)?;
        let mut annexb = match demuxer.video().and_then(|v| v.annexb_writer()) {
            Some(writer) => writer,
            None => return Err(media(format!("{}: it has no H.264 video", what()))),
        };
        let (mut audio_config, mut audio_framing) = (None, AudioFraming::Raw);
        match demuxer.audio() {
            None => {}
            Some(a) if !a.is_aac() => return Err(media(format!("{}: its audio is {}, not AAC", what(), a.description))),
            Some(a) => audio_config = a.aac_config(),
        }
        let has_audio = demuxer.audio().is_some();
        let mut video_config = None;
        // Decode times of every packet (µs) and whether each video one is an IDR.
        let mut video: Vec<(i64, bool)> = Vec::new();
        let mut audio: Vec<i64> = Vec::new();
        while let Some(packet) = demuxer.read().media(what)? {
            match packet.kind {
                MediaKind::Video => {
                    let (au, idr) = annexb.convert(&packet.data).media(what)?;
                    if idr && video_config.is_none() {
                        video_config = VideoConfig::from_access_unit(&au);
                    }
                    if video_config.is_some() {
                        video.push((packet.dts_us, idr));
                    }
                }
                MediaKind::Audio => {
                    if audio.is_empty() && audio_config.is_none() {
                        let Some((asc, _)) = adts_header(&packet.data) else {
                            return Err(media(format!("{}: its AAC has no configuration", what())));
                        };
                        audio_config = Some(Bytes::copy_from_slice(&asc));
                        audio_framing = AudioFraming::Adts;
                    }
                    audio.push(packet.dts_us);
                }
            }
        }
        let Some(video_config) = video_config else {
            return Err(media(format!("{}: its video has no IDR with SPS and PPS", what())));
        };
        let audio_config = match audio_config {
            Some(config) if has_audio => Some(
                AudioConfig::from_audio_specific_config(config)
                    .media(|| format!("{}: unreadable AAC configuration", what()))?,
            ),
            _ => None,
        };
        let audio_rate = audio_config.as_ref().map(|a| a.sample_rate);
        let origin_us = video[0].0.min(audio.first().copied().unwrap_or(i64::MAX));
        // Decode times must rise on each track's own clock, or samples would last 0 ticks.
        let rising = |times: &[i64], rate: u32| {
            times
                .windows(2)
                .all(|w| ticks(w[1] - origin_us, rate) > ticks(w[0] - origin_us, rate))
        };
        let video_times: Vec<i64> = video.iter().map(|v| v.0).collect();
        if !rising(&video_times, VIDEO_TIMESCALE) {
            return Err(media(format!("{}: its video decode times do not rise", what())));
        }
        if let Some(rate) = audio_rate
            && !rising(&audio, rate)
        {
            return Err(media(format!("{}: its audio decode times do not rise", what())));
        }
        // Where each segment starts: an IDR at least `target_secs` after the last start.
        let target_us = (target_secs.max(0.1) * 1e6) as i64;
        let mut starts = vec![0usize];
        for (i, &(dts, idr)) in video.iter().enumerate().skip(1) {
            let last = video[*starts.last().unwrap_or(&0)].0;
            if idr && dts - last + 1_000 >= target_us {
                starts.push(i);
            }
        }
        let end_of = |times: &[i64]| match times {
            [.., a, b] => b + (b - a),
            [b] => b + 1,
            [] => 0,
        };
        let file_video_end = end_of(&video_times);
        let file_audio_end = end_of(&audio);
        let mut cuts = Vec::with_capacity(starts.len());
        let mut audio_from = 0;
        for (n, &from) in starts.iter().enumerate() {
            let to = starts.get(n + 1).copied().unwrap_or(video.len());
            let (video_end_us, audio_to) = match video.get(to) {
                Some(&(next, _)) => (next, audio.partition_point(|&a| a < next)),
                None => (file_video_end, audio.len()),
            };
            cuts.push(Cut {
                video_start_us: video[from].0,
                video_count: to - from,
                video_end_us,
                audio_count: audio_to - audio_from,
                audio_start_us: (audio_to > audio_from).then(|| audio[audio_from]),
                audio_end_us: audio.get(audio_to).copied().unwrap_or(file_audio_end),
            });
            audio_from = audio_to;
        }
        Ok(LibraryVod {
            path: path.to_path_buf(),
            init: fmp4::init_segment(Some(&video_config), audio_config.as_ref()),
            audio_rate,
            audio_framing,
            origin_us,
            cuts,
        })
    }

    /// One duration per segment, seconds (video: from its first decode time to the next
    /// segment's).
    pub fn durations(&self) -> Vec<f64> {
        self.cuts
            .iter()
            .map(|c| (c.video_end_us - c.video_start_us) as f64 / 1e6)
            .collect()
    }

    /// The init segment: the file's H.264 (and AAC) as `hls::fmp4` writes it.
    pub fn init(&self) -> Bytes {
        self.init.clone()
    }

    /// Segment `index` as one fMP4 fragment (moof + mdat, sequence number `index + 1`).
    /// Blocking: opens and reads the file. An error says the index is past the end or
    /// the file changed since it was indexed.
    pub fn segment(&self, index: usize) -> Result<Bytes> {
        let Some(cut) = self.cuts.get(index) else {
            return Err(media(format!(
                "{}: no segment {index} (it has {})",
                self.path.display(),
                self.cuts.len()
            )));
        };
        let next_video = self.cuts.get(index + 1).map(|c| c.video_start_us);
        // Audio before the first video starts in segment 0.
        let audio_from = if index == 0 {
            i64::MIN
        } else {
            cut.video_start_us
        };
        let mut demuxer = open_demuxer(&self.path)?;
        let seek_to = cut
            .video_start_us
            .min(cut.audio_start_us.unwrap_or(i64::MAX));
        let mut packets = None;
        if index > 0 && demuxer.seek_us(seek_to).is_ok() {
            packets = self.collect(&mut demuxer, cut, next_video, audio_from)?;
            if packets.is_none() {
                // The container landed after the segment's start: read from the top.
                tracing::debug!(path = %self.path.display(), index, "seek missed; reading from the start");
                demuxer = open_demuxer(&self.path)?;
            }
        }
        if packets.is_none() {
            packets = self.collect(&mut demuxer, cut, next_video, audio_from)?;
        }
        let Some((video, audio)) = packets else {
            return Err(media(format!(
                "{}: segment {index} is not where it was: the file changed since it was indexed",
                self.path.display()
            )));
        };
        Ok(self.fragment(index, cut, video, audio))
    }

    /// The video packets (Annex-B, pts, dts, IDR) and audio packets (frame, dts) of one
    /// segment, read from where `demuxer` stands; `None` unless exactly the indexed
    /// packets were found.
    #[allow(clippy::type_complexity)]
    fn collect(
        &self,
        demuxer: &mut Demuxer,
        cut: &Cut,
        next_video: Option<i64>,
        audio_from: i64,
    ) -> Result<Option<(Vec<(Bytes, i64, i64, bool)>, Vec<(Bytes, i64)>)>> {
        let mut annexb: AnnexbWriter = demuxer
            .video()
            .and_then(|v| v.annexb_writer())
            .media(|| "the file no longer has H.264 video".to_string())?;
        let end = next_video.unwrap_or(i64::MAX);
        let (mut video, mut audio) = (Vec::new(), Vec::new());
        let (mut video_done, mut audio_done) = (false, cut.audio_count == 0);
        let read_what = || format!("reading {}", self.path.display());
        while !(video_done && audio_done) {
            let Some(packet) = demuxer.read().media(read_what)? else {
                break;
            };
            let dts = packet.dts_us;
            match packet.kind {
                MediaKind::Video => {
                    if dts >= end {
                        video_done = true;
                    } else if dts >= cut.video_start_us {
                        if video.is_empty() && dts != cut.video_start_us {
                            return Ok(None);
                        }
                        let (au, idr) = annexb.convert(&packet.data).media(read_what)?;
                        video.push((au, packet.pts_us, dts, idr));
                        video_done = video.len() == cut.video_count;
                    }
                }
                MediaKind::Audio if self.audio_rate.is_some() => {
                    if dts >= end {
                        audio_done = true;
                    } else if dts >= audio_from {
                        if audio.is_empty() && Some(dts) != cut.audio_start_us {
                            return Ok(None);
                        }
                        let frame = match self.audio_framing {
                            AudioFraming::Raw => packet.data,
                            AudioFraming::Adts => {
                                let skip = adts_header(&packet.data).map_or(0, |(_, len)| len);
                                packet.data.slice(skip.min(packet.data.len())..)
                            }
                        };
                        audio.push((frame, dts));
                        audio_done = audio.len() == cut.audio_count;
                    }
                }
                MediaKind::Audio => {}
            }
        }
        let complete = video.len() == cut.video_count
            && audio.len() == cut.audio_count
            && video.first().is_some_and(|v| v.3);
        Ok(complete.then_some((video, audio)))
    }

    fn fragment(
        &self,
        index: usize,
        cut: &Cut,
        video: Vec<(Bytes, i64, i64, bool)>,
        audio: Vec<(Bytes, i64)>,
    ) -> Bytes {
        let on = |us: i64, rate: u32| ticks(us - self.origin_us, rate);
        let v = VIDEO_TIMESCALE;
        let mut video_samples = Vec::with_capacity(video.len());
        for (i, (au, pts, dts, idr)) in video.iter().enumerate() {
            let next = video.get(i + 1).map_or(cut.video_end_us, |n| n.2);
            video_samples.push(Sample {
                duration: u32::try_from(on(next, v) - on(*dts, v)).unwrap_or(0),
                cts_offset: i32::try_from(on(*pts, v) - on(*dts, v)).unwrap_or(0),
                keyframe: *idr,
                data: fmp4::annexb_to_avcc(au),
            });
        }
        let mut audio_samples = Vec::with_capacity(audio.len());
        let rate = self.audio_rate.unwrap_or(48_000);
        for (i, (frame, dts)) in audio.iter().enumerate() {
            let next = audio.get(i + 1).map_or(cut.audio_end_us, |n| n.1);
            audio_samples.push(Sample {
                duration: u32::try_from(on(next, rate) - on(*dts, rate)).unwrap_or(0),
                cts_offset: 0,
                keyframe: true,
                data: frame.clone(),
            });
        }
        let base = |dts: Option<i64>, rate| dts.map_or(0, |d| on(d, rate).max(0) as u64);
        let runs = [
            TrackRun {
                track_id: VIDEO_TRACK,
                base_dts: base(video.first().map(|v| v.2), v),
                samples: &video_samples,
            },
            TrackRun {
                track_id: AUDIO_TRACK,
                base_dts: base(audio.first().map(|a| a.1), rate),
                samples: &audio_samples,
            },
        ];
        fmp4::fragment(u32::try_from(index + 1).unwrap_or(u32::MAX), &runs)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::hls::test_media::{probe, run};

    /// A library film as the ffmpeg CLI makes one: 10 s of libx264 High with B-frames and
    /// an IDR every second (and at scene cuts), AAC-LC 44.1 kHz, MP4.
    fn film(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut args = vec![
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=44100",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "25",
            "-bf",
            "3",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
        ];
        args.extend_from_slice(extra);
        args.push(path.to_str().expect("utf-8 path"));
        let (_, errors) = run("ffmpeg", &args);
        assert_eq!(errors, "", "ffmpeg made the film");
        path
    }

    /// ffprobe's duration of `file`, seconds.
    fn duration(file: &Path) -> f64 {
        let (out, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
                file.to_str().expect("utf-8 path"),
            ],
        );
        out.trim().parse().expect("a duration")
    }

    /// Packets of stream `select` in `file`.
    fn packets(file: &Path, select: &str) -> u64 {
        let (out, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                select,
                "-count_packets",
                "-show_entries",
                "stream=nb_read_packets",
                "-of",
                "csv=p=0",
                file.to_str().expect("utf-8 path"),
            ],
        );
        // MPEG-TS lists the stream again under its program: the first line counts.
        let first = out.lines().next().unwrap_or("");
        first.trim().parse().expect("a packet count")
    }

    /// The flags of the first video packet of `file` (`K` for a keyframe).
    fn first_video_flags(file: &Path) -> String {
        let (out, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "packet=flags",
                "-of",
                "csv=p=0",
                file.to_str().expect("utf-8 path"),
            ],
        );
        out.lines().next().unwrap_or("").to_string()
    }

    fn check_replay(file: &Path) {
        let dir = file.parent().expect("a folder");
        let source = probe(file, "v");
        assert_eq!(source.errors, "");
        let vod = LibraryVod::open(file, 2.0).expect("eligible");
        let durations = vod.durations();
        assert!(durations.len() >= 4, "{durations:?}");
        let total: f64 = durations.iter().sum();
        let length = duration(file);
        assert!((total - length).abs() < 0.1, "{total} s of {length} s");
        for d in &durations[..durations.len() - 1] {
            assert!((1.9..=3.1).contains(d), "{durations:?}");
        }
        let forward: Vec<Bytes> = (0..durations.len())
            .map(|i| vod.segment(i).expect("segment"))
            .collect();
        let backward: Vec<Bytes> = (0..durations.len())
            .rev()
            .map(|i| vod.segment(i).expect("segment"))
            .collect();
        assert!(
            forward.iter().eq(backward.iter().rev()),
            "a segment's bytes do not depend on the order they are asked in"
        );
        let (mut video_frames, mut audio_frames) = (0, 0);
        let mut whole = vod.init().to_vec();
        for (i, segment) in forward.iter().enumerate() {
            let path = dir.join(format!("one-{i}.mp4"));
            std::fs::write(&path, [&vod.init()[..], &segment[..]].concat()).expect("write");
            assert!(first_video_flags(&path).starts_with('K'), "segment {i}");
            let p = probe(&path, "v");
            assert_eq!(p.errors, "", "segment {i} decodes alone");
            video_frames += p.streams[0].3;
            audio_frames += p.streams[1].3;
            whole.extend_from_slice(segment);
        }
        let (video, audio) = (&source.streams[0], &source.streams[1]);
        assert_eq!((video.0.as_str(), audio.0.as_str()), ("h264", "aac"));
        assert_eq!(video_frames, video.3, "every frame of the film, once");
        // An MP4's edit list drops the AAC encoder's priming frame when decoding the file;
        // fragments have no edit list, so the replay plays every packet the file holds.
        assert_eq!(audio_frames, packets(file, "a"), "every AAC packet, once");
        let path = dir.join("whole.mp4");
        std::fs::write(&path, &whole).expect("write");
        let p = probe(&path, "v");
        assert_eq!(p.errors, "", "the segments play on from each other");
        assert_eq!(p.streams[0].3, video.3);
        let dts: Vec<i64> = p.packets.iter().map(|p| p.1).collect();
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "decode times rise");
        let b_frames = p.packets.iter().filter(|(pts, dts)| pts != dts).count();
        assert!(b_frames > 0, "composition offsets kept");
    }

    #[test]
    fn an_h264_aac_film_replays_in_segments_that_each_decode() {
        let dir = tempfile::tempdir().expect("temp dir");
        check_replay(&film(dir.path(), "film.mp4", &["-movflags", "+faststart"]));
    }

    #[test]
    fn an_mpeg_ts_film_with_adts_audio_replays_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        check_replay(&film(dir.path(), "film.ts", &[]));
    }

    #[test]
    fn other_films_and_past_the_end_are_refused() {
        assert!(library_eligible(Some("h264"), Some("aac")));
        assert!(library_eligible(Some("H264"), None));
        assert!(!library_eligible(Some("hevc"), Some("aac")));
        assert!(!library_eligible(Some("h264"), Some("mp3")));
        assert!(!library_eligible(None, Some("aac")));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = film(dir.path(), "mp3.mkv", &["-c:a", "libmp3lame", "-t", "2"]);
        let err = LibraryVod::open(&path, 2.0).expect_err("mp3 audio");
        assert!(format!("{err:#}").contains("not AAC"), "{err:#}");
        let err = LibraryVod::open(&dir.path().join("missing.mp4"), 2.0).expect_err("missing");
        assert!(format!("{err:#}").contains("missing.mp4"), "{err:#}");
        let path = film(dir.path(), "short.mp4", &["-t", "3"]);
        let vod = LibraryVod::open(&path, 2.0).expect("short film");
        let n = vod.durations().len();
        assert!(vod.segment(n).is_err());
    }
}

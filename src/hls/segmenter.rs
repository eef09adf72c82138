//! One variant (one video rendition with the channel's AAC) cut into segments and
//! low-latency parts: fMP4 parts that concatenate to the segment, and the same segment as
//! MPEG-TS. Sans-IO: units and wall-clock stamps go in, finished parts and segments come
//! out as shared bytes; nothing here reads the clock or waits.
//!
//! Cutting: a segment starts on a video keyframe at least `segment` after the previous
//! one started; a part closes before the video sample that would take it past `part`.
//! A sample's duration is the distance to the next one on its track, so each track keeps
//! its newest unit pending until the next arrives.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::fmp4::{self, AudioConfig, Sample, TrackRun, VideoConfig};
use super::ts::TsMuxer;
use crate::media::AccessUnit;

/// Completed segments kept for players that fetch a little late (the playlist lists
/// fewer, see [`LISTED`]).
const KEPT: usize = 10;
/// Completed segments a playlist lists.
pub const LISTED: usize = 6;
/// Completed segments whose parts a playlist still lists (and whose parts are kept).
pub const WITH_PARTS: usize = 3;

/// One low-latency part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its number, counted across segments: the preload hint names the next part by it
    /// before anyone knows whether a keyframe will start a segment there.
    pub id: u64,
    /// Seconds.
    pub duration: f64,
    /// Whether it starts with a keyframe.
    pub independent: bool,
    /// moof + mdat.
    pub bytes: Bytes,
}

/// One complete segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Seconds.
    pub duration: f64,
    /// Its parts (emptied once it is too old for a playlist to list them).
    pub parts: Vec<Part>,
    /// The fMP4 segment: its parts' bytes, concatenated.
    pub fmp4: Bytes,
    /// The same media as MPEG-TS.
    pub ts: Bytes,
    /// A discontinuity (a returned publisher, a new init segment) comes before it.
    pub discontinuity: bool,
    /// The init segment generation its fMP4 needs.
    pub init: u32,
    /// Unix ms of its first frame (for `EXT-X-PROGRAM-DATE-TIME`).
    pub started_ms: i64,
}

/// The segment being cut.
#[derive(Debug)]
struct Open {
    msn: u64,
    parts: Vec<Part>,
    ts: BytesMut,
    discontinuity: bool,
    init: u32,
    started_ms: i64,
    /// Video decode time (90 kHz) where it started.
    start_dts: i64,
}

/// What the variant is made of, known from the first keyframe on.
#[derive(Debug, Clone)]
pub struct Format {
    /// H.264 parameters (none for an audio-only channel).
    pub video: Option<VideoConfig>,
    /// AAC parameters (none for a channel without audio).
    pub audio: Option<AudioConfig>,
    /// `CODECS` for the multivariant playlist.
    pub codecs: String,
}

/// A channel's audio as the variant gets it.
pub type AudioTrack = Option<AudioConfig>;

/// Targets, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// Segment length.
    pub segment: f64,
    /// Part length.
    pub part: f64,
}

/// One variant's segments.
pub struct Variant {
    targets: Targets,
    /// Whether the channel has video at all (else parts and segments cut on audio).
    has_video: bool,
    audio: AudioTrack,
    format: Option<Format>,
    /// Init segments by generation (the newest last; older ones stay while listed).
    inits: Vec<(u32, Bytes)>,
    generation: u32,
    segments: VecDeque<Segment>,
    open: Option<Open>,
    next_msn: u64,
    /// The next segment follows a discontinuity.
    discontinuity: bool,
    /// Newest unit per track, waiting for the next to know its duration.
    pending_video: Option<AccessUnit>,
    pending_audio: Option<AccessUnit>,
    /// Samples of the part being collected, with the decode time of each run's first.
    part_video: Vec<Sample>,
    part_video_base: Option<i64>,
    part_audio: Vec<Sample>,
    part_audio_base: Option<i64>,
    /// Decode time (90 kHz) where the part started.
    part_start: i64,
    /// Last video (90 kHz) and audio (own clock) durations, for a sample with no successor.
    last_video_duration: i64,
    last_audio_duration: i64,
    fragment_seq: u32,
    /// The next part's number.
    next_part: u64,
    ts: TsMuxer,
    /// The audio clock rate (for TS timestamps and audio-only cuts).
    audio_rate: u32,
    /// Largest segment duration so far (the playlist's target duration never shrinks).
    longest: f64,
    ended: bool,
    /// Bytes of media in the kept segments, for the multivariant `BANDWIDTH`.
    peak_bps: u64,
    /// Discontinuities of segments no longer kept (`EXT-X-DISCONTINUITY-SEQUENCE`).
    dropped_discontinuities: u64,
}

impl Variant {
    /// A variant whose first segment gets sequence number `first_msn`.
    pub fn new(targets: Targets, has_video: bool, audio: AudioTrack, first_msn: u64) -> Variant {
        let audio_rate = audio.as_ref().map_or(48_000, |a| a.sample_rate);
        Variant {
            targets,
            has_video,
            ts: TsMuxer::new(has_video, audio.as_ref().map(|a| a.config.clone())),
            audio,
            format: None,
            inits: Vec::new(),
            generation: 0,
            segments: VecDeque::new(),
            open: None,
            next_msn: first_msn,
            discontinuity: false,
            pending_video: None,
            pending_audio: None,
            part_video: Vec::new(),
            part_video_base: None,
            part_audio: Vec::new(),
            part_audio_base: None,
            part_start: 0,
            last_video_duration: 3000,
            last_audio_duration: 1024,
            fragment_seq: 0,
            next_part: 0,
            audio_rate,
            longest: 0.0,
            ended: false,
            peak_bps: 0,
            dropped_discontinuities: 0,
        }
    }

    /// What the variant carries, once it has started.
    pub fn format(&self) -> Option<&Format> {
        self.format.as_ref()
    }

    /// Whether it started (has an init segment).
    pub fn started(&self) -> bool {
        self.format.is_some()
    }

    /// The newest init segment generation and bytes.
    pub fn init(&self, generation: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, b)| b.clone())
    }

    /// Completed segments, oldest first.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// The segment being cut: its sequence number, init generation, discontinuity flag and
    /// parts so far.
    pub fn open(&self) -> Option<(u64, u32, bool, &[Part])> {
        self.open
            .as_ref()
            .map(|o| (o.msn, o.init, o.discontinuity, o.parts.as_slice()))
    }

    /// The number the next part will get.
    pub fn next_part(&self) -> u64 {
        self.next_part
    }

    /// The part numbered `id`, if it is kept.
    pub fn part(&self, id: u64) -> Option<&Part> {
        let in_open = self
            .open
            .as_ref()
            .and_then(|o| o.parts.iter().find(|p| p.id == id));
        in_open.or_else(|| {
            self.segments
                .iter()
                .rev()
                .flat_map(|s| s.parts.iter())
                .find(|p| p.id == id)
        })
    }

    /// The sequence number the next segment (after the open one) will get.
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// Whether the session ended (the playlist gets `EXT-X-ENDLIST`).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Longest segment so far, seconds.
    pub fn longest(&self) -> f64 {
        self.longest
    }

    /// Discontinuities before the kept segments.
    pub fn dropped_discontinuities(&self) -> u64 {
        self.dropped_discontinuities
    }

    /// Highest bit rate of a kept segment.
    pub fn peak_bps(&self) -> u64 {
        self.peak_bps
    }

    /// Takes one video unit (already on the variant's timeline: 90 kHz, non-negative).
    /// `at_ms` is the wall clock now. Returns whether a part or segment was finished.
    pub fn push_video(&mut self, unit: AccessUnit, at_ms: i64) -> bool {
        if self.ended || !self.has_video {
            return false;
        }
        if self.format.is_none() || self.open.is_none() {
            if !unit.keyframe || !self.start(Some(&unit)) {
                return false;
            }
            self.open_segment(unit.dts, at_ms);
            self.write_ts_video(&unit);
            self.pending_video = Some(unit);
            return false;
        }
        let mut changed = false;
        if let Some(prev) = self.pending_video.take() {
            let mut duration = unit.dts - prev.dts;
            if duration <= 0 || duration > 10 * 90_000 {
                duration = self.last_video_duration;
            }
            self.last_video_duration = duration;
            self.add_video_sample(prev, duration);
        }
        let open_start = self.open.as_ref().map_or(unit.dts, |o| o.start_dts);
        let segment_len = (unit.dts - open_start) as f64 / 90_000.0;
        if unit.keyframe && segment_len + 0.001 >= self.targets.segment {
            changed |= self.close_part();
            changed |= self.close_segment();
            self.open_segment(unit.dts, at_ms);
        } else {
            let part_len =
                (unit.dts + self.last_video_duration - self.part_start) as f64 / 90_000.0;
            if part_len > self.targets.part + 0.001 && !self.part_video.is_empty() {
                changed |= self.close_part();
            }
        }
        self.write_ts_video(&unit);
        self.pending_video = Some(unit);
        changed
    }

    /// Takes one AAC unit (on the variant's timeline, its own clock). Returns whether a part
    /// or segment was finished (only for a channel without video, which cuts on audio).
    pub fn push_audio(&mut self, unit: AccessUnit, at_ms: i64) -> bool {
        if self.ended || self.audio.is_none() {
            return false;
        }
        if !self.has_video && (self.format.is_none() || self.open.is_none()) {
            if !self.start(None) {
                return false;
            }
            self.open_segment(self.audio_to_90k(unit.dts), at_ms);
        }
        if self.open.is_none() {
            return false; // audio before the first keyframe
        }
        let mut changed = false;
        if let Some(prev) = self.pending_audio.take() {
            let mut duration = unit.dts - prev.dts;
            if duration <= 0 || duration > i64::from(self.audio_rate) * 10 {
                duration = self.last_audio_duration;
            }
            self.last_audio_duration = duration;
            self.add_audio_sample(prev, duration);
        }
        if !self.has_video {
            let now = self.audio_to_90k(unit.dts);
            let open_start = self.open.as_ref().map_or(now, |o| o.start_dts);
            let part_len = (now - self.part_start) as f64 / 90_000.0;
            if (now - open_start) as f64 / 90_000.0 + 0.001 >= self.targets.segment {
                changed |= self.close_part();
                changed |= self.close_segment();
                self.open_segment(now, at_ms);
            } else if part_len + 0.001 >= self.targets.part {
                changed |= self.close_part();
            }
        }
        let pts = self.audio_to_90k(unit.pts);
        if let Some(open) = self.open.as_mut() {
            self.ts.write_audio(&mut open.ts, pts, &unit.data);
        }
        self.pending_audio = Some(unit);
        changed
    }

    /// The publisher is gone for now: what was collected becomes the last segment, and
    /// the next one (if the publisher returns) follows a discontinuity with a new init
    /// segment. Returns whether a segment was finished.
    pub fn interrupt(&mut self) -> bool {
        let changed = self.flush();
        self.format = None;
        self.discontinuity = true;
        changed
    }

    /// The session ended: the last segment is finished and the playlist ends.
    pub fn end(&mut self) -> bool {
        let changed = self.flush();
        self.ended = true;
        changed
    }

    fn flush(&mut self) -> bool {
        if let Some(prev) = self.pending_video.take() {
            let duration = self.last_video_duration;
            self.add_video_sample(prev, duration);
        }
        if let Some(prev) = self.pending_audio.take() {
            let duration = self.last_audio_duration;
            self.add_audio_sample(prev, duration);
        }
        let mut changed = self.close_part();
        changed |= self.close_segment();
        changed
    }

    /// Builds the init segment from the first keyframe's parameter sets.
    fn start(&mut self, keyframe: Option<&AccessUnit>) -> bool {
        let video = match keyframe {
            Some(unit) => {
                let Some((sps, pps)) = fmp4::parameter_sets(&unit.data) else {
                    return false; // an IDR without its SPS/PPS: wait for the next
                };
                let Some(info) = crate::media::sps::read_sps(&sps) else {
                    return false;
                };
                Some(VideoConfig {
                    width: info.width as u16,
                    height: info.height as u16,
                    sps,
                    pps,
                })
            }
            None => None,
        };
        let mut codecs = Vec::new();
        if let Some(v) = &video {
            codecs.push(fmp4::avc1_codec(&v.sps));
        }
        if let Some(a) = &self.audio {
            codecs.push(fmp4::aac_codec(&a.config));
        }
        let init = fmp4::init_segment(video.as_ref(), self.audio.as_ref());
        if self.generation > 0 || !self.inits.is_empty() {
            self.generation += 1;
        }
        self.inits.push((self.generation, init));
        if self.inits.len() > 3 {
            self.inits.remove(0);
        }
        self.format = Some(Format {
            video,
            audio: self.audio.clone(),
            codecs: codecs.join(","),
        });
        true
    }

    fn open_segment(&mut self, start_dts: i64, at_ms: i64) {
        let mut ts = BytesMut::new();
        self.ts.begin_segment(&mut ts);
        self.open = Some(Open {
            msn: self.next_msn,
            parts: Vec::new(),
            ts,
            discontinuity: std::mem::take(&mut self.discontinuity),
            init: self.generation,
            started_ms: at_ms,
            start_dts,
        });
        self.next_msn += 1;
        self.part_start = start_dts;
    }

    fn add_video_sample(&mut self, unit: AccessUnit, duration: i64) {
        self.part_video_base.get_or_insert(unit.dts);
        self.part_video.push(Sample {
            duration: duration as u32,
            cts_offset: (unit.pts - unit.dts) as i32,
            keyframe: unit.keyframe,
            data: fmp4::annexb_to_avcc(&unit.data),
        });
    }

    fn add_audio_sample(&mut self, unit: AccessUnit, duration: i64) {
        self.part_audio_base.get_or_insert(unit.dts);
        self.part_audio.push(Sample {
            duration: duration as u32,
            cts_offset: 0,
            keyframe: true,
            data: unit.data,
        });
    }

    fn write_ts_video(&mut self, unit: &AccessUnit) {
        if let Some(open) = self.open.as_mut() {
            self.ts
                .write_video(&mut open.ts, unit.pts, unit.dts, unit.keyframe, &unit.data);
        }
    }

    fn audio_to_90k(&self, t: i64) -> i64 {
        t * 90_000 / i64::from(self.audio_rate.max(1))
    }

    /// Turns the collected samples into a part of the open segment.
    fn close_part(&mut self) -> bool {
        let Some(open) = self.open.as_mut() else {
            return false;
        };
        if self.part_video.is_empty() && self.part_audio.is_empty() {
            return false;
        }
        let video_time: i64 = self.part_video.iter().map(|s| i64::from(s.duration)).sum();
        let audio_time: i64 = self.part_audio.iter().map(|s| i64::from(s.duration)).sum();
        let duration = if self.has_video {
            video_time as f64 / 90_000.0
        } else {
            audio_time as f64 / f64::from(self.audio_rate.max(1))
        };
        let independent = if self.has_video {
            self.part_video.first().is_some_and(|s| s.keyframe)
        } else {
            true
        };
        let mut runs = Vec::with_capacity(2);
        if let Some(base) = self.part_video_base.take() {
            runs.push(TrackRun {
                track_id: fmp4::VIDEO_TRACK,
                base_dts: base.max(0) as u64,
                samples: &self.part_video,
            });
        }
        if let Some(base) = self.part_audio_base.take() {
            runs.push(TrackRun {
                track_id: fmp4::AUDIO_TRACK,
                base_dts: base.max(0) as u64,
                samples: &self.part_audio,
            });
        }
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        let bytes = fmp4::fragment(self.fragment_seq, &runs);
        let id = self.next_part;
        self.next_part += 1;
        open.parts.push(Part {
            id,
            duration,
            independent,
            bytes,
        });
        self.part_start += if self.has_video {
            video_time
        } else {
            audio_time * 90_000 / i64::from(self.audio_rate.max(1))
        };
        self.part_video.clear();
        self.part_audio.clear();
        true
    }

    /// Finishes the open segment (parts already closed).
    fn close_segment(&mut self) -> bool {
        let Some(open) = self.open.take() else {
            return false;
        };
        if open.parts.is_empty() {
            // Nothing was cut into it: its number is reused.
            self.next_msn = open.msn;
            if open.discontinuity {
                self.discontinuity = true;
            }
            return false;
        }
        let duration: f64 = open.parts.iter().map(|p| p.duration).sum();
        let size: usize = open.parts.iter().map(|p| p.bytes.len()).sum();
        let mut fmp4 = BytesMut::with_capacity(size);
        for part in &open.parts {
            fmp4.extend_from_slice(&part.bytes);
        }
        if duration > 0.0 {
            self.peak_bps = self.peak_bps.max((size as f64 * 8.0 / duration) as u64);
        }
        self.longest = self.longest.max(duration);
        self.segments.push_back(Segment {
            msn: open.msn,
            duration,
            parts: open.parts,
            fmp4: fmp4.freeze(),
            ts: open.ts.freeze(),
            discontinuity: open.discontinuity,
            init: open.init,
            started_ms: open.started_ms,
        });
        while self.segments.len() > KEPT {
            if self.segments.pop_front().is_some_and(|s| s.discontinuity) {
                self.dropped_discontinuities += 1;
            }
        }
        let with_parts = self.segments.len().saturating_sub(WITH_PARTS + 1);
        for old in self.segments.iter_mut().take(with_parts) {
            old.parts = Vec::new();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_media::media;
    use super::*;
    use crate::media::{Codec, Track};

    /// The test clip (4 s, 1 s GOP, B-frames) through a variant: 2 s segments of 0.5 s parts.
    fn cut(interrupt_at: Option<usize>) -> Variant {
        let media = media();
        let audio = AudioConfig::from_audio_specific_config(media.audio_config.clone()).unwrap();
        let targets = Targets {
            segment: 2.0,
            part: 0.5,
        };
        let mut variant = Variant::new(targets, true, Some(audio), 0);
        let shift = 90_000;
        let mut units: Vec<(i64, AccessUnit)> = media
            .video
            .iter()
            .map(|u| {
                (
                    u.dts,
                    AccessUnit {
                        track: Track::Video { rendition: 0 },
                        codec: Codec::H264,
                        pts: u.pts + shift,
                        dts: u.dts + shift,
                        timescale: 90_000,
                        keyframe: u.keyframe,
                        data: u.data.clone(),
                    },
                )
            })
            .collect();
        units.extend(media.audio.iter().map(|u| {
            (
                u.dts,
                AccessUnit {
                    track: Track::OriginalAac {
                        config: media.audio_config.clone(),
                    },
                    codec: Codec::Aac,
                    pts: (u.pts + shift) * 8 / 15,
                    dts: (u.dts + shift) * 8 / 15,
                    timescale: 48_000,
                    keyframe: true,
                    data: u.data.clone(),
                },
            )
        }));
        units.sort_by_key(|(dts, _)| *dts);
        for (i, (_, unit)) in units.into_iter().enumerate() {
            if Some(i) == interrupt_at {
                variant.interrupt();
            }
            if unit.codec == Codec::H264 {
                variant.push_video(unit, 1_000);
            } else {
                variant.push_audio(unit, 1_000);
            }
        }
        variant.end();
        variant
    }

    #[test]
    fn segments_start_on_keyframes_and_their_parts_are_their_bytes() {
        let variant = cut(None);
        let segments = variant.segments();
        assert_eq!(segments.len(), 2, "4 s in 2 s segments");
        for seg in segments {
            assert!((seg.duration - 2.0).abs() < 0.05, "{}", seg.duration);
            assert!(seg.parts.len() >= 4, "{} parts", seg.parts.len());
            assert!(seg.parts[0].independent, "a segment starts on a keyframe");
            for part in &seg.parts {
                assert!(part.duration <= 0.5 + 1e-6, "part of {} s", part.duration);
            }
            let joined: Vec<u8> = seg.parts.iter().flat_map(|p| p.bytes.to_vec()).collect();
            assert_eq!(joined, seg.fmp4.to_vec());
            assert_eq!(seg.ts[0], 0x47, "TS starts with a sync byte");
            assert_eq!(seg.ts.len() % 188, 0);
        }
        assert!(variant.ended());
        let text = super::super::playlist::media(
            super::super::playlist::Form::Fmp4,
            &variant,
            "/hls/c/1/0/",
            Targets {
                segment: 2.0,
                part: 0.5,
            },
        );
        assert!(
            text.contains("#EXT-X-MAP:URI=\"/hls/c/1/0/init-0.mp4\""),
            "{text}"
        );
        assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
        assert!(
            !text.contains("PRELOAD-HINT"),
            "an ended playlist hints nothing"
        );

        // The segments and init decode as one file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.mp4");
        let mut file = variant.init(0).unwrap().to_vec();
        for seg in segments {
            file.extend_from_slice(&seg.fmp4);
        }
        std::fs::write(&path, file).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }

    #[test]
    fn an_interruption_is_a_discontinuity_with_a_new_init() {
        let total = media().video.len() + media().audio.len();
        let variant = cut(Some(total / 2));
        let segments = variant.segments();
        let after = segments
            .iter()
            .position(|s| s.discontinuity)
            .expect("a segment after the interruption");
        assert!(after > 0);
        assert_eq!(segments[after].init, 1, "a new init segment generation");
        assert!(variant.init(0).is_some() && variant.init(1).is_some());
        let text = super::super::playlist::media(
            super::super::playlist::Form::Ts,
            &variant,
            "/b/",
            Targets {
                segment: 2.0,
                part: 0.5,
            },
        );
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        assert!(!text.contains("EXT-X-PART"), "TS playlists have no parts");
    }
}

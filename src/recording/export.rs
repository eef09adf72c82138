//! A recording as one MP4 file: remuxed with FFmpeg (no re-encoding), `moov` first.
//!
//! The input is a recording's local VOD playlist (its fMP4 init segments and segments,
//! read by FFmpeg's HLS demuxer) or a library film. The MP4 is written beside `out` as
//! `out.tmp` and renamed when complete, so a reader never sees half a file and a failed
//! export leaves nothing behind.

use std::path::{Path, PathBuf};

use super::{Because as _, Result, media};

use crate::transcode::remux::remux_to_mp4;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ExportReport {
    /// Video frames written.
    pub video_frames: u64,
    /// Audio frames written.
    pub audio_frames: u64,
    /// Duration of the longest stream, ms.
    pub duration_ms: i64,
    /// Size of the MP4, bytes.
    pub bytes: u64,
}

/// What libavformat may open while reading the input: local files only, so a playlist
/// cannot make the server fetch URLs or read through other protocols.
const INPUT_OPTIONS: &[(&str, &str)] = &[("protocol_whitelist", "file")];

/// Remuxes `input` (a local VOD playlist written by `RecordingFiles::write_local_playlist`,
/// or any media file FFmpeg reads, e.g. a library film) into the MP4 `out`.
///
/// Blocking (disk-bound, no codec work): callers run it on a blocking thread. Errors say
/// which file could not be read or written and why; nothing panics on bad input.
pub fn export_mp4(input: &Path, out: &Path) -> Result<ExportReport> {
    match std::fs::metadata(input) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(media(format!("cannot export {}: not a file", input.display()))),
        Err(e) => return Err(media(format!("cannot export {}: {e}", input.display()))),
    }
    let tmp = tmp_path(out);
    let remuxed = remux_to_mp4(input, INPUT_OPTIONS, &tmp);
    let report = match remuxed {
        Ok(report) => report,
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(media(format!("cannot export {} as MP4: {err}", input.display())));
        }
    };
    let bytes = std::fs::metadata(&tmp)
        .media(|| format!("reading the size of {}", tmp.display()))?
        .len();
    std::fs::rename(&tmp, out)
        .media(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    let frames =
        |s: &Option<crate::transcode::remux::RemuxedStream>| s.as_ref().map_or(0, |s| s.packets);
    let duration_us = [&report.video, &report.audio]
        .into_iter()
        .flatten()
        .map(|s| s.duration_us)
        .max()
        .unwrap_or(0);
    Ok(ExportReport {
        video_frames: frames(&report.video),
        audio_frames: frames(&report.audio),
        duration_ms: duration_us / 1000,
        bytes,
    })
}

/// `out` with `.tmp` added to its file name.
fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::hls::fmp4::AudioConfig;
    use crate::hls::segmenter::{Targets, Variant};
    use crate::hls::test_media::{media, probe};
    use crate::media::{AccessUnit, Codec, Track};

    /// Pushes the test clip (4 s, B-frames) into `variant`, its clock starting at `shift`
    /// (90 kHz).
    fn push_clip(variant: &mut Variant, shift: i64) {
        let media = media();
        let mut units: Vec<(i64, AccessUnit)> = media
            .video
            .iter()
            .map(|u| {
                let unit = AccessUnit {
                    track: Track::Video { rendition: 0 },
                    codec: Codec::H264,
                    pts: u.pts + shift,
                    dts: u.dts + shift,
                    timescale: 90_000,
                    keyframe: u.keyframe,
                    data: u.data.clone(),
                };
                (u.dts, unit)
            })
            .collect();
        units.extend(media.audio.iter().map(|u| {
            let unit = AccessUnit {
                track: Track::OriginalAac {
                    config: media.audio_config.clone(),
                },
                codec: Codec::Aac,
                pts: (u.pts + shift) * 8 / 15,
                dts: (u.dts + shift) * 8 / 15,
                timescale: 48_000,
                keyframe: true,
                data: u.data.clone(),
            };
            (u.dts, unit)
        }));
        units.sort_by_key(|(dts, _)| *dts);
        for (_, unit) in units {
            if unit.codec == Codec::H264 {
                variant.push_video(unit, 1_000);
            } else {
                variant.push_audio(unit, 1_000);
            }
        }
    }

    /// A recording as the store lays it out: the clip, a publisher gone and back (a
    /// discontinuity, a new init segment, its clock starting again), the clip again; 2 s
    /// segments, their files, the journal and the local VOD playlist. Returns the
    /// playlist's path.
    fn write_recording(dir: &Path) -> std::path::PathBuf {
        let audio = AudioConfig::from_audio_specific_config(media().audio_config.clone())
            .expect("AudioSpecificConfig");
        let targets = Targets {
            segment: 2.0,
            part: 0.5,
        };
        let mut variant = Variant::new(targets, true, Some(audio), 0);
        push_clip(&mut variant, 90_000);
        variant.interrupt();
        push_clip(&mut variant, 45_000);
        variant.end();
        let mut playlist = String::from(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:3\n\
             #EXT-X-MEDIA-SEQUENCE:0\n",
        );
        let mut journal = String::new();
        let mut generation = None;
        for seg in variant.segments() {
            if generation != Some(seg.init) {
                let init = variant.init(seg.init).expect("init segment kept");
                std::fs::write(dir.join(format!("init-{}.mp4", seg.init)), &init).expect("write");
                if generation.is_some() || seg.discontinuity {
                    playlist += "#EXT-X-DISCONTINUITY\n";
                }
                playlist += &format!("#EXT-X-MAP:URI=\"init-{}.mp4\"\n", seg.init);
                generation = Some(seg.init);
            }
            std::fs::write(dir.join(format!("seg-{}.m4s", seg.msn)), &seg.fmp4).expect("write");
            playlist += &format!("#EXTINF:{:.5},\nseg-{}.m4s\n", seg.duration, seg.msn);
            journal += &format!(
                "seg\t{}\t{:.5}\t{}\t{}\t{}\t{}\n",
                seg.msn,
                seg.duration,
                seg.init,
                u8::from(seg.discontinuity),
                seg.fmp4.len(),
                seg.started_ms
            );
        }
        playlist += "#EXT-X-ENDLIST\n";
        assert_eq!(generation, Some(1), "two init generations");
        std::fs::write(dir.join("journal.tsv"), journal).expect("write");
        let path = dir.join("vod.m3u8");
        std::fs::write(&path, playlist).expect("write");
        path
    }

    #[test]
    fn a_recording_with_a_discontinuity_exports_every_frame() {
        let dir = tempfile::tempdir().expect("temp dir");
        let playlist = write_recording(dir.path());
        let out = dir.path().join("lecture.mp4");
        let report = export_mp4(&playlist, &out).expect("export");
        let media = media();
        let clip_video = media.video.len() as u64;
        let clip_audio = media.audio.len() as u64;
        assert_eq!(report.video_frames, 2 * clip_video);
        assert_eq!(report.audio_frames, 2 * clip_audio);
        assert!(
            (report.duration_ms - 8_000).abs() < 200,
            "{} ms",
            report.duration_ms
        );
        assert_eq!(report.bytes, std::fs::metadata(&out).expect("out").len());
        assert!(!dir.path().join("lecture.mp4.tmp").exists());
        let probe = probe(&out, "v");
        assert_eq!(
            probe.errors, "",
            "ffprobe and ffmpeg read it without complaint"
        );
        assert_eq!(
            probe.streams,
            vec![
                ("h264".to_string(), 320, 240, 2 * clip_video),
                ("aac".to_string(), 0, 0, 2 * clip_audio),
            ]
        );
        let dts: Vec<i64> = probe.packets.iter().map(|p| p.1).collect();
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "decode times rise across the discontinuity"
        );
        let file = std::fs::read(&out).expect("read");
        let moov = file.windows(4).position(|w| w == b"moov").expect("moov");
        let mdat = file.windows(4).position(|w| w == b"mdat").expect("mdat");
        assert!(moov < mdat, "faststart: the index comes first");
    }

    #[test]
    fn missing_and_damaged_inputs_are_clear_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.mp4");
        let missing = export_mp4(&dir.path().join("nope.m3u8"), &out).expect_err("missing");
        let text = format!("{missing:#}");
        assert!(text.contains("nope.m3u8"), "{text}");
        let garbage = dir.path().join("garbage.mp4");
        std::fs::write(&garbage, vec![0x5a; 4096]).expect("write");
        let text = format!("{:#}", export_mp4(&garbage, &out).expect_err("garbage"));
        assert!(text.contains("garbage.mp4"), "{text}");
        // A playlist whose segments are gone or truncated.
        let recording = dir.path().join("rec");
        std::fs::create_dir(&recording).expect("mkdir");
        let playlist = write_recording(&recording);
        std::fs::remove_file(recording.join("init-0.mp4")).expect("rm");
        std::fs::remove_file(recording.join("init-1.mp4")).expect("rm");
        let text = format!("{:#}", export_mp4(&playlist, &out).expect_err("no init"));
        assert!(text.contains("vod.m3u8"), "{text}");
        // A playlist that names a file outside the local file protocol.
        let remote = dir.path().join("remote.m3u8");
        std::fs::write(
            &remote,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n\
             http://127.0.0.1:9/seg-0.m4s\n#EXT-X-ENDLIST\n",
        )
        .expect("write");
        assert!(export_mp4(&remote, &out).is_err(), "http is not followed");
        assert!(!out.exists() && !dir.path().join("out.mp4.tmp").exists());
    }
}

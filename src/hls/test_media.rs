//! Real media for the muxers' tests: 4 s of libx264 (High, B-frames, a keyframe a second)
//! and AAC-LC 48 kHz stereo made by the ffmpeg CLI into MPEG-TS, demuxed into access units
//! the way the hub carries them; and a check that a muxed file decodes as that clip.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::media::MediaKind;
use crate::transcode::demux::Demuxer;
use crate::transcode::h264::AnnexbWriter;

/// One access unit, timestamps on 90 kHz.
pub struct Unit {
    pub pts: i64,
    pub dts: i64,
    pub keyframe: bool,
    /// Video: Annex-B with SPS/PPS before IDRs and no AUD; audio: the raw AAC frame.
    pub data: Bytes,
}

pub struct Media {
    pub video: Vec<Unit>,
    pub audio: Vec<Unit>,
    /// The AudioSpecificConfig rebuilt from the first ADTS header.
    pub audio_config: Bytes,
    /// The encoder's first ADTS header, as the ffmpeg CLI wrote it.
    pub first_adts_header: [u8; 7],
}

fn ticks_90k(us: i64) -> i64 {
    (us as f64 * 0.09).round() as i64
}

/// The media, made once per test binary.
pub fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(make)
}

fn make() -> Media {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("in.ts");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "4", "-c:v", "libx264", "-g", "30", "-bf", "2"])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-f", "mpegts",
        ])
        .arg(&path)
        .status()
        .expect("the ffmpeg CLI runs");
    assert!(status.success(), "ffmpeg made the test input");
    let mut demuxer = Demuxer::open(path.to_str().expect("utf-8 path"), &[]).expect("open");
    // Drops the AUDs the TS muxer put in, so the TS muxer under test must add its own.
    let mut annexb = AnnexbWriter::for_annexb();
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let mut first_adts_header = None;
    while let Some(p) = demuxer.read().expect("demux") {
        match p.kind {
            MediaKind::Video => {
                let (data, idr) = annexb.convert(&p.data).expect("annex-b");
                video.push(Unit {
                    pts: ticks_90k(p.pts_us),
                    dts: ticks_90k(p.dts_us),
                    keyframe: idr,
                    data,
                });
            }
            MediaKind::Audio => {
                assert_eq!(&p.data[..2], &[0xff, 0xf1], "ADTS without CRC");
                first_adts_header
                    .get_or_insert_with(|| <[u8; 7]>::try_from(&p.data[..7]).expect("7 bytes"));
                audio.push(Unit {
                    pts: ticks_90k(p.pts_us),
                    dts: ticks_90k(p.dts_us),
                    keyframe: true,
                    data: p.data.slice(7..),
                });
            }
        }
    }
    let h = first_adts_header.expect("audio");
    let object_type = (h[2] >> 6) + 1;
    let frequency_index = (h[2] >> 2) & 0x0f;
    let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
    let asc = (u16::from(object_type) << 11)
        | (u16::from(frequency_index) << 7)
        | (u16::from(channels) << 3);
    Media {
        video,
        audio,
        audio_config: Bytes::copy_from_slice(&asc.to_be_bytes()),
        first_adts_header: h,
    }
}

/// Runs a command, returning its stdout and stderr.
pub fn run(program: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The numbers of ffprobe's `csv=p=0` rows, skipping the empty rows and fields that
/// packets with side data add.
pub fn csv_rows(csv: &str) -> Vec<Vec<i64>> {
    csv.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .filter(|f| !f.is_empty() && *f != "side_data")
                .map(|f| f.parse().expect("a number"))
                .collect()
        })
        .collect()
}

/// What ffprobe finds in `file` and what decoding all of it with the ffmpeg CLI says.
pub struct Probe {
    /// (codec_name, width, height, decoded frames) per stream, in file order.
    pub streams: Vec<(String, u64, u64, u64)>,
    /// (pts, dts) of each packet of stream `select`, in the stream's time base.
    pub packets: Vec<(i64, i64)>,
    /// ffprobe's and ffmpeg's error output.
    pub errors: String,
}

/// Writes `bytes` to a file `name` and checks that ffprobe and ffmpeg read it without
/// complaint as the whole test clip: every video and audio frame, and the video's
/// pts/dts as muxed (so composition offsets are right). The probe is returned.
pub fn assert_whole_clip(bytes: &[u8], name: &str) -> Probe {
    let media = media();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    let probe = probe(&path, "v");
    assert_eq!(
        probe.errors, "",
        "{name}: ffprobe and ffmpeg read it without complaint"
    );
    assert_eq!(
        probe.streams,
        vec![
            ("h264".to_string(), 320, 240, media.video.len() as u64),
            ("aac".to_string(), 0, 0, media.audio.len() as u64),
        ]
    );
    let muxed: Vec<(i64, i64)> = media.video.iter().map(|u| (u.pts, u.dts)).collect();
    assert_eq!(probe.packets, muxed, "{name}: video pts/dts as muxed");
    probe
}

pub fn probe(file: &Path, select: &str) -> Probe {
    let file = file.to_str().expect("utf-8 path");
    let (json, mut errors) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames,width,height",
            "-of",
            "json",
            file,
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&json).expect("ffprobe json");
    let streams = json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            let frames = s["nb_read_frames"]
                .as_str()
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            let codec = s["codec_name"].as_str().unwrap_or("").to_string();
            (codec, n("width"), n("height"), frames)
        })
        .collect();
    let (csv, e) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            select,
            "-show_entries",
            "packet=pts,dts",
            "-of",
            "csv=p=0",
            file,
        ],
    );
    errors += &e;
    let packets = csv_rows(&csv)
        .into_iter()
        .map(|row| (row[0], row[1]))
        .collect();
    let (_, e) = run("ffmpeg", &["-v", "error", "-i", file, "-f", "null", "-"]);
    errors += &e;
    Probe {
        streams,
        packets,
        errors,
    }
}

/// Splits the media at the first keyframe at least `seconds` after the previous cut:
/// the index ranges of video units and audio units (by time) in each segment.
pub fn segments(
    media: &Media,
    seconds: i64,
) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let mut cuts = vec![0];
    for (i, unit) in media.video.iter().enumerate() {
        let start = media.video[*cuts.last().expect("a cut")].dts;
        if unit.keyframe && unit.dts - start >= seconds * 90_000 {
            cuts.push(i);
        }
    }
    let mut out = Vec::new();
    let mut audio_from = 0;
    for (n, &from) in cuts.iter().enumerate() {
        let to = cuts.get(n + 1).copied().unwrap_or(media.video.len());
        let audio_to = match media.video.get(to) {
            Some(next) => media.audio.partition_point(|a| a.dts < next.dts),
            None => media.audio.len(),
        };
        out.push((from..to, audio_from..audio_to));
        audio_from = audio_to;
    }
    out
}

//! The relay's access-unit subscriptions, proved by a consumer that is not WebRTC: the
//! units of a WHIP channel (H.264 + Opus) and of an RTMP channel (H.264 passed through +
//! its original AAC) are remuxed into MP4 files with `transcode::mux::FileMuxer`, which
//! the ffmpeg CLI decodes with the publisher's frame count, without errors and with
//! strictly increasing decode times per stream.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{start_server, wait_until};
use feiyan::client::media::{group_access_units, nal_type, split_annexb};
use feiyan::client::{PublisherOptions, SyntheticMedia, WhipPublisher, make_test_media};
use feiyan::ids::ChannelName;
use feiyan::media::{AccessUnit, Codec, Track};
use feiyan::relay::{ChannelMedia, RelayHandle};
use feiyan::transcode::mux::{FileMuxer, TrackSpec, Written};
use tokio::sync::broadcast::error::RecvError;

/// What a subscription delivered, collected by a background task.
#[derive(Default)]
struct Collected {
    live: usize,
    ended: usize,
    units: Vec<AccessUnit>,
    lagged: u64,
}

impl Collected {
    fn of(&self, track: &Track) -> Vec<&AccessUnit> {
        self.units.iter().filter(|u| &u.track == track).collect()
    }
    fn video(&self) -> Vec<&AccessUnit> {
        self.of(&Track::Video { rendition: 0 })
    }
}

/// Subscribes to `channel` (before anyone publishes) and collects what follows.
async fn collect(relay: &RelayHandle, channel: &ChannelName) -> Arc<Mutex<Collected>> {
    let subscription = relay.subscribe(channel.clone()).await.expect("subscribes");
    assert!(subscription.live.is_none(), "the channel is not live yet");
    let collected = Arc::new(Mutex::new(Collected::default()));
    let out = collected.clone();
    let mut media = subscription.media;
    tokio::spawn(async move {
        loop {
            let item = media.recv().await;
            let mut c = out.lock().unwrap();
            match item {
                Ok(ChannelMedia::Live(_)) => c.live += 1,
                Ok(ChannelMedia::Unit(unit)) => c.units.push(unit),
                Ok(ChannelMedia::Ended { .. }) => c.ended += 1,
                Err(RecvError::Lagged(n)) => c.lagged += n,
                Err(RecvError::Closed) => return,
            }
        }
    });
    collected
}

/// Waits until the subscription saw the session end, then takes what it collected: one
/// live session, nothing lost to lag.
async fn session_ended(collected: &Arc<Mutex<Collected>>, timeout: Duration) -> Collected {
    let ended = wait_until(timeout, || async { collected.lock().unwrap().ended == 1 }).await;
    assert!(ended, "the subscription saw the session end");
    let c = std::mem::take(&mut *collected.lock().unwrap());
    assert_eq!((c.live, c.lagged), (1, 0));
    c
}

/// Remuxes the units of `tracks` into `path`.
fn write_mp4(path: &Path, tracks: &[TrackSpec], units: &[AccessUnit]) {
    let mut muxer = FileMuxer::create(path, tracks).expect("muxer");
    let mut skipped = Vec::new();
    for (i, unit) in units
        .iter()
        .enumerate()
        .filter(|(_, u)| tracks.iter().any(|t| t.track == u.track))
    {
        if muxer.write(unit).expect("unit written") == Written::Skipped {
            skipped.push((
                i,
                unit.track.clone(),
                unit.dts,
                unit.timescale,
                unit.keyframe,
            ));
        }
    }
    assert_eq!(
        muxer.skipped(),
        0,
        "every unit went into the file; left out: {skipped:?}"
    );
    muxer.finish().expect("trailer written");
}

fn run(program: &str, args: &[&str], file: &Path) -> (String, String) {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{program} {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// ffprobe's `entries` of the first stream of `kind` ("v" or "a"), counting with `count`
/// (`-count_frames` decodes, `-count_packets` only reads).
fn probe_stream(file: &Path, kind: &str, count: &str, entries: &str) -> String {
    let select = format!("{kind}:0");
    let args = ["-v", "error", "-select_streams", &select, count];
    let args = [&args[..], &["-show_entries", entries, "-of", "csv=p=0"]].concat();
    run("ffprobe", &args, file).0
}

/// Frames the decoder produced for the first stream of `kind` ("v" or "a").
fn decoded_frames(file: &Path, kind: &str) -> u64 {
    let out = probe_stream(file, kind, "-count_frames", "stream=nb_read_frames");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("frame count {out:?}"))
}

/// `codec_name` and packet count of the first stream of `kind`.
fn stream_packets(file: &Path, kind: &str) -> (String, u64) {
    let out = probe_stream(
        file,
        kind,
        "-count_packets",
        "stream=codec_name,nb_read_packets",
    );
    let (codec, packets) = out.trim().split_once(',').expect("codec,packets");
    (codec.to_string(), packets.parse().expect("packet count"))
}

/// Decode times per stream index, in file order.
fn packet_dts(file: &Path) -> Vec<Vec<i64>> {
    let (out, _) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,dts",
            "-of",
            "csv=p=0",
        ],
        file,
    );
    let mut streams: Vec<Vec<i64>> = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (index, dts) = line.split_once(',').expect("stream_index,dts");
        let index: usize = index.parse().unwrap();
        if streams.len() <= index {
            streams.resize(index + 1, Vec::new());
        }
        streams[index].push(dts.parse().unwrap_or_else(|_| panic!("dts {line:?}")));
    }
    streams
}

/// Checks a remuxed file: a full decode reports no error, every stream's DTS strictly
/// increases, and each stream has as many packets as units went in.
fn check_file(file: &Path, units_per_stream: &[usize]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "decode errors: {stderr}"
    );
    let dts = packet_dts(file);
    assert_eq!(
        dts.len(),
        units_per_stream.len(),
        "streams in {}",
        file.display()
    );
    for (i, (stream, units)) in dts.iter().zip(units_per_stream).enumerate() {
        assert_eq!(stream.len(), *units, "stream {i}: packets = units");
        if let Some(w) = stream.windows(2).find(|w| w[1] <= w[0]) {
            panic!(
                "stream {i}: DTS not strictly increasing: {} then {}",
                w[0], w[1]
            );
        }
    }
}

/// The slices (VCL NAL units) of an Annex-B access unit.
fn slices(au: &[u8]) -> Vec<&[u8]> {
    split_annexb(au)
        .into_iter()
        .filter(|n| matches!(nal_type(n), 1 | 5))
        .collect()
}

async fn whip_media(dir: &Path, secs: u64) -> (SyntheticMedia, PathBuf) {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (h264, ogg) =
            make_test_media(&dir, Duration::from_secs(secs), 500).expect("ffmpeg makes test media");
        (
            SyntheticMedia::load(&h264, &ogg).expect("test media loads"),
            h264,
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_channels_units_remux_into_an_mp4_with_every_frame() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let (media, h264_path) = whip_media(dir.path(), 3).await;
    let source = std::fs::read(&h264_path).unwrap();
    let source_nals = split_annexb(&source);
    // Each source picture's slices (the tap's units may carry other NAL units in front).
    let source_aus: Vec<Vec<&[u8]>> = group_access_units(&source_nals)
        .into_iter()
        .map(|au| {
            au.into_iter()
                .filter(|n| matches!(nal_type(n), 1 | 5))
                .collect()
        })
        .collect();
    let frames = media.video_frames().len();
    let packets = media.audio_packets().len();
    assert_eq!(source_aus.len(), frames);

    let channel = t.station.channel.clone();
    let collected = collect(&t.server.relay, &channel).await;
    let whip = format!("{}/whip/{channel}", t.base);
    let publisher = WhipPublisher::connect(
        &whip,
        Some(&t.station.stream_key),
        media.clone(),
        PublisherOptions {
            loop_media: false,
            record_payloads: true,
            ..Default::default()
        },
    )
    .await
    .expect("publisher connects");
    // One pass over the files, in real time.
    let sent = wait_until(Duration::from_secs(15), || async {
        !publisher.stats().sending
    })
    .await;
    assert!(sent, "the publisher sent its files within 15 s");
    assert!(publisher.stats().send_error.is_none());
    // Every frame and packet the publisher sent from the first the tap delivered.
    let all_arrived = wait_until(Duration::from_secs(5), || {
        let c = collected.lock().unwrap();
        let video = c.video();
        let first = video
            .first()
            .and_then(|u| source_aus.iter().position(|au| *au == slices(&u.data)));
        let done = first.is_some_and(|first| video.len() >= frames - first);
        async move { done }
    })
    .await;
    publisher.stop().await.expect("publisher DELETE");
    let c = session_ended(&collected, Duration::from_secs(5)).await;
    let video = c.video();
    let audio = c.of(&Track::Audio);
    assert!(
        all_arrived,
        "{} video units of {frames} frames",
        video.len()
    );
    // The tap's units are the publisher's pictures, in order, from a keyframe on.
    let first = source_aus
        .iter()
        .position(|au| *au == slices(&video[0].data))
        .expect("the first unit is one of the source's pictures");
    assert!(video[0].keyframe, "video starts on a keyframe");
    // The pacer sends picture 0 and then Opus packet 0 at time zero; the hub makes the
    // channel live when both tracks have opened (on that Opus packet), and drops the
    // source's packets before that. Picture 0 arrives in the same turn of the engine as
    // Opus packet 0 unless the engine woke up between them: then the tap starts at the
    // next IDR, picture 30 (an IDR every 30). From there every picture is a unit.
    assert!(first == 0 || first == 30, "units start at picture {first}");
    assert_eq!(video.len(), frames - first, "one unit per picture sent");
    for (i, (unit, au)) in video.iter().zip(&source_aus[first..]).enumerate() {
        assert_eq!(slices(&unit.data), *au, "picture {}", first + i);
        assert_eq!(unit.keyframe, nal_type(au[0]) == 5);
        assert_eq!(unit.codec, Codec::H264);
        assert_eq!(unit.timescale, 90_000);
    }
    // Audio: every Opus packet the publisher sent, from the first the tap delivered.
    let sent_opus: Vec<&Bytes> = media.audio_packets().iter().map(|p| &p.payload).collect();
    let first_opus = sent_opus
        .iter()
        .position(|p| **p == audio[0].data)
        .expect("the first Opus unit is a sent packet");
    // Opus packet 0 is the one that makes the channel live: the tap has it too.
    assert_eq!(
        first_opus, 0,
        "the first Opus unit is the first packet sent"
    );
    assert_eq!(audio.len(), packets, "one unit per Opus packet");
    assert!(
        audio
            .iter()
            .zip(&sent_opus[first_opus..])
            .all(|(u, p)| u.data == **p),
        "Opus units are the sent packets"
    );
    eprintln!(
        "WHIP: {frames} frames / {packets} Opus packets sent; units from frame {first} and packet {first_opus}: {} video, {} audio",
        video.len(),
        audio.len()
    );

    let file = dir.path().join("whip.mp4");
    let tracks = [
        TrackSpec {
            track: Track::Video { rendition: 0 },
            codec: Codec::H264,
        },
        TrackSpec {
            track: Track::Audio,
            codec: Codec::Opus,
        },
    ];
    write_mp4(&file, &tracks, &c.units);
    assert_eq!(decoded_frames(&file, "v") as usize, frames - first);
    assert_eq!(
        stream_packets(&file, "a"),
        ("opus".into(), (packets - first_opus) as u64)
    );
    check_file(&file, &[frames - first, packets - first_opus]);
    t.server.shutdown().await;
}

/// A clip like OBS with simple settings sends: H.264 constrained baseline (so the server
/// passes it through) and AAC-LC 44.1 kHz stereo, in FLV.
fn rtmp_clip(dir: &Path, secs: u32) -> PathBuf {
    let path = dir.join("baseline-aac.flv");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-t",
            &secs.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
        ])
        .args([
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-g",
            "30",
            "-b:v",
            "600k",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-ar", "44100", "-ac", "2"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the clip");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_channels_units_and_original_aac_remux_into_an_mp4() {
    let t = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = {
        let dir = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || rtmp_clip(&dir, 3))
            .await
            .unwrap()
    };
    let clip_frames = decoded_frames(&clip, "v");
    let (clip_audio_codec, clip_aac_frames) = stream_packets(&clip, "a");
    assert_eq!(clip_audio_codec, "aac");

    let channel = t.station.channel.clone();
    let collected = collect(&t.server.relay, &channel).await;
    let rtmp = t.server.rtmp_addr.expect("RTMP ingest listens");
    let url = format!("rtmp://{rtmp}/live/{channel}?key={}", t.station.stream_key);
    let mut push = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(&clip)
        .args(["-c", "copy", "-f", "flv"])
        .arg(&url)
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg pushes");
    let pushed = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .expect("ffmpeg exits");
    assert!(pushed.success(), "the RTMP push succeeded");
    // The source ends when the connection closes; its last units come before `Ended`.
    let c = session_ended(&collected, Duration::from_secs(10)).await;
    let video = c.video();
    let config = c
        .units
        .iter()
        .find_map(|u| match &u.track {
            Track::OriginalAac { config } => Some(config.clone()),
            _ => None,
        })
        .expect("the original AAC track came with the units");
    let aac_track = Track::OriginalAac { config };
    let aac = c.of(&aac_track);
    let opus = c.of(&Track::Audio);
    eprintln!(
        "RTMP: clip {clip_frames} frames / {clip_aac_frames} AAC frames; units: {} video, {} AAC, {} Opus",
        video.len(),
        aac.len(),
        opus.len()
    );
    assert!(video[0].keyframe, "video starts on a keyframe");
    assert_eq!(
        video.len() as u64,
        clip_frames,
        "one unit per frame of the clip"
    );
    assert_eq!(
        aac.len() as u64,
        clip_aac_frames,
        "one unit per AAC frame of the clip"
    );
    assert!(aac.iter().all(|u| u.codec == Codec::Aac && u.keyframe));
    assert!(!opus.is_empty(), "viewers' Opus is there too");

    let file = dir.path().join("rtmp.mp4");
    let tracks = [
        TrackSpec {
            track: Track::Video { rendition: 0 },
            codec: Codec::H264,
        },
        TrackSpec {
            track: aac_track,
            codec: Codec::Aac,
        },
    ];
    write_mp4(&file, &tracks, &c.units);
    let units = [video.len(), aac.len()];
    assert_eq!(decoded_frames(&file, "v"), clip_frames);
    assert_eq!(stream_packets(&file, "a"), ("aac".into(), clip_aac_frames));
    check_file(&file, &units);
    t.server.shutdown().await;
}

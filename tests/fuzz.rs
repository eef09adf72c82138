//! Fuzzing in the test suite: every target of `feiyan::fuzzing` gets its committed seeds
//! (`tests/fuzz-corpus/TARGET/`, made by `scripts/fuzz-corpus.sh`; inputs that once
//! crashed a parser stay there as regression seeds) and then 10,000 mutated inputs from a
//! fixed RNG seed, so a run is the same every time. No input may panic or run for more
//! than a second; the HTTP paths target also fails on any answer of 500 or more. Longer
//! runs with new RNG seeds: `scripts/fuzz.sh SECONDS`.

mod common;

use std::path::PathBuf;

use feiyan::fuzzing::{self, Budget, Report, Target};

/// Mutated inputs per target.
const INPUTS: u64 = 10_000;
/// The RNG seed of every test run.
const RNG_SEED: u64 = 0x5eed_f022_2026_1206;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let seeds = fuzzing::read_corpus(&dir);
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `target` and checks it: every input returned, none panicked, and the target
/// told at least `min_outcomes` outcomes apart (its seeds reach past the first check).
fn fuzz(target: Target, min_outcomes: usize) -> Report {
    let name = target.name;
    let report = fuzzing::run(target, seeds(name), RNG_SEED, Budget::Inputs(INPUTS), None);
    println!("{}", report.line());
    for crash in &report.crashes {
        println!(
            "crash: {}\ninput ({} bytes): {:02x?}",
            crash.what,
            crash.input.len(),
            &crash.input[..crash.input.len().min(256)]
        );
    }
    assert!(
        report.hang.is_none(),
        "{name}: an input hung: {:?}",
        report.hang
    );
    assert!(
        report.crashes.is_empty(),
        "{name}: {} inputs panicked, first: {}",
        report.crashes.len(),
        report.crashes[0].what
    );
    assert_eq!(report.tried, INPUTS, "{name}: every input ran");
    assert!(
        report.outcomes >= min_outcomes,
        "{name}: only {} outcomes told apart",
        report.outcomes
    );
    report
}

#[test]
fn flv_tags_through_the_rtmp_demux() {
    fuzz(fuzzing::targets::flv(), 5);
}

#[test]
fn rtmp_publishes_through_rml_rtmp_and_the_door() {
    fuzz(fuzzing::targets::rtmp(), 5);
}

#[test]
fn stun_datagrams() {
    fuzz(fuzzing::targets::stun(), 3);
}

#[test]
fn rtcp_feedback_from_viewers() {
    fuzz(fuzzing::targets::rtcp(), 5);
}

#[test]
fn sdp_offers_before_negotiation() {
    fuzz(fuzzing::targets::sdp(), 5);
}

#[test]
fn h264_parameter_sets_and_annexb() {
    fuzz(fuzzing::targets::h264(), 5);
}

#[test]
fn postgres_binary_copy_output() {
    fuzz(fuzzing::targets::copy(), 5);
}

#[test]
fn hierarchy_csv_import() {
    fuzz(fuzzing::targets::csv(), 5);
}

#[test]
fn range_headers() {
    fuzz(fuzzing::targets::range(), 3);
}

/// The URIs a playlist names (media playlists, init segments, segments, parts, preload
/// hints), resolved against its URL, as paths without the leading `/`; media playlists
/// are followed one level down.
async fn playlist_paths(url: reqwest::Url) -> Vec<String> {
    let mut paths = Vec::new();
    let mut pending = vec![(url, true)];
    while let Some((url, follow)) = pending.pop() {
        let text = reqwest::get(url.clone())
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let uris = text.lines().flat_map(|line| {
            let line = line.trim();
            if line.is_empty() {
                Vec::new()
            } else if line.starts_with('#') {
                line.split("URI=\"")
                    .skip(1)
                    .filter_map(|rest| rest.split('"').next())
                    .map(str::to_string)
                    .collect()
            } else {
                vec![line.to_string()]
            }
        });
        for uri in uris.collect::<Vec<_>>() {
            let Ok(target) = url.join(&uri) else { continue };
            let path = match target.query() {
                Some(query) => format!("{}?{query}", target.path()),
                None => target.path().to_string(),
            };
            let path = path.trim_start_matches('/').to_string();
            if follow && target.path().ends_with(".m3u8") {
                pending.push((target, false));
            }
            paths.push(path);
        }
    }
    paths
}

/// Seeds for the HTTP target from what the server really serves: every path with no
/// `Range`, and media paths with one.
fn path_seeds(paths: &[String]) -> Vec<Vec<u8>> {
    let mut seeds = seeds("paths");
    for path in paths {
        seeds.push(format!("{path}\n").into_bytes());
        if !path.contains(".m3u8") {
            seeds.push(format!("{path}\nbytes=0-99").into_bytes());
        }
    }
    seeds
}

fn fuzz_paths(addr: std::net::SocketAddr, seeds: Vec<Vec<u8>>, what: &str) -> Report {
    let report = fuzzing::run(
        fuzzing::http::paths(addr),
        seeds,
        RNG_SEED,
        Budget::Inputs(INPUTS),
        None,
    );
    println!("{what}: {}", report.line());
    assert!(
        report.hang.is_none(),
        "{what}: a request hung: {:?}",
        report.hang
    );
    for crash in &report.crashes {
        println!("{what}: {}", crash.what);
    }
    assert!(
        report.crashes.is_empty(),
        "{what}: {}",
        report.crashes[0].what
    );
    assert_eq!(report.tried, INPUTS);
    report
}

/// HLS paths while a channel is live, then replay paths once it ended, against the real
/// server: every answer a 4xx or better, and no request left unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_and_replay_paths_over_http() {
    let t = common::start_server().await;
    let addr = t.server.http_addr;
    let channel = t.station.channel.to_string();
    // A clip longer than the HLS run, pushed in real time as OBS would.
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("live.flv");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x180:rate=15"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "40",
        ])
        .args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-profile:v",
            "baseline",
            "-g",
            "15",
            "-c:a",
            "aac",
            "-b:a",
            "48k",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg made the clip");
    let mut push = common::rtmp::push_rtmp(&clip, &common::replays::station_rtmp(&t, "fuzz"));
    common::wait_live(&t.base, &channel).await;
    let index = reqwest::Url::parse(&format!("{}/hls/{channel}/index.m3u8", t.base)).unwrap();
    // The playlist redirects to itself with a viewer id; wait for a segment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let live = loop {
        let r = reqwest::get(index.clone()).await.unwrap();
        let url = r.url().clone();
        if r.text().await.unwrap().contains("#EXT") {
            let paths = playlist_paths(url).await;
            if paths.iter().any(|p| p.contains(".m4s")) {
                break paths;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no HLS segment within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let seeds = path_seeds(&live);
    let hls = tokio::task::spawn_blocking(move || fuzz_paths(addr, seeds, "live HLS"))
        .await
        .unwrap();
    assert!(hls.outcomes >= 5, "live HLS: {}", hls.line());
    let _ = push.kill();
    let _ = push.wait();
    let replays =
        common::replays::wait_replays(&t.base, &channel, 1, std::time::Duration::from_secs(20))
            .await;
    let id = replays[0]["id"].as_i64().expect("replay id");
    let playlist = reqwest::get(format!("{}/replay/{id}/index.m3u8", t.base))
        .await
        .unwrap();
    assert_eq!(playlist.status(), 200);
    let mut paths = playlist_paths(playlist.url().clone()).await;
    paths.push(format!("replay/{id}/replay.mp4"));
    let seeds = path_seeds(&paths);
    let replay = tokio::task::spawn_blocking(move || fuzz_paths(addr, seeds, "replay"))
        .await
        .unwrap();
    assert!(replay.outcomes >= 5, "replay: {}", replay.line());
    t.server.shutdown().await;
}

/// An H.264 stream whose in-band SPS switches from 1080p to 64x64 (two Annex-B streams
/// from the ffmpeg CLI, one after the other, as a publisher that changes its resolution
/// sends them) through the server's demux and transcode stage: every picture of both
/// halves comes out (at the size the rung opened with). `scripts/fuzz.sh` runs the same
/// under valgrind.
#[test]
fn an_in_band_sps_switch_from_1080p_to_64x64_keeps_transcoding() {
    let dir = tempfile::tempdir().unwrap();
    let part = |size: &str, name: &str| {
        let path = dir.path().join(name);
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=25")])
            .args(["-frames:v", "10", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
            .args(["-preset", "ultrafast", "-f", "h264"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "ffmpeg made {name}");
        std::fs::read(path).unwrap()
    };
    let mut stream = part("1920x1080", "a.h264");
    stream.extend(part("64x64", "b.h264"));
    let path = dir.path().join("switch.h264");
    std::fs::write(&path, &stream).unwrap();
    let (packets, pictures) =
        fuzzing::switch::transcode_file(path.to_str().unwrap()).expect("transcodes");
    assert_eq!(packets, 20, "the demuxer reads both halves");
    assert_eq!(
        pictures, 20,
        "every picture is encoded, those after the switch to 64x64 too"
    );
}

//! Live HLS end to end: RTMP (AAC) and WHIP (Opus) channels read by the ffmpeg CLI as fMP4
//! and MPEG-TS, low-latency blocking reloads and parts, a publisher that drops and returns
//! within the grace (one session, a discontinuity) or does not (ENDLIST, the session ends,
//! 404), HLS players counted with their terminal, and bad requests answered clearly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rtmp::{make_media, push_rtmp};
use feiyan::client::{PublisherOptions, WhipPublisher};
use feiyan::ids::SessionId;

const TV_AGENT: &str = "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36";
const PHONE_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

/// What the ffmpeg CLI decoded from a URL.
#[derive(Debug)]
struct Read {
    /// Decoded frames per stream index (from `-f framecrc`).
    frames: Vec<usize>,
    /// What it printed at error level.
    errors: String,
    /// Codec names of the input's streams, as ffmpeg reported them.
    codecs: String,
    success: bool,
}

/// Reads `url` for `secs` seconds with the ffmpeg CLI as a player would, decoding every
/// video and audio frame.
fn ffmpeg_read(url: &str, secs: u32, agent: &str) -> Read {
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-user_agent",
            agent,
        ])
        .args(["-i", url, "-t", &secs.to_string()])
        .args(["-map", "0:v?", "-map", "0:a?", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    let mut frames = vec![0usize; 4];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(Ok(index)) = line.split(',').next().map(|s| s.trim().parse::<usize>())
            && index < frames.len()
        {
            frames[index] += 1;
        }
    }
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-user_agent", agent])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0", url])
        .output()
        .expect("ffprobe runs");
    Read {
        frames,
        errors: String::from_utf8_lossy(&out.stderr).into_owned(),
        codecs: String::from_utf8_lossy(&probe.stdout).into_owned(),
        success: out.status.success(),
    }
}

/// The body of `GET url` as text.
async fn text_of(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// The server's HTTP client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A playlist URL with a valid `vid` (from the server's redirect).
async fn with_vid(base: &str, path: &str) -> String {
    let response = no_redirects()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        302,
        "a playlist without vid is redirected"
    );
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("vid="), "{location}");
    format!("{base}{location}")
}

/// Waits until `url` (a playlist) answers 200 with at least one segment (or variant), and
/// returns it.
async fn wait_playlist(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status() == 200
        {
            let text = r.text().await.unwrap();
            // A media playlist with a segment, or a multivariant one.
            if text.contains("#EXTINF") || text.contains("#EXT-X-STREAM-INF") {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} has no segment within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn terminals(t: &common::TestServer, session: SessionId) -> Vec<String> {
    let mut rows: Vec<String> = t
        .server
        .catalog
        .session_viewers(session)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, terminal)| terminal)
        .collect();
    rows.sort();
    rows
}

fn rtmp_url(t: &common::TestServer) -> String {
    let rtmp = t.server.rtmp_addr.expect("RTMP is on");
    format!(
        "rtmp://{rtmp}/live/{}?key={}",
        t.station.channel, t.station.stream_key
    )
}

fn assert_read_well(read: &Read, what: &str, min_video: usize) {
    assert!(read.success, "{what}: ffmpeg failed: {}", read.errors);
    assert!(
        read.errors.trim().is_empty(),
        "{what}: ffmpeg reported errors:\n{}",
        read.errors
    );
    assert!(
        read.codecs.contains("h264") && read.codecs.contains("aac"),
        "{what}: streams are {:?}",
        read.codecs
    );
    assert!(
        read.frames[0] >= min_video,
        "{what}: {} video frames decoded (want {min_video})",
        read.frames[0]
    );
    assert!(
        read.frames[1] >= 300,
        "{what}: {} AAC frames decoded",
        read.frames[1]
    );
}

/// A channel on air from an RTMP push (the ffmpeg CLI, a `secs`-long clip), with its
/// fMP4 playlist URL (with a vid) once it lists a segment.
struct OnAir {
    push: std::process::Child,
    channel: String,
    session: SessionId,
    /// `/hls/{channel}/index.m3u8?vid=...`, absolute.
    url: String,
    /// The playlist when it first listed a segment.
    playlist: String,
    clip: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for OnAir {
    fn drop(&mut self) {
        let _ = self.push.kill();
        let _ = self.push.wait();
    }
}

async fn rtmp_on_air(t: &common::TestServer, secs: u32) -> OnAir {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_media(dir.path(), secs);
    let push = push_rtmp(&clip, &rtmp_url(t));
    let channel = t.station.channel.to_string();
    let session = common::wait_live(&t.base, &channel).await;
    let url = with_vid(&t.base, &format!("/hls/{channel}/index.m3u8")).await;
    let playlist = wait_playlist(&url).await;
    OnAir {
        push,
        channel,
        session,
        url,
        playlist,
        clip,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_channel_plays_over_hls_as_fmp4_and_ts_and_each_player_counts_once() {
    let t = common::start_server().await;
    let on_air = rtmp_on_air(&t, 40).await;
    let (channel, session, playlist) = (&on_air.channel, on_air.session, &on_air.playlist);
    let fmp4 = on_air.url.clone();
    assert!(playlist.contains("#EXT-X-MAP:URI="), "{playlist}");
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    let ts = with_vid(&t.base, &format!("/hls/{channel}/ts.m3u8")).await;
    let ts_playlist = wait_playlist(&ts).await;
    assert!(ts_playlist.contains("#EXT-X-VERSION:3"), "{ts_playlist}");
    assert!(ts_playlist.contains(".ts\n"), "{ts_playlist}");

    // A TV reads the fMP4 form, a phone the TS form, at the same time, 10 s each.
    let (tv, phone) = tokio::join!(
        tokio::task::spawn_blocking(move || ffmpeg_read(&fmp4, 10, TV_AGENT)),
        tokio::task::spawn_blocking(move || ffmpeg_read(&ts, 10, PHONE_AGENT)),
    );
    let (tv, phone) = (tv.unwrap(), phone.unwrap());
    assert_read_well(&tv, "fMP4", 250);
    assert_read_well(&phone, "TS", 250);

    // Each player is one row, with the terminal its User-Agent implies.
    let counted = common::wait_until(Duration::from_secs(5), || async {
        terminals(&t, session).await == ["mobile", "tv"]
    })
    .await;
    assert!(
        counted,
        "viewer rows of the session: {:?}",
        terminals(&t, session).await
    );
    let summary = t
        .server
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.unique_viewers, 2, "{summary:?}");
    assert!(summary.peak_viewers >= 2, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_channel_with_opus_gets_aac_over_hls() {
    let t = common::start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let media = common::test_media(dir.path()).await;
    let channel = t.station.channel.to_string();
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        PublisherOptions::default(),
    )
    .await
    .expect("publisher connects");
    let session = common::wait_live(&t.base, &channel).await;
    let fmp4 = with_vid(&t.base, &format!("/hls/{channel}/index.m3u8")).await;
    wait_playlist(&fmp4).await;
    assert!(
        common::thread_names().iter().any(|n| n == "fy-tc-aac"),
        "the channel's Opus is encoded to AAC on a transcode thread: {:?}",
        common::thread_names()
    );
    let ts = with_vid(&t.base, &format!("/hls/{channel}/ts.m3u8")).await;
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(move || ffmpeg_read(&fmp4, 10, PHONE_AGENT)),
        tokio::task::spawn_blocking(move || ffmpeg_read(&ts, 10, TV_AGENT)),
    );
    // The synthetic publisher sends 30 fps.
    assert_read_well(&a.unwrap(), "WHIP fMP4", 200);
    assert_read_well(&b.unwrap(), "WHIP TS", 200);
    let counted = common::wait_until(Duration::from_secs(5), || async {
        terminals(&t, session).await == ["mobile", "tv"]
    })
    .await;
    assert!(counted, "rows: {:?}", terminals(&t, session).await);
    let _ = publisher.stop().await;
}

/// The next part as a blocking reload names it, `(msn, part index)`, and the URI the
/// playlist's preload hint gives it: the open segment is the one after the last `EXTINF`,
/// and its parts so far are the `EXT-X-PART` lines after that.
fn next_part(playlist: &str) -> (u64, usize, String) {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .expect("a media sequence")
        .parse()
        .unwrap();
    let complete = playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF"))
        .count() as u64;
    let after_last = playlist.rsplit("#EXTINF").next().unwrap();
    let parts = after_last
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count();
    let hint = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .unwrap_or_else(|| panic!("no preload hint in\n{playlist}"));
    let uri = hint
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    (first + complete, parts, uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_blocking_reloads_return_when_the_part_exists_and_parts_make_the_segment() {
    let t = common::start_server().await;
    let on_air = rtmp_on_air(&t, 40).await;
    let (url, playlist) = (&on_air.url, &on_air.playlist);
    assert!(playlist.contains("CAN-BLOCK-RELOAD=YES"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-PART-INF:PART-TARGET=0.500"),
        "{playlist}"
    );

    // Ask for the hinted part, which does not exist yet: the answer comes when it does,
    // within about a part's time, not a segment later.
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let current = text_of(&http, url.as_str()).await;
        let (msn, part, uri) = next_part(&current);
        assert!(
            !current
                .lines()
                .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&uri)),
            "the hinted part is not listed yet"
        );
        let started = Instant::now();
        let blocked = http
            .get(format!("{url}&_HLS_msn={msn}&_HLS_part={part}"))
            .send()
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(blocked.status(), 200);
        let text = blocked.text().await.unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&uri)),
            "the blocked reload lists {uri}:\n{text}"
        );
        assert!(
            waited < Duration::from_millis(1500),
            "the part came {waited:?} after the request (parts are 0.5 s, segments 2 s)"
        );
    }

    // The parts of a complete segment concatenate to the segment.
    let current = text_of(&http, url.as_str()).await;
    let lines: Vec<&str> = current.lines().collect();
    let seg_index = lines
        .iter()
        .rposition(|l| l.contains("/seg-") && l.ends_with(".m4s"))
        .expect("a complete segment");
    let segment_uri = lines[seg_index];
    let msn = segment_uri
        .rsplit("seg-")
        .next()
        .unwrap()
        .trim_end_matches(".m4s");
    // Its parts are the EXT-X-PART lines between the previous segment's URI and its EXTINF.
    let previous = lines[..seg_index]
        .iter()
        .rposition(|l| !l.starts_with('#'))
        .map_or(0, |i| i + 1);
    let parts: Vec<String> = lines[previous..seg_index]
        .iter()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .map(|l| {
            l.split("URI=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(parts.len() >= 3, "segment {msn} has parts {parts:?}");
    let mut joined = Vec::new();
    for part in &parts {
        let bytes = http.get(format!("{}{part}", t.base)).send().await.unwrap();
        assert_eq!(
            bytes.headers()["cache-control"],
            "public, max-age=60, immutable"
        );
        joined.extend_from_slice(&bytes.bytes().await.unwrap());
    }
    let segment = http
        .get(format!("{}{segment_uri}", t.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(joined.len(), segment.len());
    assert!(
        joined == segment,
        "the parts of segment {msn} are the segment's bytes"
    );

    // A reload far ahead is refused at once, not held.
    let started = Instant::now();
    let far = http
        .get(format!("{url}&_HLS_msn=999999&_HLS_part=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(far.status(), 400);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// `GET path` written byte for byte on a new connection; the whole answer as text.
async fn raw_get(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Runs the ffmpeg CLI on `url` in the background (for `secs`), for reading across a
/// publisher's drop.
fn background_read(url: String, secs: u32) -> tokio::task::JoinHandle<Read> {
    tokio::task::spawn_blocking(move || ffmpeg_read(&url, secs, TV_AGENT))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_back_within_the_grace_continues_the_session_and_one_that_is_not_ends_it() {
    let t = common::start_server_with(|c| c.hls.reconnect_grace_secs = 6).await;
    let mut on_air = rtmp_on_air(&t, 60).await;
    let (channel, session, url) = (on_air.channel.clone(), on_air.session, on_air.url.clone());
    let reader = background_read(url.clone(), 16);
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The publisher drops and comes back 2 s later: the same session goes on.
    let _ = on_air.push.kill();
    let _ = on_air.push.wait();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let http = reqwest::Client::new();
    let during = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(
        during.status(),
        200,
        "the playlist stays on air during the grace"
    );
    on_air.push = push_rtmp(&on_air.clip, &rtmp_url(&t));
    let back = common::wait_live(&t.base, &channel).await;
    assert_eq!(
        back, session,
        "the returning publisher continues the session"
    );
    let continued = common::wait_until(Duration::from_secs(15), || async {
        let text = text_of(&http, url.as_str()).await;
        text.contains("#EXT-X-DISCONTINUITY\n")
            && text
                .rsplit("#EXT-X-DISCONTINUITY\n")
                .next()
                .unwrap()
                .contains("#EXTINF")
    })
    .await;
    assert!(
        continued,
        "a discontinuity, then segments of the returned publisher"
    );
    let read = reader.await.unwrap();
    assert!(
        read.success,
        "ffmpeg kept reading across the drop: {}",
        read.errors
    );
    assert!(
        read.frames[0] >= 300,
        "ffmpeg decoded {} frames across the drop",
        read.frames[0]
    );
    let summary = t
        .server
        .catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert!(
        summary.ended_at.is_none(),
        "still one live session: {summary:?}"
    );

    // Now it drops for good: after the grace the playlist ends, the session ends, then 404.
    let _ = on_air.push.kill();
    let _ = on_air.push.wait();
    let dropped = Instant::now();
    let ended = common::wait_until(Duration::from_secs(15), || async {
        let r = http.get(url.as_str()).send().await.unwrap();
        r.status() == 200 && r.text().await.unwrap().contains("#EXT-X-ENDLIST")
    })
    .await;
    assert!(ended, "the playlist ends after the grace");
    assert!(
        dropped.elapsed() >= Duration::from_secs(5),
        "not before the grace ran out ({:?})",
        dropped.elapsed()
    );
    let closed = common::wait_until(Duration::from_secs(5), || async {
        t.server
            .catalog
            .session_summary(session, feiyan::audience::now_ms())
            .await
            .unwrap()
            .is_some_and(|s| s.ended_at.is_some())
    })
    .await;
    assert!(closed, "the session ended in the catalog");
    let gone = common::wait_until(Duration::from_secs(20), || async {
        http.get(url.as_str()).send().await.unwrap().status() == 404
    })
    .await;
    assert!(gone, "then the playlist is 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hls_requests_get_clear_answers() {
    let t = common::start_server().await;
    let on_air = rtmp_on_air(&t, 40).await;
    let (channel, url, playlist) = (&on_air.channel, &on_air.url, &on_air.playlist);
    let http = no_redirects();
    let get = |path: String| {
        let http = http.clone();
        let base = t.base.clone();
        async move { http.get(format!("{base}{path}")).send().await.unwrap() }
    };

    // Unknown channel, rendition, segment names.
    let vid = url.split("vid=").nth(1).unwrap().to_string();
    for path in [
        format!("/hls/nosuch/index.m3u8?vid={vid}"),
        format!("/hls/{channel}/7/media.m3u8?vid={vid}"),
        format!("/hls/{channel}/1/seg-1.m4s"),
        format!("/hls/{channel}/x/0/seg-1.m4s"),
        format!("/hls/{channel}/index.txt"),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(!r.text().await.unwrap().is_empty(), "{path}: a message");
    }
    // Paths that try to leave: 400 or 404, never a file. Sent as raw bytes: an HTTP
    // client library would resolve the dots before sending.
    for path in [
        format!("/hls/{channel}/../../Cargo.toml"),
        format!("/hls/{channel}/%2e%2e/%2e%2e/Cargo.toml"),
        format!("/hls/{channel}/..%2F..%2FCargo.toml"),
        "/hls/%2Fetc%2Fpasswd".to_string(),
        "/hls//etc/passwd".to_string(),
        format!("/hls/{channel}/0\\..\\..\\Cargo.toml"),
    ] {
        let answer = raw_get(&t.base, &path).await;
        let status_line = answer.lines().next().unwrap_or_default().to_string();
        assert!(
            status_line.contains(" 400 ") || status_line.contains(" 404 "),
            "{path}: {status_line}"
        );
        assert!(
            !answer.contains("[package]") && !answer.contains("root:"),
            "{path}"
        );
    }
    // Blocking reload parameters that make no sense: 400 at once.
    for query in [
        "_HLS_msn=100000",
        "_HLS_part=1",
        "_HLS_msn=x",
        "_HLS_msn=1&_HLS_part=9999",
    ] {
        let started = Instant::now();
        let r = get(format!("/hls/{channel}/index.m3u8?vid={vid}&{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{query} answered at once"
        );
    }
    // A forged vid gets a new id, not an error.
    let r = get(format!(
        "/hls/{channel}/index.m3u8?vid=forged.0000000000000000"
    ))
    .await;
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("vid=") && !location.contains("forged"),
        "{location}"
    );
    // Playlists are not cached; segments are, with HEAD and ranges.
    let r = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let segment = playlist
        .lines()
        .find(|l| l.contains("/seg-") && l.ends_with(".m4s"))
        .unwrap()
        .to_string();
    let full = get(segment.clone()).await;
    assert_eq!(full.status(), 200);
    let full = full.bytes().await.unwrap();
    let head = http
        .head(format!("{}{segment}", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        full.len().to_string().as_str()
    );
    assert_eq!(
        head.headers()["cache-control"],
        "public, max-age=60, immutable"
    );
    let ranged = http
        .get(format!("{}{segment}", t.base))
        .header("range", "bytes=8-99")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 8-99/{}", full.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.unwrap(), full.slice(8..100));
    let unsatisfiable = http
        .get(format!("{}{segment}", t.base))
        .header("range", format!("bytes={}-", full.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(unsatisfiable.status(), 416);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_renditions_gets_a_multivariant_playlist_with_one_media_playlist_each() {
    let t = common::start_server_with(|c| {
        c.ingest.renditions = vec![feiyan::config::RenditionSpec {
            name: "180p".into(),
            height: 180,
            video_kbps: 300,
        }];
    })
    .await;
    let on_air = rtmp_on_air(&t, 40).await;
    let (channel, url) = (&on_air.channel, on_air.url.clone());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = text_of(&http, url.as_str()).await;
        if text.matches("#EXT-X-STREAM-INF").count() == 2 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "a variant per rendition:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        text.contains("RESOLUTION=640x360") && text.contains("RESOLUTION=320x180"),
        "{text}"
    );
    assert!(
        text.contains("NAME=\"source\"") && text.contains("NAME=\"180p\""),
        "{text}"
    );
    assert!(
        text.contains("CODECS=\"avc1.") && text.contains("mp4a.40.2"),
        "{text}"
    );
    let vid = url.split("vid=").nth(1).unwrap();
    for uri in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            uri.ends_with(&format!("vid={vid}")),
            "variant URIs carry the vid: {uri}"
        );
        let media = format!("{}/hls/{channel}/{uri}", t.base);
        let playlist = wait_playlist(&media).await;
        assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    }
    let ts = with_vid(&t.base, &format!("/hls/{channel}/ts.m3u8")).await;
    let ts_text = text_of(&http, &ts).await;
    assert_eq!(ts_text.matches("#EXT-X-STREAM-INF").count(), 2, "{ts_text}");
    let read = tokio::task::spawn_blocking(move || ffmpeg_read(&url, 6, TV_AGENT))
        .await
        .unwrap();
    assert!(
        read.success && read.errors.trim().is_empty(),
        "{}",
        read.errors
    );
    assert!(read.frames[0] >= 150, "{:?}", read.frames);
}

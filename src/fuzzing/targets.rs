//! The fuzz targets: each calls the server's real parsers on one input, as the server
//! calls them on a peer's or a file's bytes, and returns a short description of the
//! outcome (see the module docs of [`super`]). A target must return, never panic; it may
//! assert what the server relies on (a panic there is a finding too).

use std::fmt::Display;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

use crate::hls::fmp4::{AudioConfig, VideoConfig};
use crate::ingest::rtmp::{APP, FlvDemux, RtmpCounters, StreamKey, guard};
use crate::transcode::h264::{AnnexbWriter, AvcConfig, parse_sps, read_sps, split_annexb};
use crate::transcode::{AudioInput, VideoInput};

/// What a target runs on each input: the outcome's description.
pub type RunInput = Box<dyn FnMut(&[u8]) -> String + Send>;

/// One fuzz target.
pub struct Target {
    /// Its name (`scripts/fuzz.sh` and the corpus folders use it).
    pub name: &'static str,
    /// Longest input tried.
    pub max_len: usize,
    /// An input running longer than this is a hang ([`super::HANG_LIMIT`] unless the
    /// target waits by design).
    pub hang_limit: std::time::Duration,
    /// Runs one input and describes the outcome.
    pub run: RunInput,
}

impl Target {
    fn new(
        name: &'static str,
        max_len: usize,
        run: impl FnMut(&[u8]) -> String + Send + 'static,
    ) -> Target {
        Target {
            name,
            max_len,
            hang_limit: super::HANG_LIMIT,
            run: Box::new(run),
        }
    }
}

/// The targets that need nothing running: every one but the HTTP paths (which need a
/// server, see `tests/fuzz.rs`).
pub fn all_targets() -> Vec<Target> {
    vec![
        flv(),
        rtmp(),
        stun(),
        rtcp(),
        sdp(),
        h264(),
        copy(),
        csv(),
        range(),
    ]
}

/// A number's size class (0, 1, 2-3, 4-7, ...), so sizes count as a few outcomes.
fn bucket(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

/// An error's text without its numbers, so "codec id 3" and "codec id 4" are one outcome.
fn kind(e: impl Display) -> String {
    e.to_string()
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(48)
        .collect()
}

/// The tags of an FLV file (`FLV` header, then `[type][size u24][ts u24 + ext][stream
/// u24][body][previous size u32]`), a truncated last body cut short: what an RTMP
/// publisher's tag bodies look like once `rml_rtmp` hands them over.
pub fn flv_tags(data: &[u8]) -> Vec<(u8, u32, &[u8])> {
    let mut tags = Vec::new();
    let mut at = if data.starts_with(b"FLV") && data.len() >= 9 {
        (u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize).saturating_add(4)
    } else {
        0
    };
    while at.saturating_add(11) <= data.len() {
        let h = &data[at..at + 11];
        let kind = h[0] & 0x1f;
        let size = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        let ts =
            u32::from(h[7]) << 24 | u32::from(h[4]) << 16 | u32::from(h[5]) << 8 | u32::from(h[6]);
        let start = at + 11;
        let end = start.saturating_add(size).min(data.len());
        tags.push((kind, ts, &data[start..end]));
        at = end.saturating_add(4);
    }
    tags
}

/// What happens to one publisher's FLV tags in the server: [`FlvDemux`] per tag, the AVC
/// sequence header through `AvcConfig::parse` / `VideoInput::h264_avcc`, the AAC config
/// through `AudioInput::aac` and the HLS sample entry's reader, pictures through the
/// passthrough `AnnexbWriter` and keyframes through the fMP4 init segment's reader.
#[derive(Default)]
struct FlvSink {
    demux: FlvDemux,
    writer: Option<AnnexbWriter>,
    /// Outcome words, each once.
    words: Vec<String>,
    video: usize,
    audio: usize,
    keyframes_configured: usize,
}

impl FlvSink {
    fn word(&mut self, word: String) {
        if !self.words.contains(&word) && self.words.len() < 12 {
            self.words.push(word);
        }
    }

    fn video(&mut self, body: &[u8], ts: u32) {
        let had = self.demux.avc_record.clone();
        match self.demux.video(body, i64::from(ts)) {
            Err(e) => self.word(format!("video: {}", kind(e))),
            Ok(None) => {
                if self.demux.avc_record != had
                    && let Some(record) = self.demux.avc_record.clone()
                {
                    match AvcConfig::parse(&record) {
                        Ok(config) => {
                            self.word(format!(
                                "avcC sps={} pps={}",
                                config.sps.len(),
                                config.pps.len()
                            ));
                            for sps in &config.sps {
                                let w = match parse_sps(sps) {
                                    Ok(info) => format!("sps {}", bucket(info.width as usize)),
                                    Err(e) => kind(e),
                                };
                                self.word(w);
                            }
                            self.writer = Some(AnnexbWriter::for_avcc(&config));
                        }
                        Err(e) => self.word(kind(e)),
                    }
                    if let Err(e) = VideoInput::h264_avcc(&record, Some(25.0)) {
                        self.word(format!("input: {}", kind(e)));
                    }
                }
            }
            Ok(Some(packet)) => {
                self.video += 1;
                // The transcoder is built from the headers seen so far (go_live).
                self.demux.freeze_configs();
                if let Some(writer) = &mut self.writer {
                    match writer.convert(&packet.data) {
                        Ok((annexb, idr)) => {
                            if idr && VideoConfig::from_access_unit(&annexb).is_some() {
                                self.keyframes_configured += 1;
                            }
                        }
                        Err(e) => self.word(format!("sample: {}", kind(e))),
                    }
                }
            }
        }
    }

    fn audio(&mut self, body: &[u8], ts: u32) {
        let had = self.demux.aac_config.clone();
        match self.demux.audio(body, i64::from(ts)) {
            Err(e) => self.word(format!("audio: {}", kind(e))),
            Ok(None) => {
                if self.demux.aac_config != had
                    && let Some(config) = self.demux.aac_config.clone()
                {
                    let input = AudioInput::aac(&config).map(|a| a.aac_config().is_some());
                    let entry = AudioConfig::from_audio_specific_config(config)
                        .map(|c| (c.sample_rate, c.channels.min(9)));
                    self.word(format!("asc {:?} {:?}", input.is_ok(), entry));
                }
            }
            Ok(Some(_)) => self.audio += 1,
        }
    }

    /// Which kinds of thing happened (pictures, frames, configured keyframes, the words
    /// in order of name): counts would make every input new.
    fn describe(&self) -> String {
        let mut words = self.words.clone();
        words.sort();
        format!(
            "v={} a={} k={} {}",
            self.video > 0,
            self.audio > 0,
            self.keyframes_configured > 0,
            words.join("|")
        )
    }
}

/// FLV tag bodies (an FLV file's tags, as the ffmpeg CLI writes them) through the RTMP
/// ingest's demux and the headers' parsers.
pub fn flv() -> Target {
    Target::new("flv", 64 * 1024, |input| {
        let mut sink = FlvSink::default();
        let tags = flv_tags(input);
        for &(kind, ts, body) in &tags {
            match kind {
                8 => sink.audio(body, ts),
                9 => sink.video(body, ts),
                _ => {}
            }
        }
        format!("tags={} {}", !tags.is_empty(), sink.describe())
    })
}

/// The reads of an `rtmp` input: `[length u16 BE][bytes]` repeated, a short last one
/// taking what is left. Where TCP splits a publisher's bytes matters to a session (a
/// client waits for the answer to `publish` before it sends media), so it is part of
/// the input too.
pub fn split_reads(input: &[u8]) -> Vec<&[u8]> {
    let mut reads = Vec::new();
    let mut rest = input;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        reads.push(&rest[2..end]);
        rest = &rest[end..];
    }
    reads
}

/// The framing [`split_reads`] reads (reads over 64 KiB split).
pub fn frame_reads(reads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for read in reads {
        for part in read.chunks(usize::from(u16::MAX)) {
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// What a publisher sends over TCP, read by read ([`split_reads`]), through `rml_rtmp`'s
/// server handshake and session under the RTMP door's own `catch_unwind` guard
/// ([`guard`]), the door's checks (the application name, the stream key) and the FLV
/// demux.
pub fn rtmp() -> Target {
    Target::new("rtmp", 64 * 1024, |input| {
        let counters = RtmpCounters::default();
        let mut reads = split_reads(input).into_iter();
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let Some(read) = reads.next() else {
                return "handshake unfinished".into();
            };
            match guard(&counters, || handshake.process_bytes(read)) {
                Err(e) => return format!("handshake {}", kind(e)),
                Ok(Err(e)) => return format!("handshake refused {}", kind(format!("{e:?}"))),
                Ok(Ok(HandshakeProcessResult::InProgress { .. })) => {}
                Ok(Ok(HandshakeProcessResult::Completed {
                    remaining_bytes, ..
                })) => break remaining_bytes,
            }
        };
        let (mut session, initial) = match ServerSession::new(ServerSessionConfig::new()) {
            Ok(s) => s,
            Err(e) => return format!("session {e:?}"),
        };
        let mut door = RtmpDoor::default();
        if let Err(why) = door.handle(&mut session, initial) {
            return why;
        }
        for read in std::iter::once(&leftover[..]).chain(reads) {
            let results = match guard(&counters, || session.handle_input(read)) {
                Err(e) => return format!("{} {}", door.describe(), kind(e)),
                Ok(Err(_)) => return format!("{} session error", door.describe()),
                Ok(Ok(results)) => results,
            };
            if let Err(why) = door.handle(&mut session, results) {
                return format!("{} {why}", door.describe());
            }
        }
        door.describe()
    })
}

/// The RTMP door's decisions without its socket or catalog (see `ingest::rtmp`): only
/// the `live` application, one publish with a well-formed stream key, media after it.
#[derive(Default)]
struct RtmpDoor {
    connected: bool,
    published: bool,
    events: u32,
    sink: FlvSink,
}

impl RtmpDoor {
    fn handle(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), String> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(result) = queue.pop_front() {
            let ServerSessionResult::RaisedEvent(event) = result else {
                continue;
            };
            let more = match event {
                ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                } => {
                    self.events |= 1;
                    if app_name.trim_end_matches('/') != APP {
                        return Err("unknown application".into());
                    }
                    self.connected = true;
                    session.accept_request(request_id)
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    stream_key,
                    ..
                } => {
                    self.events |= 2;
                    if self.published {
                        return Err("second publish".into());
                    }
                    if let Err(e) = StreamKey::parse(&stream_key) {
                        return Err(format!("key: {}", kind(e)));
                    }
                    self.published = true;
                    session.accept_request(request_id)
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    self.events |= 4;
                    if !self.published {
                        return Err("media before publish".into());
                    }
                    self.sink.video(&data, timestamp.value);
                    Ok(Vec::new())
                }
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => {
                    self.events |= 8;
                    if !self.published {
                        return Err("media before publish".into());
                    }
                    self.sink.audio(&data, timestamp.value);
                    Ok(Vec::new())
                }
                ServerSessionEvent::StreamMetadataChanged { .. } => {
                    self.events |= 16;
                    Ok(Vec::new())
                }
                ServerSessionEvent::PlayStreamRequested { .. } => {
                    return Err("play refused".into());
                }
                _ => {
                    self.events |= 32;
                    Ok(Vec::new())
                }
            };
            match more {
                Ok(more) => queue.extend(more),
                Err(e) => return Err(format!("accept: {}", kind(format!("{e:?}")))),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "connected={} published={} events={:b} {}",
            self.connected,
            self.published,
            self.events,
            self.sink.describe()
        )
    }
}

/// The ICE password the STUN seeds are signed with.
pub const STUN_PASSWORD: &str = "fuzz-password-0123456789";

/// A datagram on the shared UDP socket: the STUN demultiplexer, the USERNAME reader and a
/// detached viewer's consent answer (signed with [`STUN_PASSWORD`]).
pub fn stun() -> Target {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let from: SocketAddr = "192.0.2.7:50000".parse().expect("address");
    let provider = Arc::clone(&provider);
    Target::new("stun", 1500, move |input| {
        crate::relay::fuzz::stun(input, from, STUN_PASSWORD, provider.crypto())
    })
}

/// The SSRC the RTCP seeds name as the viewer's video.
pub const RTCP_VIDEO_SSRC: u32 = 0x1234_5678;

/// A viewer's (decrypted) RTCP: NACK, PLI, FIR, receiver reports.
pub fn rtcp() -> Target {
    Target::new("rtcp", 1500, |input| {
        crate::relay::fuzz::rtcp_feedback(input, RTCP_VIDEO_SSRC)
    })
}

/// A WHIP or WHEP offer body through the checks before negotiation. The body is text; an
/// input that is not UTF-8 is read lossily so that mutations keep reaching the parsers.
pub fn sdp() -> Target {
    Target::new("sdp", 16 * 1024, |input| {
        let text = String::from_utf8_lossy(input);
        crate::relay::fuzz::offer(&text)
    })
}

/// H.264 in Annex-B (MPEG-TS, pull sources, RTP access units): NAL splitting, SPS reading
/// (the muxer's and the relay's), passthrough's parameter-set keeping, the fMP4 init
/// segment's reader, simulcast picture sizes, and the input read as an `avcC` record.
pub fn h264() -> Target {
    Target::new("h264", 16 * 1024, |input| {
        let nals = split_annexb(input);
        let mut words = Vec::new();
        for nal in &nals {
            if nal[0] & 0x1f == 7 {
                let strict = parse_sps(nal);
                let loose = read_sps(nal);
                assert_eq!(
                    strict.as_ref().ok(),
                    loose.as_ref(),
                    "parse_sps and read_sps disagree"
                );
                // Read or not: sizes would make nearly every input new.
                let w = match strict {
                    Ok(_) => "sps".to_string(),
                    Err(e) => kind(e),
                };
                if !words.contains(&w) {
                    words.push(w);
                }
            }
            let size = crate::relay::fuzz::picture_size(nal);
            if !words.contains(&size) {
                words.push(size);
            }
        }
        let mut writer = AnnexbWriter::for_annexb_seeded(input);
        let converted = writer.convert(input).map(|(_, idr)| idr);
        let mut plain = AnnexbWriter::for_annexb();
        let _ = plain.convert(input);
        let init = VideoConfig::from_access_unit(input).map(|c| (c.width > 0, c.height > 0));
        let avcc = AvcConfig::parse(input).map(|c| c.sps.len()).map_err(kind);
        words.sort();
        let mut out = format!(
            "nals={} {:?} init={init:?} avcc={avcc:?}",
            nals.len().min(4),
            converted.map_err(kind)
        );
        for w in words.iter().take(6) {
            let _ = write!(out, " {w}");
        }
        out
    })
}

/// PostgreSQL's binary `COPY` output of the statistics rollup.
pub fn copy() -> Target {
    Target::new(
        "copy",
        16 * 1024,
        |input| match crate::catalog::parse_copy_rows(input) {
            Ok(rows) => format!("rows {}", bucket(rows)),
            Err(e) => kind(e),
        },
    )
}

/// A city's hierarchy CSV (`feiyan hierarchy import`, `POST /api/hierarchy/import`):
/// `parse_csv`, then the whole import against a real SQLite catalog in a temporary
/// folder (rows checked, then created in one transaction, or nothing).
pub fn csv() -> Target {
    let mut state: Option<(
        tokio::runtime::Runtime,
        crate::catalog::Catalog,
        tempfile::TempDir,
    )> = None;
    Target::new("csv", 8 * 1024, move |input| {
        let text = String::from_utf8_lossy(input);
        let parsed = match crate::catalog::parse_csv(&text) {
            Ok(records) => format!("records {}", bucket(records.len())),
            Err(e) => return kind(e),
        };
        let (runtime, catalog, _) = state.get_or_insert_with(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let dir = tempfile::tempdir().expect("temporary folder");
            let url = format!("sqlite://{}/fuzz.db", dir.path().display());
            let catalog = runtime
                .block_on(crate::catalog::Catalog::connect(&url))
                .expect("catalog");
            (runtime, catalog, dir)
        });
        let imported = match runtime.block_on(catalog.import_csv(&text)) {
            Ok(report) => format!("imported {}", bucket(report.stations.len())),
            Err(e) => {
                let e = kind(e);
                // The first reason names the kind of mistake; the list after it varies.
                e.split(';').next().unwrap_or_default().to_string()
            }
        };
        format!("{parsed} {imported}")
    })
}

/// `Range` headers of HLS media and replay MP4s: `RANGE\nTOTAL` (TOTAL the file's size,
/// decimal). What a satisfiable range gives must lie inside the file.
pub fn range() -> Target {
    Target::new("range", 256, |input| {
        let text = String::from_utf8_lossy(input);
        let (range, total) = text.split_once('\n').unwrap_or((&text, "1000"));
        let total: u64 = total.trim().parse().unwrap_or(1000);
        match crate::hls::routes::parse_range(range, total) {
            Some((start, end)) => {
                assert!(
                    start <= end && end < total,
                    "range {start}-{end} of {total}"
                );
                format!("some {} {}", bucket((end - start) as usize), start == 0)
            }
            None => "none".into(),
        }
    })
}

//! RTMP push ingest (OBS, ffmpeg, hardware encoders).
//!
//! OBS settings: Service "Custom", Server `rtmp://HOST:1935/live`, Stream Key
//! `CHANNEL?key=STREAMKEY` (optionally `&title=...`, percent-encoded). ffmpeg:
//! `ffmpeg -re -i film.mp4 -c copy -f flv "rtmp://HOST/live/CHANNEL?key=STREAMKEY"`.
//!
//! Protocol work (handshake, chunking, AMF commands) is `rml_rtmp`'s sans-IO session; this
//! module does the IO, checks the key with the catalog, demuxes the FLV audio/video tag
//! bodies (AVC + AAC) with their timestamps, and feeds the transcode stage. Anything wrong
//! (not RTMP, wrong app, unknown channel, wrong key, unsupported codec) closes the
//! connection with one log line; other connections are unaffected.
//!
//! The door is bounded: at most `[ingest] rtmp_max_connections` connections at once (the
//! next is closed on accept), `rtmp_auth_timeout_secs` from connecting to an accepted
//! publish, titles of at most [`MAX_TITLE_CHARS`], and a panic inside `rml_rtmp` on a
//! peer's bytes (0.8 indexes an empty `@setDataFrame`) closes that connection only,
//! counted in `feiyan_rtmp_panics_total`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use super::{IngestContext, IngestError, forward, local_tracks, transcode_options};
use crate::audience::now_ms;
use crate::catalog::{ChannelOwner, SessionKind, SessionSource};
use crate::ids::{ChannelName, SessionId};
use crate::media::MediaKind;
use crate::transcode::{AudioInput, SourcePacket, Transcoder, VideoInput};

/// The RTMP application name publishers use (`rtmp://HOST/live`).
pub const APP: &str = "live";
/// A connection silent this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Media buffered while waiting for both sequence headers before starting anyway.
const HEADER_WAIT_MS: i64 = 1000;
const FLV_CODEC_AVC: u8 = 7;
const FLV_SOUND_AAC: u8 = 10;
/// Longest session title (`&title=` of the stream name), in characters, as the catalog
/// allows for names; a longer one is refused rather than cut.
pub const MAX_TITLE_CHARS: usize = 200;

/// What the RTMP door turned away, for `/metrics`. Relaxed atomics: counts only.
#[derive(Debug, Default)]
pub struct RtmpCounters {
    /// Connections closed because `rml_rtmp` panicked on their bytes.
    pub panics: AtomicU64,
    /// Connections closed on accept because `rtmp_max_connections` were open.
    pub over_cap: AtomicU64,
    /// Connections closed because no publish was accepted within `rtmp_auth_timeout_secs`.
    pub auth_timeouts: AtomicU64,
}

impl RtmpCounters {
    /// `(name, help, value)` of each counter, as `/metrics` prints them.
    pub fn snapshot(&self) -> [(&'static str, &'static str, u64); 3] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "feiyan_rtmp_panics_total",
                "RTMP connections closed because rml_rtmp panicked on their input",
                get(&self.panics),
            ),
            (
                "feiyan_rtmp_over_cap_total",
                "RTMP connections closed on accept because rtmp_max_connections were open",
                get(&self.over_cap),
            ),
            (
                "feiyan_rtmp_auth_timeouts_total",
                "RTMP connections closed for no accepted publish within rtmp_auth_timeout_secs",
                get(&self.auth_timeouts),
            ),
        ]
    }
}

/// Accepts RTMP connections until `stop` flips; each runs in its own task, holding one of
/// `rtmp_max_connections` permits.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<IngestContext>,
    mut stop: watch::Receiver<bool>,
) {
    let max = ctx.config.rtmp_max_connections;
    let permits = Arc::new(Semaphore::new(max));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        ctx.rtmp_counters.over_cap.fetch_add(1, Ordering::Relaxed);
                        warn!(%peer, max, "RTMP connection closed: rtmp_max_connections are open");
                        drop(sock);
                        continue;
                    };
                    let ctx = ctx.clone();
                    let stop = stop.clone();
                    let span = info_span!("rtmp", %peer);
                    tokio::spawn(async move {
                        let _permit = permit;
                        match serve(sock, ctx, stop).await {
                            Ok(()) => info!("RTMP connection finished"),
                            Err(err) => warn!(%err, "RTMP connection closed"),
                        }
                    }.instrument(span));
                }
                Err(err) => {
                    warn!(%err, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// `CHANNEL?key=KEY&title=T` split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamKey {
    /// The channel to publish on.
    pub channel: ChannelName,
    /// The station's stream key.
    pub key: String,
    /// Session title, empty when not given.
    pub title: String,
}

impl StreamKey {
    /// Parses the RTMP stream name. The error says what a publisher should send instead.
    pub fn parse(text: &str) -> Result<StreamKey, IngestError> {
        let usage = "use stream key CHANNEL?key=STREAMKEY with server rtmp://HOST/live";
        let (channel, query) = text.split_once('?').unwrap_or((text, ""));
        // The name is not repeated: it is often the stream key pasted as the stream name,
        // and refusals are logged.
        let channel = ChannelName::parse(channel).ok_or_else(|| {
            IngestError::Refused(format!(
                "the stream name does not start with a channel name (lowercase letters, \
                 digits, - and _); {usage}"
            ))
        })?;
        let mut key = None;
        let mut title = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("key", v)) => key = Some(percent_decode(v)),
                Some(("title", v)) => title = percent_decode(v),
                _ => {}
            }
        }
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| IngestError::Refused(format!("no stream key; {usage}")))?;
        let title_chars = title.chars().count();
        if title_chars > MAX_TITLE_CHARS {
            return Err(IngestError::Refused(format!(
                "the title is {title_chars} characters; at most {MAX_TITLE_CHARS}"
            )));
        }
        Ok(StreamKey {
            channel,
            key,
            title,
        })
    }
}

/// Decodes `%XX` and `+` (form encoding); invalid escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A publisher that passed the key check.
struct Authorized {
    stream: StreamKey,
    owner: ChannelOwner,
}

/// The live part of a connection once media flows.
struct Live {
    transcoder: Transcoder,
    forwarder: JoinHandle<()>,
    session: SessionId,
}

/// What one publish has sent so far, and its live part once media flows.
#[derive(Default)]
struct Media {
    demux: FlvDemux,
    /// From `onMetaData`: whether the publisher announced video / audio.
    has_video: Option<bool>,
    has_audio: Option<bool>,
    frame_rate: Option<f64>,
    /// Packets waiting for the transcoder to start.
    pending: Vec<SourcePacket>,
    live: Option<Live>,
}

async fn serve(
    mut sock: TcpStream,
    ctx: Arc<IngestContext>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    sock.set_nodelay(true)?;
    let auth_timeout = Duration::from_secs(ctx.config.rtmp_auth_timeout_secs);
    let auth_deadline = Instant::now() + auth_timeout;
    let counters = ctx.rtmp_counters.clone();
    // Until a publish is accepted, reads also end at the auth deadline.
    let limit = |conn: Option<&Conn>| {
        conn.is_none_or(|c| c.authorized.is_none())
            .then_some((auth_deadline, auth_timeout))
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut handshake = Handshake::new(PeerType::Server);
    let leftover = loop {
        let n = read(&mut sock, &mut buf, limit(None), &counters).await?;
        let processed = guard(&counters, || handshake.process_bytes(&buf[..n]))?;
        match processed
            .map_err(|e| IngestError::Protocol(format!("handshake failed (not RTMP?): {e:?}")))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| IngestError::Protocol(format!("{e:?}")))?;
    let mut conn = Conn {
        ctx,
        authorized: None,
        media: Media::default(),
        finished: false,
    };
    let result = async {
        conn.handle(&mut session, &mut sock, initial).await?;
        let results = guard(&counters, || session.handle_input(&leftover))?
            .map_err(|e| IngestError::Protocol(format!("{e:?}")))?;
        conn.handle(&mut session, &mut sock, results).await?;
        while !conn.finished {
            let auth = limit(Some(&conn));
            let n = tokio::select! {
                _ = stop.changed() => break,
                n = read(&mut sock, &mut buf, auth, &counters) => n?,
            };
            let results = guard(&counters, || session.handle_input(&buf[..n]))?
                .map_err(|e| IngestError::Protocol(format!("{e:?}")))?;
            conn.handle(&mut session, &mut sock, results).await?;
        }
        Ok(())
    }
    .await;
    conn.end().await;
    result
}

/// Runs `rml_rtmp` on a peer's bytes, turning a panic inside it into an error that closes
/// this connection (counted). The session and handshake it ran on are not used again: the
/// caller returns the error and the connection's state is dropped, so whatever the panic
/// left half-updated is never observed (hence `AssertUnwindSafe`).
#[doc(hidden)] // public for the fuzzer (tests/fuzz.rs), which drives rml_rtmp through it
pub fn guard<T>(counters: &RtmpCounters, run: impl FnOnce() -> T) -> Result<T, IngestError> {
    catch_unwind(AssertUnwindSafe(run)).map_err(|payload| {
        counters.panics.fetch_add(1, Ordering::Relaxed);
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic".into());
        IngestError::Panic(what)
    })
}

/// Reads at least one byte or fails (EOF, the idle timeout and, before an accepted
/// publish, the auth deadline `(when, its length)` are errors here).
async fn read(
    sock: &mut TcpStream,
    buf: &mut [u8],
    auth: Option<(Instant, Duration)>,
    counters: &RtmpCounters,
) -> Result<usize, IngestError> {
    let idle_end = Instant::now() + IDLE_TIMEOUT;
    let end = auth.map_or(idle_end, |(deadline, _)| deadline.min(idle_end));
    match tokio::time::timeout_at(end, sock.read(buf)).await {
        Err(_) => match auth {
            Some((deadline, length)) if end == deadline => {
                counters.auth_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(IngestError::Refused(format!(
                    "no accepted publish within {} s of connecting ([ingest] rtmp_auth_timeout_secs)",
                    length.as_secs()
                )))
            }
            _ => Err(IngestError::Protocol(format!(
                "nothing received for {} s",
                IDLE_TIMEOUT.as_secs()
            ))),
        },
        Ok(Ok(0)) => Err(IngestError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed the connection",
        ))),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.into()),
    }
}

struct Conn {
    ctx: Arc<IngestContext>,
    authorized: Option<Authorized>,
    media: Media,
    /// The publisher said it is done (deleteStream / FCUnpublish).
    finished: bool,
}

impl Conn {
    async fn handle(
        &mut self,
        session: &mut ServerSession,
        sock: &mut TcpStream,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), IngestError> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    sock.write_all(&packet.bytes).await?;
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
                ServerSessionResult::RaisedEvent(event) => {
                    let more = self.event(session, sock, event).await?;
                    queue.extend(more);
                }
            }
        }
        Ok(())
    }

    async fn event(
        &mut self,
        session: &mut ServerSession,
        sock: &mut TcpStream,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, IngestError> {
        let protocol =
            |e: rml_rtmp::sessions::ServerSessionError| IngestError::Protocol(format!("{e:?}"));
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name.trim_end_matches('/') != APP {
                    // The name is not repeated: encoders set up wrongly often carry the
                    // stream key here (rtmp://HOST/KEY), and refusals are logged.
                    let refusal = format!(
                        "unknown application (the address must be rtmp://HOST/{APP}); \
                         the stream key goes in the stream name as CHANNEL?key=STREAMKEY"
                    );
                    reject(session, sock, request_id, &refusal).await;
                    return Err(IngestError::Refused(refusal));
                }
                session.accept_request(request_id).map_err(protocol)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                if self.authorized.is_some() {
                    return Err(IngestError::Refused("one publish per connection".into()));
                }
                let checked = match StreamKey::parse(&stream_key) {
                    Ok(stream) => match self
                        .ctx
                        .catalog
                        .authorize_publisher(&stream.channel, &stream.key)
                        .await
                    {
                        // One origin per channel: refused at once, the origin named, when
                        // another node is live there (the claim at go-live decides races).
                        Ok(owner) => match self
                            .ctx
                            .catalog
                            .check_not_origin_elsewhere(&stream.channel)
                            .await
                        {
                            Ok(()) => Ok(Authorized { stream, owner }),
                            Err(err) => Err(IngestError::Refused(err.to_string())),
                        },
                        Err(err) => Err(IngestError::Refused(err.to_string())),
                    },
                    Err(err) => Err(err),
                };
                match checked {
                    Ok(auth) => {
                        info!(channel = %auth.stream.channel, station = %auth.owner.station, "RTMP publish accepted");
                        self.authorized = Some(auth);
                        session.accept_request(request_id).map_err(protocol)
                    }
                    Err(err) => {
                        reject(session, sock, request_id, &err.to_string()).await;
                        Err(err)
                    }
                }
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                self.media.has_video = Some(metadata.video_codec_id.is_some());
                self.media.has_audio = Some(metadata.audio_codec_id.is_some());
                self.media.frame_rate = metadata.video_frame_rate.map(f64::from);
                Ok(Vec::new())
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.video_tag(&data, i64::from(timestamp.value)).await?;
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.audio_tag(&data, i64::from(timestamp.value)).await?;
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.finished = true;
                Ok(Vec::new())
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let refusal = "this server does not play RTMP; watch over WHEP";
                reject(session, sock, request_id, refusal).await;
                Err(IngestError::Refused(refusal.into()))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// One FLV VIDEODATA tag body, once the publish was accepted.
    async fn video_tag(&mut self, tag: &[u8], ts_ms: i64) -> Result<(), IngestError> {
        if self.authorized.is_none() {
            return Err(IngestError::Protocol(
                "media before a successful publish".into(),
            ));
        }
        if let Some(packet) = self.media.demux.video(tag, ts_ms)? {
            self.media_packet(packet).await?;
        }
        Ok(())
    }

    /// One FLV AUDIODATA tag body, once the publish was accepted.
    async fn audio_tag(&mut self, tag: &[u8], ts_ms: i64) -> Result<(), IngestError> {
        if self.authorized.is_none() {
            return Err(IngestError::Protocol(
                "media before a successful publish".into(),
            ));
        }
        if let Some(packet) = self.media.demux.audio(tag, ts_ms)? {
            self.media_packet(packet).await?;
        }
        Ok(())
    }

    async fn media_packet(&mut self, packet: SourcePacket) -> Result<(), IngestError> {
        if let Some(live) = &self.media.live {
            return Ok(live.transcoder.push(packet).await?);
        }
        self.media.pending.push(packet);
        let m = &self.media;
        let video_known = m.demux.avc_record.is_some() || m.has_video == Some(false);
        let audio_known = m.demux.aac_config.is_some() || m.has_audio == Some(false);
        let waited = match (m.pending.first(), m.pending.last()) {
            (Some(a), Some(b)) => (b.dts_us - a.dts_us) / 1000 >= HEADER_WAIT_MS,
            _ => false,
        };
        if (video_known && audio_known) || waited {
            self.go_live().await?;
        }
        Ok(())
    }

    async fn go_live(&mut self) -> Result<(), IngestError> {
        let Some(auth) = &self.authorized else {
            return Ok(());
        };
        let m = &mut self.media;
        // A new sequence header mid-stream would need new decoders: keep these.
        m.demux.freeze_configs();
        let video = m
            .demux
            .avc_record
            .as_ref()
            .map(|r| VideoInput::h264_avcc(r, m.frame_rate))
            .transpose()?;
        let audio = m
            .demux
            .aac_config
            .as_ref()
            .map(|c| AudioInput::aac(c))
            .transpose()?;
        let channel = auth.stream.channel.clone();
        let options = transcode_options(&self.ctx, channel.as_str());
        let (transcoder, encoded) = Transcoder::start(video, audio, &options)?;
        let started = now_ms();
        let title = auth.stream.title.clone();
        // One origin per channel: a publisher live on another node keeps it.
        self.ctx
            .catalog
            .check_not_origin_elsewhere(&channel)
            .await?;
        // A publisher back within the reconnect grace continues its session.
        let resumed = self.ctx.relay.resume(channel.clone()).await?;
        let session = match resumed {
            Some(session) => session,
            None => {
                self.ctx
                    .catalog
                    .open_session(
                        &channel,
                        auth.owner.station_id,
                        SessionKind::Lecture,
                        &title,
                        SessionSource::Rtmp,
                        started,
                    )
                    .await?
            }
        };
        let tracks = local_tracks(transcoder.tracks());
        let claimed = self.ctx.catalog.claim_channel(&channel, session).await;
        let published = match claimed {
            Ok(()) => {
                self.ctx
                    .relay
                    .publish_local(channel.clone(), session, title, started, tracks)
                    .await
            }
            Err(conflict) => {
                let catalog = &self.ctx.catalog;
                let _ = match resumed {
                    Some(_) => catalog.close_session(session, now_ms()).await,
                    None => catalog.discard_session(session, now_ms()).await,
                };
                return Err(conflict.into());
            }
        };
        let publisher = match published {
            Ok(p) => p,
            Err(err) => {
                // Never live: a row opened for this attempt goes (no 场次).
                let catalog = &self.ctx.catalog;
                let _ = match resumed {
                    Some(_) => catalog.close_session(session, now_ms()).await,
                    None => catalog.discard_session(session, now_ms()).await,
                };
                return Err(err.into());
            }
        };
        info!(%channel, %session, passthrough = transcoder.video_passthrough(), "RTMP source live");
        let forwarder = tokio::spawn(forward(
            encoded,
            publisher,
            transcoder.keyframe_requester(),
            0,
            crate::media::Codec::H264,
        ));
        for packet in std::mem::take(&mut m.pending) {
            transcoder.push(packet).await?;
        }
        m.live = Some(Live {
            transcoder,
            forwarder,
            session,
        });
        Ok(())
    }

    /// Flushes the transcoder and waits for the last media to reach the relay; the
    /// session ends when the forwarder drops its publisher.
    async fn end(&mut self) {
        if let Some(live) = self.media.live.take() {
            live.transcoder.finish();
            if tokio::time::timeout(Duration::from_secs(5), live.forwarder)
                .await
                .is_err()
            {
                warn!(session = %live.session, "RTMP source did not drain within 5 s");
            }
        }
    }
}

/// The FLV side of an RTMP publish, sans IO: turns VIDEODATA / AUDIODATA tag bodies (as
/// `rml_rtmp` hands them over, with their RTMP timestamps) into [`SourcePacket`]s and keeps
/// the sequence headers (the AVC decoder configuration record and the AAC
/// AudioSpecificConfig). H.264 and AAC only; anything else is refused with what to send.
#[derive(Debug, Default)]
pub struct FlvDemux {
    /// The AVCDecoderConfigurationRecord (SPS/PPS), once the publisher sent it.
    pub avc_record: Option<Bytes>,
    /// The AAC AudioSpecificConfig, once the publisher sent it.
    pub aac_config: Option<Bytes>,
    /// Decoders were built from the headers: later sequence headers are ignored.
    frozen: bool,
}

impl FlvDemux {
    /// Keeps the current sequence headers from now on (the transcoder was built from them).
    pub fn freeze_configs(&mut self) {
        self.frozen = true;
    }

    /// One FLV VIDEODATA body: `[frame type|codec][AVC packet type][composition time
    /// SI24][data]`. Returns the coded picture, or `None` for headers and end-of-sequence.
    pub fn video(&mut self, tag: &[u8], ts_ms: i64) -> Result<Option<SourcePacket>, IngestError> {
        if tag.len() < 5 {
            return Ok(None);
        }
        let codec = tag[0] & 0x0f;
        if codec != FLV_CODEC_AVC {
            return Err(IngestError::Refused(format!(
                "FLV video codec id {codec} is not supported; send H.264 (AVC)"
            )));
        }
        let keyframe = tag[0] >> 4 == 1;
        let cts = {
            let raw = (i32::from(tag[2]) << 16) | (i32::from(tag[3]) << 8) | i32::from(tag[4]);
            (raw << 8) >> 8 // sign-extend 24 bits
        };
        let body = Bytes::copy_from_slice(&tag[5..]);
        Ok(match tag[1] {
            0 => {
                if !self.frozen {
                    self.avc_record = Some(body);
                }
                None
            }
            1 => Some(SourcePacket {
                kind: MediaKind::Video,
                data: body,
                pts_us: (ts_ms + i64::from(cts)) * 1000,
                dts_us: ts_ms * 1000,
                keyframe,
            }),
            _ => None,
        })
    }

    /// One FLV AUDIODATA body: `[format|rate|size|type][AAC packet type][data]`. Returns
    /// the AAC frame, or `None` for the sequence header.
    pub fn audio(&mut self, tag: &[u8], ts_ms: i64) -> Result<Option<SourcePacket>, IngestError> {
        if tag.len() < 2 {
            return Ok(None);
        }
        let format = tag[0] >> 4;
        if format != FLV_SOUND_AAC {
            return Err(IngestError::Refused(format!(
                "FLV sound format {format} is not supported; send AAC"
            )));
        }
        let body = Bytes::copy_from_slice(&tag[2..]);
        Ok(match tag[1] {
            0 => {
                if !self.frozen {
                    self.aac_config = Some(body);
                }
                None
            }
            _ => Some(SourcePacket {
                kind: MediaKind::Audio,
                data: body,
                pts_us: ts_ms * 1000,
                dts_us: ts_ms * 1000,
                keyframe: true,
            }),
        })
    }
}

async fn reject(session: &mut ServerSession, sock: &mut TcpStream, request_id: u32, why: &str) {
    if let Ok(results) = session.reject_request(request_id, "NetStream.Publish.Rejected", why) {
        for result in results {
            if let ServerSessionResult::OutboundResponse(packet) = result {
                let _ = sock.write_all(&packet.bytes).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_parse_and_say_what_is_wrong() {
        let k = StreamKey::parse("st-1?key=fy_abc&title=%E5%BD%B1+1").unwrap();
        assert_eq!(k.channel.as_str(), "st-1");
        assert_eq!(k.key, "fy_abc");
        assert_eq!(k.title, "影 1");
        let err = StreamKey::parse("st-1").unwrap_err().to_string();
        assert!(err.contains("CHANNEL?key=STREAMKEY"), "{err}");
        assert!(StreamKey::parse("Bad Name?key=x").is_err());
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        let fits = format!("st-1?key=k&title={}", "影".repeat(MAX_TITLE_CHARS));
        assert_eq!(StreamKey::parse(&fits).unwrap().title.chars().count(), 200);
        let long = format!("st-1?key=k&title={}", "影".repeat(MAX_TITLE_CHARS + 1));
        let err = StreamKey::parse(&long).unwrap_err().to_string();
        assert!(err.contains("201 characters; at most 200"), "{err}");
    }
}

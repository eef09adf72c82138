//! Pull sources: the server opens an RTSP/SRT/RTMP/HTTP URL with libavformat and feeds the
//! channel while media flows. When the input fails or ends, the session ends (the channel
//! goes not-live; connected viewers stay and resume with the next session) and the server
//! retries with backoff: 1 s, doubling to 30 s, back to 1 s after a good connection.
//! Sources are read from the catalog every second, so `feiyan source add` on a running
//! server takes effect without a restart; disabled sources and those held since their
//! station's key rotated are not opened.
//!
//! What a source may reach: libavformat opens it with a `protocol_whitelist` for its
//! scheme ([`protocol_whitelist`]), so an HLS playlist or any other nested input cannot
//! name `file:`, `concat:`, `subfile:` or `data:` URLs; an http(s) host on a private
//! address is refused unless `[ingest] allow_private_sources` ([`check_host`]).
//! Timestamps: a source whose clock jumps (a camera reboot, an encoder restart, a
//! concatenated stream) is paced on a continuous timeline, and pacing never sleeps past a
//! stop request ([`pace`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use super::{IngestContext, IngestError, forward, local_tracks, transcode_options};
use crate::audience::now_ms;
use crate::catalog::{PullSource, SessionKind, SessionSource, source_scheme};
use crate::ids::{ChannelName, PullSourceId, SessionId};
use crate::media::MediaKind;
use crate::redact::{redact_url, redact_urls_in};
use crate::transcode::demux::Demuxer;
use crate::transcode::{SourcePacket, TranscodeError, Transcoder};

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Network reads that stall this long fail (then the source retries).
const IO_TIMEOUT_US: &str = "5000000";
const CATALOG_POLL: Duration = Duration::from_secs(1);

/// Where a pull source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Opening the URL.
    Connecting,
    /// Media is flowing into the channel.
    Connected,
    /// Waiting before the next attempt.
    Retrying,
    /// Disabled by its station (shown in listings only; not running).
    Disabled,
    /// Held since its station's key rotated, until enabled with the new key (listings
    /// only; not running).
    NeedsConfirm,
}

/// A source's status as `GET /api/sources` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Source id.
    pub id: PullSourceId,
    /// Channel it feeds.
    pub channel: String,
    /// URL without credentials and query-string secrets.
    pub url: String,
    /// Current state.
    pub state: SourceState,
    /// Whether its station wants it connected.
    pub enabled: bool,
    /// Held since its station's key rotated: enabling it with the new key confirms it.
    pub needs_confirm: bool,
    /// Connection attempts so far (absent while not running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    /// Why the last attempt or connection ended.
    pub last_error: Option<String>,
    /// Delay before the next attempt, while retrying.
    pub retry_in_ms: Option<u64>,
    /// The live session while connected.
    pub session_id: Option<SessionId>,
    /// When the state last changed, unix ms.
    pub since_ms: i64,
}

/// The `[ingest]` rules for adding sources, which the HTTP API and the CLI apply.
#[derive(Debug, Clone, Copy)]
pub struct SourceRules {
    /// `[ingest] max_sources_per_channel`.
    pub max_per_channel: usize,
    /// `[ingest] allow_private_sources`.
    pub allow_private: bool,
}

/// Statuses of running sources, shared with HTTP handlers.
#[derive(Debug)]
pub struct PullBoard {
    /// What adding a source must pass (the API reads it here).
    pub rules: SourceRules,
    // A std Mutex: held only to copy or replace an entry, never across an await.
    sources: Mutex<HashMap<PullSourceId, SourceStatus>>,
}

impl PullBoard {
    /// An empty board applying `rules`.
    pub fn new(rules: SourceRules) -> PullBoard {
        PullBoard {
            rules,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Every running source, by id.
    pub fn list(&self) -> Vec<SourceStatus> {
        let mut out: Vec<_> = self.lock().values().cloned().collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// One source.
    pub fn get(&self, id: PullSourceId) -> Option<SourceStatus> {
        self.lock().get(&id).cloned()
    }

    /// How `source` (a catalog row) stands: its running status, or disabled / held /
    /// about to connect (the supervisor picks new rows up within a second).
    pub fn view(&self, source: &PullSource) -> SourceStatus {
        let running = source.runs().then(|| self.get(source.id)).flatten();
        let mut status = running.unwrap_or_else(|| SourceStatus {
            id: source.id,
            channel: source.channel.clone(),
            url: redact_url(&source.url),
            state: if !source.enabled {
                SourceState::Disabled
            } else if source.needs_confirm {
                SourceState::NeedsConfirm
            } else {
                SourceState::Connecting
            },
            enabled: source.enabled,
            needs_confirm: source.needs_confirm,
            attempts: None,
            last_error: None,
            retry_in_ms: None,
            session_id: None,
            since_ms: now_ms(),
        });
        status.enabled = source.enabled;
        status.needs_confirm = source.needs_confirm;
        status
    }

    fn update(&self, id: PullSourceId, change: impl FnOnce(&mut SourceStatus)) {
        if let Some(status) = self.lock().get_mut(&id) {
            change(status);
            status.since_ms = now_ms();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PullSourceId, SourceStatus>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps one runner per enabled source until `stop` flips.
pub(crate) async fn supervisor(
    ctx: Arc<IngestContext>,
    board: Arc<PullBoard>,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: HashMap<PullSourceId, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    loop {
        match ctx.catalog.list_sources().await {
            Ok(sources) => {
                let mut enabled: HashMap<PullSourceId, PullSource> = sources
                    .into_iter()
                    .filter(PullSource::runs)
                    .map(|s| (s.id, s))
                    .collect();
                // In a cluster each source runs on the one node holding its lease (taken
                // over once that node is gone); a single server holds every lease.
                let mut leased = HashMap::new();
                for (id, source) in enabled.drain() {
                    match ctx.catalog.take_lease(&format!("source:{}", id.0)).await {
                        Ok(true) => {
                            leased.insert(id, source);
                        }
                        Ok(false) => {}
                        Err(err) => warn!(%err, source = id.0, "cannot take the source's lease"),
                    }
                }
                let enabled = leased;
                running.retain(|id, (halt, task)| {
                    let keep = enabled.contains_key(id) && !task.is_finished();
                    if !keep {
                        let _ = halt.send(true);
                        board.lock().remove(id);
                    }
                    keep
                });
                for (id, source) in enabled {
                    if running.contains_key(&id) {
                        continue;
                    }
                    board.lock().insert(
                        id,
                        SourceStatus {
                            id,
                            channel: source.channel.clone(),
                            url: redact_url(&source.url),
                            state: SourceState::Connecting,
                            enabled: true,
                            needs_confirm: false,
                            attempts: Some(0),
                            last_error: None,
                            retry_in_ms: None,
                            session_id: None,
                            since_ms: now_ms(),
                        },
                    );
                    let (halt, halted) = watch::channel(false);
                    let span = info_span!("pull", source = id.0, channel = %source.channel);
                    let task = tokio::spawn(
                        run_source(ctx.clone(), board.clone(), source, halted).instrument(span),
                    );
                    running.insert(id, (halt, task));
                }
            }
            Err(err) => warn!(%err, "cannot read pull sources"),
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(CATALOG_POLL) => {}
        }
    }
    // Every source is told first, so their stops overlap.
    for (halt, _) in running.values() {
        let _ = halt.send(true);
    }
    for (_, (_, task)) in running {
        let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
    }
}

async fn run_source(
    ctx: Arc<IngestContext>,
    board: Arc<PullBoard>,
    source: PullSource,
    mut halt: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        board.update(source.id, |s| {
            s.state = SourceState::Connecting;
            s.attempts = Some(s.attempts.unwrap_or(0) + 1);
            s.retry_in_ms = None;
        });
        let (connected, ended) = attempt(&ctx, &board, &source, halt.clone()).await;
        if *halt.borrow() {
            break;
        }
        if connected {
            backoff = BACKOFF_MIN;
        }
        warn!(%ended, retry_in_s = backoff.as_secs(), "pull source down");
        board.update(source.id, |s| {
            s.state = SourceState::Retrying;
            s.last_error = Some(ended.clone());
            s.retry_in_ms = Some(backoff.as_millis() as u64);
            s.session_id = None;
        });
        tokio::select! {
            _ = halt.changed() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: open, go live, play until the input ends or fails. Returns whether
/// media flowed and why it ended.
async fn attempt(
    ctx: &IngestContext,
    board: &PullBoard,
    source: &PullSource,
    mut halt: watch::Receiver<bool>,
) -> (bool, String) {
    let Some(channel) = ChannelName::parse(&source.channel) else {
        return (false, format!("invalid channel name {:?}", source.channel));
    };
    let Some(scheme) = source_scheme(&source.url) else {
        return (
            false,
            format!("{} is not a source URL", redact_url(&source.url)),
        );
    };
    // Checked again before every connection: the name may resolve elsewhere by now.
    if let Err(why) = check_host(&source.url, ctx.config.allow_private_sources).await {
        return (false, why);
    }
    let url = source.url.clone();
    let options = transcode_options(ctx, channel.as_str());
    let opened = tokio::task::spawn_blocking(move || {
        let mut demuxer = Demuxer::open(
            &url,
            &[
                ("rw_timeout", IO_TIMEOUT_US),
                ("timeout", IO_TIMEOUT_US),
                ("protocol_whitelist", protocol_whitelist(scheme)),
            ],
        )?;
        let (transcoder, encoded) =
            Transcoder::start(demuxer.take_video(), demuxer.take_audio(), &options)?;
        Ok::<_, TranscodeError>((demuxer, transcoder, encoded))
    })
    .await;
    let (demuxer, transcoder, encoded) = match opened {
        Ok(Ok(parts)) => parts,
        Ok(Err(err)) => return (false, redact_urls_in(&err.to_string())),
        Err(err) => return (false, format!("open task failed: {err}")),
    };
    let live = async {
        let owner = ctx.catalog.channel_owner(&channel).await?;
        ctx.catalog.check_not_origin_elsewhere(&channel).await?;
        let started = now_ms();
        let title = String::new();
        // A camera back within the reconnect grace continues its session.
        let session = match ctx.relay.resume(channel.clone()).await? {
            Some(session) => session,
            None => {
                ctx.catalog
                    .open_session(
                        &channel,
                        owner.station_id,
                        SessionKind::Lecture,
                        &title,
                        SessionSource::Pull,
                        started,
                    )
                    .await?
            }
        };
        let tracks = local_tracks(transcoder.tracks());
        if let Err(conflict) = ctx.catalog.claim_channel(&channel, session).await {
            let _ = ctx.catalog.close_session(session, now_ms()).await;
            return Err(IngestError::from(conflict));
        }
        match ctx
            .relay
            .publish_local(channel.clone(), session, title, started, tracks)
            .await
        {
            Ok(publisher) => Ok((session, publisher)),
            Err(err) => {
                let _ = ctx.catalog.close_session(session, now_ms()).await;
                Err(IngestError::from(err))
            }
        }
    }
    .await;
    let (session, publisher) = match live {
        Ok(parts) => parts,
        Err(err) => return (false, err.to_string()),
    };
    info!(%session, passthrough = transcoder.video_passthrough(), "pull source live");
    board.update(source.id, |s| {
        s.state = SourceState::Connected;
        s.session_id = Some(session);
    });
    let forwarder = tokio::spawn(forward(
        encoded,
        publisher,
        transcoder.keyframe_requester(),
        0,
        crate::media::Codec::H264,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = stop.clone();
    // The reader thread logs under the source's span (its id and channel).
    let span = tracing::Span::current();
    let reader = tokio::task::spawn_blocking(move || {
        span.in_scope(|| pace(demuxer, transcoder, &stop_reader))
    });
    let watcher = tokio::spawn(async move {
        let _ = halt.changed().await;
        stop.store(true, Ordering::Relaxed);
    });
    let ended = match reader.await {
        Ok(Ok(())) => "the source ended its stream".to_string(),
        Ok(Err(err)) => redact_urls_in(&err.to_string()),
        Err(err) => format!("reader thread failed: {err}"),
    };
    watcher.abort();
    let _ = forwarder.await;
    (true, ended)
}

/// The protocols libavformat may open for a source of `scheme` (checked with the ffmpeg
/// CLI against FFmpeg 5.1): the scheme's own and the transports beneath it, nothing that
/// reads local files (`file`, `concat`, `subfile`, `data`, `pipe`). HLS playlists and their
/// segments and keys (`crypto`) inherit the list.
pub fn protocol_whitelist(scheme: &str) -> &'static str {
    match scheme {
        // RTSP control over TCP, media over RTP/UDP (or interleaved on the TCP).
        "rtsp" => "rtsp,rtp,udp,tcp",
        "rtsps" => "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
        // libsrt carries its own UDP.
        "srt" => "srt",
        "rtmp" => "rtmp,tcp",
        "rtmps" => "rtmps,tls,tcp",
        // Progressive streams and HLS (a playlist on https may name http segments and
        // AES-128 keys).
        "http" | "https" => "http,https,tcp,tls,crypto",
        _ => "none",
    }
}

/// Whether `ip` is an address a station should not reach through the server without
/// `[ingest] allow_private_sources`: loopback, private, carrier-grade NAT, link-local,
/// unspecified, broadcast, unique-local, and IPv4 embedded in IPv6 (mapped, NAT64).
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_address(IpAddr::V4(v4));
            }
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return is_private_address(IpAddr::from([o[12], o[13], o[14], o[15]]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Host and port of an http(s) URL's authority (`[v6]` brackets removed).
fn http_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// For http(s) sources without `allow_private`: resolves the host and refuses it when any
/// of its addresses is private ([`is_private_address`]). Other schemes pass (IP cameras
/// on the LAN are what RTSP, SRT and RTMP sources are for).
///
/// Residual risk, accepted: libavformat resolves the name again when it connects, so a
/// name whose DNS answer changes in between (DNS rebinding) can still reach a private
/// address, as can an HTTP redirect or an HLS playlist naming segments on another host;
/// the check runs again before every connection, and the protocol whitelist keeps all of
/// them on http(s).
pub async fn check_host(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private || !matches!(source_scheme(url), Some("http" | "https")) {
        return Ok(());
    }
    let Some((host, port)) = http_host_port(url) else {
        return Err(format!(
            "{}: no host in the URL (expected http(s)://HOST[:PORT]/PATH)",
            redact_url(url)
        ));
    };
    let lookup = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await;
    let addrs: Vec<IpAddr> = match lookup {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        Ok(Err(err)) => return Err(format!("cannot resolve {host}: {err}")),
        Err(_) => return Err(format!("cannot resolve {host}: no answer within 5 s")),
    };
    match addrs.iter().find(|ip| is_private_address(**ip)) {
        Some(ip) => Err(format!(
            "{host} is a private address ({ip}); http(s) sources on the server's own \
             network need [ingest] allow_private_sources = true"
        )),
        None if addrs.is_empty() => Err(format!("cannot resolve {host}: no addresses")),
        None => Ok(()),
    }
}

/// A timestamp step (forward or back, between consecutive packets of any track) larger
/// than this is a discontinuity of the source's clock, not its pace.
const MAX_STEP_US: i64 = 3_000_000;
/// Where a discontinuity puts the next packet: this long after the last one.
const DISCONTINUITY_GAP_US: i64 = 40_000;
/// Packets this far ahead of (or behind) the wall clock re-anchor pacing.
const MAX_DRIFT: Duration = Duration::from_secs(3);
/// Longest sleep between looks at the stop flag.
const PACE_SLICE: Duration = Duration::from_millis(100);
/// Clock offsets remembered, so packets of the old clock still interleaved with the new
/// one (audio and video are muxed up to a second apart) keep theirs.
const KEPT_OFFSETS: usize = 4;

/// Maps a source's timestamps onto a continuous timeline: a jump of the source's clock
/// (hours forward, or backwards) becomes a 40 ms step, so pacing, the transcoder, HLS and
/// recording never see it. Pure, so tests drive it packet by packet.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Offsets (µs, added to the source's timestamps) of the clocks seen, newest last.
    offsets: Vec<i64>,
    /// The last mapped decode time, any track.
    last_us: Option<i64>,
    /// The last mapped decode time per track (video, audio), kept increasing.
    last_by_track: [Option<i64>; 2],
}

impl Timeline {
    /// Moves `packet` onto the timeline; true when its clock jumped here.
    pub fn map(&mut self, packet: &mut SourcePacket) -> bool {
        let mut jumped = false;
        let offset = match self.last_us {
            None => {
                self.offsets.push(0);
                0
            }
            Some(last) => {
                let fits = self
                    .offsets
                    .iter()
                    .rev()
                    .find(|o| (packet.dts_us + **o - last).abs() <= MAX_STEP_US);
                match fits {
                    Some(o) => *o,
                    None => {
                        jumped = true;
                        let o = last + DISCONTINUITY_GAP_US - packet.dts_us;
                        if self.offsets.len() == KEPT_OFFSETS {
                            self.offsets.remove(0);
                        }
                        self.offsets.push(o);
                        o
                    }
                }
            }
        };
        let track = match packet.kind {
            MediaKind::Video => 0,
            MediaKind::Audio => 1,
        };
        let mut shift = offset;
        if let Some(prev) = self.last_by_track[track]
            && packet.dts_us + shift <= prev
        {
            shift = prev + 1 - packet.dts_us;
        }
        packet.dts_us += shift;
        packet.pts_us += shift;
        self.last_by_track[track] = Some(packet.dts_us);
        self.last_us = Some(packet.dts_us);
        jumped
    }
}

/// Feeds a source's packets to the transcoder in real time by their timestamps, on a
/// continuous [`Timeline`]. Returns when the input ends or fails, or within
/// [`PACE_SLICE`] of `halt` (a read blocked on the network returns within the source's
/// I/O timeout).
fn pace(
    mut demuxer: Demuxer,
    transcoder: Transcoder,
    halt: &AtomicBool,
) -> Result<(), TranscodeError> {
    let mut timeline = Timeline::default();
    let mut jumps = 0u64;
    // (wall clock, timeline µs) of the packet pacing counts from.
    let mut anchor: Option<(Instant, i64)> = None;
    while !halt.load(Ordering::Relaxed) {
        let Some(mut packet) = demuxer.read()? else {
            break;
        };
        let source_dts = packet.dts_us;
        if timeline.map(&mut packet) {
            jumps += 1;
            if jumps <= 3 || jumps.is_power_of_two() {
                warn!(
                    jumps,
                    source_dts_us = source_dts,
                    "the source's timestamps jumped; continuing without a pause"
                );
            }
        }
        let (start, origin) = *anchor.get_or_insert((Instant::now(), packet.dts_us));
        let due = Duration::from_micros(u64::try_from(packet.dts_us - origin).unwrap_or(0));
        let elapsed = start.elapsed();
        if due > elapsed + MAX_DRIFT || elapsed > due + MAX_DRIFT {
            // Far ahead (a fast clock) or behind (a stall): count from here.
            anchor = Some((Instant::now(), packet.dts_us));
        } else {
            while !halt.load(Ordering::Relaxed) {
                let elapsed = start.elapsed();
                if due <= elapsed {
                    break;
                }
                std::thread::sleep((due - elapsed).min(PACE_SLICE));
            }
        }
        if halt.load(Ordering::Relaxed) {
            break;
        }
        transcoder.push_blocking(packet)?;
    }
    transcoder.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(kind: MediaKind, dts_us: i64) -> SourcePacket {
        SourcePacket {
            kind,
            data: Bytes::new(),
            pts_us: dts_us + 80_000,
            dts_us,
            keyframe: false,
        }
    }

    #[test]
    fn a_clock_jump_becomes_a_small_step_and_interleaved_old_packets_keep_their_place() {
        let mut t = Timeline::default();
        let ten_hours = 36_000_000_000;
        let mut out = Vec::new();
        for (kind, dts) in [
            (MediaKind::Video, 0),
            (MediaKind::Audio, 20_000),
            (MediaKind::Video, 40_000),
            // The new clock starts on video while audio of the old one is still muxed.
            (MediaKind::Video, ten_hours),
            (MediaKind::Audio, 40_000),
            (MediaKind::Audio, ten_hours + 10_000),
            (MediaKind::Video, ten_hours + 40_000),
            // And then backwards by an hour.
            (MediaKind::Video, ten_hours - 3_600_000_000),
        ] {
            let mut p = packet(kind, dts);
            let jumped = t.map(&mut p);
            assert_eq!(p.pts_us - p.dts_us, 80_000, "pts moves with dts");
            out.push((jumped, p.dts_us));
        }
        assert_eq!(
            out,
            vec![
                (false, 0),
                (false, 20_000),
                (false, 40_000),
                (true, 80_000),
                (false, 40_000),
                (false, 90_000),
                (false, 120_000),
                (true, 160_000),
            ]
        );
    }

    #[test]
    fn each_track_keeps_increasing() {
        let mut t = Timeline::default();
        let mut a = packet(MediaKind::Audio, 1_000_000);
        t.map(&mut a);
        let mut v = packet(MediaKind::Video, 9_000_000_000);
        assert!(t.map(&mut v));
        // The new clock's audio starts a little before its video.
        let mut a2 = packet(MediaKind::Audio, 8_999_990_000);
        t.map(&mut a2);
        assert!(a2.dts_us > a.dts_us, "{} > {}", a2.dts_us, a.dts_us);
    }

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_private_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "203.0.113.7",
            "2001:4860:4860::8888",
            "100.128.0.1",
        ] {
            assert!(!is_private_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn hosts_and_ports_come_from_the_authority() {
        assert_eq!(
            http_host_port("http://u:p@cam.example:8080/a?b=c"),
            Some(("cam.example".into(), 8080))
        );
        assert_eq!(http_host_port("https://[::1]/x"), Some(("::1".into(), 443)));
        assert_eq!(http_host_port("http://h"), Some(("h".into(), 80)));
        assert_eq!(http_host_port("http:///x"), None);
    }
}

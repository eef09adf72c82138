//! One task per live channel: it subscribes to the channel's access units, makes AAC where
//! the channel has none (one Opus->AAC encode per channel), cuts every H.264 rendition into
//! a [`Variant`], and keeps the playlist on air through a publisher's reconnect grace.
//! HTTP handlers read the state under a short lock and wait on the channel's progress
//! counter for blocking playlist reloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use bytes::Bytes;

use super::fmp4::AudioConfig;
use super::playlist::Form;
use super::segmenter::{Targets, Variant};
use super::upstream::Upstream;
use super::viewers::Viewers;
use crate::audience::{AudienceSink, now_ms};
use crate::device::DeviceIds;
use crate::ids::{ChannelName, SessionId};
use crate::media::{AccessUnit, Codec, Track};
use crate::relay::{ChannelMedia, LiveMedia, LiveNotice, SourceHandle};
use crate::transcode::aac::AacEncoder;

/// Headroom put in front of a session's timeline, so decode times before presentation
/// times (B-frames) stay positive.
const HEADROOM_90K: i64 = 10 * 90_000;
/// Opus units seen without the source's own AAC before the channel's Opus is encoded.
const OPUS_BEFORE_ENCODING: u32 = 50;
/// Samples in an AAC-LC frame.
const AAC_FRAME: i64 = 1024;
/// How long an ended channel's playlist (with `EXT-X-ENDLIST`) stays before 404.
const ENDED_KEPT: Duration = Duration::from_secs(10);

/// Where a session's finished segments go besides the live playlists: the recording for
/// replay (the recording module implements it; live HLS knows nothing of files).
pub trait SegmentSink: Send + Sync {
    /// A session went live on `channel`: where its segments go, if anywhere.
    fn begin(&self, channel: &ChannelName, session: SessionId) -> Option<Box<dyn SessionSink>>;
}

/// One session's segments, as a [`SegmentSink`] takes them.
pub trait SessionSink: Send {
    /// The source variant changed (called under the channel's lock after every change;
    /// the variant keeps its last few segments, so a sink that takes the ones it has not
    /// seen misses none).
    fn collect(&mut self, variant: &Variant);
    /// The session ended.
    fn end(self: Box<Self>);
}

/// What live HLS needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HlsSettings {
    /// Segment and part targets.
    pub targets: Targets,
    /// `[hls] reconnect_grace_secs`.
    pub grace: Duration,
    /// Salt for hashing players' addresses (the HTTP side's).
    pub salt: [u8; 16],
}

/// Live HLS: the channels on air and their players.
pub struct Hls {
    /// Targets, grace and salt.
    pub settings: HlsSettings,
    // A std RwLock: held only to look up or replace an entry, never across an await.
    channels: RwLock<HashMap<ChannelName, Arc<ChannelHls>>>,
    /// HLS players as attendance rows.
    pub viewers: Viewers,
    /// Checks and issues `vid`s.
    pub devices: Arc<DeviceIds>,
    /// Takes each session's source rendition for replay (none: nothing is recorded).
    recorder: Option<Arc<dyn SegmentSink>>,
    /// Sessions not cut here: in a cluster, an edge's copy of another node's session
    /// (its HLS comes from the origin through [`Hls::upstream`]).
    skip: OnceLock<SkipSession>,
    /// In a cluster: channels on air on another node, and the check of signed fetches.
    upstream: OnceLock<Arc<dyn Upstream>>,
}

/// Whether a session going live is cut elsewhere (see [`Hls::skip_sessions`]).
pub type SkipSession = Arc<dyn Fn(SessionId) -> bool + Send + Sync>;

/// One channel on air over HLS.
pub struct ChannelHls {
    // A std Mutex: the task and handlers hold it only to change or read the variants.
    state: Mutex<ChannelState>,
    /// Counts changes (a part, a segment, the end); blocking reloads wait on it.
    progress: watch::Sender<u64>,
}

/// What handlers read of a channel.
pub struct ChannelState {
    /// The catalog session on air.
    pub session: SessionId,
    /// Video renditions by index (`None`: not started yet).
    pub variants: Vec<Option<Variant>>,
    /// The renditions' names (`source` first).
    pub names: Vec<String>,
    /// The session ended: playlists end, and the channel goes soon.
    pub ended: bool,
    /// Counts changes of the state (every [`ChannelHls`] update), for `rendered`.
    version: u64,
    /// Media playlists as last rendered, by rendition and form, with the version they
    /// show: thousands of players reloading at once get one rendering (playlists carry
    /// no viewer id).
    rendered: HashMap<(usize, Form), (u64, Bytes)>,
}

impl ChannelHls {
    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&ChannelState) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn update<T>(&self, f: impl FnOnce(&mut ChannelState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // In the same critical section as the change: a cached playlist is never older
        // than the state a reader saw.
        state.version += 1;
        f(&mut state)
    }

    /// The media playlist of `rendition` in `form`, rendered by `render` only when the
    /// state changed since it was last rendered (`None` when `render` finds none).
    pub fn playlist(
        &self,
        rendition: usize,
        form: Form,
        render: impl FnOnce(&ChannelState) -> Option<String>,
    ) -> Option<Bytes> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let version = state.version;
        if let Some((v, text)) = state.rendered.get(&(rendition, form))
            && *v == version
        {
            return Some(text.clone());
        }
        let text = Bytes::from(render(&state)?);
        state
            .rendered
            .insert((rendition, form), (version, text.clone()));
        Some(text)
    }

    /// Progress now, and a receiver that sees the next change.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n += 1);
    }
}

impl Hls {
    /// Starts live HLS for every channel that goes live from now on.
    pub fn start(
        sources: SourceHandle,
        settings: HlsSettings,
        audience: AudienceSink,
        devices: Arc<DeviceIds>,
        recorder: Option<Arc<dyn SegmentSink>>,
    ) -> Arc<Hls> {
        let hls = Arc::new(Hls {
            settings,
            channels: RwLock::default(),
            viewers: Viewers::new(audience),
            devices,
            recorder,
            skip: OnceLock::new(),
            upstream: OnceLock::new(),
        });
        let notices = sources.live_notices();
        tokio::spawn(watch_channels(hls.clone(), sources, notices));
        let sweeper = Arc::downgrade(&hls);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let Some(hls) = sweeper.upgrade() else { return };
                hls.viewers.sweep(now_ms());
            }
        });
        hls
    }

    /// The server stops: HLS players' rows close and their queue end goes (call after the
    /// relay stopped, before the attendance writer finishes).
    pub fn shutdown(&self) {
        self.viewers.close();
    }

    /// Sessions for which `skip` holds are not cut here (set once, at start).
    pub fn skip_sessions(&self, skip: SkipSession) {
        let _ = self.skip.set(skip);
    }

    /// Channels on air on other nodes are answered by `upstream` (set once, at start).
    pub fn set_upstream(&self, upstream: Arc<dyn Upstream>) {
        let _ = self.upstream.set(upstream);
    }

    /// The other nodes' HLS, in a cluster.
    pub fn upstream(&self) -> Option<&Arc<dyn Upstream>> {
        self.upstream.get()
    }

    /// Prometheus lines of the cluster's HLS figures (empty outside a cluster).
    pub fn metrics(&self) -> String {
        self.upstream.get().map(|u| u.metrics()).unwrap_or_default()
    }

    /// A channel on air (live, in its grace, or just ended).
    pub fn channel(&self, channel: &ChannelName) -> Option<Arc<ChannelHls>> {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .cloned()
    }

    fn put(&self, channel: &ChannelName, hls: Option<Arc<ChannelHls>>) {
        let mut map = self.channels.write().unwrap_or_else(|e| e.into_inner());
        match hls {
            Some(h) => {
                map.insert(channel.clone(), h);
            }
            None => {
                map.remove(channel);
            }
        }
    }
}

/// Starts a channel task for every session going live, or hands the notice to the task
/// already running for the channel.
async fn watch_channels(
    hls: Arc<Hls>,
    sources: SourceHandle,
    mut notices: broadcast::Receiver<LiveNotice>,
) {
    let mut tasks: HashMap<ChannelName, mpsc::UnboundedSender<LiveNotice>> = HashMap::new();
    loop {
        let notice = match notices.recv().await {
            Ok(n) => n,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "HLS missed live notices");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if hls.skip.get().is_some_and(|skip| skip(notice.live.session)) {
            debug!(channel = %notice.channel, session = %notice.live.session, "not cut here: another node's session");
            continue;
        }
        let channel = notice.channel.clone();
        if let Some(tx) = tasks.get(&channel)
            && tx.send(notice.clone()).is_ok()
        {
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.insert(channel.clone(), tx);
        tasks.retain(|_, tx| !tx.is_closed());
        tokio::spawn(run_channel(
            hls.clone(),
            sources.clone(),
            channel,
            notice,
            rx,
        ));
    }
}

/// Where the channel's AAC comes from.
enum Audio {
    /// The channel has no audio.
    None,
    /// Not known yet: a server-side source may bring its original AAC.
    Unknown { opus_seen: u32 },
    /// The source's own AAC.
    Original(AudioConfig),
    /// Encoded here from the channel's Opus.
    Encoded(AacEncoder, AudioConfig),
}

impl Audio {
    fn config(&self) -> Option<Option<AudioConfig>> {
        match self {
            Audio::None => Some(None),
            Audio::Unknown { .. } => None,
            Audio::Original(c) | Audio::Encoded(_, c) => Some(Some(c.clone())),
        }
    }
}

fn aac_config(config: bytes::Bytes) -> AudioConfig {
    let (sample_rate, channels) =
        crate::transcode::mux::aac_rate_and_channels(&config).unwrap_or((48_000, 2));
    AudioConfig {
        config,
        sample_rate,
        channels: channels as u16,
    }
}

fn encoder(channel: &ChannelName) -> Audio {
    match AacEncoder::start(channel.as_str()) {
        Ok(enc) => {
            let config = aac_config(enc.config());
            Audio::Encoded(enc, config)
        }
        Err(err) => {
            warn!(%channel, ?err, "no AAC encoder: HLS of this channel has no audio");
            Audio::None
        }
    }
}

/// One channel's task.
struct ChannelTask {
    hls: Arc<Hls>,
    /// For the renditions' names as the relay offers them.
    sources: SourceHandle,
    channel: ChannelName,
    on_air: Arc<ChannelHls>,
    audio: Audio,
    /// Whether the audio track is there at all (from the live session).
    has_audio: bool,
    has_video: bool,
    /// Added to this epoch's times (90 kHz) once its first unit came; an epoch is a
    /// publisher's stay (a returning publisher starts another).
    shift: Option<i64>,
    /// End of the latest unit on the shifted timeline (90 kHz), where the next epoch goes.
    end_90k: i64,
    /// The publisher left; the grace runs out then.
    away_until: Option<Instant>,
    /// Renditions wait for a keyframe: ask the source for one now and then.
    next_keyframe_ask: Instant,
    /// Decode time of the last AAC frame on the sample clock, before the shift.
    last_audio: Option<i64>,
    /// The session's recording (the source rendition's segments), if it is recorded.
    recording: Option<Box<dyn SessionSink>>,
}

async fn run_channel(
    hls: Arc<Hls>,
    sources: SourceHandle,
    channel: ChannelName,
    first: LiveNotice,
    mut notices: mpsc::UnboundedReceiver<LiveNotice>,
) {
    let mut sub = match sources.subscribe(channel.clone()).await {
        Ok(s) => s,
        Err(err) => {
            warn!(%channel, ?err, "HLS could not subscribe to the channel");
            return;
        }
    };
    let on_air = Arc::new(ChannelHls {
        state: Mutex::new(ChannelState {
            session: first.live.session,
            variants: Vec::new(),
            names: Vec::new(),
            ended: false,
            version: 0,
            rendered: HashMap::new(),
        }),
        progress: watch::channel(0).0,
    });
    hls.put(&channel, Some(on_air.clone()));
    let mut task = ChannelTask {
        hls: hls.clone(),
        sources: sources.clone(),
        channel: channel.clone(),
        on_air,
        audio: Audio::None,
        has_audio: false,
        has_video: false,
        shift: None,
        end_90k: 0,
        away_until: None,
        next_keyframe_ask: Instant::now(),
        last_audio: None,
        recording: None,
    };
    task.live(&first.live, first.from_peer);
    let mut ended_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let aac = async {
            match &mut task.audio {
                Audio::Encoded(enc, _) => enc.recv().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            media = sub.media.recv() => match media {
                Ok(ChannelMedia::Unit(unit)) => task.unit(unit),
                Ok(ChannelMedia::Live(live)) => {
                    let from_peer = latest_notice(&mut notices, live.session).unwrap_or(false);
                    ended_at = None;
                    task.live(&live, from_peer);
                }
                Ok(ChannelMedia::Ended { session }) => task.away(session),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(%channel, missed = n, "HLS fell behind the channel; restarting at the next keyframe");
                    task.interrupt();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    task.end();
                    break;
                }
            },
            unit = aac => match unit {
                Some(unit) => task.audio_unit(unit),
                None => {
                    warn!(%channel, "the AAC encoder stopped: HLS goes on without audio");
                    task.audio = Audio::None;
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if task.away_until.is_some_and(|t| t <= now) {
                    task.end();
                    ended_at = Some(now);
                }
                if ended_at.is_some_and(|t| now.duration_since(t) >= ENDED_KEPT) {
                    break;
                }
                if ended_at.is_none() && task.away_until.is_none() && task.waiting() && now >= task.next_keyframe_ask {
                    task.next_keyframe_ask = now + Duration::from_secs(1);
                    sources.request_keyframe(channel.clone()).await;
                }
            }
        }
    }
    // Only remove the entry if it is still ours.
    let still_ours = hls
        .channel(&channel)
        .is_some_and(|c| Arc::ptr_eq(&c, &task.on_air));
    if still_ours {
        hls.put(&channel, None);
    }
    debug!(%channel, "HLS channel task ends");
}

/// Whether the newest notice for `session` said it comes from a WebRTC publisher.
fn latest_notice(
    notices: &mut mpsc::UnboundedReceiver<LiveNotice>,
    session: SessionId,
) -> Option<bool> {
    let mut found = None;
    while let Ok(n) = notices.try_recv() {
        if n.live.session == session {
            found = Some(n.from_peer);
        }
    }
    found
}

impl ChannelTask {
    /// The variants changed: the recording takes finished segments, waiting players wake.
    fn changed(&mut self) {
        if let Some(rec) = &mut self.recording {
            self.on_air.with(|s| {
                if let Some(Some(v)) = s.variants.first() {
                    rec.collect(v);
                }
            });
        }
        self.on_air.bump();
    }

    /// A session went live (a new one, or the one in its grace again).
    fn live(&mut self, live: &LiveMedia, from_peer: bool) {
        let (session, ended) = self.on_air.with(|s| (s.session, s.ended));
        let resumed = session == live.session && !ended && self.away_until.is_some();
        let fresh = session != live.session || ended;
        if fresh {
            if !ended && session != live.session {
                self.end();
            }
            info!(channel = %self.channel, session = %live.session, "HLS on air");
            self.on_air.update(|s| {
                s.session = live.session;
                s.variants.clear();
                s.ended = false;
            });
            self.end_90k = 0;
            if let Some(old) = self.recording.take() {
                old.end();
            }
        } else if resumed {
            info!(channel = %self.channel, session = %live.session, "publisher back within the grace: HLS continues after a discontinuity");
        }
        // The channel task's first session, or a new one: its recording (a returning
        // publisher's continues).
        if !resumed && self.recording.is_none() {
            self.recording = self
                .hls
                .recorder
                .as_ref()
                .and_then(|r| r.begin(&self.channel, live.session));
        }
        self.away_until = None;
        self.shift = None;
        self.last_audio = None;
        // A VP8 publisher's video comes as H.264 from its codec bridge, for the session.
        self.has_video = matches!(live.video, Some(Codec::H264 | Codec::Vp8));
        if live.video == Some(Codec::Vp8) {
            let sources = self.sources.clone();
            let channel = self.channel.clone();
            tokio::spawn(async move {
                if let Err(err) = sources
                    .want_bridge(channel.clone(), crate::relay::h264_codec())
                    .await
                {
                    warn!(%channel, %err, "no H.264 from this VP8 publisher: its HLS has no video");
                }
            });
        }
        self.has_audio = live.audio.is_some();
        if !self.has_audio {
            self.audio = Audio::None;
        } else if matches!(self.audio, Audio::None) || fresh {
            self.audio = if from_peer && live.audio == Some(Codec::Opus) {
                encoder(&self.channel)
            } else {
                Audio::Unknown { opus_seen: 0 }
            };
        }
        let mut names = vec!["source".to_string()];
        names.extend(live.renditions.iter().cloned());
        self.on_air.update(|s| s.names = names);
        self.changed();
    }

    /// The publisher left: the playlist stays for the grace.
    fn away(&mut self, session: SessionId) {
        if self.on_air.with(|s| s.session != session || s.ended) {
            return;
        }
        self.interrupt();
        self.away_until = Some(Instant::now() + self.hls.settings.grace);
    }

    /// Every variant finishes what it has and restarts at a keyframe after a discontinuity.
    fn interrupt(&mut self) {
        let changed = self.on_air.update(|s| {
            let mut changed = false;
            for v in s.variants.iter_mut().flatten() {
                changed |= v.interrupt();
            }
            changed
        });
        self.shift = None;
        if changed {
            self.changed();
        }
    }

    /// The session is over: playlists end.
    fn end(&mut self) {
        let session = self.on_air.update(|s| {
            for v in s.variants.iter_mut().flatten() {
                v.end();
            }
            s.ended = true;
            s.session
        });
        self.away_until = None;
        self.hls.viewers.session_ended(session);
        if let Audio::Encoded(..) = self.audio {
            self.audio = Audio::None; // drops the encoder: its thread ends
        }
        self.changed();
        if let Some(rec) = self.recording.take() {
            rec.end();
        }
    }

    /// Whether a rendition waits for its first keyframe.
    fn waiting(&self) -> bool {
        self.has_video
            && self.audio.config().is_some()
            && self.on_air.with(|s| {
                s.variants.is_empty()
                    || s.variants
                        .iter()
                        .any(|v| v.as_ref().is_none_or(|v| !v.started()))
            })
    }

    /// The shift of this epoch, fixed by its first unit (at `dts_90k`).
    fn shift(&mut self, dts_90k: i64) -> i64 {
        *self.shift.get_or_insert_with(|| {
            let gap = if self.end_90k == 0 {
                HEADROOM_90K
            } else {
                9_000
            };
            self.end_90k + gap - dts_90k
        })
    }

    fn unit(&mut self, unit: AccessUnit) {
        match (&unit.track, unit.codec) {
            (Track::Video { rendition }, Codec::H264) if self.has_video => {
                let rendition = usize::from(*rendition);
                let Some(audio) = self.audio.config() else {
                    return; // audio undecided: start at a keyframe once it is
                };
                let shift = self.shift(unit.dts);
                let mut unit = unit;
                unit.dts += shift;
                unit.pts += shift;
                self.end_90k = self.end_90k.max(unit.dts);
                let targets = self.hls.settings.targets;
                let has_video = self.has_video;
                // A rendition fed after the session went live (a WHIP ladder): its name.
                let qualities = (self.on_air.with(|s| s.names.len()) <= rendition)
                    .then(|| self.sources.status(&self.channel))
                    .flatten()
                    .map(|status| status.qualities);
                let changed = self.on_air.update(|s| {
                    if let Some(q) = qualities.filter(|q| q.len() > s.names.len()) {
                        s.names = q;
                    }
                    if s.variants.len() <= rendition {
                        s.variants.resize_with(rendition + 1, || None);
                    }
                    let v = s.variants[rendition]
                        .get_or_insert_with(|| Variant::new(targets, has_video, audio, 0));
                    v.push_video(unit, now_ms())
                });
                if changed {
                    self.changed();
                }
            }
            (Track::Audio, Codec::Opus) => match &mut self.audio {
                Audio::Encoded(enc, _) => {
                    enc.push(unit);
                }
                Audio::Unknown { opus_seen } => {
                    *opus_seen += 1;
                    if *opus_seen >= OPUS_BEFORE_ENCODING {
                        debug!(channel = %self.channel, "no AAC from the source: encoding its Opus");
                        self.audio = encoder(&self.channel);
                        if let Audio::Encoded(enc, _) = &self.audio {
                            enc.push(unit);
                        }
                    }
                }
                _ => {}
            },
            (Track::OriginalAac { config }, Codec::Aac) => {
                if let Audio::Unknown { .. } = self.audio {
                    self.audio = Audio::Original(aac_config(config.clone()));
                }
                if let Audio::Original(_) = self.audio {
                    self.audio_unit(unit);
                }
            }
            _ => {}
        }
    }

    /// One AAC unit (the source's or the encoder's) for every variant.
    fn audio_unit(&mut self, mut unit: AccessUnit) {
        // On the sample clock (sources hand AAC over in microseconds), each frame 1024
        // samples after the one before unless the source skipped: rounding never makes
        // a frame 1023 or 1025 samples long.
        let rate = match &self.audio {
            Audio::Original(c) | Audio::Encoded(_, c) => i64::from(c.sample_rate.max(1)),
            _ => return,
        };
        let from = i64::from(unit.timescale.max(1));
        if from != rate {
            unit.dts = unit.dts * rate / from;
            unit.pts = unit.pts * rate / from;
            unit.timescale = rate as u32;
        }
        if let Some(last) = self.last_audio
            && (unit.dts - (last + AAC_FRAME)).abs() <= AAC_FRAME / 8
        {
            unit.pts += last + AAC_FRAME - unit.dts;
            unit.dts = last + AAC_FRAME;
        }
        self.last_audio = Some(unit.dts);
        let shift_90k = self.shift(unit.dts * 90_000 / rate);
        let shift = shift_90k * rate / 90_000;
        unit.dts += shift;
        unit.pts += shift;
        if !self.has_video {
            self.end_90k = self.end_90k.max(unit.dts * 90_000 / rate);
            let Some(audio) = self.audio.config() else {
                return;
            };
            let targets = self.hls.settings.targets;
            self.on_air.update(|s| {
                if s.variants.is_empty() {
                    s.variants
                        .push(Some(Variant::new(targets, false, audio, 0)));
                }
            });
        }
        let at = now_ms();
        let changed = self.on_air.update(|s| {
            let mut changed = false;
            for v in s.variants.iter_mut().flatten() {
                changed |= v.push_audio(unit.clone(), at);
            }
            changed
        });
        if changed {
            self.changed();
        }
    }
}

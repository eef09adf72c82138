//! The hub: channels, their sources and viewers, the keyframe cache, PLI throttling and
//! who attends which session. It does no I/O and never reads a clock: every call takes
//! `now`, media for viewers goes out through the caller's [`Deliver`], and everything else
//! it decides comes back from [`Hub::poll_event`]. The engine owns the
//! sockets and WebRTC peers around it; the unit tests below drive it with plain packets.
//!
//! Channel state (source, codecs, caches) is kept apart from per-viewer output state
//! (header rewrite, SRTP, reports), which lives with the caller behind [`Deliver`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rustc_hash::{FxHashMap, FxHashSet};
use tracing::{debug, info, warn};

use super::media::starts_keyframe;
use super::media::{
    GopCache, HealthAction, RetransmitBudget, RetransmitBuffer, VideoCodec, ViewerHealth,
};
use super::{ChannelStatus, RelayCounters, RelayError};
use crate::config::SOURCE_QUALITY;
use crate::ids::{ChannelName, SessionId};
use crate::media::MediaKind;

/// A WebRTC peer (publisher or viewer), numbered by the engine's peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// A server-side source (RTMP ingest, pull source, film playout), numbered by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalId(pub u64);

/// What feeds a channel: one slot, whatever the kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A WHIP publisher.
    Peer(PeerKey),
    /// A server-side source.
    Local(LocalId),
    /// The channel's source on its home shard: this hub mirrors it (see
    /// `relay::shards`), fed the runs of packets the home forwarded.
    Origin,
}

/// The live session a source publishes (already a row in the catalog).
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The session row.
    pub id: SessionId,
    /// Its title, for the status board.
    pub title: String,
    /// Unix ms it started.
    pub started_at_ms: i64,
}

/// What a channel sends once live: the codecs viewers negotiate and the lower renditions.
#[derive(Debug, Clone, Default)]
pub struct LiveTracks {
    /// Video codec.
    pub video: Option<RTCRtpCodec>,
    /// Audio codec.
    pub audio: Option<RTCRtpCodec>,
    /// Names of the renditions sent beside the source video (video stream `i + 1`).
    pub renditions: Vec<String>,
}

/// The hub's settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Upper bound on cached packets of a keyframe group.
    pub gop_max_packets: usize,
    /// Minimum time between two keyframe requests to a source.
    pub pli_min_interval: Duration,
    /// Most viewers one channel accepts (those still connecting included).
    pub max_viewers_per_channel: usize,
    /// Most viewers of one channel still connecting at once.
    pub max_unconnected_per_channel: usize,
    /// Most viewers still connecting from one client address at once, across channels.
    pub max_unconnected_per_client: usize,
}

/// What the hub decided that is not media for a viewer. The engine acts on each.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// The channel's source should send a keyframe (already rate-limited).
    KeyframeWanted {
        /// The channel.
        channel: ChannelName,
        /// Its source.
        source: Source,
    },
    /// A viewer was sent its first packet of the channel's live session: it attends it
    /// from now (a viewer that connects but never gets media never attends).
    Attending {
        /// The viewer.
        viewer: PeerKey,
        /// The session watched.
        session: SessionId,
    },
    /// A viewer stops attending (it left, or the session ended).
    NotAttending {
        /// The viewer.
        viewer: PeerKey,
    },
    /// A channel went live with a source's tracks.
    Live {
        /// The channel.
        channel: ChannelName,
        /// The session it publishes.
        session: SessionId,
        /// What it sends.
        tracks: LiveTracks,
    },
    /// A live session ended.
    SessionEnded {
        /// The channel.
        channel: ChannelName,
        /// The session.
        session: SessionId,
    },
    /// A channel's public status changed (`None`: the channel is gone).
    Status {
        /// The channel.
        channel: ChannelName,
        /// What `/api/live` shows.
        status: Option<ChannelStatus>,
    },
    /// The viewer's link lost too much for too long: disconnect it.
    DropViewer {
        /// The viewer.
        viewer: PeerKey,
    },
    /// A viewer needs the channel's video in another codec: a feeder should attach to
    /// bridge stream `stream` ([`Hub::attach_bridge`]).
    BridgeWanted {
        /// The channel.
        channel: ChannelName,
        /// Its live session.
        session: SessionId,
        /// The bridge stream's index.
        stream: usize,
        /// The codec to encode.
        codec: RTCRtpCodec,
    },
}

/// Where the hub sends media for viewers: the per-viewer output (header rewrite, SRTP,
/// sockets) lives with the caller. One call per viewer per packet, no queue between.
pub trait Deliver {
    /// Sends one packet to a viewer; returns whether it went.
    fn send(&mut self, viewer: PeerKey, kind: MediaKind, packet: &rtp::Packet) -> bool;
    /// The viewer's stream breaks here (a new source, a skip to a keyframe): its next
    /// packet of `kind` (both kinds when `None`) starts a new run of sequence numbers.
    fn resync(&mut self, viewer: PeerKey, kind: Option<MediaKind>);
    /// Sends a video packet again (a retransmission) exactly as it was first sent to the
    /// viewer: under the same outgoing sequence number and timestamp, whatever resyncs
    /// came since; returns false, sending nothing, when it was never sent to it.
    fn resend(&mut self, viewer: PeerKey, packet: &rtp::Packet) -> bool;
    /// The hub is done with this viewer for this batch of packets.
    fn done(&mut self, viewer: PeerKey);
}

/// What a new viewer gets, decided before its peer connection is made.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The video codec of the stream it watches; its offer must take it.
    pub video: Option<RTCRtpCodec>,
    /// The audio codec of the channel.
    pub audio: Option<RTCRtpCodec>,
    /// Which video stream it watches (0 is the source).
    pub rendition: usize,
}

/// One video stream of a channel: the source (index 0) or a lower rendition, each with its
/// own keyframe group for fast start and its own retransmission buffer.
struct VideoStream {
    name: String,
    /// What this stream is encoded in: what its viewers' answers accept.
    codec: Option<RTCRtpCodec>,
    /// The server-side encoder that feeds it, when the channel's source does not (a WHIP
    /// publisher's ladder, a codec bridge); its packets are taken only for its streams.
    feeder: Option<LocalId>,
    /// A codec bridge: the source video in another codec for viewers that cannot take the
    /// source's (a VP8 rendition of H.264, H.264 from VP8). Not listed as a quality.
    bridge: bool,
    /// Its feeder stopped: no longer offered (indexes stay, so viewers' streams keep
    /// their numbers); a bridge comes back when wanted again.
    withdrawn: bool,
    /// Viewers watching it (connected or not), for its feeder to stop when idle.
    watchers: usize,
    gop: GopCache,
    /// Recent video packets, answering every viewer's NACKs.
    rtx: RetransmitBuffer,
}

impl VideoStream {
    fn new(name: &str, codec: Option<RTCRtpCodec>, gop_max: usize) -> VideoStream {
        VideoStream {
            name: name.to_string(),
            codec,
            feeder: None,
            bridge: false,
            withdrawn: false,
            watchers: 0,
            gop: GopCache::new(gop_max),
            rtx: RetransmitBuffer::default(),
        }
    }

    fn clear(&mut self) {
        self.gop.clear();
        self.rtx.clear();
    }

    /// Whether viewers may ask for it by name.
    fn offered(&self) -> bool {
        !self.bridge && !self.withdrawn
    }
}

struct Channel {
    /// The one source slot and the session it publishes.
    source: Option<(Source, LiveSession)>,
    /// Whether the source's media flows (a WHIP publisher goes live once its tracks open).
    live: bool,
    video_codec: Option<RTCRtpCodec>,
    audio_codec: Option<RTCRtpCodec>,
    video_kind: Option<VideoCodec>,
    /// The source video (0) and the renditions the live source sends beside it, then
    /// those server-side feeders send (see [`VideoStream::feeder`]).
    streams: Vec<VideoStream>,
    /// How many streams the source itself sends (the rest are fed).
    source_streams: usize,
    viewers: FxHashSet<PeerKey>,
    connected_viewers: usize,
    last_pli: Option<Instant>,
    /// Viewers of a codec bridge when the last session ended, with that codec: the next
    /// source to go live gives them a bridge of its own video (see `hub/feeders.rs`).
    parked: Vec<(PeerKey, RTCRtpCodec)>,
}

impl Channel {
    fn new(gop_max: usize) -> Channel {
        Channel {
            source: None,
            live: false,
            video_codec: None,
            audio_codec: None,
            video_kind: None,
            streams: vec![VideoStream::new(SOURCE_QUALITY, None, gop_max)],
            source_streams: 1,
            viewers: FxHashSet::default(),
            connected_viewers: 0,
            last_pli: None,
            parked: Vec::new(),
        }
    }

    /// What `?quality=` accepts now.
    fn qualities(&self) -> Vec<String> {
        self.streams
            .iter()
            .filter(|s| s.offered())
            .map(|s| s.name.clone())
            .collect()
    }

    /// The distinct feeders of its streams.
    fn feeders(&self) -> Vec<LocalId> {
        let mut ids: Vec<LocalId> = self.streams.iter().filter_map(|s| s.feeder).collect();
        ids.dedup();
        ids
    }

    /// The session being published, while media flows.
    fn live_session(&self) -> Option<&LiveSession> {
        self.source.as_ref().filter(|_| self.live).map(|(_, s)| s)
    }

    fn status(&self) -> ChannelStatus {
        match self.live_session() {
            Some(s) => ChannelStatus {
                live: true,
                session_id: Some(s.id),
                title: s.title.clone(),
                started_at_ms: s.started_at_ms,
                viewers: self.connected_viewers,
                qualities: self.qualities(),
                stream_viewers: self.streams.iter().map(|s| s.watchers).collect(),
            },
            None => ChannelStatus {
                live: false,
                session_id: None,
                title: String::new(),
                started_at_ms: 0,
                viewers: self.connected_viewers,
                qualities: Vec::new(),
                stream_viewers: Vec::new(),
            },
        }
    }

    fn idle(&self) -> bool {
        self.source.is_none() && self.viewers.is_empty()
    }
}

/// A viewer as the hub sees it: which stream it watches and where it stands.
struct Viewer {
    channel: ChannelName,
    /// Which of the channel's video streams it watches (0 is the source).
    rendition: usize,
    connected: bool,
    /// When its keyframe-group replay is due; live video waits until it is done.
    replay_at: Option<Instant>,
    /// Video is withheld until the next keyframe (its link was losing too much).
    skip_video: bool,
    health: ViewerHealth,
    /// What its NACKs may still cost (bytes a second, about twice its stream's rate).
    rtx_budget: RetransmitBudget,
    /// Whether it attends the live session (an attendance row is open): from the first
    /// packet it was sent in that session, so a viewer that never got media has no row.
    attending: bool,
    /// The client address (group) it came from, counted in [`Seats`] until it connects;
    /// `None` when unknown.
    client: Option<IpAddr>,
    /// It holds a place in [`Seats`] (a signed edge pull does not).
    seated: bool,
}

/// The hub. See the module docs.
pub struct Hub {
    config: HubConfig,
    channels: HashMap<ChannelName, Channel>,
    /// Keyed by the engine's own numbers, so Fx hashing (a multiply) is safe; looked up
    /// for every viewer of every batch fanned out.
    viewers: FxHashMap<PeerKey, Viewer>,
    /// Keyframe-group replays due, earliest first (entries of removed viewers are skipped).
    replays: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    events: VecDeque<HubEvent>,
    counters: Arc<RelayCounters>,
    /// Every shard's viewers' places, for the caps; `shard` is this hub's.
    seats: Arc<Seats>,
    shard: usize,
}

impl Hub {
    /// An empty hub counting into `counters`.
    pub fn new(config: HubConfig, counters: Arc<RelayCounters>) -> Hub {
        Hub::sharing(config, counters, Arc::new(Seats::new(1)), 0)
    }

    /// The next thing the engine must act on.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// When [`Hub::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.replays.peek().map(|Reverse((at, _))| *at)
    }

    /// The live session of `channel` and what it sends (all its streams' names), while
    /// media flows.
    pub fn live_tracks(&self, channel: &ChannelName) -> Option<(SessionId, LiveTracks)> {
        let ch = self.channels.get(channel)?;
        let session = ch.live_session()?;
        Some((
            session.id,
            LiveTracks {
                video: ch.video_codec.clone(),
                audio: ch.audio_codec.clone(),
                renditions: ch.streams.iter().skip(1).map(|s| s.name.clone()).collect(),
            },
        ))
    }

    /// What video stream `stream` of `channel` is encoded in (a bridge's differs from the
    /// source's).
    pub fn stream_codec(&self, channel: &ChannelName, stream: usize) -> Option<&RTCRtpCodec> {
        self.channels
            .get(channel)?
            .streams
            .get(stream)?
            .codec
            .as_ref()
    }

    /// The channel's source, if any.
    pub fn source_of(&self, channel: &ChannelName) -> Option<Source> {
        self.channels.get(channel)?.source.as_ref().map(|(s, _)| *s)
    }

    /// The channel's public status (`None` when it has neither source nor viewers).
    pub fn status(&self, channel: &ChannelName) -> Option<ChannelStatus> {
        self.channels.get(channel).map(Channel::status)
    }

    /// The channel a viewer watches.
    pub fn viewer_channel(&self, viewer: PeerKey) -> Option<&ChannelName> {
        self.viewers.get(&viewer).map(|v| &v.channel)
    }

    /// Takes the channel's source slot for `source` publishing `session`; `Busy` when
    /// another source holds it. The channel goes live with [`Hub::go_live`].
    pub fn claim(
        &mut self,
        channel: &ChannelName,
        source: Source,
        session: LiveSession,
    ) -> Result<(), RelayError> {
        let gop_max = self.config.gop_max_packets;
        let ch = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| Channel::new(gop_max));
        if ch.source.is_some() {
            return Err(RelayError::Busy(channel.to_string()));
        }
        ch.source = Some((source, session));
        Ok(())
    }

    /// Whether `channel` could take a new source now.
    pub fn is_free(&self, channel: &ChannelName) -> bool {
        self.channels
            .get(channel)
            .is_none_or(|c| c.source.is_none())
    }

    /// Marks the channel live with its source's codecs; connected viewers (a publisher
    /// change) start attending the new session.
    pub fn go_live(
        &mut self,
        channel: &ChannelName,
        source: Source,
        tracks: LiveTracks,
        now: Instant,
        out: &mut impl Deliver,
    ) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let Some((_, session)) = ch.source.as_ref().filter(|(s, _)| *s == source) else {
            return;
        };
        if ch.live {
            return;
        }
        // Viewers that stayed connected keep their negotiated codec; warn when a new
        // source sends a different one (those viewers will not decode it).
        if let (Some(old), Some(new)) = (&ch.video_codec, &tracks.video)
            && !old.mime_type.eq_ignore_ascii_case(&new.mime_type)
            && !ch.viewers.is_empty()
        {
            warn!(%channel, old = %old.mime_type, new = %new.mime_type, "publisher changed video codec; connected viewers must reconnect");
        }
        info!(%channel, session = %session.id, renditions = ?tracks.renditions, "channel live");
        self.events.push_back(HubEvent::Live {
            channel: channel.clone(),
            session: session.id,
            tracks: tracks.clone(),
        });
        ch.video_kind = tracks
            .video
            .as_ref()
            .map(|c| VideoCodec::from_mime(&c.mime_type));
        ch.video_codec = tracks.video;
        ch.audio_codec = tracks.audio;
        ch.live = true;
        ch.streams.truncate(1);
        ch.streams[0].clear();
        ch.streams[0].codec = ch.video_codec.clone();
        let gop_max = self.config.gop_max_packets;
        // Renditions are in the source's codec for now.
        let codec = &ch.video_codec;
        ch.streams.extend(
            tracks
                .renditions
                .iter()
                .map(|name| VideoStream::new(name, codec.clone(), gop_max)),
        );
        let streams = ch.streams.len();
        ch.source_streams = streams;
        ch.streams.iter_mut().for_each(|s| s.watchers = 0);
        // Connected viewers (a source switch) watch the new session from its first packet
        // they get; a viewer of a rendition the new source does not send falls back to the
        // source video.
        for key in &ch.viewers {
            if let Some(v) = self.viewers.get_mut(key) {
                if v.rendition >= streams {
                    v.rendition = 0;
                    out.resync(*key, Some(MediaKind::Video));
                }
                ch.streams[v.rendition].watchers += 1;
            }
        }
        self.rebridge(channel, out);
        self.publish_status(channel);
        self.request_keyframe(channel, now);
    }

    /// The source left the channel: its session ends and the viewers, who stay connected
    /// (a publisher may come back), stop attending it. Does nothing unless `source` holds
    /// the channel.
    pub fn release(&mut self, channel: &ChannelName, source: Source, out: &mut impl Deliver) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        if ch.source.as_ref().is_none_or(|(s, _)| *s != source) {
            return;
        }
        let Some((_, session)) = ch.source.take() else {
            return;
        };
        self.events.push_back(HubEvent::SessionEnded {
            channel: channel.clone(),
            session: session.id,
        });
        ch.live = false;
        ch.streams.iter_mut().for_each(VideoStream::clear);
        for key in &ch.viewers {
            let bridged = self
                .viewers
                .get(key)
                .and_then(|v| ch.streams.get(v.rendition));
            if let Some(codec) = bridged.filter(|s| s.bridge).and_then(|s| s.codec.clone()) {
                ch.parked.push((*key, codec));
            }
        }
        ch.streams.truncate(ch.source_streams);
        ch.last_pli = None;
        let viewers: Vec<PeerKey> = ch.viewers.iter().copied().collect();
        for key in viewers {
            if let Some(v) = self.viewers.get_mut(&key) {
                if std::mem::take(&mut v.attending) {
                    self.events
                        .push_back(HubEvent::NotAttending { viewer: key });
                }
                out.resync(key, None);
            }
        }
        self.publish_status(channel);
        self.remove_if_idle(channel);
    }

    /// `source` stopped feeding video stream `rendition` for now: its cached keyframe group
    /// goes, so a viewer joining before it is fed again waits for a fresh keyframe.
    pub fn pause_stream(&mut self, channel: &ChannelName, source: Source, rendition: usize) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        if ch.source.as_ref().is_some_and(|(s, _)| *s == source) && rendition > 0 {
            ch.streams.get_mut(rendition).map(VideoStream::clear);
        }
    }

    /// Sends a live source's packets to every connected viewer of the channel: audio to
    /// all, video to the viewers of `rendition`; caches video for late joiners and NACKs.
    /// Packets of a source that does not hold the live channel are dropped: returns
    /// whether they were forwarded.
    pub fn fan_out(
        &mut self,
        channel: &ChannelName,
        source: Source,
        rendition: usize,
        packets: &[(MediaKind, rtp::Packet)],
        out: &mut impl Deliver,
    ) -> bool {
        let Some(ch) = self.channels.get_mut(channel) else {
            return false;
        };
        let from_source = ch.source.as_ref().is_some_and(|(s, _)| *s == source);
        let from_feeder = match source {
            Source::Local(id) => ch
                .streams
                .get(rendition)
                .is_some_and(|s| s.feeder == Some(id)),
            Source::Peer(_) | Source::Origin => false,
        };
        if !ch.live || !(from_source || from_feeder) {
            return false;
        }
        RelayCounters::add(&self.counters.packets_in, packets.len() as u64);
        // Each stream's own codec says where its keyframes are (a bridge's VP8 in an H.264
        // channel).
        let stream_kind = ch
            .streams
            .get(rendition)
            .and_then(|s| s.codec.as_ref())
            .map(|c| VideoCodec::from_mime(&c.mime_type))
            .or(ch.video_kind);
        if let (Some(kind), Some(stream)) = (stream_kind, ch.streams.get_mut(rendition)) {
            for (k, packet) in packets {
                if *k == MediaKind::Video {
                    stream.gop.push(kind, packet);
                    stream.rtx.push(packet);
                }
            }
        }
        let video_kind = stream_kind.unwrap_or(VideoCodec::Other);
        let session = ch.live_session().map(|s| s.id);
        let mut delivered = 0u64;
        for key in &ch.viewers {
            let Some(v) = self.viewers.get_mut(key) else {
                continue;
            };
            if !v.connected {
                continue;
            }
            let video_waits = v.replay_at.is_some();
            let other_rendition = v.rendition != rendition;
            for (kind, packet) in packets {
                if *kind == MediaKind::Video {
                    if other_rendition {
                        continue;
                    }
                    if v.skip_video {
                        if starts_keyframe(video_kind, &packet.payload) {
                            // Resume on a clean picture; the skipped packets leave no gap.
                            v.skip_video = false;
                            out.resync(*key, Some(MediaKind::Video));
                        } else {
                            // Still skipping; a keyframe later in this batch resumes it.
                            continue;
                        }
                    }
                    if video_waits {
                        continue;
                    }
                }
                if out.send(*key, *kind, packet) {
                    delivered += 1;
                    attends(v, *key, session, &mut self.events);
                }
            }
            out.done(*key);
        }
        RelayCounters::add(&self.counters.packets_out, delivered);
        true
    }

    /// Replays the keyframe group to viewers whose replay is due.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl Deliver) {
        while let Some(Reverse((at, key))) = self.replays.peek().copied() {
            if at > now {
                break;
            }
            self.replays.pop();
            let Some(v) = self.viewers.get_mut(&key) else {
                continue;
            };
            if v.replay_at != Some(at) {
                continue; // superseded entry
            }
            v.replay_at = None;
            let (channel, rendition) = (v.channel.clone(), v.rendition);
            let cached = self
                .channels
                .get(&channel)
                .and_then(|c| c.streams.get(rendition))
                .map(|s| s.gop.packets())
                .unwrap_or_default();
            if cached.is_empty() {
                // No group to start from: live video would start mid-group and not decode,
                // so it waits for the keyframe asked for here.
                v.skip_video = true;
                self.request_keyframe(&channel, now);
                continue;
            }
            let sent = cached
                .iter()
                .filter(|packet| out.send(key, MediaKind::Video, packet))
                .count();
            out.done(key);
            if sent > 0
                && let Some(v) = self.viewers.get_mut(&key)
            {
                let session = self.channels.get(&channel).and_then(Channel::live_session);
                attends(v, key, session.map(|s| s.id), &mut self.events);
            }
            RelayCounters::add(&self.counters.packets_out, sent as u64);
        }
    }

    /// Asks the channel's source for a keyframe, at most once per `pli_min_interval`.
    pub fn request_keyframe(&mut self, channel: &ChannelName, now: Instant) {
        let min_interval = self.config.pli_min_interval;
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let Some((source, _)) = ch.source.as_ref() else {
            return;
        };
        if ch
            .last_pli
            .is_some_and(|t| now.duration_since(t) < min_interval)
        {
            return;
        }
        ch.last_pli = Some(now);
        self.events.push_back(HubEvent::KeyframeWanted {
            channel: channel.clone(),
            source: *source,
        });
        // The feeder's encoder makes its own keyframes; it needs the source's too (it
        // decodes from them), so both are asked.
        for feeder in ch.feeders() {
            self.events.push_back(HubEvent::KeyframeWanted {
                channel: channel.clone(),
                source: Source::Local(feeder),
            });
        }
    }

    /// Takes one receiver report's loss from a viewer: a lossy link is cut to the next
    /// keyframe, and one lossy for too long is dropped ([`HubEvent::DropViewer`]; the
    /// engine removes it). Returns false when it is to be dropped.
    pub fn viewer_loss(&mut self, key: PeerKey, fraction_lost: u8, now: Instant) -> bool {
        let Some(v) = self.viewers.get_mut(&key) else {
            return true;
        };
        match v.health.on_report(fraction_lost, now) {
            HealthAction::Keep => true,
            HealthAction::SkipToKeyframe => {
                debug!(channel = %v.channel, fraction_lost, "lossy viewer skips to the next keyframe");
                v.skip_video = true;
                RelayCounters::add(&self.counters.viewers_skipped, 1);
                let channel = v.channel.clone();
                self.request_keyframe(&channel, now);
                true
            }
            HealthAction::Drop => {
                RelayCounters::add(&self.counters.viewers_dropped, 1);
                self.events.push_back(HubEvent::DropViewer { viewer: key });
                false
            }
        }
    }

    /// Resends a viewer's NACKed video packets, given as source `(ssrc, sequence number)`,
    /// that the channel still holds, within the viewer's retransmission budget at `now`;
    /// returns how many went. Each goes out exactly as it was first sent to this viewer
    /// ([`Deliver::resend`]), or not at all.
    pub fn retransmit(
        &mut self,
        key: PeerKey,
        wanted: impl IntoIterator<Item = (u32, u16)>,
        now: Instant,
        out: &mut impl Deliver,
    ) -> usize {
        let Some(v) = self.viewers.get_mut(&key) else {
            return 0;
        };
        let Some(stream) = self
            .channels
            .get(&v.channel)
            .and_then(|c| c.streams.get(v.rendition))
        else {
            return 0;
        };
        let rate = stream.rtx.bytes_per_sec();
        let (mut resent, mut refused) = (0, 0);
        for (ssrc, seq) in wanted {
            let Some(packet) = stream.rtx.get(ssrc, seq) else {
                continue;
            };
            // The payload and an RTP header; SRTP's tag is small beside a video packet.
            if !v.rtx_budget.take(packet.payload.len() + 12, rate, now) {
                refused += 1;
                continue;
            }
            if out.resend(key, packet) {
                resent += 1;
            }
        }
        RelayCounters::add(&self.counters.retransmissions, resent as u64);
        RelayCounters::add(&self.counters.retransmissions_refused, refused);
        resent
    }

    fn publish_status(&mut self, channel: &ChannelName) {
        let status = self.status(channel);
        self.events.push_back(HubEvent::Status {
            channel: channel.clone(),
            status,
        });
    }

    fn remove_if_idle(&mut self, channel: &ChannelName) {
        if self.channels.get(channel).is_some_and(Channel::idle) {
            self.channels.remove(channel);
            self.events.push_back(HubEvent::Status {
                channel: channel.clone(),
                status: None,
            });
        }
    }
}

/// A viewer was sent a packet of `session`: it attends from now, if it did not already.
fn attends(
    v: &mut Viewer,
    key: PeerKey,
    session: Option<SessionId>,
    events: &mut VecDeque<HubEvent>,
) {
    if let Some(session) = session
        && !v.attending
    {
        v.attending = true;
        events.push_back(HubEvent::Attending {
            viewer: key,
            session,
        });
    }
}

mod admission;
mod feeders;
mod seats;
#[cfg(test)]
mod tests;

pub use seats::{Seat, Seats};

/// Asks for a keyframe now, past the PLI throttle (a feeder that just attached must not
/// wait out another viewer's request).
pub(super) fn ch_keyframe_now(hub: &mut Hub, channel: &ChannelName, now: Instant) {
    if let Some(ch) = hub.channels.get_mut(channel) {
        ch.last_pli = None;
    }
    hub.request_keyframe(channel, now);
}

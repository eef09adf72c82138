//! The engine: the I/O shell around the [`Hub`]. It owns the media socket, every WebRTC
//! peer connection (sans-IO `rtc`), the server-side sources' queues and the clock; it feeds
//! the hub what arrives with `now` and carries out what the hub decides.
//!
//! Datagrams are routed to peers by the peer table ([`PeerTable::route`]): by their
//! address, which a peer's only once a STUN check from it was signed with its ICE password. After feeding a
//! peer input the engine drains its outputs (events, RTP/RTCP, datagrams) and schedules its
//! next timeout in a heap; publisher media goes to [`Hub::fan_out`], viewer RTCP to the
//! hub's feedback calls, and media for viewers leaves through [`Fanout`].

mod mirrors;
mod sources;
mod viewers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::attendance::Attendance;
use super::codecs::{self, OfferedSection};
use super::hub::{
    Admission, Hub, HubConfig, HubEvent, LiveSession, LiveTracks, LocalId, PeerKey, Seat, Source,
};
use super::layers::{Layer, arrange, offered_layers, picture_size};
use super::media::{VideoCodec, h264_codec, vp8_codec};
use super::negotiate::{
    Negotiator, ViewerCodecs, check_offer_text, random_token, sending_sections, video_feedback,
};
use super::output::{
    Detached, Fanout, Feedback, TrackOut, ViewerOutput, selected_remote, take_writes,
};
use super::peers::{Peer, PeerTable, PublisherState, Role, Routed, TrackIn};
use super::shards::{ShardLinks, ShardMsg};
use super::tap::{LiveMedia, Taps, codec_of_mime};
use super::udp::{MediaSocket, Outbox};
use super::{
    Accepted, CodecBridges, EngineCommand, LiveBoard, LocalInput, LocalPublisher, LocalTracks,
    RelayCounters, RelayError, ViewerInfo, stun,
};
use crate::audience::{AudienceSink, now_ms};
use crate::config::{H264FromVp8, OnDemand, RelayConfig, WebRtcConfig};
use crate::ids::{ChannelName, SessionId};
use crate::media::MediaKind;

/// A peer is serviced at least this often even if its stack asks for nothing, so a
/// deadline that moved earlier after a write is never missed for long.
const MAX_TIMER: Duration = Duration::from_millis(200);

/// Delay between a viewer connecting and its keyframe-group replay when the viewer is the
/// DTLS client: it finishes its handshake after us, and a busy one drops packets that beat
/// its keys. As the DTLS client ourselves, we are connected only once the viewer's last
/// flight arrived, so the replay goes at once.
const REPLAY_DELAY: Duration = Duration::from_millis(30);

/// A publisher that has not connected within this time is removed (its session closed);
/// a viewer's is `[relay] unconnected_timeout_secs`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after connecting a viewer is detached from its peer connection (see
/// [`Engine::detach`]): long enough for the last DTLS flight and the first RTCP to pass
/// (a viewer whose RTCP has not arrived yet is tried again a second later).
const DETACH_AFTER: Duration = Duration::from_secs(2);

/// How long a simulcast publisher whose sections have all opened waits for every layer's
/// first keyframe (its picture size) before its channel goes live anyway: browsers start
/// the top layer last, once their bandwidth estimate allows it.
const LAYER_WAIT: Duration = Duration::from_secs(2);

/// How often a detached viewer's timer runs (consent expiry).
const DETACHED_TICK: Duration = Duration::from_secs(1);

/// A server-side source: RTMP ingest, a pull source or film playout.
struct LocalState {
    channel: ChannelName,
    session: LiveSession,
    /// Set when the hub wants a keyframe; the source's encoder reads and clears it.
    keyframe_wanted: Arc<AtomicBool>,
    /// It feeds renditions of a channel it is not the source of
    /// ([`Hub::attach_feeder`]).
    feeder: bool,
}

/// The relay engine. Created by [`super::start`].
pub struct Engine {
    socket: MediaSocket,
    local_addr: SocketAddr,
    negotiator: Negotiator,
    webrtc: WebRtcConfig,
    /// What the transcode stage may supply for a viewer without the channel's codec.
    bridges: CodecBridges,
    commands: mpsc::Receiver<EngineCommand>,
    board: Arc<LiveBoard>,
    hub: Hub,
    peers: PeerTable,
    attendance: Attendance,
    /// Peer timeouts, earliest first; an entry is current when it equals the peer's
    /// `scheduled`.
    timers: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    /// Numbers peers and local sources.
    next_key: u64,
    locals: HashMap<LocalId, LocalState>,
    /// Packets from every local source, each stream ending with `LocalInput::End`.
    local_inputs: SelectAll<BoxStream<'static, (LocalId, LocalInput)>>,
    outbox: Outbox,
    /// Publisher packets read in this turn of the loop, fanned out together at the top of
    /// the next (before the outbox is sent), so that each viewer's share of a frame is one
    /// run of datagrams the socket can hand the kernel as one segmented send. Each run
    /// holds one video stream's packets (a simulcast layer is a rendition) and audio.
    pending_media: Vec<(PeerKey, usize, MediaRun)>,
    /// Access-unit subscriptions (HLS, recording, ...), fed what the hub forwards.
    taps: Taps,
    /// Sessions whose publisher dropped, waiting `reconnect_grace` for it to return.
    ending: HashMap<ChannelName, Ending>,
    reconnect_grace: Duration,
    /// A viewer that has not connected within this time is let go and its place comes
    /// back (`[relay] unconnected_timeout_secs`): offers that never do ICE cannot hold a
    /// channel's places for long.
    viewer_connect_timeout: Duration,
    /// This shard among the others (`relay::shards`): its number, its inbox, theirs.
    links: ShardLinks,
}

/// A session in its reconnect grace.
struct Ending {
    session: SessionId,
    /// When its publisher dropped (unix ms): its end, unless one returns.
    at_ms: i64,
    /// When the grace runs out.
    due: Instant,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bind(
        webrtc: &WebRtcConfig,
        addr: SocketAddr,
        relay: &RelayConfig,
        bridges: CodecBridges,
        audience: AudienceSink,
        commands: mpsc::Receiver<EngineCommand>,
        board: Arc<LiveBoard>,
        links: ShardLinks,
    ) -> std::io::Result<Engine> {
        let socket = MediaSocket::bind(webrtc, addr, links.count > 1)?;
        let local_addr = socket.local_addr()?;
        let negotiator = Negotiator::new(webrtc, local_addr, board.counters.clone())?;
        info!(%local_addr, shard = links.index, advertised = ?webrtc.advertised_ips, "media UDP socket bound");
        let hub = Hub::sharing(
            HubConfig {
                gop_max_packets: relay.gop_cache_max_packets,
                pli_min_interval: Duration::from_millis(relay.pli_min_interval_ms),
                max_viewers_per_channel: relay.max_viewers_per_channel,
                max_unconnected_per_channel: relay.max_unconnected_per_channel,
                max_unconnected_per_client: relay.max_unconnected_per_client,
            },
            board.counters.clone(),
            links.seats.clone(),
            links.index,
        );
        Ok(Engine {
            socket,
            local_addr,
            negotiator,
            webrtc: webrtc.clone(),
            bridges,
            commands,
            board,
            hub,
            peers: PeerTable::default(),
            attendance: Attendance::new(audience),
            timers: BinaryHeap::new(),
            next_key: 1,
            locals: HashMap::new(),
            local_inputs: SelectAll::new(),
            outbox: Outbox::default(),
            pending_media: Vec::new(),
            taps: Taps::default(),
            ending: HashMap::new(),
            reconnect_grace: relay.reconnect_grace,
            viewer_connect_timeout: Duration::from_secs(relay.unconnected_timeout_secs),
            links,
        })
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until a `Shutdown` command or until every handle is dropped.
    pub async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            // Events first: a channel that went live in the last turn is live for its
            // subscribers before that turn's packets reach them.
            self.hub_events();
            self.flush_media();
            self.socket
                .send(&mut self.outbox, &self.board.counters)
                .await;
            let now = Instant::now();
            let deadline = [
                self.timers.peek().map(|Reverse((at, _))| *at),
                self.hub.poll_timeout(),
                self.ending.values().map(|e| e.due).min(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1));
            let sleep = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(EngineCommand::Shutdown { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.handle_command(command),
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, from)) => self.handle_datagram(&buf[..n], from, false),
                        Err(err) => debug!(?err, "media socket receive error"),
                    }
                    // Drain what else is waiting before servicing timers.
                    for _ in 0..64 {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.handle_datagram(&buf[..n], from, false),
                            Err(_) => break,
                        }
                    }
                }
                Some(msg) = self.links.inbox.recv() => {
                    self.handle_shard_msg(msg);
                    for _ in 0..64 {
                        match self.links.inbox.try_recv() {
                            Ok(msg) => self.handle_shard_msg(msg),
                            Err(_) => break,
                        }
                    }
                }
                Some((id, input)) = self.local_inputs.next(), if !self.local_inputs.is_empty() => {
                    self.handle_local(id, input);
                    // Take what else is queued without waiting.
                    for _ in 0..64 {
                        match self.local_inputs.next().now_or_never() {
                            Some(Some((id, input))) => self.handle_local(id, input),
                            _ => break,
                        }
                    }
                }
                _ = sleep => {}
            }
            self.run_timers();
        }
    }

    async fn shutdown(&mut self) {
        for key in self.peers.keys() {
            self.remove_peer(key, "server shutting down");
        }
        let locals: Vec<LocalId> = self.locals.keys().copied().collect();
        for id in locals {
            self.end_local(id, "server shutting down");
        }
        self.hub_events();
        // Nobody can return now: sessions in their grace end when their publisher left.
        for (_, ending) in std::mem::take(&mut self.ending) {
            self.attendance.session_ended(ending.session, ending.at_ms);
        }
        self.socket
            .send(&mut self.outbox, &self.board.counters)
            .await;
    }

    /// Where the hub's media for viewers goes.
    fn fanout(&mut self, now: Instant) -> (&mut Hub, Fanout<'_>) {
        (
            &mut self.hub,
            Fanout {
                peers: &mut self.peers,
                outbox: &mut self.outbox,
                now,
            },
        )
    }

    /// Fans out the publisher packets read since the last turn of the loop.
    fn flush_media(&mut self) {
        let now = Instant::now();
        for (publisher, rendition, packets) in std::mem::take(&mut self.pending_media) {
            let Some(channel) = self.peers.get(publisher).map(|p| p.channel.clone()) else {
                continue;
            };
            let (hub, mut out) = self.fanout(now);
            if hub.fan_out(
                &channel,
                Source::Peer(publisher),
                rendition,
                &packets,
                &mut out,
            ) {
                let packets = self.mirror_run(&channel, rendition, packets);
                self.taps
                    .packets(&channel, rendition, || None, now, &packets);
            }
        }
    }

    /// Carries out what the hub decided.
    fn hub_events(&mut self) {
        let mut at_ms = None;
        while let Some(event) = self.hub.poll_event() {
            // One wall-clock reading per batch: a session's end and its viewers' leaving
            // carry the same time, as they happened together.
            let at_ms = *at_ms.get_or_insert_with(now_ms);
            match event {
                HubEvent::KeyframeWanted {
                    channel,
                    source: Source::Origin,
                } => {
                    let home = super::shards::home_of(&channel, self.links.count);
                    self.links.send(home, ShardMsg::KeyframeWanted { channel });
                }
                HubEvent::KeyframeWanted { channel, source } => {
                    self.keyframe_wanted(&channel, source)
                }
                HubEvent::Attending { viewer, session } => {
                    self.attendance.joined(viewer, session, at_ms)
                }
                HubEvent::NotAttending { viewer } => self.attendance.left(viewer, at_ms),
                HubEvent::Live { channel, .. } if !self.links.is_home(&channel) => {
                    // A mirror: the home shard tells the rest of the server.
                }
                HubEvent::Live {
                    channel,
                    session,
                    tracks,
                } => {
                    if self.links.count > 1 {
                        let status = self.hub.status(&channel);
                        let session = LiveSession {
                            id: session,
                            title: status.as_ref().map(|s| s.title.clone()).unwrap_or_default(),
                            started_at_ms: status.map_or(0, |s| s.started_at_ms),
                        };
                        let refused = self.links.to_mirrors(|| ShardMsg::Live {
                            channel: channel.clone(),
                            session: session.clone(),
                            tracks: tracks.clone(),
                        });
                        if refused > 0 {
                            warn!(%channel, refused, "shards with a full inbox miss the channel going live");
                        }
                    }
                    let live = live_media(session, tracks);
                    let from_peer = matches!(self.hub.source_of(&channel), Some(Source::Peer(_)));
                    self.board.notify_live(crate::relay::LiveNotice {
                        channel: channel.clone(),
                        live: live.clone(),
                        from_peer,
                    });
                    self.taps.live(&channel, live, Instant::now());
                }
                HubEvent::SessionEnded { channel, .. } if !self.links.is_home(&channel) => {
                    // A mirror: the home shard ends (or holds) the catalog session.
                }
                HubEvent::SessionEnded { channel, session } => {
                    if self.links.count > 1 {
                        let refused = self.links.to_mirrors(|| ShardMsg::Ended {
                            channel: channel.clone(),
                        });
                        if refused > 0 {
                            warn!(%channel, refused, "shards with a full inbox miss the session's end");
                        }
                    }
                    self.taps.ended(&channel, session);
                    if self.reconnect_grace.is_zero() {
                        self.attendance.session_ended(session, at_ms);
                    } else if let Some(old) = self.ending.insert(
                        channel,
                        Ending {
                            session,
                            at_ms,
                            due: Instant::now() + self.reconnect_grace,
                        },
                    ) && old.session != session
                    {
                        self.attendance.session_ended(old.session, old.at_ms);
                    }
                }
                HubEvent::Status { channel, status } => {
                    let home = super::shards::home_of(&channel, self.links.count);
                    self.board
                        .set_part(&channel, self.links.index, home, self.links.count, status)
                }
                HubEvent::BridgeWanted {
                    channel,
                    session,
                    stream,
                    codec,
                } => {
                    let from = self
                        .hub
                        .live_tracks(&channel)
                        .and_then(|(_, t)| t.video)
                        .and_then(|c| codec_of_mime(&c.mime_type));
                    let to = codec_of_mime(&codec.mime_type);
                    if let (Some(from), Some(to), Ok(stream)) = (from, to, u8::try_from(stream)) {
                        self.board.request_bridge(crate::relay::BridgeRequest {
                            channel,
                            session,
                            stream,
                            from,
                            to,
                        });
                    }
                }
                HubEvent::DropViewer { viewer } => {
                    self.remove_peer(viewer, "link lost too much for too long")
                }
            }
        }
    }

    fn handle_command(&mut self, command: EngineCommand) {
        match command {
            EngineCommand::Publish {
                channel,
                offer,
                session,
                reply,
            } => {
                let result = self.accept_publisher(channel, offer, session);
                let _ = reply.send(result);
            }
            EngineCommand::View {
                channel,
                offer,
                viewer,
                direct,
                reply,
            } => {
                // Not live here yet, a quality or bridge only the home has, or no room
                // here: the home answers (and refuses with the reason when it cannot
                // either). The channel's connecting places all held by viewers of
                // another shard: that shard gives the longest-waiting one up and answers.
                let to = if direct {
                    None
                } else if !self.links.is_home(&channel)
                    && !self.can_serve(&channel, &offer, &viewer)
                {
                    Some(super::shards::home_of(&channel, self.links.count))
                } else {
                    self.connecting_elsewhere(&channel, &viewer)
                };
                if let Some(shard) = to {
                    let direct = shard != super::shards::home_of(&channel, self.links.count);
                    self.links.forward(
                        shard,
                        EngineCommand::View {
                            channel,
                            offer,
                            viewer,
                            direct,
                            reply,
                        },
                    );
                    return;
                }
                let result = self.accept_viewer(channel, offer, viewer);
                let _ = reply.send(result);
            }
            EngineCommand::Delete {
                channel,
                resource,
                publisher,
                reply,
            } => {
                let found = self.peers.by_resource(&resource).filter(|key| {
                    self.peers.get(*key).is_some_and(|p| {
                        p.channel == channel && matches!(p.role, Role::Publisher(_)) == publisher
                    })
                });
                let result = match found {
                    Some(key) => {
                        self.remove_peer(key, "deleted by client");
                        Ok(())
                    }
                    None => Err(RelayError::UnknownResource(resource)),
                };
                let _ = reply.send(result);
            }
            EngineCommand::PublishLocal {
                channel,
                session,
                tracks,
                reply,
            } => {
                let result = self.accept_local(channel, session, tracks);
                let _ = reply.send(result);
            }
            EngineCommand::Subscribe { channel, reply } => {
                // A channel already live when its first subscriber comes: the tap learns
                // its session here (it only hears of sessions going live while tapped).
                let live = self
                    .hub
                    .live_tracks(&channel)
                    .map(|(session, tracks)| live_media(session, tracks));
                let _ = reply.send(Ok(self.taps.subscribe(&channel, live, Instant::now())));
            }
            EngineCommand::Shutdown { .. } => unreachable!("handled in run"),
            EngineCommand::Panic => panic!("fault injected: the relay engine panics on request"),
            EngineCommand::Feed {
                channel,
                session,
                names,
                reply,
            } => {
                let _ = reply.send(self.accept_feeder(channel, session, names));
            }
            EngineCommand::Resume { channel, reply } => {
                let _ = reply.send(Ok(self.ending.remove(&channel).map(|e| e.session)));
            }
            EngineCommand::KeyframeWanted { channel } => {
                self.hub.request_keyframe(&channel, Instant::now());
            }
            EngineCommand::WantBridge {
                channel,
                codec,
                reply,
            } => {
                let _ = reply.send(self.hub.bridge(&channel, codec).map(|_| ()));
            }
            EngineCommand::FeedBridge {
                channel,
                session,
                stream,
                reply,
            } => {
                let _ = reply.send(self.accept_bridge(channel, session, stream));
            }
        }
    }

    fn new_key(&mut self) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    fn insert_peer(&mut self, key: PeerKey, peer: Peer) {
        self.peers.insert(key, peer);
        self.service(key);
    }

    fn handle_datagram(&mut self, data: &[u8], from: SocketAddr, forwarded: bool) {
        if self.links.count > 1 && !forwarded {
            // A STUN check names its shard in our ufrag; anything else (answers to our
            // own checks too) goes by address.
            let owner = stun::local_ufrag(data)
                .and_then(|u| super::shards::shard_of_token(u, self.links.count))
                .or_else(|| self.links.routes.get(from));
            if let Some(owner) = owner.filter(|o| *o != self.links.index) {
                if !self
                    .links
                    .send(owner, ShardMsg::Datagram(BytesMut::from(data), from))
                {
                    RelayCounters::add(&self.board.counters.datagrams_dropped, 1);
                }
                return;
            }
        }
        let key = match self
            .peers
            .route(data, from, self.negotiator.crypto.crypto())
        {
            Routed::Peer(key) => {
                if self.links.count > 1 && stun::is_stun(data) {
                    self.links.routes.claim(from, self.links.index);
                }
                key
            }
            Routed::Unknown => {
                RelayCounters::add(&self.board.counters.datagrams_unrouted, 1);
                return;
            }
            Routed::Unverified => {
                RelayCounters::add(&self.board.counters.stun_unverified, 1);
                return;
            }
        };
        let candidate_addr = self.negotiator.candidate_addr;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some(pc) = peer.pc.as_deref_mut() else {
            self.detached_datagram(key, data, from);
            return;
        };
        let message = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: candidate_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(err) = pc.handle_read(message) {
            debug!(?err, channel = %peer.channel, "peer rejected a datagram");
        }
        self.service(key);
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<ChannelName> = self
            .ending
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for channel in due {
            if let Some(ending) = self.ending.remove(&channel) {
                info!(%channel, session = %ending.session, "publisher did not return within the grace; session ended");
                self.attendance.session_ended(ending.session, ending.at_ms);
            }
        }
        let consent_timeout = self.consent_timeout();
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded entry
            }
            peer.scheduled = None;
            if let Some(pc) = peer.pc.as_deref_mut()
                && let Err(err) = pc.handle_timeout(now)
            {
                debug!(?err, "peer timeout handling failed");
            }
            let (detach_due, silent, connect_timeout) = match &peer.role {
                Role::Viewer(v) => (
                    v.detach_at.is_some_and(|t| t <= now),
                    v.detached
                        .as_ref()
                        .is_some_and(|d| now.duration_since(d.heard) > consent_timeout),
                    self.viewer_connect_timeout,
                ),
                Role::Publisher(_) => (false, false, CONNECT_TIMEOUT),
            };
            let never_connected =
                !peer.ever_connected && now.duration_since(peer.created) > connect_timeout;
            if never_connected {
                self.remove_peer(key, "never connected");
                continue;
            }
            if silent {
                self.remove_peer(key, "no consent checks or RTCP from the viewer");
                continue;
            }
            if detach_due {
                self.detach(key);
            }
            self.service(key);
        }
        let (hub, mut out) = self.fanout(now);
        hub.handle_timeout(now, &mut out);
    }

    /// Drains a peer's outputs and reschedules its timer.
    fn service(&mut self, key: PeerKey) {
        // Runs of packets by the video stream they feed (audio joins any run).
        let mut rtp_in: Vec<(usize, MediaRun)> = Vec::new();
        let mut feedback = Feedback::default();
        let mut state_change: Option<RTCPeerConnectionState> = None;
        let mut opened: Vec<TrackIn> = Vec::new();
        let mut not_live = false;
        {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            let Some(pc) = peer.pc.as_deref_mut() else {
                self.drain_writes(key);
                return;
            };
            let mut ice_up = false;
            while let Some(event) = pc.poll_event() {
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                        debug!(channel = %peer.channel, %state, "peer state");
                        state_change = Some(state);
                    }
                    RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                        RTCIceConnectionState::Connected,
                    ) => ice_up = true,
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        if let Some(receiver) = pc.rtp_receiver(init.receiver_id) {
                            let track = receiver.track();
                            let kind = track.kind();
                            if let Some(codec) = track.codec(init.ssrc).cloned() {
                                info!(channel = %peer.channel, mime = %codec.mime_type, ssrc = init.ssrc, rid = ?init.rid, "publisher track open");
                                opened.push(TrackIn {
                                    kind,
                                    codec,
                                    receiver_id: init.receiver_id,
                                    media_ssrc: init.ssrc,
                                    rid: init.rid.filter(|r| !r.is_empty()),
                                    size: None,
                                    rendition: 0,
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            if ice_up {
                // The DTLS client's ClientHello is queued when the selected pair's event
                // passes through, but rtc hands it out only from a timeout: run one now.
                // The STUN answer that completes the peer's ICE goes out first: a peer
                // drops DTLS that arrives before its ICE is connected.
                take_writes(peer, &mut self.outbox);
                if let Some(pc) = peer.pc.as_deref_mut()
                    && let Err(err) = pc.handle_timeout(Instant::now())
                {
                    debug!(?err, "peer timeout handling failed");
                }
            }
            let Some(pc) = peer.pc.as_deref_mut() else {
                return;
            };
            if let Role::Publisher(p) = &mut peer.role {
                p.open(std::mem::take(&mut opened));
                not_live = !p.live;
            }
            while let Some(message) = pc.poll_read() {
                match message.message {
                    RTCMessage::RtpPacket(_, packet) => {
                        if let Role::Publisher(p) = &mut peer.role
                            && let Some(track) = p.tracks.get_mut(&packet.header.ssrc)
                        {
                            let kind = match track.kind {
                                RtpCodecKind::Video => MediaKind::Video,
                                RtpCodecKind::Audio => MediaKind::Audio,
                                _ => continue,
                            };
                            if not_live
                                && kind == MediaKind::Video
                                && track.rid.is_some()
                                && track.size.is_none()
                            {
                                let codec = VideoCodec::from_mime(&track.codec.mime_type);
                                track.size = picture_size(codec, &packet.payload);
                            }
                            let rendition = track.rendition;
                            match rtp_in.last_mut() {
                                Some((r, run)) if *r == rendition || kind == MediaKind::Audio => {
                                    run.push((kind, packet))
                                }
                                _ => rtp_in.push((rendition, vec![(kind, packet)])),
                            }
                        }
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        if let Role::Viewer(v) = &mut peer.role {
                            v.rtcp_seen = true;
                            feedback.read(v, &packets);
                        }
                    }
                    _ => {}
                }
            }
        }
        if not_live {
            self.publisher_ready(key, Instant::now());
        }
        for (rendition, packets) in rtp_in {
            match self.pending_media.last_mut() {
                Some((last, r, run)) if *last == key && *r == rendition => run.extend(packets),
                _ => self.pending_media.push((key, rendition, packets)),
            }
        }
        if !self.apply_feedback(key, feedback) {
            return;
        }
        match state_change {
            Some(RTCPeerConnectionState::Connected) => self.peer_connected(key),
            Some(RTCPeerConnectionState::Failed) | Some(RTCPeerConnectionState::Closed) => {
                self.remove_peer(key, "connection failed or closed");
                return;
            }
            _ => {}
        }
        self.drain_writes(key);
    }

    fn drain_writes(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        take_writes(peer, &mut self.outbox);
        let now = Instant::now();
        let mut next = match peer.pc.as_deref_mut() {
            Some(pc) => pc
                .poll_timeout()
                .unwrap_or(now + MAX_TIMER)
                .min(now + MAX_TIMER),
            None => now + DETACHED_TICK,
        };
        if let Role::Viewer(v) = &peer.role
            && let Some(at) = v.detach_at
        {
            next = next.min(at);
        }
        if peer.scheduled.is_none_or(|s| next < s) {
            peer.scheduled = Some(next);
            self.timers.push(Reverse((next, key)));
        }
    }

    fn remove_peer(&mut self, key: PeerKey, why: &str) {
        if self.links.count > 1 {
            let addrs = self.peers.addresses_of(key);
            self.links.routes.release(&addrs, self.links.index);
        }
        let Some(mut peer) = self.peers.remove(key) else {
            return;
        };
        if !peer.closing {
            peer.closing = true;
            if let Some(pc) = peer.pc.as_deref_mut() {
                let _ = pc.close();
            }
            take_writes(&mut peer, &mut self.outbox);
        }
        let channel = peer.channel.clone();
        match peer.role {
            Role::Publisher(p) => {
                info!(%channel, session = %p.session.id, why, "publisher ended");
                let (hub, mut out) = self.fanout(Instant::now());
                hub.release(&channel, Source::Peer(key), &mut out);
            }
            Role::Viewer(_) => {
                debug!(%channel, why, "viewer left");
                self.hub.remove_viewer(key);
                // Its row closes now (the hub's `NotAttending`), before it is forgotten.
                self.hub_events();
                self.attendance.forget(key);
            }
        }
    }
}

/// Packets of one publisher read together: one video stream's and audio.
type MediaRun = Vec<(MediaKind, rtp::Packet)>;

/// A live session's tracks as the access-unit interface describes them.
fn live_media(session: SessionId, tracks: LiveTracks) -> LiveMedia {
    let codec = |c: &Option<RTCRtpCodec>| c.as_ref().and_then(|c| codec_of_mime(&c.mime_type));
    LiveMedia {
        session,
        video: codec(&tracks.video),
        audio: codec(&tracks.audio),
        renditions: tracks.renditions,
    }
}

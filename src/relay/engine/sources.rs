//! The engine's source side: WHIP publishers and server-side sources (RTMP, pull,
//! playout) claiming a channel, going live, ending, and keyframe requests reaching them.

use super::*;

impl Engine {
    pub(super) fn accept_publisher(
        &mut self,
        channel: ChannelName,
        offer: String,
        session: LiveSession,
    ) -> Result<Accepted, RelayError> {
        check_offer_text(&offer)?;
        if !self.hub.is_free(&channel) {
            return Err(RelayError::Busy(channel.to_string()));
        }
        let expected_tracks = sending_sections(&offer);
        if expected_tracks == 0 {
            return Err(RelayError::BadOffer(
                "the offer sends no audio or video (all sections are recvonly or inactive)".into(),
            ));
        }
        let layers = offered_layers(&offer);
        let now = Instant::now();
        let ufrag = self.token(16);
        let pwd = random_token(32);
        let (mut pc, _) = self
            .negotiator
            .peer_connection(&ufrag, &pwd, None, &offer, now)?;
        let answer = self.negotiator.answer(&mut pc, offer, now)?;
        if !answer.lines().any(|l| {
            (l.starts_with("m=audio") || l.starts_with("m=video"))
                && !l.starts_with("m=audio 0")
                && !l.starts_with("m=video 0")
        }) {
            return Err(RelayError::BadOffer(
                "no offered codec is supported; publish H.264 (packetization-mode=1), VP8 or Opus"
                    .into(),
            ));
        }
        let key = PeerKey(self.new_key());
        self.hub
            .claim(&channel, Source::Peer(key), session.clone())?;
        info!(%channel, session = %session.id, ?layers, "publisher accepted");
        let role = Role::Publisher(PublisherState::new(session, pwd, expected_tracks, layers));
        let mut peer = Peer::new(pc, channel, ufrag, role, None, now);
        peer.resource = self.token(24);
        let resource = peer.resource.clone();
        self.insert_peer(key, peer);
        Ok(Accepted { resource, answer })
    }

    pub(super) fn accept_local(
        &mut self,
        channel: ChannelName,
        session: LiveSession,
        tracks: LocalTracks,
    ) -> Result<LocalPublisher, RelayError> {
        if tracks.video.is_none() && tracks.audio.is_none() {
            return Err(RelayError::BadOffer("a source needs audio or video".into()));
        }
        let id = LocalId(self.new_key());
        self.hub
            .claim(&channel, Source::Local(id), session.clone())?;
        info!(%channel, session = %session.id, "local source publishing");
        let publisher = self.local_input(id, &channel, session, false);
        let live = LiveTracks {
            video: tracks.video,
            audio: tracks.audio,
            renditions: tracks.renditions,
        };
        let (hub, mut out) = self.fanout(Instant::now());
        hub.go_live(&channel, Source::Local(id), live, out.now, &mut out);
        Ok(publisher)
    }

    /// A server-side encoder feeding renditions of a live channel it is not the source of.
    pub(super) fn accept_feeder(
        &mut self,
        channel: ChannelName,
        session: SessionId,
        names: Vec<String>,
    ) -> Result<crate::relay::FeedHandle, RelayError> {
        let live = self
            .hub
            .status(&channel)
            .filter(|s| s.live && s.session_id == Some(session))
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        let first = u8::try_from(live.qualities.len())
            .map_err(|_| RelayError::Internal("too many renditions".into()))?;
        let id = LocalId(self.new_key());
        self.hub
            .attach_feeder(&channel, session, id, &names, Instant::now())?;
        let session = LiveSession {
            id: session,
            title: live.title,
            started_at_ms: live.started_at_ms,
        };
        let publisher = self.local_input(id, &channel, session, true);
        Ok(crate::relay::FeedHandle { publisher, first })
    }

    /// A server-side encoder feeding a codec bridge stream of a live channel.
    pub(super) fn accept_bridge(
        &mut self,
        channel: ChannelName,
        session: SessionId,
        stream: u8,
    ) -> Result<crate::relay::FeedHandle, RelayError> {
        let live = self
            .hub
            .status(&channel)
            .filter(|s| s.live && s.session_id == Some(session))
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        let id = LocalId(self.new_key());
        self.hub
            .attach_bridge(&channel, session, id, usize::from(stream), Instant::now())?;
        let session = LiveSession {
            id: session,
            title: live.title,
            started_at_ms: live.started_at_ms,
        };
        let publisher = self.local_input(id, &channel, session, true);
        Ok(crate::relay::FeedHandle {
            publisher,
            first: stream,
        })
    }

    /// Registers the input queue of local source or feeder `id`.
    fn local_input(
        &mut self,
        id: LocalId,
        channel: &ChannelName,
        session: LiveSession,
        feeder: bool,
    ) -> LocalPublisher {
        let (tx, rx) = mpsc::channel::<LocalInput>(1024);
        let keyframe_wanted = Arc::new(AtomicBool::new(false));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|input| (input, rx))
        })
        .chain(futures::stream::once(async { LocalInput::End }))
        .map(move |input| (id, input))
        .boxed();
        self.local_inputs.push(stream);
        self.locals.insert(
            id,
            LocalState {
                channel: channel.clone(),
                session,
                keyframe_wanted: keyframe_wanted.clone(),
                feeder,
            },
        );
        LocalPublisher {
            tx,
            keyframe_wanted,
        }
    }

    pub(super) fn handle_local(&mut self, id: LocalId, input: LocalInput) {
        match input {
            LocalInput::Packet(kind, rendition, packet) => {
                let Some(channel) = self.locals.get(&id).map(|l| l.channel.clone()) else {
                    return;
                };
                let now = Instant::now();
                let (hub, mut out) = self.fanout(now);
                let rendition = usize::from(rendition);
                let packets = [(kind, packet)];
                if hub.fan_out(&channel, Source::Local(id), rendition, &packets, &mut out) {
                    let packets = self.mirror_run(&channel, rendition, packets.into());
                    // A feeder's stream may be in another codec than the channel (a bridge).
                    let hub = &self.hub;
                    let codec = || {
                        hub.stream_codec(&channel, rendition)
                            .and_then(|c| codec_of_mime(&c.mime_type))
                    };
                    self.taps.packets(&channel, rendition, codec, now, &packets);
                }
            }
            LocalInput::Unit(unit) => {
                if let Some(local) = self.locals.get(&id) {
                    self.taps.unit(&local.channel, unit, Instant::now());
                }
            }
            LocalInput::Pause(rendition) => {
                let Some(channel) = self.locals.get(&id).map(|l| l.channel.clone()) else {
                    return;
                };
                let rendition = usize::from(rendition);
                self.hub
                    .pause_stream(&channel, Source::Local(id), rendition);
                if self.links.count > 1 {
                    self.links.to_mirrors(|| ShardMsg::Paused {
                        channel: channel.clone(),
                        rendition,
                    });
                }
            }
            LocalInput::End => self.end_local(id, "source ended"),
        }
    }

    pub(super) fn end_local(&mut self, id: LocalId, why: &str) {
        let Some(local) = self.locals.remove(&id) else {
            return;
        };
        let (hub, mut out) = self.fanout(Instant::now());
        if local.feeder {
            info!(channel = %local.channel, session = %local.session.id, why, "rendition feeder ended");
            hub.detach_feeder(&local.channel, id, out.now, &mut out);
            return;
        }
        info!(channel = %local.channel, session = %local.session.id, why, "local source ended");
        hub.release(&local.channel, Source::Local(id), &mut out);
    }

    /// Takes a publisher live once every section it sends has opened (the engine calls it
    /// after its tracks open or a layer's size is learned, and from its timer). A simulcast
    /// publisher waits up to [`LAYER_WAIT`] more for every layer's first keyframe, whose
    /// size orders the layers (largest: the source) and names the renditions (`360p`).
    pub(super) fn publisher_ready(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Role::Publisher(state) = &mut peer.role else {
            return;
        };
        if state.live || state.sections_open() < state.expected_tracks {
            return;
        }
        let opened_at = *state.opened_at.get_or_insert(now);
        let layers: Vec<Layer> = state
            .layers
            .iter()
            .map(|rid| Layer {
                rid: rid.clone(),
                size: state
                    .tracks
                    .values()
                    .find(|t| t.rid.as_ref() == Some(rid))
                    .and_then(|t| t.size),
            })
            .collect();
        if layers.iter().any(|l| l.size.is_none()) && now < opened_at + LAYER_WAIT {
            return;
        }
        let (streams, renditions) = if layers.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            arrange(&layers)
        };
        let channel = peer.channel.clone();
        if !layers.is_empty() {
            info!(%channel, ?layers, source = %streams[0], ?renditions, "simulcast layers offered as renditions");
        }
        state.live = true;
        state.streams = streams;
        for track in state.tracks.values_mut() {
            if let Some(rid) = &track.rid {
                track.rendition = state.streams.iter().position(|r| r == rid).unwrap_or(0);
            }
        }
        let codec_of = |kind| {
            state
                .tracks
                .values()
                .find(|t| t.kind == kind)
                .map(|t| t.codec.clone())
        };
        let live = LiveTracks {
            video: codec_of(RtpCodecKind::Video),
            audio: codec_of(RtpCodecKind::Audio),
            renditions,
        };
        let (hub, mut out) = self.fanout(now);
        hub.go_live(&channel, Source::Peer(key), live, out.now, &mut out);
    }

    /// Carries a keyframe request to the channel's source: a flag for a local source's
    /// encoder, a PLI to a WHIP publisher's video tracks.
    pub(super) fn keyframe_wanted(&mut self, channel: &ChannelName, source: Source) {
        match source {
            // Carried to the home shard by `hub_events`.
            Source::Origin => {}
            Source::Local(id) => {
                if let Some(local) = self.locals.get(&id) {
                    local.keyframe_wanted.store(true, Ordering::Relaxed);
                    RelayCounters::add(&self.board.counters.plis_forwarded, 1);
                }
            }
            Source::Peer(pkey) => {
                let Some(peer) = self.peers.get_mut(pkey) else {
                    return;
                };
                let Role::Publisher(p) = &peer.role else {
                    return;
                };
                debug!(%channel, "keyframe requested from the publisher");
                let targets: Vec<_> = p
                    .tracks
                    .values()
                    .filter(|t| t.kind == RtpCodecKind::Video)
                    .map(|t| (t.receiver_id, t.media_ssrc))
                    .collect();
                let now = Instant::now();
                for (receiver_id, media_ssrc) in targets {
                    if let Some(mut receiver) = peer
                        .pc
                        .as_deref_mut()
                        .and_then(|pc| pc.rtp_receiver(receiver_id))
                    {
                        let pli = PictureLossIndication {
                            sender_ssrc: 0,
                            media_ssrc,
                        };
                        if receiver.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                            RelayCounters::add(&self.board.counters.plis_forwarded, 1);
                        }
                    }
                }
                self.drain_writes(pkey);
            }
        }
    }
}

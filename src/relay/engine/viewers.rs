//! The engine's viewer side: answering a WHEP offer, a viewer's connection coming up,
//! detaching it from its peer connection once connected, and what its RTCP asks for.

use super::*;

impl Engine {
    pub(super) fn accept_viewer(
        &mut self,
        channel: ChannelName,
        offer: String,
        info: ViewerInfo,
    ) -> Result<Accepted, RelayError> {
        let mut admission = self.hub.admit(&channel, info.quality.as_deref())?;
        check_offer_text(&offer)?;
        let codecs = match self.choose_codecs(&channel, &admission, &offer)? {
            Chosen::Codecs(codecs) => codecs,
            // The offer takes another codec the transcode stage can make: the viewer
            // watches that bridge stream.
            Chosen::Bridge(codec) => {
                admission = self.hub.bridge(&channel, codec)?;
                match self.choose_codecs(&channel, &admission, &offer)? {
                    Chosen::Codecs(codecs) => codecs,
                    Chosen::Bridge(_) => {
                        return Err(RelayError::Internal("no codec for the bridge".into()));
                    }
                }
            }
        };
        let seat = seat(&info);
        // Every connecting place taken: the longest-waiting gives its up (again, a few
        // times at most, while other shards take the places freed).
        let mut tries = 0;
        while let Err(RelayError::Connecting(_)) = self.hub.has_room_for_seat(&channel, seat) {
            if tries == 4 || !self.give_up_longest_connecting(&channel) {
                break;
            }
            tries += 1;
        }
        self.hub.has_room_for_seat(&channel, seat)?;
        let now = Instant::now();
        let ufrag = self.token(16);
        let pwd = random_token(32);
        let (mut pc, tap) =
            self.negotiator
                .peer_connection(&ufrag, &pwd, Some(&codecs), &offer, now)?;
        let stream_id = format!("feiyan-{channel}");
        let mut add = |kind: RtpCodecKind,
                       codec: &RTCRtpCodec|
         -> Result<(RTCRtpSenderId, u32), RelayError> {
            let ssrc = rand::random::<u32>();
            let label = if kind == RtpCodecKind::Video {
                "video"
            } else {
                "audio"
            };
            let track = MediaStreamTrack::new(
                stream_id.clone(),
                format!("{label}-{ssrc}"),
                label.to_string(),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec.clone(),
                    ..Default::default()
                }],
            );
            let id = pc
                .add_track(track)
                .map_err(|e| RelayError::Internal(e.to_string()))?;
            Ok((id, ssrc))
        };
        // A track only for a kind whose format was chosen: the other kind's section, if
        // any, is answered with port 0.
        let mut track = |kind, chosen: &Option<RTCRtpCodecParameters>| {
            chosen
                .as_ref()
                .map(|c| add(kind, &c.rtp_codec).map(|s| (s, c.rtp_codec.clone())))
                .transpose()
        };
        let video = track(RtpCodecKind::Video, &codecs.video)?;
        let audio = track(RtpCodecKind::Audio, &codecs.audio)?;
        let answer = self.negotiator.answer(&mut pc, offer, now)?;
        // Send with the payload type the viewer negotiated (browsers renumber codecs).
        let mut out_track =
            |slot: Option<((RTCRtpSenderId, u32), RTCRtpCodec)>| -> Option<TrackOut> {
                let ((sender_id, ssrc), codec) = slot?;
                let mut sender = pc.rtp_sender(sender_id)?;
                let params = sender.get_parameters();
                let codecs = &params.rtp_parameters.codecs;
                let same_mime = |c: &&RTCRtpCodecParameters| {
                    c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type)
                };
                let pt = codecs
                    .iter()
                    .find(|c| same_mime(c) && c.rtp_codec.sdp_fmtp_line == codec.sdp_fmtp_line)
                    .or_else(|| codecs.iter().find(same_mime))?
                    .payload_type;
                Some(TrackOut::new(sender_id, ssrc, pt, codec.clock_rate))
            };
        let video_out = out_track(video.clone());
        let audio_out = out_track(audio.clone());
        if video_out.is_none() && audio_out.is_none() {
            let wanted: Vec<String> = video
                .iter()
                .chain(audio.iter())
                .map(|(_, c)| c.mime_type.clone())
                .collect();
            return Err(RelayError::BadOffer(format!(
                "the offer accepts none of this channel's codecs ({}); offer recvonly audio/video with them",
                wanted.join(", ")
            )));
        }
        let key = PeerKey(self.new_key());
        let role = Role::Viewer(Box::new(ViewerOutput::new(video_out, audio_out, pwd)));
        let mut peer = Peer::new(pc, channel.clone(), ufrag, role, tap, now);
        peer.resource = self.token(24);
        let resource = peer.resource.clone();
        // The place is taken here, with the check: another shard may have taken the
        // last one since the check above. A connecting place: this shard's oldest
        // connecting viewer gives its up again (a few times at most); else the peer
        // connection made is dropped and the viewer refused.
        let mut tries = 0;
        loop {
            match self
                .hub
                .join_viewer(key, &channel, admission.rendition, seat, true)
            {
                Err(RelayError::Connecting(_))
                    if tries < 4 && self.give_up_longest_connecting(&channel) =>
                {
                    tries += 1;
                }
                joined => break joined?,
            }
        }
        debug!(%channel, %resource, "viewer accepted");
        self.attendance.register(key, info);
        self.insert_peer(key, peer);
        Ok(Accepted { resource, answer })
    }

    /// The formats a viewer's answer accepts (see [`codecs`]): the offer's format for the
    /// channel's video and the one for its audio. An offer that takes the audio but not the
    /// video gets video only; one with no video section gets audio only. An offer with a
    /// video section but none of the stream's video formats, or with nothing in common,
    /// is refused with what each side has; so is a malformed one.
    /// The channel's connecting places are all taken: the viewer that has waited longest
    /// without connecting gives its place to the newcomer. A real viewer connects within
    /// a second or so, an offer that never does ICE never will, so offers from however
    /// many addresses cannot hold the channel against residents arriving meanwhile; to
    /// push a real viewer out they would have to take every place within its connect time.
    fn give_up_longest_connecting(&mut self, channel: &ChannelName) -> bool {
        let oldest = self
            .hub
            .connecting_viewers(channel)
            .into_iter()
            .filter_map(|key| self.peers.get(key).map(|p| (p.created, key)))
            .min();
        if let Some((_, key)) = oldest {
            RelayCounters::add(&self.board.counters.connecting_given_up, 1);
            self.remove_peer(key, "its connecting place went to a newer viewer");
        }
        oldest.is_some()
    }

    pub(super) fn choose_codecs(
        &self,
        channel: &ChannelName,
        admission: &Admission,
        offer: &str,
    ) -> Result<Chosen, RelayError> {
        let sections = codecs::offered_sections(offer)?;
        let chosen = ViewerCodecs {
            video: admission.video.as_ref().and_then(|sends| {
                codecs::pick(&sections, MediaKind::Video, sends, &video_feedback())
            }),
            audio: admission
                .audio
                .as_ref()
                .and_then(|sends| codecs::pick(&sections, MediaKind::Audio, sends, &[])),
        };
        let refused = || RelayError::NoCommonCodec {
            sends: codecs::describe_sends(admission.video.as_ref(), admission.audio.as_ref()),
            offered: codecs::describe_offer(&sections),
        };
        if let Some(sends) = &admission.video
            && chosen.video.is_none()
            && codecs::offers_kind(&sections, MediaKind::Video)
        {
            if let Some(bridge) = self.video_bridge(channel, sends, &sections) {
                return Ok(Chosen::Bridge(bridge));
            }
            return Err(refused());
        }
        if chosen.video.is_none() && chosen.audio.is_none() {
            return Err(refused());
        }
        Ok(Chosen::Codecs(chosen))
    }

    /// The codec the transcode stage could make from what the channel sends that this
    /// offer takes: a VP8 rendition of H.264, or H.264 from VP8.
    fn video_bridge(
        &self,
        channel: &ChannelName,
        sends: &RTCRtpCodec,
        sections: &[OfferedSection],
    ) -> Option<RTCRtpCodec> {
        let takes =
            |codec: RTCRtpCodec| codecs::pick(sections, MediaKind::Video, &codec, &[]).is_some();
        match VideoCodec::from_mime(&sends.mime_type) {
            VideoCodec::H264 if takes(vp8_codec()) => {
                self.vp8_on_demand_available(channel).then(vp8_codec)
            }
            VideoCodec::Vp8 if takes(h264_codec()) => {
                self.h264_from_vp8_available(channel).then(h264_codec)
            }
            _ => None,
        }
    }

    /// Whether a VP8 rendition of the H.264 `channel` can be made for a viewer without
    /// H.264 (`[ingest] vp8_rendition`).
    fn vp8_on_demand_available(&self, channel: &ChannelName) -> bool {
        match self.bridges.vp8_rendition {
            OnDemand::Off => false,
            OnDemand::OnDemand => {
                debug!(%channel, "a VP8 rendition is made for a viewer without H.264");
                true
            }
        }
    }

    /// Whether H.264 can be made from the VP8 `channel` for a viewer without VP8
    /// (`[ingest] h264_from_vp8`).
    fn h264_from_vp8_available(&self, channel: &ChannelName) -> bool {
        match self.bridges.h264_from_vp8 {
            H264FromVp8::Off => false,
            H264FromVp8::OnDemand | H264FromVp8::Always => {
                debug!(%channel, "H.264 is made from VP8 for a viewer without VP8");
                true
            }
        }
    }

    pub(super) fn peer_connected(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.ever_connected = true;
        let channel = peer.channel.clone();
        let tap = peer.tap.clone();
        // Our own answer says which side we are: `passive` only when the viewer offered
        // `setup:active` and so finishes its handshake after us.
        let engine_is_dtls_server = peer
            .pc
            .as_deref()
            .and_then(|pc| pc.local_description())
            .is_some_and(|d| d.sdp.contains("a=setup:passive"));
        let remote = selected_remote(peer);
        let Role::Viewer(v) = &mut peer.role else {
            info!(%channel, "publisher connected");
            return;
        };
        if v.connected {
            return;
        }
        v.connected = true;
        v.srtp = tap
            .as_ref()
            .and_then(|tap| tap.local_context())
            .map(Box::new);
        v.gcm = tap.as_ref().and_then(|tap| tap.local_gcm());
        if v.srtp.is_none() {
            warn!(%channel, "no SRTP keys seen for a viewer; its media goes through rtc's pipeline");
        }
        let now = Instant::now();
        if self.webrtc.ice_lite {
            v.detach_at = Some(now + DETACH_AFTER);
        }
        if let Some(to) = remote {
            peer.send_to = Some(to);
        }
        let replay_delay = if engine_is_dtls_server {
            REPLAY_DELAY
        } else {
            Duration::ZERO
        };
        // Fast start: the latest keyframe group is replayed after `replay_delay`.
        self.hub.viewer_connected(key, replay_delay, now);
    }

    /// How long a detached viewer may stay silent: what makes a peer connection fail.
    pub(super) fn consent_timeout(&self) -> Duration {
        Duration::from_secs(self.webrtc.disconnected_timeout_secs + self.webrtc.failed_timeout_secs)
    }

    /// Drops a connected viewer's `RTCPeerConnection` and serves it from the engine alone:
    /// its media already goes out through the engine's SRTP, its consent checks are
    /// answered with [`stun::consent_answer`] (we are ICE-lite: the only checks are the
    /// viewer's), its SRTCP is opened with the remote key the tap saw, and a DTLS alert
    /// (its close_notify) ends it. Kept on rtc's pipeline when any key is missing.
    pub(super) fn detach(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let (send_to, closing) = (peer.send_to, peer.closing);
        let tap = peer.tap.clone();
        let channel = peer.channel.clone();
        let Some(v) = peer.viewer() else {
            return;
        };
        v.detach_at = None;
        if v.srtp.is_none() || send_to.is_none() || closing {
            return;
        }
        // Until the viewer's RTCP shows its side of DTLS is done (when it is the DTLS
        // client, our last flight may still need a retransmission), rtc keeps it.
        if !v.rtcp_seen {
            v.detach_at = Some(Instant::now() + DETACHED_TICK);
            return;
        }
        let Some(srtcp) = tap.and_then(|tap| tap.remote_context()) else {
            debug!(%channel, "no remote SRTP key seen; the viewer stays on rtc");
            return;
        };
        v.detached = Some(Detached {
            srtcp: Box::new(srtcp),
            heard: Instant::now(),
        });
        take_writes(peer, &mut self.outbox);
        // Dropped, not closed: closing would send the viewer a DTLS close_notify.
        peer.pc = None;
        peer.tap = None;
        RelayCounters::add(&self.board.counters.viewers_detached, 1);
        debug!(%channel, "viewer detached from its peer connection");
    }

    /// A datagram for a detached viewer: a consent check, its SRTCP, or a DTLS record.
    pub(super) fn detached_datagram(&mut self, key: PeerKey, data: &[u8], from: SocketAddr) {
        let crypto = self.negotiator.crypto.clone();
        let Some(v) = self.peers.get_mut(key).and_then(Peer::viewer) else {
            return;
        };
        let Some(detached) = v.detached.as_mut() else {
            return;
        };
        let mut feedback = Feedback::default();
        match data.first().copied().unwrap_or(0) {
            // RFC 7983 demultiplexing: STUN.
            0..=3 => {
                if let Some(answer) = stun::consent_answer(data, from, &v.pwd, crypto.crypto()) {
                    detached.heard = Instant::now();
                    self.outbox
                        .datagrams
                        .push((BytesMut::from(&answer[..]), from));
                }
                return;
            }
            // DTLS: after the handshake only an alert can matter, and any alert (the
            // viewer's close_notify, or a fatal one) ends the connection.
            20..=63 => {
                if data[0] == 21 {
                    self.remove_peer(key, "the viewer closed its connection");
                }
                return;
            }
            // RTP or RTCP (RFC 5761: RTCP packet types 192..=223).
            128..=191 if data.get(1).is_some_and(|pt| (192..=223).contains(pt)) => {
                let Ok(mut plain) = detached.srtcp.decrypt_rtcp(data) else {
                    debug!("a detached viewer's SRTCP did not authenticate");
                    return;
                };
                detached.heard = Instant::now();
                if let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut plain) {
                    feedback.read(v, &packets);
                }
            }
            _ => return,
        }
        self.apply_feedback(key, feedback);
    }

    /// Acts on what a viewer's RTCP asked: a keyframe from the publisher, retransmissions,
    /// and its loss reports; returns false when the viewer was dropped for its losses.
    pub(super) fn apply_feedback(&mut self, key: PeerKey, feedback: Feedback) -> bool {
        let now = Instant::now();
        if feedback.keyframe
            && let Some(channel) = self.hub.viewer_channel(key).cloned()
        {
            self.hub.request_keyframe(&channel, now);
        }
        if !feedback.nacked.is_empty() {
            let wanted = match self.peers.get_mut(key).and_then(Peer::viewer) {
                Some(v) => v.nacked_sources(&feedback.nacked),
                None => Vec::new(),
            };
            let (hub, mut out) = self.fanout(now);
            let resent = hub.retransmit(key, wanted, now, &mut out);
            if resent > 0 {
                self.board
                    .count_retransmissions(self.links.index, resent as u64);
            }
        }
        RelayCounters::add(
            &self.board.counters.retransmissions_refused,
            feedback.nacked_over_cap,
        );
        for fraction_lost in feedback.losses {
            if !self.hub.viewer_loss(key, fraction_lost, now) {
                self.remove_peer(key, "link lost too much for too long");
                return false;
            }
        }
        true
    }
}

/// Who a viewer is for the caps: a signed edge pull is under none.
pub(super) fn seat(info: &ViewerInfo) -> Seat {
    Seat {
        client: info.client,
        exempt: info.edge_pull,
    }
}

/// What a viewer's offer gets: formats for the channel's streams, or the codec of a
/// bridge stream it should watch instead.
pub(super) enum Chosen {
    Codecs(ViewerCodecs),
    Bridge(RTCRtpCodec),
}

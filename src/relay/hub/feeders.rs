//! Streams of a channel fed by another local source than its own: a WHIP publisher's
//! ladder encoded by the server (a feeder's renditions) and codec bridges (the source's
//! video in a codec some viewers need). Bridge viewers of a session that ended are kept
//! and given a bridge of the next source that goes live on the channel.

use std::time::Instant;

use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use tracing::info;

use super::ch_keyframe_now;
use super::{Admission, Deliver, Hub, HubEvent, LocalId, PeerKey, RelayError, VideoStream};
use crate::ids::{ChannelName, SessionId};
use crate::media::MediaKind;

impl Hub {
    /// The stream of `channel` that carries its source video in `codec` for viewers that
    /// cannot take the source's codec, made (and [`HubEvent::BridgeWanted`] raised, for a
    /// feeder to attach) when there is none yet or it was withdrawn. The viewer waits for
    /// its first keyframe as any late joiner does.
    pub fn bridge(
        &mut self,
        channel: &ChannelName,
        codec: RTCRtpCodec,
    ) -> Result<Admission, RelayError> {
        let gop_max = self.config.gop_max_packets;
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|c| c.live)
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        let session = ch
            .live_session()
            .map(|s| s.id)
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        let same = |s: &VideoStream| {
            s.bridge
                && s.codec
                    .as_ref()
                    .is_some_and(|c| c.mime_type.eq_ignore_ascii_case(&codec.mime_type))
        };
        let index = match ch.streams.iter().position(same) {
            Some(index) => index,
            None => {
                let name = format!("bridge-{}", codec.mime_type.trim_start_matches("video/"));
                let mut stream = VideoStream::new(&name, Some(codec.clone()), gop_max);
                stream.bridge = true;
                stream.withdrawn = true;
                ch.streams.push(stream);
                ch.streams.len() - 1
            }
        };
        let stream = &mut ch.streams[index];
        if stream.withdrawn && stream.feeder.is_none() {
            stream.withdrawn = false;
            info!(%channel, codec = %codec.mime_type, stream = index, "codec bridge wanted");
            self.events.push_back(HubEvent::BridgeWanted {
                channel: channel.clone(),
                session,
                stream: index,
                codec: codec.clone(),
            });
        }
        Ok(Admission {
            video: Some(codec),
            audio: ch.audio_codec.clone(),
            rendition: index,
        })
    }

    /// Lets `id` feed the bridge stream `stream` of `channel`'s live session `session`
    /// (see [`Hub::bridge`]).
    pub fn attach_bridge(
        &mut self,
        channel: &ChannelName,
        session: SessionId,
        id: LocalId,
        stream: usize,
        now: Instant,
    ) -> Result<(), RelayError> {
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|c| c.live_session().is_some_and(|s| s.id == session))
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        let slot = ch
            .streams
            .get_mut(stream)
            .filter(|s| s.bridge && s.feeder.is_none())
            .ok_or_else(|| RelayError::Internal(format!("no free bridge stream {stream}")))?;
        slot.feeder = Some(id);
        slot.withdrawn = false;
        // The bridge decodes the source from its next keyframe.
        ch_keyframe_now(self, channel, now);
        Ok(())
    }

    /// Lets `id` feed renditions `names` of the live session `session` of `channel` (a
    /// WHIP publisher's ladder, encoded by the server); they are offered to viewers from
    /// now on. One feeder per channel; it is let go when the session ends.
    pub fn attach_feeder(
        &mut self,
        channel: &ChannelName,
        session: SessionId,
        id: LocalId,
        names: &[String],
        now: Instant,
    ) -> Result<(), RelayError> {
        let gop_max = self.config.gop_max_packets;
        let ch = self
            .channels
            .get_mut(channel)
            .filter(|c| c.live_session().is_some_and(|s| s.id == session))
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        if let Some(name) = names
            .iter()
            .find(|n| ch.streams.iter().any(|s| &s.name == *n))
        {
            return Err(RelayError::Internal(format!(
                "channel {channel} already has a rendition named {name}"
            )));
        }
        ch.streams.extend(names.iter().map(|name| {
            // The feeder encodes with libx264 (constrained baseline).
            let mut stream =
                VideoStream::new(name, Some(crate::relay::media::h264_codec()), gop_max);
            stream.feeder = Some(id);
            stream
        }));
        info!(%channel, %session, renditions = ?names, "renditions fed by the server");
        self.publish_status(channel);
        // The feeder decodes the source from its next keyframe.
        ch_keyframe_now(self, channel, now);
        Ok(())
    }

    /// The feeder `id` stopped: its renditions are no longer offered, and their viewers
    /// go back to the source video (at its next keyframe).
    pub fn detach_feeder(
        &mut self,
        channel: &ChannelName,
        id: LocalId,
        now: Instant,
        out: &mut impl Deliver,
    ) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let source_mime = ch.streams[0].codec.as_ref().map(|c| c.mime_type.clone());
        let mut fed = Vec::new();
        for (index, stream) in ch.streams.iter_mut().enumerate() {
            if stream.feeder == Some(id) {
                stream.feeder = None;
                stream.withdrawn = true;
                stream.clear();
                let same_codec =
                    stream.codec.as_ref().map(|c| &c.mime_type) == source_mime.as_ref();
                fed.push((index, same_codec));
            }
        }
        if fed.is_empty() {
            return;
        }
        // Viewers of a withdrawn stream go back to the source video when they can decode
        // it; the others (a bridge's) are let go.
        let viewers: Vec<PeerKey> = ch.viewers.iter().copied().collect();
        for key in viewers {
            let Some(v) = self.viewers.get_mut(&key) else {
                continue;
            };
            let Some(&(index, same_codec)) = fed.iter().find(|(i, _)| *i == v.rendition) else {
                continue;
            };
            if same_codec {
                v.rendition = 0;
                ch.streams[index].watchers = ch.streams[index].watchers.saturating_sub(1);
                ch.streams[0].watchers += 1;
                out.resync(key, Some(MediaKind::Video));
            } else {
                self.events.push_back(HubEvent::DropViewer { viewer: key });
            }
        }
        self.publish_status(channel);
        self.request_keyframe(channel, now);
    }

    /// A source went live on `channel`: the viewers parked on a codec bridge when the last
    /// session ended get a bridge of the new source's video (raising
    /// [`HubEvent::BridgeWanted`] when there is none yet), or the source video itself when
    /// it is in their codec; they stay connected and start at its next keyframe.
    pub(super) fn rebridge(&mut self, channel: &ChannelName, out: &mut impl Deliver) {
        let Some(ch) = self.channels.get_mut(channel) else {
            return;
        };
        let parked = std::mem::take(&mut ch.parked);
        let source = ch
            .video_codec
            .as_ref()
            .map(|c| c.mime_type.to_ascii_lowercase());
        for (key, codec) in parked {
            if self.viewers.get(&key).is_none_or(|v| v.channel != *channel) {
                continue; // Left meanwhile.
            }
            let stream = if source.as_deref() == Some(&codec.mime_type.to_ascii_lowercase()) {
                0
            } else {
                match self.bridge(channel, codec) {
                    Ok(admission) => admission.rendition,
                    Err(_) => {
                        self.events.push_back(HubEvent::DropViewer { viewer: key });
                        continue;
                    }
                }
            };
            let (Some(ch), Some(v)) = (self.channels.get_mut(channel), self.viewers.get_mut(&key))
            else {
                continue;
            };
            if let Some(old) = ch.streams.get_mut(v.rendition) {
                old.watchers = old.watchers.saturating_sub(1);
            }
            v.rendition = stream;
            ch.streams[stream].watchers += 1;
            out.resync(key, Some(MediaKind::Video));
        }
    }
}

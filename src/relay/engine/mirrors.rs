//! The engine's side of shards ([`crate::relay::shards`]): handing a home shard's runs of
//! packets to its mirrors, whether this shard can take a viewer itself or which shard to
//! hand it to, messages from other shards, and tokens that name this shard.

use std::sync::Arc;
use std::time::Instant;

use super::{Engine, MediaRun, viewers};
use crate::ids::ChannelName;
use crate::relay::hub::Source;
use crate::relay::negotiate::random_token;
use crate::relay::shards::{ShardMsg, SharedRun};
use crate::relay::{RelayCounters, RelayError, ViewerInfo};

impl Engine {
    /// Hands a run of packets this home shard forwarded to every mirror of the channel
    /// (one shared run, not a copy per shard); gives the run back for the taps.
    pub(super) fn mirror_run(
        &mut self,
        channel: &ChannelName,
        rendition: usize,
        packets: MediaRun,
    ) -> SharedRun {
        let packets = Arc::new(packets);
        if self.links.count > 1 {
            let dropped = self.links.to_mirrors(|| ShardMsg::Media {
                channel: channel.clone(),
                rendition,
                packets: packets.clone(),
            });
            RelayCounters::add(
                &self.board.counters.datagrams_dropped,
                (dropped * packets.len()) as u64,
            );
        }
        packets
    }

    /// Whether this shard (not the channel's home) can take a viewer itself: the channel
    /// is live here, the quality and a codec of the offer are here (not a bridge), and
    /// there is room (or a place this shard's own connecting viewer can give up).
    pub(super) fn can_serve(
        &self,
        channel: &ChannelName,
        offer: &str,
        viewer: &ViewerInfo,
    ) -> bool {
        let Ok(admission) = self.hub.admit(channel, viewer.quality.as_deref()) else {
            return false;
        };
        let room = match self.hub.has_room_for_seat(channel, viewers::seat(viewer)) {
            Ok(()) => true,
            Err(RelayError::Connecting(_)) => !self.hub.connecting_viewers(channel).is_empty(),
            Err(_) => false,
        };
        room && matches!(
            self.choose_codecs(channel, &admission, offer),
            Ok(viewers::Chosen::Codecs(_))
        )
    }

    /// The shard to hand a viewer of `channel` to when every connecting place of the
    /// channel is taken and none by a viewer of this shard (one of that shard's gives its
    /// place up, as this shard's would): the shard with the most of them.
    pub(super) fn connecting_elsewhere(
        &self,
        channel: &ChannelName,
        viewer: &ViewerInfo,
    ) -> Option<usize> {
        if self.links.count < 2
            || !matches!(
                self.hub.has_room_for_seat(channel, viewers::seat(viewer)),
                Err(RelayError::Connecting(_))
            )
            || !self.hub.connecting_viewers(channel).is_empty()
        {
            return None;
        }
        let (shard, _) = self.hub.seats().most_connecting(channel)?;
        (shard != self.links.index).then_some(shard)
    }

    /// A message from another shard.
    pub(super) fn handle_shard_msg(&mut self, msg: ShardMsg) {
        let now = Instant::now();
        match msg {
            ShardMsg::Datagram(data, from) => self.handle_datagram(&data, from, true),
            ShardMsg::Live {
                channel,
                session,
                tracks,
            } => {
                let (hub, mut out) = self.fanout(now);
                hub.release(&channel, Source::Origin, &mut out);
                if hub.claim(&channel, Source::Origin, session).is_ok() {
                    hub.go_live(&channel, Source::Origin, tracks, now, &mut out);
                }
            }
            ShardMsg::Media {
                channel,
                rendition,
                packets,
            } => {
                let (hub, mut out) = self.fanout(now);
                hub.fan_out(&channel, Source::Origin, rendition, &packets, &mut out);
            }
            ShardMsg::Paused { channel, rendition } => {
                self.hub.pause_stream(&channel, Source::Origin, rendition)
            }
            ShardMsg::Ended { channel } => {
                let (hub, mut out) = self.fanout(now);
                hub.release(&channel, Source::Origin, &mut out);
            }
            ShardMsg::KeyframeWanted { channel } => self.hub.request_keyframe(&channel, now),
        }
    }

    /// A token (ICE ufrag, resource id) of `len` characters whose first names this shard
    /// when several run.
    pub(super) fn token(&self, len: usize) -> String {
        let token = random_token(len);
        if self.links.count > 1 {
            format!(
                "{}{}",
                crate::relay::shards::tag(self.links.index),
                &token[1..]
            )
        } else {
            token
        }
    }
}

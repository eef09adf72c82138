//! A viewer's way in and out: whether it may join a channel (its stream and codec, the
//! caps counted across shards in [`Seats`]), adding it, its connection coming up (the
//! keyframe-group replay due) and its leaving; and a shard's hub, sharing the places.

use std::cmp::Reverse;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Admission, Hub, HubConfig, HubEvent, PeerKey, RelayError, Seat, Seats, Viewer};
use super::{BinaryHeap, FxHashMap, HashMap, RelayCounters, VecDeque};
use super::{RetransmitBudget, ViewerHealth};
use crate::ids::ChannelName;

impl Hub {
    /// The hub of engine shard `shard`, whose viewers' places count in `seats` with every
    /// other shard's.
    pub fn sharing(
        config: HubConfig,
        counters: Arc<RelayCounters>,
        seats: Arc<Seats>,
        shard: usize,
    ) -> Hub {
        Hub {
            config,
            channels: HashMap::new(),
            viewers: FxHashMap::default(),
            replays: BinaryHeap::new(),
            events: VecDeque::new(),
            counters,
            seats,
            shard,
        }
    }

    /// Checks that a new viewer may join `channel` with `quality` (`None`: the source),
    /// and says what it negotiates.
    pub fn admit(
        &self,
        channel: &ChannelName,
        quality: Option<&str>,
    ) -> Result<Admission, RelayError> {
        let ch = self
            .channels
            .get(channel)
            .filter(|c| c.live)
            .ok_or_else(|| RelayError::NotLive(channel.to_string()))?;
        let rendition = match quality {
            None | Some("") => 0,
            Some(asked) => ch
                .streams
                .iter()
                .position(|s| s.offered() && s.name == asked)
                .ok_or_else(|| RelayError::UnknownQuality {
                    channel: channel.to_string(),
                    asked: asked.to_string(),
                    offered: ch.qualities(),
                })?,
        };
        Ok(Admission {
            video: ch.streams[rendition].codec.clone(),
            audio: ch.audio_codec.clone(),
            rendition,
        })
    }

    /// `Full` when the channel has as many viewers as it accepts.
    pub fn has_room(&self, channel: &ChannelName) -> Result<(), RelayError> {
        self.has_room_for(channel, None)
    }

    /// Whether a viewer from `client` may join `channel`, on any shard: `Full` when the
    /// channel has as many viewers as it accepts, `Connecting` when it has as many still
    /// connecting, `ClientConnecting` when `client` has as many still connecting.
    pub fn has_room_for(
        &self,
        channel: &ChannelName,
        client: Option<IpAddr>,
    ) -> Result<(), RelayError> {
        self.seats.check(channel, Seat::from(client), &self.config)
    }

    /// [`Hub::has_room_for`] a viewer `seat` (a signed edge pull always has room).
    pub fn has_room_for_seat(&self, channel: &ChannelName, seat: Seat) -> Result<(), RelayError> {
        self.seats.check(channel, seat, &self.config)
    }

    /// Every shard's places (see [`Seats`]).
    pub fn seats(&self) -> &Arc<Seats> {
        &self.seats
    }

    /// The viewers of `channel` that have not connected yet.
    pub fn connecting_viewers(&self, channel: &ChannelName) -> Vec<PeerKey> {
        let Some(ch) = self.channels.get(channel) else {
            return Vec::new();
        };
        ch.viewers
            .iter()
            .copied()
            .filter(|k| {
                self.viewers
                    .get(k)
                    .is_some_and(|v| v.seated && !v.connected)
            })
            .collect()
    }

    /// Adds an admitted viewer (not yet connected) to its channel.
    pub fn add_viewer(&mut self, key: PeerKey, channel: &ChannelName, rendition: usize) {
        self.add_viewer_from(key, channel, rendition, None);
    }

    /// Adds an admitted viewer from `client` (not yet connected) to its channel, whatever
    /// the caps say.
    pub fn add_viewer_from(
        &mut self,
        key: PeerKey,
        channel: &ChannelName,
        rendition: usize,
        client: Option<IpAddr>,
    ) {
        let _ = self.join_viewer(key, channel, rendition, Seat::from(client), false);
    }

    /// Adds a viewer `seat` (not yet connected) to its live channel if `capped` allows,
    /// taking its place in one step with the check, so shards admitting at once cannot
    /// pass the caps.
    pub fn join_viewer(
        &mut self,
        key: PeerKey,
        channel: &ChannelName,
        rendition: usize,
        seat: Seat,
        capped: bool,
    ) -> Result<(), RelayError> {
        let Some(ch) = self.channels.get_mut(channel) else {
            return Err(RelayError::NotLive(channel.to_string()));
        };
        let caps = capped.then_some(&self.config);
        self.seats.take(channel, self.shard, seat, caps)?;
        ch.viewers.insert(key);
        if let Some(stream) = ch.streams.get_mut(rendition) {
            stream.watchers += 1;
        }
        self.viewers.insert(
            key,
            Viewer {
                channel: channel.clone(),
                rendition,
                connected: false,
                replay_at: None,
                skip_video: false,
                health: ViewerHealth::default(),
                rtx_budget: RetransmitBudget::default(),
                attending: false,
                client: seat.client,
                seated: !seat.exempt,
            },
        );
        Ok(())
    }

    /// The viewer's connection is up: it is counted and gets the keyframe group after
    /// `replay_delay` (live video waits for it). It attends the live session from the first
    /// packet it is sent.
    pub fn viewer_connected(&mut self, key: PeerKey, replay_delay: Duration, now: Instant) {
        let Some(v) = self.viewers.get_mut(&key) else {
            return;
        };
        if v.connected {
            return;
        }
        v.connected = true;
        if v.seated {
            self.seats.connected(&v.channel, self.shard, v.client);
        }
        let at = now + replay_delay;
        v.replay_at = Some(at);
        self.replays.push(Reverse((at, key)));
        let channel = v.channel.clone();
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.connected_viewers += 1;
        }
        self.publish_status(&channel);
    }

    /// Removes a viewer (it left, failed or was dropped).
    pub fn remove_viewer(&mut self, key: PeerKey) {
        let Some(v) = self.viewers.remove(&key) else {
            return;
        };
        if v.seated {
            self.seats
                .left(&v.channel, self.shard, v.client, v.connected);
        }
        if v.attending {
            self.events
                .push_back(HubEvent::NotAttending { viewer: key });
        }
        if let Some(ch) = self.channels.get_mut(&v.channel) {
            ch.viewers.remove(&key);
            if let Some(stream) = ch.streams.get_mut(v.rendition) {
                stream.watchers = stream.watchers.saturating_sub(1);
            }
            if v.connected {
                ch.connected_viewers = ch.connected_viewers.saturating_sub(1);
            }
        }
        self.publish_status(&v.channel);
        self.remove_if_idle(&v.channel);
    }
}

//! Viewers' places, counted across every engine shard: the caps `[relay]
//! max_viewers_per_channel`, `max_unconnected_per_channel` and `max_unconnected_per_client`
//! hold for the server, whatever `[webrtc] shards` is.
//!
//! One table shared by the shards' hubs (an `Arc`), behind one lock taken only when a
//! viewer is admitted, connects or leaves: never per packet. A place is checked and taken
//! in one step ([`Seats::take`]), so two shards admitting at once cannot both take the last
//! one.
//!
//! A viewer still connecting (answered, ICE and DTLS not done) costs a peer connection and
//! a place in its channel; an offer that never goes on to connect holds both until its
//! engine lets it go (`[relay] unconnected_timeout_secs`), or gives its place to a newer
//! viewer (the engine's `give_up_longest_connecting`). The table counts those per channel
//! and shard (so a shard with none of its own knows which shard has some to give up) and
//! per client address. It holds only channels with a viewer and addresses with a viewer
//! connecting now, so it is bounded by the viewers, however many addresses a client
//! rotates through.
//!
//! Signed cluster edge pulls take no place ([`Seat::exempt`]): an edge is one viewer for a
//! whole node's audience, and the origin limits edges with `[cluster]
//! max_edges_per_origin`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::{HubConfig, RelayError};
use crate::ids::ChannelName;

/// Who a new viewer is, for the caps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seat {
    /// Its client address group, capped per address while connecting; `None`: unknown.
    pub client: Option<IpAddr>,
    /// A signed cluster edge pull: under no cap and taking no place.
    pub exempt: bool,
}

impl Seat {
    /// A viewer from `client`, under every cap.
    pub fn from(client: Option<IpAddr>) -> Seat {
        Seat {
            client,
            exempt: false,
        }
    }
}

#[derive(Debug, Default)]
struct ChannelSeats {
    /// Viewers holding a place, connected or not, on every shard.
    viewers: usize,
    /// Viewers still connecting, per shard.
    connecting: Vec<usize>,
}

impl ChannelSeats {
    fn connecting(&self) -> usize {
        self.connecting.iter().sum()
    }
}

#[derive(Debug, Default)]
struct Table {
    channels: HashMap<ChannelName, ChannelSeats>,
    /// Viewers connecting now per client address, across channels and shards.
    clients: HashMap<IpAddr, usize>,
}

/// The places every shard's viewers hold. See the module docs.
#[derive(Debug)]
pub struct Seats {
    shards: usize,
    // A std Mutex: held for a few map operations, never across an await.
    table: Mutex<Table>,
}

impl Seats {
    /// The table of `shards` engine shards.
    pub fn new(shards: usize) -> Seats {
        Seats {
            shards: shards.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A poisoned lock only means a panic elsewhere (which ends the process).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a viewer `seat` may join `channel` now: `Full` when the channel has as many
    /// viewers as it accepts, `Connecting` when it has as many still connecting,
    /// `ClientConnecting` when the client has as many still connecting.
    pub fn check(
        &self,
        channel: &ChannelName,
        seat: Seat,
        caps: &HubConfig,
    ) -> Result<(), RelayError> {
        if seat.exempt {
            return Ok(());
        }
        check(&self.lock(), channel, seat.client, caps)
    }

    /// Takes a place in `channel` on shard `shard` for `seat` if the caps allow (`caps`;
    /// `None` takes it whatever they say); refused as [`Seats::check`].
    pub fn take(
        &self,
        channel: &ChannelName,
        shard: usize,
        seat: Seat,
        caps: Option<&HubConfig>,
    ) -> Result<(), RelayError> {
        if seat.exempt {
            return Ok(());
        }
        let mut table = self.lock();
        if let Some(caps) = caps {
            check(&table, channel, seat.client, caps)?;
        }
        let shards = self.shards;
        let seats = table.channels.entry(channel.clone()).or_default();
        seats.viewers += 1;
        seats.connecting.resize(shards.max(shard + 1), 0);
        seats.connecting[shard] += 1;
        if let Some(client) = seat.client {
            *table.clients.entry(client).or_default() += 1;
        }
        Ok(())
    }

    /// A viewer of `channel` on `shard` that took a place connected: it no longer counts
    /// as connecting.
    pub fn connected(&self, channel: &ChannelName, shard: usize, client: Option<IpAddr>) {
        let mut table = self.lock();
        if let Some(n) = table
            .channels
            .get_mut(channel)
            .and_then(|s| s.connecting.get_mut(shard))
        {
            *n = n.saturating_sub(1);
        }
        client_done(&mut table, client);
    }

    /// A viewer of `channel` on `shard` that took a place left (`connected`: after it
    /// connected).
    pub fn left(
        &self,
        channel: &ChannelName,
        shard: usize,
        client: Option<IpAddr>,
        connected: bool,
    ) {
        let mut table = self.lock();
        if let Some(seats) = table.channels.get_mut(channel) {
            seats.viewers = seats.viewers.saturating_sub(1);
            if !connected && let Some(n) = seats.connecting.get_mut(shard) {
                *n = n.saturating_sub(1);
            }
            if seats.viewers == 0 {
                table.channels.remove(channel);
            }
        }
        if !connected {
            client_done(&mut table, client);
        }
    }

    /// The shard with the most viewers of `channel` still connecting, and how many.
    pub fn most_connecting(&self, channel: &ChannelName) -> Option<(usize, usize)> {
        let table = self.lock();
        let seats = table.channels.get(channel)?;
        seats
            .connecting
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(i, n)| (*n, std::cmp::Reverse(*i)))
    }

    /// Viewers holding a place in `channel` on every shard, and how many of them are
    /// still connecting.
    pub fn counts(&self, channel: &ChannelName) -> (usize, usize) {
        let table = self.lock();
        table
            .channels
            .get(channel)
            .map_or((0, 0), |s| (s.viewers, s.connecting()))
    }

    /// Addresses with a viewer connecting now.
    #[cfg(test)]
    pub(super) fn addresses(&self) -> usize {
        self.lock().clients.len()
    }
}

fn check(
    table: &Table,
    channel: &ChannelName,
    client: Option<IpAddr>,
    caps: &HubConfig,
) -> Result<(), RelayError> {
    let (count, connecting) = table
        .channels
        .get(channel)
        .map_or((0, 0), |s| (s.viewers, s.connecting()));
    if count >= caps.max_viewers_per_channel {
        return Err(RelayError::Full(channel.to_string(), count));
    }
    if connecting >= caps.max_unconnected_per_channel {
        return Err(RelayError::Connecting(channel.to_string()));
    }
    if let Some(client) = client {
        let from = table.clients.get(&client).copied().unwrap_or(0);
        if from >= caps.max_unconnected_per_client {
            return Err(RelayError::ClientConnecting(from));
        }
    }
    Ok(())
}

fn client_done(table: &mut Table, client: Option<IpAddr>) {
    let Some(client) = client else {
        return;
    };
    if let Some(n) = table.clients.get_mut(&client) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            table.clients.remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn caps(viewers: usize, connecting: usize, per_client: usize) -> HubConfig {
        HubConfig {
            gop_max_packets: 16,
            pli_min_interval: Duration::from_millis(500),
            max_viewers_per_channel: viewers,
            max_unconnected_per_channel: connecting,
            max_unconnected_per_client: per_client,
        }
    }

    #[test]
    fn two_shards_share_one_channels_caps() {
        let seats = Seats::new(2);
        let ch = ChannelName::parse("lecture").expect("a channel");
        let caps = caps(3, 2, 10);
        let x: IpAddr = "10.0.0.1".parse().expect("an address");
        seats
            .take(&ch, 0, Seat::from(Some(x)), Some(&caps))
            .expect("a place");
        seats
            .take(&ch, 1, Seat::from(Some(x)), Some(&caps))
            .expect("a place");
        // Two connecting, one on each shard: the channel's connecting cap, on both.
        assert!(matches!(
            seats.take(&ch, 0, Seat::from(None), Some(&caps)),
            Err(RelayError::Connecting(_))
        ));
        assert_eq!(seats.most_connecting(&ch), Some((0, 1)));
        seats.connected(&ch, 1, Some(x));
        assert_eq!(seats.most_connecting(&ch), Some((0, 1)));
        seats
            .take(&ch, 1, Seat::from(None), Some(&caps))
            .expect("a place");
        assert_eq!(seats.counts(&ch), (3, 2));
        // Three viewers on two shards: full, except for a signed edge pull.
        assert!(matches!(
            seats.check(&ch, Seat::from(None), &caps),
            Err(RelayError::Full(_, 3))
        ));
        let pull = Seat {
            client: None,
            exempt: true,
        };
        seats
            .take(&ch, 0, pull, Some(&caps))
            .expect("a pull past a full channel");
        assert_eq!(seats.counts(&ch), (3, 2), "a pull takes no place");
        seats.left(&ch, 1, Some(x), true);
        seats.left(&ch, 0, Some(x), false);
        seats.left(&ch, 1, None, false);
        assert_eq!(seats.counts(&ch), (0, 0));
        assert_eq!(seats.addresses(), 0);
        assert!(seats.most_connecting(&ch).is_none());
    }
}

//! Viewers still connecting, per client address: answered, but ICE and DTLS not done yet.
//! Such a viewer costs a peer connection and a place in its channel; an offer that never
//! goes on to connect would hold both until the engine lets it go
//! (`[relay] unconnected_timeout_secs`). The hub caps them per channel (from its own
//! counts) and per client address here.
//!
//! The map holds only addresses with a viewer connecting now, so it is bounded by the
//! per-channel cap times the live channels, however many addresses a client rotates
//! through.

use std::collections::HashMap;
use std::net::IpAddr;

/// How many viewers each client address has connecting now.
#[derive(Debug, Default)]
pub(super) struct Connecting {
    per_client: HashMap<IpAddr, usize>,
}

impl Connecting {
    /// Viewers connecting from `client` now.
    pub(super) fn from(&self, client: IpAddr) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    /// A viewer from `client` was admitted.
    pub(super) fn started(&mut self, client: IpAddr) {
        *self.per_client.entry(client).or_default() += 1;
    }

    /// A viewer from `client` connected or left before connecting.
    pub(super) fn ended(&mut self, client: IpAddr) {
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
        }
    }

    /// Addresses with a viewer connecting now.
    #[cfg(test)]
    pub(super) fn addresses(&self) -> usize {
        self.per_client.len()
    }
}

//! Per-client token buckets for `POST /whep` (`[http] whep_posts_per_sec`,
//! `whep_post_burst`): each client address may make a burst of requests, then requests at
//! the refill rate; past that it is told when to come back.
//!
//! Clients are grouped by address: an IPv4 address, or an IPv6 /64 (one household or
//! phone gets a whole /64, so rotating inside it must not give a fresh bucket). The map is
//! bounded: a bucket that has refilled is the same as none and is dropped when the map
//! fills, and if every bucket is still draining, arbitrary ones go (those clients start
//! over with a full bucket: a client rotating through that many addresses is not held by a
//! per-address limit anyway; the relay's caps on viewers still connecting hold it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most client addresses tracked at once (about 40 bytes each).
pub const TRACKED_CLIENTS: usize = 65_536;

/// The address a client is limited by: its IPv4 address (also when mapped into IPv6), or
/// its IPv6 /64.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left at `at`.
    tokens: f64,
    at: Instant,
}

/// Token buckets per client group.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    /// Most buckets kept.
    capacity: usize,
    // A std Mutex: held only to update one entry (or prune), never across an await.
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// Buckets of `burst` tokens refilled at `per_sec`, for at most `capacity` clients.
    pub fn new(per_sec: f64, burst: u32, capacity: usize) -> RateLimiter {
        RateLimiter {
            rate: per_sec,
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token from `client`'s bucket at `now`: `Ok`, or `Err(seconds)` until one is
    /// there (at least 1, rounded up, for `Retry-After`).
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let group = client_group(client);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&group) && buckets.len() >= self.capacity {
            self.prune(&mut buckets, now);
        }
        let bucket = buckets.entry(group).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }

    /// Tokens added per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Bucket size.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Makes room: drops buckets that have refilled, then arbitrary ones down to three
    /// quarters of the capacity, so a full map is pruned once per quarter of its size.
    fn prune(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
        let keep = self.capacity * 3 / 4;
        if buckets.len() > keep {
            let excess: Vec<IpAddr> = buckets.keys().take(buckets.len() - keep).copied().collect();
            for ip in excess {
                buckets.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_then_retry_after() {
        let limiter = RateLimiter::new(10.0, 50, 100);
        let t0 = Instant::now();
        for _ in 0..50 {
            assert!(limiter.take(ip("10.0.0.1"), t0).is_ok());
        }
        assert_eq!(limiter.take(ip("10.0.0.1"), t0), Err(1));
        // Another address has its own bucket.
        assert!(limiter.take(ip("10.0.0.2"), t0).is_ok());
        // A tenth of a second later, one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.take(ip("10.0.0.1"), t1).is_ok());
        assert!(limiter.take(ip("10.0.0.1"), t1).is_err());
        // A slow rate says how long to wait.
        let slow = RateLimiter::new(0.2, 1, 100);
        assert!(slow.take(ip("10.0.0.1"), t0).is_ok());
        assert_eq!(slow.take(ip("10.0.0.1"), t0), Err(5));
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let limiter = RateLimiter::new(1.0, 2, 100);
        let t0 = Instant::now();
        assert!(limiter.take(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(limiter.take(ip("2001:db8:1:2:ffff::9"), t0).is_ok());
        assert!(limiter.take(ip("2001:db8:1:2:abcd::1"), t0).is_err());
        assert!(limiter.take(ip("2001:db8:1:3::1"), t0).is_ok());
        assert_eq!(client_group(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn rotating_addresses_cannot_grow_the_map() {
        let limiter = RateLimiter::new(10.0, 50, 1000);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let _ = limiter.take(IpAddr::V4(i.into()), t0);
            assert!(limiter.tracked() <= 1000);
        }
        // Refilled buckets go first: the one still draining survives a prune.
        let limiter = RateLimiter::new(10.0, 50, 4);
        for _ in 0..50 {
            let _ = limiter.take(ip("10.0.0.1"), t0);
        }
        let later = t0 + Duration::from_secs(1);
        for i in 2..=4 {
            let _ = limiter.take(ip(&format!("10.0.0.{i}")), t0);
        }
        let _ = limiter.take(ip("10.0.0.7"), later);
        assert!(limiter.tracked() <= 4);
        assert!(
            limiter.take(ip("10.0.0.1"), later).is_ok(),
            "10 tokens refilled"
        );
        for _ in 0..9 {
            let _ = limiter.take(ip("10.0.0.1"), later);
        }
        assert!(
            limiter.take(ip("10.0.0.1"), later).is_err(),
            "its bucket was kept, not reset"
        );
    }
}

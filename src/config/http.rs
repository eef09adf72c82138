//! `[http]`: the listener, its limits, TLS and trusted proxies.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the HTTP server listens on (`FEIYAN_LISTEN` overrides).
    pub listen: SocketAddr,
    /// Largest accepted SDP body; larger ones get 413.
    pub max_sdp_bytes: u64,
    /// Seconds a keep-alive connection may sit with no request before it is closed.
    pub idle_timeout_secs: u64,
    /// HTTPS on `listen`: off, a self-signed certificate kept in `state_dir`, or PEM files.
    pub tls: TlsMode,
    /// PEM certificate chain for `tls = "files"` (re-read on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls = "files"` (re-read on SIGHUP).
    pub tls_key: Option<PathBuf>,
    /// Host names and IP addresses a self-signed certificate is made for, besides the
    /// advertised IPs and `localhost`.
    pub tls_names: Vec<String>,
    /// Where plain HTTP is answered with a redirect to HTTPS (with `tls` on); none when unset.
    pub redirect_listen: Option<SocketAddr>,
    /// `POST /whep` requests each client address (an IPv6 /64) may make per second on
    /// average (a token bucket refilled at this rate); past it they get 429 with
    /// `Retry-After`.
    pub whep_posts_per_sec: f64,
    /// How many `POST /whep` requests one client address may make at once before the rate
    /// applies (the bucket's size): residents behind one NAT arriving together.
    pub whep_post_burst: u32,
    /// The folder `GET /assets/vendor/hls.min.js` is served from (`scripts/deps.sh` fills
    /// it; relative paths from the working directory). Default
    /// `vendor/hls.js/<HLS_JS_VERSION>`.
    pub vendor_dir: PathBuf,
    /// Reverse proxies (IPs or CIDR ranges) whose `X-Forwarded-For` names the client;
    /// from any other peer the header is ignored, so a client cannot pick the address
    /// the login throttle (and the hashed client address) sees. Empty by default.
    pub trusted_proxies: Vec<IpRange>,
    /// Password checks (argon2, 19 MiB each) `POST /api/login` runs at once; the rest
    /// wait up to `login_wait_ms`, then get 429. 1 to 16; default 2.
    pub login_checks: usize,
    /// How long a login waits for a free password check before its 429.
    pub login_wait_ms: u64,
    /// Open HTTP connections at most; the next one is closed as it is accepted (and
    /// counted in `/metrics` as `feiyan_http_connections_refused_total`).
    pub max_connections: usize,
    /// Open HTTP connections from one peer address at most (generous: a school's NAT is
    /// one address); not applied to `trusted_proxies`, which carry many clients.
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's headers (and to finish a TLS handshake)
    /// once it starts; a client trickling them (slowloris) is disconnected.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body; past it the request gets 408
    /// and the connection is closed.
    pub body_timeout_secs: u64,
    /// Seconds a response may make no progress (a client that stops reading) before the
    /// connection is closed; any bytes written start the wait again.
    pub write_timeout_secs: u64,
}

/// An IP address or a CIDR range (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`), as
/// `[http] trusted_proxies` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// The range's first address (host bits cleared).
    net: IpAddr,
    /// Leading bits that must match.
    prefix: u8,
}

impl IpRange {
    /// Parses `ip` or `ip/prefix`; the reason when it is neither.
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
        };
        Ok(IpRange {
            net: Self::masked(ip, prefix).unwrap_or(ip),
            prefix,
        })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        Self::masked(ip.to_canonical(), self.prefix) == Some(self.net)
    }

    fn masked(ip: IpAddr, prefix: u8) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(v4) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Some(IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask)))
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Some(IpAddr::from(std::net::Ipv6Addr::from(
                    u128::from(v6) & mask,
                )))
            }
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        IpRange::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How the HTTP listener speaks TLS (`[http] tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// HTTPS with a certificate made at first start and kept in `[catalog] state_dir`.
    SelfSigned,
    /// HTTPS with `tls_cert` and `tls_key`.
    Files,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_sdp_bytes: 64 * 1024,
            idle_timeout_secs: 10,
            tls: TlsMode::Off,
            tls_cert: None,
            tls_key: None,
            tls_names: Vec::new(),
            redirect_listen: None,
            whep_posts_per_sec: 10.0,
            whep_post_burst: 50,
            vendor_dir: PathBuf::from(format!("vendor/hls.js/{HLS_JS_VERSION}")),
            trusted_proxies: Vec::new(),
            login_checks: 2,
            login_wait_ms: 2_000,
            max_connections: 10_000,
            max_connections_per_client: 256,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            write_timeout_secs: 30,
        }
    }
}

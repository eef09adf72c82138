//! Configuration: a TOML file (`config/feiyan.toml`) parsed with unknown keys rejected,
//! a few environment overrides for what deployments change, then `validate()`.
//!
//! Plain settings and all their validation; imports nothing from the crate, so every module
//! may read its own section without pulling in another module.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What viewers ask for with `?quality=` to get a channel's original video; no rendition
/// may take this name.
pub const SOURCE_QUALITY: &str = "source";

/// The hls.js release the watch and TV pages load for HLS playback, and its npm
/// `dist.integrity`. The one place that pins it: `scripts/deps.sh` reads these two lines,
/// fetches `hls.js-<version>.tgz` from the npm registry, checks the hash and puts
/// `hls.min.js` into `vendor/hls.js/<version>/`, the default `[http] vendor_dir`.
pub const HLS_JS_VERSION: &str = "1.6.19";
/// npm's `dist.integrity` of [`HLS_JS_VERSION`]'s tarball (read by `scripts/deps.sh`).
pub const HLS_JS_INTEGRITY: &str = "sha512-A//aZeaAgM5rgUCbTURD4gkfyw5Uag2/4Jky7CfDOukL/DN+P5DjbgK2BYteyP3/KnCkPfkGVkbLxQG2T0AbUQ==";

/// Everything the server needs to start. Every key is documented in `config/feiyan.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP side: WHIP/WHEP resources, API and pages.
    pub http: HttpConfig,
    /// WebRTC media transport.
    pub webrtc: WebRtcConfig,
    /// The catalog database.
    pub catalog: CatalogConfig,
    /// Fan-out limits.
    pub relay: RelayConfig,
    /// RTMP ingest and transcoding.
    pub ingest: IngestConfig,
    /// Servers sharing one PostgreSQL catalog: liveness.
    pub cluster: ClusterConfig,
    /// Live HLS.
    pub hls: HlsConfig,
    /// Recording of live sessions for replay (回看).
    pub recording: RecordingConfig,
}

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

/// WebRTC transport settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Address the single media UDP socket binds (all peers share it; open this one port).
    pub udp_bind: SocketAddr,
    /// Addresses put in our ICE candidates: the LAN or public IPs clients reach us on
    /// (NAT 1:1 included). `FEIYAN_ADVERTISED_IPS` (comma-separated) overrides.
    pub advertised_ips: Vec<IpAddr>,
    /// The UDP port put in our ICE candidates when a port forward maps a different
    /// external port to `udp_bind` (default: the bound port).
    pub advertised_port: Option<u16>,
    /// Seconds without ICE traffic before a peer counts as disconnected.
    pub disconnected_timeout_secs: u64,
    /// Further seconds (after `disconnected_timeout_secs`) without ICE traffic before a peer
    /// is failed and removed: a silent peer is gone after the sum of both.
    pub failed_timeout_secs: u64,
    /// Answer as an ICE-lite agent (RFC 8445 §2.5): we only answer the client's checks, so
    /// a browser nominates the first pair that works instead of waiting for a later check.
    /// Needs `advertised_ips` the clients can reach,
    /// which every deployment needs anyway; turn it off only if this server sits behind a
    /// NAT without a port forward and must punch out with checks of its own.
    pub ice_lite: bool,
    /// Send each viewer's run of same-size packets (a video frame) as one segmented UDP
    /// send (`UDP_SEGMENT`, Linux 4.18+): one pass through the IP stack instead of one per
    /// packet. The server turns it off by itself when the interface refuses it.
    pub udp_segmentation: bool,
}

/// Catalog settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://...` (`FEIYAN_DATABASE_URL` overrides).
    pub database_url: String,
    /// Where the server keeps its own files: the self-signed certificate, the device-id
    /// secret, the attendance spill and dead-letter files. Default: the SQLite file's folder, else `data/`.
    pub state_dir: Option<PathBuf>,
    /// Attendance events held in memory before further ones spill to a file in
    /// `state_dir` (replayed in order once the database takes writes again).
    pub audience_queue_depth: usize,
    /// Times a batch of attendance rows the database refuses is retried before it is
    /// written row by row (rows still refused go to the dead-letter file).
    pub write_retries: u32,
}

/// Cluster liveness (`[cluster]`): every server notes itself alive in the catalog, by the
/// database's clock, and closes what a server silent for `gone_after_secs` left open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Seconds between heartbeats.
    pub heartbeat_secs: u64,
    /// Seconds without a heartbeat after which a server counts as gone.
    pub gone_after_secs: u64,
}

/// Live HLS (`[hls]`): every live channel as fMP4/CMAF with low-latency parts and as
/// MPEG-TS, under `/hls/{channel}/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Seconds a channel whose publisher dropped stays on air waiting for it: a publisher
    /// that returns within them continues the same session (one lecture, one session).
    pub reconnect_grace_secs: u64,
    /// Target segment length in seconds (segments start on keyframes, so they are at
    /// least this long when the publisher's keyframes are further apart).
    pub segment_secs: f64,
    /// Target length of a low-latency part in seconds (0.2 to 1).
    pub part_secs: f64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            reconnect_grace_secs: 30,
            segment_secs: 2.0,
            part_secs: 0.5,
        }
    }
}

/// Recording for replay: every live session's HLS segments, kept on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record live sessions (channels listed in `channels` override it).
    pub enabled: bool,
    /// Where recordings are written (relative paths from the working directory).
    pub dir: PathBuf,
    /// Recordings older than this many days are deleted unless kept (0: no age limit).
    pub keep_days: u64,
    /// The recordings together may use at most this many MiB; the oldest unkept go first
    /// (0: no limit).
    pub max_disk_mb: u64,
    /// Per-channel override of `enabled`: `{ "st-1" = false }`.
    pub channels: std::collections::BTreeMap<String, bool>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("media/recordings"),
            keep_days: 0,
            max_disk_mb: 0,
            channels: Default::default(),
        }
    }
}

impl RecordingConfig {
    /// Whether `channel`'s sessions are recorded.
    pub fn records(&self, channel: &str) -> bool {
        self.channels.get(channel).copied().unwrap_or(self.enabled)
    }
}

/// Relay limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Upper bound on cached packets of the latest keyframe group per channel; a group
    /// larger than this is not cached (new viewers then wait for the next keyframe).
    pub gop_cache_max_packets: usize,
    /// Minimum milliseconds between keyframe requests (PLI) forwarded to a publisher.
    pub pli_min_interval_ms: u64,
    /// Most viewers one channel accepts; further WHEP requests get 503. Viewers still
    /// connecting count too.
    pub max_viewers_per_channel: usize,
    /// Most viewers of one channel still connecting (answered, ICE and DTLS not done) at
    /// once; further WHEP requests get 503 with `Retry-After`, so offers that never
    /// connect cannot take a channel's places.
    pub max_unconnected_per_channel: usize,
    /// Most viewers still connecting from one client address (an IPv6 /64) at once,
    /// across channels; further WHEP requests from it get 429 with `Retry-After`.
    pub max_unconnected_per_client: usize,
    /// Seconds a viewer may take to connect after its answer before it is let go and its
    /// place comes back.
    pub unconnected_timeout_secs: u64,
    /// How long a session whose publisher dropped waits for it before it ends: not a key
    /// of `[relay]` but `[hls] reconnect_grace_secs`, copied here by the app (zero: the
    /// session ends when the publisher leaves).
    #[serde(skip)]
    pub reconnect_grace: std::time::Duration,
}

/// Ingest settings (`[ingest]`): RTMP, pull sources and film playout, all of which go
/// through the transcoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Where the RTMP server listens; `None` turns RTMP ingest off.
    pub rtmp_listen: Option<SocketAddr>,
    /// RTMP connections served at once (publishing or not yet); past it a new connection
    /// is closed at once with a log line. 1 to 100,000; default 256.
    pub rtmp_max_connections: usize,
    /// Seconds an RTMP client has from connecting to an accepted publish (handshake,
    /// `connect`, `publish` and the key check); one that never gets there is closed.
    /// 1 to 300; default 10.
    pub rtmp_auth_timeout_secs: u64,
    /// Default video handling for every channel (`auto`, `passthrough`, `transcode`).
    pub video: VideoMode,
    /// libx264 bitrate when transcoding, kbit/s.
    pub video_kbps: u32,
    /// libx264 preset when transcoding (CPU against quality).
    pub x264_preset: String,
    /// Opus bitrate, kbit/s.
    pub audio_kbps: u32,
    /// How late a screening may still start (e.g. after the server was down); later ones
    /// are marked missed.
    pub screening_grace_secs: u64,
    /// Lower renditions every channel fed through the transcoder offers beside its source
    /// video (viewers pick one with `?quality=NAME`). Empty: the source only. Each rung
    /// costs one libx264 encode.
    pub renditions: Vec<RenditionSpec>,
    /// Per-channel overrides, keyed by channel name.
    pub channels: HashMap<String, ChannelIngestConfig>,
    /// A VP8 rendition for viewers whose browser has no H.264, encoded from an H.264
    /// channel while such a viewer watches.
    pub vp8_rendition: OnDemand,
    /// H.264 from a VP8 publisher (for H.264-only viewers, HLS and recording).
    pub h264_from_vp8: H264FromVp8,
    /// Transcoders that decode video at once (each: one decode and its encodes); past it
    /// an RTMP or pull source that needs one is refused with the reason and a film class
    /// waits for a slot. 0: twice the cores, at least 4. At most 1,000.
    pub max_transcodes: usize,
    /// Longest picture side a transcoder decodes, pixels (sizes are compared either way
    /// round, so portrait cameras fit). Passthrough is not limited. 16 to 8192; default
    /// 1920.
    pub max_input_width: u32,
    /// Shortest picture side a transcoder decodes, pixels. 16 to 8192; default 1080.
    pub max_input_height: u32,
    /// Frame rate a transcoder accepts as declared by the source; frames arriving faster
    /// are decoded but not encoded. 1 to 240; default 60.
    pub max_input_fps: u32,
    /// Pull sources a channel may have (enabled or not); adding one more is refused with
    /// 409. 1 to 64; default 4.
    pub max_sources_per_channel: usize,
    /// Whether http(s) pull sources may name hosts on loopback, private, link-local or
    /// unique-local addresses (checked when added and before every connection). Off by
    /// default, so a station key cannot make the server fetch from its own network;
    /// RTSP, SRT and RTMP sources (IP cameras on the LAN) are not affected.
    pub allow_private_sources: bool,
}

impl IngestConfig {
    /// `max_transcodes`, with 0 resolved to twice the cores (at least 4).
    pub fn transcodes(&self) -> usize {
        match self.max_transcodes {
            0 => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .saturating_mul(2)
                .max(4),
            n => n,
        }
    }
}

/// `[ingest] vp8_rendition`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDemand {
    /// Encoded while someone needs it, stopped 10 s after the last leaves.
    #[default]
    OnDemand,
    /// Never: such viewers get 406 naming the codecs the channel sends.
    Off,
}

/// `[ingest] h264_from_vp8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum H264FromVp8 {
    /// Encoded while an H.264-only viewer, HLS or recording needs it.
    #[default]
    OnDemand,
    /// For the whole session of every VP8 publisher.
    Always,
    /// Never: H.264-only viewers of a VP8 channel get 406.
    Off,
}

/// Per-channel ingest overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelIngestConfig {
    /// Video handling for this channel; the `[ingest]` default when absent.
    pub video: Option<VideoMode>,
    /// This channel's rendition ladder; the `[ingest]` ladder when absent.
    pub renditions: Option<Vec<RenditionSpec>>,
}

/// How a channel's video reaches viewers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoMode {
    /// Pass H.264 through when it cannot contain B-frames, else transcode.
    #[default]
    Auto,
    /// Always pass H.264 through (the operator vouches there are no B-frames); other
    /// codecs are still transcoded because browsers cannot play them.
    Passthrough,
    /// Always decode and re-encode with libx264.
    Transcode,
}

/// One rung of a channel's rendition ladder (`[[ingest.renditions]]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// What viewers ask for with `?quality=`, e.g. `360p`.
    pub name: String,
    /// Output height in pixels; width follows the aspect ratio. A source smaller than
    /// this is encoded at its own size (never upscaled).
    pub height: u32,
    /// libx264 target bitrate, kbit/s.
    pub video_kbps: u32,
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

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            udp_bind: SocketAddr::from(([0, 0, 0, 0], 8189)),
            advertised_ips: vec![IpAddr::from([127, 0, 0, 1])],
            advertised_port: None,
            disconnected_timeout_secs: 5,
            failed_timeout_secs: 15,
            ice_lite: true,
            udp_segmentation: true,
        }
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/feiyan.db".to_string(),
            state_dir: None,
            audience_queue_depth: 65_536,
            write_retries: 5,
        }
    }
}

impl CatalogConfig {
    /// The state folder: `state_dir`, else the SQLite file's folder, else `data/`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let sqlite_file = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty() && !path.starts_with(":memory:"));
        match sqlite_file.and_then(|f| Path::new(f).parent()) {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => PathBuf::from("data"),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 10,
            gone_after_secs: 60,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            gop_cache_max_packets: 4096,
            pli_min_interval_ms: 500,
            max_viewers_per_channel: 5000,
            max_unconnected_per_channel: 500,
            max_unconnected_per_client: 20,
            unconnected_timeout_secs: 10,
            reconnect_grace: std::time::Duration::ZERO,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            rtmp_listen: Some(SocketAddr::from(([0, 0, 0, 0], 1935))),
            rtmp_max_connections: 256,
            rtmp_auth_timeout_secs: 10,
            video: VideoMode::Auto,
            video_kbps: 1500,
            x264_preset: "veryfast".into(),
            audio_kbps: 64,
            screening_grace_secs: 600,
            renditions: Vec::new(),
            channels: HashMap::new(),
            vp8_rendition: OnDemand::OnDemand,
            h264_from_vp8: H264FromVp8::OnDemand,
            max_transcodes: 0,
            max_input_width: 1920,
            max_input_height: 1080,
            max_input_fps: 60,
            max_sources_per_channel: 4,
            allow_private_sources: false,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("config file {path} is invalid: {source}")]
    Parse {
        /// The path given.
        path: String,
        /// What the parser said.
        source: toml::de::Error,
    },
    /// An environment override could not be parsed.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path` if given (a missing default file is not an error), applies environment
    /// overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies `FEIYAN_LISTEN`, `FEIYAN_UDP_BIND`, `FEIYAN_DATABASE_URL` and
    /// `FEIYAN_ADVERTISED_IPS`; `lookup` is the environment (a function so tests need none).
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(value) = lookup("FEIYAN_LISTEN") {
            self.http.listen = value.parse().map_err(|e| ConfigError::Env {
                name: "FEIYAN_LISTEN",
                value: value.clone(),
                reason: format!("{e}; expected HOST:PORT"),
            })?;
        }
        if let Some(value) = lookup("FEIYAN_UDP_BIND") {
            self.webrtc.udp_bind = value.parse().map_err(|e| ConfigError::Env {
                name: "FEIYAN_UDP_BIND",
                value: value.clone(),
                reason: format!("{e}; expected HOST:PORT"),
            })?;
        }
        if let Some(value) = lookup("FEIYAN_DATABASE_URL") {
            self.catalog.database_url = value;
        }
        if let Some(value) = lookup("FEIYAN_ADVERTISED_IPS") {
            let mut ips = Vec::new();
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                ips.push(part.parse().map_err(|e| ConfigError::Env {
                    name: "FEIYAN_ADVERTISED_IPS",
                    value: value.clone(),
                    reason: format!("{part:?}: {e}; expected comma-separated IP addresses"),
                })?);
            }
            self.webrtc.advertised_ips = ips;
        }
        Ok(())
    }

    /// Rejects values the server cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.webrtc.advertised_ips.is_empty() {
            return Err(ConfigError::Invalid(
                "webrtc.advertised_ips is empty: list the IPs clients reach this server on".into(),
            ));
        }
        if self
            .webrtc
            .advertised_ips
            .iter()
            .any(|ip| ip.is_unspecified())
        {
            return Err(ConfigError::Invalid(
                "webrtc.advertised_ips must not contain 0.0.0.0 or ::; list real addresses".into(),
            ));
        }
        let url = &self.catalog.database_url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::Invalid(format!(
                "catalog.database_url {url:?} must start with sqlite: or postgres:"
            )));
        }
        for (name, value) in [
            ("max_connections", self.http.max_connections as u64),
            (
                "max_connections_per_client",
                self.http.max_connections_per_client as u64,
            ),
            ("header_timeout_secs", self.http.header_timeout_secs),
            ("body_timeout_secs", self.http.body_timeout_secs),
            ("write_timeout_secs", self.http.write_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "http.{name} must be at least 1"
                )));
            }
        }
        if self.http.idle_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "http.idle_timeout_secs must be at least 1".into(),
            ));
        }
        if !(1..=16).contains(&self.http.login_checks) {
            return Err(ConfigError::Invalid(
                "http.login_checks must be 1 to 16 (each check holds 19 MiB)".into(),
            ));
        }
        if self.http.max_sdp_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http.max_sdp_bytes must be at least 1024".into(),
            ));
        }
        self.ingest.validate()?;
        self.validate_tls()?;
        self.validate_whep_door()?;
        if self.catalog.audience_queue_depth < 16 {
            return Err(ConfigError::Invalid(
                "catalog.audience_queue_depth must be at least 16".into(),
            ));
        }
        if !(1.0..=10.0).contains(&self.hls.segment_secs)
            || !(0.2..=1.0).contains(&self.hls.part_secs)
            || self.hls.part_secs > self.hls.segment_secs / 2.0
        {
            return Err(ConfigError::Invalid(
                "hls.segment_secs must be 1 to 10 and hls.part_secs 0.2 to 1 and at most half a segment".into(),
            ));
        }
        if self.cluster.heartbeat_secs == 0
            || self.cluster.gone_after_secs < 2 * self.cluster.heartbeat_secs
        {
            return Err(ConfigError::Invalid(
                "cluster.heartbeat_secs must be at least 1 and cluster.gone_after_secs at least twice it".into(),
            ));
        }
        if self.webrtc.failed_timeout_secs <= self.webrtc.disconnected_timeout_secs {
            return Err(ConfigError::Invalid(
                "webrtc.failed_timeout_secs must be greater than disconnected_timeout_secs".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The limits on viewers that have not connected and on `POST /whep` per address.
    fn validate_whep_door(&self) -> Result<(), ConfigError> {
        let relay = &self.relay;
        if relay.max_viewers_per_channel == 0 {
            return Err(ConfigError::Invalid(
                "relay.max_viewers_per_channel must be at least 1".into(),
            ));
        }
        if relay.max_unconnected_per_client == 0
            || relay.max_unconnected_per_channel < relay.max_unconnected_per_client
        {
            return Err(ConfigError::Invalid(
                "relay.max_unconnected_per_client must be at least 1 and \
                 relay.max_unconnected_per_channel at least as large"
                    .into(),
            ));
        }
        if !(2..=120).contains(&relay.unconnected_timeout_secs) {
            return Err(ConfigError::Invalid(
                "relay.unconnected_timeout_secs must be 2 to 120 (a browser connects in \
                 well under a second; slow mobile links take a few)"
                    .into(),
            ));
        }
        let http = &self.http;
        if !(http.whep_posts_per_sec.is_finite() && http.whep_posts_per_sec >= 0.1) {
            return Err(ConfigError::Invalid(
                "http.whep_posts_per_sec must be a number of at least 0.1".into(),
            ));
        }
        if http.whep_post_burst == 0 {
            return Err(ConfigError::Invalid(
                "http.whep_post_burst must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let http = &self.http;
        match http.tls {
            TlsMode::Files if http.tls_cert.is_none() || http.tls_key.is_none() => {
                return Err(ConfigError::Invalid(
                    "http.tls = \"files\" needs http.tls_cert and http.tls_key (PEM files); \
                     use tls = \"self-signed\" to have the server make a certificate"
                        .into(),
                ));
            }
            TlsMode::Off if http.redirect_listen.is_some() => {
                return Err(ConfigError::Invalid(
                    "http.redirect_listen redirects to HTTPS: it needs http.tls on".into(),
                ));
            }
            _ => {}
        }
        if http.tls != TlsMode::Files && (http.tls_cert.is_some() || http.tls_key.is_some()) {
            return Err(ConfigError::Invalid(
                "http.tls_cert and http.tls_key are used only with tls = \"files\"".into(),
            ));
        }
        Ok(())
    }
}

impl IngestConfig {
    /// Rejects RTMP limits that would shut the door or leave it open (a cap of 0, no
    /// deadline), and ladders viewers could not address: names must be unique, URL-safe and not
    /// [`SOURCE_QUALITY`] (the original video's name); heights and bitrates must be positive.
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.rtmp_max_connections) {
            return Err(ConfigError::Invalid(format!(
                "[ingest] rtmp_max_connections = {} must be 1 to 100000",
                self.rtmp_max_connections
            )));
        }
        if self.max_transcodes > 1000 {
            return Err(ConfigError::Invalid(format!(
                "[ingest] max_transcodes = {} must be 0 (twice the cores) to 1000",
                self.max_transcodes
            )));
        }
        for (key, value) in [
            ("max_input_width", self.max_input_width),
            ("max_input_height", self.max_input_height),
        ] {
            if !(16..=8192).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "[ingest] {key} = {value} must be 16 to 8192"
                )));
            }
        }
        if self.max_input_height > self.max_input_width {
            return Err(ConfigError::Invalid(format!(
                "[ingest] max_input_height = {} is the shorter side: it cannot exceed max_input_width = {}",
                self.max_input_height, self.max_input_width
            )));
        }
        if !(1..=240).contains(&self.max_input_fps) {
            return Err(ConfigError::Invalid(format!(
                "[ingest] max_input_fps = {} must be 1 to 240",
                self.max_input_fps
            )));
        }
        if !(1..=300).contains(&self.rtmp_auth_timeout_secs) {
            return Err(ConfigError::Invalid(format!(
                "[ingest] rtmp_auth_timeout_secs = {} must be 1 to 300",
                self.rtmp_auth_timeout_secs
            )));
        }
        if !(1..=64).contains(&self.max_sources_per_channel) {
            return Err(ConfigError::Invalid(format!(
                "[ingest] max_sources_per_channel = {} must be 1 to 64",
                self.max_sources_per_channel
            )));
        }
        let ladders = std::iter::once(("[ingest]".to_string(), &self.renditions)).chain(
            self.channels.iter().filter_map(|(name, c)| {
                c.renditions
                    .as_ref()
                    .map(|r| (format!("[ingest.channels.{name}]"), r))
            }),
        );
        for (section, ladder) in ladders {
            let mut seen = HashSet::new();
            for r in ladder {
                let safe = !r.name.is_empty()
                    && r.name.len() <= 32
                    && r.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !safe {
                    return Err(ConfigError::Invalid(format!(
                        "{section} renditions: name {:?} must be 1-32 letters, digits, '-' or '_'",
                        r.name
                    )));
                }
                if r.name == SOURCE_QUALITY || !seen.insert(r.name.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "{section} renditions: name {:?} is reserved or used twice",
                        r.name
                    )));
                }
                if !(16..=4320).contains(&r.height) || r.video_kbps == 0 {
                    return Err(ConfigError::Invalid(format!(
                        "{section} renditions: {:?} needs a height of 16-4320 and a video_kbps above 0",
                        r.name
                    )));
                }
            }
            if ladder.len() > 8 {
                return Err(ConfigError::Invalid(format!(
                    "{section} renditions: at most 8 rungs"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_file_parses_and_validates() {
        let text = include_str!("../config/feiyan.toml");
        let config = Config::from_toml(text).expect("config/feiyan.toml parses");
        config.validate().expect("config/feiyan.toml validates");
    }

    #[test]
    fn ip_ranges_parse_and_match() {
        let r = IpRange::parse("10.1.2.3/8").unwrap();
        assert!(r.contains("10.200.0.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.9".parse().unwrap()));
        let one = IpRange::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = IpRange::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["", "10.0.0.0/33", "proxy.lan", "10.0.0.0/x"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
        let c =
            Config::from_toml("[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]").unwrap();
        assert_eq!(c.http.trusted_proxies.len(), 2);
        assert!(Config::from_toml("[http]\ntrusted_proxies = [\"nginx\"]").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[http]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn whep_door_limits_are_checked() {
        let shipped = Config::from_toml(include_str!("../config/feiyan.toml")).unwrap();
        assert_eq!(shipped.relay.max_unconnected_per_client, 20);
        assert_eq!(shipped.relay.unconnected_timeout_secs, 10);
        assert_eq!(shipped.http.whep_post_burst, 50);
        assert_eq!(shipped.ingest.max_transcodes, 0);
        assert!(shipped.ingest.transcodes() >= 4);
        assert_eq!(
            (
                shipped.ingest.max_input_width,
                shipped.ingest.max_input_height
            ),
            (1920, 1080)
        );
        assert_eq!(shipped.ingest.max_input_fps, 60);
        for (toml, key) in [
            (
                "[relay]\nmax_unconnected_per_client = 0\n",
                "max_unconnected_per_client",
            ),
            (
                "[relay]\nmax_unconnected_per_channel = 5\nmax_unconnected_per_client = 6\n",
                "max_unconnected_per_channel",
            ),
            (
                "[relay]\nunconnected_timeout_secs = 0\n",
                "unconnected_timeout_secs",
            ),
            ("[http]\nwhep_posts_per_sec = 0.0\n", "whep_posts_per_sec"),
            ("[http]\nwhep_post_burst = 0\n", "whep_post_burst"),
            ("[ingest]\nmax_transcodes = 1001\n", "max_transcodes"),
            ("[ingest]\nmax_input_width = 8\n", "max_input_width"),
            (
                "[ingest]\nmax_input_width = 640\nmax_input_height = 720\n",
                "max_input_height",
            ),
            ("[ingest]\nmax_input_fps = 0\n", "max_input_fps"),
        ] {
            let err = Config::from_toml(toml).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn rtmp_door_limits_are_checked() {
        let shipped = Config::from_toml(include_str!("../config/feiyan.toml")).unwrap();
        assert_eq!(shipped.ingest.rtmp_max_connections, 256);
        assert_eq!(shipped.ingest.rtmp_auth_timeout_secs, 10);
        assert_eq!(shipped.ingest.max_sources_per_channel, 4);
        assert!(!shipped.ingest.allow_private_sources);
        for (toml, key) in [
            (
                "[ingest]\nrtmp_max_connections = 0\n",
                "rtmp_max_connections",
            ),
            (
                "[ingest]\nrtmp_auth_timeout_secs = 0\n",
                "rtmp_auth_timeout_secs",
            ),
            (
                "[ingest]\nrtmp_auth_timeout_secs = 301\n",
                "rtmp_auth_timeout_secs",
            ),
            (
                "[ingest]\nmax_sources_per_channel = 0\n",
                "max_sources_per_channel",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn env_overrides_apply_and_bad_values_say_why() {
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                "FEIYAN_ADVERTISED_IPS" => Some("10.0.0.5, 203.0.113.7".into()),
                "FEIYAN_LISTEN" => Some("127.0.0.1:9000".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.webrtc.advertised_ips.len(), 2);
        assert_eq!(config.http.listen.port(), 9000);
        let err = Config::default()
            .apply_env(|name| (name == "FEIYAN_ADVERTISED_IPS").then(|| "not-an-ip".into()))
            .unwrap_err();
        assert!(err.to_string().contains("not-an-ip"), "{err}");
    }
}

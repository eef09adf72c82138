//! Configuration: a TOML file (`config/feiyan.toml`) parsed with unknown keys rejected,
//! a few environment overrides for what deployments change, then `validate()`.
//!
//! Plain settings and all their validation; imports nothing from the crate, so every module
//! may read its own section without pulling in another module.

use std::path::Path;

use serde::Deserialize;

mod catalog;
mod http;
mod ingest;
mod interaction;
mod media;
mod relay;

pub use catalog::*;
pub use http::*;
pub use ingest::*;
pub use interaction::*;
pub use media::*;
pub use relay::*;

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
    /// Live chat, questions, likes and check-ins.
    pub interaction: InteractionConfig,
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

    /// Applies `FEIYAN_LISTEN`, `FEIYAN_UDP_BIND`, `FEIYAN_DATABASE_URL`,
    /// `FEIYAN_CLUSTER_SECRET`, `FEIYAN_NODE_URL` and `FEIYAN_ADVERTISED_IPS`; `lookup` is the environment (a function so tests need none).
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
        if let Some(value) = lookup("FEIYAN_CLUSTER_SECRET") {
            self.cluster.secret = Some(value);
        }
        if let Some(value) = lookup("FEIYAN_NODE_URL") {
            self.cluster.node_url = Some(value);
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
        self.interaction.validate()?;
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
        self.validate_cluster()?;
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
    /// A cluster secret of at least 32 bytes; a member (PostgreSQL catalog and a secret)
    /// names the URL other nodes reach it on.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        if let Some(secret) = &cluster.secret
            && secret.len() < catalog::MIN_SECRET_BYTES
        {
            return Err(ConfigError::Invalid(format!(
                "cluster.secret (FEIYAN_CLUSTER_SECRET) is {} bytes; it must be at least {} (e.g. `openssl rand -hex 32`)",
                secret.len(),
                catalog::MIN_SECRET_BYTES
            )));
        }
        if cluster.is_member(&self.catalog.database_url) {
            let url = cluster.node_url.as_deref().unwrap_or("").trim();
            if url.is_empty() {
                return Err(ConfigError::Invalid(
                    "cluster.node_url (FEIYAN_NODE_URL) is missing: a cluster member (PostgreSQL catalog and a cluster secret) must name the URL other nodes reach it on, e.g. http://10.0.0.11:8080".into(),
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "cluster.node_url {url:?} must start with http:// or https://"
                )));
            }
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_file_parses_and_validates() {
        let text = include_str!("../../config/feiyan.toml");
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
    fn cluster_secret_and_node_url_are_checked() {
        let shipped = include_str!("../../config/feiyan.toml");
        let with = |db: &str, env: &[(&'static str, &str)]| {
            let mut c = Config::from_toml(shipped).unwrap();
            c.catalog.database_url = db.into();
            c.apply_env(|name| {
                env.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap();
            c.validate()
        };
        let pg = "postgres://db.example/feiyan";
        let secret = "0123456789abcdef0123456789abcdef";
        let err = with(pg, &[("FEIYAN_CLUSTER_SECRET", "short")]).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
        let err = with(pg, &[("FEIYAN_CLUSTER_SECRET", secret)]).unwrap_err();
        assert!(err.to_string().contains("node_url"), "{err}");
        with(
            pg,
            &[
                ("FEIYAN_CLUSTER_SECRET", secret),
                ("FEIYAN_NODE_URL", "http://10.0.0.11:8080"),
            ],
        )
        .unwrap();
        // SQLite with a secret is no member: no node_url needed.
        with("sqlite://x.db", &[("FEIYAN_CLUSTER_SECRET", secret)]).unwrap();
        let mut c = Config::from_toml(shipped).unwrap();
        c.cluster.secret = Some(secret.into());
        assert!(!format!("{:?}", c.cluster).contains(secret));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[http]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn whep_door_limits_are_checked() {
        let shipped = Config::from_toml(include_str!("../../config/feiyan.toml")).unwrap();
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
        let shipped = Config::from_toml(include_str!("../../config/feiyan.toml")).unwrap();
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

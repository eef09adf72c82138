//! `[ingest]`: RTMP, pull sources, transcoding limits and per-channel ladders.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::*;

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

impl IngestConfig {
    /// Rejects RTMP limits that would shut the door or leave it open (a cap of 0, no
    /// deadline), and ladders viewers could not address: names must be unique, URL-safe and not
    /// [`SOURCE_QUALITY`] (the original video's name); heights and bitrates must be positive.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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

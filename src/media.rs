//! Media types every module shares, and no module owns: the kind of a track and the access
//! unit that the relay hub hands to what is not WebRTC (HLS, recording, transcode, edges).
//! Imports nothing from the crate, so sources, the relay, transcode and the catalog can all
//! use it without importing each other.

pub mod sps;

use bytes::Bytes;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio (Opus for WebRTC; AAC on the extra track of RTMP and pull sources).
    Audio,
    /// Video (H.264 or VP8).
    Video,
}

/// The codec of an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264, Annex-B (start codes), SPS/PPS in-band before IDRs.
    H264,
    /// VP8 frames.
    Vp8,
    /// Opus packets, 48 kHz clock.
    Opus,
    /// AAC-LC raw frames (no ADTS header); `AccessUnitTrack::Aac` carries the
    /// AudioSpecificConfig.
    Aac,
}

impl Codec {
    /// Audio or video.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::Vp8 => MediaKind::Video,
            Codec::Opus | Codec::Aac => MediaKind::Audio,
        }
    }
}

/// What a source sends into a channel, in terms every module understands: the codec of its
/// video and of its audio (`None` when it has no such track), and the names of the lower
/// renditions it sends beside the source video (rendition `i + 1` is `renditions[i]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTracks {
    /// The video codec, shared by every rendition.
    pub video: Option<Codec>,
    /// The audio codec.
    pub audio: Option<Codec>,
    /// The lower renditions' names, as viewers ask for them with `?quality=`.
    pub renditions: Vec<String>,
}

/// Which of a channel's tracks an access unit belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Track {
    /// The video WebRTC viewers get: rendition 0 is the source, `i + 1` the ladder's `i`.
    Video {
        /// The rendition.
        rendition: u8,
    },
    /// The audio WebRTC viewers get (Opus).
    Audio,
    /// The source's original AAC, which WebRTC viewers never see (RTMP and pull sources
    /// carry it beside the Opus made from it).
    OriginalAac {
        /// The AudioSpecificConfig (ISO 14496-3), for a muxer's `esds`.
        config: Bytes,
    },
}

/// One coded picture or audio frame, delivered once per channel to the hub's subscribers.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Which track it is on.
    pub track: Track,
    /// Its codec.
    pub codec: Codec,
    /// Presentation time in units of `timescale`.
    pub pts: i64,
    /// Decode time in units of `timescale` (equal to `pts` without B-frames).
    pub dts: i64,
    /// Clock rate of `pts`/`dts`: 90,000 for video, the sample rate for audio.
    pub timescale: u32,
    /// Whether a decoder can start here (an IDR for H.264, a key frame for VP8; every
    /// audio frame).
    pub keyframe: bool,
    /// The coded bytes, shared by every subscriber.
    pub data: Bytes,
}

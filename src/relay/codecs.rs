//! Honest codec negotiation for viewers: which of a WHEP offer's formats can carry what a
//! channel sends, and, when none can, words that say so.
//!
//! The viewer's answer accepts only the format chosen here (its peer connection's media
//! engine holds nothing else), so an answer never promises a codec that will not flow.
//!
//! # What matches
//! - **H.264** (RFC 6184 §8.1, §8.2.2; RFC 7742 §6.2): `packetization-mode=1` only (we
//!   send FU-A/STAP-A); mode 0 or 2 never matches. The offer's `profile-level-id` (absent:
//!   `420010`, baseline level 1.0, as RFC 6184 says) names the decoder it has; it matches
//!   when that decoder can take the channel's stream (the channel's own `profile-level-id`,
//!   constrained baseline `42e01f` when it has none):
//!   - a constrained-baseline stream (`42` with constraint_set1, `4d` with constraint_set0,
//!     `58` with both, as RFC 6184 Table 5 reads them) is taken by a baseline, constrained
//!     baseline, main, extended or any high-profile decoder: `42e0..`, `4200..`, `42c0..`,
//!     `4d00..`, `6400..`, `640c..` all match;
//!   - a baseline stream by baseline or extended decoders; a main stream by main and high
//!     decoders; a high (or constrained high) stream by high decoders; other profiles by
//!     the same `profile_idc`.
//!
//!   Levels: with `level-asymmetry-allowed=1` in the offer any level matches (it is a
//!   receive capability the offerer states for itself, and browsers decode above what they
//!   signal); without it the offer's level must be at least the stream's (level 1b counts
//!   between 1 and 1.1).
//! - **VP8**, **Opus**: the same encoding name and clock rate (Opus is always 48000/2).
//!
//! Retransmission and redundancy formats (`rtx`, `red`, `ulpfec`, `flexfec`) carry no
//! codec of their own and never match; the viewer's answer offers none of them.

use std::fmt::Write as _;

use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters};

use super::RelayError;
use crate::media::MediaKind;

/// One format of an offer's media section (`a=rtpmap`, `a=fmtp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OfferedFormat {
    pt: u8,
    /// The encoding name as written, e.g. `H264`, `VP8`, `opus`.
    name: String,
    clock_rate: u32,
    channels: u16,
    fmtp: String,
}

/// An audio or video section of an offer that wants media from us.
#[derive(Debug, Clone)]
pub(super) struct OfferedSection {
    kind: MediaKind,
    formats: Vec<OfferedFormat>,
}

/// `96 H264/90000` -> `(96, "H264/90000")`.
fn pt_and(rest: &str) -> Option<(u8, &str)> {
    let (pt, value) = rest.split_once(' ')?;
    Some((pt.parse().ok()?, value.trim()))
}

/// The audio and video sections of `sdp` that can receive (port not 0, not `inactive` or
/// `sendonly`). A payload type listed twice in one section, or mapped twice, is a bad
/// offer.
pub(super) fn offered_sections(sdp: &str) -> Result<Vec<OfferedSection>, RelayError> {
    struct Raw<'a> {
        kind: Option<MediaKind>,
        open: bool,
        pts: Vec<u8>,
        rtpmap: Vec<(u8, &'a str)>,
        fmtp: Vec<(u8, &'a str)>,
    }
    let mut raws: Vec<Raw> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut words = rest.split_whitespace();
            let kind = match words.next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
            let port = words.next().unwrap_or("0");
            let pts: Vec<u8> = words.skip(1).filter_map(|w| w.parse().ok()).collect();
            raws.push(Raw {
                kind,
                open: port != "0",
                pts,
                rtpmap: Vec::new(),
                fmtp: Vec::new(),
            });
            continue;
        }
        let Some(raw) = raws.last_mut() else {
            continue;
        };
        if let Some(entry) = line.strip_prefix("a=rtpmap:").and_then(pt_and) {
            raw.rtpmap.push(entry);
        } else if let Some(entry) = line.strip_prefix("a=fmtp:").and_then(pt_and) {
            raw.fmtp.push(entry);
        } else if line == "a=inactive" || line == "a=sendonly" {
            raw.open = false;
        }
    }
    let mut sections = Vec::new();
    for raw in raws {
        let Some(kind) = raw.kind else {
            continue;
        };
        let label = kind_label(kind);
        for (i, pt) in raw.pts.iter().enumerate() {
            let twice =
                raw.pts[..i].contains(pt) || raw.rtpmap.iter().filter(|(p, _)| p == pt).count() > 1;
            if twice {
                return Err(RelayError::BadOffer(format!(
                    "payload type {pt} appears twice in the {label} section; each format needs its own number"
                )));
            }
        }
        if !raw.open {
            continue;
        }
        let formats = raw
            .pts
            .iter()
            .filter_map(|pt| {
                let (_, map) = raw.rtpmap.iter().find(|(p, _)| p == pt)?;
                let mut parts = map.split('/');
                let name = parts.next()?.to_string();
                let clock_rate = parts.next()?.parse().ok()?;
                let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                let fmtp = raw
                    .fmtp
                    .iter()
                    .find(|(p, _)| p == pt)
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                Some(OfferedFormat {
                    pt: *pt,
                    name,
                    clock_rate,
                    channels,
                    fmtp,
                })
            })
            .collect();
        sections.push(OfferedSection { kind, formats });
    }
    Ok(sections)
}

/// Whether the offer has a section of `kind` that can receive.
pub(super) fn offers_kind(sections: &[OfferedSection], kind: MediaKind) -> bool {
    sections.iter().any(|s| s.kind == kind)
}

/// The offer's format that carries `sends` (the channel's codec for `kind`), as codec
/// parameters for the viewer's media engine (the offer's payload type and `fmtp`), with
/// `feedback` as our `rtcp-fb`. For H.264, one of the same profile as the stream first,
/// else the first that matches in the offer's order (its preference).
pub(super) fn pick(
    sections: &[OfferedSection],
    kind: MediaKind,
    sends: &RTCRtpCodec,
    feedback: &[rtc::rtp_transceiver::rtp_sender::RTCPFeedback],
) -> Option<RTCRtpCodecParameters> {
    let matching: Vec<&OfferedFormat> = sections
        .iter()
        .filter(|s| s.kind == kind)
        .flat_map(|s| &s.formats)
        .filter(|f| carries(f, sends))
        .collect();
    let stream = H264Profile::of_fmtp(&sends.sdp_fmtp_line);
    let chosen = matching
        .iter()
        .find(|f| H264Profile::of_fmtp(&f.fmtp).class() == stream.class())
        .or(matching.first())?;
    Some(RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: sends.mime_type.clone(),
            clock_rate: chosen.clock_rate,
            channels: sends.channels,
            sdp_fmtp_line: chosen.fmtp.clone(),
            rtcp_feedback: feedback.to_vec(),
        },
        payload_type: chosen.pt,
    })
}

/// Whether the offered format can carry a stream of `sends`.
fn carries(offered: &OfferedFormat, sends: &RTCRtpCodec) -> bool {
    let name = encoding_name(&sends.mime_type);
    if !offered.name.eq_ignore_ascii_case(name) || offered.clock_rate != sends.clock_rate {
        return false;
    }
    if !name.eq_ignore_ascii_case("h264") {
        return true;
    }
    let params = |fmtp: &str, key: &str| -> Option<String> {
        fmtp.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().to_string())
    };
    if params(&offered.fmtp, "packetization-mode").as_deref() != Some("1") {
        return false;
    }
    let decoder = H264Profile::of_fmtp(&offered.fmtp);
    let stream = H264Profile::of_fmtp(&sends.sdp_fmtp_line);
    let any_level = params(&offered.fmtp, "level-asymmetry-allowed").as_deref() == Some("1");
    decoder.takes(stream) && (any_level || decoder.level() >= stream.level())
}

/// `video/H264` -> `H264`.
fn encoding_name(mime: &str) -> &str {
    mime.split_once('/').map_or(mime, |(_, name)| name)
}

fn kind_label(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    }
}

/// An H.264 `profile-level-id`: profile_idc, the constraint flags byte, level_idc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct H264Profile {
    idc: u8,
    iop: u8,
    level_idc: u8,
}

/// The profiles told apart for decoding (RFC 6184 Table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProfileClass {
    ConstrainedBaseline,
    Baseline,
    Main,
    Extended,
    ConstrainedHigh,
    High,
    /// High 10, 4:2:2, 4:4:4 and the rest, by profile_idc.
    Other(u8),
}

impl H264Profile {
    /// From an `fmtp` line; RFC 6184's default `420010` when it has no valid one.
    fn of_fmtp(fmtp: &str) -> H264Profile {
        let hex = fmtp
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("profile-level-id"))
            .map(|(_, v)| v.trim())
            .filter(|v| v.len() == 6)
            .and_then(|v| u32::from_str_radix(v, 16).ok())
            .unwrap_or(0x42_00_10);
        let [_, idc, iop, level_idc] = hex.to_be_bytes();
        H264Profile {
            idc,
            iop,
            level_idc,
        }
    }

    fn class(self) -> ProfileClass {
        let (set0, set1) = (self.iop & 0x80 != 0, self.iop & 0x40 != 0);
        match self.idc {
            0x42 if set1 => ProfileClass::ConstrainedBaseline,
            0x4d if set0 => ProfileClass::ConstrainedBaseline,
            0x58 if set0 && set1 => ProfileClass::ConstrainedBaseline,
            0x42 => ProfileClass::Baseline,
            0x4d => ProfileClass::Main,
            0x58 => ProfileClass::Extended,
            0x64 if self.iop & 0x0c == 0x0c => ProfileClass::ConstrainedHigh,
            0x64 => ProfileClass::High,
            idc => ProfileClass::Other(idc),
        }
    }

    /// Level ×10, level 1b as 10.5.
    fn level(self) -> u32 {
        let one_b =
            self.level_idc == 11 && self.iop & 0x10 != 0 && matches!(self.idc, 0x42 | 0x4d | 0x58);
        if one_b || self.level_idc == 9 {
            105
        } else {
            u32::from(self.level_idc) * 10
        }
    }

    /// Whether a decoder of this profile decodes a stream of `stream`'s profile.
    fn takes(self, stream: H264Profile) -> bool {
        use ProfileClass::*;
        let high =
            |c: ProfileClass| matches!(c, High | ConstrainedHigh | Other(0x6e | 0x7a | 0xf4));
        match (stream.class(), self.class()) {
            (ConstrainedBaseline, d) => !matches!(d, Other(_)) || high(d),
            (Baseline, d) => matches!(d, Baseline | Extended),
            (Main, d) => d == Main || high(d),
            (ConstrainedHigh, d) => high(d),
            (High, d) => d == High || matches!(d, Other(0x6e | 0x7a | 0xf4)),
            (Extended, d) => d == Extended,
            (Other(s), Other(d)) => s == d,
            (Other(_), _) => false,
        }
    }

    fn name(self) -> String {
        match self.class() {
            ProfileClass::ConstrainedBaseline => "constrained baseline".into(),
            ProfileClass::Baseline => "baseline".into(),
            ProfileClass::Main => "main".into(),
            ProfileClass::Extended => "extended".into(),
            ProfileClass::ConstrainedHigh => "constrained high".into(),
            ProfileClass::High => "high".into(),
            ProfileClass::Other(0x6e) => "high 10".into(),
            ProfileClass::Other(0x7a) => "high 4:2:2".into(),
            ProfileClass::Other(0xf4) => "high 4:4:4".into(),
            ProfileClass::Other(idc) => format!("profile_idc {idc:#04x}"),
        }
    }
}

/// How a codec is named to a person: `H.264 (constrained baseline)`, `VP8`, `Opus`.
fn display_name(name: &str, fmtp: &str, offered: bool) -> String {
    match name.to_ascii_lowercase().as_str() {
        "h264" => {
            let mut text = format!("H.264 ({}", H264Profile::of_fmtp(fmtp).name());
            let mode = fmtp
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim() == "packetization-mode")
                .map_or("0", |(_, v)| v.trim());
            if offered && mode != "1" {
                let _ = write!(text, ", packetization-mode {mode}");
            }
            text + ")"
        }
        "h265" => "H.265".into(),
        "opus" => "Opus".into(),
        "rtx" | "red" | "ulpfec" | "flexfec-03" => name.to_ascii_lowercase(),
        _ => name.to_ascii_uppercase(),
    }
}

fn is_helper(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "rtx" | "red" | "ulpfec" | "flexfec-03"
    )
}

/// `video X and audio Y`, naming `none` for a kind that is absent.
fn by_kind(video: Option<String>, audio: Option<String>) -> String {
    match (video, audio) {
        (Some(v), Some(a)) => format!("video {v} and audio {a}"),
        (Some(v), None) => format!("video {v} and no audio"),
        (None, Some(a)) => format!("audio {a} and no video"),
        (None, None) => "no audio or video".into(),
    }
}

/// What a channel (or rendition) sends, e.g. `video H.264 (constrained baseline) and
/// audio Opus`.
pub(super) fn describe_sends(video: Option<&RTCRtpCodec>, audio: Option<&RTCRtpCodec>) -> String {
    let name = |c: &RTCRtpCodec| display_name(encoding_name(&c.mime_type), &c.sdp_fmtp_line, false);
    by_kind(video.map(name), audio.map(name))
}

/// What an offer has, e.g. `video VP8, VP9, AV1 and audio Opus`; a kind whose sections
/// hold only retransmission or redundancy formats says so.
pub(super) fn describe_offer(sections: &[OfferedSection]) -> String {
    let kind = |kind: MediaKind| -> Option<String> {
        if !offers_kind(sections, kind) {
            return None;
        }
        let formats: Vec<&OfferedFormat> = sections
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| &s.formats)
            .collect();
        let codecs = formats.iter().filter(|f| !is_helper(&f.name));
        let helpers_only = codecs.clone().next().is_none();
        let mut names: Vec<String> = Vec::new();
        for f in formats
            .iter()
            .filter(|f| helpers_only || !is_helper(&f.name))
        {
            let name = display_name(&f.name, &f.fmtp, true);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Some(match (names.is_empty(), helpers_only) {
            (true, _) => "with no formats".into(),
            (false, true) => format!(
                "{} (no codec, only retransmission or redundancy)",
                names.join(", ")
            ),
            (false, false) => names.join(", "),
        })
    };
    by_kind(kind(MediaKind::Video), kind(MediaKind::Audio))
}

#[cfg(test)]
mod tests;

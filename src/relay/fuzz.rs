//! Entry points for the fuzzer (`tests/fuzz.rs`, `scripts/fuzz.sh`): the
//! relay's parsers of what peers send, called as the engine calls them, without sockets or
//! peer connections. Each returns a short text naming what the input came to, which the
//! fuzzer uses as the input's outcome signature.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rtc::crypto::RTCCrypto;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::RTCRtpSenderId;

use super::codecs;
use super::media::{VideoCodec, h264_codec, opus_codec, vp8_codec};
use super::negotiate::{
    check_offer_text, check_viewer_offer_shape, sending_sections, video_feedback,
};
use super::output::{Feedback, TrackOut, ViewerOutput};
use crate::media::MediaKind;

/// What the UDP socket's demultiplexer and a detached viewer's consent answer make of a
/// datagram (`stun::is_stun`, `local_ufrag`, `consent_answer` with password `pwd`).
pub fn stun(datagram: &[u8], from: SocketAddr, pwd: &str, crypto: &dyn RTCCrypto) -> String {
    let is_stun = super::stun::is_stun(datagram);
    let ufrag = super::stun::local_ufrag(datagram).map(str::len);
    let answer = super::stun::consent_answer(datagram, from, pwd, crypto).map(|a| a.len());
    format!("stun={is_stun} ufrag={ufrag:?} answer={}", answer.is_some())
}

/// A viewer's plain RTCP datagram as the engine reads it: `rtcp::packet::unmarshal`, then
/// [`Feedback::read`] for a viewer whose video SSRC is `video_ssrc`, then the NACKed
/// numbers mapped to the source's.
pub fn rtcp_feedback(datagram: &[u8], video_ssrc: u32) -> String {
    let mut plain = bytes::Bytes::copy_from_slice(datagram);
    let packets = match rtc::rtcp::packet::unmarshal(&mut plain) {
        Ok(packets) => packets,
        Err(e) => return format!("err {e}"),
    };
    let viewer = ViewerOutput::new(
        Some(TrackOut::new(
            RTCRtpSenderId::default(),
            video_ssrc,
            96,
            90_000,
        )),
        None,
        String::new(),
    );
    let mut feedback = Feedback::default();
    feedback.read(&viewer, &packets);
    let sources = viewer.nacked_sources(&feedback.nacked);
    assert!(
        feedback.nacked.len() <= super::MAX_NACKED_PER_RTCP,
        "more NACKed numbers answered than the cap"
    );
    format!(
        "packets={} key={} nacked={} over={} losses={} sources={}",
        packets.len().min(4),
        feedback.keyframe,
        feedback.nacked.len().min(8),
        feedback.nacked_over_cap.min(8),
        feedback.losses.len().min(4),
        sources.len().min(8)
    )
}

/// The checks a WHEP or WHIP offer meets before negotiation: the viewer's shape limits, the
/// text checks, sending sections, simulcast layers, the codec choice for each codec a
/// channel may send, and rtc's own SDP parse (`RTCSessionDescription::offer`).
pub fn offer(sdp: &str) -> String {
    let mut out = String::new();
    let shape = check_viewer_offer_shape(sdp);
    let text = check_offer_text(sdp);
    let _ = write!(
        out,
        "shape={} text={} sending={} layers={}",
        shape.is_ok(),
        text.as_ref()
            .err()
            .map(|e| e
                .to_string()
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default(),
        sending_sections(sdp).min(4),
        super::layers::offered_layers(sdp).len().min(4)
    );
    match codecs::offered_sections(sdp) {
        Ok(sections) => {
            let feedback = video_feedback();
            let video = [h264_codec(), vp8_codec()]
                .iter()
                .filter(|c| codecs::pick(&sections, MediaKind::Video, c, &feedback).is_some())
                .count();
            let audio = codecs::pick(&sections, MediaKind::Audio, &opus_codec(), &[]).is_some();
            let described = codecs::describe_offer(&sections);
            let _ = write!(
                out,
                " sections={} video={video} audio={audio} described={}",
                sections.len().min(4),
                described.is_empty()
            );
        }
        Err(_) => out.push_str(" sections=err"),
    }
    // What the engine parses only after the checks above passed.
    if shape.is_ok() && text.is_ok() {
        let parsed = RTCSessionDescription::offer(sdp.to_string()).is_ok();
        let _ = write!(out, " parsed={parsed}");
    }
    out
}

/// The picture size a publisher's RTP payload announces (an SPS, alone or in a STAP-A, or
/// a VP8 key frame), as simulcast layers are sized.
pub fn picture_size(payload: &[u8]) -> String {
    let h264 = super::layers::picture_size(VideoCodec::H264, payload);
    let vp8 = super::layers::picture_size(VideoCodec::Vp8, payload);
    format!("h264={} vp8={}", h264.is_some(), vp8.is_some())
}

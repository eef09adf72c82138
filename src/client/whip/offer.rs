//! What the publisher offers: send-only H.264 and Opus, with the stock interceptors and a
//! tap counting the server's keyframe requests.

use std::sync::Arc;

use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use webrtc::peer_connection::{MediaEngine, register_default_interceptors};

use super::keyframe_requests::{KeyframeRequestCounters, KeyframeRequestTap};
use crate::client::media::{AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE};
use crate::client::{ClientError, Result};

/// The H.264 format the publisher offers: constrained baseline level 3.1, non-interleaved
/// packetization (FU-A/STAP-A), which every WebRTC endpoint decodes.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Payload type the publisher offers for H.264 (the answer may renumber; the negotiated one
/// is what gets sent).
pub const OFFERED_H264_PT: u8 = 102;
/// Payload type the publisher offers for Opus.
pub const OFFERED_OPUS_PT: u8 = 111;

/// The H.264 (with NACK, PLI and FIR feedback) and Opus codecs the publisher offers.
pub(super) fn codecs() -> (RTCRtpCodec, RTCRtpCodec) {
    let video_feedback = ["nack", "nack pli", "ccm fir"]
        .iter()
        .map(|fb| {
            let (typ, parameter) = fb.split_once(' ').unwrap_or((fb, ""));
            RTCPFeedback {
                typ: typ.to_owned(),
                parameter: parameter.to_owned(),
            }
        })
        .collect::<Vec<_>>();
    let video = RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: video_feedback,
    };
    let audio = RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: AUDIO_CLOCK_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    };
    (video, audio)
}

/// A media engine with `video` and `audio` at the offered payload types, and the stock
/// interceptors followed by a tap counting keyframe requests into `requests`.
pub(super) fn media_engine(
    video: &RTCRtpCodec,
    audio: &RTCRtpCodec,
    requests: Arc<KeyframeRequestCounters>,
) -> Result<(MediaEngine, Registry)> {
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: video.clone(),
                payload_type: OFFERED_H264_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(ClientError::webrtc("registering H.264"))?;
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: audio.clone(),
                payload_type: OFFERED_OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(ClientError::webrtc("registering Opus"))?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .map_err(ClientError::webrtc("registering interceptors"))?
        // Application-most, so it sees inbound RTCP after every other interceptor.
        .with(Slot::from(14_000), KeyframeRequestTap::new(requests));
    Ok((media_engine, registry))
}

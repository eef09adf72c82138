//! What every WHEP viewer offers, on either stack: its codecs, the interceptors that answer
//! for them, and receive-only transceivers.

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use webrtc::peer_connection::{MediaEngine, Registry, register_default_interceptors};

use super::options::VideoCodecs;
use crate::client::media::{AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE};
use crate::client::{ClientError, Result};

/// The codecs a viewer offers (Opus; H.264 constrained-baseline and baseline with
/// packetization-mode=1 and VP8, as `video` says) with rtc's default interceptors: NACK
/// and PLI feedback on video, receiver reports and transport-wide congestion control, as a
/// browser sends.
pub(super) fn viewer_media_engine(video: VideoCodecs) -> Result<(MediaEngine, Registry)> {
    let mut media_engine = MediaEngine::default();
    let codecs = [
        (
            MIME_TYPE_OPUS,
            AUDIO_CLOCK_RATE,
            2,
            "minptime=10;useinbandfec=1",
            111,
            RtpCodecKind::Audio,
        ),
        (
            MIME_TYPE_H264,
            VIDEO_CLOCK_RATE,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
            RtpCodecKind::Video,
        ),
        (
            MIME_TYPE_H264,
            VIDEO_CLOCK_RATE,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            106,
            RtpCodecKind::Video,
        ),
        (
            MIME_TYPE_VP8,
            VIDEO_CLOCK_RATE,
            0,
            "",
            96,
            RtpCodecKind::Video,
        ),
    ];
    let offered = |mime: &str| match video {
        VideoCodecs::H264AndVp8 => true,
        VideoCodecs::H264Only => mime != MIME_TYPE_VP8,
        VideoCodecs::Vp8Only => mime != MIME_TYPE_H264,
    };
    for (mime, clock_rate, channels, fmtp, payload_type, kind) in codecs {
        if !offered(mime) {
            continue;
        }
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        mime_type: mime.to_owned(),
                        clock_rate,
                        channels,
                        sdp_fmtp_line: fmtp.to_owned(),
                        rtcp_feedback: vec![],
                    },
                    payload_type,
                },
                kind,
            )
            .map_err(ClientError::webrtc("registering codecs"))?;
    }
    // Adds NACK/PLI feedback to the video codecs, receiver reports and TWCC.
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)
        .map_err(ClientError::webrtc("registering interceptors"))?;
    Ok((media_engine, registry))
}

/// A receive-only transceiver, one per kind a viewer offers.
pub(super) fn recvonly() -> RTCRtpTransceiverInit {
    RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Recvonly,
        streams: vec![],
        send_encodings: vec![],
    }
}

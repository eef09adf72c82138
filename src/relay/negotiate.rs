//! Negotiation: the codecs we accept, the DTLS certificate and role, our ICE candidates,
//! checks on an offer's text, and the answer to a WHIP or WHEP offer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rtc::crypto::RTCCryptoProvider;
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};

use super::feedback::{CountTwcc, DeliverFeedback};
use super::srtp::KeyTap;
use super::{RelayCounters, RelayError};
use crate::config::WebRtcConfig;

/// The formats a viewer's answer accepts, chosen from its offer by [`super::codecs::pick`]:
/// its peer connection knows no others, so its answer rejects every other format, and a
/// kind with none gets its section rejected (port 0).
#[derive(Debug, Clone, Default)]
pub(super) struct ViewerCodecs {
    pub(super) video: Option<RTCRtpCodecParameters>,
    pub(super) audio: Option<RTCRtpCodecParameters>,
}

/// Answers offers: the settings, addresses and certificate every peer connection shares.
pub(super) struct Negotiator {
    webrtc: WebRtcConfig,
    advertised: Vec<IpAddr>,
    /// The address our ICE host candidates carry.
    pub(super) candidate_addr: SocketAddr,
    /// Signs answers to detached viewers' consent checks, and makes certificates.
    pub(super) crypto: Arc<dyn RTCCryptoProvider>,
    /// The DTLS certificate of every peer connection, made once at start (as SFUs do; its
    /// fingerprint is in every answer): left to itself, rtc makes a key pair and a signed
    /// certificate for each connection, a large share of what a join costs.
    certificate: RTCCertificate,
    /// Where publishers' chains count the congestion feedback they send.
    counters: Arc<RelayCounters>,
}

impl Negotiator {
    /// For a media socket bound at `local_addr`.
    pub(super) fn new(
        webrtc: &WebRtcConfig,
        local_addr: SocketAddr,
        counters: Arc<RelayCounters>,
    ) -> std::io::Result<Negotiator> {
        let advertised = webrtc.advertised_ips.clone();
        let candidate_ip = advertised
            .first()
            .copied()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let crypto =
            rtc::crypto::default_provider().map_err(|e| std::io::Error::other(e.to_string()))?;
        let certificate =
            new_certificate(crypto.as_ref()).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Negotiator {
            candidate_addr: SocketAddr::new(
                candidate_ip,
                webrtc.advertised_port.unwrap_or(local_addr.port()),
            ),
            advertised,
            webrtc: webrtc.clone(),
            crypto,
            certificate,
            counters,
        })
    }

    /// A peer connection: a publisher's (`viewer` is `None`) takes every codec we receive;
    /// a viewer's only its chosen formats, and comes with the key tap its forwarded media
    /// is protected with.
    pub(super) fn peer_connection(
        &self,
        ufrag: &str,
        pwd: &str,
        viewer: Option<&ViewerCodecs>,
        offer: &str,
        now: Instant,
    ) -> Result<(Box<RTCPeerConnection>, Option<Arc<KeyTap>>), RelayError> {
        let internal = |e: rtc::shared::error::Error| RelayError::Internal(e.to_string());
        let mut media = match viewer {
            Some(codecs) => viewer_media_engine(codecs)?,
            None => media_engine()?,
        };
        let mut settings = SettingEngineBuilder::new();
        let mut tap = None;
        let registry = if viewer.is_some() {
            // A viewer only receives: its media goes out on the engine's own SRTP path and
            // sender reports are built by the engine; its NACKs are answered from the
            // channel's retransmission buffer. The chain only hands its RTCP to us.
            let key_tap = KeyTap::new().map_err(|e| RelayError::Internal(e.to_string()))?;
            settings = settings
                .with_crypto_provider(key_tap.clone())
                .with_srtp_protection_profiles(super::srtp::viewer_profiles());
            tap = Some(key_tap);
            Registry::new().with(Slot::from(14_000), DeliverFeedback::default())
        } else {
            // A publisher gets the default chain, whose TWCC receiver answers the browser's
            // transport-wide sequence numbers with feedback every 100 ms: the browser's
            // send-side estimate, and so its encoder, ramps on it.
            register_default_interceptors(Registry::new(), &mut media)
                .map_err(internal)?
                .with(Slot::from(500), CountTwcc::new(self.counters.clone()))
        };
        // Answer `setup:active` (RFC 5763 §5: the answerer should be the DTLS client): the
        // handshake then starts from here the moment ICE is up (see `service`), instead of
        // waiting for the offerer's ClientHello, which a webrtc-rs offerer sends only on its
        // next ICE tick (up to 200 ms later). An offerer that insists on being the client
        // (`setup:active`) gets `passive`: rtc would answer `active` to it too, and two DTLS
        // clients never connect.
        let settings = settings
            .with_answering_dtls_role(answering_dtls_role(offer))
            .with_lite(self.webrtc.ice_lite)
            .with_ice_credentials(ufrag.to_string(), pwd.to_string())
            .with_ice_timeouts(
                Some(Duration::from_secs(self.webrtc.disconnected_timeout_secs)),
                Some(Duration::from_secs(self.webrtc.failed_timeout_secs)),
                Some(Duration::from_secs(2)),
            )
            .build();
        RTCPeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_certificates(vec![self.certificate()?])
                    .build(),
            )
            .with_setting_engine(settings)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(now)
            .map(|pc| (Box::new(pc), tap))
            .map_err(internal)
    }

    /// The shared DTLS certificate, or a new one when it expires within a day (rtc dates
    /// its certificates two days ahead on 32-bit ARM).
    fn certificate(&self) -> Result<RTCCertificate, RelayError> {
        let day = Duration::from_secs(24 * 3600);
        if self.certificate.expires > SystemTime::now() + day {
            return Ok(self.certificate.clone());
        }
        new_certificate(self.crypto.as_ref()).map_err(RelayError::Internal)
    }

    /// Applies the offer, adds our host candidates and returns the answer SDP.
    pub(super) fn answer(
        &self,
        pc: &mut RTCPeerConnection,
        offer: String,
        now: Instant,
    ) -> Result<String, RelayError> {
        let offer = RTCSessionDescription::offer(offer)
            .map_err(|e| RelayError::BadOffer(format!("cannot parse the SDP: {e}")))?;
        pc.set_remote_description(now, offer)
            .map_err(|e| RelayError::BadOffer(format!("the offer cannot be applied: {e}")))?;
        for ip in &self.advertised {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: ip.to_string(),
                    port: self.candidate_addr.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host()
            .map_err(|e| RelayError::Internal(e.to_string()))?;
            let init = RTCIceCandidate::from(&candidate)
                .to_json()
                .map_err(|e| RelayError::Internal(e.to_string()))?;
            pc.add_local_candidate(init)
                .map_err(|e| RelayError::Internal(e.to_string()))?;
        }
        let answer = pc
            .create_answer(None)
            .map_err(|e| RelayError::BadOffer(format!("no answer possible for this offer: {e}")))?;
        pc.set_local_description(now, answer)
            .map_err(|e| RelayError::Internal(e.to_string()))?;
        let answer = pc
            .local_description()
            .ok_or_else(|| RelayError::Internal("no local description".into()))?;
        Ok(answer.sdp)
    }
}

/// The RTCP feedback we offer and answer for video: what the relay acts on (NACK, PLI,
/// FIR) and REMB.
pub(super) fn video_feedback() -> Vec<RTCPFeedback> {
    vec![
        RTCPFeedback {
            typ: "goog-remb".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "ccm".into(),
            parameter: "fir".into(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
    ]
}

/// A viewer's media engine: the formats chosen from its offer and nothing else.
fn viewer_media_engine(codecs: &ViewerCodecs) -> Result<MediaEngine, RelayError> {
    let mut engine = MediaEngine::default();
    let internal = |e: rtc::shared::error::Error| RelayError::Internal(e.to_string());
    if let Some(video) = &codecs.video {
        engine
            .register_codec(video.clone(), RtpCodecKind::Video)
            .map_err(internal)?;
    }
    if let Some(audio) = &codecs.audio {
        engine
            .register_codec(audio.clone(), RtpCodecKind::Audio)
            .map_err(internal)?;
    }
    Ok(engine)
}

/// A publisher's media engine: H.264 in the profiles browsers and OBS send, VP8, Opus.
fn media_engine() -> Result<MediaEngine, RelayError> {
    let mut engine = MediaEngine::default();
    let video_fb = video_feedback();
    let video = |mime: &str, fmtp: &str, pt: u8| RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: video_fb.clone(),
        },
        payload_type: pt,
    };
    let codecs = [
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            125,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            102,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
            127,
        ),
        video(
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032",
            123,
        ),
        video("video/VP8", "", 96),
    ];
    let internal = |e: rtc::shared::error::Error| RelayError::Internal(e.to_string());
    for codec in codecs {
        engine
            .register_codec(codec, RtpCodecKind::Video)
            .map_err(internal)?;
    }
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "audio/opus".into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    Ok(engine)
}

/// A self-signed ECDSA P-256 DTLS certificate with a random name (as rtc makes them).
fn new_certificate(crypto: &dyn RTCCryptoProvider) -> Result<RTCCertificate, String> {
    let params = CertificateParams::new(vec![random_token(16)]).map_err(|e| e.to_string())?;
    RTCCertificate::generate(
        crypto.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        params,
    )
    .map_err(|e| e.to_string())
}

/// The DTLS role our answer takes: the client, unless the offer says `setup:active`.
fn answering_dtls_role(offer: &str) -> RTCDtlsRole {
    if offer.lines().any(|l| l.trim() == "a=setup:active") {
        RTCDtlsRole::Server
    } else {
        RTCDtlsRole::Client
    }
}

pub(super) fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Counts the audio/video sections of an offer that send media to us.
pub(super) fn sending_sections(sdp: &str) -> usize {
    let mut count = 0;
    let mut in_media = false;
    let mut sends = true;
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            if in_media && sends {
                count += 1;
            }
            in_media = rest.starts_with("audio") || rest.starts_with("video");
            sends = true;
        } else if line == "a=recvonly" || line == "a=inactive" {
            sends = false;
        }
    }
    if in_media && sends {
        count += 1;
    }
    count
}

/// Most media sections (`m=` lines) a viewer's offer may have: a viewer receives one
/// video and one audio stream; a browser may add a data channel and a spare section.
pub const MAX_VIEWER_OFFER_SECTIONS: usize = 4;
/// Most lines an offer may have (a browser's audio + video offer has 100-250).
pub const MAX_OFFER_LINES: usize = 1000;
/// Longest line an offer may have, in bytes (a browser's longest, a candidate or a
/// fingerprint, is about 120).
pub const MAX_OFFER_LINE_BYTES: usize = 1024;

/// Refuses a viewer's offer of a shape no browser sends, before any WebRTC work: more
/// than [`MAX_VIEWER_OFFER_SECTIONS`] media sections, more than [`MAX_OFFER_LINES`] lines
/// or a line longer than [`MAX_OFFER_LINE_BYTES`]. Each is parsed and negotiated by the
/// one engine task that serves every viewer, so an absurd offer costs everyone.
pub fn check_viewer_offer_shape(sdp: &str) -> Result<(), RelayError> {
    let mut lines = 0;
    let mut sections = 0;
    for (i, line) in sdp.lines().enumerate() {
        lines += 1;
        if line.len() > MAX_OFFER_LINE_BYTES {
            return Err(RelayError::BadOffer(format!(
                "line {} of the offer is {} bytes long; lines of at most {MAX_OFFER_LINE_BYTES} bytes are accepted",
                i + 1,
                line.len()
            )));
        }
        if line.starts_with("m=") {
            sections += 1;
        }
    }
    if lines > MAX_OFFER_LINES {
        return Err(RelayError::BadOffer(format!(
            "the offer has {lines} lines; at most {MAX_OFFER_LINES} are accepted"
        )));
    }
    if sections > MAX_VIEWER_OFFER_SECTIONS {
        return Err(RelayError::BadOffer(format!(
            "{sections} media sections (m= lines); a viewer's offer has at most {MAX_VIEWER_OFFER_SECTIONS} (receive-only audio and video)"
        )));
    }
    Ok(())
}

pub(super) fn check_offer_text(sdp: &str) -> Result<(), RelayError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(RelayError::BadOffer(
            "the body is not an SDP offer (it must start with v=0)".into(),
        ));
    }
    if !sdp
        .lines()
        .any(|l| l.starts_with("m=audio") || l.starts_with("m=video"))
    {
        return Err(RelayError::BadOffer(
            "the offer has no audio or video section".into(),
        ));
    }
    if !sdp.contains("a=ice-ufrag:") || !sdp.contains("a=fingerprint:") {
        return Err(RelayError::BadOffer(
            "the offer lacks ICE credentials or a DTLS fingerprint".into(),
        ));
    }
    for line in sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"))
    {
        let (algorithm, value) = line.split_once(' ').unwrap_or((line, ""));
        let bytes = match algorithm.to_ascii_lowercase().as_str() {
            "sha-1" => 20,
            "sha-224" => 28,
            "sha-256" => 32,
            "sha-384" => 48,
            "sha-512" => 64,
            _ => 0,
        };
        let well_formed = value
            .trim()
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
            && value.trim().split(':').count() == bytes;
        if bytes == 0 || !well_formed {
            return Err(RelayError::BadOffer(format!(
                "malformed DTLS fingerprint {line:?}: expected e.g. sha-256 followed by 32 hex bytes"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_that_insists_on_dtls_client_gets_a_passive_answer() {
        assert_eq!(
            answering_dtls_role("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=setup:active\r\n"),
            RTCDtlsRole::Server
        );
        for setup in ["a=setup:actpass", "a=setup:passive"] {
            let offer = format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{setup}\r\n");
            assert_eq!(answering_dtls_role(&offer), RTCDtlsRole::Client, "{setup}");
        }
    }

    #[test]
    fn counts_sending_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert_eq!(sending_sections(sdp), 2);
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=recvonly\r\nm=video 9 X 96\r\na=sendrecv\r\nm=application 9 X\r\n";
        assert_eq!(sending_sections(sdp), 1);
    }

    #[test]
    fn offers_of_absurd_shape_are_refused() {
        let section = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n";
        let offer = |n: usize| format!("v=0\r\ns=-\r\n{}", section.repeat(n));
        assert!(check_viewer_offer_shape(&offer(4)).is_ok());
        let err = check_viewer_offer_shape(&offer(5)).unwrap_err().to_string();
        assert!(err.contains("5 media sections"), "{err}");
        let long = format!("{}a=x:{}\r\n", offer(2), "a".repeat(MAX_OFFER_LINE_BYTES));
        let err = check_viewer_offer_shape(&long).unwrap_err().to_string();
        assert!(err.contains("line 7 of the offer"), "{err}");
        let many = format!("{}{}", offer(2), "a=x\r\n".repeat(MAX_OFFER_LINES));
        let err = check_viewer_offer_shape(&many).unwrap_err().to_string();
        assert!(err.contains("lines; at most"), "{err}");
    }

    #[test]
    fn offer_text_checks_explain_themselves() {
        let err = check_offer_text("hello").unwrap_err().to_string();
        assert!(err.contains("v=0"), "{err}");
        let err = check_offer_text("v=0\r\ns=-\r\n").unwrap_err().to_string();
        assert!(err.contains("no audio or video"), "{err}");
    }
}

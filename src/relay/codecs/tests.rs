use super::*;
use crate::relay::media::{h264_codec, opus_codec, vp8_codec as vp8};

/// An offer with one video section of `video` formats `(pt, rtpmap, fmtp)` and, when
/// `audio` is set, an audio section with Opus.
fn offer(video: &[(u8, &str, &str)], audio: bool) -> String {
    let mut sdp = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    let pts: Vec<String> = video.iter().map(|(pt, _, _)| pt.to_string()).collect();
    sdp += &format!(
        "m=video 9 UDP/TLS/RTP/SAVPF {}\r\na=recvonly\r\n",
        pts.join(" ")
    );
    for (pt, map, fmtp) in video {
        sdp += &format!("a=rtpmap:{pt} {map}\r\n");
        if !fmtp.is_empty() {
            sdp += &format!("a=fmtp:{pt} {fmtp}\r\n");
        }
    }
    if audio {
        sdp += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n";
    }
    sdp
}

fn picked(sdp: &str, kind: MediaKind, sends: &RTCRtpCodec) -> Option<(u8, String)> {
    let sections = offered_sections(sdp).expect("parses");
    pick(&sections, kind, sends, &[]).map(|c| (c.payload_type, c.rtp_codec.sdp_fmtp_line))
}

const CB: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

#[test]
fn h264_needs_packetization_mode_1_and_a_decoder_that_takes_the_stream() {
    let h264 = h264_codec();
    // Chromium's list: mode 0 first, then mode 1; the constrained-baseline mode-1 one wins.
    let sdp = offer(
        &[
            (
                100,
                "H264/90000",
                "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
            ),
            (
                102,
                "H264/90000",
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            ),
            (108, "H264/90000", CB),
        ],
        true,
    );
    assert_eq!(
        picked(&sdp, MediaKind::Video, &h264),
        Some((108, CB.to_string()))
    );
    // Baseline, main and high decoders all take constrained baseline.
    for plid in ["42001f", "4d001f", "640c1f", "64001f", "42c01f"] {
        let fmtp =
            format!("packetization-mode=1;profile-level-id={plid};level-asymmetry-allowed=1");
        let sdp = offer(&[(97, "H264/90000", &fmtp)], false);
        assert!(picked(&sdp, MediaKind::Video, &h264).is_some(), "{plid}");
    }
    // Mode 0 only, mode absent, or a profile no CB decoder has: nothing.
    for fmtp in [
        "packetization-mode=0;profile-level-id=42e01f",
        "profile-level-id=42e01f;level-asymmetry-allowed=1",
        "packetization-mode=1;profile-level-id=2c001f;level-asymmetry-allowed=1",
    ] {
        let sdp = offer(&[(97, "H264/90000", fmtp)], false);
        assert_eq!(picked(&sdp, MediaKind::Video, &h264), None, "{fmtp}");
    }
    // Without level asymmetry the offered level must reach the stream's (3.1).
    let low = offer(
        &[(
            97,
            "H264/90000",
            "packetization-mode=1;profile-level-id=42e01e",
        )],
        false,
    );
    assert_eq!(picked(&low, MediaKind::Video, &h264), None);
    let high = offer(
        &[(
            97,
            "H264/90000",
            "packetization-mode=1;profile-level-id=42e028",
        )],
        false,
    );
    assert!(picked(&high, MediaKind::Video, &h264).is_some());
    // A high-profile stream needs a high decoder.
    let mut high_stream = h264_codec();
    high_stream.sdp_fmtp_line = "packetization-mode=1;profile-level-id=640032".into();
    let sdp = offer(&[(97, "H264/90000", CB)], false);
    assert_eq!(picked(&sdp, MediaKind::Video, &high_stream), None);
}

#[test]
fn vp8_and_opus_match_by_name_and_clock() {
    let sdp = offer(&[(96, "VP8/90000", ""), (98, "VP9/90000", "")], true);
    assert_eq!(
        picked(&sdp, MediaKind::Video, &vp8()).map(|p| p.0),
        Some(96)
    );
    assert_eq!(picked(&sdp, MediaKind::Video, &h264_codec()), None);
    assert_eq!(
        picked(&sdp, MediaKind::Audio, &opus_codec()).map(|p| p.0),
        Some(111)
    );
    let no_audio = offer(&[(96, "VP8/90000", "")], false);
    assert_eq!(picked(&no_audio, MediaKind::Audio, &opus_codec()), None);
}

#[test]
fn duplicated_payload_types_are_a_bad_offer() {
    let sdp = offer(&[(96, "VP8/90000", ""), (96, "VP9/90000", "")], false);
    let err = offered_sections(&sdp).unwrap_err().to_string();
    assert!(err.contains("payload type 96 appears twice"), "{err}");
}

#[test]
fn closed_sections_offer_nothing() {
    let sdp = offer(&[(96, "VP8/90000", "")], true)
        .replace("m=audio 9", "m=audio 0")
        .replacen("a=recvonly", "a=inactive", 1);
    let sections = offered_sections(&sdp).unwrap();
    assert!(sections.is_empty(), "{sections:?}");
}

#[test]
fn messages_name_both_sides() {
    let h264 = h264_codec();
    assert_eq!(
        describe_sends(Some(&h264), Some(&opus_codec())),
        "video H.264 (constrained baseline) and audio Opus"
    );
    assert_eq!(describe_sends(Some(&vp8()), None), "video VP8 and no audio");
    let sdp = offer(
        &[
            (96, "VP8/90000", ""),
            (97, "rtx/90000", "apt=96"),
            (98, "VP9/90000", "profile-id=0"),
            (45, "AV1/90000", ""),
        ],
        true,
    );
    assert_eq!(
        describe_offer(&offered_sections(&sdp).unwrap()),
        "video VP8, VP9, AV1 and audio Opus"
    );
    let sdp = offer(&[(97, "rtx/90000", "apt=96"), (99, "red/90000", "")], false);
    assert_eq!(
        describe_offer(&offered_sections(&sdp).unwrap()),
        "video rtx, red (no codec, only retransmission or redundancy) and no audio"
    );
    let sdp = offer(
        &[(
            97,
            "H264/90000",
            "packetization-mode=0;profile-level-id=42e01f",
        )],
        false,
    );
    assert_eq!(
        describe_offer(&offered_sections(&sdp).unwrap()),
        "video H.264 (constrained baseline, packetization-mode 0) and no audio"
    );
}

//! Seeds made in code with the real protocol stacks, written out once by
//! `scripts/fuzz-corpus.sh` (`feiyan-fuzz seeds DIR`) and committed under
//! `tests/fuzz-corpus/`: STUN Binding requests built and signed with `rtc`'s STUN, RTCP
//! feedback marshalled by `rtc`'s RTCP, WHEP offers made by this crate's client on both of
//! its stacks, an RTMP publish sent by `rml_rtmp`'s client session (its media the FLV tags
//! of the ffmpeg-made seed), and the text formats (CSV, ranges). Media seeds (FLV, H.264)
//! and the PostgreSQL `COPY` output come from the ffmpeg CLI and `psql` in that script.

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, ServerSession, ServerSessionConfig, ServerSessionEvent,
    ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;
use rtc::rtcp::packet::Packet as RtcpPacket;
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter, TransactionId};
use rtc::stun::textattrs::Username;

use super::targets::{RTCP_VIDEO_SSRC, STUN_PASSWORD, flv_tags};

/// Binding requests as a viewer's ICE agent sends them: signed with our password and
/// fingerprinted, unsigned, with another password; and a Binding success.
pub fn stun() -> Vec<Vec<u8>> {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let crypto = provider.crypto();
    let build = |typ, username: &str, pwd: Option<&str>, fingerprint: bool| {
        let mut setters: Vec<Box<dyn Setter + '_>> = vec![
            Box::new(typ),
            Box::new(TransactionId([7; 12])),
            Box::new(Username::new(
                rtc::stun::attributes::ATTR_USERNAME,
                username.to_string(),
            )),
        ];
        if let Some(pwd) = pwd {
            setters.push(Box::new(
                MessageIntegrity::new_short_term_integrity_with_provider(pwd.to_string(), crypto),
            ));
        }
        if fingerprint {
            setters.push(Box::new(FINGERPRINT));
        }
        let mut message = Message::new();
        message.build(&setters).expect("STUN message");
        message.raw
    };
    vec![
        build(BINDING_REQUEST, "ours:theirs", Some(STUN_PASSWORD), true),
        build(
            BINDING_REQUEST,
            "abcd1234efgh5678:x9y8",
            Some(STUN_PASSWORD),
            false,
        ),
        build(BINDING_REQUEST, "ours:theirs", None, true),
        build(
            BINDING_REQUEST,
            "ours:theirs",
            Some("another-password"),
            true,
        ),
        build(BINDING_SUCCESS, "ours:theirs", Some(STUN_PASSWORD), true),
    ]
}

/// What viewers send: NACKs (one pair, many pairs, another SSRC), PLI, FIR, a receiver
/// report, and a compound of receiver report + NACK + PLI as browsers bundle them.
pub fn rtcp() -> Vec<Vec<u8>> {
    let nack = |media_ssrc, pairs: &[(u16, u16)]| -> Box<dyn RtcpPacket> {
        Box::new(TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc,
            nacks: pairs
                .iter()
                .map(|&(packet_id, lost_packets)| NackPair {
                    packet_id,
                    lost_packets,
                })
                .collect(),
        })
    };
    let pli = || -> Box<dyn RtcpPacket> {
        Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: RTCP_VIDEO_SSRC,
        })
    };
    let rr = || -> Box<dyn RtcpPacket> {
        Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc: RTCP_VIDEO_SSRC,
                fraction_lost: 26,
                total_lost: 40,
                last_sequence_number: 5000,
                jitter: 90,
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let many: Vec<(u16, u16)> = (0..40).map(|i| (i * 17, 0xffff)).collect();
    let sets: Vec<Vec<Box<dyn RtcpPacket>>> = vec![
        vec![nack(RTCP_VIDEO_SSRC, &[(100, 0b101)])],
        vec![nack(RTCP_VIDEO_SSRC, &many)],
        vec![nack(RTCP_VIDEO_SSRC ^ 1, &[(7, 1)])],
        vec![pli()],
        vec![Box::new(FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: RTCP_VIDEO_SSRC,
            fir: vec![FirEntry {
                ssrc: RTCP_VIDEO_SSRC,
                sequence_number: 3,
            }],
        })],
        vec![rr()],
        vec![rr(), nack(RTCP_VIDEO_SSRC, &[(65530, 0xff)]), pli()],
    ];
    sets.iter()
        .map(|packets| {
            rtc::rtcp::packet::marshal(packets)
                .expect("RTCP marshals")
                .to_vec()
        })
        .collect()
}

/// WHEP offers from this crate's client (both stacks, both DTLS setups, each video codec
/// choice); call inside a tokio runtime.
pub async fn sdp() -> Vec<Vec<u8>> {
    use crate::client::{VideoCodecs, ViewerOptions, ViewerStack, WhepViewer};
    let mut offers = Vec::new();
    let variants = [
        (ViewerStack::Light, false, VideoCodecs::default()),
        (ViewerStack::Light, true, VideoCodecs::default()),
        (ViewerStack::WebRtc, false, VideoCodecs::default()),
    ];
    for (stack, dtls_client, codecs) in variants {
        let opts = ViewerOptions {
            stack,
            offer_dtls_client: dtls_client,
            video_codecs: codecs,
            ..ViewerOptions::default()
        };
        match WhepViewer::prepare(opts).await {
            Ok(viewer) => {
                if let Some(sdp) = viewer.offer_sdp() {
                    offers.push(sdp.as_bytes().to_vec());
                }
            }
            Err(e) => eprintln!("no {stack:?} offer: {e}"),
        }
    }
    offers
}

/// Hierarchy CSV files: a header and rows, quoting, a BOM, a bad row, Chinese names.
pub fn csv() -> Vec<Vec<u8>> {
    [
        "center,institute,station,address\n东城中心,和平里所,一站,北京市东城区和平里1号\n东城中心,和平里所,二站,\n",
        "\u{feff}中心,所,站,地址\r\n\"A, Center\",\"Inst \"\"1\"\"\",S1,\"line 1\nline 2\"\r\n",
        "c,i,s,a\nc,i\n\"unclosed,x,y,z\n",
        "x,y,z,w\nx,y,z,w\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// `Range` values with the file size after a newline.
pub fn range() -> Vec<Vec<u8>> {
    [
        "bytes=0-99\n1000",
        "bytes=500-\n1000",
        "bytes=-200\n1000",
        "bytes=0-0,5-9\n10",
        "bytes=999-2000\n1000",
        "bytes=18446744073709551615-\n18446744073709551615",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Request paths for the HTTP target: HLS playlists and media of a channel, replay
/// playlists, segments and MP4 downloads, with a `Range` after a newline.
pub fn paths() -> Vec<Vec<u8>> {
    [
        "hls/st-1/index.m3u8?vid=abc\n",
        "hls/st-1/ts.m3u8\n",
        "hls/st-1/source/media.m3u8?_HLS_msn=5&_HLS_part=2\n",
        "hls/st-1/1/source/seg-3.m4s\nbytes=0-99",
        "hls/st-1/1/0/part-17.m4s\n",
        "hls/st-1/1/0/init-2.mp4\n",
        "hls/st-1/1/0/seg-1.ts\nbytes=-10",
        "replay/1/index.m3u8?vid=x\n",
        "replay/1/seg-0.m4s?vid=x\n",
        "replay/1/init-0.mp4\n",
        "replay/1/replay.mp4\nbytes=100-",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// What an RTMP publisher sends, from `rml_rtmp`'s client session talking to its server
/// session, as the reads the server makes (framed as the `rtmp` target reads them):
/// handshake, connect to `live`, publish `st-1?key=...&title=...`, metadata, then
/// the tags of `flv` (an ffmpeg-made FLV file) as audio and video data, until `limit`
/// bytes.
pub fn rtmp_publish(flv: &[u8], limit: usize) -> Vec<u8> {
    // What the server reads, one entry per read (the client waits for answers between).
    let mut wire: Vec<Vec<u8>> = Vec::new();
    let mut client_hs = Handshake::new(PeerType::Client);
    let mut server_hs = Handshake::new(PeerType::Server);
    let c0c1 = client_hs
        .generate_outbound_p0_and_p1()
        .expect("client handshake");
    wire.push(c0c1.clone());
    let s0s1s2 = match server_hs.process_bytes(&c0c1).expect("server handshake") {
        HandshakeProcessResult::InProgress { response_bytes } => response_bytes,
        HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
    };
    match client_hs.process_bytes(&s0s1s2).expect("client handshake") {
        HandshakeProcessResult::Completed { response_bytes, .. }
        | HandshakeProcessResult::InProgress { response_bytes } => {
            wire.push(response_bytes.clone());
            let _ = server_hs.process_bytes(&response_bytes);
        }
    }
    let (mut server, server_initial) =
        ServerSession::new(ServerSessionConfig::new()).expect("server session");
    let (mut client, initial) =
        ClientSession::new(ClientSessionConfig::new()).expect("client session");
    for r in server_initial {
        if let ServerSessionResult::OutboundResponse(p) = r {
            let _ = client.handle_input(&p.bytes);
        }
    }
    // Client bytes to the server; what the server answers back to the client; events the
    // client raised.
    let exchange = |client: &mut ClientSession,
                    server: &mut ServerSession,
                    wire: &mut Vec<Vec<u8>>,
                    results: Vec<ClientSessionResult>|
     -> Vec<ClientSessionEvent> {
        let outbound = |results: Vec<ClientSessionResult>, events: &mut Vec<_>| {
            let mut bytes = Vec::new();
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p) => bytes.extend_from_slice(&p.bytes),
                    ClientSessionResult::RaisedEvent(e) => events.push(e),
                    _ => {}
                }
            }
            bytes
        };
        let mut events = Vec::new();
        let mut to_server = outbound(results, &mut events);
        // Until neither side has more to say.
        while !to_server.is_empty() {
            wire.push(to_server.clone());
            let mut to_client = Vec::new();
            let mut queue: std::collections::VecDeque<ServerSessionResult> =
                server.handle_input(&to_server).unwrap_or_default().into();
            while let Some(r) = queue.pop_front() {
                match r {
                    ServerSessionResult::OutboundResponse(p) => {
                        to_client.extend_from_slice(&p.bytes)
                    }
                    ServerSessionResult::RaisedEvent(
                        ServerSessionEvent::ConnectionRequested { request_id, .. }
                        | ServerSessionEvent::PublishStreamRequested { request_id, .. },
                    ) => queue.extend(server.accept_request(request_id).unwrap_or_default()),
                    _ => {}
                }
            }
            to_server = outbound(
                client.handle_input(&to_client).unwrap_or_default(),
                &mut events,
            );
        }
        events
    };
    exchange(&mut client, &mut server, &mut wire, initial);
    let connect = client
        .request_connection("live".into())
        .expect("connect request");
    let events = exchange(&mut client, &mut server, &mut wire, vec![connect]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted)),
        "the server session accepted the connection: {events:?}"
    );
    let publish = client
        .request_publishing(
            "st-1?key=fy_0123456789abcdef&title=%E8%AE%B2%E5%BA%A7".into(),
            PublishRequestType::Live,
        )
        .expect("publish request");
    let events = exchange(&mut client, &mut server, &mut wire, vec![publish]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted)),
        "the server session accepted the publish"
    );
    for (kind, ts, body) in flv_tags(flv) {
        if wire.iter().map(|r| r.len() + 2).sum::<usize>() >= limit {
            break;
        }
        let data = Bytes::copy_from_slice(body);
        let sent = match kind {
            8 => client.publish_audio_data(data, RtmpTimestamp::new(ts), false),
            9 => client.publish_video_data(data, RtmpTimestamp::new(ts), false),
            _ => continue,
        };
        if let Ok(ClientSessionResult::OutboundResponse(p)) = sent {
            wire.push(p.bytes.to_vec());
        }
    }
    let mut framed = crate::fuzzing::targets::frame_reads(&wire);
    framed.truncate(limit);
    framed
}

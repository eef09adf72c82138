//! What a WHEP viewer is asked to do: how it connects, what it records, which stack it runs on.

use rtc::rtp::packet::Packet as RtpPacket;

#[cfg(doc)]
use crate::client::WhepViewer;
use crate::client::{ConnectOptions, TrackKind};

/// How a [`WhepViewer`] connects and what it records.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Local sockets and timeouts.
    pub connect: ConnectOptions,
    /// Keep every received RTP payload per kind (see [`WhepViewer::received_payloads`]) for
    /// byte-identity checks. Memory grows with the session.
    pub record_payloads: bool,
    /// Keep the arrival instant and size of every packet so
    /// [`WhepViewer::received_between`] can count packets inside a time window. About 16 bytes
    /// per packet.
    pub record_arrival_log: bool,
    /// Keep `(RTP timestamp, arrival instant)` of every video picture completed in order
    /// (its marker-bit packet), for end-to-end latency figures (see
    /// [`WhepViewer::video_frame_log`]). About 24 bytes per picture.
    pub record_frame_log: bool,
    /// Wait for ICE + DTLS to reach `connected` before `connect` returns. When false, `connect`
    /// returns as soon as the answer is applied.
    pub wait_connected: bool,
    /// Send one PLI when the video track opens, as a browser does when it has no keyframe.
    /// Off by default, so time-to-first-keyframe measures what the server does on its own.
    pub request_keyframe_on_start: bool,
    /// The WebRTC stack to run on.
    pub stack: ViewerStack,
    /// Offer `a=setup:active` (to be the DTLS client) instead of `actpass`, as some players
    /// do. Light stack only; the server then finishes its handshake first.
    pub offer_dtls_client: bool,
    /// The video codecs offered, as a browser without one decoder would.
    pub video_codecs: VideoCodecs,
    /// Where every received RTP packet (decrypted) is also handed, as it arrives: a relay
    /// that re-serves the stream (a cluster edge). A full queue drops the packet.
    pub forward: Option<tokio::sync::mpsc::Sender<(TrackKind, RtpPacket)>>,
}

/// Which video codecs a [`WhepViewer`] offers (audio is always Opus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VideoCodecs {
    /// H.264 (constrained baseline and baseline, packetization-mode 1) and VP8.
    #[default]
    H264AndVp8,
    /// H.264 only, as a client without VP8.
    H264Only,
    /// VP8 only, as a browser without H.264 (Firefox without OpenH264).
    Vp8Only,
}

impl Default for ViewerOptions {
    fn default() -> Self {
        Self {
            connect: ConnectOptions::default(),
            record_payloads: false,
            record_arrival_log: true,
            record_frame_log: false,
            wait_connected: true,
            request_keyframe_on_start: false,
            stack: ViewerStack::WebRtc,
            offer_dtls_client: false,
            video_codecs: VideoCodecs::default(),
            forward: None,
        }
    }
}

/// Which WebRTC stack a [`WhepViewer`] runs on. Both speak the same protocol (ICE, DTLS,
/// SRTP, receiver reports, NACK).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ViewerStack {
    /// webrtc-rs's async peer connection, with its tasks and channels per connection.
    #[default]
    WebRtc,
    /// rtc's sans-IO peer connection driven by one task (see `client/whep/light.rs`): a
    /// fraction of the client CPU, for benchmarks that run hundreds of viewers on the
    /// server's machine.
    Light,
}

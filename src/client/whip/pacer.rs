//! The publisher's pacer: sends both streams in real time and records what it sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet as RtpPacket;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

#[cfg(doc)]
use crate::client::PublisherOptions;
use crate::client::media::{AUDIO_CLOCK_RATE, SyntheticMedia, VIDEO_CLOCK_RATE};
use crate::client::{KindCounters, TrackKind, lock};

/// Mutable state shared between the pacing task and the API.
#[derive(Debug, Default)]
pub(super) struct SendState {
    /// Video packets/bytes written so far.
    pub(super) video: KindCounters,
    /// Audio packets/bytes written so far.
    pub(super) audio: KindCounters,
    /// When the first packet was written (start of media on the wire).
    pub(super) first_packet_at: Option<Instant>,
    /// Every video payload, when payload recording is on (byte-identity checks).
    pub(super) video_payloads: Vec<Bytes>,
    /// Every audio payload, when payload recording is on.
    pub(super) audio_payloads: Vec<Bytes>,
    /// `(send instant, payload length)` per video packet, for `sent_between`.
    pub(super) video_log: Vec<(Instant, u32)>,
    /// `(send instant, payload length)` per audio packet, for `sent_between`.
    pub(super) audio_log: Vec<(Instant, u32)>,
    /// Whether the pacer is still running.
    pub(super) sending: bool,
    /// Why the pacer stopped on its own, if it did.
    pub(super) send_error: Option<String>,
}

/// One outgoing stream for the pacer.
pub(super) struct PacedTrack {
    /// Where packets are written.
    pub(super) track: Arc<TrackLocalStaticRTP>,
    /// SSRC stamped on every packet; must match the track's encoding or the stack drops it.
    pub(super) ssrc: u32,
    /// Negotiated payload type stamped on every packet.
    pub(super) payload_type: u8,
}

/// Recording switches for the pacer.
#[derive(Clone, Copy)]
pub(super) struct PaceFlags {
    /// See [`PublisherOptions::record_payloads`].
    pub(super) record_payloads: bool,
    /// See [`PublisherOptions::record_send_log`].
    pub(super) record_send_log: bool,
    /// See [`PublisherOptions::loop_media`].
    pub(super) loop_media: bool,
}

/// Position of one stream in its (looping) list of frames.
struct Cursor {
    /// Next frame/packet index.
    index: usize,
    /// Media time of that frame in clock-rate ticks since the start of sending.
    time: u64,
    /// Ticks per second of this stream's RTP clock.
    clock_rate: u32,
    /// Random initial RTP timestamp (RFC 3550 §5.1); the timestamp is `ts_base + time`.
    ts_base: u32,
    /// Next RTP sequence number, starting at a random value.
    seq: u16,
    /// The single pass is over (only when not looping).
    done: bool,
}

impl Cursor {
    fn new(clock_rate: u32) -> Self {
        Self {
            index: 0,
            time: 0,
            clock_rate,
            ts_base: rand::random(),
            seq: rand::random(),
            done: false,
        }
    }

    fn due(&self, start: tokio::time::Instant) -> tokio::time::Instant {
        start + Duration::from_micros(self.time * 1_000_000 / u64::from(self.clock_rate))
    }

    fn advance(&mut self, duration: u32, len: usize, loop_media: bool) {
        self.time += u64::from(duration);
        self.index += 1;
        if self.index >= len {
            self.index = 0;
            self.done = !loop_media;
        }
    }
}

/// Sends both streams in real time: each frame/packet at its media time, video frames as a
/// burst of packets sharing one timestamp with the marker on the last.
pub(super) async fn pace(
    media: SyntheticMedia,
    video: PacedTrack,
    audio: PacedTrack,
    state: Arc<Mutex<SendState>>,
    flags: PaceFlags,
) {
    let frames = media.video_frames();
    let packets = media.audio_packets();
    let mut v = Cursor::new(VIDEO_CLOCK_RATE);
    let mut a = Cursor::new(AUDIO_CLOCK_RATE);
    let start = tokio::time::Instant::now();
    let outcome: std::result::Result<(), String> = async {
        loop {
            let send_video = match (v.done, a.done) {
                (true, true) => return Ok(()),
                (false, true) => true,
                (true, false) => false,
                (false, false) => v.due(start) <= a.due(start),
            };
            let cursor = if send_video { &mut v } else { &mut a };
            tokio::time::sleep_until(cursor.due(start)).await;
            let timestamp = cursor.ts_base.wrapping_add(cursor.time as u32);
            if send_video {
                let frame = &frames[v.index];
                let last = frame.payloads.len().saturating_sub(1);
                for (i, payload) in frame.payloads.iter().enumerate() {
                    let packet = rtp_packet(&video, v.seq, timestamp, i == last, payload);
                    v.seq = v.seq.wrapping_add(1);
                    write(&video, packet, TrackKind::Video, &state, flags).await?;
                }
                v.advance(frame.duration, frames.len(), flags.loop_media);
            } else {
                let packet = &packets[a.index];
                // Opus: one packet per RTP packet; marker only at the start of a talkspurt,
                // which continuous audio never has after the first.
                let rtp = rtp_packet(&audio, a.seq, timestamp, a.time == 0, &packet.payload);
                a.seq = a.seq.wrapping_add(1);
                write(&audio, rtp, TrackKind::Audio, &state, flags).await?;
                a.advance(packet.duration, packets.len(), flags.loop_media);
            }
        }
    }
    .await;
    let mut s = lock(&state);
    s.sending = false;
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "WHIP publisher stopped sending");
        s.send_error = Some(e);
    }
}

fn rtp_packet(
    track: &PacedTrack,
    seq: u16,
    timestamp: u32,
    marker: bool,
    payload: &Bytes,
) -> RtpPacket {
    RtpPacket {
        header: Header {
            version: 2,
            marker,
            payload_type: track.payload_type,
            sequence_number: seq,
            timestamp,
            ssrc: track.ssrc,
            ..Default::default()
        },
        payload: payload.clone(),
    }
}

async fn write(
    track: &PacedTrack,
    packet: RtpPacket,
    kind: TrackKind,
    state: &Mutex<SendState>,
    flags: PaceFlags,
) -> std::result::Result<(), String> {
    let payload = packet.payload.clone();
    track
        .track
        .write_rtp(packet)
        .await
        .map_err(|e| format!("writing {kind} RTP: {e}"))?;
    let now = Instant::now();
    let mut guard = lock(state);
    let s = &mut *guard;
    s.first_packet_at.get_or_insert(now);
    let len = payload.len();
    let (counters, payloads, log) = match kind {
        TrackKind::Video => (&mut s.video, &mut s.video_payloads, &mut s.video_log),
        TrackKind::Audio => (&mut s.audio, &mut s.audio_payloads, &mut s.audio_log),
    };
    counters.add(len);
    if flags.record_send_log {
        log.push((now, len as u32));
    }
    if flags.record_payloads {
        payloads.push(payload);
    }
    Ok(())
}

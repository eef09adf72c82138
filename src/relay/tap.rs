//! The hub's interface for what is not WebRTC: per channel, one subscription that delivers
//! access units (codec, PTS/DTS, keyframe flag, shared bytes) once per channel, whatever
//! the source. HLS, recording, the WHIP->transcode path and cluster edges attach here.
//!
//! RTP from the channel's source (a WHIP publisher, or a server-side source's packets) is
//! reassembled into access units only while someone is subscribed; server-side sources
//! also hand over tracks WebRTC viewers never see (the original AAC of RTMP and pull
//! sources) as access units. A slow subscriber lags (`broadcast` drops its oldest units
//! and tells it so); it never slows the channel or other subscribers.

use std::collections::HashMap;
use std::time::Instant;

use bytes::BytesMut;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use tokio::sync::broadcast;

use super::media::{VideoCodec, starts_keyframe};
use crate::ids::{ChannelName, SessionId};
use crate::media::{AccessUnit, Codec, MediaKind, Track};

/// Units a subscriber may fall behind by before it lags (about 10 s of 30 fps video with
/// its audio).
const CAPACITY: usize = 1024;

/// The largest access unit the tap reassembles (a 4K keyframe is a few MB).
const MAX_UNIT_BYTES: usize = 8 << 20;

/// What a channel subscription delivers.
#[derive(Debug, Clone)]
pub enum ChannelMedia {
    /// A session went live; its access units follow.
    Live(LiveMedia),
    /// One access unit of the live session.
    Unit(AccessUnit),
    /// The session ended (the next one, if any, starts with `Live`).
    Ended {
        /// The session.
        session: SessionId,
    },
}

/// A live session's tracks, as subscribers see them.
#[derive(Debug, Clone)]
pub struct LiveMedia {
    /// The session.
    pub session: SessionId,
    /// The video codec WebRTC viewers get, if any.
    pub video: Option<Codec>,
    /// The audio codec WebRTC viewers get, if any.
    pub audio: Option<Codec>,
    /// The lower renditions' names (video rendition `i + 1`).
    pub renditions: Vec<String>,
}

/// A subscription to one channel: where it stands now, then what follows.
pub struct Subscription {
    /// The live session at the moment of subscribing, if any.
    pub live: Option<LiveMedia>,
    /// Everything after that.
    pub media: broadcast::Receiver<ChannelMedia>,
}

/// Turns one RTP stream back into access units.
struct Assembler {
    codec: Codec,
    clock_rate: u32,
    /// Source timestamp of the unit being collected.
    timestamp: Option<u32>,
    /// Its bytes so far.
    data: BytesMut,
    keyframe: bool,
    /// A packet of the current unit went missing: it is dropped.
    broken: bool,
    /// Payload bytes taken for the current unit (bounded by `MAX_UNIT_BYTES`).
    fed: usize,
    /// Video after a loss waits for a keyframe, so a decoder never sees a broken reference.
    need_keyframe: bool,
    next_seq: Option<u16>,
    /// The last unit's source timestamp and its presentation time.
    last: Option<(u32, i64)>,
    h264: H264Packet,
    vp8: Vp8Packet,
}

impl Assembler {
    fn new(codec: Codec, clock_rate: u32) -> Assembler {
        Assembler {
            codec,
            clock_rate,
            timestamp: None,
            data: BytesMut::new(),
            keyframe: false,
            broken: false,
            fed: 0,
            need_keyframe: codec.kind() == MediaKind::Video,
            next_seq: None,
            last: None,
            h264: H264Packet::default(),
            vp8: Vp8Packet::default(),
        }
    }

    /// Takes one packet in arrival order; returns a unit when one is complete.
    /// `since_live` is the time since the session went live: a track's first unit is
    /// placed there, the rest by their RTP timestamps, so tracks with unrelated RTP clocks
    /// share one timeline (to within the first packet's network jitter).
    fn push(
        &mut self,
        packet: &rtp::Packet,
        track: &Track,
        since_live: std::time::Duration,
        out: &mut Vec<AccessUnit>,
    ) {
        let header = &packet.header;
        let gap = self
            .next_seq
            .is_some_and(|seq| seq != header.sequence_number);
        self.next_seq = Some(header.sequence_number.wrapping_add(1));
        if gap {
            // The lost packets may be the open unit's tail (its marker among them): it is
            // incomplete whatever comes next.
            self.broken |= self.timestamp.is_some();
            self.h264 = H264Packet::default();
        }
        if packet.payload.is_empty() {
            return; // padding (e.g. bandwidth probes): no media, but it holds a number
        }
        if self.timestamp.is_some_and(|ts| ts != header.timestamp) {
            self.finish(track, since_live, out);
        }
        if gap && self.codec.kind() == MediaKind::Video {
            // ... or the head of this one (an SPS before its IDR, a first fragment).
            self.broken = true;
        }
        self.fed += packet.payload.len();
        if self.fed > MAX_UNIT_BYTES {
            // A source that never ends its unit (no marker, one timestamp) is cut off
            // rather than allowed to grow memory.
            self.broken = true;
            self.data.clear();
            self.h264 = H264Packet::default();
        }
        if self.timestamp.is_none() {
            self.timestamp = Some(header.timestamp);
            self.keyframe = match self.codec {
                Codec::H264 => false,
                Codec::Vp8 => starts_keyframe(VideoCodec::Vp8, &packet.payload),
                Codec::Opus | Codec::Aac => true,
            };
        }
        let payload = match self.codec {
            Codec::H264 => {
                self.keyframe |= starts_keyframe(VideoCodec::H264, &packet.payload);
                self.h264.depacketize(&packet.payload)
            }
            Codec::Vp8 => self.vp8.depacketize(&packet.payload),
            Codec::Opus | Codec::Aac => Ok(packet.payload.clone()),
        };
        match payload {
            Ok(bytes) => self.data.extend_from_slice(&bytes),
            Err(_) => self.broken = true,
        }
        if header.marker || self.codec.kind() == MediaKind::Audio {
            self.finish(track, since_live, out);
        }
    }

    fn finish(
        &mut self,
        track: &Track,
        since_live: std::time::Duration,
        out: &mut Vec<AccessUnit>,
    ) {
        let Some(ts) = self.timestamp.take() else {
            return;
        };
        let data = std::mem::take(&mut self.data).freeze();
        self.fed = 0;
        let (keyframe, broken) = (self.keyframe, std::mem::take(&mut self.broken));
        if broken {
            self.need_keyframe = self.codec.kind() == MediaKind::Video;
            return;
        }
        if data.is_empty() || (self.need_keyframe && !keyframe) {
            return;
        }
        if self.last.is_none() && self.codec == Codec::H264 && !has_sps(&data) {
            // A track's first unit must carry its parameter sets: an IDR whose SPS went
            // by before the tap saw the session cannot start a decoder or a file.
            return;
        }
        self.need_keyframe = false;
        let pts = match self.last {
            Some((last_ts, last)) => last + i64::from(ts.wrapping_sub(last_ts) as i32),
            None => (since_live.as_micros() as i64) * i64::from(self.clock_rate) / 1_000_000,
        };
        self.last = Some((ts, pts));
        out.push(AccessUnit {
            track: track.clone(),
            codec: self.codec,
            pts,
            dts: pts,
            timescale: self.clock_rate,
            keyframe,
            data,
        });
    }
}

/// Whether an Annex-B H.264 unit holds a sequence parameter set (NAL type 7).
fn has_sps(annexb: &[u8]) -> bool {
    annexb
        .windows(4)
        .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 7)
}

/// One channel's subscribers and its reassembly state.
struct ChannelTap {
    tx: broadcast::Sender<ChannelMedia>,
    live: Option<LiveMedia>,
    /// When the live session started, the origin of its units' timeline.
    live_at: Option<Instant>,
    /// The first source-given unit's (pts, place on the timeline) per track.
    given: HashMap<Track, (i64, i64)>,
    /// Video renditions (index = rendition) and audio, made on the first packet.
    video: Vec<Option<Assembler>>,
    audio: Option<Assembler>,
}

impl ChannelTap {
    /// Reassembles a live session's packets and sends the units that complete.
    fn feed(
        &mut self,
        rendition: usize,
        video_codec: Option<Codec>,
        now: Instant,
        packets: &[(MediaKind, rtp::Packet)],
    ) {
        let (Some(live), Some(live_at)) = (&self.live, self.live_at) else {
            return;
        };
        let since_live = now.saturating_duration_since(live_at);
        let mut units = Vec::new();
        for (kind, packet) in packets {
            let (slot, codec, track) = match kind {
                MediaKind::Video => {
                    if self.video.len() <= rendition {
                        self.video.resize_with(rendition + 1, || None);
                    }
                    let track = Track::Video {
                        rendition: rendition as u8,
                    };
                    (
                        &mut self.video[rendition],
                        video_codec.or(live.video),
                        track,
                    )
                }
                MediaKind::Audio => (&mut self.audio, live.audio, Track::Audio),
            };
            let Some(codec) = codec else {
                continue;
            };
            let clock_rate = if codec == Codec::Opus { 48_000 } else { 90_000 };
            slot.get_or_insert_with(|| Assembler::new(codec, clock_rate))
                .push(packet, &track, since_live, &mut units);
        }
        for unit in units {
            let _ = self.tx.send(ChannelMedia::Unit(unit));
        }
    }
}

/// Every channel's tap. Owned by the engine, which feeds it what the hub forwarded.
#[derive(Default)]
pub(super) struct Taps {
    channels: HashMap<ChannelName, ChannelTap>,
}

impl Taps {
    /// A new subscription to `channel` (which need not be live yet); `live` is the hub's
    /// word on the session running now, for a tap made while it runs.
    pub(super) fn subscribe(
        &mut self,
        channel: &ChannelName,
        live: Option<LiveMedia>,
        now: Instant,
    ) -> Subscription {
        let tap = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelTap {
                tx: broadcast::channel(CAPACITY).0,
                live: None,
                live_at: None,
                given: HashMap::new(),
                video: Vec::new(),
                audio: None,
            });
        if tap.live.is_none()
            && let Some(live) = live
        {
            tap.live = Some(live);
            tap.live_at = Some(now);
        }
        Subscription {
            live: tap.live.clone(),
            media: tap.tx.subscribe(),
        }
    }

    /// A session went live on `channel`.
    pub(super) fn live(&mut self, channel: &ChannelName, live: LiveMedia, now: Instant) {
        if let Some(tap) = self.tapped(channel) {
            tap.video.clear();
            tap.audio = None;
            tap.given.clear();
            tap.live_at = Some(now);
            tap.live = Some(live.clone());
            let _ = tap.tx.send(ChannelMedia::Live(live));
        }
    }

    /// The session on `channel` ended.
    pub(super) fn ended(&mut self, channel: &ChannelName, session: SessionId) {
        if let Some(tap) = self.tapped(channel) {
            tap.live = None;
            tap.live_at = None;
            let _ = tap.tx.send(ChannelMedia::Ended { session });
        }
    }

    /// Packets the hub forwarded from the channel's source (video of `rendition`). The
    /// engine tells the tap a session went live ([`Taps::live`]) before it fans out the
    /// packets read in the same turn, so a session's first keyframe is never lost here.
    /// `video_codec` says what the stream is encoded in when it may differ from the
    /// channel's video (a codec bridge's stream), asked only while someone is subscribed.
    pub(super) fn packets(
        &mut self,
        channel: &ChannelName,
        rendition: usize,
        video_codec: impl FnOnce() -> Option<Codec>,
        now: Instant,
        packets: &[(MediaKind, rtp::Packet)],
    ) {
        if let Some(tap) = self.tapped(channel) {
            tap.feed(rendition, video_codec(), now, packets);
        }
    }

    /// An access unit a server-side source hands over itself (e.g. its original AAC).
    /// Its first unit is placed at the time since the session went live, the rest by
    /// their own timestamps.
    pub(super) fn unit(&mut self, channel: &ChannelName, mut unit: AccessUnit, now: Instant) {
        let Some(tap) = self.tapped(channel) else {
            return;
        };
        let Some(live_at) = tap.live_at.filter(|_| tap.live.is_some()) else {
            return;
        };
        let since_live = now.saturating_duration_since(live_at).as_micros() as i64;
        let (first, placed) = *tap
            .given
            .entry(unit.track.clone())
            .or_insert((unit.dts, since_live * i64::from(unit.timescale) / 1_000_000));
        unit.pts += placed - first;
        unit.dts += placed - first;
        let _ = tap.tx.send(ChannelMedia::Unit(unit));
    }

    /// The channel's tap while anyone is subscribed; forgotten when no one is.
    fn tapped(&mut self, channel: &ChannelName) -> Option<&mut ChannelTap> {
        if self
            .channels
            .get(channel)
            .is_some_and(|t| t.tx.receiver_count() == 0)
        {
            self.channels.remove(channel);
        }
        self.channels.get_mut(channel)
    }
}

/// The access-unit codec of an SDP mime type the relay forwards.
pub(super) fn codec_of_mime(mime: &str) -> Option<Codec> {
    match mime.to_ascii_lowercase().as_str() {
        "video/h264" => Some(Codec::H264),
        "video/vp8" => Some(Codec::Vp8),
        "audio/opus" => Some(Codec::Opus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::media::packet;
    use bytes::Bytes;

    /// A tap of `st-1` subscribed before an H.264-only session `session` went live.
    fn h264_session(session: i64) -> (Taps, Subscription, ChannelName, Instant) {
        let channel = ChannelName::parse("st-1").unwrap();
        let mut taps = Taps::default();
        let sub = taps.subscribe(&channel, None, Instant::now());
        let now = Instant::now();
        let live = LiveMedia {
            session: SessionId(session),
            video: Some(Codec::H264),
            audio: None,
            renditions: Vec::new(),
        };
        taps.live(&channel, live, now);
        (taps, sub, channel, now)
    }

    /// A video packet (SSRC 1) whose payload is `nal`.
    fn video(seq: u16, ts: u32, marker: bool, nal: &'static [u8]) -> (MediaKind, rtp::Packet) {
        (
            MediaKind::Video,
            packet(102, 1, seq, ts, marker, Bytes::from_static(nal)),
        )
    }

    fn units(rx: &mut broadcast::Receiver<ChannelMedia>) -> Vec<AccessUnit> {
        let mut units = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let ChannelMedia::Unit(u) = m {
                units.push(u);
            }
        }
        units
    }

    #[test]
    fn h264_units_start_at_a_keyframe_and_drop_when_a_packet_is_lost() {
        let channel = ChannelName::parse("st-1").unwrap();
        let mut taps = Taps::default();
        let mut sub = taps.subscribe(&channel, None, Instant::now());
        assert!(sub.live.is_none());
        let now = Instant::now();
        taps.live(
            &channel,
            LiveMedia {
                session: SessionId(7),
                video: Some(Codec::H264),
                audio: Some(Codec::Opus),
                renditions: Vec::new(),
            },
            now,
        );
        let v = |seq: u16, ts: u32, marker: bool, nal: &'static [u8]| {
            (
                MediaKind::Video,
                packet(102, 1, seq, ts, marker, Bytes::from_static(nal)),
            )
        };
        let a = |seq: u16, ts: u32| {
            (
                MediaKind::Audio,
                packet(111, 2, seq, ts, false, Bytes::from_static(b"opus")),
            )
        };
        // A P-frame before any keyframe is not delivered; then IDR (SPS + IDR slice),
        // a P-frame, a P-frame whose second packet is lost, a P-frame (dropped: waits for
        // a keyframe), and the next IDR.
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[v(10, 0, true, &[0x41, 1, 1]), a(1, 0)],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[
                v(11, 3000, false, &[0x67, 1, 2]),
                v(12, 3000, true, &[0x65, 9, 9]),
            ],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[v(13, 6000, true, &[0x41, 2, 2]), a(2, 960)],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[
                v(14, 9000, false, &[0x41, 3, 3]),
                v(16, 9000, true, &[0x41, 4, 4]),
            ],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[v(17, 12000, true, &[0x41, 5, 5])],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[
                v(18, 15000, false, &[0x67, 1, 2]),
                v(19, 15000, true, &[0x65, 8, 8]),
            ],
        );
        let units = units(&mut sub.media);
        let video: Vec<&AccessUnit> = units.iter().filter(|u| u.codec == Codec::H264).collect();
        assert_eq!(video.len(), 3, "{video:?}");
        assert!(video[0].keyframe && !video[1].keyframe && video[2].keyframe);
        assert_eq!(
            &video[0].data[..],
            &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65, 9, 9]
        );
        assert_eq!(
            video.iter().map(|u| u.pts).collect::<Vec<_>>(),
            vec![0, 3000, 12000]
        );
        let audio: Vec<&AccessUnit> = units.iter().filter(|u| u.codec == Codec::Opus).collect();
        assert_eq!(
            audio
                .iter()
                .map(|u| (u.pts, u.timescale))
                .collect::<Vec<_>>(),
            vec![(0, 48_000), (960, 48_000)]
        );
    }

    #[test]
    fn an_h264_track_starts_at_a_keyframe_with_its_sps() {
        let (mut taps, mut sub, channel, now) = h264_session(8);
        let v = video;
        // The SPS of the first IDR went by before the tap saw the session: that IDR and
        // the P-frame after it are not delivered; the next IDR with its SPS is.
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[
                v(20, 0, true, &[0x65, 1, 1]),
                v(21, 3000, true, &[0x41, 2, 2]),
                v(22, 6000, false, &[0x67, 1, 2]),
                v(23, 6000, true, &[0x65, 3, 3]),
                v(24, 9000, true, &[0x41, 4, 4]),
            ],
        );
        let units = units(&mut sub.media);
        let video: Vec<&AccessUnit> = units.iter().filter(|u| u.codec == Codec::H264).collect();
        assert_eq!(video.len(), 2, "{video:?}");
        assert!(video[0].keyframe && has_sps(&video[0].data));
        assert_eq!(video[1].data[..], [0, 0, 0, 1, 0x41, 4, 4]);
    }

    #[test]
    fn a_unit_whose_last_packet_is_lost_is_dropped_not_sent_short() {
        let (mut taps, mut sub, channel, now) = h264_session(9);
        let v = video;
        // IDR; then a frame whose marker packet (seq 4) is lost; an empty padding packet;
        // then a P-frame (waits for a keyframe) and the next IDR.
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[v(1, 0, false, &[0x67, 1, 1]), v(2, 0, true, &[0x65, 1, 1])],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[v(3, 3000, false, &[0x41, 2, 2])],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[v(5, 6000, true, &[0x41, 3, 3]), v(6, 6000, false, &[])],
        );
        taps.packets(
            &channel,
            0,
            || None,
            now,
            &[
                v(7, 9000, false, &[0x67, 1, 1]),
                v(8, 9000, true, &[0x65, 4, 4]),
            ],
        );
        let got: Vec<(i64, bool)> = units(&mut sub.media)
            .iter()
            .map(|u| (u.pts, u.keyframe))
            .collect();
        assert_eq!(got, vec![(0, true), (9000, true)]);
    }

    #[test]
    fn a_channel_without_subscribers_keeps_no_state() {
        let channel = ChannelName::parse("st-1").unwrap();
        let mut taps = Taps::default();
        let sub = taps.subscribe(&channel, None, Instant::now());
        drop(sub);
        taps.packets(&channel, 0, || None, Instant::now(), &[]);
        assert!(taps.channels.is_empty());
    }
}

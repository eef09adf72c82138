//! The hub without sockets: plain RTP packets in, a recording [`Deliver`] out, and a clock
//! advanced by hand.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;
use crate::relay::media::{h264_codec, opus_codec, packet};

/// What the hub asked the caller to do for a viewer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Send {
        viewer: PeerKey,
        kind: MediaKind,
        ssrc: u32,
        seq: u16,
    },
    Resync {
        viewer: PeerKey,
        kind: Option<MediaKind>,
    },
    Done {
        viewer: PeerKey,
    },
}

/// A [`Deliver`] that records every call; `send` succeeds unless `refuse` is set or the
/// packet is of `refuse_kind` (a viewer whose answer took only the other kind).
#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<Call>,
    refuse: bool,
    refuse_kind: Option<MediaKind>,
}

impl Deliver for Recorder {
    fn send(&mut self, viewer: PeerKey, kind: MediaKind, packet: &rtp::Packet) -> bool {
        self.calls.push(Call::Send {
            viewer,
            kind,
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
        });
        !self.refuse && self.refuse_kind != Some(kind)
    }

    fn resend(&mut self, viewer: PeerKey, packet: &rtp::Packet) -> bool {
        self.send(viewer, MediaKind::Video, packet)
    }

    fn resync(&mut self, viewer: PeerKey, kind: Option<MediaKind>) {
        self.calls.push(Call::Resync { viewer, kind });
    }

    fn done(&mut self, viewer: PeerKey) {
        self.calls.push(Call::Done { viewer });
    }
}

impl Recorder {
    /// Takes the calls recorded so far.
    fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    /// Takes the calls recorded so far and keeps the `(kind, ssrc, seq)` sent to `viewer`.
    fn take_sent(&mut self, to: PeerKey) -> Vec<(MediaKind, u32, u16)> {
        sent_to(&self.take(), to)
    }
}

/// The `(kind, ssrc, seq)` of the packets sent to `to`, in order.
fn sent_to(calls: &[Call], to: PeerKey) -> Vec<(MediaKind, u32, u16)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Send {
                viewer,
                kind,
                ssrc,
                seq,
            } if *viewer == to => Some((*kind, *ssrc, *seq)),
            _ => None,
        })
        .collect()
}

const VIDEO_SSRC: u32 = 0x1111;
const AUDIO_SSRC: u32 = 0x2222;
const PLI: Duration = Duration::from_millis(500);
const REPLAY: Duration = Duration::from_millis(200);

/// H.264 NAL headers: SPS and IDR start a keyframe, a non-IDR slice does not.
const SPS: u8 = 0x67;
const IDR: u8 = 0x65;
const SLICE: u8 = 0x41;

fn config(max_viewers: usize) -> HubConfig {
    HubConfig {
        gop_max_packets: 100,
        pli_min_interval: PLI,
        max_viewers_per_channel: max_viewers,
        max_unconnected_per_channel: max_viewers,
        max_unconnected_per_client: max_viewers,
    }
}

fn hub() -> (Hub, Arc<RelayCounters>) {
    let counters = Arc::new(RelayCounters::default());
    (Hub::new(config(10), counters.clone()), counters)
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("valid channel name")
}

fn session(id: i64) -> LiveSession {
    LiveSession {
        id: SessionId(id),
        title: format!("session {id}"),
        started_at_ms: 1_000 * id,
    }
}

fn tracks(renditions: &[&str]) -> LiveTracks {
    LiveTracks {
        video: Some(h264_codec()),
        audio: Some(opus_codec()),
        renditions: renditions.iter().map(|r| r.to_string()).collect(),
    }
}

/// A video packet of `ssrc` whose payload starts with the NAL header `nal`.
fn video(ssrc: u32, seq: u16, ts: u32, nal: u8) -> (MediaKind, rtp::Packet) {
    (
        MediaKind::Video,
        packet(96, ssrc, seq, ts, true, Bytes::from(vec![nal, 0xaa, 0xbb])),
    )
}

fn audio(ssrc: u32, seq: u16) -> (MediaKind, rtp::Packet) {
    (
        MediaKind::Audio,
        packet(
            111,
            ssrc,
            seq,
            u32::from(seq) * 960,
            true,
            Bytes::from_static(b"opus"),
        ),
    )
}

fn events(hub: &mut Hub) -> Vec<HubEvent> {
    std::iter::from_fn(|| hub.poll_event()).collect()
}

fn keyframes_wanted(events: &[HubEvent]) -> Vec<Source> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::KeyframeWanted { source, .. } => Some(*source),
            _ => None,
        })
        .collect()
}

fn attending(events: &[HubEvent]) -> Vec<(PeerKey, SessionId)> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::Attending { viewer, session } => Some((*viewer, *session)),
            _ => None,
        })
        .collect()
}

fn not_attending(events: &[HubEvent]) -> Vec<PeerKey> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::NotAttending { viewer } => Some(*viewer),
            _ => None,
        })
        .collect()
}

/// The statuses published for `ch`, in order (`None`: the channel is gone).
fn statuses(events: &[HubEvent], ch: &ChannelName) -> Vec<Option<ChannelStatus>> {
    events
        .iter()
        .filter_map(|e| match e {
            HubEvent::Status { channel, status } if channel == ch => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Claims `ch` for `source` with session `id` and makes it live; drains the events.
fn live(
    hub: &mut Hub,
    ch: &ChannelName,
    source: Source,
    id: i64,
    now: Instant,
    out: &mut Recorder,
) -> Vec<HubEvent> {
    hub.claim(ch, source, session(id)).expect("channel free");
    hub.go_live(ch, source, tracks(&[]), now, out);
    events(hub)
}

/// Admits, adds and connects a viewer of the source video; drains the events.
fn join(hub: &mut Hub, key: PeerKey, ch: &ChannelName, now: Instant) -> Vec<HubEvent> {
    hub.has_room(ch).expect("room");
    let admission = hub.admit(ch, None).expect("admitted");
    hub.add_viewer(key, ch, admission.rendition);
    hub.viewer_connected(key, REPLAY, now);
    events(hub)
}

/// A viewer that joined and whose keyframe-group replay is over (with nothing cached, its
/// video waits for the next keyframe).
fn join_settled(hub: &mut Hub, key: PeerKey, ch: &ChannelName, now: Instant, out: &mut Recorder) {
    join(hub, key, ch, now);
    hub.handle_timeout(now + REPLAY, out);
    out.take();
    events(hub);
}

const A: Source = Source::Local(LocalId(1));
const B: Source = Source::Peer(PeerKey(2));
const V1: PeerKey = PeerKey(100);
const V2: PeerKey = PeerKey(101);

/// A hub, its counters, a recorder and one channel, at time `t0`.
type Setup = (Hub, Arc<RelayCounters>, Recorder, ChannelName, Instant);

fn setup() -> Setup {
    let (hub, counters) = hub();
    (
        hub,
        counters,
        Recorder::default(),
        channel("st-1"),
        Instant::now(),
    )
}

/// [`setup`] with source `A` live on the channel in session 1.
fn live_setup() -> Setup {
    let (mut hub, counters, mut out, ch, t0) = setup();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    (hub, counters, out, ch, t0)
}

mod feedback;
mod joining;

//! The hub without sockets: plain RTP packets in, a recording [`Deliver`] out, and a clock
//! advanced by hand.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;
use crate::relay::media::packet;
use crate::relay::{h264_codec, opus_codec};

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

/// A [`Deliver`] that records every call; `send` succeeds unless `refuse` is set.
#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<Call>,
    refuse: bool,
}

impl Deliver for Recorder {
    fn send(&mut self, viewer: PeerKey, kind: MediaKind, packet: &rtp::Packet) -> bool {
        self.calls.push(Call::Send {
            viewer,
            kind,
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
        });
        !self.refuse
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

/// A viewer that joined and whose (empty) keyframe-group replay is over, so live video
/// reaches it at once.
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

#[test]
fn go_live_publishes_status_asks_a_keyframe_and_viewers_attend() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();

    assert!(hub.is_free(&ch));
    hub.claim(&ch, A, session(7)).unwrap();
    assert!(!hub.is_free(&ch));
    assert_eq!(hub.source_of(&ch), Some(A));
    assert!(
        matches!(hub.admit(&ch, None), Err(RelayError::NotLive(c)) if c == "st-1"),
        "claimed is not live yet"
    );
    assert!(
        events(&mut hub).is_empty(),
        "claiming alone publishes nothing"
    );

    hub.go_live(&ch, A, tracks(&[]), t0, &mut out);
    let evs = events(&mut hub);
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "{evs:?}");
    let st = st[0].clone().expect("channel exists");
    assert!(st.live);
    assert_eq!(st.session_id, Some(SessionId(7)));
    assert_eq!(st.title, "session 7");
    assert_eq!(st.started_at_ms, 7_000);
    assert_eq!(st.viewers, 0);
    assert_eq!(st.qualities, vec![SOURCE_QUALITY.to_string()]);
    assert_eq!(keyframes_wanted(&evs), vec![A]);
    assert!(out.take().is_empty(), "no viewers, nothing delivered");

    // Going live twice does nothing more.
    hub.go_live(&ch, A, tracks(&[]), t0 + PLI * 2, &mut out);
    assert!(events(&mut hub).is_empty());

    // Another source cannot take the channel.
    assert!(matches!(hub.claim(&ch, B, session(8)), Err(RelayError::Busy(c)) if c == "st-1"));
    assert_eq!(hub.source_of(&ch), Some(A));

    // A viewer: admitted, added (not yet counted), connected (counted and attending).
    let admission = hub.admit(&ch, None).unwrap();
    assert_eq!(admission.rendition, 0);
    assert_eq!(
        admission.video.as_ref().map(|c| c.mime_type.as_str()),
        Some("video/H264")
    );
    assert_eq!(
        admission.audio.as_ref().map(|c| c.mime_type.as_str()),
        Some("audio/opus")
    );
    hub.add_viewer(V1, &ch, admission.rendition);
    assert_eq!(hub.viewer_channel(V1), Some(&ch));
    assert!(attending(&events(&mut hub)).is_empty(), "not connected yet");
    assert_eq!(hub.status(&ch).unwrap().viewers, 0);

    hub.viewer_connected(V1, REPLAY, t0);
    let evs = events(&mut hub);
    assert_eq!(attending(&evs), vec![(V1, SessionId(7))]);
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "{evs:?}");
    assert_eq!(st[0].as_ref().map(|s| s.viewers), Some(1));
    assert_eq!(hub.poll_timeout(), Some(t0 + REPLAY));

    // Connecting twice does not count or attend twice.
    hub.viewer_connected(V1, REPLAY, t0);
    assert!(events(&mut hub).is_empty());
    assert_eq!(hub.status(&ch).unwrap().viewers, 1);
}

#[test]
fn admit_refuses_channels_not_live_and_unknown_qualities() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();

    assert!(matches!(
        hub.admit(&channel("nobody"), None),
        Err(RelayError::NotLive(c)) if c == "nobody"
    ));

    hub.claim(&ch, A, session(1)).unwrap();
    hub.go_live(&ch, A, tracks(&["720p", "360p"]), t0, &mut out);
    assert_eq!(
        hub.status(&ch).unwrap().qualities,
        vec!["source", "720p", "360p"]
    );
    assert_eq!(hub.admit(&ch, None).unwrap().rendition, 0);
    assert_eq!(hub.admit(&ch, Some("")).unwrap().rendition, 0);
    assert_eq!(hub.admit(&ch, Some("source")).unwrap().rendition, 0);
    assert_eq!(hub.admit(&ch, Some("360p")).unwrap().rendition, 2);
    match hub.admit(&ch, Some("1080p")) {
        Err(RelayError::UnknownQuality {
            channel,
            asked,
            offered,
        }) => {
            assert_eq!(channel, "st-1");
            assert_eq!(asked, "1080p");
            assert_eq!(offered, vec!["source", "720p", "360p"]);
        }
        other => panic!("expected UnknownQuality, got {other:?}"),
    }

    // Once the source leaves, the channel is not live again.
    hub.release(&ch, A, &mut out);
    assert!(matches!(hub.admit(&ch, None), Err(RelayError::NotLive(_))));
}

#[test]
fn has_room_is_full_at_the_cap() {
    let counters = Arc::new(RelayCounters::default());
    let mut hub = Hub::new(config(2), counters);
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);

    assert!(hub.has_room(&ch).is_ok());
    join(&mut hub, V1, &ch, t0);
    assert!(hub.has_room(&ch).is_ok());
    // Admitted but not yet connected viewers hold a place too.
    hub.add_viewer(V2, &ch, 0);
    assert!(matches!(
        hub.has_room(&ch),
        Err(RelayError::Full(c, 2)) if c == "st-1"
    ));
    hub.remove_viewer(V2);
    assert!(hub.has_room(&ch).is_ok());
}

#[test]
fn late_joiner_gets_the_keyframe_group_when_its_replay_is_due() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);

    // Before the keyframe; then the keyframe (SPS and IDR of one picture) and more.
    let before = [
        video(VIDEO_SSRC, 1, 0, SLICE),
        video(VIDEO_SSRC, 2, 3_000, SLICE),
    ];
    hub.fan_out(&ch, A, 0, &before, &mut out);
    let group = [
        video(VIDEO_SSRC, 3, 6_000, SPS),
        video(VIDEO_SSRC, 4, 6_000, IDR),
        video(VIDEO_SSRC, 5, 9_000, SLICE),
        audio(AUDIO_SSRC, 1),
        video(VIDEO_SSRC, 6, 12_000, SLICE),
    ];
    hub.fan_out(&ch, A, 0, &group, &mut out);
    assert!(out.take().is_empty(), "nobody watching yet");
    assert_eq!(get(&counters.packets_in), 7);
    assert_eq!(get(&counters.packets_out), 0);

    let t1 = t0 + Duration::from_secs(1);
    join(&mut hub, V1, &ch, t1);
    assert_eq!(hub.poll_timeout(), Some(t1 + REPLAY));

    // Live video waits for the replay (it is cached meanwhile); audio goes at once.
    hub.fan_out(
        &ch,
        A,
        0,
        &[video(VIDEO_SSRC, 7, 15_000, SLICE), audio(AUDIO_SSRC, 2)],
        &mut out,
    );
    assert_eq!(
        out.take(),
        vec![
            Call::Send {
                viewer: V1,
                kind: MediaKind::Audio,
                ssrc: AUDIO_SSRC,
                seq: 2
            },
            Call::Done { viewer: V1 },
        ]
    );

    // Not due yet.
    hub.handle_timeout(t1 + REPLAY - Duration::from_millis(1), &mut out);
    assert!(out.take().is_empty());
    assert_eq!(hub.poll_timeout(), Some(t1 + REPLAY));

    // Due: exactly the group from the keyframe on, in order, video only.
    let out_before = get(&counters.packets_out);
    hub.handle_timeout(t1 + REPLAY, &mut out);
    let calls = out.take();
    assert_eq!(
        sent_to(&calls, V1),
        [3u16, 4, 5, 6, 7]
            .map(|seq| (MediaKind::Video, VIDEO_SSRC, seq))
            .to_vec()
    );
    assert_eq!(calls.last(), Some(&Call::Done { viewer: V1 }));
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Resync { .. })),
        "{calls:?}"
    );
    assert_eq!(get(&counters.packets_out), out_before + 5);
    assert_eq!(hub.poll_timeout(), None);

    // Then live packets flow, video and audio.
    hub.fan_out(
        &ch,
        A,
        0,
        &[video(VIDEO_SSRC, 8, 18_000, SLICE), audio(AUDIO_SSRC, 3)],
        &mut out,
    );
    assert_eq!(
        out.take_sent(V1),
        vec![
            (MediaKind::Video, VIDEO_SSRC, 8),
            (MediaKind::Audio, AUDIO_SSRC, 3)
        ]
    );
    // The replay once done is not repeated.
    hub.handle_timeout(t1 + REPLAY * 10, &mut out);
    assert!(out.take().is_empty());
}

#[test]
fn vp8_late_joiner_gets_the_group_from_the_vp8_keyframe() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    let mut vp8 = h264_codec();
    vp8.mime_type = "video/VP8".into();
    hub.claim(&ch, A, session(1)).unwrap();
    hub.go_live(
        &ch,
        A,
        LiveTracks {
            video: Some(vp8),
            ..tracks(&[])
        },
        t0,
        &mut out,
    );
    // VP8 descriptor S=1, partition 0; payload header P bit 0 on a key frame, 1 otherwise.
    let vp8_packet = |seq: u16, ts: u32, payload: &'static [u8]| {
        (
            MediaKind::Video,
            packet(96, VIDEO_SSRC, seq, ts, true, Bytes::from_static(payload)),
        )
    };
    let batch = [
        vp8_packet(1, 0, &[0x10, 0x01]),
        vp8_packet(2, 3_000, &[0x10, 0x00]),
        vp8_packet(3, 3_000, &[0x00, 0x55]),
        vp8_packet(4, 6_000, &[0x10, 0x01]),
    ];
    hub.fan_out(&ch, A, 0, &batch, &mut out);
    join(&mut hub, V1, &ch, t0);
    hub.handle_timeout(t0 + REPLAY, &mut out);
    assert_eq!(
        out.take_sent(V1),
        [2u16, 3, 4]
            .map(|seq| (MediaKind::Video, VIDEO_SSRC, seq))
            .to_vec()
    );
}

#[test]
fn replay_counts_only_packets_that_went() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    hub.fan_out(
        &ch,
        A,
        0,
        &[
            video(VIDEO_SSRC, 1, 0, IDR),
            video(VIDEO_SSRC, 2, 3_000, SLICE),
        ],
        &mut out,
    );
    join(&mut hub, V1, &ch, t0);
    out.refuse = true;
    hub.handle_timeout(t0 + REPLAY, &mut out);
    assert_eq!(out.take_sent(V1).len(), 2, "the replay was tried");
    assert_eq!(
        get(&counters.packets_out),
        0,
        "packets_out counts what the caller sent (as fan_out does), not what it refused"
    );
}

#[test]
fn replay_with_nothing_cached_asks_for_a_keyframe() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, SLICE)], &mut out);

    let t1 = t0 + PLI * 2;
    join(&mut hub, V1, &ch, t1);
    hub.handle_timeout(t1 + REPLAY, &mut out);
    assert!(out.take_sent(V1).is_empty(), "no keyframe group to replay");
    assert_eq!(keyframes_wanted(&events(&mut hub)), vec![A]);
}

#[test]
fn removed_viewer_gets_no_replay() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, IDR)], &mut out);
    join(&mut hub, V1, &ch, t0);
    hub.remove_viewer(V1);
    hub.handle_timeout(t0 + REPLAY, &mut out);
    assert!(out.take().is_empty());
    assert_eq!(hub.poll_timeout(), None);
}

#[test]
fn publisher_swap_keeps_viewers() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, IDR)], &mut out);
    assert_eq!(out.take_sent(V1), vec![(MediaKind::Video, VIDEO_SSRC, 1)]);

    // A leaves: its session ends, the viewer stops attending but stays, its streams break.
    hub.release(&ch, A, &mut out);
    let evs = events(&mut hub);
    assert!(
        matches!(evs.first(), Some(HubEvent::SessionEnded { session, .. }) if *session == SessionId(1)),
        "{evs:?}"
    );
    assert_eq!(not_attending(&evs), vec![V1]);
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "the channel stays while watched: {evs:?}");
    let st = st[0].clone().expect("channel still there");
    assert!(!st.live);
    assert_eq!(st.session_id, None);
    assert_eq!(st.viewers, 1);
    assert_eq!(
        out.take(),
        vec![Call::Resync {
            viewer: V1,
            kind: None
        }]
    );
    assert_eq!(hub.viewer_channel(V1), Some(&ch));
    assert!(hub.is_free(&ch));
    assert_eq!(hub.source_of(&ch), None);
    // The old source's packets no longer count or go anywhere.
    let in_before = get(&counters.packets_in);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 2, 3_000, SLICE)], &mut out);
    assert!(out.take().is_empty());
    // B's packets before it is live neither.
    hub.claim(&ch, B, session(2)).unwrap();
    hub.fan_out(&ch, B, 0, &[video(0x3333, 1, 0, IDR)], &mut out);
    assert!(out.take().is_empty());
    assert_eq!(get(&counters.packets_in), in_before);
    assert!(events(&mut hub).is_empty());

    // B goes live: the same viewer attends the new session and gets B's packets.
    let t1 = t0 + Duration::from_secs(5);
    hub.go_live(&ch, B, tracks(&[]), t1, &mut out);
    let evs = events(&mut hub);
    assert_eq!(attending(&evs), vec![(V1, SessionId(2))]);
    assert_eq!(keyframes_wanted(&evs), vec![B]);
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "{evs:?}");
    let st = st[0].clone().unwrap();
    assert!(st.live);
    assert_eq!(st.session_id, Some(SessionId(2)));
    assert_eq!(st.viewers, 1);

    hub.fan_out(
        &ch,
        B,
        0,
        &[
            video(0x3333, 500, 90_000, IDR),
            audio(0x4444, 9),
            video(0x3333, 501, 93_000, SLICE),
        ],
        &mut out,
    );
    assert_eq!(
        out.take_sent(V1),
        vec![
            (MediaKind::Video, 0x3333, 500),
            (MediaKind::Audio, 0x4444, 9),
            (MediaKind::Video, 0x3333, 501),
        ]
    );

    // A, still sending after it was released, is dropped.
    let in_before = get(&counters.packets_in);
    hub.fan_out(
        &ch,
        A,
        0,
        &[video(VIDEO_SSRC, 3, 6_000, IDR), audio(AUDIO_SSRC, 3)],
        &mut out,
    );
    assert!(out.take().is_empty());
    assert_eq!(get(&counters.packets_in), in_before);
    // And cannot end B's session.
    hub.release(&ch, A, &mut out);
    assert!(events(&mut hub).is_empty());
    assert_eq!(hub.source_of(&ch), Some(B));
    // Nor answer NACKs with its packets: B's buffer holds only B's.
    assert_eq!(hub.retransmit(V1, [(VIDEO_SSRC, 1)], &mut out), 0);
    assert_eq!(hub.retransmit(V1, [(0x3333, 500)], &mut out), 1);
}

#[test]
fn publisher_swap_moves_viewers_of_a_missing_rendition_to_the_source() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    hub.claim(&ch, A, session(1)).unwrap();
    hub.go_live(&ch, A, tracks(&["360p"]), t0, &mut out);
    let admission = hub.admit(&ch, Some("360p")).unwrap();
    assert_eq!(admission.rendition, 1);
    hub.add_viewer(V1, &ch, admission.rendition);
    hub.viewer_connected(V1, Duration::ZERO, t0);
    hub.handle_timeout(t0, &mut out);
    hub.release(&ch, A, &mut out);
    out.take();

    // B sends no renditions: the viewer falls back to the source video.
    hub.claim(&ch, B, session(2)).unwrap();
    hub.go_live(&ch, B, tracks(&[]), t0, &mut out);
    assert_eq!(
        out.take(),
        vec![Call::Resync {
            viewer: V1,
            kind: Some(MediaKind::Video)
        }]
    );
    hub.fan_out(&ch, B, 0, &[video(0x3333, 1, 0, IDR)], &mut out);
    assert_eq!(out.take_sent(V1), vec![(MediaKind::Video, 0x3333, 1)]);
}

#[test]
fn keyframe_requests_are_throttled() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    let evs = live(&mut hub, &ch, A, 1, t0, &mut out);
    assert_eq!(keyframes_wanted(&evs), vec![A], "going live asks once");

    hub.request_keyframe(&ch, t0 + Duration::from_millis(10));
    hub.request_keyframe(&ch, t0 + PLI - Duration::from_millis(1));
    assert!(keyframes_wanted(&events(&mut hub)).is_empty());

    let t1 = t0 + PLI;
    hub.request_keyframe(&ch, t1);
    hub.request_keyframe(&ch, t1 + Duration::from_millis(1));
    let evs = events(&mut hub);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert!(matches!(
        &evs[0],
        HubEvent::KeyframeWanted { channel, source } if *channel == ch && *source == A
    ));

    hub.request_keyframe(&ch, t1 + PLI * 3);
    assert_eq!(keyframes_wanted(&events(&mut hub)), vec![A]);

    // Channels are throttled apart; a channel without a source is not asked.
    let other = channel("st-2");
    live(&mut hub, &other, B, 2, t1 + PLI * 3, &mut out);
    hub.request_keyframe(&channel("nobody"), t1 + PLI * 10);
    assert!(events(&mut hub).is_empty());
}

#[test]
fn a_new_source_is_asked_at_once_whatever_the_old_one_was_asked() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    hub.release(&ch, A, &mut out);
    let evs = live(&mut hub, &ch, B, 2, t0 + Duration::from_millis(1), &mut out);
    assert_eq!(keyframes_wanted(&evs), vec![B]);
}

#[test]
fn lossy_viewer_skips_video_to_the_next_keyframe() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    join_settled(&mut hub, V2, &ch, t0, &mut out);

    // A healthy report changes nothing.
    let t1 = t0 + PLI * 2;
    assert!(hub.viewer_loss(V1, ViewerHealth::LOSSY - 1, t1));
    assert_eq!(get(&counters.viewers_skipped), 0);
    assert!(events(&mut hub).is_empty());

    // A lossy one: V1 skips to the next keyframe, which is asked for.
    assert!(hub.viewer_loss(V1, ViewerHealth::LOSSY + 10, t1));
    assert_eq!(get(&counters.viewers_skipped), 1);
    assert_eq!(keyframes_wanted(&events(&mut hub)), vec![A]);

    // Its video stops, audio continues; V2 gets everything.
    hub.fan_out(
        &ch,
        A,
        0,
        &[video(VIDEO_SSRC, 10, 0, SLICE), audio(AUDIO_SSRC, 1)],
        &mut out,
    );
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 11, 3_000, SLICE)], &mut out);
    let calls = out.take();
    assert_eq!(sent_to(&calls, V1), vec![(MediaKind::Audio, AUDIO_SSRC, 1)]);
    assert_eq!(
        sent_to(&calls, V2),
        vec![
            (MediaKind::Video, VIDEO_SSRC, 10),
            (MediaKind::Audio, AUDIO_SSRC, 1),
            (MediaKind::Video, VIDEO_SSRC, 11),
        ]
    );
    assert!(!calls.iter().any(|c| matches!(c, Call::Resync { .. })));

    // The keyframe: V1's video resyncs and resumes with it.
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 12, 6_000, IDR)], &mut out);
    let calls = out.take();
    let v1: Vec<&Call> = calls
        .iter()
        .filter(|c| match c {
            Call::Send { viewer, .. } | Call::Resync { viewer, .. } | Call::Done { viewer } => {
                *viewer == V1
            }
        })
        .collect();
    assert_eq!(
        v1,
        vec![
            &Call::Resync {
                viewer: V1,
                kind: Some(MediaKind::Video)
            },
            &Call::Send {
                viewer: V1,
                kind: MediaKind::Video,
                ssrc: VIDEO_SSRC,
                seq: 12
            },
            &Call::Done { viewer: V1 },
        ]
    );
    assert_eq!(
        sent_to(&calls, V2),
        vec![(MediaKind::Video, VIDEO_SSRC, 12)]
    );
    assert!(!calls.contains(&Call::Resync {
        viewer: V2,
        kind: Some(MediaKind::Video)
    }));

    // Then its video flows again.
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 13, 9_000, SLICE)], &mut out);
    assert_eq!(out.take_sent(V1), vec![(MediaKind::Video, VIDEO_SSRC, 13)]);

    // A second lossy report within the skip interval does not skip again.
    assert!(hub.viewer_loss(V1, 200, t1 + Duration::from_millis(100)));
    assert_eq!(get(&counters.viewers_skipped), 1);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 14, 12_000, SLICE)], &mut out);
    assert_eq!(out.take_sent(V1), vec![(MediaKind::Video, VIDEO_SSRC, 14)]);
}

/// A WHIP publisher's packets reach the hub in batches: the keyframe a skipping viewer waits
/// for may come after other video packets of the same batch.
#[test]
fn lossy_viewer_resumes_at_a_keyframe_later_in_the_same_batch() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    assert!(hub.viewer_loss(V1, 200, t0 + PLI));

    hub.fan_out(
        &ch,
        A,
        0,
        &[
            video(VIDEO_SSRC, 20, 0, SLICE),
            video(VIDEO_SSRC, 21, 3_000, IDR),
            video(VIDEO_SSRC, 22, 6_000, SLICE),
        ],
        &mut out,
    );
    assert_eq!(
        out.take(),
        vec![
            Call::Resync {
                viewer: V1,
                kind: Some(MediaKind::Video)
            },
            Call::Send {
                viewer: V1,
                kind: MediaKind::Video,
                ssrc: VIDEO_SSRC,
                seq: 21
            },
            Call::Send {
                viewer: V1,
                kind: MediaKind::Video,
                ssrc: VIDEO_SSRC,
                seq: 22
            },
            Call::Done { viewer: V1 },
        ],
        "the keyframe and what follows it must reach the viewer"
    );
}

#[test]
fn viewer_lossy_for_too_long_is_dropped() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);

    let t1 = t0 + Duration::from_secs(1);
    assert!(hub.viewer_loss(V1, 200, t1));
    assert!(hub.viewer_loss(
        V1,
        200,
        t1 + ViewerHealth::DROP_AFTER - Duration::from_millis(1)
    ));
    events(&mut hub);
    assert_eq!(get(&counters.viewers_dropped), 0);

    assert!(!hub.viewer_loss(V1, 200, t1 + ViewerHealth::DROP_AFTER));
    let evs = events(&mut hub);
    assert!(
        matches!(evs.as_slice(), [HubEvent::DropViewer { viewer }] if *viewer == V1),
        "{evs:?}"
    );
    assert_eq!(get(&counters.viewers_dropped), 1);

    // A recovered viewer's clock starts over.
    join_settled(&mut hub, V2, &ch, t0, &mut out);
    assert!(hub.viewer_loss(V2, 200, t1));
    assert!(hub.viewer_loss(V2, 0, t1 + Duration::from_secs(10)));
    assert!(hub.viewer_loss(V2, 200, t1 + Duration::from_secs(11)));
    assert!(hub.viewer_loss(V2, 200, t1 + ViewerHealth::DROP_AFTER));
    assert!(
        !events(&mut hub)
            .iter()
            .any(|e| matches!(e, HubEvent::DropViewer { .. }))
    );

    // Unknown viewers are not dropped by the hub.
    assert!(hub.viewer_loss(PeerKey(999), 255, t1));
}

/// How many consecutive packets a default [`RetransmitBuffer`] (the hub's) holds, found by
/// filling one.
fn default_retransmit_capacity() -> usize {
    let mut buf = RetransmitBuffer::default();
    let p = packet(96, VIDEO_SSRC, 0, 0, false, Bytes::from_static(&[SLICE]));
    for seq in 0..=u16::MAX {
        let mut p = p.clone();
        p.header.sequence_number = seq;
        buf.push(&p);
    }
    (0..=u16::MAX)
        .filter(|&seq| buf.get(VIDEO_SSRC, seq).is_some())
        .count()
}

#[test]
fn nack_is_answered_only_for_packets_still_held() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);

    // The buffer holds the most recent `held` packets.
    let held = default_retransmit_capacity();
    assert!(
        (300..1000).contains(&held),
        "the sequence numbers below assume so: {held}"
    );
    let last = (held + 88) as u16; // seqs 0..=last sent: 0..=88 pushed out
    let packets: Vec<_> = (0..=last)
        .map(|seq| video(VIDEO_SSRC, seq, u32::from(seq) * 3_000, SLICE))
        .collect();
    hub.fan_out(&ch, A, 0, &packets, &mut out);
    hub.fan_out(&ch, A, 0, &[audio(AUDIO_SSRC, 7)], &mut out);
    out.take();

    let wanted = [
        (VIDEO_SSRC, last),     // held
        (VIDEO_SSRC, 300),      // held
        (VIDEO_SSRC, 89),       // oldest held
        (VIDEO_SSRC, 88),       // pushed out
        (VIDEO_SSRC, 10),       // pushed out
        (VIDEO_SSRC, last + 5), // never sent
        (0x9999, last),         // another stream
        (AUDIO_SSRC, 7),        // audio is not kept
    ];
    assert_eq!(hub.retransmit(V1, wanted, &mut out), 3);
    assert_eq!(
        out.take(),
        [last, 300, 89]
            .map(|seq| Call::Send {
                viewer: V1,
                kind: MediaKind::Video,
                ssrc: VIDEO_SSRC,
                seq
            })
            .to_vec()
    );
    assert_eq!(get(&counters.retransmissions), 3);

    // What the caller could not send is not counted.
    out.refuse = true;
    assert_eq!(hub.retransmit(V1, [(VIDEO_SSRC, last)], &mut out), 0);
    assert_eq!(get(&counters.retransmissions), 3);
    out.refuse = false;

    // Unknown viewers get nothing.
    assert_eq!(
        hub.retransmit(PeerKey(999), [(VIDEO_SSRC, last)], &mut out),
        0
    );

    // Once the source leaves, nothing is held.
    out.take();
    hub.release(&ch, A, &mut out);
    out.take();
    assert_eq!(hub.retransmit(V1, [(VIDEO_SSRC, last)], &mut out), 0);
    assert!(out.take().is_empty());
    assert_eq!(get(&counters.retransmissions), 3);
}

#[test]
fn nack_is_answered_from_the_viewers_rendition() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    hub.claim(&ch, A, session(1)).unwrap();
    hub.go_live(&ch, A, tracks(&["360p"]), t0, &mut out);
    hub.add_viewer(V1, &ch, 0);
    hub.add_viewer(V2, &ch, 1);
    hub.viewer_connected(V1, Duration::ZERO, t0);
    hub.viewer_connected(V2, Duration::ZERO, t0);
    hub.handle_timeout(t0, &mut out);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, IDR)], &mut out);
    hub.fan_out(&ch, A, 1, &[video(0x5555, 1, 0, IDR)], &mut out);
    let calls = out.take();
    assert_eq!(sent_to(&calls, V1), vec![(MediaKind::Video, VIDEO_SSRC, 1)]);
    assert_eq!(sent_to(&calls, V2), vec![(MediaKind::Video, 0x5555, 1)]);

    assert_eq!(
        hub.retransmit(V1, [(VIDEO_SSRC, 1), (0x5555, 1)], &mut out),
        1
    );
    assert_eq!(
        hub.retransmit(V2, [(VIDEO_SSRC, 1), (0x5555, 1)], &mut out),
        1
    );
    let calls = out.take();
    assert_eq!(sent_to(&calls, V1), vec![(MediaKind::Video, VIDEO_SSRC, 1)]);
    assert_eq!(sent_to(&calls, V2), vec![(MediaKind::Video, 0x5555, 1)]);
}

#[test]
fn fan_out_counts_packets_in_and_out() {
    let (mut hub, counters) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    join_settled(&mut hub, V2, &ch, t0, &mut out);
    // Admitted but not connected: gets nothing.
    hub.add_viewer(PeerKey(102), &ch, 0);

    let batch = [
        video(VIDEO_SSRC, 1, 0, IDR),
        audio(AUDIO_SSRC, 1),
        video(VIDEO_SSRC, 2, 3_000, SLICE),
    ];
    hub.fan_out(&ch, A, 0, &batch, &mut out);
    let calls = out.take();
    assert_eq!(sent_to(&calls, V1).len(), 3);
    assert_eq!(sent_to(&calls, V2).len(), 3);
    assert!(sent_to(&calls, PeerKey(102)).is_empty());
    assert!(!calls.contains(&Call::Done {
        viewer: PeerKey(102)
    }));
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Done { .. }))
            .count(),
        2
    );
    assert_eq!(get(&counters.packets_in), 3);
    assert_eq!(get(&counters.packets_out), 6);

    // Sends the caller refuses are not counted out.
    out.refuse = true;
    hub.fan_out(&ch, A, 0, &batch, &mut out);
    assert_eq!(get(&counters.packets_in), 6);
    assert_eq!(get(&counters.packets_out), 6);

    // Packets for a channel nobody holds are dropped uncounted.
    hub.fan_out(&channel("st-9"), A, 0, &batch, &mut out);
    assert_eq!(get(&counters.packets_in), 6);
}

#[test]
fn removing_the_last_viewer_of_a_sourceless_channel_removes_it() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    join_settled(&mut hub, V2, &ch, t0, &mut out);
    hub.release(&ch, A, &mut out);
    events(&mut hub);

    // One viewer left: the channel stays.
    hub.remove_viewer(V1);
    let evs = events(&mut hub);
    assert_eq!(
        not_attending(&evs),
        Vec::<PeerKey>::new(),
        "already not attending"
    );
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "{evs:?}");
    assert_eq!(
        st[0].as_ref().map(|s| (s.live, s.viewers)),
        Some((false, 1))
    );
    assert!(hub.status(&ch).is_some());

    // The last one: the channel is gone.
    hub.remove_viewer(V2);
    let evs = events(&mut hub);
    let st = statuses(&evs, &ch);
    assert!(matches!(st.last(), Some(None)), "{evs:?}");
    assert!(hub.status(&ch).is_none());
    assert_eq!(hub.viewer_channel(V2), None);
    // Removing again is harmless.
    hub.remove_viewer(V2);
    assert!(events(&mut hub).is_empty());
}

#[test]
fn removing_an_attending_viewer_ends_its_attendance() {
    let (mut hub, _) = hub();
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join_settled(&mut hub, V1, &ch, t0, &mut out);

    hub.remove_viewer(V1);
    let evs = events(&mut hub);
    assert_eq!(not_attending(&evs), vec![V1]);
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "the live channel stays: {evs:?}");
    assert_eq!(st[0].as_ref().map(|s| (s.live, s.viewers)), Some((true, 0)));

    // The source leaving a channel nobody watches removes it.
    hub.release(&ch, A, &mut out);
    let evs = events(&mut hub);
    assert!(matches!(statuses(&evs, &ch).last(), Some(None)), "{evs:?}");
    assert!(hub.status(&ch).is_none());
    assert!(hub.is_free(&ch));
}

//! Going live, joining late on a keyframe, and a publisher swap.

use super::*;
use std::net::IpAddr;

#[test]
fn go_live_publishes_status_asks_a_keyframe_and_viewers_attend() {
    let (mut hub, _, mut out, ch, t0) = setup();

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
    assert!(attending(&evs).is_empty(), "connected, but no media yet");
    let st = statuses(&evs, &ch);
    assert_eq!(st.len(), 1, "{evs:?}");
    assert_eq!(st[0].as_ref().map(|s| s.viewers), Some(1));
    assert_eq!(hub.poll_timeout(), Some(t0 + REPLAY));

    // Connecting twice does not count twice.
    hub.viewer_connected(V1, REPLAY, t0);
    assert!(events(&mut hub).is_empty());
    assert_eq!(hub.status(&ch).unwrap().viewers, 1);

    // Its first packet (audio goes at once, video waits for the replay) makes it attend,
    // once.
    hub.fan_out(&ch, A, 0, &[audio(AUDIO_SSRC, 1)], &mut out);
    assert_eq!(attending(&events(&mut hub)), vec![(V1, SessionId(7))]);
    hub.fan_out(&ch, A, 0, &[audio(AUDIO_SSRC, 2)], &mut out);
    assert!(attending(&events(&mut hub)).is_empty());
}

#[test]
fn a_viewer_that_never_gets_media_never_attends() {
    let (mut hub, _, mut out, ch, t0) = live_setup();
    join(&mut hub, V1, &ch, t0);
    // Nothing cached: the replay sends nothing (and asks the source for a keyframe).
    hub.handle_timeout(t0 + REPLAY, &mut out);
    assert!(out.take().is_empty());
    let evs = events(&mut hub);
    assert!(attending(&evs).is_empty(), "{evs:?}");
    assert_eq!(hub.status(&ch).unwrap().viewers, 1);

    hub.remove_viewer(V1);
    let evs = events(&mut hub);
    assert!(
        attending(&evs).is_empty() && not_attending(&evs).is_empty(),
        "{evs:?}"
    );
}

#[test]
fn only_a_packet_that_went_opens_attendance() {
    let (mut hub, _, mut out, ch, t0) = live_setup();
    // A viewer whose answer took video only: its output refuses audio.
    out.refuse_kind = Some(MediaKind::Audio);
    join(&mut hub, V1, &ch, t0);
    hub.fan_out(&ch, A, 0, &[audio(AUDIO_SSRC, 1)], &mut out);
    assert!(attending(&events(&mut hub)).is_empty());
    // Video before the replay is due waits; the replay of the keyframe group goes.
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, IDR)], &mut out);
    assert!(attending(&events(&mut hub)).is_empty());
    hub.handle_timeout(t0 + REPLAY, &mut out);
    assert_eq!(
        out.take_sent(V1).len(),
        2,
        "one audio refused, one video replayed"
    );
    assert_eq!(attending(&events(&mut hub)), vec![(V1, SessionId(1))]);
}

#[test]
fn admit_refuses_channels_not_live_and_unknown_qualities() {
    let (mut hub, _, mut out, ch, t0) = setup();

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
fn viewers_still_connecting_are_capped_per_channel_and_per_client() {
    let counters = Arc::new(RelayCounters::default());
    let mut hub = Hub::new(
        HubConfig {
            max_unconnected_per_channel: 3,
            max_unconnected_per_client: 2,
            ..config(10)
        },
        counters,
    );
    let mut out = Recorder::default();
    let (ch, other) = (channel("st-1"), channel("st-2"));
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    live(&mut hub, &other, Source::Local(LocalId(9)), 2, t0, &mut out);
    let (x, y, z): (IpAddr, IpAddr, IpAddr) = (
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        "10.0.0.3".parse().unwrap(),
    );

    // Two from x, on two channels: x is at its cap on both.
    hub.add_viewer_from(PeerKey(11), &ch, 0, Some(x));
    hub.add_viewer_from(PeerKey(12), &other, 0, Some(x));
    assert!(matches!(
        hub.has_room_for(&ch, Some(x)),
        Err(RelayError::ClientConnecting(2))
    ));
    assert!(hub.has_room_for(&ch, Some(y)).is_ok());
    // Two more on st-1 from y: st-1 has three connecting, its cap, for everyone.
    hub.add_viewer_from(PeerKey(13), &ch, 0, Some(y));
    hub.add_viewer_from(PeerKey(14), &ch, 0, Some(y));
    assert!(matches!(
        hub.has_room_for(&ch, Some(z)),
        Err(RelayError::Connecting(c)) if c == "st-1"
    ));
    assert!(hub.has_room_for(&other, Some(z)).is_ok());
    // One connects: its places come back (it still counts towards the channel's viewers).
    hub.viewer_connected(PeerKey(11), REPLAY, t0);
    assert!(hub.has_room_for(&ch, Some(z)).is_ok());
    assert!(hub.has_room_for(&ch, Some(x)).is_ok());
    // One never connects and is let go: its places come back too.
    hub.remove_viewer(PeerKey(13));
    hub.remove_viewer(PeerKey(14));
    assert!(hub.has_room_for(&ch, Some(y)).is_ok());
    // Only addresses with a viewer connecting are remembered.
    assert_eq!(hub.seats.addresses(), 1);
    hub.remove_viewer(PeerKey(12));
    hub.remove_viewer(PeerKey(11));
    assert_eq!(hub.seats.addresses(), 0);
}

#[test]
fn a_signed_edge_pull_joins_a_full_channel_and_takes_no_place() {
    let counters = Arc::new(RelayCounters::default());
    let mut hub = Hub::new(config(1), counters);
    let mut out = Recorder::default();
    let ch = channel("st-1");
    let t0 = Instant::now();
    live(&mut hub, &ch, A, 1, t0, &mut out);
    join(&mut hub, V1, &ch, t0);
    let viewer = Seat::from(Some("10.0.0.1".parse().unwrap()));
    assert!(matches!(
        hub.join_viewer(V2, &ch, 0, viewer, true),
        Err(RelayError::Full(_, 1))
    ));
    let pull = Seat {
        client: None,
        exempt: true,
    };
    hub.has_room_for_seat(&ch, pull).expect("a pull has room");
    hub.join_viewer(V2, &ch, 0, pull, true)
        .expect("a pull joins the full channel");
    assert!(
        hub.connecting_viewers(&ch).is_empty(),
        "a pull's place is never given up to a newcomer"
    );
    hub.viewer_connected(V2, REPLAY, t0);
    assert_eq!(hub.status(&ch).map(|s| s.viewers), Some(2));
    // It held no place: the viewer's leaving frees the channel's only one.
    hub.remove_viewer(V1);
    hub.has_room(&ch).expect("room once the viewer left");
    hub.remove_viewer(V2);
    assert_eq!(hub.seats().counts(&ch), (0, 0));
}

#[test]
fn late_joiner_gets_the_keyframe_group_when_its_replay_is_due() {
    let (mut hub, counters, mut out, ch, t0) = live_setup();

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
    let (mut hub, _, mut out, ch, t0) = setup();
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
    let (mut hub, counters, mut out, ch, t0) = live_setup();
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
    let (mut hub, _, mut out, ch, t0) = live_setup();
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, SLICE)], &mut out);

    let t1 = t0 + PLI * 2;
    join(&mut hub, V1, &ch, t1);
    hub.handle_timeout(t1 + REPLAY, &mut out);
    assert!(out.take_sent(V1).is_empty(), "no keyframe group to replay");
    assert_eq!(keyframes_wanted(&events(&mut hub)), vec![A]);

    // Live video waits for that keyframe (a picture mid-group would not decode); audio goes.
    hub.fan_out(
        &ch,
        A,
        0,
        &[video(VIDEO_SSRC, 2, 3_000, SLICE), audio(AUDIO_SSRC, 1)],
        &mut out,
    );
    assert_eq!(
        out.take_sent(V1),
        vec![(MediaKind::Audio, AUDIO_SSRC, 1)],
        "no video before the keyframe"
    );
    hub.fan_out(
        &ch,
        A,
        0,
        &[
            video(VIDEO_SSRC, 3, 6_000, SPS),
            video(VIDEO_SSRC, 4, 6_000, IDR),
        ],
        &mut out,
    );
    assert_eq!(
        out.take_sent(V1),
        vec![
            (MediaKind::Video, VIDEO_SSRC, 3),
            (MediaKind::Video, VIDEO_SSRC, 4)
        ],
        "video starts on the keyframe"
    );
}

#[test]
fn removed_viewer_gets_no_replay() {
    let (mut hub, _, mut out, ch, t0) = live_setup();
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, IDR)], &mut out);
    join(&mut hub, V1, &ch, t0);
    hub.remove_viewer(V1);
    hub.handle_timeout(t0 + REPLAY, &mut out);
    assert!(out.take().is_empty());
    assert_eq!(hub.poll_timeout(), None);
}

#[test]
fn publisher_swap_keeps_viewers() {
    let (mut hub, counters, mut out, ch, t0) = live_setup();
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 1, 0, IDR)], &mut out);
    assert_eq!(out.take_sent(V1), vec![(MediaKind::Video, VIDEO_SSRC, 1)]);
    assert_eq!(attending(&events(&mut hub)), vec![(V1, SessionId(1))]);

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
    assert!(attending(&evs).is_empty(), "attends from B's first packet");
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
    assert_eq!(attending(&events(&mut hub)), vec![(V1, SessionId(2))]);

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
    assert_eq!(hub.retransmit(V1, [(VIDEO_SSRC, 1)], t0, &mut out), 0);
    assert_eq!(hub.retransmit(V1, [(0x3333, 500)], t0, &mut out), 1);
}

#[test]
fn publisher_swap_moves_viewers_of_a_missing_rendition_to_the_source() {
    let (mut hub, _, mut out, ch, t0) = setup();
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
fn a_paused_rendition_keeps_no_pictures_for_late_joiners() {
    let (mut hub, _, mut out, ch, t0) = setup();
    hub.claim(&ch, A, session(1)).unwrap();
    hub.go_live(&ch, A, tracks(&["360p"]), t0, &mut out);
    let group = [video(0x5555, 1, 0, SPS), video(0x5555, 2, 0, IDR)];
    hub.fan_out(&ch, A, 1, &group, &mut out);
    // Only the source may pause it, and never its source video.
    hub.pause_stream(&ch, B, 1);
    hub.pause_stream(&ch, A, 0);
    let t1 = t0 + Duration::from_secs(1);
    join(&mut hub, V1, &ch, t1);
    hub.handle_timeout(t1 + REPLAY, &mut out);
    assert!(
        out.take().is_empty(),
        "V1 watches the source: nothing cached there"
    );
    hub.add_viewer(V2, &ch, 1);
    hub.viewer_connected(V2, REPLAY, t1);
    hub.handle_timeout(t1 + REPLAY, &mut out);
    assert_eq!(
        out.take_sent(V2),
        vec![(MediaKind::Video, 0x5555, 1), (MediaKind::Video, 0x5555, 2)],
        "not paused yet: the group is replayed"
    );

    // Paused (the edge stopped pulling it): a viewer joining gets nothing stale, and the
    // next keyframe fed starts it.
    hub.pause_stream(&ch, A, 1);
    let t2 = t1 + Duration::from_secs(10);
    const V3: PeerKey = PeerKey(102);
    hub.add_viewer(V3, &ch, 1);
    hub.viewer_connected(V3, REPLAY, t2);
    hub.handle_timeout(t2 + REPLAY, &mut out);
    assert!(out.take_sent(V3).is_empty(), "nothing stale for V3");
    hub.fan_out(&ch, A, 1, &[video(0x6666, 1, 90_000, IDR)], &mut out);
    assert_eq!(out.take_sent(V3), vec![(MediaKind::Video, 0x6666, 1)]);
}

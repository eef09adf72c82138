//! Keyframe requests, lossy viewers, NACKs, counters and leaving.

use super::*;

#[test]
fn keyframe_requests_are_throttled() {
    let (mut hub, _, mut out, ch, t0) = setup();
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
    let (mut hub, _, mut out, ch, t0) = live_setup();
    hub.release(&ch, A, &mut out);
    let evs = live(&mut hub, &ch, B, 2, t0 + Duration::from_millis(1), &mut out);
    assert_eq!(keyframes_wanted(&evs), vec![B]);
}

#[test]
fn lossy_viewer_skips_video_to_the_next_keyframe() {
    let (mut hub, counters, mut out, ch, t0) = live_setup();
    // Both start on a cached keyframe (with none, video would wait for one).
    hub.fan_out(&ch, A, 0, &[video(VIDEO_SSRC, 9, 0, IDR)], &mut out);
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
    let (mut hub, _, mut out, ch, t0) = live_setup();
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
    let (mut hub, counters, mut out, ch, t0) = live_setup();
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
    let (mut hub, counters, mut out, ch, t0) = live_setup();
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
    assert_eq!(hub.retransmit(V1, wanted, t0, &mut out), 3);
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
    assert_eq!(hub.retransmit(V1, [(VIDEO_SSRC, last)], t0, &mut out), 0);
    assert_eq!(get(&counters.retransmissions), 3);
    out.refuse = false;

    // Unknown viewers get nothing.
    assert_eq!(
        hub.retransmit(PeerKey(999), [(VIDEO_SSRC, last)], t0, &mut out),
        0
    );

    // Once the source leaves, nothing is held.
    out.take();
    hub.release(&ch, A, &mut out);
    out.take();
    assert_eq!(hub.retransmit(V1, [(VIDEO_SSRC, last)], t0, &mut out), 0);
    assert!(out.take().is_empty());
    assert_eq!(get(&counters.retransmissions), 3);
}

#[test]
fn nack_is_answered_from_the_viewers_rendition() {
    let (mut hub, _, mut out, ch, t0) = setup();
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
        hub.retransmit(V1, [(VIDEO_SSRC, 1), (0x5555, 1)], t0, &mut out),
        1
    );
    assert_eq!(
        hub.retransmit(V2, [(VIDEO_SSRC, 1), (0x5555, 1)], t0, &mut out),
        1
    );
    let calls = out.take();
    assert_eq!(sent_to(&calls, V1), vec![(MediaKind::Video, VIDEO_SSRC, 1)]);
    assert_eq!(sent_to(&calls, V2), vec![(MediaKind::Video, 0x5555, 1)]);
}

#[test]
fn fan_out_counts_packets_in_and_out() {
    let (mut hub, counters, mut out, ch, t0) = live_setup();
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
    let (mut hub, _, mut out, ch, t0) = live_setup();
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
    let (mut hub, _, mut out, ch, t0) = live_setup();
    join_settled(&mut hub, V1, &ch, t0, &mut out);
    hub.fan_out(&ch, A, 0, &[audio(AUDIO_SSRC, 1)], &mut out);
    assert_eq!(attending(&events(&mut hub)), vec![(V1, SessionId(1))]);

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

//! The WHIP->transcode path: renditions for channels whose source does not make its own.
//!
//! RTMP, pull and film sources go through the transcoder anyway and send their ladder
//! themselves. A WHIP publisher's RTP goes straight to viewers; when its channel has a
//! ladder (`[ingest] renditions` or the channel's override), this attaches to the hub's
//! access-unit interface ([`SourceHandle::subscribe`]): the publisher's video is decoded
//! once, each rung is encoded with libx264 on the transcoder's `fy-tc-video` thread, and
//! the result is fed back into the same channel and session as further renditions
//! ([`SourceHandle::feed_renditions`]). Viewers pick them with `?quality=` exactly as for
//! RTMP channels; the session, its attendance and its viewer count stay one.
//!
//! The same path makes **codec bridges** on demand: a viewer whose browser cannot take the
//! channel's video codec (a VP8-only browser on an H.264 channel, or H.264-only on a VP8
//! publisher) watches a stream the relay raises a [`BridgeRequest`] for; it is encoded
//! here at the source's size (libvpx realtime for VP8, libx264 for H.264) on a
//! `fy-tc-bridge` thread, shared by every such viewer, and stopped [`BRIDGE_IDLE`] after
//! the last one leaves; with `[ingest] h264_from_vp8 = "always"` a VP8 publisher's H.264
//! runs for its whole session.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{IngestContext, IngestError, forward, transcode_options};
use crate::config::{H264FromVp8, RenditionSpec};
use crate::ids::{ChannelName, SessionId};
use crate::media::{Codec, MediaKind, Track};
use crate::relay::{BridgeRequest, ChannelMedia, LiveNotice, SourceHandle, Subscription};
use crate::transcode::{SourcePacket, TranscodeOptions, Transcoder, VideoInput};

/// How long a codec bridge runs with nobody watching it.
pub(crate) const BRIDGE_IDLE: Duration = Duration::from_secs(10);

/// Starts a ladder for every WHIP session that goes live on a channel with one, until
/// ingest stops.
pub(crate) async fn supervisor(ctx: Arc<IngestContext>, mut stop: watch::Receiver<bool>) {
    let mut notices = ctx.relay.live_notices();
    let mut bridges = ctx.relay.bridge_requests();
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => match notice {
                Ok(notice) => notice,
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "live notices missed; those sessions get no ladder");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
            request = bridges.recv() => {
                match request {
                    Ok(request) => {
                        let elsewhere = ctx
                            .bridged_elsewhere
                            .get()
                            .is_some_and(|skip| skip(request.session));
                        if elsewhere {
                            debug!(channel = %request.channel, session = %request.session, "codec bridge pulled from the origin");
                        } else {
                            tokio::spawn(bridge(ctx.clone(), request, stop.clone()));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        warn!(missed, "codec bridge requests missed; those viewers get no video");
                    }
                    Err(RecvError::Closed) => return,
                }
                continue;
            }
            _ = stop.changed() => return,
        };
        if notice.from_peer
            && notice.live.video == Some(Codec::Vp8)
            && ctx.config.h264_from_vp8 == H264FromVp8::Always
        {
            // H.264 for the whole session (HLS, recording), not only while a viewer needs it.
            let relay = ctx.relay.clone();
            let channel = notice.channel.clone();
            tokio::spawn(async move {
                if let Err(err) = relay
                    .want_bridge(channel.clone(), crate::relay::h264_codec())
                    .await
                {
                    warn!(%channel, %err, "no H.264 from this VP8 publisher");
                }
            });
        }
        // Server-side sources make their own ladder; a simulcast publisher sends its own
        // layers as renditions.
        if !notice.from_peer || !notice.live.renditions.is_empty() {
            continue;
        }
        let options = transcode_options(&ctx, notice.channel.as_str());
        let Some(codec) = notice.live.video else {
            continue;
        };
        if options.renditions.is_empty() {
            continue;
        }
        tokio::spawn(feed(ctx.clone(), notice, codec, options, stop.clone()));
    }
}

async fn feed(
    ctx: Arc<IngestContext>,
    notice: LiveNotice,
    codec: Codec,
    options: TranscodeOptions,
    stop: watch::Receiver<bool>,
) {
    let (channel, session) = (notice.channel, notice.live.session);
    match run(&ctx, &channel, session, codec, options, stop).await {
        Ok(()) => debug!(%channel, %session, "WHIP ladder done"),
        Err(err) => warn!(%channel, %session, %err, "WHIP ladder stopped"),
    }
}

async fn run(
    ctx: &IngestContext,
    channel: &ChannelName,
    session: SessionId,
    codec: Codec,
    mut options: TranscodeOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    // Subscribed before the renditions are offered, so the keyframe their attachment asks
    // for is seen.
    let mut sub = ctx.relay.subscribe(channel.clone()).await?;
    if sub.live.as_ref().map(|l| l.session) != Some(session) {
        return Ok(()); // Already over.
    }
    options.main_video = false;
    options.video_thread = "fy-tc-ladder";
    let names: Vec<String> = options.renditions.iter().map(|r| r.name.clone()).collect();
    let (transcoder, encoded) =
        Transcoder::start(Some(VideoInput::from_units(codec)?), None, &options)?;
    let feed = ctx
        .relay
        .feed_renditions(channel.clone(), session, names.clone())
        .await?;
    info!(%channel, %session, renditions = ?names, ?codec, "WHIP ladder encoding");
    let shift = feed.first.saturating_sub(1);
    let forwarding = tokio::spawn(forward(
        encoded,
        feed.publisher,
        transcoder.keyframe_requester(),
        shift,
        Codec::H264,
    ));
    pump(
        &ctx.relay,
        channel,
        session,
        &mut sub,
        &transcoder,
        &mut stop,
        || false,
    )
    .await;
    // Closing the input flushes the encoders; the forwarder then ends and the renditions
    // are withdrawn.
    transcoder.finish();
    let _ = forwarding.await;
    Ok(())
}

/// Feeds the session's source video from `sub` into `transcoder` until the session ends,
/// ingest stops or `done()` says so (checked about once a second). Until the decoder has
/// a keyframe (at the start, and after units were lost) it asks the source for one each
/// second: a browser answers a keyframe request it got just before at most once.
async fn pump(
    relay: &SourceHandle,
    channel: &ChannelName,
    session: SessionId,
    sub: &mut Subscription,
    transcoder: &Transcoder,
    stop: &mut watch::Receiver<bool>,
    mut done: impl FnMut() -> bool,
) {
    let source = Track::Video { rendition: 0 };
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut has_keyframe = false;
    loop {
        let media = tokio::select! {
            media = sub.media.recv() => media,
            _ = check.tick() => {
                if done() {
                    return;
                }
                if !has_keyframe {
                    relay.request_keyframe(channel.clone()).await;
                }
                continue;
            }
            _ = stop.changed() => return,
        };
        match media {
            Ok(ChannelMedia::Unit(unit)) if unit.track == source => {
                has_keyframe |= unit.keyframe;
                let us = |t: i64| t * 1_000_000 / i64::from(unit.timescale.max(1));
                let packet = SourcePacket {
                    kind: MediaKind::Video,
                    pts_us: us(unit.pts),
                    dts_us: us(unit.dts),
                    keyframe: unit.keyframe,
                    data: unit.data,
                };
                if transcoder.push(packet).await.is_err() {
                    return;
                }
            }
            Ok(ChannelMedia::Ended { session: ended }) if ended == session => return,
            Ok(ChannelMedia::Live(live)) if live.session != session => return,
            Ok(_) => {}
            // The decoder picks up again at the next keyframe.
            Err(RecvError::Lagged(missed)) => {
                warn!(%channel, missed, "transcoding fell behind the source");
                has_keyframe = false;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn bridge(ctx: Arc<IngestContext>, request: BridgeRequest, stop: watch::Receiver<bool>) {
    let (channel, session) = (request.channel.clone(), request.session);
    match run_bridge(&ctx, request, stop).await {
        Ok(()) => info!(%channel, %session, "codec bridge stopped"),
        Err(err) => {
            warn!(%channel, %session, %err, "codec bridge failed; its viewers get no video")
        }
    }
}

async fn run_bridge(
    ctx: &IngestContext,
    request: BridgeRequest,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let BridgeRequest {
        channel,
        session,
        stream,
        from,
        to,
    } = request;
    let mut sub = ctx.relay.subscribe(channel.clone()).await?;
    if sub.live.as_ref().map(|l| l.session) != Some(session) {
        return Ok(());
    }
    let options = TranscodeOptions {
        main_video: false,
        // One rung at the source's size (a height no source exceeds is never upscaled).
        renditions: vec![RenditionSpec {
            name: "bridge".into(),
            height: 4320,
            video_kbps: ctx.config.video_kbps,
        }],
        rendition_codec: to,
        video_thread: "fy-tc-bridge",
        x264_preset: ctx.config.x264_preset.clone(),
        limits: super::input_limits(&ctx.config),
        slots: Some(ctx.transcode_slots.clone()),
        ..TranscodeOptions::default()
    };
    let (transcoder, encoded) =
        Transcoder::start(Some(VideoInput::from_units(from)?), None, &options)?;
    let feed = ctx
        .relay
        .feed_bridge(channel.clone(), session, stream)
        .await?;
    info!(%channel, %session, ?from, ?to, stream, "codec bridge encoding");
    let forwarding = tokio::spawn(forward(
        encoded,
        feed.publisher,
        transcoder.keyframe_requester(),
        stream.saturating_sub(1),
        to,
    ));
    let relay = ctx.relay.clone();
    // H.264 from VP8 is live HLS's video (and later the recording's): kept for the session.
    let always = to == Codec::H264 && ctx.config.h264_from_vp8 != H264FromVp8::Off;
    let mut idle_since: Option<std::time::Instant> = None;
    let idle = || {
        if always {
            return false;
        }
        let watched = relay
            .status(&channel)
            .and_then(|s| s.stream_viewers.get(usize::from(stream)).copied())
            .unwrap_or(0)
            > 0;
        if watched {
            idle_since = None;
            return false;
        }
        idle_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            >= BRIDGE_IDLE
    };
    pump(
        &relay,
        &channel,
        session,
        &mut sub,
        &transcoder,
        &mut stop,
        idle,
    )
    .await;
    transcoder.finish();
    let _ = forwarding.await;
    Ok(())
}

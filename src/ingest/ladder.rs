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

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{IngestContext, IngestError, forward, transcode_options};
use crate::ids::{ChannelName, SessionId};
use crate::media::{Codec, MediaKind, Track};
use crate::relay::{ChannelMedia, LiveNotice};
use crate::transcode::{SourcePacket, TranscodeOptions, Transcoder, VideoInput};

/// Starts a ladder for every WHIP session that goes live on a channel with one, until
/// ingest stops.
pub(crate) async fn supervisor(ctx: Arc<IngestContext>, mut stop: watch::Receiver<bool>) {
    let mut notices = ctx.relay.live_notices();
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
            _ = stop.changed() => return,
        };
        if !notice.from_peer {
            continue;
        }
        let options = transcode_options(&ctx.config, notice.channel.as_str());
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
    ));
    let source = Track::Video { rendition: 0 };
    loop {
        let media = tokio::select! {
            media = sub.media.recv() => media,
            _ = stop.changed() => break,
        };
        match media {
            Ok(ChannelMedia::Unit(unit)) if unit.track == source => {
                let us = |t: i64| t * 1_000_000 / i64::from(unit.timescale.max(1));
                let packet = SourcePacket {
                    kind: MediaKind::Video,
                    pts_us: us(unit.pts),
                    dts_us: us(unit.dts),
                    keyframe: unit.keyframe,
                    data: unit.data,
                };
                if transcoder.push(packet).await.is_err() {
                    break;
                }
            }
            Ok(ChannelMedia::Ended { session: ended }) if ended == session => break,
            Ok(ChannelMedia::Live(live)) if live.session != session => break,
            Ok(_) => {}
            // The decoder picks up again at the next keyframe.
            Err(RecvError::Lagged(missed)) => {
                warn!(%channel, missed, "WHIP ladder fell behind the source");
            }
            Err(RecvError::Closed) => break,
        }
    }
    // Closing the input flushes the encoders; the forwarder then ends and the renditions
    // are withdrawn.
    transcoder.finish();
    let _ = forwarding.await;
    Ok(())
}

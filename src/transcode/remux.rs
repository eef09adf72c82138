//! Stream copy from any input libavformat reads (a local VOD playlist of fMP4 segments, a
//! library film) into one MP4 with its `moov` first: no decoding, no re-encoding, only
//! the packets moved and their timestamps rescaled. Blocking: run it on its own thread.
//!
//! A recording can hold discontinuities (a publisher that came back within the reconnect
//! grace starts a new init segment, and its clock may start again). MP4 needs rising
//! decode times per track, so a packet that would go back in time, or jump more than
//! [`MAX_GAP_US`] ahead, moves its track on to just after the track's previous packet.

use std::path::Path;

use ffmpeg::media::Type as Medium;
use ffmpeg::util::mathematics::rescale::Rescale;
use ffmpeg_next as ffmpeg;

use super::{MICROS, TranscodeError};

/// A forward jump in decode time larger than this is a discontinuity, not a pause.
pub const MAX_GAP_US: i64 = 5_000_000;

/// One stream copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemuxedStream {
    /// `video` or `audio`.
    pub kind: &'static str,
    /// FFmpeg's codec name (`h264`, `aac`, ...).
    pub codec: String,
    /// Packets written.
    pub packets: u64,
    /// From the first packet's presentation time to the end of the last one, µs.
    pub duration_us: i64,
    /// Times the track's clock was moved on at a discontinuity.
    pub discontinuities: u32,
}

/// What a remux wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemuxReport {
    /// The input's best video stream, if it has one.
    pub video: Option<RemuxedStream>,
    /// The input's best audio stream, if it has one.
    pub audio: Option<RemuxedStream>,
}

/// Where one input stream goes and how its clock is kept rising.
struct Route {
    input: usize,
    output: usize,
    in_tb: ffmpeg::Rational,
    out_tb: ffmpeg::Rational,
    stats: RemuxedStream,
    /// Added to every timestamp (output time base), changed at discontinuities.
    shift: i64,
    /// Decode time and duration of the last packet written (output time base).
    last: Option<(i64, i64)>,
    /// Smallest presentation time and largest presentation end written (output time base).
    first_pts: Option<i64>,
    end_pts: i64,
}

/// Copies the best video and the best audio stream of `input` into the MP4 file `out`
/// (`+faststart`: the index is moved in front of the media when the file is finished).
/// `input_options` go to libavformat when opening (e.g. `protocol_whitelist`).
pub fn remux_to_mp4(
    input: &Path,
    input_options: &[(&str, &str)],
    out: &Path,
) -> Result<RemuxReport, TranscodeError> {
    super::init();
    let mut dict = ffmpeg::Dictionary::new();
    for (k, v) in input_options {
        dict.set(k, v);
    }
    let mut ictx = ffmpeg::format::input_with_dictionary(input, dict).map_err(|source| {
        TranscodeError::Unsupported(format!(
            "cannot open {} as media ({source}): not a media file or playlist, damaged, \
             or a container FFmpeg does not know",
            input.display()
        ))
    })?;
    let mut octx =
        ffmpeg::format::output_as(out, "mp4").map_err(TranscodeError::codec("creating the MP4"))?;
    let mut routes: Vec<Route> = Vec::new();
    for (medium, kind) in [(Medium::Video, "video"), (Medium::Audio, "audio")] {
        let Some(stream) = ictx.streams().best(medium) else {
            continue;
        };
        let params = stream.parameters();
        let codec = params.id().name().to_string();
        let mut ost = octx
            .add_stream(None::<ffmpeg::Codec>)
            .map_err(TranscodeError::codec("adding a stream"))?;
        ost.set_parameters(params);
        // SAFETY: a plain field of the output stream's own parameters; a tag from the input
        // container may not fit MP4, and 0 lets the muxer choose.
        unsafe {
            (*(*ost.as_mut_ptr()).codecpar).codec_tag = 0;
        }
        routes.push(Route {
            input: stream.index(),
            output: ost.index(),
            in_tb: stream.time_base(),
            out_tb: ffmpeg::Rational(0, 1),
            stats: RemuxedStream {
                kind,
                codec,
                packets: 0,
                duration_us: 0,
                discontinuities: 0,
            },
            shift: 0,
            last: None,
            first_pts: None,
            end_pts: 0,
        });
    }
    if routes.is_empty() {
        return Err(TranscodeError::Unsupported(format!(
            "{} has neither a video nor an audio stream",
            input.display()
        )));
    }
    let mut options = ffmpeg::Dictionary::new();
    options.set("movflags", "+faststart");
    octx.write_header_with(options)
        .map_err(TranscodeError::codec("writing the MP4 header"))?;
    for route in &mut routes {
        route.out_tb = octx
            .stream(route.output)
            .map(|s| s.time_base())
            .ok_or(TranscodeError::Stopped)?;
    }
    let max_gap = |tb: ffmpeg::Rational| MAX_GAP_US.rescale(MICROS, tb);
    loop {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(source) => {
                return Err(TranscodeError::Codec {
                    context: "reading the input",
                    source,
                });
            }
        }
        let Some(route) = routes.iter_mut().find(|r| r.input == packet.stream()) else {
            continue;
        };
        let Some(dts) = packet.dts().or(packet.pts()) else {
            // Nothing says where it belongs: MP4 cannot place it.
            continue;
        };
        let pts = packet.pts().unwrap_or(dts);
        let (tb_in, tb_out) = (route.in_tb, route.out_tb);
        let dts = dts.rescale(tb_in, tb_out);
        let pts = pts.rescale(tb_in, tb_out);
        let duration = packet.duration().rescale(tb_in, tb_out).max(0);
        if let Some((last_dts, last_duration)) = route.last {
            let at = dts + route.shift;
            if at <= last_dts || at - last_dts > max_gap(tb_out) {
                let step = if last_duration > 0 { last_duration } else { 1 };
                route.shift = last_dts + step - dts;
                route.stats.discontinuities += 1;
            }
        }
        let (dts, pts) = (dts + route.shift, pts + route.shift);
        packet.set_dts(Some(dts));
        packet.set_pts(Some(pts));
        packet.set_duration(duration);
        packet.set_position(-1);
        packet.set_stream(route.output);
        route.last = Some((dts, duration));
        route.first_pts = Some(route.first_pts.map_or(pts, |f| f.min(pts)));
        route.end_pts = route.end_pts.max(pts + duration);
        route.stats.packets += 1;
        packet
            .write_interleaved(&mut octx)
            .map_err(TranscodeError::codec("writing the MP4"))?;
    }
    if routes.iter().all(|r| r.stats.packets == 0) {
        return Err(TranscodeError::BadInput(format!(
            "{} holds no media packets",
            input.display()
        )));
    }
    octx.write_trailer()
        .map_err(TranscodeError::codec("finishing the MP4"))?;
    let mut report = RemuxReport::default();
    for mut route in routes {
        let first = route.first_pts.unwrap_or(0);
        route.stats.duration_us = (route.end_pts - first).rescale(route.out_tb, MICROS);
        match route.stats.kind {
            "video" => report.video = Some(route.stats),
            _ => report.audio = Some(route.stats),
        }
    }
    Ok(report)
}

//! Playlist text (RFC 8216bis): the multivariant playlist, the low-latency fMP4 media
//! playlist and the plain MPEG-TS one (version 3, for older players).

use std::fmt::Write as _;

use super::segmenter::{LISTED, Part, Targets, Variant, WITH_PARTS};

/// Which form of the channel a playlist describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// fMP4/CMAF segments with low-latency parts.
    Fmp4,
    /// MPEG-TS segments.
    Ts,
}

/// One entry of a multivariant playlist.
pub struct Entry<'a> {
    /// Where its media playlist is (with the viewer's id).
    pub uri: String,
    /// The rendition's name.
    pub name: &'a str,
    /// `CODECS`.
    pub codecs: &'a str,
    /// Picture size.
    pub resolution: Option<(u16, u16)>,
    /// Peak bits per second.
    pub bandwidth: u64,
}

/// The multivariant playlist.
pub fn multivariant(form: Form, entries: &[Entry]) -> String {
    let mut out = String::from("#EXTM3U\n");
    let _ = writeln!(
        out,
        "#EXT-X-VERSION:{}",
        if form == Form::Fmp4 { 9 } else { 3 }
    );
    if form == Form::Fmp4 {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for e in entries {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", e.bandwidth.max(1));
        if let Some((w, h)) = e.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if form == Form::Fmp4 {
            let _ = write!(out, ",CODECS=\"{}\"", e.codecs);
        }
        let _ = writeln!(out, ",NAME=\"{}\"", e.name);
        let _ = writeln!(out, "{}", e.uri);
    }
    out
}

/// A media playlist of `variant`, whose segment URIs start with `base`
/// (`/hls/{channel}/{session}/{rendition}/`).
pub fn media(form: Form, variant: &Variant, base: &str, targets: Targets) -> String {
    let mut out = String::from("#EXTM3U\n");
    let listed: Vec<_> = {
        let all = variant.segments();
        all.iter().skip(all.len().saturating_sub(LISTED)).collect()
    };
    let open = if form == Form::Fmp4 {
        variant.open()
    } else {
        None
    };
    // Every EXTINF rounded to the nearest second is at most the target (RFC 8216bis
    // 4.4.3.1): a 2.01 s segment keeps a target of 2, so players reload every 2 s, not 3.
    let target = variant.longest().max(targets.segment).round().max(1.0) as u64;
    let first_msn = listed
        .first()
        .map(|s| s.msn)
        .or(open.map(|o| o.0))
        .unwrap_or(variant.next_msn());
    // Discontinuities before the window, for EXT-X-DISCONTINUITY-SEQUENCE: counted from
    // the variant's start, which every player of this session saw the same way.
    let dropped_discontinuities = variant.dropped_discontinuities()
        + variant
            .segments()
            .iter()
            .take_while(|s| s.msn < first_msn)
            .filter(|s| s.discontinuity)
            .count() as u64;
    match form {
        Form::Fmp4 => {
            out.push_str("#EXT-X-VERSION:9\n");
            let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
                targets.part * 3.0
            );
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.3}", targets.part);
        }
        Form::Ts => {
            out.push_str("#EXT-X-VERSION:3\n");
            let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        }
    }
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    let _ = writeln!(
        out,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{dropped_discontinuities}"
    );
    let mut map: Option<u32> = None;
    let parts_from = variant
        .segments()
        .len()
        .saturating_sub(WITH_PARTS)
        .min(variant.segments().len());
    let parts_from_msn = variant
        .segments()
        .get(parts_from)
        .map_or(u64::MAX, |s| s.msn);
    for (i, seg) in listed.iter().enumerate() {
        if seg.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if form == Form::Fmp4 && map != Some(seg.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{base}init-{}.mp4\"", seg.init);
            map = Some(seg.init);
        }
        if i == 0 || seg.discontinuity {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(seg.started_ms));
        }
        if form == Form::Fmp4 && seg.msn >= parts_from_msn {
            for part in &seg.parts {
                part_line(&mut out, base, part);
            }
        }
        let _ = writeln!(out, "#EXTINF:{:.5},", seg.duration);
        let ext = if form == Form::Fmp4 { "m4s" } else { "ts" };
        let _ = writeln!(out, "{base}seg-{}.{ext}", seg.msn);
    }
    if let Some((_, init, discontinuity, parts)) = open {
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{base}init-{init}.mp4\"");
        }
        for part in parts {
            part_line(&mut out, base, part);
        }
        if !variant.ended() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{base}part-{}.m4s\"",
                variant.next_part()
            );
        }
    }
    if variant.ended() {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

fn part_line(out: &mut String, base: &str, part: &Part) {
    let _ = write!(
        out,
        "#EXT-X-PART:DURATION={:.5},URI=\"{base}part-{}.m4s\"",
        part.duration, part.id
    );
    if part.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}

/// `2026-12-06T13:20:00.123Z`.
fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_date_time_is_utc_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_796_563_200_123), "2026-12-06T13:20:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}

//! The little of a media playlist a player needs: segments and parts with the server-clock
//! time each one ended (from `EXT-X-PROGRAM-DATE-TIME` and the durations), and the hint.

/// A segment or a part, named by its URI.
#[derive(Debug, Clone)]
pub struct Item {
    pub uri: String,
    /// Media sequence number.
    pub msn: u64,
    /// Part index within the segment (`None` for a whole segment).
    pub part: Option<usize>,
    /// Unix ms (server clock) at which its last frame ends; NaN without a date.
    pub end_ms: f64,
}

#[derive(Debug, Default)]
pub struct MediaPlaylist {
    pub target_secs: f64,
    pub segments: Vec<Item>,
    pub parts: Vec<Item>,
    /// `EXT-X-PRELOAD-HINT` URI, as (msn, part).
    pub hint: Option<(u64, usize, String)>,
}

fn number_after<'a>(uri: &'a str, prefix: &str) -> Option<&'a str> {
    let name = uri.rsplit('/').next()?;
    let rest = name.strip_prefix(prefix)?;
    Some(rest.split_once('.').map_or(rest, |(a, _)| a))
}

/// `part-N.I.m4s` -> (N, I).
fn part_of(uri: &str) -> Option<(u64, usize)> {
    let name = uri.rsplit('/').next()?;
    let rest = name.strip_prefix("part-")?.strip_suffix(".m4s")?;
    let (n, i) = rest.split_once('.')?;
    Some((n.parse().ok()?, i.parse().ok()?))
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()
    } else {
        rest.split(',').next()
    }
}

pub fn parse(text: &str) -> MediaPlaylist {
    let mut out = MediaPlaylist::default();
    // Start of the current segment (server clock), and how far into it the parts reach.
    let mut cursor = f64::NAN;
    let mut part_offset = 0.0;
    let mut extinf: Option<f64> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            out.target_secs = v.parse().unwrap_or(2.0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cursor = chrono::DateTime::parse_from_rfc3339(v)
                .map_or(f64::NAN, |d| d.timestamp_millis() as f64);
            part_offset = 0.0;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let duration: f64 = attr(v, "DURATION")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0.0);
            part_offset += duration * 1000.0;
            if let Some(uri) = attr(v, "URI")
                && let Some((msn, i)) = part_of(uri)
            {
                out.parts.push(Item {
                    uri: uri.to_owned(),
                    msn,
                    part: Some(i),
                    end_ms: cursor + part_offset,
                });
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            if let Some(uri) = attr(v, "URI")
                && let Some((msn, i)) = part_of(uri)
            {
                out.hint = Some((msn, i, uri.to_owned()));
            }
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = v
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|d| d.parse().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            let duration = extinf.take().unwrap_or(0.0) * 1000.0;
            if let Some(msn) = number_after(line, "seg-").and_then(|n| n.parse().ok()) {
                out.segments.push(Item {
                    uri: line.to_owned(),
                    msn,
                    part: None,
                    end_ms: cursor + duration,
                });
            }
            cursor += duration;
            part_offset = 0.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parts_and_hint() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-12-06T13:20:00.000Z\n\
            #EXT-X-PART:DURATION=0.50000,URI=\"/hls/c/1/0/part-4.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=1.50000,URI=\"/hls/c/1/0/part-4.1.m4s\"\n\
            #EXTINF:2.00000,\n/hls/c/1/0/seg-4.m4s\n\
            #EXT-X-PART:DURATION=0.50000,URI=\"/hls/c/1/0/part-5.0.m4s\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/hls/c/1/0/part-5.1.m4s\"\n";
        let p = parse(text);
        let t0 = 1_796_563_200_000.0;
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].msn, 4);
        assert_eq!(p.segments[0].end_ms, t0 + 2000.0);
        assert_eq!(p.parts.len(), 3);
        assert_eq!(p.parts[1].end_ms, t0 + 2000.0);
        assert_eq!((p.parts[2].msn, p.parts[2].part), (5, Some(0)));
        assert_eq!(p.parts[2].end_ms, t0 + 2500.0);
        assert_eq!(p.hint.map(|h| (h.0, h.1)), Some((5, 1)));
    }
}

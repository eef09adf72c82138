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
    // Parts are numbered across segments by the server; a player names them to a blocking
    // reload by segment and index: the segment the part lines precede, and their order.
    let mut msn: u64 = 0;
    let mut index: usize = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
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
            if let Some(uri) = attr(v, "URI") {
                out.parts.push(Item {
                    uri: uri.to_owned(),
                    msn,
                    part: Some(index),
                    end_ms: cursor + part_offset,
                });
                index += 1;
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            if let Some(uri) = attr(v, "URI") {
                out.hint = Some((msn, index, uri.to_owned()));
            }
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = v
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|d| d.parse().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            let duration = extinf.take().unwrap_or(0.0) * 1000.0;
            if let Some(n) = number_after(line, "seg-").and_then(|n| n.parse().ok()) {
                out.segments.push(Item {
                    uri: line.to_owned(),
                    msn: n,
                    part: None,
                    end_ms: cursor + duration,
                });
                msn = n + 1;
            } else {
                msn += 1;
            }
            index = 0;
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
            #EXT-X-PART:DURATION=0.50000,URI=\"/hls/c/1/0/part-10.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=1.50000,URI=\"/hls/c/1/0/part-11.m4s\"\n\
            #EXTINF:2.00000,\n/hls/c/1/0/seg-4.m4s\n\
            #EXT-X-PART:DURATION=0.50000,URI=\"/hls/c/1/0/part-12.m4s\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/hls/c/1/0/part-13.m4s\"\n";
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

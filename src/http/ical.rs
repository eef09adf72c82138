//! iCalendar (RFC 5545) text for planned items: a station's or a center's feed and one
//! event. Lines end in CRLF and are folded at 75 octets (never inside a UTF-8 character);
//! text values are escaped (`\\`, `;`, `,`, newlines). Times are UTC (`...Z`).
//!
//! Each event's UID is `item-{id}@{host}`, the same across reschedules, and its SEQUENCE
//! the item's, so a calendar that subscribed updates the event instead of adding one; a
//! cancelled item (or a film class an operator stopped) is `STATUS:CANCELLED`.

use crate::catalog::{ItemKind, ItemStatus, PlannedItem};

/// How long a lecture with no known end shows in a calendar.
const DEFAULT_LENGTH_MS: i64 = 90 * 60_000;

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends one content line, folded at 75 octets (RFC 5545 §3.1), with its CRLF.
fn line(out: &mut String, text: &str) {
    let mut width = 0;
    for c in text.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// `YYYYMMDDTHHMMSSZ` for unix ms.
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| "19700101T000000Z".into())
}

/// The host part of UIDs: the request's host without its port, only the characters a host
/// name has; `feiyan` when there is none.
pub fn uid_host(host: Option<&str>) -> String {
    let host = host.unwrap_or("").trim();
    let bare = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
    };
    let clean: String = bare
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        .collect();
    if clean.is_empty() {
        "feiyan".into()
    } else {
        clean.to_ascii_lowercase()
    }
}

fn event(out: &mut String, item: &PlannedItem, host: &str, base_url: &str) {
    line(out, "BEGIN:VEVENT");
    line(out, &format!("UID:item-{}@{host}", item.id));
    line(out, &format!("SEQUENCE:{}", item.sequence));
    line(out, &format!("DTSTAMP:{}", utc(item.updated_at_ms)));
    line(out, &format!("LAST-MODIFIED:{}", utc(item.updated_at_ms)));
    line(out, &format!("DTSTART:{}", utc(item.starts_at_ms)));
    let end = item
        .ends_at_ms
        .filter(|e| *e > item.starts_at_ms)
        .unwrap_or(item.starts_at_ms + DEFAULT_LENGTH_MS);
    line(out, &format!("DTEND:{}", utc(end)));
    line(out, &format!("SUMMARY:{}", escape(&item.title)));
    let mut about = vec![match item.kind {
        ItemKind::Lecture => "理论宣讲".to_string(),
        ItemKind::FilmClass => "电影党史课".to_string(),
    }];
    if let Some(speaker) = &item.speaker {
        about.push(format!("主讲：{speaker}"));
    }
    if let Some(topic) = &item.topic {
        about.push(format!("主题：{topic}"));
    }
    if let Some(film) = &item.film {
        about.push(format!("影片：{}", film.title));
    }
    line(out, &format!("DESCRIPTION:{}", escape(&about.join("\n"))));
    line(out, &format!("LOCATION:{}", escape(&item.station.name)));
    line(out, &format!("URL:{base_url}/e/{}", item.id));
    let status = match item.status {
        ItemStatus::Cancelled => "CANCELLED",
        _ => "CONFIRMED",
    };
    line(out, &format!("STATUS:{status}"));
    line(out, "END:VEVENT");
}

/// A calendar named `name` with `items`; `host` goes into UIDs, `base_url` (scheme and
/// host) before `/e/{id}`.
pub fn calendar(name: &str, items: &[PlannedItem], host: &str, base_url: &str) -> String {
    let mut out = String::with_capacity(512 + items.len() * 512);
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//feiyan//programme//ZH");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    for item in items {
        event(&mut out, item, host, base_url);
    }
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let text = format!("SUMMARY:{}", "新时代文明实践".repeat(10));
        line(&mut out, &text);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        let unfolded = out.trim_end_matches("\r\n").replace("\r\n ", "");
        assert_eq!(unfolded, text);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
    }

    #[test]
    fn uid_host_drops_the_port() {
        assert_eq!(uid_host(Some("Example.org:8080")), "example.org");
        assert_eq!(uid_host(Some("[::1]:80")), "[::1]");
        assert_eq!(uid_host(None), "feiyan");
        assert_eq!(uid_host(Some("a b<c>")), "abc");
    }
}

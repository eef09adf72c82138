//! Typed identities, so a station id is never passed where a session id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A station's row id in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StationId(pub i64);

/// A live session's row id (one lecture, film class or other broadcast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct SessionId(pub i64);

/// One viewer attendance row: a WHEP session's time within one live session. The relay
/// makes the ids itself (`AudienceSink::viewer_id`) so the media path never waits for the
/// database to hand one out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViewerId(pub i64);

/// A film's row id in the library (`films`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct FilmId(pub i64);

/// A screening's row id: one scheduled showing of a film on a station's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct ScreeningId(pub i64);

/// A center's (中心) row id in the catalog (`centers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct CenterId(pub i64);

/// An institute's (所) row id in the catalog (`institutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct InstituteId(pub i64);

/// A pull source's row id (`sources`): a URL the server opens itself to feed a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct PullSourceId(pub i64);

/// A channel name as it appears in URLs (`/whip/{channel}`): lowercase letters, digits and
/// `-`/`_`, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// Validates a channel name from a URL or the CLI.
    pub fn parse(name: &str) -> Option<ChannelName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ok.then(|| ChannelName(name.to_string()))
    }

    /// The default channel of a station.
    pub fn for_station(station: StationId) -> ChannelName {
        ChannelName(format!("st-{}", station.0))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// Ignores width and alignment (`{:>6}` prints the bare number), which `feiyan station
// list` relies on for its current output; the ids below pad like the `i64` they replace.
impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// These ids print as their number, padded and aligned like the `i64` they replace (the
/// CLI's `film list` and `source list` align them).
macro_rules! display_as_number {
    ($($id:ty),*) => {$(
        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

display_as_number!(FilmId, ScreeningId, CenterId, InstituteId, PullSourceId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_url_safe() {
        assert!(ChannelName::parse("st-12").is_some());
        assert!(ChannelName::parse("").is_none());
        assert!(ChannelName::parse("St-1").is_none());
        assert!(ChannelName::parse("a/b").is_none());
        assert!(ChannelName::parse(&"x".repeat(65)).is_none());
    }

    #[test]
    fn hierarchy_and_source_ids_serialize_and_print_as_their_number() {
        assert_eq!(serde_json::to_string(&CenterId(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<InstituteId>("12").unwrap(),
            InstituteId(12)
        );
        assert_eq!(serde_json::to_string(&PullSourceId(3)).unwrap(), "3");
        assert_eq!(
            format!("{:>4}|{}", PullSourceId(3), CenterId(42)),
            "   3|42"
        );
    }
}

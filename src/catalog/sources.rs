//! Pull sources: URLs the server opens itself (IP cameras over RTSP, SRT, RTMP, HTTP) to
//! feed a channel. An SRT source calls an SRT listener (`srt://HOST:PORT?mode=caller`;
//! libavformat's options such as `passphrase` or `latency` (µs) go in the query).
//!
//! Only network schemes are accepted ([`SOURCE_SCHEMES`]): never `file:`, `concat:`,
//! `subfile:` or `data:`, which would let whoever holds a station key read the server's
//! own files. A station's sources are held (`needs_confirm`) when its key rotates, until
//! the station enables them again with the new key.

use serde::Serialize;

use super::{Catalog, CatalogError, hash_key};
use crate::ids::{ChannelName, PullSourceId, StationId};

/// A pull source row.
#[derive(Debug, Clone, Serialize)]
pub struct PullSource {
    /// Row id.
    pub id: PullSourceId,
    /// Channel it feeds.
    pub channel: String,
    /// The station that owns the channel (whose key manages the source).
    pub station_id: StationId,
    /// What to open (may hold camera credentials: show it through [`crate::redact::redact_url`]).
    pub url: String,
    /// Whether the station wants it connected.
    pub enabled: bool,
    /// Held since the station's key rotated: not opened until enabled with the new key.
    pub needs_confirm: bool,
}

impl PullSource {
    /// Whether the server keeps it connected.
    pub fn runs(&self) -> bool {
        self.enabled && !self.needs_confirm
    }
}

/// The schemes a pull source may use, lower case.
pub const SOURCE_SCHEMES: [&str; 7] = ["rtsp", "rtsps", "srt", "rtmp", "rtmps", "http", "https"];

/// The URL's scheme, lower case, when it is one of [`SOURCE_SCHEMES`] followed by `://`.
pub fn source_scheme(url: &str) -> Option<&'static str> {
    let (scheme, _) = url.split_once("://")?;
    SOURCE_SCHEMES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(scheme))
        .copied()
}

type SourceRow = (i64, String, i64, String, i64, i64);

const SELECT_SOURCES: &str = "SELECT s.id, s.channel, ch.station_id, s.url, s.enabled, \
     s.needs_confirm FROM sources s JOIN channels ch ON ch.name = s.channel";

fn from_row((id, channel, station_id, url, enabled, needs_confirm): SourceRow) -> PullSource {
    PullSource {
        id: PullSourceId(id),
        channel,
        station_id: StationId(station_id),
        url,
        enabled: enabled != 0,
        needs_confirm: needs_confirm != 0,
    }
}

impl Catalog {
    /// Adds an enabled pull source on `channel`, unless the channel already has
    /// `max_per_channel` sources (enabled or not). Checks the scheme only: whether an
    /// http(s) host may be private is the ingest side's rule.
    pub async fn add_source(
        &self,
        channel: &ChannelName,
        url: &str,
        max_per_channel: usize,
        now_ms: i64,
    ) -> Result<PullSource, CatalogError> {
        if source_scheme(url).is_none() {
            return Err(CatalogError::Invalid {
                field: "url",
                reason: format!(
                    "the scheme must be one of {} (as in rtsp://HOST/PATH); local files and \
                     other protocols are not sources",
                    SOURCE_SCHEMES.join(", ")
                ),
            });
        }
        if url.len() > 4096 || url.chars().any(char::is_control) {
            return Err(CatalogError::Invalid {
                field: "url",
                reason: "must be at most 4096 bytes without control characters".into(),
            });
        }
        let owner = self.channel_owner(channel).await?;
        let cap = i64::try_from(max_per_channel).unwrap_or(i64::MAX);
        // One statement, so two adds at once cannot both pass the count.
        let row: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO sources (channel, url, enabled, created_at) \
             SELECT $1, $2, 1, $3 WHERE (SELECT COUNT(*) FROM sources WHERE channel = $1) < $4 \
             RETURNING id",
        )
        .bind(channel.as_str())
        .bind(url)
        .bind(now_ms)
        .bind(cap)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id,)) = row else {
            return Err(CatalogError::Conflict(format!(
                "channel {channel} already has {max_per_channel} pull sources, the most \
                 [ingest] max_sources_per_channel allows; remove one first \
                 (DELETE /api/sources/{{id}} or `feiyan source remove ID`)"
            )));
        };
        Ok(PullSource {
            id: PullSourceId(id),
            channel: channel.to_string(),
            station_id: owner.station_id,
            url: url.to_string(),
            enabled: true,
            needs_confirm: false,
        })
    }

    /// Enables or disables a source; enabling also confirms one held by a key rotation.
    /// False when there is no such source.
    pub async fn set_source_enabled(
        &self,
        id: PullSourceId,
        enabled: bool,
    ) -> Result<bool, CatalogError> {
        let sql = if enabled {
            "UPDATE sources SET enabled = 1, needs_confirm = 0 WHERE id = $1"
        } else {
            "UPDATE sources SET enabled = 0 WHERE id = $1"
        };
        let done = sqlx::query(sql).bind(id.0).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a source; false when there is no such source.
    pub async fn remove_source(&self, id: PullSourceId) -> Result<bool, CatalogError> {
        let done = sqlx::query("DELETE FROM sources WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One source.
    pub async fn source(&self, id: PullSourceId) -> Result<Option<PullSource>, CatalogError> {
        let row: Option<SourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_SOURCES} WHERE s.id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(from_row))
    }

    /// Every source.
    pub async fn list_sources(&self) -> Result<Vec<PullSource>, CatalogError> {
        let rows: Vec<SourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_SOURCES} ORDER BY s.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The station whose current stream key is `key`, if any.
    pub async fn station_by_key(&self, key: &str) -> Result<Option<StationId>, CatalogError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM stations WHERE stream_key_hash = $1")
                .bind(hash_key(key))
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(id,)| StationId(id)))
    }
}

/// Holds every source of `station` until it is enabled again (called in the key
/// rotation's transaction).
pub(super) async fn hold_station_sources(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    station: StationId,
) -> Result<(), CatalogError> {
    sqlx::query(
        "UPDATE sources SET needs_confirm = 1 \
         WHERE channel IN (SELECT name FROM channels WHERE station_id = $1)",
    )
    .bind(station.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_schemes_are_sources() {
        assert_eq!(source_scheme("RTSP://cam/1"), Some("rtsp"));
        assert_eq!(source_scheme("rtmps://h/live/k"), Some("rtmps"));
        for url in [
            "file:///etc/passwd",
            "concat:a|b",
            "subfile,,start,0,end,0,,:/etc/passwd",
            "data:text/plain,x",
            "ftp://h/x",
            "/etc/passwd",
            "crypto+file:///etc/passwd",
        ] {
            assert_eq!(source_scheme(url), None, "{url}");
        }
    }
}

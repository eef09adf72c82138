//! Pull sources: URLs the server opens itself (IP cameras over RTSP, SRT, RTMP, HTTP) to
//! feed a channel. An SRT source calls an SRT listener (`srt://HOST:PORT?mode=caller`;
//! libavformat's options such as `passphrase` or `latency` (µs) go in the query).

use serde::Serialize;

use super::{Catalog, CatalogError};
use crate::ids::{ChannelName, PullSourceId};

/// A pull source row.
#[derive(Debug, Clone, Serialize)]
pub struct PullSource {
    /// Row id.
    pub id: PullSourceId,
    /// Channel it feeds.
    pub channel: String,
    /// What to open (may hold camera credentials: show it through [`redact_url`]).
    pub url: String,
    /// Whether the server keeps it connected.
    pub enabled: bool,
}

/// The URL without `user:password@` and without an SRT `passphrase=` value, for logs and
/// the API.
pub fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme && !url[scheme + 3..at].contains('/') => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("passphrase") => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

const SCHEMES: [&str; 6] = [
    "rtsp://", "rtsps://", "srt://", "rtmp://", "http://", "https://",
];

impl Catalog {
    /// Adds an enabled pull source on `channel`.
    pub async fn add_source(
        &self,
        channel: &ChannelName,
        url: &str,
        now_ms: i64,
    ) -> Result<PullSource, CatalogError> {
        if !SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Err(CatalogError::Invalid {
                field: "url",
                reason: format!("must start with one of {}", SCHEMES.join(", ")),
            });
        }
        self.channel_owner(channel).await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO sources (channel, url, enabled, created_at) VALUES ($1, $2, 1, $3) \
             RETURNING id",
        )
        .bind(channel.as_str())
        .bind(url)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(PullSource {
            id: PullSourceId(id),
            channel: channel.to_string(),
            url: url.to_string(),
            enabled: true,
        })
    }

    /// Enables or disables a source; false when there is no such source.
    pub async fn set_source_enabled(
        &self,
        id: PullSourceId,
        enabled: bool,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query("UPDATE sources SET enabled = $1 WHERE id = $2")
            .bind(i64::from(enabled))
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every source.
    pub async fn list_sources(&self) -> Result<Vec<PullSource>, CatalogError> {
        let rows: Vec<(i64, String, String, i64)> =
            sqlx::query_as("SELECT id, channel, url, enabled FROM sources ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, channel, url, enabled)| PullSource {
                id: PullSourceId(id),
                channel,
                url,
                enabled: enabled != 0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_hidden() {
        assert_eq!(
            redact_url("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://***@10.0.0.5:554/stream1"
        );
        assert_eq!(redact_url("srt://1.2.3.4:9000"), "srt://1.2.3.4:9000");
        assert_eq!(
            redact_url("srt://1.2.3.4:9000?mode=caller&passphrase=longsecret1&latency=200"),
            "srt://1.2.3.4:9000?mode=caller&passphrase=***&latency=200"
        );
        assert_eq!(
            redact_url("http://host/a@b.ts"),
            "http://host/a@b.ts",
            "an @ in the path is not userinfo"
        );
    }
}

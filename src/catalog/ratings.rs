//! Residents' ratings of what they watched (评单): one per device per session, a whole
//! number from 1 to 5 and an optional comment, given once the session has ended (live, on
//! replay or in the room: the session is what is rated). Averages are public; comments are
//! for administrators in scope. The device id is stored only as a hash.
//!
//! The figures by station, speaker, topic, film and period are in `stats::ratings`.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Catalog, CatalogError, rfc3339};
use crate::ids::SessionId;

/// The longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 300;

/// A session's ratings as residents may see them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatingSummary {
    /// How many devices rated it.
    pub count: i64,
    /// Their mean score (one decimal), none before the first rating.
    pub average: Option<f64>,
}

/// One rating, for administrators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rating {
    /// 1 to 5.
    pub score: i64,
    /// What the resident wrote, possibly empty.
    pub comment: String,
    /// When, RFC 3339.
    pub at: String,
}

/// Checks a score and a comment before anything is looked up.
pub fn check_rating(score: i64, comment: &str) -> Result<(), CatalogError> {
    if !(1..=5).contains(&score) {
        return Err(CatalogError::Invalid {
            field: "score",
            reason: format!("{score} is not a score: give a whole number from 1 to 5"),
        });
    }
    let chars = comment.chars().count();
    if chars > MAX_COMMENT_CHARS {
        return Err(CatalogError::Invalid {
            field: "comment",
            reason: format!("{chars} characters; at most {MAX_COMMENT_CHARS}"),
        });
    }
    Ok(())
}

/// What identifies a device's rating without storing its id.
fn device_hash(device: &str) -> String {
    hex::encode(Sha256::digest(format!("feiyan-rating:{device}").as_bytes()))
}

/// One decimal, as the pages show it.
pub(super) fn one_decimal(mean: f64) -> f64 {
    (mean * 10.0).round() / 10.0
}

impl Catalog {
    /// Records `device`'s rating of an ended session: 404 for an unknown one, 409 while it
    /// is live or when this device has rated it already.
    pub async fn rate_session(
        &self,
        session: SessionId,
        device: &str,
        score: i64,
        comment: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        check_rating(score, comment)?;
        let ended: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT ended_at FROM sessions WHERE id = $1")
                .bind(session.0)
                .fetch_optional(&self.pool)
                .await?;
        match ended {
            None => return Err(CatalogError::NotFound(format!("no session {}", session.0))),
            Some((None,)) => {
                return Err(CatalogError::Conflict(format!(
                    "session {} is still on: rate it once it has ended",
                    session.0
                )));
            }
            Some((Some(_),)) => {}
        }
        let inserted = sqlx::query(
            "INSERT INTO session_ratings (session_id, device_hash, score, comment, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, device_hash) DO NOTHING",
        )
        .bind(session.0)
        .bind(device_hash(device))
        .bind(score)
        .bind(comment.trim())
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(CatalogError::Conflict(format!(
                "this device has already rated session {}; one rating per device",
                session.0
            )));
        }
        Ok(())
    }

    /// How many rated a session and their mean score.
    pub async fn session_rating(&self, session: SessionId) -> Result<RatingSummary, CatalogError> {
        let (count, sum): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(score), 0) AS BIGINT) \
             FROM session_ratings WHERE session_id = $1",
        )
        .bind(session.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(RatingSummary {
            count,
            average: (count > 0).then(|| one_decimal(sum as f64 / count as f64)),
        })
    }

    /// Whether `device` has rated the session (so a page shows its thanks, not the form).
    pub async fn has_rated(&self, session: SessionId, device: &str) -> Result<bool, CatalogError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT score FROM session_ratings WHERE session_id = $1 AND device_hash = $2",
        )
        .bind(session.0)
        .bind(device_hash(device))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Every rating of a session with its comment, newest first (administrators).
    pub async fn session_ratings(&self, session: SessionId) -> Result<Vec<Rating>, CatalogError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT score, comment, created_at FROM session_ratings \
             WHERE session_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(session.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(score, comment, at)| Rating {
                score,
                comment,
                at: rfc3339(at),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_outside_one_to_five_and_long_comments_are_refused_with_the_field() {
        for score in [0, 6, -1, i64::MAX] {
            match check_rating(score, "") {
                Err(CatalogError::Invalid { field, .. }) => assert_eq!(field, "score"),
                other => panic!("{score}: {other:?}"),
            }
        }
        assert!(check_rating(1, "").is_ok() && check_rating(5, "好").is_ok());
        let long = "讲".repeat(MAX_COMMENT_CHARS + 1);
        assert!(matches!(
            check_rating(3, &long),
            Err(CatalogError::Invalid {
                field: "comment",
                ..
            })
        ));
        assert!(check_rating(3, &"讲".repeat(MAX_COMMENT_CHARS)).is_ok());
    }

    #[test]
    fn a_device_is_stored_as_a_hash_that_differs_from_its_id() {
        let h = device_hash("abc");
        assert_eq!(h.len(), 64);
        assert!(!h.contains("abc"));
        assert_eq!(h, device_hash("abc"));
        assert_ne!(h, device_hash("abd"));
        assert_eq!(one_decimal(11.0 / 3.0), 3.7);
    }
}

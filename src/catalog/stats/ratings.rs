//! Ratings (评单) by station, institute, center, speaker, topic, film and period: read
//! straight from `session_ratings` (few rows next to viewer rows), with the statistics'
//! filters. A rating counts on the Asia/Shanghai day its session started, like every
//! other figure of that session.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::super::ratings::one_decimal;
use super::calendar::{period_label, shanghai_day};
use super::query::filters;
use super::{Catalog, CatalogError, JOINS, StatsQuery};

/// What rows of a ratings table stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingGroup {
    /// One row per period.
    All,
    /// Per center.
    Center,
    /// Per institute.
    Institute,
    /// Per station.
    Station,
    /// Per film (sessions without one form group 0).
    Film,
    /// Per speaker as written on the session (empty when none was given).
    Speaker,
    /// Per topic (sessions without one form group 0).
    Topic,
}

impl RatingGroup {
    /// `group=` of `/api/stats/ratings`; absent is `all`.
    pub fn parse(text: Option<&str>) -> Result<RatingGroup, CatalogError> {
        Ok(match text.unwrap_or("all") {
            "all" => RatingGroup::All,
            "center" => RatingGroup::Center,
            "institute" => RatingGroup::Institute,
            "station" => RatingGroup::Station,
            "film" => RatingGroup::Film,
            "speaker" => RatingGroup::Speaker,
            "topic" => RatingGroup::Topic,
            other => {
                return Err(CatalogError::Invalid {
                    field: "group",
                    reason: format!(
                        "{other:?}; use all, center, institute, station, film, speaker or topic"
                    ),
                });
            }
        })
    }
}

/// One row of a ratings table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatingRow {
    /// `total`, a day, `2026-W14`, a month, `2026-Q2` or a year.
    pub period: String,
    /// The center, institute, station, film or topic id; 0 for all, a speaker, or none.
    pub group_id: i64,
    /// Its name (the speaker's for `group=speaker`); empty for all or none.
    pub group: String,
    /// Sessions with at least one rating.
    pub sessions: i64,
    /// Ratings given.
    pub ratings: i64,
    /// Their mean score, one decimal.
    pub average: f64,
}

impl Catalog {
    /// Ratings of the sessions `q` selects, per `group` and `q.period`, ordered by period
    /// then group name.
    pub async fn stats_ratings(
        &self,
        q: &StatsQuery,
        group: RatingGroup,
        now_ms: i64,
    ) -> Result<Vec<RatingRow>, CatalogError> {
        let (filter, args, kind) = filters(q);
        // `JOINS` starts at `FROM sessions s`; ratings join onto it.
        let sql = format!(
            "SELECT s.id, s.started_at, c.id, c.name, i.id, i.name, st.id, st.name, \
             COALESCE(s.film_id, 0), COALESCE(f.title, ''), s.speaker, \
             COALESCE(s.topic_id, 0), COALESCE(t.name, ''), r.score \
             {JOINS} JOIN session_ratings r ON r.session_id = s.id \
             LEFT JOIN topics t ON t.id = s.topic_id {filter}"
        );
        type Row = (
            i64,
            i64,
            i64,
            String,
            i64,
            String,
            i64,
            String,
            i64,
            String,
            String,
            i64,
            String,
            i64,
        );
        let mut query = sqlx::query_as::<_, Row>(AssertSqlSafe(sql)).bind(now_ms);
        for a in &args {
            query = query.bind(*a);
        }
        if let Some(kind) = kind {
            query = query.bind(kind);
        }
        let rows = query.fetch_all(&self.pool).await?;

        struct Acc {
            sessions: FxHashSet<i64>,
            ratings: i64,
            sum: i64,
        }
        let mut groups: FxHashMap<(String, i64, String), Acc> = FxHashMap::default();
        for r in rows {
            let (session, started, c, cn, i, iname, st, stn, film, ft, speaker, topic, tn, score) =
                r;
            let key = match group {
                RatingGroup::All => (0, String::new()),
                RatingGroup::Center => (c, cn),
                RatingGroup::Institute => (i, iname),
                RatingGroup::Station => (st, stn),
                RatingGroup::Film => (film, ft),
                RatingGroup::Speaker => (0, speaker),
                RatingGroup::Topic => (topic, tn),
            };
            let period = period_label(q.period, shanghai_day(started));
            let acc = groups.entry((period, key.0, key.1)).or_insert(Acc {
                sessions: FxHashSet::default(),
                ratings: 0,
                sum: 0,
            });
            acc.sessions.insert(session);
            acc.ratings += 1;
            acc.sum += score;
        }
        let mut out: Vec<RatingRow> = groups
            .into_iter()
            .map(|((period, group_id, group), a)| RatingRow {
                period,
                group_id,
                group,
                sessions: a.sessions.len() as i64,
                ratings: a.ratings,
                average: one_decimal(a.sum as f64 / a.ratings as f64),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.period, &a.group, a.group_id).cmp(&(&b.period, &b.group, b.group_id))
        });
        Ok(out)
    }
}

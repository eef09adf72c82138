//! Statistics requests: what a report may ask for, checked before any SQL is built.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};

use super::calendar::{DAY_MS, shanghai_midnight_ms};
use crate::catalog::{CatalogError, SessionKind};

/// The level a filter or a scope names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A 中心.
    Center,
    /// A 所.
    Institute,
    /// A 站.
    Station,
}

impl Level {
    fn column(self) -> &'static str {
        match self {
            Level::Center => "c.id",
            Level::Institute => "i.id",
            Level::Station => "st.id",
        }
    }
}

/// What rows of a statistics table stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One row per period for everything selected.
    All,
    /// Per center.
    Center,
    /// Per institute.
    Institute,
    /// Per station.
    Station,
    /// Per film (sessions without a film form group 0).
    Film,
}

/// The time buckets of a statistics table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The whole range in one bucket.
    Total,
    /// Asia/Shanghai calendar day.
    Day,
    /// ISO week (Monday to Sunday).
    Week,
    /// Calendar month.
    Month,
    /// Calendar quarter.
    Quarter,
    /// Calendar year.
    Year,
}

/// A checked statistics request.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Only sessions of this center, institute or station.
    pub level: Option<(Level, i64)>,
    /// First day (Asia/Shanghai), inclusive.
    pub from: Option<NaiveDate>,
    /// Last day (Asia/Shanghai), inclusive.
    pub to: Option<NaiveDate>,
    /// Only this kind of session.
    pub kind: Option<SessionKind>,
    /// Only sessions showing this film.
    pub film: Option<i64>,
    /// Rows per what.
    pub group: GroupBy,
    /// Rows per which period.
    pub period: Period,
    /// Most rows of a session listing.
    pub limit: i64,
}

fn invalid(field: &'static str, reason: String) -> CatalogError {
    CatalogError::Invalid { field, reason }
}

fn parse_day(field: &'static str, text: &str) -> Result<NaiveDate, CatalogError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| (2000..=2100).contains(&d.year()))
        .ok_or_else(|| {
            invalid(
                field,
                format!("{text:?} is not a date like 2026-03-31 between 2000 and 2100"),
            )
        })
}

impl StatsQuery {
    /// Reads and checks query parameters: `level` + `id`, `from`, `to` (YYYY-MM-DD,
    /// Asia/Shanghai), `kind`, `film`, `group`, `period`, `limit`. Unknown parameters are
    /// refused so a typo does not silently widen a report.
    pub fn parse(params: &HashMap<String, String>) -> Result<StatsQuery, CatalogError> {
        const KNOWN: [&str; 10] = [
            "level", "id", "from", "to", "kind", "film", "group", "period", "limit", "format",
        ];
        if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(
                "parameter",
                format!("unknown parameter {unknown:?}; known: {}", KNOWN.join(", ")),
            ));
        }
        let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let level = match (get("level"), get("id")) {
            (None, None) => None,
            (Some(level), Some(id)) => {
                let level = match level {
                    "center" => Level::Center,
                    "institute" => Level::Institute,
                    "station" => Level::Station,
                    other => {
                        return Err(invalid(
                            "level",
                            format!("{other:?} is not one of center, institute, station"),
                        ));
                    }
                };
                let id = id
                    .parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| invalid("id", format!("{id:?} is not a positive number")))?;
                Some((level, id))
            }
            _ => {
                return Err(invalid(
                    "level",
                    "give level and id together (e.g. level=center&id=3)".into(),
                ));
            }
        };
        let from = get("from").map(|t| parse_day("from", t)).transpose()?;
        let to = get("to").map(|t| parse_day("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(invalid(
                "to",
                format!("the range ends ({t}) before it starts ({f})"),
            ));
        }
        let kind = get("kind")
            .map(|k| {
                SessionKind::parse(k).ok_or_else(|| {
                    invalid(
                        "kind",
                        format!("{k:?} is not one of lecture, film_class, other"),
                    )
                })
            })
            .transpose()?;
        let film = get("film")
            .map(|f| {
                f.parse::<i64>()
                    .ok()
                    .filter(|f| *f > 0)
                    .ok_or_else(|| invalid("film", format!("{f:?} is not a film id")))
            })
            .transpose()?;
        let group = match get("group").unwrap_or("all") {
            "all" => GroupBy::All,
            "center" => GroupBy::Center,
            "institute" => GroupBy::Institute,
            "station" => GroupBy::Station,
            "film" => GroupBy::Film,
            other => {
                return Err(invalid(
                    "group",
                    format!("{other:?} is not one of all, center, institute, station, film"),
                ));
            }
        };
        let period = match get("period").unwrap_or("total") {
            "total" => Period::Total,
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "quarter" => Period::Quarter,
            "year" => Period::Year,
            other => {
                return Err(invalid(
                    "period",
                    format!("{other:?} is not one of total, day, week, month, quarter, year"),
                ));
            }
        };
        let limit = get("limit")
            .map(|l| {
                l.parse::<i64>()
                    .ok()
                    .filter(|l| (1..=10_000).contains(l))
                    .ok_or_else(|| invalid("limit", format!("{l:?} is not between 1 and 10000")))
            })
            .transpose()?
            .unwrap_or(500);
        Ok(StatsQuery {
            level,
            from,
            to,
            kind,
            film,
            group,
            period,
            limit,
        })
    }

    /// An unfiltered whole-range query, for code that builds one by hand.
    pub fn all() -> StatsQuery {
        StatsQuery {
            level: None,
            from: None,
            to: None,
            kind: None,
            film: None,
            group: GroupBy::All,
            period: Period::Total,
            limit: 500,
        }
    }
}

/// Builds the `WHERE` clause for the filters; parameters start at `$2` (`$1` is now).
pub(super) fn filters(q: &StatsQuery) -> (String, Vec<i64>, Option<&'static str>) {
    // `$1` (now) is named here so every statement built on these filters uses it.
    let mut sql = String::from("WHERE CAST($1 AS BIGINT) IS NOT NULL");
    let mut args = Vec::new();
    if let Some((level, id)) = q.level {
        args.push(id);
        sql += &format!(" AND {} = ${}", level.column(), args.len() + 1);
    }
    if let Some(from) = q.from {
        args.push(shanghai_midnight_ms(from));
        sql += &format!(" AND s.started_at >= ${}", args.len() + 1);
    }
    if let Some(to) = q.to {
        args.push(shanghai_midnight_ms(to) + DAY_MS);
        sql += &format!(" AND s.started_at < ${}", args.len() + 1);
    }
    if let Some(film) = q.film {
        args.push(film);
        sql += &format!(" AND s.film_id = ${}", args.len() + 1);
    }
    let kind = q.kind.map(SessionKind::as_str);
    if kind.is_some() {
        sql += &format!(" AND s.kind = ${}", args.len() + 2);
    }
    (sql, args, kind)
}

/// A bound value of [`replay_filters`]: ids and days are bound as what they are.
#[derive(Debug, Clone)]
pub(super) enum ReplayArg {
    /// A center, institute, station or film id.
    Id(i64),
    /// A day, `YYYY-MM-DD` (as `replay_views.day` holds it; such text sorts as dates).
    Day(String),
    /// A session kind's spelling.
    Kind(&'static str),
}

/// The `WHERE` clause of a replay statistics read (`rv` the replay views, `s` the
/// recording's session, `st`/`i`/`c` its station, institute and center): the range is
/// the day *watched*, the other filters the session's; parameters start at `$1`.
pub(super) fn replay_filters(q: &StatsQuery) -> (String, Vec<ReplayArg>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let mut push = |condition: &str, arg: ReplayArg| {
        args.push(arg);
        conditions.push(format!("{condition} ${}", args.len()));
    };
    if let Some((level, id)) = q.level {
        push(&format!("{} =", level.column()), ReplayArg::Id(id));
    }
    if let Some(from) = q.from {
        push(
            "rv.day >=",
            ReplayArg::Day(from.format("%Y-%m-%d").to_string()),
        );
    }
    if let Some(to) = q.to {
        push(
            "rv.day <=",
            ReplayArg::Day(to.format("%Y-%m-%d").to_string()),
        );
    }
    if let Some(film) = q.film {
        push("s.film_id =", ReplayArg::Id(film));
    }
    if let Some(kind) = q.kind {
        push("s.kind =", ReplayArg::Kind(kind.as_str()));
    }
    let sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_say_why() {
        let q = |pairs: &[(&str, &str)]| {
            StatsQuery::parse(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(q(&[("from", "2026-02-30")]).is_err());
        assert!(q(&[("from", "2026-03-02"), ("to", "2026-03-01")]).is_err());
        assert!(q(&[("level", "center")]).is_err());
        assert!(q(&[("period", "fortnight")]).is_err());
        assert!(q(&[("colour", "red")]).is_err());
        assert!(q(&[("level", "station"), ("id", "3"), ("period", "month")]).is_ok());
    }
}

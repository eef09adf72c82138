//! The programme (issue 25): which planned items a city, center, institute or station
//! shows between two days, its parameters checked and named, and the per-station and
//! per-center reads behind the calendar feeds. Split from `catalog/planned.rs`, whose row
//! type and SQL builders it shares.
//!
//! SQL text built with `format!` here only splices `&'static str` fragments chosen in this
//! file and its parent; values are always bound.

use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::super::{Catalog, CatalogError, shanghai_midnight_ms};
use super::{ItemKind, ItemRow, PlannedItem, bad, item, items_sql, station_items_sql};
use crate::ids::{CenterId, InstituteId, StationId};

/// Most items one programme answer lists.
pub const PROGRAMME_MAX_ITEMS: i64 = 1000;

/// Longest programme range, days (`to` inclusive).
pub const PROGRAMME_MAX_DAYS: i64 = 366;

/// Which part of the city a programme covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgrammeLevel {
    /// Every station.
    City,
    /// One center's stations.
    Center(CenterId),
    /// One institute's stations.
    Institute(InstituteId),
    /// One station.
    Station(StationId),
}

/// A programme request, checked.
#[derive(Debug, Clone)]
pub struct ProgrammeQuery {
    /// Which stations.
    pub level: ProgrammeLevel,
    /// First day (Asia/Shanghai).
    pub from: chrono::NaiveDate,
    /// Last day, inclusive.
    pub to: chrono::NaiveDate,
    /// Only this kind.
    pub kind: Option<ItemKind>,
    /// At most this many items.
    pub limit: i64,
}

/// A programme: its days and items by start.
#[derive(Debug, Clone, Serialize)]
pub struct Programme {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// Items by start.
    pub items: Vec<PlannedItem>,
    /// Whether more items fell in the range than `limit`.
    pub truncated: bool,
}

impl ProgrammeQuery {
    /// Checks the parameters of `GET /api/programme` (`level`, `id`, `from`, `to`, `kind`,
    /// `limit`); each error names its parameter. `today` fills missing dates (from today,
    /// to a week later). A station's `id` may be its channel; whether the id exists is
    /// [`Catalog::programme`]'s to say.
    pub fn parse(
        level: Option<&str>,
        id: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        kind: Option<&str>,
        limit: Option<&str>,
        today: chrono::NaiveDate,
    ) -> Result<(ProgrammeQuery, Option<String>), CatalogError> {
        let day = |field: &'static str, text: Option<&str>, default: chrono::NaiveDate| match text
            .filter(|t| !t.is_empty())
        {
            None => Ok(default),
            Some(t) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
                bad(
                    field,
                    format!("{t:?} is not a date: use YYYY-MM-DD, e.g. 2026-12-07"),
                )
            }),
        };
        let from = day("from", from, today)?;
        let to = day("to", to, from + chrono::Duration::days(6))?;
        if from > to {
            return Err(bad("from", format!("{from} is after to ({to})")));
        }
        if (to - from).num_days() + 1 > PROGRAMME_MAX_DAYS {
            return Err(bad(
                "to",
                format!("the range {from} to {to} is longer than {PROGRAMME_MAX_DAYS} days"),
            ));
        }
        let kind = match kind.filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(
                ItemKind::parse(k)
                    .ok_or_else(|| bad("kind", format!("{k:?} is not lecture or film_class")))?,
            ),
        };
        let limit = match limit.filter(|l| !l.is_empty()) {
            None => 200,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if (1..=PROGRAMME_MAX_ITEMS).contains(&n) => n,
                _ => {
                    return Err(bad(
                        "limit",
                        format!("{l:?} is not a number from 1 to {PROGRAMME_MAX_ITEMS}"),
                    ));
                }
            },
        };
        let id = id.filter(|i| !i.is_empty());
        let numeric = |id: Option<&str>| -> Result<i64, CatalogError> {
            let text = id.ok_or_else(|| bad("id", "missing: give the id for this level"))?;
            text.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("id", format!("{text:?} is not a numeric id")))
        };
        let mut channel = None;
        let level = match level.unwrap_or("city") {
            "city" | "" => ProgrammeLevel::City,
            "center" => ProgrammeLevel::Center(CenterId(numeric(id)?)),
            "institute" => ProgrammeLevel::Institute(InstituteId(numeric(id)?)),
            "station" => match id.map(|i| i.parse::<i64>()) {
                Some(Ok(n)) if n > 0 => ProgrammeLevel::Station(StationId(n)),
                Some(_) => {
                    let text = id.unwrap_or_default();
                    if crate::ids::ChannelName::parse(text).is_none() {
                        return Err(bad(
                            "id",
                            format!("{text:?} is neither a station id nor a channel"),
                        ));
                    }
                    channel = Some(text.to_string());
                    ProgrammeLevel::Station(StationId(0))
                }
                None => return Err(bad("id", "missing: give the station's id or channel")),
            },
            other => {
                return Err(bad(
                    "level",
                    format!("{other:?} is not one of city, center, institute, station"),
                ));
            }
        };
        Ok((
            ProgrammeQuery {
                level,
                from,
                to,
                kind,
                limit,
            },
            channel,
        ))
    }
}

impl Catalog {
    /// The items of a programme, by start.
    pub async fn programme(
        &self,
        query: &ProgrammeQuery,
        now_ms: i64,
    ) -> Result<Programme, CatalogError> {
        const RANGE: &str = "p.starts_at >= $2 AND p.starts_at < $3 AND ($4 = '' OR p.kind = $4)";
        let (sql, id) = match query.level {
            ProgrammeLevel::City => (station_items_sql("$1 = 0", RANGE, "$5"), 0),
            ProgrammeLevel::Center(c) => {
                self.center(c).await?;
                (
                    items_sql(
                        self.is_postgres,
                        "s.institute_id IN (SELECT id FROM institutes WHERE center_id = $1)",
                        RANGE,
                        "$5",
                    ),
                    c.0,
                )
            }
            ProgrammeLevel::Institute(i) => {
                self.institute_center(i)
                    .await?
                    .ok_or_else(|| CatalogError::NotFound(format!("no institute {i}")))?;
                (
                    items_sql(self.is_postgres, "s.institute_id = $1", RANGE, "$5"),
                    i.0,
                )
            }
            ProgrammeLevel::Station(s) => {
                self.station_placement(s).await?;
                (station_items_sql("p.station_id = $1", RANGE, "$5"), s.0)
            }
        };
        let from_ms = shanghai_midnight_ms(query.from);
        let to_ms = shanghai_midnight_ms(query.to + chrono::Duration::days(1));
        let rows: Vec<ItemRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(query.kind.map_or("", ItemKind::as_str))
            .bind(query.limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let truncated = rows.len() as i64 > query.limit;
        let items = rows
            .into_iter()
            .take(query.limit as usize)
            .map(|r| item(r, now_ms))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Programme {
            from: query.from.format("%Y-%m-%d").to_string(),
            to: query.to.format("%Y-%m-%d").to_string(),
            items,
            truncated,
        })
    }

    /// The items of one station from `from_ms` on (for its calendar feed), by start, at
    /// most `limit`.
    pub async fn station_items(
        &self,
        station: StationId,
        from_ms: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<PlannedItem>, CatalogError> {
        let sql = station_items_sql("p.station_id = $1", "p.starts_at >= $2", "$3");
        self.items_where(sql, station.0, from_ms, limit, now_ms)
            .await
    }

    /// The items of one center's stations from `from_ms` on, by start, at most `limit`.
    pub async fn center_items(
        &self,
        center: CenterId,
        from_ms: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<PlannedItem>, CatalogError> {
        self.center(center).await?;
        let sql = items_sql(
            self.is_postgres,
            "s.institute_id IN (SELECT id FROM institutes WHERE center_id = $1)",
            "p.starts_at >= $2",
            "$3",
        );
        self.items_where(sql, center.0, from_ms, limit, now_ms)
            .await
    }

    async fn items_where(
        &self,
        sql: String,
        id: i64,
        from_ms: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<PlannedItem>, CatalogError> {
        let rows: Vec<ItemRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .bind(from_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| item(r, now_ms)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        level: &str,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<(ProgrammeQuery, Option<String>), CatalogError> {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        ProgrammeQuery::parse(
            Some(level),
            Some(id),
            Some(from),
            Some(to),
            None,
            None,
            today,
        )
    }

    fn field(r: Result<(ProgrammeQuery, Option<String>), CatalogError>) -> &'static str {
        match r {
            Err(CatalogError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid parameter, got {other:?}"),
        }
    }

    #[test]
    fn programme_parameters_are_checked_and_named() {
        let (q, _) = parse("city", "", "", "").unwrap();
        assert_eq!(q.to - q.from, chrono::Duration::days(6));
        assert_eq!(field(parse("town", "", "", "")), "level");
        assert_eq!(field(parse("center", "x", "", "")), "id");
        assert_eq!(field(parse("center", "", "", "")), "id");
        assert_eq!(field(parse("city", "", "2026-13-01", "")), "from");
        assert_eq!(field(parse("city", "", "2026-12-01", "2026/12/02")), "to");
        assert_eq!(field(parse("city", "", "2026-12-08", "2026-12-07")), "from");
        assert_eq!(field(parse("city", "", "2026-01-01", "2027-01-02")), "to");
        assert!(parse("city", "", "2026-01-01", "2027-01-01").is_ok());
        assert!(parse("city", "", "2026-01-01", "2026-12-31").is_ok());
        let (q, channel) = parse("station", "st-5", "", "").unwrap();
        assert_eq!(q.level, ProgrammeLevel::Station(StationId(0)));
        assert_eq!(channel.as_deref(), Some("st-5"));
        assert_eq!(field(parse("station", "No Such!", "", "")), "id");
    }
}

//! Rollup reading: one `SELECT` per rollup and stretch of the range, run at once and
//! returned as rows for [`Catalog::stats`] to merge.

use sqlx::AssertSqlSafe;

use super::calendar::{Stretch, day_number};
use super::copy::{copy_rows, inline_args, parse_copy};
use super::rollup_write::Rollup;
use super::{DayRow, GroupBy, Level, Period, StatsQuery};
use crate::catalog::Catalog;

/// Day ranges shorter than this (in days) are read through `station_days_day` (which
/// carries every column, migration 0011) on SQLite when they span a province or a center;
/// longer ones scan the station-leading key.
const MAX_INDEXED_DAYS: i64 = 62;

/// Day ranges shorter than this (in days) grouped by station are read without `GROUP BY`.
const MAX_RAW_DAYS: i64 = 7;

/// The figures of a rollup read, after its group and name, in [`DayRow`] order.
const ROW_FIGURES: [&str; 10] = [
    "day",
    "sessions",
    "peak",
    "in_person",
    "online",
    "mobile",
    "pc",
    "tv",
    "other",
    "viewer_ms",
];

/// The rollup figures of the rows of `t` summed, named as the rollup columns.
fn sums(t: &str) -> String {
    format!(
        "MIN({t}.day) AS day, CAST(SUM({t}.sessions) AS BIGINT) AS sessions, \
         MAX({t}.peak) AS peak, CAST(SUM({t}.in_person) AS BIGINT) AS in_person, \
         CAST(SUM({t}.online) AS BIGINT) AS online, CAST(SUM({t}.mobile) AS BIGINT) AS mobile, \
         CAST(SUM({t}.pc) AS BIGINT) AS pc, CAST(SUM({t}.tv) AS BIGINT) AS tv, \
         CAST(SUM({t}.other) AS BIGINT) AS other, \
         CAST(SUM({t}.viewer_ms) AS BIGINT) AS viewer_ms"
    )
}

/// A rollup row's figures as they are, named as [`sums`] names them.
fn figures(t: &str) -> String {
    format!(
        "{t}.day AS day, {t}.sessions AS sessions, {t}.peak AS peak, \
         {t}.in_person AS in_person, {t}.online AS online, {t}.mobile AS mobile, {t}.pc AS pc, \
         {t}.tv AS tv, {t}.other AS other, {t}.viewer_ms AS viewer_ms"
    )
}

/// `GROUP BY` the group, and the period unless the query is for the whole range: a
/// constant bucket is left out so that SQLite sums rows in key order instead of sorting.
fn group_by(q: &StatsQuery, gid: &str, bucket: &str) -> String {
    if q.period == Period::Total {
        gid.to_string()
    } else {
        format!("{gid}, {bucket}")
    }
}

impl Catalog {
    /// The rows of the rollups `reads` for `q` (see [`Catalog::rollup_select`]).
    ///
    /// The reads run at once, each on its own connection, and their rows are merged per
    /// group and period by [`Catalog::stats`]: for a province-wide ranking of the last 365
    /// days (a year row, a month row and two edge days per station) that costs less than a
    /// `UNION ALL` summed again in SQL, whose outer `GROUP BY` over 50,000 rows was half the
    /// query on SQLite, and the reads share the cores.
    pub(super) async fn rollup_read(
        &self,
        q: &StatsQuery,
        reads: &[(Rollup, Stretch)],
    ) -> Result<Vec<Vec<DayRow>>, sqlx::Error> {
        let parts = reads.iter().map(|&(rollup, stretch)| {
            let mut args = Vec::new();
            let select = self.rollup_select(q, rollup, stretch, &mut args);
            let catalog = self.clone();
            let group = q.group;
            // Each read on its own task: decoding 20,000 rows is CPU work, and tasks
            // spread over the runtime's worker threads.
            tokio::spawn(async move { catalog.rollup_fetch(group, select, args).await })
        });
        let mut rows = Vec::with_capacity(reads.len());
        for part in futures::future::join_all(parts).await {
            rows.push(part.map_err(|e| sqlx::Error::Protocol(format!("rollup read: {e}")))??);
        }
        Ok(rows)
    }

    /// The rows of one rollup `select` (with its parameters `args`), named.
    async fn rollup_fetch(
        &self,
        group: GroupBy,
        select: String,
        args: Vec<i64>,
    ) -> Result<Vec<DayRow>, sqlx::Error> {
        let (names, name) = match group {
            GroupBy::All => ("", "'全部'"),
            GroupBy::Center => ("JOIN centers n ON n.id = a.gid", "n.name"),
            GroupBy::Institute => ("JOIN institutes n ON n.id = a.gid", "n.name"),
            GroupBy::Station => ("JOIN stations n ON n.id = a.gid", "n.name"),
            GroupBy::Film => (
                "LEFT JOIN films n ON n.id = a.gid",
                "COALESCE(n.title, '（无影片）')",
            ),
        };
        let row = format!(
            "a.gid, {name}, {}",
            ROW_FIGURES.map(|f| format!("a.{f}")).join(", ")
        );
        if let Some(pool) = &self.rows {
            // In group order, PostgreSQL merge-joins the names: a year of 20,000 stations
            // comes out of `station_periods_cover` in station order, and the join then
            // walks the stations' key instead of hashing all of them.
            let order = if names.is_empty() {
                ""
            } else {
                " ORDER BY a.gid"
            };
            // Every figure as BIGINT: binary COPY carries no types, and `parse_copy` reads
            // eight bytes each. Read as binary `COPY`: sqlx's row stream and per-column
            // checks were most of the cost of a province-wide ranking's many rows;
            // `COPY` takes no parameters, so they are written in (numbers only).
            let select = inline_args(&select, &args);
            let copied = copy_rows(
                pool,
                &format!(
                    "COPY (SELECT CAST(a.gid AS BIGINT), {name}, {figures} FROM ({select}) a \
                     {names}{order}) TO STDOUT (FORMAT binary)",
                    figures = ROW_FIGURES
                        .map(|f| format!("CAST(a.{f} AS BIGINT)"))
                        .join(", "),
                ),
            )
            .await?;
            return parse_copy(&copied)
                .map_err(|e| sqlx::Error::Protocol(format!("rollup copy: {e}")));
        }
        // On SQLite the rows come back packed in one JSON array: a ranking of 20,000
        // stations is then one value through the driver instead of 20,000 rows, each with
        // the `Any` driver's per-row cost. PostgreSQL's binary rows are cheaper than its
        // json_agg.
        let sql = format!("SELECT json_group_array(json_array({row})) FROM ({select}) a {names}");
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for a in args {
            query = query.bind(a);
        }
        let json = query.fetch_one(&self.pool).await?;
        serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }

    /// A `SELECT` of one rollup's rows for `q` over `stretch`, summed per group (`gid`) and
    /// period (`bucket`) unless its rows are about one per group already (then read as
    /// they are, for [`Catalog::stats`] to merge); its parameters are pushed on `args`.
    fn rollup_select(
        &self,
        q: &StatsQuery,
        rollup: Rollup,
        stretch: Stretch,
        args: &mut Vec<i64>,
    ) -> String {
        let gid = match q.group {
            GroupBy::All => "CAST(0 AS BIGINT)",
            GroupBy::Center => "r.center_id",
            GroupBy::Institute => "r.institute_id",
            GroupBy::Station => "r.station_id",
            GroupBy::Film => "r.film_id",
        };
        // Periods as bucket numbers: ISO weeks start on Monday and day 0 was a Thursday.
        let bucket = match q.period {
            Period::Total => "CAST(0 AS BIGINT)",
            Period::Day => "r.day",
            Period::Week => "(r.day + 3) / 7",
            Period::Month => "r.month",
            Period::Quarter => "r.month / 3",
            Period::Year => "r.month / 12",
        };
        let mut conditions = Vec::new();
        if let Some((level, id)) = q.level {
            args.push(id);
            let column = match level {
                Level::Center => "r.center_id",
                Level::Institute => "r.institute_id",
                Level::Station => "r.station_id",
            };
            conditions.push(format!("{column} = ${}", args.len()));
        }
        // One span of `station_periods` per station and one kind: each row is already its
        // own group, and aggregating 20,000 of them cost more than reading them.
        // [`Catalog::stats`] sums what comes back per group and period anyway, so a read
        // that holds about as many rows as groups is read as it is.
        let mut one_row_each = false;
        let (column, from, to) = match stretch {
            Stretch::Days(from, to) => ("r.day", from.map(day_number), to.map(day_number)),
            Stretch::Months(span, from, to) => {
                if matches!(rollup, Rollup::StationPeriods { .. }) {
                    conditions.push(format!("r.span = {span}"));
                }
                ("r.month", from, to)
            }
        };
        match (from, to, stretch) {
            // One span: an equality keeps a province-wide read in key (station) order.
            (Some(from), Some(to), Stretch::Months(span, ..)) if to - from + 1 == span => {
                one_row_each = matches!(rollup, Rollup::StationPeriods { .. })
                    && q.group == GroupBy::Station
                    && (q.kind.is_some() || rollup.all_kinds());
                args.push(from);
                conditions.push(format!("{column} = ${}", args.len()));
            }
            _ => {
                if let Some(from) = from {
                    args.push(from);
                    conditions.push(format!("{column} >= ${}", args.len()));
                }
                if let Some(to) = to {
                    args.push(to);
                    conditions.push(format!("{column} <= ${}", args.len()));
                }
            }
        }
        if let Some(film) = q.film {
            args.push(film);
            conditions.push(format!("r.film_id = ${}", args.len()));
        }
        // The kind comes from [`SessionKind`], never from the request's text.
        if let Some(kind) = q.kind {
            conditions.push(format!("r.kind = '{}'", kind.as_str()));
        } else if rollup.all_kinds() {
            conditions.push("r.kind = '*'".into());
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        // A few days across a whole province or center (the edge days of a range split
        // into spans): SQLite would skip-scan the station-leading key, 20,000 seeks, to
        // avoid sorting a few thousand rows; the day index reads just those days.
        let few_days = matches!(stretch, Stretch::Days(Some(from), Some(to))
            if day_number(to) - day_number(from) < MAX_INDEXED_DAYS);
        // A station has at most a few rows a day: a few days by station are read as they
        // are (PostgreSQL's HashAggregate of them spilled to disk).
        one_row_each |= rollup == Rollup::StationDays
            && q.group == GroupBy::Station
            && matches!(stretch, Stretch::Days(Some(from), Some(to))
                if day_number(to) - day_number(from) < MAX_RAW_DAYS);
        let wide = matches!(q.level, None | Some((Level::Center, _)));
        let hint = match rollup {
            _ if self.is_postgres || !wide => "",
            Rollup::StationDays if few_days => " INDEXED BY station_days_day",
            // Span, kind and month lead the primary key of `station_periods`, so a month or
            // a year of every station is one stretch of it. SQLite's planner instead
            // skip-scans `station_periods_institute` (1,000 institutes) and looks each row
            // up by key, several times slower for a province-wide year.
            Rollup::StationPeriods { .. } => " INDEXED BY sqlite_autoindex_station_periods_1",
            _ => "",
        };
        if one_row_each {
            return format!(
                "SELECT {gid} AS gid, {bucket} AS bucket, {} FROM {} r{hint} {filter}",
                figures("r"),
                rollup.table(),
            );
        }
        format!(
            "SELECT {gid} AS gid, {bucket} AS bucket, {} FROM {} r{hint} {filter} GROUP BY {}",
            sums("r"),
            rollup.table(),
            group_by(q, "1", "2"),
        )
    }
}

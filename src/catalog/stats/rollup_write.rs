//! Rollup writing: the figures of sessions that are over are frozen in `session_figures`
//! and summed into the rollups (see [`Rollup`]); a change to a frozen session rebuilds the
//! rollup rows it counts in.

use chrono::NaiveDate;
use sqlx::AssertSqlSafe;

use super::calendar::{
    DAY_MS, SHANGHAI_OFFSET_MS, first_of_month, month_number, shanghai_midnight_ms,
};
use crate::catalog::{Catalog, CatalogError};

/// How long after its end a session's figures are frozen into `session_figures`; the
/// audience writer has written every leave by then (it flushes within about a second).
pub const FIGURES_AFTER_MS: i64 = 10 * 60_000;

/// A rollup of frozen session figures (migrations 0005, 0008 and 0009).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rollup {
    /// Station x day x kind x film.
    StationDays,
    /// Center x day x kind x film.
    CenterDays,
    /// Day x kind x film over every station: the whole city's (or province's) days.
    AllDays,
    /// Station x calendar span of `span` months (1, 3 or 12) x kind; with `all_kinds`, the
    /// `kind = '*'` rows summing all kinds.
    StationPeriods { span: i64, all_kinds: bool },
    /// Center x month x kind; with `all_kinds`, the `kind = '*'` rows.
    CenterMonths { all_kinds: bool },
}

impl Rollup {
    const ALL: [Rollup; 11] = [
        Rollup::StationDays,
        Rollup::CenterDays,
        Rollup::AllDays,
        Rollup::StationPeriods {
            span: 12,
            all_kinds: false,
        },
        Rollup::StationPeriods {
            span: 12,
            all_kinds: true,
        },
        Rollup::StationPeriods {
            span: 3,
            all_kinds: false,
        },
        Rollup::StationPeriods {
            span: 3,
            all_kinds: true,
        },
        Rollup::StationPeriods {
            span: 1,
            all_kinds: false,
        },
        Rollup::StationPeriods {
            span: 1,
            all_kinds: true,
        },
        Rollup::CenterMonths { all_kinds: false },
        Rollup::CenterMonths { all_kinds: true },
    ];

    pub(super) fn table(self) -> &'static str {
        match self {
            Rollup::StationDays => "station_days",
            Rollup::CenterDays => "center_days",
            Rollup::StationPeriods { .. } => "station_periods",
            Rollup::AllDays => "all_days",
            Rollup::CenterMonths { .. } => "center_months",
        }
    }

    /// The column of the station or center its rows belong to; none for `all_days`.
    fn place(self) -> Option<&'static str> {
        match self {
            Rollup::StationDays | Rollup::StationPeriods { .. } => Some("station_id"),
            Rollup::CenterDays | Rollup::CenterMonths { .. } => Some("center_id"),
            Rollup::AllDays => None,
        }
    }

    /// How many months a row covers; none for day rollups.
    fn span(self) -> Option<i64> {
        match self {
            Rollup::StationPeriods { span, .. } => Some(span),
            Rollup::CenterMonths { .. } => Some(1),
            _ => None,
        }
    }

    /// Whether its rows sum all kinds (`kind = '*'`).
    pub(super) fn all_kinds(self) -> bool {
        matches!(
            self,
            Rollup::StationPeriods {
                all_kinds: true,
                ..
            } | Rollup::CenterMonths { all_kinds: true }
        )
    }
}

/// The figures both rollups hold, and how one row's figure absorbs another's.
const ROLLUP_FIGURES: [(&str, &str); 9] = [
    ("sessions", "COUNT(*)"),
    ("peak", "MAX(s.peak_viewers)"),
    ("in_person", "SUM(s.in_person)"),
    ("online", "SUM(sf.online)"),
    ("mobile", "SUM(sf.mobile)"),
    ("pc", "SUM(sf.pc)"),
    ("tv", "SUM(sf.tv)"),
    ("other", "SUM(sf.other)"),
    ("viewer_ms", "SUM(sf.viewer_ms)"),
];

impl Catalog {
    /// `year * 12 + month - 1` of a day number, in this database's dialect.
    fn month_of_day(&self, day: &str) -> String {
        if self.is_postgres {
            format!(
                "CAST(EXTRACT(YEAR FROM DATE '1970-01-01' + CAST({day} AS INTEGER)) * 12 \
                 + EXTRACT(MONTH FROM DATE '1970-01-01' + CAST({day} AS INTEGER)) - 1 AS BIGINT)"
            )
        } else {
            format!(
                "(CAST(strftime('%Y', ({day}) * 86400, 'unixepoch') AS INTEGER) * 12 \
                 + CAST(strftime('%m', ({day}) * 86400, 'unixepoch') AS INTEGER) - 1)"
            )
        }
    }

    /// `INSERT INTO` the `rollup` of the frozen sessions matching `condition` (over
    /// `sessions s`, `stations st`, `institutes i`), summed per key. With `add`, rows
    /// already there absorb the new figures; otherwise the caller has deleted them.
    fn rollup_insert(&self, rollup: Rollup, condition: &str, add: bool) -> String {
        let day = format!("(s.started_at + {SHANGHAI_OFFSET_MS}) / {DAY_MS}");
        let month = self.month_of_day(&day);
        let kind = if rollup.all_kinds() { "'*'" } else { "s.kind" };
        let (key, key_sql, place_cols, place_sql) = match rollup {
            Rollup::CenterMonths { .. } => (
                "center_id, month, kind",
                format!("i.center_id, {month}, {kind}"),
                ", day",
                format!(", MIN({day})"),
            ),
            Rollup::AllDays => (
                "day, kind, film_id",
                format!("{day}, s.kind, COALESCE(s.film_id, 0)"),
                ", month",
                format!(", MIN({month})"),
            ),
            Rollup::CenterDays => (
                "day, center_id, kind, film_id",
                format!("{day}, i.center_id, s.kind, COALESCE(s.film_id, 0)"),
                ", month",
                format!(", MIN({month})"),
            ),
            Rollup::StationDays => (
                "station_id, day, kind, film_id",
                format!("s.station_id, {day}, s.kind, COALESCE(s.film_id, 0)"),
                ", month, institute_id, center_id",
                format!(", MIN({month}), MIN(st.institute_id), MIN(i.center_id)"),
            ),
            Rollup::StationPeriods { span, .. } => (
                "span, kind, month, station_id",
                format!(
                    "CAST({span} AS BIGINT), {kind}, {}, s.station_id",
                    if span == 1 {
                        month.clone()
                    } else {
                        format!("({month}) - ({month}) % {span}")
                    }
                ),
                ", day, institute_id, center_id",
                format!(", MIN({day}), MIN(st.institute_id), MIN(i.center_id)"),
            ),
        };
        let table = rollup.table();
        let key_columns: Vec<String> = (1..=key.split(',').count())
            .map(|n| n.to_string())
            .collect();
        let names: Vec<&str> = ROLLUP_FIGURES.iter().map(|(n, _)| *n).collect();
        let sums: Vec<&str> = ROLLUP_FIGURES.iter().map(|(_, e)| *e).collect();
        let mut sql = format!(
            "INSERT INTO {table} ({key}{place_cols}, {}) \
             SELECT {key_sql}{place_sql}, {} \
             FROM sessions s JOIN session_figures sf ON sf.session_id = s.id \
             JOIN stations st ON st.id = s.station_id JOIN institutes i ON i.id = st.institute_id \
             WHERE {condition} GROUP BY {}",
            names.join(", "),
            sums.join(", "),
            key_columns.join(", "),
        );
        if add {
            let merge: Vec<String> = names
                .iter()
                .map(|n| {
                    if *n == "peak" {
                        format!(
                            "peak = CASE WHEN excluded.peak > {table}.peak \
                             THEN excluded.peak ELSE {table}.peak END"
                        )
                    } else {
                        format!("{n} = {table}.{n} + excluded.{n}")
                    }
                })
                .collect();
            sql += &format!(" ON CONFLICT ({key}) DO UPDATE SET {}", merge.join(", "));
        }
        sql
    }

    /// Freezes the figures of sessions that ended at least [`FIGURES_AFTER_MS`] before
    /// `now_ms` and adds them to the day rollups; returns how many. Statistics call it
    /// first, so it costs only what ended since the last call (an index on
    /// `(figured, ended_at)` finds them).
    pub async fn freeze_session_figures(&self, now_ms: i64) -> Result<u64, CatalogError> {
        let cutoff = now_ms - FIGURES_AFTER_MS;
        // Usually nothing is due: an index probe answers that without planning the insert.
        let due: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM sessions WHERE figured = 0 AND ended_at IS NOT NULL \
             AND ended_at < $1 LIMIT 1",
        )
        .bind(cutoff)
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        // Claim the due sessions first (figured = 2 inside this transaction): a concurrent
        // freeze waits on these rows and then finds nothing left to claim, so no session
        // is added to the rollups twice.
        let claimed = sqlx::query(
            "UPDATE sessions SET figured = 2 \
             WHERE figured = 0 AND ended_at IS NOT NULL AND ended_at < $1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO session_figures (session_id, online, mobile, pc, tv, other, viewer_ms) \
             SELECT s.id, COUNT(DISTINCT v.viewer_key), \
             COUNT(DISTINCT CASE WHEN v.terminal = 'mobile' THEN v.viewer_key END), \
             COUNT(DISTINCT CASE WHEN v.terminal = 'pc' THEN v.viewer_key END), \
             COUNT(DISTINCT CASE WHEN v.terminal = 'tv' THEN v.viewer_key END), \
             COUNT(DISTINCT CASE WHEN v.terminal NOT IN ('mobile', 'pc', 'tv') THEN v.viewer_key END), \
             CAST(COALESCE(SUM(COALESCE(v.left_at, s.ended_at) - v.joined_at), 0) AS BIGINT) \
             FROM sessions s LEFT JOIN viewers v ON v.session_id = s.id \
             WHERE s.figured = 2 GROUP BY s.id ON CONFLICT (session_id) DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
        for rollup in Rollup::ALL {
            sqlx::query(AssertSqlSafe(self.rollup_insert(
                rollup,
                "s.figured = 2",
                true,
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE sessions SET figured = 1 WHERE figured = 2")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(claimed.rows_affected())
    }

    /// Rebuilds the rollup rows of a frozen session's station, center, day, month, quarter
    /// and year from
    /// the frozen figures, after its headcount or film changed; nothing for a session not
    /// frozen yet.
    pub(in crate::catalog) async fn refresh_rollups(
        &self,
        conn: &mut sqlx::AnyConnection,
        session: i64,
    ) -> Result<(), CatalogError> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT s.station_id, i.center_id, s.started_at FROM sessions s \
             JOIN stations st ON st.id = s.station_id JOIN institutes i ON i.id = st.institute_id \
             WHERE s.id = $1 AND s.figured = 1",
        )
        .bind(session)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((station, center, started_at)) = row else {
            return Ok(());
        };
        let day = (started_at + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS);
        let month = month_number(NaiveDate::default() + chrono::Duration::days(day));
        let midnight = day * DAY_MS - SHANGHAI_OFFSET_MS;
        // The bucket (`day` or first `month`) of each rollup's row, and when it starts and
        // ends (unix ms).
        let bucket_of = |rollup: Rollup| match rollup.span() {
            Some(span) => {
                let first = month - month.rem_euclid(span);
                (
                    "month",
                    first,
                    shanghai_midnight_ms(first_of_month(first)),
                    shanghai_midnight_ms(first_of_month(first + span)),
                )
            }
            None => ("day", day, midnight, midnight + DAY_MS),
        };
        let id_of = |rollup: Rollup| match rollup.place() {
            Some("station_id") => station,
            Some(_) => center,
            None => 0,
        };
        // Every rollup row the session counts in is deleted before any is rebuilt, as a
        // table of spans holds both a rollup and its all-kinds rollup.
        for rollup in Rollup::ALL {
            let (bucket, value, _, _) = bucket_of(rollup);
            // `all_days` has no place: its condition is the always-true one below.
            let place = match rollup.place() {
                Some(column) => format!("{column} = $1"),
                None => "CAST($1 AS BIGINT) = $1".into(),
            };
            let span = match rollup {
                Rollup::StationPeriods { span, .. } => format!(" AND span = {span}"),
                _ => String::new(),
            };
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE {place} AND {bucket} = $2{span}",
                rollup.table()
            )))
            .bind(id_of(rollup))
            .bind(value)
            .execute(&mut *conn)
            .await?;
        }
        for rollup in Rollup::ALL {
            let (_, _, start, end) = bucket_of(rollup);
            let place = match rollup.place() {
                Some("center_id") => "i.center_id = $1".to_string(),
                Some(column) => format!("s.{column} = $1"),
                None => "CAST($1 AS BIGINT) = $1".into(),
            };
            sqlx::query(AssertSqlSafe(self.rollup_insert(
                rollup,
                &format!("{place} AND s.started_at >= $2 AND s.started_at < $3 AND s.figured = 1"),
                false,
            )))
            .bind(id_of(rollup))
            .bind(start)
            .bind(end)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

//! Attendance statistics for administrators.
//!
//! Rules (the same on SQLite and PostgreSQL, checked by `tests/stats_catalog.rs`):
//! - A session belongs to the Asia/Shanghai day (UTC+8, no daylight saving) on which it
//!   *started*, so a film class from 23:30 to 01:10 counts once, on its first day, with all
//!   of its viewers and minutes. Days are bucketed with `(ms + 8 h) / 1 day` arithmetic so
//!   both databases agree without time-zone tables.
//! - Online viewers are distinct `viewer_key`s *per session* (a resident who leaves and
//!   rejoins counts once; one who watches two lectures counts twice), summed over sessions:
//!   that is the 人次 of the online audience. Total audience = online + in-person headcount.
//! - Viewer-minutes sum each attendance row from join to leave; a row still open counts up
//!   to the session's end (or now while live).
//! - Peak concurrency of a group is the highest session peak in it.
//! - Terminal split counts distinct viewers per terminal per session.
//! - Figures of sessions over for ten minutes are frozen in `session_figures` (computed by
//!   the same rules) so a year of statistics does not rescan millions of viewer rows, and
//!   summed into rollups (see [`Rollup`]): per station, per center and for the whole area
//!   by day, and per station and per center by month. Every figure above is a sum over
//!   sessions (or, for the peak, a maximum), so rollups answer any range, filter and
//!   grouping the API offers exactly; `tests/stats_rollup.rs` checks them against the raw
//!   rows.
//!
//! The SQL is assembled from fixed fragments in this file; every value is a bound parameter.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;
use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::{Catalog, CatalogError, SessionKind, rfc3339, session_peaks};

const DAY_MS: i64 = 86_400_000;
/// Asia/Shanghai is UTC+8 all year.
const SHANGHAI_OFFSET_MS: i64 = 8 * 3_600_000;

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

/// Unix ms of 00:00 Asia/Shanghai on `day`.
pub fn shanghai_midnight_ms(day: NaiveDate) -> i64 {
    day.signed_duration_since(NaiveDate::default()).num_days() * DAY_MS - SHANGHAI_OFFSET_MS
}

/// The Asia/Shanghai date of unix ms.
pub fn shanghai_day(ms: i64) -> NaiveDate {
    let days = (ms + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS);
    NaiveDate::default() + chrono::Duration::days(days)
}

fn period_label(period: Period, day: NaiveDate) -> String {
    match period {
        Period::Total => "total".into(),
        Period::Day => day.format("%Y-%m-%d").to_string(),
        Period::Week => {
            let w = day.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Period::Month => day.format("%Y-%m").to_string(),
        Period::Quarter => format!("{}-Q{}", day.year(), day.month0() / 3 + 1),
        Period::Year => day.year().to_string(),
    }
}

/// Distinct viewers per terminal type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Terminals {
    /// Phones and tablets.
    pub mobile: i64,
    /// Desktop browsers.
    pub pc: i64,
    /// Smart TVs.
    pub tv: i64,
    /// Unknown devices.
    pub other: i64,
}

/// One row of a statistics table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRow {
    /// Center, institute, station or film id; 0 for `group=all` (and sessions without film).
    pub group_id: i64,
    /// Its name.
    pub group_name: String,
    /// Period label: 2026-03-31, 2026-W14, 2026-03, 2026-Q1, 2026, or `total`.
    pub period: String,
    /// Sessions held.
    pub sessions: i64,
    /// Online viewers (distinct per session, summed: 人次).
    pub online_viewers: i64,
    /// Highest concurrent viewers of any session in the row.
    pub peak_viewers: i64,
    /// Watched minutes.
    pub viewer_minutes: f64,
    /// In-person headcount.
    pub in_person: i64,
    /// Online + in-person (人次).
    pub total_audience: i64,
    /// Online viewers by terminal.
    pub terminals: Terminals,
    #[serde(skip)]
    viewer_ms: i64,
}

/// One row of a session listing (the bottom of the drill-down).
#[derive(Debug, Clone, Serialize)]
pub struct SessionStats {
    /// Session id.
    pub id: i64,
    /// Center name.
    pub center: String,
    /// Institute name.
    pub institute: String,
    /// Station id.
    pub station_id: i64,
    /// Station name.
    pub station: String,
    /// lecture, film_class, other.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Lecturer.
    pub speaker: String,
    /// Film title.
    pub film: Option<String>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Asia/Shanghai day it counts on.
    pub day: String,
    /// Length in minutes.
    pub minutes: f64,
    /// Highest concurrent viewers.
    pub peak_viewers: i64,
    /// Distinct online viewers.
    pub online_viewers: i64,
    /// Watched minutes.
    pub viewer_minutes: f64,
    /// In-person headcount.
    pub in_person: i64,
    /// Online + in-person.
    pub total_audience: i64,
}

/// Rows summed per period and group: the period label of each day is made once, and a
/// row is found by label number and group without building a key string per row (a
/// province-wide ranking merges 50,000 rows from its reads).
struct Merge {
    period: Period,
    /// The label number of each day seen.
    days: FxHashMap<i64, usize>,
    /// Label numbers by label, and labels by number.
    numbers: HashMap<String, usize>,
    labels: Vec<String>,
    /// Keyed by small integers: Fx hashing them is a few instructions, SipHash was 5 %
    /// of a province-wide ranking.
    rows: FxHashMap<(usize, i64), StatsRow>,
}

impl Merge {
    fn new(period: Period) -> Merge {
        Merge {
            period,
            days: FxHashMap::default(),
            numbers: HashMap::new(),
            labels: Vec::new(),
            rows: FxHashMap::default(),
        }
    }

    /// The row of group `gid` for the period holding `day`, made empty when missing.
    fn row(&mut self, gid: i64, gname: String, day: i64) -> &mut StatsRow {
        let number = match self.days.get(&day) {
            Some(&n) => n,
            None => {
                let label = period_label(
                    self.period,
                    NaiveDate::default() + chrono::Duration::days(day),
                );
                let next = self.labels.len();
                let n = *self.numbers.entry(label.clone()).or_insert(next);
                if n == next {
                    self.labels.push(label);
                }
                self.days.insert(day, n);
                n
            }
        };
        let labels = &self.labels;
        self.rows.entry((number, gid)).or_insert_with(|| StatsRow {
            group_id: gid,
            group_name: gname,
            period: labels[number].clone(),
            sessions: 0,
            online_viewers: 0,
            peak_viewers: 0,
            viewer_minutes: 0.0,
            in_person: 0,
            total_audience: 0,
            terminals: Terminals::default(),
            viewer_ms: 0,
        })
    }

    /// The rows in period label order, then group id.
    fn into_rows(self) -> Vec<StatsRow> {
        // Label numbers follow first sight; rank them by label once, then sort by
        // integers instead of comparing label text per pair.
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_unstable_by(|&a, &b| self.labels[a].cmp(&self.labels[b]));
        let mut rank = vec![0; order.len()];
        for (r, n) in order.into_iter().enumerate() {
            rank[n] = r;
        }
        let mut rows: Vec<(usize, StatsRow)> = self
            .rows
            .into_iter()
            .map(|((number, _), row)| (rank[number], row))
            .collect();
        rows.sort_unstable_by_key(|(rank, row)| (*rank, row.group_id));
        rows.into_iter()
            .map(|(_, mut r)| {
                r.viewer_minutes = minutes(r.viewer_ms);
                r
            })
            .collect()
    }
}

fn minutes(ms: i64) -> f64 {
    (ms.max(0) as f64 / 600.0).round() / 100.0
}

/// Builds the `WHERE` clause for the filters; parameters start at `$2` (`$1` is now).
fn filters(q: &StatsQuery) -> (String, Vec<i64>, Option<&'static str>) {
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

const JOINS: &str = "FROM sessions s JOIN stations st ON st.id = s.station_id \
     JOIN institutes i ON i.id = st.institute_id JOIN centers c ON c.id = i.center_id \
     LEFT JOIN films f ON f.id = s.film_id";

/// Sessions not frozen yet, as a condition on `s`. Written as a subquery so both databases
/// start from the `(figured, ended_at)` index: with `s.figured = 0` SQLite's planner, once
/// `ANALYZE` has seen that nearly every session is frozen, scanned all of them instead.
const UNFROZEN: &str = "s.id IN (SELECT id FROM sessions WHERE figured = 0)";

/// The peaks of live sessions from their viewer rows, joined as `pk` to the sessions `s`.
fn live_peaks() -> String {
    format!(
        "LEFT JOIN ({}) pk ON pk.session_id = s.id",
        session_peaks("SELECT id FROM sessions WHERE figured = 0 AND ended_at IS NULL")
    )
}

/// A session's peak: computed from its viewer rows while it is live ([`live_peaks`]),
/// recorded at its end after that.
const PEAK: &str = "CASE WHEN s.ended_at IS NULL THEN COALESCE(pk.peak, 0) ELSE s.peak_viewers END";

/// How long after its end a session's figures are frozen into `session_figures`; the
/// audience writer has written every leave by then (it flushes within about a second).
pub const FIGURES_AFTER_MS: i64 = 10 * 60_000;

/// Day ranges shorter than this (in days) are read through `station_days_day` (which
/// carries every column, migration 0011) on SQLite when they span a province or a center;
/// longer ones scan the station-leading key.
const MAX_INDEXED_DAYS: i64 = 62;

/// Day ranges shorter than this (in days) grouped by station are read without `GROUP BY`.
const MAX_RAW_DAYS: i64 = 7;

/// A rollup row: group, group name, a day of the bucket, sessions, peak, in person,
/// online, mobile, pc, tv, other, viewer ms.
type DayRow = (
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);
/// A not-yet-frozen session: group, group name, day, peak, in person, online, mobile, pc,
/// tv, other, viewer ms.
type LiveRow = (i64, String, i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// A rollup of frozen session figures (migrations 0005, 0008 and 0009).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollup {
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

/// The spans of `station_periods`, longest first.
const SPANS: [i64; 3] = [12, 3, 1];

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

    fn table(self) -> &'static str {
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
    fn all_kinds(self) -> bool {
        matches!(
            self,
            Rollup::StationPeriods {
                all_kinds: true,
                ..
            } | Rollup::CenterMonths { all_kinds: true }
        )
    }
}

/// The part of a statistics range one rollup read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stretch {
    /// Days from .. to, inclusive; `None` is open.
    Days(Option<NaiveDate>, Option<NaiveDate>),
    /// Whole spans of `.0` months, from the span starting at month number `.1` to the one
    /// ending at `.2`, inclusive; `None` is open.
    Months(i64, Option<i64>, Option<i64>),
}

impl Stretch {
    /// Splits a range of days into the whole calendar spans in it, longest of `spans`
    /// (12, 3, 1 months) first, and the days before and after them; just the days when it
    /// holds no whole month.
    ///
    /// Rollups hold only sessions that are over, none after `today`: a range that reaches
    /// `today` is read as if it ran to the end of that year, so "the last 365 days" or
    /// "this year so far" read this year's row instead of a row per month or day.
    fn split(
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        today: NaiveDate,
        spans: &[i64],
    ) -> Vec<Stretch> {
        let to = to.map(|t| {
            if t >= today {
                NaiveDate::from_ymd_opt(t.year(), 12, 31).unwrap_or(t)
            } else {
                t
            }
        });
        let first = from.map(|f| month_number(f) + i64::from(f.day() != 1));
        let last = to.map(|t| {
            let ends_month = t.succ_opt().is_none_or(|next| next.day() == 1);
            month_number(t) - i64::from(!ends_month)
        });
        if let (Some(first), Some(last)) = (first, last)
            && first > last
        {
            return vec![Stretch::Days(from, to)];
        }
        let mut parts = Vec::new();
        Self::cover(first, last, spans, &mut parts);
        if let (Some(from), Some(first)) = (from, first)
            && from.day() != 1
        {
            parts.push(Stretch::Days(Some(from), first_of_month(first).pred_opt()));
        }
        if let (Some(to), Some(last)) = (to, last)
            && first_of_month(last + 1) <= to
        {
            parts.push(Stretch::Days(Some(first_of_month(last + 1)), Some(to)));
        }
        parts
    }

    /// Covers months `first ..= last` with the whole spans of `spans[0]` in it, and what
    /// is left at either end with the shorter spans.
    fn cover(first: Option<i64>, last: Option<i64>, spans: &[i64], parts: &mut Vec<Stretch>) {
        let Some((&span, shorter)) = spans.split_first() else {
            return;
        };
        let start = first.map(|f| (f + span - 1).div_euclid(span) * span);
        let end = last.map(|l| (l + 1).div_euclid(span) * span - 1);
        if let (Some(start), Some(end)) = (start, end)
            && start > end
        {
            return Self::cover(first, last, shorter, parts);
        }
        parts.push(Stretch::Months(span, start, end));
        if let (Some(first), Some(start)) = (first, start)
            && first < start
        {
            Self::cover(Some(first), Some(start - 1), shorter, parts);
        }
        if let (Some(last), Some(end)) = (last, end)
            && end < last
        {
            Self::cover(Some(end + 1), Some(last), shorter, parts);
        }
    }
}

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

/// `sql` with each `$n` replaced by the number `args[n - 1]`, for statements that take
/// no parameters (`COPY`). Only for SQL built here, where `$` appears in no literal.
fn inline_args(sql: &str, args: &[i64]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        match rest[at + 1..at + 1 + digits].parse::<usize>() {
            // In parentheses: `- $1` must not become the comment `--5`.
            Ok(n) if (1..=args.len()).contains(&n) => out.push_str(&format!("({})", args[n - 1])),
            _ => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// The whole output of a `COPY ... TO STDOUT` statement on PostgreSQL.
async fn copy_rows(pool: &sqlx::PgPool, statement: &str) -> Result<Vec<u8>, sqlx::Error> {
    use futures::TryStreamExt;
    let mut conn = pool.acquire().await?;
    let copied = async {
        let mut chunks = conn.copy_out_raw(statement).await?;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
    .await;
    if copied.is_err() {
        // sqlx leaves the ReadyForQuery of a COPY refused before it started unread (0.9):
        // the connection must not serve another query.
        conn.close_on_drop();
    }
    copied
}

/// Rollup rows from PostgreSQL's binary `COPY` format: group, name, then ten `BIGINT`s.
fn parse_copy(data: &[u8]) -> Result<Vec<DayRow>, String> {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if data.len() < n {
            return Err("output ends inside a row".into());
        }
        let (head, tail) = data.split_at(n);
        *data = tail;
        Ok(head)
    }
    fn int(data: &mut &[u8]) -> Result<i64, String> {
        let len = i32::from_be_bytes(take(data, 4)?.try_into().unwrap_or_default());
        match len {
            -1 => Err("a NULL figure".into()),
            8 => Ok(i64::from_be_bytes(
                take(data, 8)?.try_into().unwrap_or_default(),
            )),
            _ => Err(format!("an integer field of {len} bytes, not a BIGINT")),
        }
    }
    let mut data = data;
    if take(&mut data, SIGNATURE.len())? != SIGNATURE {
        return Err("not binary COPY output".into());
    }
    let flags = u32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default());
    if flags & (1 << 16) != 0 {
        return Err("rows carry OIDs".into());
    }
    let extension = u32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default());
    take(&mut data, extension as usize)?;
    let mut rows = Vec::new();
    loop {
        let fields = i16::from_be_bytes(take(&mut data, 2)?.try_into().unwrap_or_default());
        if fields == -1 {
            return Ok(rows);
        }
        if fields != 12 {
            return Err(format!("a row of {fields} fields, not 12"));
        }
        let gid = int(&mut data)?;
        let len = i32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default());
        let name = if len == -1 {
            String::new()
        } else if len < 0 {
            return Err(format!("a text field of {len} bytes"));
        } else {
            let bytes = take(&mut data, len as usize)?;
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
        };
        rows.push((
            gid,
            name,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
        ));
    }
}

/// `year * 12 + month - 1` of a date (the `month` column of the rollups).
fn month_number(day: NaiveDate) -> i64 {
    i64::from(day.year()) * 12 + i64::from(day.month0())
}

/// The first day of a month number.
fn first_of_month(month: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(
        month.div_euclid(12) as i32,
        month.rem_euclid(12) as u32 + 1,
        1,
    )
    .unwrap_or_default()
}

/// Days since 1970-01-01 of an Asia/Shanghai date (the `day` column of the rollups).
fn day_number(day: NaiveDate) -> i64 {
    day.signed_duration_since(NaiveDate::default()).num_days()
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

impl StatsRow {
    fn add_viewers(&mut self, online: i64, terminals: [i64; 4], ms: i64) {
        self.online_viewers += online;
        self.total_audience += online;
        self.terminals.mobile += terminals[0];
        self.terminals.pc += terminals[1];
        self.terminals.tv += terminals[2];
        self.terminals.other += terminals[3];
        self.viewer_ms += ms;
    }
}

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
    pub(super) async fn refresh_rollups(
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

    /// The rows of the rollups `reads` for `q` (see [`Catalog::rollup_select`]).
    ///
    /// The reads run at once, each on its own connection, and their rows are merged per
    /// group and period by [`Catalog::stats`]: for a province-wide ranking of the last 365
    /// days (a year row, a month row and two edge days per station) that costs less than a
    /// `UNION ALL` summed again in SQL, whose outer `GROUP BY` over 50,000 rows was half the
    /// query on SQLite, and the reads share the cores.
    async fn rollup_read(
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
            // walks the stations' key instead of hashing all of them (23 ms against 36 ms).
            let order = if names.is_empty() {
                ""
            } else {
                " ORDER BY a.gid"
            };
            // Every figure as BIGINT: binary COPY carries no types, and `parse_copy` reads
            // eight bytes each. Read as binary `COPY`: sqlx's rows cost about 1 us each in its row stream
            // and per-column checks, most of a province-wide ranking's 46,000 rows;
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
        // stations is then one value through the driver instead of 20,000 rows at about
        // 4 us each (sqlx `Any`). PostgreSQL's binary rows are cheaper than its json_agg.
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
        // are (PostgreSQL's HashAggregate of 12,000 rows spilled and took 26 ms).
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
            // up by key: 40 ms against 7 ms for a province-wide year.
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

    /// The statistics table for `q`; open sessions and viewer rows count up to `now_ms`.
    ///
    /// Frozen sessions are read from the smallest rollup that answers the query: `all_days`
    /// for the whole area, `center_*` when neither filter nor grouping needs institutes or
    /// stations, `station_*` otherwise; month rollups for the whole months of a range when
    /// the period is a month or longer and no film is asked for, day rollups for the rest.
    /// Each read is summed per group and period in SQL; sessions not frozen yet (live or
    /// just ended, few) are read one by one from their viewer rows and added in.
    pub async fn stats(&self, q: &StatsQuery, now_ms: i64) -> Result<Vec<StatsRow>, CatalogError> {
        self.freeze_session_figures(now_ms).await?;
        let per_center = matches!(q.level, None | Some((Level::Center, _)))
            && matches!(q.group, GroupBy::All | GroupBy::Center | GroupBy::Film);
        // Rollups of months or longer have no film; they answer periods at least as long.
        let spans: &[i64] = if q.film.is_some() || q.group == GroupBy::Film {
            &[]
        } else {
            match q.period {
                Period::Total | Period::Year => &SPANS,
                Period::Quarter => &SPANS[1..],
                Period::Month => &SPANS[2..],
                Period::Week | Period::Day => &[],
            }
        };
        // The day rollup that answers, and the spans its month rollup has: `all_days` has
        // none, `center_months` months only.
        let (days, spans): (Rollup, &[i64]) =
            if q.level.is_none() && matches!(q.group, GroupBy::All | GroupBy::Film) {
                (Rollup::AllDays, &[])
            } else if per_center {
                (
                    Rollup::CenterDays,
                    if spans.is_empty() { &[] } else { &[1] },
                )
            } else {
                (Rollup::StationDays, spans)
            };
        // Without a kind filter, the spans' all-kinds rows (a third of the rows to sum).
        let all_kinds = q.kind.is_none();
        let reads: Vec<(Rollup, Stretch)> = if spans.is_empty() {
            vec![(days, Stretch::Days(q.from, q.to))]
        } else {
            Stretch::split(q.from, q.to, shanghai_day(now_ms), spans)
                .into_iter()
                .map(|stretch| match stretch {
                    Stretch::Months(..) if days == Rollup::CenterDays => {
                        (Rollup::CenterMonths { all_kinds }, stretch)
                    }
                    Stretch::Months(span, ..) => {
                        (Rollup::StationPeriods { span, all_kinds }, stretch)
                    }
                    Stretch::Days(..) => (days, stretch),
                })
                .collect()
        };
        let rollups = self.rollup_read(q, &reads);
        // Sessions not frozen yet, one row each, from the viewer rows; the
        // (figured, ended_at) index keeps this to the few recent sessions.
        let (gid, gname) = match q.group {
            GroupBy::All => ("CAST(0 AS BIGINT)", "'全部'"),
            GroupBy::Center => ("c.id", "c.name"),
            GroupBy::Institute => ("i.id", "i.name"),
            GroupBy::Station => ("st.id", "st.name"),
            GroupBy::Film => ("COALESCE(f.id, 0)", "COALESCE(f.title, '（无影片）')"),
        };
        let (filter, args, kind) = filters(q);
        let day = format!("(s.started_at + {SHANGHAI_OFFSET_MS}) / {DAY_MS}");
        let peaks = live_peaks();
        let live_sql = format!(
            "SELECT MIN({gid}), MIN({gname}), MIN({day}), MAX({PEAK}), \
             MAX(s.in_person), COUNT(DISTINCT v.viewer_key), \
             COUNT(DISTINCT CASE WHEN v.terminal = 'mobile' THEN v.viewer_key END), \
             COUNT(DISTINCT CASE WHEN v.terminal = 'pc' THEN v.viewer_key END), \
             COUNT(DISTINCT CASE WHEN v.terminal = 'tv' THEN v.viewer_key END), \
             COUNT(DISTINCT CASE WHEN v.terminal NOT IN ('mobile', 'pc', 'tv') THEN v.viewer_key END), \
             CAST(COALESCE(SUM(COALESCE(v.left_at, s.ended_at, $1) - v.joined_at), 0) AS BIGINT) \
             {JOINS} {peaks} LEFT JOIN viewers v ON v.session_id = s.id {filter} AND {UNFROZEN} \
             GROUP BY s.id"
        );
        let mut live = sqlx::query_as::<_, LiveRow>(AssertSqlSafe(live_sql)).bind(now_ms);
        for a in &args {
            live = live.bind(*a);
        }
        if let Some(kind) = kind {
            live = live.bind(kind);
        }
        let (days, live) = futures::future::try_join(rollups, live.fetch_all(&self.pool)).await?;
        let mut merged = Merge::new(q.period);
        for (gid, gname, day, n, peak, in_person, uniq, mobile, pc, tv, other, ms) in
            days.into_iter().flatten()
        {
            let r = merged.row(gid, gname, day);
            r.sessions += n;
            r.peak_viewers = r.peak_viewers.max(peak);
            r.in_person += in_person;
            r.total_audience += in_person;
            r.add_viewers(uniq, [mobile, pc, tv, other], ms);
        }
        for (gid, gname, day, peak, in_person, uniq, mobile, pc, tv, other, ms) in live {
            let r = merged.row(gid, gname, day);
            r.sessions += 1;
            r.peak_viewers = r.peak_viewers.max(peak);
            r.in_person += in_person;
            r.total_audience += in_person;
            r.add_viewers(uniq, [mobile, pc, tv, other], ms);
        }
        Ok(merged.into_rows())
    }

    /// Sessions matching `q` (newest first, at most `q.limit`) with their figures.
    pub async fn stats_sessions(
        &self,
        q: &StatsQuery,
        now_ms: i64,
    ) -> Result<Vec<SessionStats>, CatalogError> {
        self.freeze_session_figures(now_ms).await?;
        let (filter, args, kind) = filters(q);
        let limit_arg = args.len() + 2 + usize::from(kind.is_some());
        let peaks = live_peaks();
        let sql = format!(
            "SELECT s.id, c.name, i.name, st.id, st.name, s.kind, s.title, s.speaker, f.title, \
             s.started_at, COALESCE(s.ended_at, $1), {PEAK}, s.in_person, \
             COALESCE(sf.online, 0), COALESCE(sf.viewer_ms, 0) \
             {JOINS} {peaks} LEFT JOIN session_figures sf ON sf.session_id = s.id {filter} \
             ORDER BY s.started_at DESC, s.id DESC LIMIT ${limit_arg}"
        );
        // Sessions not frozen yet, from their viewer rows (few: live or just ended).
        let live_sql = format!(
            "SELECT s.id, COUNT(DISTINCT v.viewer_key), \
             CAST(COALESCE(SUM(COALESCE(v.left_at, s.ended_at, $1) - v.joined_at), 0) AS BIGINT) \
             {JOINS} JOIN viewers v ON v.session_id = s.id {filter} AND {UNFROZEN} GROUP BY s.id"
        );
        let mut live = sqlx::query_as::<_, (i64, i64, i64)>(AssertSqlSafe(live_sql)).bind(now_ms);
        for a in &args {
            live = live.bind(*a);
        }
        if let Some(kind) = kind {
            live = live.bind(kind);
        }
        let live: HashMap<i64, (i64, i64)> = live
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(id, uniq, ms)| (id, (uniq, ms)))
            .collect();
        type Row = (
            i64,
            String,
            String,
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        );
        let mut query = sqlx::query_as::<_, Row>(AssertSqlSafe(sql)).bind(now_ms);
        for a in &args {
            query = query.bind(*a);
        }
        if let Some(kind) = kind {
            query = query.bind(kind);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    center,
                    institute,
                    station_id,
                    station,
                    kind,
                    title,
                    speaker,
                    film,
                    start,
                    end,
                    peak,
                    in_person,
                    frozen_uniq,
                    frozen_ms,
                )| {
                    let (uniq, ms) = live.get(&id).copied().unwrap_or((frozen_uniq, frozen_ms));
                    SessionStats {
                        id,
                        center,
                        institute,
                        station_id,
                        station,
                        kind,
                        title,
                        speaker,
                        film,
                        started_at: rfc3339(start),
                        day: shanghai_day(start).format("%Y-%m-%d").to_string(),
                        minutes: minutes(end - start),
                        peak_viewers: peak,
                        online_viewers: uniq,
                        viewer_minutes: minutes(ms),
                        in_person,
                        total_audience: uniq + in_person,
                    }
                },
            )
            .collect())
    }
}

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    // The BOM makes spreadsheet programs read the file as UTF-8, so Chinese shows correctly.
    let mut out = String::from("\u{feff}");
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, v);
        }
        out.push_str("\r\n");
    }
    out
}

/// A statistics table as CSV (UTF-8 with BOM, Chinese headers, CRLF).
pub fn stats_csv(rows: &[StatsRow]) -> String {
    csv_table(
        &[
            "编号",
            "名称",
            "时段",
            "场次",
            "线上观看人次",
            "最高同时在线",
            "观看分钟",
            "现场人数",
            "总受众人次",
            "手机",
            "电脑",
            "电视",
            "其他终端",
        ],
        rows.iter().map(|r| {
            vec![
                r.group_id.to_string(),
                r.group_name.clone(),
                r.period.clone(),
                r.sessions.to_string(),
                r.online_viewers.to_string(),
                r.peak_viewers.to_string(),
                r.viewer_minutes.to_string(),
                r.in_person.to_string(),
                r.total_audience.to_string(),
                r.terminals.mobile.to_string(),
                r.terminals.pc.to_string(),
                r.terminals.tv.to_string(),
                r.terminals.other.to_string(),
            ]
        }),
    )
}

/// A session listing as CSV (UTF-8 with BOM).
pub fn sessions_csv(rows: &[SessionStats]) -> String {
    csv_table(
        &[
            "场次编号",
            "中心",
            "所",
            "站",
            "类型",
            "标题",
            "主讲人",
            "影片",
            "开始时间",
            "日期",
            "时长分钟",
            "最高同时在线",
            "线上观看人数",
            "观看分钟",
            "现场人数",
            "总受众人次",
        ],
        rows.iter().map(|r| {
            vec![
                r.id.to_string(),
                r.center.clone(),
                r.institute.clone(),
                r.station.clone(),
                r.kind.clone(),
                r.title.clone(),
                r.speaker.clone(),
                r.film.clone().unwrap_or_default(),
                r.started_at.clone(),
                r.day.clone(),
                r.minutes.to_string(),
                r.peak_viewers.to_string(),
                r.online_viewers.to_string(),
                r.viewer_minutes.to_string(),
                r.in_person.to_string(),
                r.total_audience.to_string(),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_days_and_labels() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let midnight = shanghai_midnight_ms(d);
        // 2026-01-01 00:00 +08:00 is 2025-12-31 16:00 UTC.
        assert_eq!(rfc3339(midnight), "2025-12-31T16:00:00.000Z");
        assert_eq!(shanghai_day(midnight), d);
        assert_eq!(shanghai_day(midnight - 1), d.pred_opt().unwrap());
        assert_eq!(period_label(Period::Week, d), "2026-W01");
        assert_eq!(period_label(Period::Quarter, d), "2026-Q1");
        let dec29 = NaiveDate::from_ymd_opt(2025, 12, 29).unwrap();
        assert_eq!(period_label(Period::Week, dec29), "2026-W01");
    }

    #[test]
    fn copy_parameters_are_written_in() {
        let sql = "WHERE r.span = 12 AND r.month = $1 AND r.day >= $12 AND x = $3 AND y = $";
        let args: Vec<i64> = (1..=12).map(|n| n * 100).collect();
        assert_eq!(
            inline_args(sql, &args),
            "WHERE r.span = 12 AND r.month = (100) AND r.day >= (1200) AND x = (300) AND y = $"
        );
        assert_eq!(inline_args("a = -$1", &[-5]), "a = -(-5)");
        assert_eq!(inline_args("a = $2", &[7]), "a = $2");
    }

    #[test]
    fn binary_copy_rows_decode_and_bad_output_is_an_error() {
        let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&12i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&(-5i64).to_be_bytes());
        data.extend_from_slice(&6i32.to_be_bytes());
        data.extend_from_slice("站一".as_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&20_422i64.to_be_bytes());
        for n in 0..9i64 {
            data.extend_from_slice(&8i32.to_be_bytes());
            data.extend_from_slice(&(n * 1_000_000_007).to_be_bytes());
        }
        let whole = data.clone();
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let rows = parse_copy(&data).unwrap();
        assert_eq!(
            rows,
            vec![(
                -5,
                "站一".to_string(),
                20_422,
                0,
                1_000_000_007,
                2_000_000_014,
                3_000_000_021,
                4_000_000_028,
                5_000_000_035,
                6_000_000_042,
                7_000_000_049,
                8_000_000_056
            )]
        );
        // A figure that is not eight bytes, or NULL, is refused rather than misread.
        let mut narrow = whole[..whole.len() - 12].to_vec();
        narrow.extend_from_slice(&4i32.to_be_bytes());
        narrow.extend_from_slice(&7i32.to_be_bytes());
        narrow.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(parse_copy(&narrow).unwrap_err().contains("4 bytes"));
        let mut null = whole[..whole.len() - 12].to_vec();
        null.extend_from_slice(&(-1i32).to_be_bytes());
        null.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(parse_copy(&null).unwrap_err().contains("NULL"));
        // Cut anywhere, or not COPY output at all: an error, never a panic.
        for cut in 0..=whole.len() {
            assert!(parse_copy(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_copy(b"hello").is_err());
    }

    #[test]
    fn ranges_split_into_whole_spans_and_edge_days() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let m = |y: i64, month: i64| y * 12 + month - 1;
        // Months only, ranges that end before today.
        let split = |from, to| Stretch::split(from, to, d(2030, 1, 1), &[1]);
        // A rolling year: two days of November, Dec .. Oct whole, then 29 days.
        assert_eq!(
            split(Some(d(2025, 11, 29)), Some(d(2026, 11, 29))),
            vec![
                Stretch::Months(1, Some(m(2025, 12)), Some(m(2026, 10))),
                Stretch::Days(Some(d(2025, 11, 29)), Some(d(2025, 11, 30))),
                Stretch::Days(Some(d(2026, 11, 1)), Some(d(2026, 11, 29))),
            ]
        );
        // A calendar quarter is whole months only; February's end is found in leap years.
        assert_eq!(
            split(Some(d(2024, 1, 1)), Some(d(2024, 2, 29))),
            vec![Stretch::Months(1, Some(m(2024, 1)), Some(m(2024, 2)))]
        );
        // Inside one month: days only.
        assert_eq!(
            split(Some(d(2026, 3, 2)), Some(d(2026, 3, 30))),
            vec![Stretch::Days(Some(d(2026, 3, 2)), Some(d(2026, 3, 30)))]
        );
        // Open ends stay open.
        assert_eq!(
            split(None, Some(d(2026, 3, 30))),
            vec![
                Stretch::Months(1, None, Some(m(2026, 2))),
                Stretch::Days(Some(d(2026, 3, 1)), Some(d(2026, 3, 30))),
            ]
        );
        assert_eq!(split(None, None), vec![Stretch::Months(1, None, None)]);
        assert_eq!(first_of_month(m(2026, 12) + 1), d(2027, 1, 1));

        // Years, then quarters, then months, then days.
        let split = |from, to| Stretch::split(from, to, d(2030, 1, 1), &SPANS);
        assert_eq!(
            split(Some(d(2024, 2, 10)), Some(d(2026, 5, 31))),
            vec![
                Stretch::Months(12, Some(m(2025, 1)), Some(m(2025, 12))),
                Stretch::Months(3, Some(m(2024, 4)), Some(m(2024, 12))),
                Stretch::Months(1, Some(m(2024, 3)), Some(m(2024, 3))),
                Stretch::Months(3, Some(m(2026, 1)), Some(m(2026, 3))),
                Stretch::Months(1, Some(m(2026, 4)), Some(m(2026, 5))),
                Stretch::Days(Some(d(2024, 2, 10)), Some(d(2024, 2, 29))),
            ]
        );
        assert_eq!(
            split(None, Some(d(2026, 3, 31))),
            vec![
                Stretch::Months(12, None, Some(m(2025, 12))),
                Stretch::Months(3, Some(m(2026, 1)), Some(m(2026, 3))),
            ]
        );
        assert_eq!(split(None, None), vec![Stretch::Months(12, None, None)]);

        // A range reaching today runs to the end of its year: nothing after today is
        // frozen. The rolling year is then a month, a year and two days.
        let today = d(2026, 11, 29);
        assert_eq!(
            Stretch::split(Some(d(2025, 11, 29)), Some(today), today, &SPANS),
            vec![
                Stretch::Months(12, Some(m(2026, 1)), Some(m(2026, 12))),
                Stretch::Months(1, Some(m(2025, 12)), Some(m(2025, 12))),
                Stretch::Days(Some(d(2025, 11, 29)), Some(d(2025, 11, 30))),
            ]
        );
        assert_eq!(
            Stretch::split(Some(d(2026, 11, 3)), Some(d(2027, 2, 10)), today, &[1]),
            vec![
                Stretch::Months(1, Some(m(2026, 12)), Some(m(2027, 12))),
                Stretch::Days(Some(d(2026, 11, 3)), Some(d(2026, 11, 30))),
            ]
        );
        assert_eq!(
            Stretch::split(Some(d(2026, 11, 3)), Some(d(2026, 11, 28)), today, &SPANS),
            vec![Stretch::Days(Some(d(2026, 11, 3)), Some(d(2026, 11, 28)))]
        );
    }

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

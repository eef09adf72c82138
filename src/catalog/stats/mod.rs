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
//! - A session's peak is the most viewer rows open at once: computed from the rows while
//!   it is live, recorded when it ends (see `catalog::session_peaks`). Peak concurrency of
//!   a group is the highest session peak in it.
//! - Terminal split counts distinct viewers per terminal per session.
//! - Replay figures stand beside the live ones and are never added into them: 回看人次
//!   (`replay_viewers`) counts `replay_views` rows, one per viewer per recording per
//!   Asia/Shanghai day watched, and 回看分钟 (`replay_minutes`) sums their distinct
//!   segment time. They count on the day *watched* (the range and periods apply to it) and
//!   in the groups of the recording's session (its station, institute, center and film;
//!   kind and film filters are the session's). They are read straight from `replay_views`
//!   (indexed by day) and merged into the rows, so a period or group with replays only has
//!   a row too.
//! - Figures of sessions over for ten minutes are frozen in `session_figures` (computed by
//!   the same rules) so a year of statistics does not rescan millions of viewer rows, and
//!   summed into rollups (see [`Rollup`]): per station, per center and for the whole area
//!   by day, and per station and per center by month. Every figure above is a sum over
//!   sessions (or, for the peak, a maximum), so rollups answer any range, filter and
//!   grouping the API offers exactly; `tests/stats_rollup.rs` checks them against the raw
//!   rows.
//!
//! The SQL is assembled from fixed fragments in this module's files; every value is a bound
//! parameter (or, for `COPY`, a number written in by [`copy`]).
//!
//! Files: [`query`] checks a request, [`calendar`] holds the Asia/Shanghai calendar and how
//! a range splits into calendar spans, [`rollup_write`] freezes session figures into the
//! rollups, [`rollup_read`] reads them, [`copy`] parses PostgreSQL's binary `COPY` rows,
//! [`ratings`] reads residents' ratings (评单) with the same filters;
//! this file merges rollup rows with sessions not frozen yet. CSV presentation is
//! `http::csv`.

mod calendar;
mod copy;
mod query;
mod ratings;
mod rollup_read;
mod rollup_write;

pub use calendar::{shanghai_day, shanghai_midnight_ms};

/// The rollup rows in a binary `COPY` output, for the fuzzer (`tests/fuzz.rs`): how many,
/// or why the output is refused.
#[doc(hidden)]
pub fn parse_copy_rows(data: &[u8]) -> Result<usize, String> {
    copy::parse_copy(data).map(|rows| rows.len())
}
pub use query::{GroupBy, Level, Period, StatsQuery};
pub use ratings::{RatingGroup, RatingRow};

use std::collections::HashMap;

use chrono::NaiveDate;
use rustc_hash::FxHashMap;
use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::interaction::InteractionCounts;
use super::sessions::session_peaks;
use super::{Catalog, CatalogError, rfc3339};
use calendar::{DAY_MS, SHANGHAI_OFFSET_MS, SPANS, Stretch, period_label};
use query::{ReplayArg, filters, replay_filters};
use rollup_write::Rollup;

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
    /// Replay viewers (回看人次): one per viewer per recording per day watched, on the
    /// day watched; not part of `online_viewers` or `total_audience`.
    pub replay_viewers: i64,
    /// Replay minutes (回看分钟): distinct segment time fetched, on the day watched.
    pub replay_minutes: f64,
    /// Live interaction (互动): messages and questions posted, questions, questions
    /// answered, likes and online check-ins (签到) of the sessions in the row.
    #[serde(flatten)]
    pub interaction: InteractionCounts,
    #[serde(skip)]
    viewer_ms: i64,
    #[serde(skip)]
    replay_ms: i64,
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
    /// Replay viewers (回看人次) of this session's recording, every day watched so far.
    pub replay_viewers: i64,
    /// Replay minutes (回看分钟) of this session's recording, every day watched so far.
    pub replay_minutes: f64,
    /// Live interaction (互动): messages and questions posted, questions, questions
    /// answered, likes and online check-ins (签到) of the sessions in the row.
    #[serde(flatten)]
    pub interaction: InteractionCounts,
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
    /// Keyed by small integers: Fx hashing them is a few instructions, where SipHash
    /// showed in a province-wide ranking's profile.
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
            replay_viewers: 0,
            replay_minutes: 0.0,
            interaction: InteractionCounts::default(),
            viewer_ms: 0,
            replay_ms: 0,
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
                r.replay_minutes = minutes(r.replay_ms);
                r
            })
            .collect()
    }
}

fn minutes(ms: i64) -> f64 {
    (ms.max(0) as f64 / 600.0).round() / 100.0
}

const JOINS: &str = "FROM sessions s JOIN stations st ON st.id = s.station_id \
     JOIN institutes i ON i.id = st.institute_id JOIN centers c ON c.id = i.center_id \
     LEFT JOIN films f ON f.id = s.film_id";

/// Sessions not frozen yet, as a condition on `s`. Written as a subquery so both databases
/// start from the `(figured, ended_at)` index: with `s.figured = 0` SQLite's planner, once
/// `ANALYZE` has seen that nearly every session is frozen, scanned all of them instead.
const UNFROZEN: &str = "s.id IN (SELECT id FROM sessions WHERE figured = 0)";

/// Replay views with their recording's session, its station, institute, center and film.
const REPLAY_JOINS: &str = "FROM replay_views rv JOIN recordings r ON r.id = rv.recording_id \
     JOIN sessions s ON s.id = r.session_id JOIN stations st ON st.id = s.station_id \
     JOIN institutes i ON i.id = st.institute_id JOIN centers c ON c.id = i.center_id \
     LEFT JOIN films f ON f.id = s.film_id";

/// A replay read row: group, group name, a day watched of the bucket (`YYYY-MM-DD`),
/// replay views, watched ms; all `NULL` when nothing matched and there is no `GROUP BY`.
type ReplayRow = (Option<i64>, Option<String>, Option<String>, i64, i64);

/// The day number (days since 1970-01-01) of `YYYY-MM-DD`.
fn day_of(text: &str) -> Result<i64, CatalogError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.signed_duration_since(NaiveDate::default()).num_days())
        .map_err(|_| {
            CatalogError::Database(sqlx::Error::Decode(
                format!("replay_views: day {text:?} is not YYYY-MM-DD").into(),
            ))
        })
}

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
        let (days, live, replays) =
            futures::future::try_join3(rollups, live.fetch_all(&self.pool), self.replay_read(q))
                .await?;
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
        for (gid, gname, day, views, ms) in replays {
            let (Some(gid), Some(gname), Some(day)) = (gid, gname, day) else {
                continue;
            };
            let r = merged.row(gid, gname, day_of(&day)?);
            r.replay_viewers += views;
            r.replay_ms += ms;
        }
        for (gid, gname, day, messages, questions, answered, likes, checkins) in
            self.interaction_read(q, now_ms).await?
        {
            let r = merged.row(gid, gname, day);
            let c = &mut r.interaction;
            c.messages += messages;
            c.questions += questions;
            c.questions_answered += answered;
            c.likes += likes;
            c.checkins += checkins;
        }
        Ok(merged.into_rows())
    }

    /// The interaction counts for `q`, summed per group and day the sessions started on
    /// (one row per session that had any, kept as they happen in `session_interaction`).
    async fn interaction_read(
        &self,
        q: &StatsQuery,
        now_ms: i64,
    ) -> Result<Vec<(i64, String, i64, i64, i64, i64, i64, i64)>, sqlx::Error> {
        let (gid, gname, key) = match q.group {
            GroupBy::All => ("CAST(0 AS BIGINT)", "'全部'", None),
            GroupBy::Center => ("c.id", "c.name", Some("c.id")),
            GroupBy::Institute => ("i.id", "i.name", Some("i.id")),
            GroupBy::Station => ("st.id", "st.name", Some("st.id")),
            GroupBy::Film => (
                "COALESCE(f.id, 0)",
                "COALESCE(f.title, '（无影片）')",
                Some("s.film_id"),
            ),
        };
        let (filter, args, kind) = filters(q);
        let day = format!("(s.started_at + {SHANGHAI_OFFSET_MS}) / {DAY_MS}");
        let group_by = match key {
            Some(key) => format!("{key}, {day}"),
            None => day.clone(),
        };
        let sum = |c: &str| format!("CAST(SUM(si.{c}) AS BIGINT)");
        let sql = format!(
            "SELECT MIN({gid}), MIN({gname}), MIN({day}), {}, {}, {}, {}, {} \
             {JOINS} JOIN session_interaction si ON si.session_id = s.id {filter} \
             GROUP BY {group_by}",
            sum("messages"),
            sum("questions"),
            sum("answered"),
            sum("likes"),
            sum("checkins"),
        );
        let mut query = sqlx::query_as(AssertSqlSafe(sql)).bind(now_ms);
        for a in &args {
            query = query.bind(*a);
        }
        if let Some(kind) = kind {
            query = query.bind(kind);
        }
        query.fetch_all(&self.pool).await
    }

    /// The replay figures for `q`, summed per group and bucket of days watched (a day, a
    /// month or a year of `replay_views.day`, or the whole range), each with one day of
    /// its bucket for [`Merge`] to label. Weeks and quarters are summed from days and
    /// months in [`Merge`].
    async fn replay_read(&self, q: &StatsQuery) -> Result<Vec<ReplayRow>, sqlx::Error> {
        let (gid, gname, key) = match q.group {
            GroupBy::All => ("CAST(0 AS BIGINT)", "'全部'", None),
            GroupBy::Center => ("c.id", "c.name", Some("c.id")),
            GroupBy::Institute => ("i.id", "i.name", Some("i.id")),
            GroupBy::Station => ("st.id", "st.name", Some("st.id")),
            GroupBy::Film => (
                "COALESCE(f.id, 0)",
                "COALESCE(f.title, '（无影片）')",
                Some("s.film_id"),
            ),
        };
        let bucket = match q.period {
            Period::Total => None,
            Period::Day | Period::Week => Some("rv.day"),
            Period::Month | Period::Quarter => Some("SUBSTR(rv.day, 1, 7)"),
            Period::Year => Some("SUBSTR(rv.day, 1, 4)"),
        };
        let keys: Vec<&str> = [key, bucket].into_iter().flatten().collect();
        let group_by = if keys.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", keys.join(", "))
        };
        let (filter, args) = replay_filters(q);
        let sql = format!(
            "SELECT MIN({gid}), MIN({gname}), MIN(rv.day), CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(rv.watched_ms), 0) AS BIGINT) {REPLAY_JOINS} {filter}{group_by}"
        );
        let mut query = sqlx::query_as::<_, ReplayRow>(AssertSqlSafe(sql));
        for a in args {
            query = match a {
                ReplayArg::Id(id) => query.bind(id),
                ReplayArg::Day(day) => query.bind(day),
                ReplayArg::Kind(kind) => query.bind(kind),
            };
        }
        query.fetch_all(&self.pool).await
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
        let replays = self.session_replays(rows.iter().map(|r| r.0)).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let interaction = self.interaction_counts(&ids).await?;
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
                    let (replay_views, replay_ms) = replays.get(&id).copied().unwrap_or((0, 0));
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
                        replay_viewers: replay_views,
                        replay_minutes: minutes(replay_ms),
                        interaction: interaction.get(&id).copied().unwrap_or_default(),
                    }
                },
            )
            .collect())
    }
}

impl Catalog {
    /// Replay views and watched ms of the recordings of `sessions`, every day watched, by
    /// session id; sessions without replay views are absent.
    async fn session_replays(
        &self,
        sessions: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, (i64, i64)>, CatalogError> {
        // Ids straight from the sessions just read, written in as numbers: a listing has
        // up to 10,000 of them, more than either database binds comfortably.
        let ids: Vec<String> = sessions.map(|id| id.to_string()).collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT r.session_id, CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(rv.watched_ms), 0) AS BIGINT) \
             FROM replay_views rv JOIN recordings r ON r.id = rv.recording_id \
             WHERE r.session_id IN ({}) GROUP BY r.session_id",
            ids.join(", ")
        );
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, views, ms)| (id, (views, ms)))
            .collect())
    }
}

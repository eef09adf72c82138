//! The Asia/Shanghai calendar statistics count in (UTC+8 all year, no daylight saving),
//! and how a range of days splits into the whole calendar spans the rollups hold.

use chrono::{Datelike, NaiveDate};

use super::query::Period;

pub(super) const DAY_MS: i64 = 86_400_000;

/// Asia/Shanghai is UTC+8 all year.
pub(super) const SHANGHAI_OFFSET_MS: i64 = 8 * 3_600_000;

/// Unix ms of 00:00 Asia/Shanghai on `day`.
pub fn shanghai_midnight_ms(day: NaiveDate) -> i64 {
    day.signed_duration_since(NaiveDate::default()).num_days() * DAY_MS - SHANGHAI_OFFSET_MS
}

/// The Asia/Shanghai date of unix ms.
pub fn shanghai_day(ms: i64) -> NaiveDate {
    let days = (ms + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS);
    NaiveDate::default() + chrono::Duration::days(days)
}

pub(super) fn period_label(period: Period, day: NaiveDate) -> String {
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

/// The spans of `station_periods`, longest first.
pub(super) const SPANS: [i64; 3] = [12, 3, 1];

/// The part of a statistics range one rollup read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stretch {
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
    pub(super) fn split(
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

/// `year * 12 + month - 1` of a date (the `month` column of the rollups).
pub(super) fn month_number(day: NaiveDate) -> i64 {
    i64::from(day.year()) * 12 + i64::from(day.month0())
}

/// The first day of a month number.
pub(super) fn first_of_month(month: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(
        month.div_euclid(12) as i32,
        month.rem_euclid(12) as u32 + 1,
        1,
    )
    .unwrap_or_default()
}

/// Days since 1970-01-01 of an Asia/Shanghai date (the `day` column of the rollups).
pub(super) fn day_number(day: NaiveDate) -> i64 {
    day.signed_duration_since(NaiveDate::default()).num_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::rfc3339;

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
}

-- Station rollups over calendar months, quarters and years (replacing station_months, 0006):
-- `span` is 1, 3 or 12 months and `month` the first month of the span (year * 12 + month
-- - 1). A statistics range is read as its whole years, then whole quarters, then whole
-- months, then days (station_days): ranking 20,000 stations over "the last 365 days" reads
-- a year row and a month row per station instead of twelve month rows.
-- Each station and span also has a row of kind '*' summing all kinds, read when the
-- statistics do not filter by kind.
-- The key leads with the span, kind and month so that a province-wide read of one span
-- (a year, a month) is one range of the key, already in station order: it sums per
-- station without sorting. Reads for one station, institute or center use the indexes.
-- (SQLite's copy has no center index: it skip-scanned it for province-wide reads.)
-- `day` is a day of the span that held a session (only its span is ever read from it).
CREATE TABLE station_periods (
    span BIGINT NOT NULL,
    kind TEXT NOT NULL,
    month BIGINT NOT NULL,
    station_id BIGINT NOT NULL REFERENCES stations(id),
    day BIGINT NOT NULL,
    institute_id BIGINT NOT NULL,
    center_id BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    peak BIGINT NOT NULL,
    in_person BIGINT NOT NULL,
    online BIGINT NOT NULL,
    mobile BIGINT NOT NULL,
    pc BIGINT NOT NULL,
    tv BIGINT NOT NULL,
    other BIGINT NOT NULL,
    viewer_ms BIGINT NOT NULL,
    PRIMARY KEY (span, kind, month, station_id)
);
CREATE INDEX station_periods_station ON station_periods(station_id, span, month);
CREATE INDEX station_periods_institute ON station_periods(institute_id, span, month);
CREATE INDEX station_periods_center ON station_periods(center_id, span, month);
INSERT INTO station_periods
SELECT 1, kind, month, station_id, day, institute_id, center_id, sessions, peak, in_person,
    online, mobile, pc, tv, other, viewer_ms
FROM station_months;
INSERT INTO station_periods
SELECT 3, kind, month - month % 3, station_id, MIN(day), MIN(institute_id), MIN(center_id),
    SUM(sessions), MAX(peak), SUM(in_person), SUM(online), SUM(mobile), SUM(pc), SUM(tv),
    SUM(other), SUM(viewer_ms)
FROM station_months GROUP BY kind, month - month % 3, station_id;
INSERT INTO station_periods
SELECT 12, kind, month - month % 12, station_id, MIN(day), MIN(institute_id), MIN(center_id),
    SUM(sessions), MAX(peak), SUM(in_person), SUM(online), SUM(mobile), SUM(pc), SUM(tv),
    SUM(other), SUM(viewer_ms)
FROM station_months GROUP BY kind, month - month % 12, station_id;
DROP TABLE station_months;
ANALYZE station_periods;

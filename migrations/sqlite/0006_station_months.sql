-- Month rollup of frozen session figures per station (see 0005), without the film: a year
-- ranked by station reads 12 rows per station instead of one per session.
-- Statistics use it when they neither filter nor group by film and their period is a
-- month or longer; days of the range outside whole months come from station_days.
-- Each station and month also has a row of kind '*' summing all kinds, read when the
-- statistics do not filter by kind.
-- `day` is a day of the month that held a session (only its month is ever read from it).
-- No index on `month` alone: city-wide reads scan the table in key order, which sums per
-- station without sorting (SQLite picked a month index and a sort before it had stats).
CREATE TABLE station_months (
    station_id BIGINT NOT NULL REFERENCES stations(id),
    month BIGINT NOT NULL,
    kind TEXT NOT NULL,
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
    PRIMARY KEY (station_id, month, kind)
) WITHOUT ROWID;
CREATE INDEX station_months_institute ON station_months(institute_id, month);
CREATE INDEX station_months_center ON station_months(center_id, month);
INSERT INTO station_months
SELECT station_id, month, kind, MIN(day), MIN(institute_id), MIN(center_id), SUM(sessions),
    MAX(peak), SUM(in_person), SUM(online), SUM(mobile), SUM(pc), SUM(tv), SUM(other),
    SUM(viewer_ms)
FROM station_days GROUP BY station_id, month, kind;
INSERT INTO station_months
SELECT station_id, month, '*', MIN(day), MIN(institute_id), MIN(center_id), SUM(sessions),
    MAX(peak), SUM(in_person), SUM(online), SUM(mobile), SUM(pc), SUM(tv), SUM(other),
    SUM(viewer_ms)
FROM station_days GROUP BY station_id, month;
ANALYZE station_months;

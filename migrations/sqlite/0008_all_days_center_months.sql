-- Day rollup over every station (see 0005): day x kind x film, so a city- or province-wide
-- year total, daily series or film ranking sums a few thousand rows instead of a row per
-- center and day (550,000 rows a year for a 100-center province).
CREATE TABLE all_days (
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    film_id BIGINT NOT NULL,
    month BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    peak BIGINT NOT NULL,
    in_person BIGINT NOT NULL,
    online BIGINT NOT NULL,
    mobile BIGINT NOT NULL,
    pc BIGINT NOT NULL,
    tv BIGINT NOT NULL,
    other BIGINT NOT NULL,
    viewer_ms BIGINT NOT NULL,
    PRIMARY KEY (day, kind, film_id)
) WITHOUT ROWID;
INSERT INTO all_days
SELECT day, kind, film_id, MIN(month), SUM(sessions), MAX(peak), SUM(in_person), SUM(online),
    SUM(mobile), SUM(pc), SUM(tv), SUM(other), SUM(viewer_ms)
FROM center_days GROUP BY day, kind, film_id;
ANALYZE all_days;
-- Month rollup per center (as station_months in 0006, with kind '*' rows for all kinds), for
-- tables by center over months, quarters and years.
CREATE TABLE center_months (
    center_id BIGINT NOT NULL REFERENCES centers(id),
    month BIGINT NOT NULL,
    kind TEXT NOT NULL,
    day BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    peak BIGINT NOT NULL,
    in_person BIGINT NOT NULL,
    online BIGINT NOT NULL,
    mobile BIGINT NOT NULL,
    pc BIGINT NOT NULL,
    tv BIGINT NOT NULL,
    other BIGINT NOT NULL,
    viewer_ms BIGINT NOT NULL,
    PRIMARY KEY (center_id, month, kind)
) WITHOUT ROWID;
INSERT INTO center_months
SELECT center_id, month, kind, MIN(day), SUM(sessions), MAX(peak), SUM(in_person),
    SUM(online), SUM(mobile), SUM(pc), SUM(tv), SUM(other), SUM(viewer_ms)
FROM center_days GROUP BY center_id, month, kind;
INSERT INTO center_months
SELECT center_id, month, '*', MIN(day), SUM(sessions), MAX(peak), SUM(in_person),
    SUM(online), SUM(mobile), SUM(pc), SUM(tv), SUM(other), SUM(viewer_ms)
FROM center_days GROUP BY center_id, month;
ANALYZE center_months;

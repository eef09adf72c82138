-- Rollups of frozen session figures (see 0004), so a year of city statistics reads a few
-- thousand rows instead of one row per session. Both hold only sessions with `figured = 1`;
-- statistics add the not-yet-frozen ones from their viewer rows.
--
-- station_days: one row per station, Asia/Shanghai day, session kind and film (0 = none),
-- so every filter and grouping of the statistics API can be answered from it.
-- center_days: the same summed per center, for city- and center-wide queries.
-- `day` counts days since 1970-01-01 (Asia/Shanghai); `month` is year * 12 + month - 1 of
-- that day, so quarters and years are `month / 3` and `month / 12`. Stations never move
-- between institutes, so their institute and center ids are copied in for filtering.
-- `peak` is the highest session peak; every other figure is a sum over sessions.
CREATE TABLE station_days (
    station_id BIGINT NOT NULL REFERENCES stations(id),
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    film_id BIGINT NOT NULL,
    month BIGINT NOT NULL,
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
    PRIMARY KEY (station_id, day, kind, film_id)
);
CREATE INDEX station_days_day ON station_days(day);
CREATE INDEX station_days_institute ON station_days(institute_id, day);
CREATE INDEX station_days_center ON station_days(center_id, day);
CREATE TABLE center_days (
    day BIGINT NOT NULL,
    center_id BIGINT NOT NULL REFERENCES centers(id),
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
    PRIMARY KEY (day, center_id, kind, film_id)
);
CREATE INDEX center_days_center ON center_days(center_id, day);
-- Sessions frozen before this migration.
INSERT INTO station_days
SELECT s.station_id, (s.started_at + 28800000) / 86400000, s.kind, COALESCE(s.film_id, 0),
    CAST(EXTRACT(YEAR FROM DATE '1970-01-01' + CAST((s.started_at + 28800000) / 86400000 AS INTEGER)) * 12
        + EXTRACT(MONTH FROM DATE '1970-01-01' + CAST((s.started_at + 28800000) / 86400000 AS INTEGER)) - 1 AS BIGINT),
    MIN(st.institute_id), MIN(i.center_id), COUNT(*), MAX(s.peak_viewers), SUM(s.in_person),
    SUM(sf.online), SUM(sf.mobile), SUM(sf.pc), SUM(sf.tv), SUM(sf.other), SUM(sf.viewer_ms)
FROM sessions s JOIN session_figures sf ON sf.session_id = s.id
JOIN stations st ON st.id = s.station_id JOIN institutes i ON i.id = st.institute_id
WHERE s.figured = 1
GROUP BY 1, 2, 3, 4;
INSERT INTO center_days
SELECT day, center_id, kind, film_id, MIN(month), SUM(sessions), MAX(peak), SUM(in_person),
    SUM(online), SUM(mobile), SUM(pc), SUM(tv), SUM(other), SUM(viewer_ms)
FROM station_days GROUP BY 1, 2, 3, 4;

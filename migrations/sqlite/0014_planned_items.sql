-- Planned items (issue 25): what a station plans to show, before it is live. A planned
-- lecture (kind 'lecture') or a film class (kind 'film_class', the former `screenings`
-- rows, with their ids kept so `/api/screenings/{id}` still answers for them).
-- Times are unix milliseconds (UTC).
--
-- `status`: a lecture is 'scheduled', 'live' (a session attached) or 'cancelled'; whether
-- it ended is read from its session. A film class keeps the screening statuses
-- (scheduled | playing | done | missed | failed | stopping | stopped | cancelled).
-- `sequence` is the iCalendar SEQUENCE: bumped on every change residents' calendars should
-- pick up (time, title, speaker, cancellation).
CREATE TABLE planned_items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    station_id BIGINT NOT NULL REFERENCES stations(id),
    title TEXT NOT NULL DEFAULT '',
    speaker TEXT NOT NULL DEFAULT '',
    topic_id BIGINT REFERENCES topics(id),
    film_id BIGINT REFERENCES films(id),
    starts_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'scheduled',
    session_id BIGINT REFERENCES sessions(id),
    note TEXT NOT NULL DEFAULT '',
    sequence BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO planned_items (id, kind, station_id, title, film_id, starts_at, status,
                           session_id, note, created_at, updated_at)
SELECT id, 'film_class', station_id, '', film_id, starts_at, status, session_id, note,
       created_at, created_at FROM screenings;
DROP TABLE screenings;
-- The playout scheduler's due screenings.
CREATE INDEX planned_items_due ON planned_items(status, starts_at);
-- A station's programme and page.
CREATE INDEX planned_items_station ON planned_items(station_id, starts_at);
-- The city's programme, by time.
CREATE INDEX planned_items_starts ON planned_items(starts_at);
-- The item a session played or attached to.
CREATE INDEX planned_items_session ON planned_items(session_id);

-- Film library and scheduled film classes (screenings). Times are unix milliseconds (UTC).
-- The films table itself comes from 0002 (titles for statistics); the library adds the
-- file behind each title. Titles added by administrators alone have no file (path '').
ALTER TABLE films ADD COLUMN path TEXT NOT NULL DEFAULT '';
ALTER TABLE films ADD COLUMN duration_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE films ADD COLUMN container TEXT NOT NULL DEFAULT '';
ALTER TABLE films ADD COLUMN video_codec TEXT;
ALTER TABLE films ADD COLUMN audio_codec TEXT;
ALTER TABLE films ADD COLUMN width BIGINT NOT NULL DEFAULT 0;
ALTER TABLE films ADD COLUMN height BIGINT NOT NULL DEFAULT 0;
ALTER TABLE films ADD COLUMN imported_at BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX films_path ON films(path) WHERE path <> '';
CREATE TABLE screenings (
    id INTEGER PRIMARY KEY,
    station_id BIGINT NOT NULL REFERENCES stations(id),
    film_id BIGINT NOT NULL REFERENCES films(id),
    starts_at BIGINT NOT NULL,
    -- scheduled | playing | done | missed | failed
    status TEXT NOT NULL DEFAULT 'scheduled',
    session_id BIGINT REFERENCES sessions(id),
    note TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX screenings_due ON screenings(status, starts_at);
-- Pull sources (RTSP/SRT/RTMP/HTTP URLs the server opens itself) feeding a channel.
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL REFERENCES channels(name),
    url TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

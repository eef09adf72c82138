-- Film library and scheduled film classes (screenings). Times are unix milliseconds (UTC).
CREATE TABLE films (
    id BIGSERIAL PRIMARY KEY,
    title TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    duration_ms BIGINT NOT NULL,
    container TEXT NOT NULL,
    video_codec TEXT,
    audio_codec TEXT,
    width BIGINT NOT NULL DEFAULT 0,
    height BIGINT NOT NULL DEFAULT 0,
    imported_at BIGINT NOT NULL
);
CREATE TABLE screenings (
    id BIGSERIAL PRIMARY KEY,
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
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL REFERENCES channels(name),
    url TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

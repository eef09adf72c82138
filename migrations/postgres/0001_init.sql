-- Hierarchy, channels, live sessions and audience. Times are unix milliseconds (UTC).
CREATE TABLE centers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE institutes (
    id BIGSERIAL PRIMARY KEY,
    center_id BIGINT NOT NULL REFERENCES centers(id),
    name TEXT NOT NULL,
    UNIQUE (center_id, name)
);
CREATE TABLE stations (
    id BIGSERIAL PRIMARY KEY,
    institute_id BIGINT NOT NULL REFERENCES institutes(id),
    name TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    stream_key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (institute_id, name)
);
CREATE TABLE channels (
    name TEXT PRIMARY KEY,
    station_id BIGINT NOT NULL REFERENCES stations(id)
);
CREATE INDEX channels_station ON channels(station_id);
CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL REFERENCES channels(name),
    station_id BIGINT NOT NULL REFERENCES stations(id),
    kind TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    peak_viewers BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_station_started ON sessions(station_id, started_at);
CREATE TABLE viewers (
    id BIGINT PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    terminal TEXT NOT NULL,
    viewer_key TEXT NOT NULL,
    client_hash TEXT NOT NULL
);
CREATE INDEX viewers_session ON viewers(session_id);

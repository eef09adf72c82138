-- Replay (回看): one recording per session, and who watched which replay on which day.
-- Times are unix milliseconds (UTC).
--
-- `kind` is 'recorded' (the session's HLS segments under `[recording] dir`, `path` is
-- `{channel}/{session_id}` relative to it) or 'library' (a film class replayed from the
-- library file, `path` is that file's path). `published` and `keep` are 0/1. A deleted
-- recording keeps its row (`deleted_ms`, `deleted_reason`) so the API can say what went
-- and why, and so its replay figures stay in the statistics.
CREATE TABLE recordings (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL UNIQUE REFERENCES sessions(id),
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    published BIGINT NOT NULL DEFAULT 1,
    keep BIGINT NOT NULL DEFAULT 0,
    deleted_ms BIGINT,
    deleted_reason TEXT,
    created_ms BIGINT NOT NULL
);
-- A station's recordings, newest first: its sessions through `sessions_station_started`,
-- each one's recording through the unique `session_id`; every recording newest first
-- (the listing of all stations) through this one.
CREATE INDEX recordings_started ON recordings(started_ms);
-- Retention: the oldest recorded, unkept, not yet deleted first.
CREATE INDEX recordings_retention ON recordings(started_ms)
    WHERE kind = 'recorded' AND keep = 0 AND deleted_ms IS NULL;
-- One row per viewer (`viewer_key`, the live viewers' key) per recording per Asia/Shanghai
-- day watched: `segments` is a bitmap (bit i of byte i / 8, least significant first, set =
-- segment i fetched), `watched_ms` the distinct segment time fetched that day.
CREATE TABLE replay_views (
    recording_id INTEGER NOT NULL REFERENCES recordings(id),
    viewer_key TEXT NOT NULL,
    day TEXT NOT NULL,
    terminal TEXT NOT NULL,
    segments BLOB NOT NULL,
    watched_ms BIGINT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (recording_id, viewer_key, day)
);
-- Statistics read replay views by the day watched.
CREATE INDEX replay_views_day ON replay_views(day, recording_id);

-- Per-session audience figures, computed once a session has been over for ten minutes
-- (all its viewer rows are written by then), so statistics over a year read one row per
-- session instead of rescanning every viewer row. `sessions.figured` marks the done ones.
CREATE TABLE session_figures (
    session_id BIGINT PRIMARY KEY REFERENCES sessions(id),
    online BIGINT NOT NULL,
    mobile BIGINT NOT NULL,
    pc BIGINT NOT NULL,
    tv BIGINT NOT NULL,
    other BIGINT NOT NULL,
    viewer_ms BIGINT NOT NULL
);
ALTER TABLE sessions ADD COLUMN figured BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_unfigured ON sessions(figured, ended_at);

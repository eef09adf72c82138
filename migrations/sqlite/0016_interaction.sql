-- Live interaction (issue 26): chat messages and questions, check-ins, and per-session
-- counts (likes are only counted). Messages are numbered per session (`seq`, the id the
-- API and the watchers use).
CREATE TABLE chat_messages (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,          -- chat | question
    device_key TEXT NOT NULL,    -- SHA-256 prefix of the signed device id, never the id
    nickname TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,         -- visible | held | deleted
    answered INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE chat_checkins (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    device_key TEXT NOT NULL,
    nickname TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (session_id, device_key)
);

-- Counts kept as they happen, so statistics read one row per session.
CREATE TABLE session_interaction (
    session_id INTEGER PRIMARY KEY REFERENCES sessions(id),
    messages INTEGER NOT NULL DEFAULT 0,
    questions INTEGER NOT NULL DEFAULT 0,
    answered INTEGER NOT NULL DEFAULT 0,
    likes INTEGER NOT NULL DEFAULT 0,
    checkins INTEGER NOT NULL DEFAULT 0,
    pinned_seq INTEGER
);

-- Live interaction (issue 26): chat messages and questions, check-ins, and per-session
-- counts (likes are only counted). Messages are numbered per session (`seq`, the id the
-- API and the watchers use).
CREATE TABLE chat_messages (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,          -- chat | question
    device_key TEXT NOT NULL,    -- SHA-256 prefix of the signed device id, never the id
    nickname TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,         -- visible | held | deleted
    answered BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE chat_checkins (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    device_key TEXT NOT NULL,
    nickname TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (session_id, device_key)
);

-- Counts kept as they happen, so statistics read one row per session.
CREATE TABLE session_interaction (
    session_id BIGINT PRIMARY KEY REFERENCES sessions(id),
    messages BIGINT NOT NULL DEFAULT 0,
    questions BIGINT NOT NULL DEFAULT 0,
    answered BIGINT NOT NULL DEFAULT 0,
    likes BIGINT NOT NULL DEFAULT 0,
    checkins BIGINT NOT NULL DEFAULT 0,
    pinned_seq BIGINT
);

-- Residents' ratings of what they watched (评单): one per device per session, 1 to 5 with
-- an optional comment, given once the session has ended. `device_hash` is the SHA-256 of
-- the resident's device id (the `fy_dev` cookie), so the id itself is not stored here.
-- Times are unix milliseconds (UTC).
CREATE TABLE session_ratings (
    id BIGSERIAL PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    device_hash TEXT NOT NULL,
    score BIGINT NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (session_id, device_hash)
);

-- Devices the host muted for a session (issue 26): kept in the catalog so a mute holds on
-- every node of a cluster and after the channel's node restarts during the session.
CREATE TABLE chat_mutes (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    device_key TEXT NOT NULL,    -- SHA-256 prefix of the signed device id, never the id
    PRIMARY KEY (session_id, device_key)
);

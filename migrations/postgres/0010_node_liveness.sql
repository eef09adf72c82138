-- Servers sharing a catalog (PostgreSQL) each run their own live sessions. A session
-- records the server (relay_nodes row) running it, and each server notes when it was
-- last alive; a server unseen for a minute is gone, and any other server closes the
-- sessions and viewer rows it left open as of that last sign of life. Before this, a
-- starting server closed every open session, other servers' live lectures included.
ALTER TABLE sessions ADD COLUMN node_id BIGINT;
ALTER TABLE relay_nodes ADD COLUMN seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE relay_nodes SET seen_at = started_at;
-- The open sessions, without reading the closed millions.
CREATE INDEX sessions_open ON sessions(node_id) WHERE ended_at IS NULL;

-- Nodes in a cluster (servers sharing one PostgreSQL catalog): each node's row carries the
-- URL other nodes reach it on, its advertised media address, its capacity and its load,
-- refreshed with every heartbeat.
ALTER TABLE relay_nodes ADD COLUMN node_url TEXT NOT NULL DEFAULT '';
ALTER TABLE relay_nodes ADD COLUMN media_addr TEXT NOT NULL DEFAULT '';
ALTER TABLE relay_nodes ADD COLUMN max_viewers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE relay_nodes ADD COLUMN viewers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE relay_nodes ADD COLUMN kbps BIGINT NOT NULL DEFAULT 0;
ALTER TABLE relay_nodes ADD COLUMN cpu_permille BIGINT NOT NULL DEFAULT 0;
ALTER TABLE relay_nodes ADD COLUMN channels TEXT NOT NULL DEFAULT '';
ALTER TABLE relay_nodes ADD COLUMN stopped BIGINT NOT NULL DEFAULT 0;
-- The node a viewer row was written by: an edge's viewers count in the origin's session,
-- and a node that dies has its own rows closed at its last heartbeat.
ALTER TABLE viewers ADD COLUMN node_id BIGINT;
CREATE INDEX viewers_open_by_node ON viewers(node_id) WHERE left_at IS NULL;
-- One origin per channel: the node whose publisher (WHIP, RTMP, pull source, screening) is
-- live there, and its session. Released when the session ends; taken over once the node
-- is gone.
CREATE TABLE channel_origins (
    channel TEXT PRIMARY KEY,
    node_id BIGINT NOT NULL,
    session_id BIGINT NOT NULL,
    claimed_at BIGINT NOT NULL
);
-- Work exactly one node does (a pull source, a screening): the node holding its lease,
-- valid while that node is alive.
CREATE TABLE cluster_leases (
    name TEXT PRIMARY KEY,
    node_id BIGINT NOT NULL,
    taken_at BIGINT NOT NULL
);

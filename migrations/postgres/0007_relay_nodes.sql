-- One row per server start; its id (mod 1024) is the node number in the viewer row ids
-- that server makes, so servers sharing a catalog never make the same id.
CREATE TABLE relay_nodes (
    id BIGSERIAL PRIMARY KEY,
    started_at BIGINT NOT NULL
);

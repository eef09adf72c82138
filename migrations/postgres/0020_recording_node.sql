-- The node a recording was made on (its files are there): in a cluster, other nodes answer
-- `/replay/{id}/...` with a 307 to that node's `node_url`. NULL on a single server and for
-- recordings made before nodes were named.
ALTER TABLE recordings ADD COLUMN node_id BIGINT;

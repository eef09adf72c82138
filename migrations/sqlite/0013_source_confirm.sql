-- A station's pull sources wait for confirmation with the new key after the key rotates
-- (1 = held: the server does not open it until the station enables it again).
ALTER TABLE sources ADD COLUMN needs_confirm BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sources_channel ON sources(channel);

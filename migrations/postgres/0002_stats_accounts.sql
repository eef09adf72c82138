-- Session metadata, in-person headcounts, films, topics and administrator accounts
-- (issue 4). Times are unix milliseconds (UTC).
CREATE TABLE topics (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE films (
    id BIGSERIAL PRIMARY KEY,
    title TEXT NOT NULL UNIQUE
);
ALTER TABLE sessions ADD COLUMN speaker TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN topic_id BIGINT REFERENCES topics(id);
ALTER TABLE sessions ADD COLUMN film_id BIGINT REFERENCES films(id);
ALTER TABLE sessions ADD COLUMN scheduled_at BIGINT;
ALTER TABLE sessions ADD COLUMN in_person BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_started ON sessions(started_at);
CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    center_id BIGINT REFERENCES centers(id),
    station_id BIGINT REFERENCES stations(id),
    created_at BIGINT NOT NULL
);
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    expires_at BIGINT NOT NULL
);

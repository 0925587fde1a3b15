-- A fourth console role, lead: an agent who also sees the dashboard. SQLite cannot change a
-- CHECK constraint in place, so the table is rebuilt: a new one with the new CHECK, the rows
-- copied, the old one dropped and the new one renamed (nothing references users, and this
-- runs inside the migration's one transaction: all of it or none).

CREATE TABLE users_v5 (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,          -- argon2id, with its parameters
    role TEXT NOT NULL CHECK (role IN ('agent', 'editor', 'lead', 'admin')),
    agent_id TEXT,                        -- the agents row a console agent or lead works as
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);

INSERT INTO users_v5 (id, username, password_hash, role, agent_id, created_at, disabled)
    SELECT id, username, password_hash, role, agent_id, created_at, disabled FROM users;

DROP TABLE users;

ALTER TABLE users_v5 RENAME TO users;

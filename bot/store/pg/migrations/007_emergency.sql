-- The leads' emergency switch (bot/emergency.py): one row, its version bumped on every change
-- so each gateway sees changes made elsewhere (the CLI, another process).
CREATE TABLE IF NOT EXISTS emergency (
    id integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL,
    state text NOT NULL
);

-- The leads' emergency switch (bot/emergency.py): one row, its version bumped on every change
-- so each gateway sees changes made elsewhere (the CLI, another process).
CREATE TABLE IF NOT EXISTS emergency (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    state TEXT NOT NULL
);

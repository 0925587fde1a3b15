-- The console: people who sign in, what they did, and the knowledge base as editors keep it.

CREATE TABLE IF NOT EXISTS users (
    id text PRIMARY KEY,
    username text NOT NULL,
    password_hash text NOT NULL,          -- argon2id, with its parameters
    role text NOT NULL CONSTRAINT users_role CHECK (role IN ('agent', 'editor', 'admin')),
    agent_id text,                        -- the agents row a console agent works as
    created_at timestamptz NOT NULL,
    disabled boolean NOT NULL DEFAULT false
);
-- SQLite's username column is COLLATE NOCASE: here a unique index on lower(username) keeps
-- 'Sam' and 'sam' one user (lookups must compare lower(username) to use it).
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users(lower(username));

-- Every write made through the console or the CLI, and who made it.
CREATE TABLE IF NOT EXISTS audit (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,                  -- a username, or 'cli'
    action text NOT NULL,
    target text,
    data jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_target ON audit(target, seq);

-- Articles as editors keep them; the Markdown folder is one import source.
CREATE TABLE IF NOT EXISTS articles (
    id text PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL,
    questions jsonb NOT NULL DEFAULT '[]', -- alternate questions, searched too
    tags jsonb NOT NULL DEFAULT '[]',
    language text NOT NULL DEFAULT 'en',
    audience text NOT NULL DEFAULT 'customer' CHECK (audience IN ('customer', 'internal')),
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
    version integer NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL
);

-- Each save is a version; restoring one saves it again as the newest.
CREATE TABLE IF NOT EXISTS article_versions (
    article_id text NOT NULL REFERENCES articles(id),
    version integer NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    questions jsonb NOT NULL,
    tags jsonb NOT NULL,
    language text NOT NULL,
    audience text NOT NULL,
    status text NOT NULL,
    author text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (article_id, version)
);

CREATE TABLE IF NOT EXISTS canned_replies (
    id text PRIMARY KEY,
    title text NOT NULL,
    text text NOT NULL
);

-- Promptly schema for PostgreSQL, version 1: the same tables as schema_sqlite.sql, with
-- timestamptz for times and jsonb for JSON. Each migrations/NNN_*.sql here mirrors the SQLite
-- migration of the same number, so schema_version means the same thing on both backends.
CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);

CREATE TABLE IF NOT EXISTS customers (
    id text PRIMARY KEY,
    name text,
    email text,
    tier text NOT NULL DEFAULT 'consumer',
    created_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS channel_accounts (
    channel text NOT NULL,
    external_id text NOT NULL,
    customer_id text NOT NULL REFERENCES customers(id),
    PRIMARY KEY (channel, external_id)
);

CREATE TABLE IF NOT EXISTS conversations (
    id text PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers(id),
    channel text NOT NULL,
    state text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_customer ON conversations(customer_id, channel);

CREATE TABLE IF NOT EXISTS messages (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    conversation_id text NOT NULL REFERENCES conversations(id),
    direction text NOT NULL CHECK (direction IN ('in', 'out')),
    channel text NOT NULL,
    sender text,
    client_message_id text,
    type text NOT NULL,
    kind text,
    text text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    in_reply_to text,
    status text,
    created_at timestamptz NOT NULL,
    acked_at timestamptz,
    -- PostgreSQL only: several gateways share this database, and the one that claimed an
    -- unanswered message (or a reply to deliver) holds it until claimed_until (a lease, so a
    -- gateway that dies lets another take its work). SQLite has one writer process.
    claimed_by text,
    claimed_until timestamptz
);
-- The inbox's idempotency key: platform retries and client resends are stored once.
CREATE UNIQUE INDEX IF NOT EXISTS messages_inbound_key
    ON messages(channel, sender, client_message_id) WHERE direction = 'in';
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, seq);
CREATE INDEX IF NOT EXISTS messages_unanswered ON messages(status) WHERE direction = 'in';

CREATE TABLE IF NOT EXISTS tickets (
    id text PRIMARY KEY,
    reference text NOT NULL UNIQUE,
    conversation_id text NOT NULL REFERENCES conversations(id),
    customer_id text NOT NULL REFERENCES customers(id),
    queue text NOT NULL,
    priority text NOT NULL,
    tier text NOT NULL,
    status text NOT NULL,
    reason text NOT NULL,
    created_at timestamptz NOT NULL,
    first_response_due timestamptz NOT NULL,
    first_responded_at timestamptz,
    next_response_due timestamptz,
    resolved_at timestamptz,
    assignee text
);
CREATE INDEX IF NOT EXISTS tickets_status ON tickets(status, created_at);
-- At most one open ticket per conversation.
CREATE UNIQUE INDEX IF NOT EXISTS tickets_one_open
    ON tickets(conversation_id) WHERE status <> 'resolved';

CREATE TABLE IF NOT EXISTS events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    type text NOT NULL,
    conversation_id text,
    message_id text,
    ticket_id text,
    data jsonb NOT NULL DEFAULT '{}',
    -- PostgreSQL only: the writing transaction. seq is taken in allocation order, and with
    -- several writers a lower seq can commit after a higher one, so a reader tailing the log
    -- by seq could skip it; tailing by (tx, seq) below the oldest running transaction cannot.
    tx xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX IF NOT EXISTS events_conversation ON events(conversation_id, seq);
CREATE INDEX IF NOT EXISTS events_tail ON events(tx, seq);

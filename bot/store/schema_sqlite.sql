-- Promptly schema, version 1. Timestamps are ISO 8601 UTC text with microseconds.
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    name TEXT,
    email TEXT,
    tier TEXT NOT NULL DEFAULT 'consumer',
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS channel_accounts (
    channel TEXT NOT NULL,
    external_id TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    PRIMARY KEY (channel, external_id)
);

CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_customer ON conversations(customer_id, channel);

CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    channel TEXT NOT NULL,
    sender TEXT,
    client_message_id TEXT,
    type TEXT NOT NULL,
    kind TEXT,
    text TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    in_reply_to TEXT,
    status TEXT,
    created_at TEXT NOT NULL,
    acked_at TEXT
);
-- The inbox's idempotency key: platform retries and client resends are stored once.
CREATE UNIQUE INDEX IF NOT EXISTS messages_inbound_key
    ON messages(channel, sender, client_message_id) WHERE direction = 'in';
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, seq);
CREATE INDEX IF NOT EXISTS messages_unanswered ON messages(status) WHERE direction = 'in';

CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    customer_id TEXT NOT NULL REFERENCES customers(id),
    queue TEXT NOT NULL,
    priority TEXT NOT NULL,
    tier TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    first_response_due TEXT NOT NULL,
    first_responded_at TEXT,
    next_response_due TEXT,
    resolved_at TEXT,
    assignee TEXT
);
CREATE INDEX IF NOT EXISTS tickets_status ON tickets(status, created_at);
-- At most one open ticket per conversation.
CREATE UNIQUE INDEX IF NOT EXISTS tickets_one_open
    ON tickets(conversation_id) WHERE status != 'resolved';

CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    type TEXT NOT NULL,
    conversation_id TEXT,
    message_id TEXT,
    ticket_id TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_conversation ON events(conversation_id, seq);

-- SLA engine: every deadline of a ticket, the policy it is measured against, assignment,
-- agents with presence and capacity, and SLA timers that fired (each fires once, across
-- restarts).
ALTER TABLE tickets ADD COLUMN resolution_due TEXT;
ALTER TABLE tickets ADD COLUMN assigned_at TEXT;
ALTER TABLE tickets ADD COLUMN sla TEXT NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS tickets_queue ON tickets(queue, status, created_at);

CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    presence TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    skills TEXT NOT NULL DEFAULT '[]',
    queues TEXT NOT NULL DEFAULT '[]',
    last_assigned INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS sla_fired (
    ticket_id TEXT NOT NULL REFERENCES tickets(id),
    name TEXT NOT NULL,
    due TEXT NOT NULL,
    fired_at TEXT NOT NULL,
    PRIMARY KEY (ticket_id, name, due)
);
ALTER TABLE customers ADD COLUMN language TEXT;

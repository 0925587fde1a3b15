-- SLA engine: every deadline of a ticket, the policy it is measured against, assignment,
-- agents with presence and capacity, and SLA timers that fired (each fires once, across
-- restarts and across gateways: the primary key of sla_fired decides).
ALTER TABLE tickets ADD COLUMN resolution_due timestamptz;
ALTER TABLE tickets ADD COLUMN assigned_at timestamptz;
ALTER TABLE tickets ADD COLUMN sla jsonb NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS tickets_queue ON tickets(queue, status, created_at);

CREATE TABLE IF NOT EXISTS agents (
    id text PRIMARY KEY,
    name text NOT NULL,
    presence text NOT NULL,
    capacity integer NOT NULL,
    skills jsonb NOT NULL DEFAULT '[]',
    queues jsonb NOT NULL DEFAULT '[]',
    last_assigned bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS sla_fired (
    ticket_id text NOT NULL REFERENCES tickets(id),
    name text NOT NULL,
    due timestamptz NOT NULL,
    fired_at timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, name, due)
);
ALTER TABLE customers ADD COLUMN language text;

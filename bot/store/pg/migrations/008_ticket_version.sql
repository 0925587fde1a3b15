-- Optimistic concurrency on tickets: every write of a ticket row bumps its version, and a
-- whole-row write (save_ticket, record_agent_reply, assign_ticket) only lands on the version
-- it was computed from, so gateways sharing a database cannot overwrite each other's changes.
ALTER TABLE tickets ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- A fourth console role, lead: an agent who also sees the dashboard. PostgreSQL changes the
-- CHECK constraint in place (SQLite rebuilds the table).
ALTER TABLE users DROP CONSTRAINT users_role;
ALTER TABLE users ADD CONSTRAINT users_role
    CHECK (role IN ('agent', 'editor', 'lead', 'admin'));

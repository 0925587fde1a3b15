-- The content-gap report (bot/kb_api.py) reads the replies the bot declined or only offered
-- choices for, by time. A partial index holds just those events (a few per cent of the log),
-- so the report reads its period without scanning the log on the database thread, and the
-- acks' inserts pay nothing for the other events.
CREATE INDEX IF NOT EXISTS events_kb_gaps ON events(at)
    WHERE json_extract(data, '$.unsure') = 1 OR json_extract(data, '$.offered') IS NOT NULL;

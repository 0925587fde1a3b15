-- The content-gap report reads the replies the bot declined or only offered choices for, by
-- time: a partial index holds just those events. (SQLite's json_extract(data, '$.unsure') = 1
-- is true for JSON true; ->> never fails on a value of another type, so no insert can.)
CREATE INDEX IF NOT EXISTS events_kb_gaps ON events(at)
    WHERE data @> '{"unsure": true}' OR data ->> 'offered' IS NOT NULL;

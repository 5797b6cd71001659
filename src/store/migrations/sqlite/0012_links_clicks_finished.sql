-- Short links made for messages (one per message and URL), and the clicks people made on them.
CREATE TABLE links (
    code TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;

CREATE TABLE clicks (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    user_agent TEXT
);
CREATE INDEX clicks_by_message ON clicks (message_id, at);

-- Messages by the time they became final, for usage and reports. Only final rows are in it, so
-- accepting and sending a message do not write it; its status list is the one the queries name.
CREATE INDEX messages_finished ON messages (updated_at, seq)
    WHERE status IN ('delivered', 'undelivered', 'failed', 'canceled', 'rejected');

-- Reports count the opt-outs replies to a message gave.
CREATE INDEX opt_outs_by_message ON opt_outs (message_id) WHERE message_id IS NOT NULL;

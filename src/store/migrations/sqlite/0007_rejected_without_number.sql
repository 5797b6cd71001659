-- A CRM record refused before it had a readable number (a missing or malformed phone field) is
-- still stored, as a `rejected` message, so the refusal reaches the CRM: `to_number` may be NULL.
-- SQLite cannot drop a NOT NULL constraint, so the table is rebuilt with its indexes and trigger.
CREATE TABLE messages_rebuilt (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    to_number TEXT,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    encoding TEXT NOT NULL,
    characters INTEGER NOT NULL,
    segments INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_detail TEXT,
    source TEXT NOT NULL,
    metadata TEXT,
    provider_message_id TEXT,
    created_at INTEGER NOT NULL,
    send_at INTEGER,
    updated_at INTEGER NOT NULL,
    due_at INTEGER,
    lease_owner TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    source_record TEXT
);
INSERT INTO messages_rebuilt (seq, id, to_number, sender, body, encoding, characters, segments,
                              status, status_detail, source, metadata, provider_message_id,
                              created_at, send_at, updated_at, due_at, lease_owner, lease_until,
                              attempts, source_record)
SELECT seq, id, to_number, sender, body, encoding, characters, segments, status, status_detail,
       source, metadata, provider_message_id, created_at, send_at, updated_at, due_at,
       lease_owner, lease_until, attempts, source_record
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;
CREATE INDEX messages_by_status ON messages (status, seq);
CREATE INDEX messages_by_thread ON messages (to_number, sender, seq);
CREATE INDEX messages_by_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_queue ON messages (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX messages_by_lease_owner ON messages (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TRIGGER message_transition AFTER UPDATE OF status ON messages BEGIN
    INSERT INTO message_events (message_id, status, detail, at)
    VALUES (NEW.id, NEW.status, NEW.status_detail, NEW.updated_at);
END;

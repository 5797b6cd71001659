-- Times are Unix milliseconds (UTC); ids are the public ids.

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    to_number TEXT NOT NULL,
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
    -- The job: set while the message waits for or is in a worker's hands, NULL after.
    due_at INTEGER,
    lease_owner TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_status ON messages (status, seq);
CREATE INDEX messages_by_thread ON messages (to_number, sender, seq);
CREATE INDEX messages_by_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
-- The queue: only messages with work left are in this index.
CREATE INDEX messages_queue ON messages (due_at) WHERE due_at IS NOT NULL;

-- Every state change after acceptance, in order (acceptance itself is the message row).
CREATE TABLE message_events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX message_events_by_message ON message_events (message_id, id);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Status changes and replies of CRM-sourced messages, waiting for write-back.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
CREATE INDEX outbox_pending ON outbox (id) WHERE done_at IS NULL;

-- What the sandbox provider's simulated handsets received, and receipts still to report.
CREATE TABLE sandbox_sends (
    message_id TEXT PRIMARY KEY,
    provider_message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    to_number TEXT NOT NULL,
    body TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    at INTEGER NOT NULL,
    report_due INTEGER NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sandbox_sends_by_handset ON sandbox_sends (to_number, at);
CREATE INDEX sandbox_sends_unreported ON sandbox_sends (report_due) WHERE reported = 0;

-- Replies from handsets, linked to the latest message of the conversation.
CREATE TABLE replies (
    id INTEGER PRIMARY KEY,
    message_id TEXT,
    from_number TEXT NOT NULL,
    to_sender TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX replies_by_message ON replies (message_id, id);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The log and the outbox follow the messages table inside SQLite, so that recording a transition
-- is one statement. The store writes status only when a transition applies.
CREATE TRIGGER message_transition AFTER UPDATE OF status ON messages BEGIN
    INSERT INTO message_events (message_id, status, detail, at)
    VALUES (NEW.id, NEW.status, NEW.status_detail, NEW.updated_at);
END;

CREATE TRIGGER message_outbox AFTER UPDATE OF status ON messages
WHEN NEW.source != 'api' BEGIN
    INSERT INTO outbox (message_id, source, kind, payload, created_at)
    VALUES (NEW.id, NEW.source, 'status',
            json_object('status', NEW.status, 'detail', NEW.status_detail, 'at', NEW.updated_at),
            NEW.updated_at);
END;

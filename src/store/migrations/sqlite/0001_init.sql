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
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_by_status ON messages (status, seq);
CREATE INDEX messages_by_thread ON messages (to_number, sender, seq);
CREATE INDEX messages_by_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Every state change, in order.
CREATE TABLE message_events (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX message_events_by_message ON message_events (message_id, id);

-- Work for the dispatcher: one row per message still to hand to a provider.
CREATE TABLE jobs (
    message_id TEXT PRIMARY KEY,
    due_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_due ON jobs (due_at);

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

-- The log and the queue follow the messages table inside SQLite, so that accepting a batch or
-- recording a transition is one statement (one round trip to the database thread).
CREATE TRIGGER message_accepted AFTER INSERT ON messages BEGIN
    INSERT INTO message_events (message_id, status, at) VALUES (NEW.id, NEW.status, NEW.created_at);
END;

CREATE TRIGGER message_queued AFTER INSERT ON messages
WHEN NEW.status IN ('queued', 'scheduled') BEGIN
    INSERT INTO jobs (message_id, due_at) VALUES (NEW.id, COALESCE(NEW.send_at, NEW.created_at));
END;

-- Every status write is a transition (the store only writes status when one applies).
CREATE TRIGGER message_transition AFTER UPDATE OF status ON messages BEGIN
    INSERT INTO message_events (message_id, status, detail, at)
    VALUES (NEW.id, NEW.status, NEW.status_detail, NEW.updated_at);
END;

CREATE TRIGGER message_left_queue AFTER UPDATE OF status ON messages
WHEN NEW.status NOT IN ('queued', 'scheduled', 'sending') BEGIN
    DELETE FROM jobs WHERE message_id = NEW.id;
END;

CREATE TRIGGER message_outbox AFTER UPDATE OF status ON messages
WHEN NEW.source != 'api' BEGIN
    INSERT INTO outbox (message_id, source, kind, payload, created_at)
    VALUES (NEW.id, NEW.source, 'status',
            json_object('status', NEW.status, 'detail', NEW.status_detail, 'at', NEW.updated_at),
            NEW.updated_at);
END;

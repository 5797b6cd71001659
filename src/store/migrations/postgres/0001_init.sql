-- The SQLite migrations' end state in one PostgreSQL schema. Times are Unix milliseconds (UTC,
-- BIGINT) and ids the public ids, as in SQLite, so the same decoders read both.

CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    to_number TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    encoding TEXT NOT NULL,
    characters BIGINT NOT NULL,
    segments BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_detail TEXT,
    source TEXT NOT NULL,
    -- A CRM source names its record (NULL for api and otp), so write-back knows what to update.
    source_record TEXT,
    metadata TEXT,
    provider_message_id TEXT,
    created_at BIGINT NOT NULL,
    send_at BIGINT,
    updated_at BIGINT NOT NULL,
    -- The job: set while the message waits for or is in a worker's hands, NULL after.
    due_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_status ON messages (status, seq);
CREATE INDEX messages_by_thread ON messages (to_number, sender, seq);
CREATE INDEX messages_by_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
-- The queue: only messages with work left are in this index.
CREATE INDEX messages_queue ON messages (due_at) WHERE due_at IS NOT NULL;
-- Workers renew their own leases while they live; this finds a worker's jobs without a scan.
CREATE INDEX messages_by_lease_owner ON messages (lease_owner) WHERE lease_owner IS NOT NULL;

-- Every state change after acceptance, in order (acceptance itself is the message row).
CREATE TABLE message_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX message_events_by_message ON message_events (message_id, id);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE api_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Status changes and replies of messages whose source feeds it, waiting for write-back. Which
-- sources do is decided in Rust (`Source::feeds_outbox`), in the commit that makes the change.
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL,
    source TEXT NOT NULL,
    source_record TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE done_at IS NULL;

-- What the sandbox provider's simulated handsets received, and receipts still to report.
CREATE TABLE sandbox_sends (
    message_id TEXT PRIMARY KEY,
    -- Arrival order among sends of the same millisecond (SQLite's rowid).
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    provider_message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    to_number TEXT NOT NULL,
    body TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    at BIGINT NOT NULL,
    report_due BIGINT NOT NULL,
    reported BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sandbox_sends_by_handset ON sandbox_sends (to_number, at);
CREATE INDEX sandbox_sends_unreported ON sandbox_sends (report_due) WHERE NOT reported;

-- Replies from handsets, linked to the latest message of the conversation.
CREATE TABLE replies (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT,
    from_number TEXT NOT NULL,
    to_sender TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX replies_by_message ON replies (message_id, id);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One-time passwords: only an HMAC of each code is kept.
CREATE TABLE otp_verifications (
    id TEXT PRIMARY KEY,
    to_number TEXT NOT NULL,
    prefix TEXT NOT NULL,
    -- The number without its last four digits, which the burst rule counts by.
    burst_prefix TEXT NOT NULL,
    code_hash BYTEA NOT NULL,
    status TEXT NOT NULL,            -- pending, approved, canceled, max_attempts_reached
    checks BIGINT NOT NULL DEFAULT 0,
    max_checks BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    client_ip TEXT,
    device_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX otp_by_number ON otp_verifications (to_number, created_at);
CREATE INDEX otp_by_prefix ON otp_verifications (prefix, created_at);
CREATE INDEX otp_by_burst_prefix ON otp_verifications (burst_prefix, created_at);
CREATE INDEX otp_by_ip ON otp_verifications (client_ip, created_at) WHERE client_ip IS NOT NULL;
CREATE INDEX otp_by_device ON otp_verifications (device_id, created_at) WHERE device_id IS NOT NULL;

-- Number prefixes whose OTP traffic looked like SMS pumping, blocked until `until`.
CREATE TABLE otp_blocked_prefixes (
    prefix TEXT PRIMARY KEY,
    until BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Managed allow and deny lists (list = 'allow' or 'deny'); entries are shown masked, so each
-- has an id a client can use to look it up or remove it.
CREATE TABLE number_lists (
    list TEXT NOT NULL,
    number TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (list, number)
);

-- The log follows the messages table inside the transaction that changes it: it decides
-- nothing, it records every change of status. Acceptance itself is the message row, as in
-- SQLite (`MessageRecord::with_history` puts it first), so only updates of status are logged.
CREATE FUNCTION log_message_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_events (message_id, status, detail, at)
    VALUES (NEW.id, NEW.status, NEW.status_detail, NEW.updated_at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER message_transition AFTER UPDATE OF status ON messages
FOR EACH ROW EXECUTE FUNCTION log_message_transition();

-- One-time passwords: only an HMAC of each code is kept.
CREATE TABLE otp_verifications (
    id TEXT PRIMARY KEY,
    to_number TEXT NOT NULL,
    prefix TEXT NOT NULL,
    code_hash BLOB NOT NULL,
    status TEXT NOT NULL,            -- pending, approved, canceled, max_attempts_reached
    checks INTEGER NOT NULL DEFAULT 0,
    max_checks INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    client_ip TEXT,
    device_id TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX otp_by_number ON otp_verifications (to_number, created_at);
CREATE INDEX otp_by_prefix ON otp_verifications (prefix, created_at);
CREATE INDEX otp_by_ip ON otp_verifications (client_ip, created_at) WHERE client_ip IS NOT NULL;
CREATE INDEX otp_by_device ON otp_verifications (device_id, created_at) WHERE device_id IS NOT NULL;

-- Number prefixes whose OTP traffic looked like SMS pumping, blocked until `until`.
CREATE TABLE otp_blocked_prefixes (
    prefix TEXT PRIMARY KEY,
    until INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Managed allow and deny lists (list = 'allow' or 'deny').
CREATE TABLE number_lists (
    list TEXT NOT NULL,
    number TEXT NOT NULL,
    reason TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (list, number)
);

-- OTP texts carry a secret: they never reach the CRM outbox.
DROP TRIGGER message_outbox;
CREATE TRIGGER message_outbox AFTER UPDATE OF status ON messages
WHEN NEW.source NOT IN ('api', 'otp') BEGIN
    INSERT INTO outbox (message_id, source, kind, payload, created_at)
    VALUES (NEW.id, NEW.source, 'status',
            json_object('status', NEW.status, 'detail', NEW.status_detail, 'at', NEW.updated_at),
            NEW.updated_at);
END;

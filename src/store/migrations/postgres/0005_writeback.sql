-- Write-back: one worker at a time per CRM connection holds its lease (so the records' order is
-- kept across instances), pending entries are read per connection, and a record the CRM refused
-- for good says why on its message.
CREATE TABLE writeback_leases (
    connection TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (source, id) WHERE done_at IS NULL;
ALTER TABLE messages ADD COLUMN writeback_error TEXT;

-- A CRM source names its record (NULL for api and otp), so write-back knows what to update.
ALTER TABLE messages ADD COLUMN source_record TEXT;
ALTER TABLE outbox ADD COLUMN source_record TEXT;

-- Which sources feed the outbox is decided in Rust (`Source::feeds_outbox`), which adds the
-- entry in the same commit as the change. The event log stays a trigger: it decides nothing,
-- it records every change of status.
DROP TRIGGER message_outbox;

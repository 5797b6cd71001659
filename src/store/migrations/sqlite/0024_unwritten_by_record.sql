-- The CRM records with a message not yet written back to them: the kintone poller sends a record
-- again only once its last message reached it (an edit in between is not a new trigger).
CREATE INDEX messages_unwritten_by_record ON messages (source, source_record)
    WHERE written_back_at IS NULL AND source_record IS NOT NULL;

-- When catch-up polling of each kintone connection started: the poller takes only records
-- changed since, so a new connection does not send to every record already in the trigger status.
CREATE TABLE poll_marks (
    connection TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL
);

-- Dry-run write-back: the CRM calls a connection would have made, with their exact bodies, kept a
-- week (each write purges older ones).
CREATE TABLE writeback_calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    connection TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    message_ids TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX writeback_calls_by_connection ON writeback_calls (connection, seq);
CREATE INDEX writeback_calls_by_time ON writeback_calls (at);

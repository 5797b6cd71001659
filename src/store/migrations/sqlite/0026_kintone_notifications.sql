-- What each kintone notification (a webhook, by its `id`) was answered, so an admin can ask what
-- became of one that kintone's webhook log shows only as a success. Kept 30 days (an hourly purge).
CREATE TABLE kintone_notifications (
    connection TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    event TEXT NOT NULL,
    record_id TEXT,
    answer TEXT NOT NULL,
    PRIMARY KEY (connection, notification_id)
);
CREATE INDEX kintone_notifications_by_time ON kintone_notifications (received_at);

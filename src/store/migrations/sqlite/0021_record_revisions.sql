-- The latest revision known of each CRM record (kintone's `$revision`), from the webhooks that
-- brought it and the writes that gave it: write-back writes at it without reading it first, and
-- reads only after kintone says someone saved the record since.
CREATE TABLE crm_record_revisions (
    connection TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (connection, record)
);
CREATE INDEX crm_record_revisions_by_age ON crm_record_revisions (at);

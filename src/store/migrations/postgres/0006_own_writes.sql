-- The revisions tsunagi's own write-backs gave CRM records (kintone), so a webhook those writes
-- fired after all (an echo) is recognised and sends nothing. A week of them is kept.
CREATE TABLE crm_own_writes (
    connection TEXT NOT NULL,
    record TEXT NOT NULL,
    revision BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (connection, record, revision)
);
CREATE INDEX crm_own_writes_by_age ON crm_own_writes (at);

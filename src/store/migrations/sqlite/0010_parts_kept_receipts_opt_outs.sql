-- The provider ids of the parts of a long message (SMPP sends each part on its own), so each
-- part's receipt is accounted for and the message is final once every part's receipt came.
CREATE TABLE message_parts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    part_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    part BIGINT NOT NULL,
    status TEXT,
    detail TEXT
);
CREATE INDEX message_parts_by_part_id ON message_parts (part_id);
CREATE INDEX message_parts_by_message ON message_parts (message_id, part);

-- Receipts whose id matched no message when they came, tried again until it does.
CREATE TABLE kept_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_message_id TEXT NOT NULL,
    is_part BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    received_at BIGINT NOT NULL,
    next_try_at BIGINT NOT NULL,
    tries BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX kept_receipts_due ON kept_receipts (next_try_at);

-- Numbers that opted out of messages from a sender ('*': from every sender), by a reply such as
-- STOP or 停止, or over the API; opting back in deletes the row.
CREATE TABLE opt_outs (
    number TEXT NOT NULL,
    sender TEXT NOT NULL,
    at BIGINT NOT NULL,
    via TEXT NOT NULL,
    keyword TEXT,
    message_id TEXT,
    PRIMARY KEY (number, sender)
);
CREATE INDEX opt_outs_by_age ON opt_outs (at);

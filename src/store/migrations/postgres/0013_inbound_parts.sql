-- Parts of long messages handsets send, kept until the last comes in (see store/inbound_parts.rs).
CREATE TABLE inbound_parts (
    sender TEXT NOT NULL,
    reference INTEGER NOT NULL,
    total INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data_coding INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    -- When the message's first part came, the same on every part of it.
    first_at BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (sender, reference, total, seq)
);
CREATE INDEX inbound_parts_by_age ON inbound_parts (at);

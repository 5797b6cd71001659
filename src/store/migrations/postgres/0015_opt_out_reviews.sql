-- Replies that asked to stop inside a sentence (「停止してください」), held until a person opts
-- the number out (outcome 'opt_out') or dismisses them ('dismiss'). See store/consent.rs.
CREATE TABLE opt_out_reviews (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    message_id TEXT,
    received_at BIGINT NOT NULL,
    settled_at BIGINT,
    outcome TEXT
);
CREATE INDEX opt_out_reviews_open ON opt_out_reviews (id) WHERE settled_at IS NULL;

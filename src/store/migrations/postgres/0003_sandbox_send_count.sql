-- How many times the provider was asked to send each message: a repeat (a send retried after a
-- crash that hid whether it went out) shows here instead of vanishing in the idempotent insert.
ALTER TABLE sandbox_sends ADD COLUMN sends BIGINT NOT NULL DEFAULT 1;

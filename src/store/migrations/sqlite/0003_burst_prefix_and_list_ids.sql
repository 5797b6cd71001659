-- The pumping breaker's burst rule groups codes by the number without its last four digits.
ALTER TABLE otp_verifications ADD COLUMN burst_prefix TEXT NOT NULL DEFAULT '';
UPDATE otp_verifications SET burst_prefix = substr(to_number, 1, length(to_number) - 4);
CREATE INDEX otp_by_burst_prefix ON otp_verifications (burst_prefix, created_at);

-- Entries are shown masked, so each gets an id a client can use to look it up or remove it.
ALTER TABLE number_lists ADD COLUMN id TEXT;
-- Same shape as new ids (num_ and a ULID): a leading 0 keeps the 26 characters within 128 bits.
UPDATE number_lists SET id = 'num_0' || substr(hex(randomblob(13)), 1, 25);
CREATE UNIQUE INDEX number_lists_by_id ON number_lists (id);

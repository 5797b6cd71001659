-- When a message stops being worth sending (an OTP's code expiry, a request's `expires_at`), in
-- Unix milliseconds like every time here: the dispatcher never hands it over after that, and
-- providers are given the time left as the validity period.
ALTER TABLE messages ADD COLUMN expires_at INTEGER;

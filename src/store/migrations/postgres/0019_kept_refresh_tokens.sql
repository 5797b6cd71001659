-- The refresh token each Salesforce connection signs in with, once Salesforce rotated the one in
-- its config: sealed with a key from the server secret, beside a fingerprint of the config's
-- token, so a new token in the config wins over the kept one.
CREATE TABLE kept_refresh_tokens (
    connection TEXT PRIMARY KEY,
    config_fingerprint TEXT NOT NULL,
    sealed TEXT NOT NULL,
    kept_at BIGINT NOT NULL
);

-- The provider's id for a reply (Twilio's MessageSid), so a webhook delivered twice stores one reply.
ALTER TABLE replies ADD COLUMN provider_id TEXT;
CREATE UNIQUE INDEX replies_by_provider_id ON replies (provider_id) WHERE provider_id IS NOT NULL;

-- A CRM record refused before it had a readable number (a missing or malformed phone field) is
-- still stored, as a `rejected` message, so the refusal reaches the CRM: `to_number` may be NULL.
ALTER TABLE messages ALTER COLUMN to_number DROP NOT NULL;

-- What a send that may have reached its provider left to resume from (the SMPP parts already
-- accepted and their concatenation reference), so a retry sends only the rest, on the same
-- route (`route`, set by such a retry as by a send).
ALTER TABLE messages ADD COLUMN send_progress TEXT;

-- The highest record id the kintone ADD_RECORD catch-up has looked at: records added after it
-- whose webhook was lost are taken, and none added before the connection started.
ALTER TABLE poll_marks ADD COLUMN last_id INTEGER;

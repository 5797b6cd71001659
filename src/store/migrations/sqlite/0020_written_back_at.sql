-- When a message's changes last reached its CRM record (Unix milliseconds), shown by
-- `GET /v1/messages/{id}` beside `writeback_error`.
ALTER TABLE messages ADD COLUMN written_back_at INTEGER;

-- The route that took a message (`[[delivery.routes]]` name, or the provider's name without
-- routes), set when it is sent, so reports can give delivery rate and time per route.
ALTER TABLE messages ADD COLUMN route TEXT;

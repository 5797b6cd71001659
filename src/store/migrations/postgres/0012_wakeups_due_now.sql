-- Wake-ups only for work due now, and signed by the instance that caused them.
-- An accepted batch wakes the other instances only if one of its messages is queued (due at
-- once); a scheduled one is found by each dispatcher's look at the queue, at least once a second,
-- so a burst of messages scheduled for later wakes no one into claiming nothing. The payload is the sending session's
-- application_name, which each instance sets to a name of its own, so an instance can skip
-- its own notifications: its dispatcher was already woken in process.

CREATE OR REPLACE FUNCTION notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tsunagi_jobs', current_setting('application_name'));
    RETURN NULL;
END;
$$;

CREATE FUNCTION notify_jobs_accepted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM accepted WHERE status = 'queued') THEN
        PERFORM pg_notify('tsunagi_jobs', current_setting('application_name'));
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER jobs_accepted ON messages;
CREATE TRIGGER jobs_accepted AFTER INSERT ON messages
REFERENCING NEW TABLE AS accepted
FOR EACH STATEMENT EXECUTE FUNCTION notify_jobs_accepted();

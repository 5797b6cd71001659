-- Wake-ups for the other instances' dispatchers: a NOTIFY on `tsunagi_jobs` whenever work joins
-- the queue or falls due sooner, sent by the transaction that does it and so delivered at its
-- commit (never for a rollback). Each instance LISTENs on one connection and claims at once
-- instead of at its next idle poll. PostgreSQL folds identical notifications of one transaction
-- into one, so a batch costs one wake-up whatever its size.

CREATE FUNCTION notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tsunagi_jobs', '');
    RETURN NULL;
END;
$$;

-- Accepted messages, queued or scheduled: once per statement, so once per batch insert.
CREATE TRIGGER jobs_accepted AFTER INSERT ON messages
FOR EACH STATEMENT EXECUTE FUNCTION notify_jobs();

-- A job handed back to the queue (a retry after a transient provider error) or moved to an
-- earlier time. Claims, lease renewals and final states do not match, so a claim never wakes the
-- others into claiming nothing.
CREATE TRIGGER jobs_due_sooner AFTER UPDATE OF due_at ON messages
FOR EACH ROW
WHEN (NEW.due_at IS NOT NULL AND NEW.lease_owner IS NULL
      AND (OLD.lease_owner IS NOT NULL OR OLD.due_at IS NULL OR NEW.due_at < OLD.due_at))
EXECUTE FUNCTION notify_jobs();

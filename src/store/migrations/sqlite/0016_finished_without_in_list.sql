-- SQLite tests a partial index's condition on every row it writes, and an IN list of more than two
-- values costs it a temporary b-tree built and freed each time: messages_finished made every
-- insert and status change of a message build two. The same condition as comparisons costs none.
-- The report queries name this exact condition (store/sqlite/reports.rs, FINISHED).
DROP INDEX messages_finished;
CREATE INDEX messages_finished ON messages (updated_at, seq)
    WHERE status = 'delivered' OR status = 'undelivered' OR status = 'failed'
       OR status = 'canceled' OR status = 'rejected';

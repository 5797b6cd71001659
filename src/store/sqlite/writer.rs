//! The one writer: a thread with its own connection that commits whatever writes are queued in
//! one transaction (group commit). Callers wait for the commit, so an answer means durable.
//!
//! A plain thread and synchronous rusqlite calls, because every statement through an async
//! driver costs two thread hand-offs; here a statement costs microseconds and a commit costs
//! one fsync shared by the whole batch.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::store::{StoreError, StoreResult};

/// Most operations one commit carries; more wait for the next.
const MAX_BATCH: usize = 512;

/// Called after the batch's commit with its result.
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs a write; says whether to keep its changes and how to answer after the commit.
type Run = Box<dyn FnOnce(&Connection) -> (bool, Done) + Send>;

/// A write, run inside the shared transaction.
struct Work {
    run: Run,
    /// Several statements that must stand or fall together get a savepoint; one statement is
    /// atomic by itself and skips it.
    savepoint: bool,
}

/// Handle to the writer thread.
pub(super) struct Writer {
    tx: mpsc::Sender<Work>,
}

impl Writer {
    /// Start the writer thread on `conn`; it stops when the last handle is dropped.
    pub(super) fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel(8192);
        std::thread::Builder::new()
            .name("tsunagi-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .expect("spawn the writer thread");
        Writer { tx }
    }

    /// Run `f` in the next group commit; its result comes back once that commit is durable.
    /// If `f` fails, its own changes are rolled back and the rest of the batch goes on.
    pub(super) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// `run` for an `f` that executes exactly one writing statement.
    pub(super) async fn run_statement<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, savepoint: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: Run = Box::new(move |conn: &Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, done)
        });
        self.tx
            .send(Work { run, savepoint })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Work>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        // Take what is already queued, never wait for more: a lone request is not delayed.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        commit(&conn, &mut batch);
    }
}

/// Run one of the writer's own statements, prepared once: most writes take a savepoint, and
/// parsing its statements anew each time cost more than running them.
fn statement(conn: &Connection, sql: &str) {
    if let Err(e) = conn.prepare_cached(sql).and_then(|mut s| s.execute([])) {
        tracing::error!(error = %e, sql, "writer statement failed");
    }
}

fn commit(conn: &Connection, batch: &mut Vec<Work>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the work unblocks its callers with an error; none of it ran.
        tracing::error!(error = %e, "cannot begin a write transaction");
        batch.clear();
        return;
    }
    let mut dones = Vec::with_capacity(batch.len());
    for work in batch.drain(..) {
        if work.savepoint {
            statement(conn, "SAVEPOINT op");
        }
        let (keep, done) = (work.run)(conn);
        if work.savepoint {
            if !keep {
                statement(conn, "ROLLBACK TO op");
            }
            statement(conn, "RELEASE op");
        }
        dones.push(done);
    }
    let result = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if let Err(e) = &result {
        tracing::error!(error = %e, "group commit failed");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for done in dones {
        done(result.clone());
    }
}

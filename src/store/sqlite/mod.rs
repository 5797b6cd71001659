//! SQLite backend: WAL with `synchronous=FULL`; one writer thread commits every write in group
//! commits (see `writer`), and a pool of readers answers queries concurrently. One file per
//! concern implements that concern's trait; this one opens, migrates and holds what they share.

mod consent;
mod inbound_parts;
mod keys;
mod kintone_notifications;
mod links;
mod lists;
mod messages;
mod otp;
mod outbox;
mod queue;
mod receipts;
mod reports;
mod sandbox;
mod writeback_log;
mod writer;

use std::{fs::File, path::PathBuf, str::FromStr, time::Duration};

use async_trait::async_trait;
use rusqlite::{params, Connection};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
        SqliteSynchronous,
    },
    Connection as _, SqlitePool,
};

use self::writer::Writer;
use super::{Connections, HealthStore, StoreError, StoreResult};
use crate::{domain::hygiene::Listing, domain::phone::PhoneNumber};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// Readers unless `[database] pool_size` says otherwise.
const DEFAULT_READERS: u32 = 4;

/// The SQLite store. One process owns a database file at a time (a lock file enforces it).
pub struct SqliteStore {
    read: SqlitePool,
    writer: Writer,
    _lock: File,
}

impl SqliteStore {
    /// Open (creating if needed) the database a `sqlite://PATH` URL names and migrate it.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        Self::open_with(url, &Connections::default()).await
    }

    /// `open`, with `connections.pool_size` readers (the writer is a connection of its own).
    pub async fn open_with(url: &str, connections: &Connections) -> StoreResult<SqliteStore> {
        let path = db_path(url);
        let lock = lock_file(&path)?;
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .optimize_on_close(false, None);
        let mut migrator_conn = SqliteConnection::connect_with(&options).await?;
        MIGRATOR.run_direct(&mut migrator_conn).await?;
        migrator_conn.close().await?;
        // Readers keep small page caches (the OS caches the file for them all) and extra readers
        // close once a burst is over, so memory a burst took is given back when the server idles.
        let read = SqlitePoolOptions::new()
            .max_connections(connections.pool_size.unwrap_or(DEFAULT_READERS))
            .min_connections(1)
            .idle_timeout(Duration::from_secs(10))
            .connect_with(options.pragma("cache_size", "-512"))
            .await?;
        let conn = Connection::open(&path)?;
        // The writer's savepoints, and each statement whose trigger writes another table, keep
        // copies of the pages they change in a journal held in memory up to SQLite's 64 KiB and
        // in a temporary file past it (see .cargo/config.toml for why not more).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStore {
            read,
            writer: Writer::start(conn),
            _lock: lock,
        })
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::{ffi::ErrorCode, Error};
        match &e {
            Error::SqliteFailure(failure, _) if failure.code == ErrorCode::ConstraintViolation => {
                StoreError::Conflict(e.to_string())
            }
            Error::FromSqlConversionFailure(..)
            | Error::IntegralValueOutOfRange(..)
            | Error::Utf8Error(_)
            | Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

fn db_path(url: &str) -> PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

/// Two processes writing one SQLite file would each lease the other's jobs; refuse the second.
fn lock_file(db: &std::path::Path) -> StoreResult<File> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let file = File::create(&name).map_err(|e| {
        StoreError::Locked(format!(
            "cannot create {}: {e}",
            PathBuf::from(&name).display()
        ))
    })?;
    file.try_lock().map_err(|_| {
        StoreError::Locked(format!(
            "{} is in use by another tsunagi process; SQLite serves one instance (use PostgreSQL to share a queue)",
            db.display()
        ))
    })?;
    Ok(file)
}

/// The lists' entries for a number (?1) and sender (?2): one statement, four probes of primary
/// keys, since this runs for every accepted message. Each probe names its key in full: SQLite
/// walks an IN list on a key through a temporary b-tree built for every run.
const LISTING: &str = "SELECT list FROM number_lists WHERE list = 'allow' AND number = ?1
     UNION ALL SELECT list FROM number_lists WHERE list = 'deny' AND number = ?1
     UNION ALL SELECT 'opt_out' FROM opt_outs WHERE number = ?1 AND sender = ?2
     UNION ALL SELECT 'opt_out' FROM opt_outs WHERE number = ?1 AND sender = '*'";

/// Where a number stands on the lists, read inside the writer's transaction.
fn listing(conn: &Connection, to: &PhoneNumber, sender: &str) -> StoreResult<Listing> {
    let mut listing = Listing::default();
    let mut lists = conn.prepare_cached(LISTING)?;
    let mut rows = lists.query(params![to.e164(), sender])?;
    while let Some(row) = rows.next()? {
        match row.get_ref(0)?.as_str().unwrap_or_default() {
            "deny" => listing.denied = true,
            "opt_out" => listing.opted_out = true,
            _ => listing.allowed = true,
        }
    }
    Ok(listing)
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn ready(&self) -> StoreResult<()> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.read)
                .await?;
        match MIGRATOR.iter().find(|m| !applied.contains(&m.version)) {
            Some(m) => Err(StoreError::Unavailable(format!(
                "migration {} ({}) is not applied",
                m.version, m.description
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::{
        domain::hygiene::Hygiene,
        domain::{
            ids::MessageId, phone::PhoneNumber, segment::Segmentation, source::Source,
            state::JobState,
        },
        store::{
            contract::contract_tests, MessageStore, NewMessage, QueueStore, Store, Transition,
        },
    };

    async fn open() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (SqliteStore::open(&url).await.unwrap(), dir)
    }

    async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
        let (store, dir) = open().await;
        (Arc::new(store), dir)
    }

    contract_tests!(fresh);

    /// How many temporary b-trees `sql`'s plan builds each time it runs.
    fn temporary_btrees(conn: &Connection, sql: &str) -> usize {
        let mut plan = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; plan.parameter_count()];
        let opcodes: Vec<String> = plan
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        opcodes.iter().filter(|op| *op == "OpenEphemeral").count()
    }

    #[test]
    fn a_savepoint_that_changes_megabytes_commits() {
        // A statement journal spilled to its file in writes over 128 KiB failed the savepoint
        // with "database or disk is full" (SQLITE_STMTJRNL_SPILL was 1 MiB): a batch of receipts
        // then failed for ever.
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("big.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE log (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TRIGGER logged AFTER UPDATE OF v ON t BEGIN INSERT INTO log (v) VALUES (NEW.v); END;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO t (id, v) SELECT i, printf('%.400c', 'x') FROM n;",
        )
        .unwrap();
        conn.execute_batch("BEGIN; SAVEPOINT op;").unwrap();
        let changed = conn.execute("UPDATE t SET v = v || 'changed'", []).unwrap();
        conn.execute_batch("RELEASE op; COMMIT;").unwrap();
        assert_eq!(changed, 5000);
    }

    #[test]
    fn the_bundled_sqlite_is_built_with_the_writers_flags() {
        // Set in .cargo/config.toml; a build that misses them is correct but slower.
        let conn = Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("SELECT compile_options FROM pragma_compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o.starts_with("STMTJRNL_SPILL=")),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn accepting_and_moving_a_message_builds_no_temporary_btrees() {
        // Each one cost the writer an allocation of a pager and its pages on every message.
        let (_store, dir) = open().await;
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        for sql in [
            LISTING,
            "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments,
                                   status, source, created_at, updated_at, due_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "UPDATE messages SET status = ?, updated_at = ?, due_at = NULL, lease_owner = NULL
             WHERE id = ? AND (status = ? OR status = ? OR status = ?)",
        ] {
            assert_eq!(temporary_btrees(&conn, sql), 0, "{sql}");
        }
        assert_eq!(
            temporary_btrees(&conn, "SELECT 1 FROM opt_outs WHERE sender IN (?, ?, ?)"),
            1,
            "an IN list is counted"
        );
    }

    fn message(source: Source) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            to: PhoneNumber::parse("09012345678").unwrap(),
            from: "TSUNAGI".into(),
            body: "123456".into(),
            segmentation: Segmentation::of("123456"),
            status: JobState::Queued,
            source,
            metadata: None,
            created_at: Utc::now(),
            send_at: None,
            expires_at: None,
            links: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_database() {
        let (_s, dir) = open().await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let Err(err) = SqliteStore::open(&url).await else {
            panic!("opened a database another store holds");
        };
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
    }

    #[tokio::test]
    async fn an_otp_text_is_erased_once_the_provider_has_it() {
        let (s, _dir) = open().await;
        let (otp, api) = (message(Source::Otp), message(Source::Api));
        for m in [&otp, &api] {
            s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
            s.claim("w", 1, Duration::from_secs(60), Utc::now())
                .await
                .unwrap();
            let sent = Transition {
                message_id: m.id.clone(),
                to: JobState::Sent,
                detail: None,
                provider_message_id: None,
                retry_at: None,
                refund_attempt: false,
                route: None,
                progress: None,
            };
            s.transition(sent, Utc::now()).await.unwrap().unwrap();
        }
        let body = |id: MessageId| {
            sqlx::query_scalar::<_, String>("SELECT body FROM messages WHERE id = ?")
                .bind(id.as_str().to_string())
                .fetch_one(&s.read)
        };
        assert_eq!(body(otp.id).await.unwrap(), "");
        assert_eq!(body(api.id).await.unwrap(), "123456");
    }

    #[tokio::test]
    async fn a_stored_value_that_does_not_read_back_is_corrupt() {
        let (s, _dir) = open().await;
        let m = message(Source::Api);
        s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
        for damage in [
            "UPDATE messages SET to_number = 'not-a-number'",
            "UPDATE messages SET source = 'crm'",
            "UPDATE messages SET status = 'lost'",
        ] {
            sqlx::query(damage).execute(&s.read).await.unwrap();
            let read = s.message(&m.id).await;
            assert!(
                matches!(read, Err(StoreError::Corrupt(_))),
                "{damage}: {read:?}"
            );
            sqlx::query(
                "UPDATE messages SET to_number = '+819012345678', source = 'api', status = 'queued'",
            )
            .execute(&s.read)
            .await
            .unwrap();
        }
        sqlx::query("UPDATE messages SET id = 'msg_nope'")
            .execute(&s.read)
            .await
            .unwrap();
        let claimed = s.claim("w", 1, Duration::from_secs(60), Utc::now()).await;
        assert!(
            matches!(claimed, Err(StoreError::Corrupt(_))),
            "a job whose id does not parse is not sent under a fresh id: {claimed:?}"
        );
        let status: String = sqlx::query_scalar("SELECT status FROM messages")
            .fetch_one(&s.read)
            .await
            .unwrap();
        assert_eq!(status, "queued", "the failed claim rolled back");
    }
}

//! SQLite backend: WAL, `synchronous=FULL`, one writer task that commits whatever is queued in one
//! transaction (group commit), and a pool of readers.

use std::{collections::HashMap, fs::File, path::PathBuf, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
    Connection, QueryBuilder, Row, SqlitePool,
};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::domain::{phone::PhoneNumber, segment::Encoding, state::JobState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// Most operations one commit carries; more wait for the next.
const MAX_BATCH: usize = 256;

/// Called after the batch's commit with whether it succeeded.
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write run inside the shared transaction; says whether to keep its changes.
type RunFn =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Done)> + Send>;

enum Op {
    Accept {
        message: Box<NewMessage>,
        idempotency: Option<IdempotencyRecord>,
        reply: oneshot::Sender<StoreResult<Acceptance>>,
    },
    Run {
        run: RunFn,
        /// Several statements that must stand or fall together; a single statement is atomic
        /// by itself and saves the savepoint's round trips.
        savepoint: bool,
    },
}

/// The SQLite store. One process owns a database file at a time (a lock file enforces it).
pub struct SqliteStore {
    read: SqlitePool,
    writer: mpsc::Sender<Op>,
    _lock: File,
}

impl SqliteStore {
    /// Open (creating if needed) the database a `sqlite://PATH` URL names and migrate it.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let path = db_path(url);
        let lock = lock_file(&path)?;
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .optimize_on_close(false, None);
        // Batches of every size are distinct multi-row statements; keep them all prepared.
        let mut writer =
            SqliteConnection::connect_with(&options.clone().statement_cache_capacity(1024)).await?;
        MIGRATOR.run_direct(&mut writer).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(writer, rx));
        Ok(SqliteStore {
            read,
            writer: tx,
            _lock: lock,
        })
    }

    /// Run `f` (several statements) inside the next group commit and return its result once
    /// that commit is durable; if it fails, its statements are undone and the batch goes on.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        self.submit(f, true).await
    }

    /// `write` for an `f` that runs exactly one writing statement.
    async fn write_one<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, savepoint: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: RunFn = Box::new(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let ok = result.is_ok();
                let done: Done = Box::new(move |commit| {
                    let _ = tx.send(commit.and(result));
                });
                (ok, done)
            })
        });
        self.writer
            .send(Op::Run { run, savepoint })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Database(
        "the write was not carried out (the store is failing or shutting down)".into(),
    )
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

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // recv_many returns what is queued without waiting for more: a lone request is not delayed.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&mut conn, &mut batch).await;
    }
    let _ = conn.close().await;
}

async fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<Op>) {
    let mut runs = Vec::new();
    let mut accepts = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::Accept {
                message,
                idempotency,
                reply,
            } => accepts.push((message, idempotency, reply)),
            Op::Run { run, savepoint } => runs.push((run, savepoint)),
        }
    }
    // The hot path: plain acceptances are one multi-row INSERT, atomic and durable on its own.
    if runs.is_empty() && accepts.iter().all(|(_, idem, _)| idem.is_none()) {
        let result = insert_accepts(conn, &accepts).await;
        reply_accepts(accepts, result);
        return;
    }
    let mut dones: Vec<Done> = Vec::with_capacity(runs.len());
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        // Dropping the runs unblocks their callers with an error; none of them ran.
        drop(runs);
        reply_accepts(accepts, Err(StoreError::from(e)));
        return;
    }
    for (run, savepoint) in runs {
        if savepoint {
            let _ = sqlx::query("SAVEPOINT op").execute(&mut *conn).await;
        }
        let (keep, done) = run(conn).await;
        if savepoint {
            if !keep {
                let _ = sqlx::query("ROLLBACK TO op").execute(&mut *conn).await;
            }
            let _ = sqlx::query("RELEASE op").execute(&mut *conn).await;
        }
        dones.push(done);
    }
    let mut accepted = if accepts.is_empty() {
        Ok(Vec::new())
    } else {
        let _ = sqlx::query("SAVEPOINT accepts").execute(&mut *conn).await;
        let r = insert_accepts(conn, &accepts).await;
        if r.is_err() {
            let _ = sqlx::query("ROLLBACK TO accepts").execute(&mut *conn).await;
        }
        let _ = sqlx::query("RELEASE accepts").execute(&mut *conn).await;
        r
    };
    let commit = sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(StoreError::from);
    if let Err(e) = &commit {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        accepted = Err(e.clone());
    }
    for done in dones {
        done(commit.clone());
    }
    reply_accepts(accepts, accepted);
}

fn reply_accepts(accepts: Vec<AcceptItem>, result: StoreResult<Vec<Acceptance>>) {
    match result {
        Ok(outcomes) => {
            for ((_, _, reply), outcome) in accepts.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for (_, _, reply) in accepts {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

type AcceptItem = (
    Box<NewMessage>,
    Option<IdempotencyRecord>,
    oneshot::Sender<StoreResult<Acceptance>>,
);

/// Insert a batch of accepted messages with one multi-row statement per table.
async fn insert_accepts(
    conn: &mut SqliteConnection,
    items: &[AcceptItem],
) -> StoreResult<Vec<Acceptance>> {
    let mut outcomes = Vec::with_capacity(items.len());
    let mut fresh: Vec<usize> = Vec::with_capacity(items.len());
    // Keys claimed earlier in this same batch are not in the table yet.
    let mut claimed: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (_, idem, _)) in items.iter().enumerate() {
        let Some(idem) = idem else {
            outcomes.push(Acceptance::Stored);
            fresh.push(i);
            continue;
        };
        let earlier = if let Some(&j) = claimed.get(&(idem.scope.as_str(), idem.key.as_str())) {
            let first = items[j].1.as_ref().expect("claimed keys have records");
            Some((
                first.request_hash.clone(),
                first.status,
                first.response.clone(),
            ))
        } else {
            sqlx::query(
                "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
            )
            .bind(&idem.scope)
            .bind(&idem.key)
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| {
                (
                    row.get::<String, _>(0),
                    row.get::<i64, _>(1) as u16,
                    row.get::<String, _>(2),
                )
            })
        };
        match earlier {
            Some((hash, status, response)) if hash == idem.request_hash => {
                outcomes.push(Acceptance::Replayed { status, response })
            }
            Some(_) => outcomes.push(Acceptance::KeyReused),
            None => {
                claimed.insert((idem.scope.as_str(), idem.key.as_str()), i);
                outcomes.push(Acceptance::Stored);
                fresh.push(i);
            }
        }
    }
    if fresh.is_empty() {
        return Ok(outcomes);
    }
    let rows: Vec<&NewMessage> = fresh.iter().map(|&i| items[i].0.as_ref()).collect();

    let mut q = QueryBuilder::new(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status, source, metadata, created_at, send_at, updated_at) ",
    );
    q.push_values(&rows, |mut b, m| {
        b.push_bind(m.id.as_str())
            .push_bind(m.to.e164())
            .push_bind(&m.from)
            .push_bind(&m.body)
            .push_bind(encoding_name(m.segmentation.encoding))
            .push_bind(m.segmentation.characters as i64)
            .push_bind(m.segmentation.segments as i64)
            .push_bind(m.status.as_str())
            .push_bind(&m.source)
            .push_bind(m.metadata.as_ref().map(|v| v.to_string()))
            .push_bind(millis(m.created_at))
            .push_bind(m.send_at.map(millis))
            .push_bind(millis(m.created_at));
    });
    q.build().execute(&mut *conn).await?;

    let keyed: Vec<(&IdempotencyRecord, i64)> = fresh
        .iter()
        .filter_map(|&i| {
            items[i]
                .1
                .as_ref()
                .map(|r| (r, millis(items[i].0.created_at)))
        })
        .collect();
    if !keyed.is_empty() {
        let mut q = QueryBuilder::new(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at) ",
        );
        q.push_values(&keyed, |mut b, (r, at)| {
            b.push_bind(&r.scope)
                .push_bind(&r.key)
                .push_bind(&r.request_hash)
                .push_bind(r.status as i64)
                .push_bind(&r.response)
                .push_bind(*at);
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(outcomes)
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Gsm7 => "gsm7",
        Encoding::Ucs2 => "ucs2",
    }
}

fn parse_encoding(s: &str) -> Encoding {
    if s == "gsm7" {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

fn parse_state(s: &str) -> JobState {
    // Only this module writes the column, always from `JobState::as_str`.
    s.parse().unwrap_or(JobState::Failed)
}

const MESSAGE_COLUMNS: &str = "seq, id, to_number, sender, status, status_detail, encoding, characters, segments, source, metadata, created_at, send_at";

fn message_from_row(row: &SqliteRow) -> MessageRecord {
    MessageRecord {
        seq: row.get("seq"),
        id: MessageId::from_str(row.get::<&str, _>("id")).unwrap_or_default(),
        to: PhoneNumber::from_e164_trusted(row.get("to_number")),
        from: row.get("sender"),
        status: parse_state(row.get("status")),
        status_detail: row.get("status_detail"),
        encoding: parse_encoding(row.get("encoding")),
        characters: row.get("characters"),
        segments: row.get("segments"),
        source: row.get("source"),
        metadata: row
            .get::<Option<String>, _>("metadata")
            .and_then(|m| serde_json::from_str(&m).ok()),
        created_at: from_millis(row.get("created_at")),
        send_at: row.get::<Option<i64>, _>("send_at").map(from_millis),
        events: Vec::new(),
        replies: Vec::new(),
    }
}

/// Apply one state change inside the writer's transaction. One statement, except a retry
/// (`queued`), which also reschedules the job; triggers log the event, leave the queue and fill
/// the outbox.
async fn apply_transition(
    conn: &mut SqliteConnection,
    t: &Transition,
    now: i64,
) -> StoreResult<Option<Applied>> {
    let from = t.to.allowed_from();
    if from.is_empty() {
        return Ok(None);
    }
    let mut q = QueryBuilder::new("UPDATE messages SET status = ");
    q.push_bind(t.to.as_str())
        .push(", status_detail = ")
        .push_bind(t.detail.as_deref())
        .push(", updated_at = ")
        .push_bind(now);
    if let Some(pid) = &t.provider_message_id {
        q.push(", provider_message_id = ").push_bind(pid.as_str());
    }
    q.push(" WHERE id = ")
        .push_bind(t.message_id.as_str())
        .push(" AND status IN (");
    let mut states = q.separated(", ");
    for s in from {
        states.push_bind(s.as_str());
    }
    q.push(") RETURNING created_at");
    let Some(created_at) = q
        .build_query_scalar::<i64>()
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    if t.to == JobState::Queued {
        sqlx::query(
            "UPDATE jobs SET due_at = ?, lease_owner = NULL, lease_until = NULL WHERE message_id = ?",
        )
        .bind(t.retry_at.map(millis).unwrap_or(now))
        .bind(t.message_id.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(Applied {
        created_at: from_millis(created_at),
    }))
}

async fn insert_outbox(
    conn: &mut SqliteConnection,
    message_id: &str,
    source: &str,
    kind: &str,
    payload: &serde_json::Value,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (message_id, source, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(message_id)
    .bind(source)
    .bind(kind)
    .bind(payload.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ready(&self) -> StoreResult<()> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.read)
                .await?;
        match MIGRATOR.iter().find(|m| !applied.contains(&m.version)) {
            Some(m) => Err(StoreError::Database(format!(
                "migration {} ({}) is not applied",
                m.version, m.description
            ))),
            None => Ok(()),
        }
    }

    async fn secret(&self) -> StoreResult<String> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT OR IGNORE INTO settings (key, value) VALUES ('secret', ?)")
                    .bind(&fresh)
                    .execute(&mut *conn)
                    .await?;
                Ok(
                    sqlx::query_scalar("SELECT value FROM settings WHERE key = 'secret'")
                        .fetch_one(&mut *conn)
                        .await?,
                )
            })
        })
        .await
    }

    async fn create_api_key(&self, name: &str, key_hash: &str) -> StoreResult<()> {
        let (name, hash) = (name.to_string(), key_hash.to_string());
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO api_keys (name, key_hash, created_at) VALUES (?, ?, ?)")
                    .bind(&name)
                    .bind(&hash)
                    .bind(millis(Utc::now()))
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn api_key_exists(&self, key_hash: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    async fn count_api_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.read)
            .await?)
    }

    async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
    ) -> StoreResult<Acceptance> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Op::Accept {
                message: Box::new(message),
                idempotency,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn message(&self, id: &MessageId) -> StoreResult<Option<MessageRecord>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?");
        let Some(row) = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let mut record = message_from_row(&row);
        record.events = sqlx::query(
            "SELECT status, detail, at FROM message_events WHERE message_id = ? ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| EventRecord {
            status: parse_state(r.get(0)),
            detail: r.get(1),
            at: from_millis(r.get(2)),
        })
        .collect();
        record.replies = sqlx::query(
            "SELECT from_number, to_sender, body, received_at FROM replies WHERE message_id = ? ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| ReplyRecord {
            message_id: Some(id.clone()),
            from: PhoneNumber::from_e164_trusted(r.get(0)),
            to: r.get(1),
            body: r.get(2),
            at: from_millis(r.get(3)),
        })
        .collect();
        Ok(Some(record))
    }

    async fn messages(&self, query: ListQuery) -> StoreResult<Vec<MessageRecord>> {
        let mut q = QueryBuilder::new(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE 1 = 1"
        ));
        if let Some(status) = query.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = query.before {
            q.push(" AND seq < ").push_bind(before);
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(query.limit as i64);
        Ok(q.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(message_from_row)
            .collect())
    }

    async fn cancel(&self, id: &MessageId, now: DateTime<Utc>) -> StoreResult<CancelOutcome> {
        let id = id.clone();
        self.write(move |conn| {
            Box::pin(async move {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM messages WHERE id = ?")
                        .bind(id.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some(status) = status else {
                    return Ok(CancelOutcome::NotFound);
                };
                let t = Transition {
                    message_id: id,
                    to: JobState::Canceled,
                    detail: Some("canceled by the client".into()),
                    provider_message_id: None,
                    retry_at: None,
                };
                Ok(match apply_transition(conn, &t, millis(now)).await? {
                    Some(_) => CancelOutcome::Canceled,
                    None => CancelOutcome::NotCancelable(parse_state(&status)),
                })
            })
        })
        .await
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn| {
            Box::pin(async move {
                Ok(
                    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
                        .bind(millis(before))
                        .execute(&mut *conn)
                        .await?
                        .rows_affected(),
                )
            })
        })
        .await
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedJob>> {
        // A token per claim lets the second statement find exactly the jobs the first leased.
        let token = format!("{owner}:{}", ulid::Ulid::new());
        let now = millis(now);
        let until = now + lease.as_millis() as i64;
        self.write(move |conn| {
            Box::pin(async move {
                let attempts: HashMap<String, i64> = sqlx::query_as(
                    "UPDATE jobs SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
                     WHERE message_id IN (
                         SELECT message_id FROM jobs
                         WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
                         ORDER BY due_at LIMIT ?)
                     RETURNING message_id, attempts",
                )
                .bind(&token)
                .bind(until)
                .bind(now)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
                if attempts.is_empty() {
                    return Ok(Vec::new());
                }
                // Jobs exist only for queued, scheduled or sending messages (triggers keep it so).
                let rows = sqlx::query(
                    "UPDATE messages SET status = 'sending', status_detail = NULL, updated_at = ?
                     WHERE id IN (SELECT message_id FROM jobs WHERE lease_owner = ?)
                     RETURNING id, to_number, sender, body, created_at",
                )
                .bind(now)
                .bind(&token)
                .fetch_all(&mut *conn)
                .await?;
                Ok(rows
                    .iter()
                    .map(|m| {
                        let id: String = m.get(0);
                        ClaimedJob {
                            attempt: attempts.get(&id).copied().unwrap_or(1) as u32,
                            message_id: MessageId::from_str(&id).unwrap_or_default(),
                            to: PhoneNumber::from_e164_trusted(m.get(1)),
                            from: m.get(2),
                            body: m.get(3),
                            created_at: from_millis(m.get(4)),
                        }
                    })
                    .collect())
            })
        })
        .await
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until IS NULL THEN due_at ELSE MAX(due_at, lease_until) END) FROM jobs",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(due.map(from_millis))
    }

    async fn release_leases(&self) -> StoreResult<u64> {
        self.write(|conn| {
            Box::pin(async move {
                Ok(sqlx::query(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_until IS NOT NULL",
                )
                .execute(&mut *conn)
                .await?
                .rows_affected())
            })
        })
        .await
    }

    async fn transition(&self, t: Transition, now: DateTime<Utc>) -> StoreResult<Option<Applied>> {
        // A retry reschedules the job too: two statements.
        if t.to == JobState::Queued {
            self.write(move |conn| {
                Box::pin(async move { apply_transition(conn, &t, millis(now)).await })
            })
            .await
        } else {
            self.write_one(move |conn| {
                Box::pin(async move { apply_transition(conn, &t, millis(now)).await })
            })
            .await
        }
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&self.read)
            .await?)
    }

    async fn sandbox_send(&self, send: SandboxSend) -> StoreResult<String> {
        self.write_one(move |conn| {
            Box::pin(async move {
                // A repeated send (after a crash) keeps and returns the first one's id.
                Ok(sqlx::query_scalar(
                    "INSERT INTO sandbox_sends
                     (message_id, provider_message_id, sender, to_number, body, outcome, detail, at, report_due)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (message_id) DO UPDATE SET message_id = excluded.message_id
                     RETURNING provider_message_id",
                )
                .bind(send.message_id.as_str())
                .bind(&send.provider_message_id)
                .bind(&send.from)
                .bind(send.to.e164())
                .bind(&send.body)
                .bind(send.outcome.as_str())
                .bind(send.detail.as_deref())
                .bind(millis(send.at))
                .bind(millis(send.report_due))
                .fetch_one(&mut *conn)
                .await?)
            })
        })
        .await
    }

    async fn sandbox_report_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<SandboxReported>> {
        let now = millis(now);
        self.write(move |conn| {
            Box::pin(async move {
                let due = sqlx::query(
                    "UPDATE sandbox_sends SET reported = 1 WHERE message_id IN (
                         SELECT message_id FROM sandbox_sends
                         WHERE reported = 0 AND report_due <= ? ORDER BY report_due LIMIT ?)
                     RETURNING message_id, provider_message_id, outcome, detail",
                )
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&mut *conn)
                .await?;
                let mut reported = Vec::with_capacity(due.len());
                for r in due {
                    let t = Transition {
                        message_id: MessageId::from_str(r.get(0)).unwrap_or_default(),
                        to: parse_state(r.get(2)),
                        detail: r.get(3),
                        provider_message_id: Some(r.get(1)),
                        retry_at: None,
                    };
                    let applied = apply_transition(conn, &t, now).await?;
                    reported.push(SandboxReported {
                        message_id: t.message_id,
                        outcome: t.to,
                        applied,
                    });
                }
                Ok(reported)
            })
        })
        .await
    }

    async fn sandbox_next_report(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT MIN(report_due) FROM sandbox_sends WHERE reported = 0")
                .fetch_one(&self.read)
                .await?;
        Ok(due.map(from_millis))
    }

    async fn sandbox_inbox(&self, to: &PhoneNumber, limit: u32) -> StoreResult<Vec<InboxEntry>> {
        Ok(sqlx::query(
            "SELECT message_id, sender, to_number, body, at FROM sandbox_sends
             WHERE to_number = ? AND outcome = 'delivered' ORDER BY at DESC, rowid DESC LIMIT ?",
        )
        .bind(to.e164())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| InboxEntry {
            message_id: MessageId::from_str(r.get(0)).unwrap_or_default(),
            from: r.get(1),
            to: PhoneNumber::from_e164_trusted(r.get(2)),
            body: r.get(3),
            at: from_millis(r.get(4)),
        })
        .collect())
    }

    async fn record_reply(&self, reply: NewReply) -> StoreResult<ReplyRecord> {
        self.write(move |conn| {
            Box::pin(async move {
                let latest = sqlx::query(
                    "SELECT id, source FROM messages WHERE to_number = ? AND sender = ?
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(reply.from.e164())
                .bind(&reply.to)
                .fetch_optional(&mut *conn)
                .await?;
                let linked: Option<(String, String)> = latest.map(|r| (r.get(0), r.get(1)));
                let at = millis(reply.at);
                sqlx::query(
                    "INSERT INTO replies (message_id, from_number, to_sender, body, received_at)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(linked.as_ref().map(|(id, _)| id.as_str()))
                .bind(reply.from.e164())
                .bind(&reply.to)
                .bind(&reply.body)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                if let Some((id, source)) = &linked {
                    if source != "api" {
                        let payload = serde_json::json!({"body": reply.body, "at": reply.at});
                        insert_outbox(conn, id, source, "reply", &payload, at).await?;
                    }
                }
                Ok(ReplyRecord {
                    message_id: linked.and_then(|(id, _)| MessageId::from_str(&id).ok()),
                    from: reply.from,
                    to: reply.to,
                    body: reply.body,
                    at: reply.at,
                })
            })
        })
        .await
    }

    async fn outbox_pending(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        Ok(sqlx::query(
            "SELECT id, message_id, source, kind, payload FROM outbox
             WHERE done_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| OutboxEntry {
            id: r.get(0),
            message_id: MessageId::from_str(r.get(1)).unwrap_or_default(),
            source: r.get(2),
            kind: r.get(3),
            payload: serde_json::from_str(r.get(4)).unwrap_or_default(),
        })
        .collect())
    }

    async fn outbox_done(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(move |conn| {
            Box::pin(async move {
                let mut q = QueryBuilder::new("UPDATE outbox SET done_at = ");
                q.push_bind(millis(now)).push(" WHERE id IN (");
                let mut list = q.separated(", ");
                for id in &ids {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *conn).await?;
                Ok(())
            })
        })
        .await
    }
}

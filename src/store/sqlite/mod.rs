//! SQLite backend: WAL with `synchronous=FULL`; one writer thread commits every write in group
//! commits (see `writer`), and a pool of readers answers queries concurrently.

mod otp;
mod writer;

use std::{fs::File, path::PathBuf, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
    Connection as _, QueryBuilder, Row, SqlitePool,
};

use self::writer::Writer;
use super::*;
use crate::domain::{ids::ListEntryId, phone::PhoneNumber, segment::Encoding, state::JobState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// The SQLite store. One process owns a database file at a time (a lock file enforces it).
pub struct SqliteStore {
    read: SqlitePool,
    writer: Writer,
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
        let mut migrator_conn = SqliteConnection::connect_with(&options).await?;
        MIGRATOR.run_direct(&mut migrator_conn).await?;
        migrator_conn.close().await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let conn = Connection::open(&path)?;
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
        StoreError::Database(e.to_string())
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

/// Why the number lists refuse a recipient, if they do.
fn refusal(conn: &Connection, to: &PhoneNumber, hygiene: Hygiene) -> StoreResult<Option<String>> {
    let mut listed =
        conn.prepare_cached("SELECT 1 FROM number_lists WHERE list = ? AND number = ?")?;
    if listed.exists(params!["deny", to.e164()])? {
        return Ok(Some("the number is on the deny list".into()));
    }
    if hygiene.allow_list_only && !listed.exists(params!["allow", to.e164()])? {
        return Ok(Some(
            "only numbers on the allow list may receive (numbers.allow_list_only)".into(),
        ));
    }
    Ok(None)
}

/// Accept one message inside the writer's transaction; the row is also its job (`due_at`).
fn accept(
    conn: &Connection,
    m: &NewMessage,
    idempotency: Option<&IdempotencyRecord>,
    hygiene: Hygiene,
) -> StoreResult<Acceptance> {
    if let Some(idem) = idempotency {
        let earlier: Option<(String, i64, String)> = conn
            .prepare_cached(
                "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
            )?
            .query_row(params![idem.scope, idem.key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        match earlier {
            Some((hash, status, response)) if hash == idem.request_hash => {
                return Ok(Acceptance::Replayed {
                    status: status as u16,
                    response,
                })
            }
            Some(_) => return Ok(Acceptance::KeyReused),
            None => {}
        }
    }
    if let Some(reason) = refusal(conn, &m.to, hygiene)? {
        return Ok(Acceptance::Blocked(reason));
    }
    if let Some(idem) = idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            idem.scope,
            idem.key,
            idem.request_hash,
            idem.status,
            idem.response,
            millis(m.created_at)
        ])?;
    }
    conn.prepare_cached(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status,
                               source, metadata, created_at, send_at, updated_at, due_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        m.id.as_str(),
        m.to.e164(),
        m.from,
        m.body,
        encoding_name(m.segmentation.encoding),
        m.segmentation.characters,
        m.segmentation.segments,
        m.status.as_str(),
        m.source,
        m.metadata.as_ref().map(|v| v.to_string()),
        millis(m.created_at),
        m.send_at.map(millis),
        millis(m.created_at),
        matches!(m.status, JobState::Queued | JobState::Scheduled)
            .then(|| millis(m.send_at.unwrap_or(m.created_at))),
    ])?;
    Ok(Acceptance::Stored)
}

/// Apply one state change inside the writer's transaction, in one statement that also moves the
/// job (a retry is due again, a sent or final message leaves the queue); triggers log the event
/// and fill the outbox.
fn apply_transition(conn: &Connection, t: &Transition, now: i64) -> StoreResult<Option<Applied>> {
    let from = t.to.allowed_from();
    if from.is_empty() {
        return Ok(None);
    }
    let job = match t.to {
        JobState::Queued => "due_at = ?, lease_owner = NULL, lease_until = NULL",
        JobState::Sending | JobState::Scheduled => "due_at = COALESCE(?, due_at)",
        // A code's text has done its work once it leaves the queue; only its HMAC stays.
        _ => {
            "due_at = ?, lease_owner = NULL, lease_until = NULL,
             body = CASE WHEN source = 'otp' THEN '' ELSE body END"
        }
    };
    let due = match t.to {
        JobState::Queued => Some(t.retry_at.map(millis).unwrap_or(now)),
        _ => None,
    };
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!(
        "UPDATE messages SET status = ?, status_detail = ?, updated_at = ?,
                provider_message_id = COALESCE(?, provider_message_id), {job}
         WHERE id = ? AND status IN ({placeholders}) RETURNING created_at"
    );
    let mut values: Vec<rusqlite::types::Value> = vec![
        t.to.as_str().to_string().into(),
        t.detail.clone().into(),
        now.into(),
        t.provider_message_id.clone().into(),
        due.into(),
        t.message_id.as_str().to_string().into(),
    ];
    values.extend(from.iter().map(|s| s.as_str().to_string().into()));
    let created_at: Option<i64> = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(values), |r| r.get(0))
        .optional()?;
    Ok(created_at.map(|c| Applied {
        created_at: from_millis(c),
    }))
}

fn listed_from_row(r: &SqliteRow) -> StoreResult<ListedNumber> {
    Ok(ListedNumber {
        number: PhoneNumber::from_e164_trusted(r.get(0)),
        reason: r.get(1),
        created_at: from_millis(r.get(2)),
        id: stored_id(r.get(3))?,
    })
}

/// A list entry's id as stored; one that does not parse means the row is corrupt.
fn stored_id(text: &str) -> StoreResult<ListEntryId> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("number list entry id {text:?} is not an id")))
}

/// The column and value that find a list entry.
fn list_key(key: &ListKey) -> (&'static str, String) {
    match key {
        ListKey::Number(number) => ("number", number.e164().to_string()),
        ListKey::Id(id) => ("id", id.as_str().to_string()),
    }
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
        let logged: Vec<EventRecord> = sqlx::query(
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
        // Acceptance is the row itself: before any transition the message is in the state it was
        // accepted in; after one, it was accepted scheduled if it had a send time, else queued.
        let accepted_as = match (logged.is_empty(), record.send_at) {
            (true, _) => record.status,
            (false, Some(_)) => JobState::Scheduled,
            (false, None) => JobState::Queued,
        };
        record.events = std::iter::once(EventRecord {
            status: accepted_as,
            detail: None,
            at: record.created_at,
        })
        .chain(logged)
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

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until IS NULL THEN due_at ELSE MAX(due_at, lease_until) END)
             FROM messages WHERE due_at IS NOT NULL",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(due.map(from_millis))
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE due_at IS NOT NULL")
                .fetch_one(&self.read)
                .await?,
        )
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

    async fn secret(&self) -> StoreResult<String> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO settings (key, value) VALUES ('secret', ?)",
                    params![fresh],
                )?;
                Ok(
                    conn.query_row("SELECT value FROM settings WHERE key = 'secret'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
    }

    async fn create_api_key(&self, name: &str, key_hash: &str) -> StoreResult<()> {
        let (name, hash) = (name.to_string(), key_hash.to_string());
        self.writer
            .run_statement(move |conn| {
                conn.execute(
                    "INSERT INTO api_keys (name, key_hash, created_at) VALUES (?, ?, ?)",
                    params![name, hash, millis(Utc::now())],
                )?;
                Ok(())
            })
            .await
    }

    async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
        hygiene: Hygiene,
    ) -> StoreResult<Acceptance> {
        self.writer.accept(message, idempotency, hygiene).await
    }

    async fn cancel(&self, id: &MessageId, now: DateTime<Utc>) -> StoreResult<CancelOutcome> {
        let id = id.clone();
        self.writer
            .run(move |conn| {
                let status: Option<String> = conn
                    .prepare_cached("SELECT status FROM messages WHERE id = ?")?
                    .query_row(params![id.as_str()], |r| r.get(0))
                    .optional()?;
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
                Ok(match apply_transition(conn, &t, millis(now))? {
                    Some(_) => CancelOutcome::Canceled,
                    None => CancelOutcome::NotCancelable(parse_state(&status)),
                })
            })
            .await
    }

    async fn idempotency(&self, scope: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        Ok(sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.read)
        .await?
        .map(|r| IdempotencyRecord {
            scope: scope.to_string(),
            key: key.to_string(),
            request_hash: r.get(0),
            status: r.get::<i64, _>(1) as u16,
            response: r.get(2),
        }))
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.writer
            .run_statement(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?",
                    params![millis(before)],
                )? as u64)
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
        let owner = owner.to_string();
        let now = millis(now);
        let until = now + lease.as_millis() as i64;
        self.writer
            .run(move |conn| {
                // The trigger logs a `sending` event for every message claimed.
                let mut claim = conn.prepare_cached(
                    "UPDATE messages SET status = 'sending', status_detail = NULL, updated_at = ?1,
                            lease_owner = ?2, lease_until = ?3, attempts = attempts + 1
                     WHERE seq IN (
                         SELECT seq FROM messages
                         WHERE due_at IS NOT NULL AND due_at <= ?1
                           AND (lease_until IS NULL OR lease_until < ?1)
                         ORDER BY due_at LIMIT ?4)
                     RETURNING id, to_number, sender, body, created_at, attempts",
                )?;
                let jobs = claim
                    .query_map(params![now, owner, until, limit as i64], |r| {
                        Ok(ClaimedJob {
                            message_id: MessageId::from_str(&r.get::<_, String>(0)?)
                                .unwrap_or_default(),
                            to: PhoneNumber::from_e164_trusted(&r.get::<_, String>(1)?),
                            from: r.get(2)?,
                            body: r.get(3)?,
                            created_at: from_millis(r.get(4)?),
                            attempt: r.get::<_, i64>(5)? as u32,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(jobs)
            })
            .await
    }

    async fn release_leases(&self) -> StoreResult<u64> {
        self.writer
            .run_statement(|conn| {
                Ok(conn.execute(
                    "UPDATE messages SET lease_owner = NULL, lease_until = NULL
                     WHERE due_at IS NOT NULL AND lease_until IS NOT NULL",
                    [],
                )? as u64)
            })
            .await
    }

    async fn transition(&self, t: Transition, now: DateTime<Utc>) -> StoreResult<Option<Applied>> {
        self.writer
            .run_statement(move |conn| apply_transition(conn, &t, millis(now)))
            .await
    }

    async fn sandbox_send(&self, send: SandboxSend) -> StoreResult<String> {
        self.writer
            .run_statement(move |conn| {
                // A repeated send (after a crash) keeps and returns the first one's id.
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO sandbox_sends
                         (message_id, provider_message_id, sender, to_number, body, outcome, detail, at, report_due)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT (message_id) DO UPDATE SET message_id = excluded.message_id
                         RETURNING provider_message_id",
                    )?
                    .query_row(
                        params![
                            send.message_id.as_str(),
                            send.provider_message_id,
                            send.from,
                            send.to.e164(),
                            send.body,
                            send.outcome.as_str(),
                            send.detail,
                            millis(send.at),
                            millis(send.report_due),
                        ],
                        |r| r.get(0),
                    )?)
            })
            .await
    }

    async fn sandbox_report_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<SandboxReported>> {
        let now = millis(now);
        self.writer
            .run(move |conn| {
                let due: Vec<(String, String, String, Option<String>)> = conn
                    .prepare_cached(
                        "UPDATE sandbox_sends SET reported = 1 WHERE message_id IN (
                             SELECT message_id FROM sandbox_sends
                             WHERE reported = 0 AND report_due <= ? ORDER BY report_due LIMIT ?)
                         RETURNING message_id, provider_message_id, outcome, detail",
                    )?
                    .query_map(params![now, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let mut reported = Vec::with_capacity(due.len());
                for (id, provider_id, outcome, detail) in due {
                    let t = Transition {
                        message_id: MessageId::from_str(&id).unwrap_or_default(),
                        to: parse_state(&outcome),
                        detail,
                        provider_message_id: Some(provider_id),
                        retry_at: None,
                    };
                    let applied = apply_transition(conn, &t, now)?;
                    reported.push(SandboxReported {
                        message_id: t.message_id,
                        outcome: t.to,
                        applied,
                    });
                }
                Ok(reported)
            })
            .await
    }

    async fn record_reply(&self, reply: NewReply) -> StoreResult<ReplyRecord> {
        self.writer
            .run(move |conn| {
                let linked: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT id, source FROM messages WHERE to_number = ? AND sender = ?
                         ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(params![reply.from.e164(), reply.to], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                let at = millis(reply.at);
                conn.prepare_cached(
                    "INSERT INTO replies (message_id, from_number, to_sender, body, received_at)
                     VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    linked.as_ref().map(|(id, _)| id.as_str()),
                    reply.from.e164(),
                    reply.to,
                    reply.body,
                    at
                ])?;
                if let Some((id, source)) = &linked {
                    if source != "api" && source != "otp" {
                        let payload = serde_json::json!({"body": reply.body, "at": at});
                        conn.prepare_cached(
                            "INSERT INTO outbox (message_id, source, kind, payload, created_at)
                             VALUES (?, ?, 'reply', ?, ?)",
                        )?
                        .execute(params![
                            id,
                            source,
                            payload.to_string(),
                            at
                        ])?;
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
            .await
    }

    async fn otp_start(
        &self,
        v: NewVerification,
        limits: OtpLimits,
        hygiene: Hygiene,
    ) -> StoreResult<OtpStart> {
        self.writer
            .run(move |conn| otp::start(conn, &v, &limits, hygiene))
            .await
    }

    async fn otp_check(
        &self,
        id: &VerificationId,
        matches: CodeMatcher,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        let id = id.clone();
        self.writer
            .run(move |conn| otp::check(conn, &id, matches, millis(now)))
            .await
    }

    async fn otp_verification(
        &self,
        id: &VerificationId,
    ) -> StoreResult<Option<VerificationRecord>> {
        Ok(sqlx::query(
            "SELECT to_number, status, checks, max_checks, expires_at, created_at, message_id
             FROM otp_verifications WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await?
        .map(|r| VerificationRecord {
            id: id.clone(),
            to: PhoneNumber::from_e164_trusted(r.get(0)),
            status: r.get(1),
            checks: r.get::<i64, _>(2) as u32,
            max_checks: r.get::<i64, _>(3) as u32,
            expires_at: from_millis(r.get(4)),
            created_at: from_millis(r.get(5)),
            message_id: MessageId::from_str(r.get(6)).unwrap_or_default(),
        }))
    }

    async fn otp_blocked_prefixes(&self, now: DateTime<Utc>) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM otp_blocked_prefixes WHERE until > ?")
                .bind(millis(now))
                .fetch_one(&self.read)
                .await?,
        )
    }

    async fn otp_conversion(&self, since: DateTime<Utc>) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(status = 'approved'), 0) FROM otp_verifications
             WHERE created_at > ?",
        )
        .bind(millis(since))
        .fetch_one(&self.read)
        .await?;
        Ok((row.get(0), row.get(1)))
    }

    async fn list_add(
        &self,
        list: NumberList,
        number: &PhoneNumber,
        reason: Option<String>,
    ) -> StoreResult<ListedNumber> {
        let e164 = number.e164().to_string();
        let number = number.clone();
        self.writer
            .run_statement(move |conn| {
                let (id, reason, created_at): (String, Option<String>, i64) = conn
                    .prepare_cached(
                        "INSERT INTO number_lists (list, number, reason, created_at, id)
                         VALUES (?, ?, ?, ?, ?)
                         ON CONFLICT (list, number) DO UPDATE SET reason = excluded.reason
                         RETURNING id, reason, created_at",
                    )?
                    .query_row(
                        params![
                            list.as_str(),
                            e164,
                            reason,
                            millis(Utc::now()),
                            ListEntryId::new().as_str()
                        ],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )?;
                Ok(ListedNumber {
                    id: stored_id(&id)?,
                    number,
                    reason,
                    created_at: from_millis(created_at),
                })
            })
            .await
    }

    async fn list_remove(&self, list: NumberList, key: &ListKey) -> StoreResult<bool> {
        let (column, value) = list_key(key);
        self.writer
            .run_statement(move |conn| {
                Ok(conn.execute(
                    &format!("DELETE FROM number_lists WHERE list = ? AND {column} = ?"),
                    params![list.as_str(), value],
                )? > 0)
            })
            .await
    }

    async fn list_numbers(&self, list: NumberList, limit: u32) -> StoreResult<Vec<ListedNumber>> {
        sqlx::query(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = ?
             ORDER BY created_at DESC, number LIMIT ?",
        )
        .bind(list.as_str())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(listed_from_row)
        .collect()
    }

    async fn listed(&self, list: NumberList, key: &ListKey) -> StoreResult<Option<ListedNumber>> {
        let (column, value) = list_key(key);
        sqlx::query(&format!(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = ? AND {column} = ?"
        ))
        .bind(list.as_str())
        .bind(value)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(listed_from_row)
        .transpose()
    }

    async fn outbox_done(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut done = conn.prepare_cached("UPDATE outbox SET done_at = ? WHERE id = ?")?;
                for id in ids {
                    done.execute(params![millis(now), id])?;
                }
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::segment::Segmentation;

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (SqliteStore::open(&url).await.unwrap(), dir)
    }

    fn message(source: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            to: PhoneNumber::parse("09012345678").unwrap(),
            from: "TSUNAGI".into(),
            body: "hello".into(),
            segmentation: Segmentation::of("hello"),
            status: JobState::Queued,
            source: source.into(),
            metadata: None,
            created_at: Utc::now(),
            send_at: None,
        }
    }

    fn to(id: &MessageId, state: JobState) -> Transition {
        Transition {
            message_id: id.clone(),
            to: state,
            detail: None,
            provider_message_id: None,
            retry_at: None,
        }
    }

    #[tokio::test]
    async fn outbox_holds_status_changes_and_replies_of_crm_messages_only() {
        let (s, _dir) = store().await;
        let api = message("api");
        let crm = message("salesforce:prod");
        s.accept(api.clone(), None, Hygiene::default())
            .await
            .unwrap();
        s.accept(crm.clone(), None, Hygiene::default())
            .await
            .unwrap();
        let claimed = s
            .claim("w", 10, Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        for m in [&api, &crm] {
            s.transition(to(&m.id, JobState::Sent), Utc::now())
                .await
                .unwrap();
            s.transition(to(&m.id, JobState::Delivered), Utc::now())
                .await
                .unwrap();
        }
        let reply = s
            .record_reply(NewReply {
                from: crm.to.clone(),
                to: "TSUNAGI".into(),
                body: "はい".into(),
                at: Utc::now(),
            })
            .await
            .unwrap();
        assert_eq!(
            reply.message_id.as_ref(),
            Some(&crm.id),
            "latest message wins"
        );

        let pending = s.outbox_pending(100).await.unwrap();
        assert!(pending
            .iter()
            .all(|e| e.message_id == crm.id && e.source == "salesforce:prod"));
        let kinds: Vec<(String, String)> = pending
            .iter()
            .map(|e| {
                let what = e.payload["status"].as_str().or(e.payload["body"].as_str());
                (e.kind.clone(), what.unwrap_or_default().to_string())
            })
            .collect();
        let expected = [
            ("status", "sending"),
            ("status", "sent"),
            ("status", "delivered"),
            ("reply", "はい"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(kinds, expected);

        s.outbox_done(pending.iter().map(|e| e.id).collect(), Utc::now())
            .await
            .unwrap();
        assert!(s.outbox_pending(100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_leased_job_is_not_claimed_again_until_its_lease_is_released() {
        let (s, _dir) = store().await;
        let m = message("api");
        s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
        let lease = Duration::from_secs(60);
        let first = s.claim("a", 10, lease, Utc::now()).await.unwrap();
        assert_eq!((first.len(), first[0].attempt), (1, 1));
        assert!(s
            .claim("b", 10, lease, Utc::now())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(s.release_leases().await.unwrap(), 1);
        let again = s.claim("b", 10, lease, Utc::now()).await.unwrap();
        assert_eq!((again.len(), again[0].attempt), (1, 2));
        assert_eq!(s.queue_depth().await.unwrap(), 1);
        s.transition(to(&m.id, JobState::Sent), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            s.queue_depth().await.unwrap(),
            0,
            "a sent message leaves the queue"
        );
    }

    #[tokio::test]
    async fn an_expired_lease_is_claimed_by_another_worker() {
        let (s, _dir) = store().await;
        s.accept(message("api"), None, Hygiene::default())
            .await
            .unwrap();
        let now = Utc::now();
        s.claim("a", 10, Duration::from_millis(10), now)
            .await
            .unwrap();
        let later = now + chrono::Duration::milliseconds(50);
        let taken = s
            .claim("b", 10, Duration::from_secs(60), later)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
    }

    #[tokio::test]
    async fn a_transition_the_state_does_not_allow_changes_nothing() {
        let (s, _dir) = store().await;
        let m = message("api");
        s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
        assert!(s
            .transition(to(&m.id, JobState::Delivered), Utc::now())
            .await
            .unwrap()
            .is_none());
        let record = s.message(&m.id).await.unwrap().unwrap();
        assert_eq!(record.status, JobState::Queued);
        assert_eq!(record.events.len(), 1);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_database() {
        let (_s, dir) = store().await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let Err(err) = SqliteStore::open(&url).await else {
            panic!("opened a database another store holds");
        };
        assert!(matches!(err, StoreError::Locked(_)), "{err}");
    }

    #[tokio::test]
    async fn an_otp_text_is_erased_once_the_provider_has_it_and_never_reaches_the_outbox() {
        let (s, _dir) = store().await;
        let m = message("otp");
        s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
        s.claim("w", 1, Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        s.transition(to(&m.id, JobState::Sent), Utc::now())
            .await
            .unwrap();
        let body: String = sqlx::query_scalar("SELECT body FROM messages WHERE id = ?")
            .bind(m.id.as_str())
            .fetch_one(&s.read)
            .await
            .unwrap();
        assert_eq!(body, "");
        assert!(s.outbox_pending(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn readiness_reports_every_migration_applied() {
        let (s, _dir) = store().await;
        s.ready().await.unwrap();
    }
}

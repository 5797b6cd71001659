//! `QueueStore` on SQLite: the message row is its job (`due_at`, the lease), and every change
//! of state is one guarded UPDATE, after which the commit also erases a secret text and feeds
//! the outbox when the message's source says so. A trigger logs each change as an event.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use tokio::sync::watch;

use super::{outbox, SqliteStore};
use crate::{
    domain::{ids::MessageId, state::JobState},
    store::{
        decode::{self, millis},
        queue::{settled_doubt, Guard},
        Applied, ClaimedJob, NewOutboxEntry, QueueStore, Receipt, ReceiptOutcome, StoreResult,
        Transition, IN_DOUBT,
    },
};

/// Apply one receipt inside the writer's transaction: find its message, then transition it.
fn apply_receipt(conn: &Connection, r: Receipt, now: DateTime<Utc>) -> StoreResult<ReceiptOutcome> {
    let message_id = match r.message_id {
        Some(id) => Some(id),
        None => conn
            .prepare_cached("SELECT id FROM messages WHERE provider_message_id = ?")?
            .query_row(params![r.provider_message_id], |row| {
                row.get::<_, String>(0)
            })
            .optional()?
            .map(|id| decode::id(&id))
            .transpose()?,
    };
    let Some(message_id) = message_id else {
        return Ok(ReceiptOutcome::Unknown);
    };
    let state = r.status.state();
    let t = Transition {
        message_id: message_id.clone(),
        to: state,
        detail: r.detail,
        provider_message_id: Some(r.provider_message_id),
        retry_at: None,
        refund_attempt: false,
        route: None,
        progress: None,
    };
    Ok(match apply_transition(conn, &t, now)? {
        Some(Applied { created_at, route }) => ReceiptOutcome::Applied {
            message_id,
            state,
            created_at,
            route,
        },
        None if message_exists(conn, &message_id)? => ReceiptOutcome::Overtaken(message_id),
        None => ReceiptOutcome::Unknown,
    })
}

fn message_exists(conn: &Connection, id: &crate::domain::ids::MessageId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM messages WHERE id = ?")?
        .exists(params![id.as_str()])?)
}

/// Apply one state change inside the writer's transaction (which must roll it back if this
/// fails), in one statement that also moves the job: a retry is due again, a sent or final
/// message leaves the queue.
pub(super) fn apply_transition(
    conn: &Connection,
    t: &Transition,
    now: DateTime<Utc>,
) -> StoreResult<Option<Applied>> {
    apply_guarded(conn, t, Guard::States, now)
}

/// `apply_transition` on the rows `guard` lets it change.
fn apply_guarded(
    conn: &Connection,
    t: &Transition,
    guard: Guard,
    now: DateTime<Utc>,
) -> StoreResult<Option<Applied>> {
    let from = guard.from(t);
    if from.is_empty() {
        return Ok(None);
    }
    let leaves_queue = !matches!(
        t.to,
        JobState::Queued | JobState::Sending | JobState::Scheduled
    );
    let (job, due) = match t.to {
        JobState::Queued if t.refund_attempt => (
            "due_at = ?, lease_owner = NULL, lease_until = NULL, attempts = attempts - 1",
            Some(millis(t.retry_at.unwrap_or(now))),
        ),
        JobState::Queued => (
            "due_at = ?, lease_owner = NULL, lease_until = NULL",
            Some(millis(t.retry_at.unwrap_or(now))),
        ),
        JobState::Sending | JobState::Scheduled => ("due_at = COALESCE(?, due_at)", None),
        _ => ("due_at = ?, lease_owner = NULL, lease_until = NULL", None),
    };
    // Comparisons, not `status IN (…)`: SQLite builds a temporary b-tree for an IN list of more
    // than two values on every run.
    let from_any = vec!["status = ?"; from.len()].join(" OR ");
    let sql = format!(
        "UPDATE messages SET status = ?, status_detail = ?, updated_at = ?,
                provider_message_id = COALESCE(?, provider_message_id),
                route = COALESCE(?, route),
                send_progress = CASE WHEN ? THEN NULL ELSE COALESCE(?, send_progress) END, {job}
         WHERE id = ? AND ({from_any}){}
         RETURNING created_at, source, source_record, route",
        guard.condition()
    );
    let mut values: Vec<rusqlite::types::Value> = vec![
        t.to.as_str().to_string().into(),
        t.detail.clone().into(),
        millis(now).into(),
        t.provider_message_id.clone().into(),
        t.route.clone().into(),
        leaves_queue.into(),
        t.progress.clone().into(),
        due.into(),
        t.message_id.as_str().to_string().into(),
    ];
    values.extend(from.iter().map(|s| s.as_str().to_string().into()));
    let changed: Option<(i64, String, Option<String>, Option<String>)> = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(values), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((created_at, name, record, route)) = changed else {
        if t.tells_the_send() {
            // A fast receipt came first: its state stands, and the send still says where it went.
            conn.prepare_cached(
                "UPDATE messages SET route = COALESCE(route, ?),
                        provider_message_id = COALESCE(provider_message_id, ?)
                 WHERE id = ?",
            )?
            .execute(params![
                t.route,
                t.provider_message_id,
                t.message_id.as_str()
            ])?;
        }
        return Ok(None);
    };
    let source = decode::source(&name, record.as_deref())?;
    if leaves_queue && source.text_is_secret() {
        // The text has done its work once the provider has it; only the code's HMAC stays.
        conn.prepare_cached("UPDATE messages SET body = '' WHERE id = ?")?
            .execute(params![t.message_id.as_str()])?;
    }
    if let Some(entry) = NewOutboxEntry::status(&source, t.to, t.detail.as_deref(), now) {
        outbox::add(conn, t.message_id.as_str(), &source, entry)?;
    }
    Ok(Some(Applied {
        created_at: decode::time(created_at)?,
        route,
    }))
}

/// A claimed row as the UPDATE returns it.
type ClaimedRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
    Option<i64>,
);

#[async_trait]
impl QueueStore for SqliteStore {
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let owner = owner.to_string();
        let until = millis(now) + lease.as_millis() as i64;
        self.writer
            .run(move |conn| {
                // The trigger logs a `sending` event for every message claimed. A message still
                // `sending` when claimed lost its worker (its lease ran out): say so in the event.
                let rows: Vec<ClaimedRow> = conn
                    .prepare_cached(
                        "UPDATE messages SET status = 'sending', updated_at = ?1,
                                status_detail = CASE WHEN status = 'sending' THEN ?5 END,
                                lease_owner = ?2, lease_until = ?3, attempts = attempts + 1
                         WHERE seq IN (
                             SELECT seq FROM messages
                             WHERE due_at IS NOT NULL AND due_at <= ?1
                               AND (lease_until IS NULL OR lease_until < ?1)
                             ORDER BY due_at LIMIT ?4)
                         RETURNING id, to_number, sender, body, created_at, attempts, source,
                                   source_record, status_detail IS NOT NULL,
                                   route, send_progress, expires_at",
                    )?
                    .query_map(
                        params![millis(now), owner, until, limit as i64, IN_DOUBT],
                        |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                                r.get(8)?,
                                r.get(9)?,
                                r.get(10)?,
                                r.get(11)?,
                            ))
                        },
                    )?
                    .collect::<Result<_, _>>()?;
                let mut jobs = Vec::with_capacity(rows.len());
                for row in rows {
                    let (id, to, from, body, created_at, attempts, name, record, in_doubt) = (
                        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
                    );
                    let (in_doubt_on, progress, expires_at) = (row.9, row.10, row.11);
                    let source = decode::source(&name, record.as_deref())?;
                    if let Some(entry) =
                        NewOutboxEntry::status(&source, JobState::Sending, None, now)
                    {
                        outbox::add(conn, &id, &source, entry)?;
                    }
                    jobs.push(ClaimedJob {
                        message_id: decode::id(&id)?,
                        to: decode::number(&to)?,
                        from,
                        body,
                        attempt: attempts as u32,
                        created_at: decode::time(created_at)?,
                        expires_at: expires_at.map(decode::time).transpose()?,
                        in_doubt,
                        in_doubt_on,
                        progress,
                    });
                }
                Ok(jobs)
            })
            .await
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // Through the queue's index in due order, so that a queue full of jobs scheduled for
        // later is not scanned on every wake-up.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT due_at FROM messages INDEXED BY messages_queue
             WHERE due_at IS NOT NULL AND lease_owner IS NULL ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?;
        due.map(decode::time).transpose()
    }

    /// One process owns an SQLite file: its own dispatcher is woken in process.
    fn wakeups(&self) -> Option<watch::Receiver<()>> {
        None
    }

    async fn apply_receipts(
        &self,
        receipts: Vec<Receipt>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ReceiptOutcome>> {
        self.writer
            .run(move |conn| {
                receipts
                    .into_iter()
                    .map(|r| apply_receipt(conn, r, now))
                    .collect()
            })
            .await
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64> {
        let owner = owner.to_string();
        self.writer
            .run_statement(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE messages SET lease_until = ?
                         WHERE lease_owner = ? AND due_at IS NOT NULL",
                    )?
                    .execute(params![millis(until), owner])? as u64)
            })
            .await
    }

    async fn transition(&self, t: Transition, now: DateTime<Utc>) -> StoreResult<Option<Applied>> {
        self.writer
            .run(move |conn| apply_transition(conn, &t, now))
            .await
    }

    async fn settle_doubt(
        &self,
        message_id: &MessageId,
        provider_message_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let t = settled_doubt(message_id, provider_message_id);
        self.writer
            .run(move |conn| Ok(apply_guarded(conn, &t, Guard::InDoubt, now)?.is_some()))
            .await
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE due_at IS NOT NULL")
                .fetch_one(&self.read)
                .await?,
        )
    }
}

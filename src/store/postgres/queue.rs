//! `QueueStore` on PostgreSQL: the message row is its job (`due_at`, the lease). Claims lock the
//! rows they take with `FOR UPDATE SKIP LOCKED`, so instances claiming together take different
//! jobs without waiting on each other; every change of state is one guarded UPDATE
//! (`… WHERE status = ANY(allowed)`, re-checked by PostgreSQL against a concurrent change), after
//! which the transaction also erases a secret text and feeds the outbox when the message's source
//! says so. A trigger logs each change as an event.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use tokio::sync::watch;

use super::{outbox, PostgresStore};
use crate::{
    domain::{ids::MessageId, state::JobState},
    store::{
        decode::{self, millis},
        queue::{settled_doubt, Guard},
        Applied, ClaimedJob, NewOutboxEntry, QueueStore, Receipt, ReceiptOutcome, StoreResult,
        Transition, IN_DOUBT,
    },
};

/// Apply one receipt inside the caller's transaction: find its message, then transition it.
async fn apply_receipt(
    conn: &mut PgConnection,
    r: Receipt,
    now: DateTime<Utc>,
) -> StoreResult<ReceiptOutcome> {
    let message_id = match r.message_id {
        Some(id) => Some(id),
        None => sqlx::query_scalar::<_, String>(
            "SELECT id FROM messages WHERE provider_message_id = $1",
        )
        .bind(&r.provider_message_id)
        .fetch_optional(&mut *conn)
        .await?
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
    Ok(match apply_transition(&mut *conn, &t, now).await? {
        Some(Applied { created_at, route }) => ReceiptOutcome::Applied {
            message_id,
            state,
            created_at,
            route,
        },
        None if message_exists(conn, &message_id).await? => ReceiptOutcome::Overtaken(message_id),
        None => ReceiptOutcome::Unknown,
    })
}

async fn message_exists(conn: &mut PgConnection, id: &MessageId) -> StoreResult<bool> {
    Ok(sqlx::query("SELECT 1 FROM messages WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Apply one state change inside the caller's transaction (which must roll it back if this
/// fails), in one statement that also moves the job: a retry is due again, a sent or final
/// message leaves the queue.
pub(super) async fn apply_transition(
    conn: &mut PgConnection,
    t: &Transition,
    now: DateTime<Utc>,
) -> StoreResult<Option<Applied>> {
    apply_guarded(conn, t, Guard::States, now).await
}

/// `apply_transition` on the rows `guard` lets it change.
async fn apply_guarded(
    conn: &mut PgConnection,
    t: &Transition,
    guard: Guard,
    now: DateTime<Utc>,
) -> StoreResult<Option<Applied>> {
    let from: Vec<String> = guard
        .from(t)
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    if from.is_empty() {
        return Ok(None);
    }
    let leaves_queue = !matches!(
        t.to,
        JobState::Queued | JobState::Sending | JobState::Scheduled
    );
    let (job, due) = match t.to {
        JobState::Queued if t.refund_attempt => (
            "due_at = $5, lease_owner = NULL, lease_until = NULL, attempts = attempts - 1",
            Some(millis(t.retry_at.unwrap_or(now))),
        ),
        JobState::Queued => (
            "due_at = $5, lease_owner = NULL, lease_until = NULL",
            Some(millis(t.retry_at.unwrap_or(now))),
        ),
        JobState::Sending | JobState::Scheduled => ("due_at = COALESCE($5, due_at)", None),
        _ => ("due_at = $5, lease_owner = NULL, lease_until = NULL", None),
    };
    let sql = format!(
        "UPDATE messages SET status = $1, status_detail = $2, updated_at = $3,
                provider_message_id = COALESCE($4, provider_message_id),
                route = COALESCE($8, route),
                send_progress = CASE WHEN $9 THEN NULL ELSE COALESCE($10, send_progress) END, {job}
         WHERE id = $6 AND status = ANY($7){}
         RETURNING created_at, source, source_record, route",
        guard.condition()
    );
    let changed: Option<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(&sql)
        .bind(t.to.as_str())
        .bind(&t.detail)
        .bind(millis(now))
        .bind(&t.provider_message_id)
        .bind(due)
        .bind(t.message_id.as_str())
        .bind(from)
        .bind(&t.route)
        .bind(leaves_queue)
        .bind(&t.progress)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((created_at, name, record, route)) = changed else {
        if t.tells_the_send() {
            // A fast receipt came first: its state stands, and the send still says where it went.
            sqlx::query(
                "UPDATE messages SET route = COALESCE(route, $1),
                        provider_message_id = COALESCE(provider_message_id, $2)
                 WHERE id = $3",
            )
            .bind(&t.route)
            .bind(&t.provider_message_id)
            .bind(t.message_id.as_str())
            .execute(&mut *conn)
            .await?;
        }
        return Ok(None);
    };
    let source = decode::source(&name, record.as_deref())?;
    if leaves_queue && source.text_is_secret() {
        // The text has done its work once the provider has it; only the code's HMAC stays.
        sqlx::query("UPDATE messages SET body = '' WHERE id = $1")
            .bind(t.message_id.as_str())
            .execute(&mut *conn)
            .await?;
    }
    if let Some(entry) = NewOutboxEntry::status(&source, t.to, t.detail.as_deref(), now) {
        outbox::add(conn, t.message_id.as_str(), &source, entry).await?;
    }
    Ok(Some(Applied {
        created_at: decode::time(created_at)?,
        route,
    }))
}

#[async_trait]
impl QueueStore for PostgresStore {
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let until = millis(now) + lease.as_millis() as i64;
        let mut tx = self.pool.begin().await?;
        // The trigger logs a `sending` event for every message claimed. A message still
        // `sending` when claimed lost its worker (its lease ran out): say so in the event.
        let rows = sqlx::query(
            "UPDATE messages SET status = 'sending', updated_at = $1,
                    status_detail = CASE WHEN status = 'sending' THEN $5 END,
                    lease_owner = $2, lease_until = $3, attempts = attempts + 1
             WHERE seq IN (
                 SELECT seq FROM messages
                 WHERE due_at IS NOT NULL AND due_at <= $1
                   AND (lease_until IS NULL OR lease_until < $1)
                 ORDER BY due_at LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, to_number, sender, body, created_at, attempts, source, source_record,
                       status_detail IS NOT NULL AS in_doubt, route, send_progress, expires_at",
        )
        .bind(millis(now))
        .bind(owner)
        .bind(until)
        .bind(limit as i64)
        .bind(IN_DOUBT)
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id")?;
            let source = decode::source(r.try_get("source")?, r.try_get("source_record")?)?;
            if let Some(entry) = NewOutboxEntry::status(&source, JobState::Sending, None, now) {
                outbox::add(&mut tx, &id, &source, entry).await?;
            }
            let attempts: i64 = r.try_get("attempts")?;
            jobs.push(ClaimedJob {
                message_id: decode::id(&id)?,
                to: decode::number(r.try_get("to_number")?)?,
                from: r.try_get("sender")?,
                body: r.try_get("body")?,
                attempt: attempts as u32,
                created_at: decode::time(r.try_get("created_at")?)?,
                expires_at: r
                    .try_get::<Option<i64>, _>("expires_at")?
                    .map(decode::time)
                    .transpose()?,
                in_doubt: r.try_get("in_doubt")?,
                in_doubt_on: r.try_get("route")?,
                progress: r.try_get("send_progress")?,
            });
        }
        tx.commit().await?;
        Ok(jobs)
    }

    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // Through the queue's index in due order, so that a queue full of jobs scheduled for
        // later is not scanned on every wake-up.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT due_at FROM messages WHERE due_at IS NOT NULL AND lease_owner IS NULL
             ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        due.map(decode::time).transpose()
    }

    fn wakeups(&self) -> Option<watch::Receiver<()>> {
        Some(self.wakeups.subscribe())
    }

    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET lease_until = $1 WHERE lease_owner = $2 AND due_at IS NOT NULL",
        )
        .bind(millis(until))
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn transition(&self, t: Transition, now: DateTime<Utc>) -> StoreResult<Option<Applied>> {
        let mut tx = self.pool.begin().await?;
        let applied = apply_transition(&mut tx, &t, now).await?;
        tx.commit().await?;
        Ok(applied)
    }

    async fn settle_doubt(
        &self,
        message_id: &MessageId,
        provider_message_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let t = settled_doubt(message_id, provider_message_id);
        let mut tx = self.pool.begin().await?;
        let applied = apply_guarded(&mut tx, &t, Guard::InDoubt, now).await?;
        tx.commit().await?;
        Ok(applied.is_some())
    }

    async fn queue_depth(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE due_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn apply_receipts(
        &self,
        receipts: Vec<Receipt>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ReceiptOutcome>> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(receipts.len());
        for r in receipts {
            outcomes.push(apply_receipt(&mut tx, r, now).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

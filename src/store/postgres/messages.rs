//! `MessageStore` on PostgreSQL: acceptance goes through the writer's group commit (`writer.rs`),
//! which falls back to `accept_one` (one transaction per item) when a batch fails; reads come
//! from the pool.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, QueryBuilder, Row};

use super::{listing, outbox, queue::apply_transition, PostgresStore};
use crate::store::rows::{self, MESSAGE_COLUMNS};
use crate::{
    domain::consent::Consent,
    domain::hygiene::Hygiene,
    domain::{
        idempotency::{judge_key, KeyUse},
        ids::MessageId,
        phone::PhoneNumber,
        source::Source,
        state::JobState,
    },
    store::OptOut,
    store::{
        decode::{self, millis},
        Acceptance, CancelOutcome, EventRecord, IdempotencyRecord, ListQuery, MessageRecord,
        MessageStore, NewMessage, NewOutboxEntry, NewReply, RejectedMessage, ReplyRecord,
        StoreResult, Transition,
    },
};

/// The idempotency record kept for `scope`/`key`: its request hash and the original answer.
async fn earlier_use(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
) -> StoreResult<Option<(String, u16, String)>> {
    let row = sqlx::query(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let status: i32 = r.try_get(1)?;
        Ok((
            r.try_get(0)?,
            decode::parsed("HTTP status", &status.to_string())?,
            r.try_get(2)?,
        ))
    })
    .transpose()
}

/// The earlier use of `idem`'s key, if any: the answer to replay, or `KeyReused`. Takes the
/// key's advisory lock for the rest of the caller's transaction.
async fn judge(
    conn: &mut PgConnection,
    idem: Option<&IdempotencyRecord>,
) -> StoreResult<Option<Acceptance>> {
    let Some(idem) = idem else {
        return Ok(None);
    };
    // Two instances taking the same key at once: the second waits here for the first's
    // commit and then sees its record.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(&idem.scope)
        .bind(&idem.key)
        .execute(&mut *conn)
        .await?;
    let earlier = earlier_use(&mut *conn, &idem.scope, &idem.key)
        .await?
        .map(|(hash, status, response)| (hash, Acceptance::Replayed { status, response }));
    Ok(
        match judge_key(
            earlier
                .as_ref()
                .map(|(hash, replay)| (hash.as_str(), replay)),
            &idem.request_hash,
        ) {
            KeyUse::First => None,
            KeyUse::Replay(replay) => Some(replay.clone()),
            KeyUse::Reused => Some(Acceptance::KeyReused),
        },
    )
}

/// Keep `idem` with the message stored at `at`.
async fn keep_key(
    conn: &mut PgConnection,
    idem: &IdempotencyRecord,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&idem.scope)
    .bind(&idem.key)
    .bind(&idem.request_hash)
    .bind(i32::from(idem.status))
    .bind(&idem.response)
    .bind(millis(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Accept one message inside the caller's transaction, unless its key was used or a list
/// refuses the recipient.
pub(super) async fn accept_one(
    conn: &mut PgConnection,
    m: &NewMessage,
    idempotency: Option<&IdempotencyRecord>,
    hygiene: Hygiene,
) -> StoreResult<Acceptance> {
    if let Some(earlier) = judge(&mut *conn, idempotency).await? {
        return Ok(earlier);
    }
    if let Some(reason) = hygiene.refusal(listing(&mut *conn, &m.to, &m.from).await?) {
        return Ok(Acceptance::Blocked(reason));
    }
    if let Some(idem) = idempotency {
        keep_key(&mut *conn, idem, m.created_at).await?;
    }
    insert(conn, m).await?;
    Ok(Acceptance::Stored)
}

/// Store a refused record as a `rejected` message with its outbox entry, unless its key was used.
async fn reject(
    conn: &mut PgConnection,
    m: &RejectedMessage,
    idempotency: Option<&IdempotencyRecord>,
) -> StoreResult<Acceptance> {
    if let Some(earlier) = judge(&mut *conn, idempotency).await? {
        return Ok(earlier);
    }
    if let Some(idem) = idempotency {
        keep_key(&mut *conn, idem, m.created_at).await?;
    }
    sqlx::query(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status,
                               status_detail, source, source_record, metadata, created_at,
                               updated_at)
         VALUES ($1, $2, $3, '', 'gsm7', 0, 0, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(m.id.as_str())
    .bind(m.to.as_ref().map(|to| to.e164()))
    .bind(&m.from)
    .bind(JobState::Rejected.as_str())
    .bind(&m.detail)
    .bind(m.source.name())
    .bind(m.source.record())
    .bind(m.metadata.as_ref().map(|v| v.to_string()))
    .bind(millis(m.created_at))
    .execute(&mut *conn)
    .await?;
    let entry =
        NewOutboxEntry::status(&m.source, JobState::Rejected, Some(&m.detail), m.created_at);
    if let Some(entry) = entry {
        outbox::add(conn, m.id.as_str(), &m.source, entry).await?;
    }
    Ok(Acceptance::Stored)
}

/// Store a message the lists let through; the row is also its job (`due_at`).
pub(super) async fn insert(conn: &mut PgConnection, m: &NewMessage) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status,
                               source, source_record, metadata, created_at, send_at, updated_at,
                               due_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(m.id.as_str())
    .bind(m.to.e164())
    .bind(&m.from)
    .bind(&m.body)
    .bind(decode::encoding_name(m.segmentation.encoding))
    .bind(m.segmentation.characters as i64)
    .bind(m.segmentation.segments as i64)
    .bind(m.status.as_str())
    .bind(m.source.name())
    .bind(m.source.record())
    .bind(m.metadata.as_ref().map(|v| v.to_string()))
    .bind(millis(m.created_at))
    .bind(m.send_at.map(millis))
    .bind(millis(m.created_at))
    .bind(
        matches!(m.status, JobState::Queued | JobState::Scheduled)
            .then(|| millis(m.send_at.unwrap_or(m.created_at))),
    )
    .bind(m.expires_at.map(millis))
    .execute(&mut *conn)
    .await?;
    let links: Vec<_> = m.links.iter().map(|l| (m.id.as_str(), l)).collect();
    super::links::insert(conn, &links, &vec![m.created_at; links.len()]).await
}

#[async_trait]
impl MessageStore for PostgresStore {
    async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
        hygiene: Hygiene,
    ) -> StoreResult<Acceptance> {
        self.writer.accept(message, idempotency, hygiene).await
    }

    async fn reject(
        &self,
        message: RejectedMessage,
        idempotency: Option<IdempotencyRecord>,
    ) -> StoreResult<Acceptance> {
        let mut tx = self.pool.begin().await?;
        let outcome = reject(&mut tx, &message, idempotency.as_ref()).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn message(&self, id: &MessageId) -> StoreResult<Option<MessageRecord>> {
        // One snapshot for the message, its events and its replies.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let logged = sqlx::query(
            "SELECT status, detail, at FROM message_events WHERE message_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(EventRecord {
                status: decode::state(r.try_get(0)?)?,
                detail: r.try_get(1)?,
                at: decode::time(r.try_get(2)?)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let mut record = rows::message(&row)?.with_history(logged);
        record.replies = sqlx::query(
            "SELECT from_number, to_sender, body, received_at FROM replies WHERE message_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(ReplyRecord {
                message_id: Some(id.clone()),
                from: decode::number(r.try_get(0)?)?,
                to: r.try_get(1)?,
                body: r.try_get(2)?,
                at: decode::time(r.try_get(3)?)?,
            })
        })
        .collect::<StoreResult<_>>()?;
        tx.commit().await?;
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
        q.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::message)
            .collect()
    }

    async fn cancel(&self, id: &MessageId, now: DateTime<Utc>) -> StoreResult<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        // Locked, so the state reported when the cancel does not apply is the one that stopped it.
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE id = $1 FOR UPDATE")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = status else {
            return Ok(CancelOutcome::NotFound);
        };
        let t = Transition {
            message_id: id.clone(),
            to: JobState::Canceled,
            detail: Some("canceled by the client".into()),
            provider_message_id: None,
            retry_at: None,
            refund_attempt: false,
            route: None,
            progress: None,
        };
        let outcome = match apply_transition(&mut tx, &t, now).await? {
            Some(_) => CancelOutcome::Canceled,
            None => CancelOutcome::NotCancelable(decode::state(&status)?),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn idempotency(&self, scope: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(earlier_use(&mut conn, scope, key)
            .await?
            .map(|(request_hash, status, response)| IdempotencyRecord {
                scope: scope.to_string(),
                key: key.to_string(),
                request_hash,
                status,
                response,
            }))
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(millis(before))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn record_reply(
        &self,
        reply: NewReply,
        consent: Option<Consent>,
    ) -> StoreResult<ReplyRecord> {
        let mut tx = self.pool.begin().await?;
        let (stored, _) = record_reply(&mut tx, reply, consent).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn conversation_source(
        &self,
        number: &PhoneNumber,
        sender: &str,
    ) -> StoreResult<Option<Source>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT source, source_record FROM messages
             WHERE to_number = $1 AND sender = $2 ORDER BY seq DESC LIMIT 1",
        )
        .bind(number.e164())
        .bind(sender)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(name, record)| decode::source(&name, record.as_deref()))
            .transpose()
    }
}

/// Store a reply and the consent change it makes in the caller's transaction (see
/// `MessageStore::record_reply`); the reply as stored, and whether it is new (not one whose
/// `provider_id` was stored before).
pub(super) async fn record_reply(
    conn: &mut PgConnection,
    reply: NewReply,
    consent: Option<Consent>,
) -> StoreResult<(ReplyRecord, bool)> {
    if let Some(id) = &reply.provider_id {
        let stored: Option<(Option<String>, String, String, String, i64)> = sqlx::query_as(
            "SELECT message_id, from_number, to_sender, body, received_at
             FROM replies WHERE provider_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((message_id, from, to, body, at)) = stored {
            let stored = ReplyRecord {
                message_id: message_id.as_deref().map(decode::id).transpose()?,
                from: decode::number(&from)?,
                to,
                body,
                at: decode::time(at)?,
            };
            return Ok((stored, false));
        }
    }
    let linked: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, source, source_record FROM messages
         WHERE to_number = $1 AND sender = $2 ORDER BY seq DESC LIMIT 1",
    )
    .bind(reply.from.e164())
    .bind(&reply.to)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO replies (message_id, from_number, to_sender, body, received_at, provider_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(linked.as_ref().map(|(id, _, _)| id.as_str()))
    .bind(reply.from.e164())
    .bind(&reply.to)
    .bind(&reply.body)
    .bind(millis(reply.at))
    .bind(&reply.provider_id)
    .execute(&mut *conn)
    .await?;
    let message_id = match &linked {
        Some((id, name, record)) => {
            let source = decode::source(name, record.as_deref())?;
            if let Some(entry) = NewOutboxEntry::reply(&source, &reply.body, reply.at) {
                outbox::add(&mut *conn, id, &source, entry).await?;
            }
            let entry = consent.and_then(|c| {
                NewOutboxEntry::consent(&source, &reply.from, c.opted_out(), reply.at)
            });
            if let Some(entry) = entry {
                outbox::add(&mut *conn, id, &source, entry).await?;
            }
            Some(decode::id(id)?)
        }
        None => None,
    };
    if let Some(consent) = consent {
        let entry = OptOut::by_reply(&reply, message_id.clone());
        super::consent::apply(&mut *conn, consent, &entry).await?;
    }
    let stored = ReplyRecord {
        message_id,
        from: reply.from,
        to: reply.to,
        body: reply.body,
        at: reply.at,
    };
    Ok((stored, true))
}

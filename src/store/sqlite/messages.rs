//! `MessageStore` on SQLite: acceptance is one INSERT (two with an idempotency key) in the
//! writer's group commit; reads come from the pool.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::{QueryBuilder, Row};

use super::{listing, outbox, queue::apply_transition, SqliteStore};
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

/// The earlier use of `idem`'s key, if any: the answer to replay, or `KeyReused`.
fn earlier_use(
    conn: &Connection,
    idem: Option<&IdempotencyRecord>,
) -> StoreResult<Option<Acceptance>> {
    let Some(idem) = idem else {
        return Ok(None);
    };
    let earlier: Option<(String, u16, String)> = conn
        .prepare_cached(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
        )?
        .query_row(params![idem.scope, idem.key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let earlier =
        earlier.map(|(hash, status, response)| (hash, Acceptance::Replayed { status, response }));
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
fn keep_key(conn: &Connection, idem: &IdempotencyRecord, at: DateTime<Utc>) -> StoreResult<()> {
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
        millis(at)
    ])?;
    Ok(())
}

/// Accept one message inside the writer's transaction, unless its key was used or a list
/// refuses the recipient.
fn accept(
    conn: &Connection,
    m: &NewMessage,
    idempotency: Option<&IdempotencyRecord>,
    hygiene: Hygiene,
) -> StoreResult<Acceptance> {
    if let Some(earlier) = earlier_use(conn, idempotency)? {
        return Ok(earlier);
    }
    if let Some(reason) = hygiene.refusal(listing(conn, &m.to, &m.from)?) {
        return Ok(Acceptance::Blocked(reason));
    }
    if let Some(idem) = idempotency {
        keep_key(conn, idem, m.created_at)?;
    }
    insert(conn, m)?;
    Ok(Acceptance::Stored)
}

/// Store a refused record as a `rejected` message with its outbox entry, unless its key was used.
fn reject(
    conn: &Connection,
    m: &RejectedMessage,
    idempotency: Option<&IdempotencyRecord>,
) -> StoreResult<Acceptance> {
    if let Some(earlier) = earlier_use(conn, idempotency)? {
        return Ok(earlier);
    }
    if let Some(idem) = idempotency {
        keep_key(conn, idem, m.created_at)?;
    }
    conn.prepare_cached(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status,
                               status_detail, source, source_record, metadata, created_at,
                               updated_at)
         VALUES (?, ?, ?, '', 'gsm7', 0, 0, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        m.id.as_str(),
        m.to.as_ref().map(|to| to.e164()),
        m.from,
        JobState::Rejected.as_str(),
        m.detail,
        m.source.name(),
        m.source.record(),
        m.metadata.as_ref().map(|v| v.to_string()),
        millis(m.created_at),
        millis(m.created_at),
    ])?;
    let entry =
        NewOutboxEntry::status(&m.source, JobState::Rejected, Some(&m.detail), m.created_at);
    if let Some(entry) = entry {
        outbox::add(conn, m.id.as_str(), &m.source, entry)?;
    }
    Ok(Acceptance::Stored)
}

/// Store a message the lists let through; the row is also its job (`due_at`).
pub(super) fn insert(conn: &Connection, m: &NewMessage) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status,
                               source, source_record, metadata, created_at, send_at, updated_at,
                               due_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        m.id.as_str(),
        m.to.e164(),
        m.from,
        m.body,
        decode::encoding_name(m.segmentation.encoding),
        m.segmentation.characters,
        m.segmentation.segments,
        m.status.as_str(),
        m.source.name(),
        m.source.record(),
        m.metadata.as_ref().map(|v| v.to_string()),
        millis(m.created_at),
        m.send_at.map(millis),
        millis(m.created_at),
        matches!(m.status, JobState::Queued | JobState::Scheduled)
            .then(|| millis(m.send_at.unwrap_or(m.created_at))),
        m.expires_at.map(millis),
    ])?;
    super::links::insert(conn, m.id.as_str(), &m.links, m.created_at)
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
        hygiene: Hygiene,
    ) -> StoreResult<Acceptance> {
        // Without a key or links, accepting writes one row: no savepoint needed.
        let single = idempotency.is_none() && message.links.is_empty();
        let work = move |conn: &Connection| accept(conn, &message, idempotency.as_ref(), hygiene);
        if single {
            self.writer.run_statement(work).await
        } else {
            self.writer.run(work).await
        }
    }

    async fn reject(
        &self,
        message: RejectedMessage,
        idempotency: Option<IdempotencyRecord>,
    ) -> StoreResult<Acceptance> {
        self.writer
            .run(move |conn| reject(conn, &message, idempotency.as_ref()))
            .await
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
        let logged = sqlx::query(
            "SELECT status, detail, at FROM message_events WHERE message_id = ? ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
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
            "SELECT from_number, to_sender, body, received_at FROM replies WHERE message_id = ? ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
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
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(rows::message)
            .collect()
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
                    refund_attempt: false,
                    route: None,
                    progress: None,
                };
                Ok(match apply_transition(conn, &t, now)? {
                    Some(_) => CancelOutcome::Canceled,
                    None => CancelOutcome::NotCancelable(decode::state(&status)?),
                })
            })
            .await
    }

    async fn idempotency(&self, scope: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| IdempotencyRecord {
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

    async fn record_reply(
        &self,
        reply: NewReply,
        consent: Option<Consent>,
    ) -> StoreResult<ReplyRecord> {
        self.writer
            .run(move |conn| Ok(record_reply(conn, reply, consent)?.0))
            .await
    }

    async fn conversation_source(
        &self,
        number: &PhoneNumber,
        sender: &str,
    ) -> StoreResult<Option<Source>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT source, source_record FROM messages
             WHERE to_number = ? AND sender = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(number.e164())
        .bind(sender)
        .fetch_optional(&self.read)
        .await?;
        row.map(|(name, record)| decode::source(&name, record.as_deref()))
            .transpose()
    }
}

/// Store a reply and the consent change it makes in the writer's transaction (see
/// `MessageStore::record_reply`); the reply as stored, and whether it is new (not one whose
/// `provider_id` was stored before).
pub(super) fn record_reply(
    conn: &Connection,
    reply: NewReply,
    consent: Option<Consent>,
) -> StoreResult<(ReplyRecord, bool)> {
    if let Some(id) = &reply.provider_id {
        let stored: Option<(Option<String>, String, String, String, i64)> = conn
            .prepare_cached(
                "SELECT message_id, from_number, to_sender, body, received_at
                 FROM replies WHERE provider_id = ?",
            )?
            .query_row(params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
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
    let linked: Option<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, source, source_record FROM messages
             WHERE to_number = ? AND sender = ? ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![reply.from.e164(), reply.to], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO replies
         (message_id, from_number, to_sender, body, received_at, provider_id)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        linked.as_ref().map(|(id, _, _)| id.as_str()),
        reply.from.e164(),
        reply.to,
        reply.body,
        millis(reply.at),
        reply.provider_id,
    ])?;
    let message_id = match &linked {
        Some((id, name, record)) => {
            let source = decode::source(name, record.as_deref())?;
            if let Some(entry) = NewOutboxEntry::reply(&source, &reply.body, reply.at) {
                outbox::add(conn, id, &source, entry)?;
            }
            let entry = consent.and_then(|c| {
                NewOutboxEntry::consent(&source, &reply.from, c.opted_out(), reply.at)
            });
            if let Some(entry) = entry {
                outbox::add(conn, id, &source, entry)?;
            }
            Some(decode::id(id)?)
        }
        None => None,
    };
    if let Some(consent) = consent {
        let entry = OptOut::by_reply(&reply, message_id.clone());
        super::consent::apply(conn, consent, &entry)?;
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

//! Group commit for acceptance: one task with a connection of its own takes every `accept`
//! waiting in its channel and commits them together, with one statement per kind of
//! fact for the whole batch (the lists for every recipient, the stored idempotency keys, the
//! new keys, the new messages). The rules stay in Rust: the writer reads the facts, judges each
//! item with `judge_key` and `Hygiene::refusal`, and inserts what was accepted. Callers wait for
//! the commit, so an answer means durable.
//!
//! Idempotency keys are handled in the batch under the same transaction-scoped advisory locks
//! the per-call path takes (`hashtext(scope), hashtext(key)`), taken in one statement in sorted
//! order so that two instances' writers cannot deadlock. Under the locks, a stored key is
//! judged against its record; a key used twice in one batch is judged against the earlier item,
//! exactly as if the two had committed one after the other.
//!
//! A batch without idempotency keys has one write, so it runs without BEGIN and COMMIT (two
//! round trips fewer per batch); a batch with keys is one transaction.
//!
//! If a batch statement fails, nothing of the batch is kept and its items are committed one by
//! one on the per-call path, so one bad item fails only itself.

use std::collections::{HashMap, HashSet};

use sqlx::{Connection as _, PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::messages::accept_one;
use crate::{
    domain::hygiene::{Hygiene, Listing},
    domain::{
        idempotency::{judge_key, KeyUse},
        state::JobState,
    },
    store::{
        decode::{self, millis},
        Acceptance, IdempotencyRecord, NewLink, NewMessage, StoreError, StoreResult, EVERY_SENDER,
    },
};

/// Most acceptances one commit carries; more wait for the next.
const MAX_BATCH: usize = 512;

/// One `accept` waiting for the writer.
struct Request {
    message: NewMessage,
    idempotency: Option<IdempotencyRecord>,
    hygiene: Hygiene,
    answer: oneshot::Sender<StoreResult<Acceptance>>,
}

/// Handle to the writer task; it stops when the last handle is dropped.
pub(super) struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Start the writer task; it takes a connection of its own out of `pool` when it first
    /// needs one, and a new one after its connection failed.
    pub(super) fn start(pool: PgPool) -> Writer {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(writer_loop(pool, rx));
        Writer { tx }
    }

    /// Accept `message` in the next group commit; the answer comes once that commit is durable.
    pub(super) async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
        hygiene: Hygiene,
    ) -> StoreResult<Acceptance> {
        let (answer, rx) = oneshot::channel();
        self.tx
            .send(Request {
                message,
                idempotency,
                hygiene,
                answer,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

async fn writer_loop(pool: PgPool, mut rx: mpsc::Receiver<Request>) {
    let mut conn: Option<PgConnection> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Take what is already queued, never wait for more: a lone request is not delayed.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match pool.acquire().await {
                // Detached: the connection is the writer's for good, the pool opens another.
                Ok(c) => conn = Some(c.detach()),
                Err(e) => {
                    let e = StoreError::from(e);
                    for request in batch.drain(..) {
                        let _ = request.answer.send(Err(e.clone()));
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if !commit(c, &mut batch).await {
            // The connection may be broken: the next batch takes a new one.
            conn = None;
        }
    }
}

/// Commit `batch` and answer its callers; false if the connection should be replaced.
async fn commit(conn: &mut PgConnection, batch: &mut Vec<Request>) -> bool {
    let items: Vec<Request> = std::mem::take(batch);
    let answers = match commit_batch(conn, &items).await {
        Ok(answers) => answers,
        Err(BatchError::Statement(e)) => {
            tracing::warn!(error = %e, items = items.len(), "group commit failed; committing its items one by one");
            return commit_one_by_one(conn, items).await;
        }
        Err(BatchError::Commit(e)) => {
            // Whether the commit happened is unknown: say so to every caller, retry nothing.
            tracing::error!(error = %e, "group commit failed");
            for request in items {
                let _ = request.answer.send(Err(e.clone()));
            }
            return false;
        }
    };
    for (request, answer) in items.into_iter().zip(answers) {
        let _ = request.answer.send(Ok(answer));
    }
    true
}

enum BatchError {
    /// A statement before the commit failed; the transaction was rolled back.
    Statement(StoreError),
    /// The commit itself failed.
    Commit(StoreError),
}

/// The per-call path for each item, each in a transaction of its own.
async fn commit_one_by_one(conn: &mut PgConnection, items: Vec<Request>) -> bool {
    let mut healthy = true;
    for request in items {
        let result = async {
            let mut tx = conn.begin().await?;
            let accepted = accept_one(
                &mut tx,
                &request.message,
                request.idempotency.as_ref(),
                request.hygiene,
            )
            .await?;
            tx.commit().await?;
            Ok(accepted)
        }
        .await;
        if let Err(StoreError::Unavailable(_)) = &result {
            healthy = false;
        }
        let _ = request.answer.send(result);
    }
    healthy
}

/// The whole batch atomically: what each item's answer is, once committed.
async fn commit_batch(
    conn: &mut PgConnection,
    items: &[Request],
) -> Result<Vec<Acceptance>, BatchError> {
    // Links are a second statement, which needs the transaction.
    if items
        .iter()
        .all(|r| r.idempotency.is_none() && r.message.links.is_empty())
    {
        return commit_unkeyed(conn, items).await;
    }
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| BatchError::Statement(e.into()))?;
    let decided = match decide_and_insert(&mut tx, items).await {
        Ok(decided) => decided,
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(BatchError::Statement(e));
        }
    };
    tx.commit()
        .await
        .map_err(|e| BatchError::Commit(e.into()))?;
    Ok(decided)
}

/// A batch without idempotency keys needs no transaction of its own: its one write, the insert
/// of the messages, is a single statement and so commits atomically by itself, which spares two
/// round trips (BEGIN, COMMIT) per batch. The lists read before it may miss a list change made
/// meanwhile, as they may in a transaction at PostgreSQL's default isolation.
async fn commit_unkeyed(
    conn: &mut PgConnection,
    items: &[Request],
) -> Result<Vec<Acceptance>, BatchError> {
    decide_and_insert(conn, items).await.map_err(|e| match e {
        // Refused by the server: nothing of the statement was kept.
        StoreError::Conflict(_) | StoreError::Corrupt(_) => BatchError::Statement(e),
        // The connection failed: whether the insert committed is unknown.
        _ => BatchError::Commit(e),
    })
}

/// Read the facts for every item, judge each in order, insert the accepted ones.
async fn decide_and_insert(
    conn: &mut PgConnection,
    items: &[Request],
) -> StoreResult<Vec<Acceptance>> {
    let (scopes, keys): (Vec<&str>, Vec<&str>) = items
        .iter()
        .filter_map(|r| r.idempotency.as_ref())
        .map(|k| (k.scope.as_str(), k.key.as_str()))
        .unzip();
    // (scope, key) → the stored request's hash and its answer.
    let mut used: HashMap<(String, String), (String, Acceptance)> = HashMap::new();
    if !scopes.is_empty() {
        // Sorted, so that writers locking several keys at once never wait on each other in a
        // cycle; the per-call path locks one key.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(a, b) FROM (
                 SELECT DISTINCT hashtext(s) AS a, hashtext(k) AS b
                 FROM UNNEST($1::text[], $2::text[]) AS t(s, k) ORDER BY a, b
             ) AS locks",
        )
        .bind(&scopes)
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        let rows = sqlx::query(
            "SELECT scope, key, request_hash, status, response FROM idempotency_keys
             WHERE (scope, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&scopes)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let status: i32 = r.try_get(3)?;
            used.insert(
                (r.try_get(0)?, r.try_get(1)?),
                (
                    r.try_get(2)?,
                    Acceptance::Replayed {
                        status: decode::parsed("HTTP status", &status.to_string())?,
                        response: r.try_get(4)?,
                    },
                ),
            );
        }
    }

    let numbers: Vec<&str> = items
        .iter()
        .map(|r| r.message.to.e164())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut listings: HashMap<String, Listing> = HashMap::new();
    let mut opted_out: HashSet<(String, String)> = HashSet::new();
    let rows = sqlx::query(
        "SELECT number, list, NULL AS sender FROM number_lists
         WHERE list IN ('allow', 'deny') AND number = ANY($1)
         UNION ALL
         SELECT number, 'opt_out', sender FROM opt_outs WHERE number = ANY($1)",
    )
    .bind(&numbers)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let number: String = r.try_get(0)?;
        match r.try_get::<&str, _>(1)? {
            "deny" => listings.entry(number).or_default().denied = true,
            "opt_out" => {
                opted_out.insert((number, r.try_get(2)?));
            }
            _ => listings.entry(number).or_default().allowed = true,
        }
    }

    let mut answers = Vec::with_capacity(items.len());
    let mut new_keys: Vec<(&IdempotencyRecord, &NewMessage)> = Vec::new();
    let mut stored: Vec<&NewMessage> = Vec::new();
    for r in items {
        let m = &r.message;
        if let Some(idem) = &r.idempotency {
            let earlier = used.get(&(idem.scope.clone(), idem.key.clone()));
            match judge_key(
                earlier.map(|(hash, replay)| (hash.as_str(), replay)),
                &idem.request_hash,
            ) {
                KeyUse::First => {}
                KeyUse::Replay(replay) => {
                    answers.push(replay.clone());
                    continue;
                }
                KeyUse::Reused => {
                    answers.push(Acceptance::KeyReused);
                    continue;
                }
            }
        }
        let mut listing = listings.get(m.to.e164()).copied().unwrap_or_default();
        listing.opted_out = [m.from.as_str(), EVERY_SENDER]
            .into_iter()
            .any(|sender| opted_out.contains(&(m.to.e164().to_string(), sender.to_string())));
        if let Some(reason) = r.hygiene.refusal(listing) {
            answers.push(Acceptance::Blocked(reason));
            continue;
        }
        if let Some(idem) = &r.idempotency {
            // A later item of this batch with the same key sees this one as stored.
            used.insert(
                (idem.scope.clone(), idem.key.clone()),
                (
                    idem.request_hash.clone(),
                    Acceptance::Replayed {
                        status: idem.status,
                        response: idem.response.clone(),
                    },
                ),
            );
            new_keys.push((idem, m));
        }
        stored.push(m);
        answers.push(Acceptance::Stored);
    }

    if !new_keys.is_empty() {
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[],
                                  $6::int8[])",
        )
        .bind(
            new_keys
                .iter()
                .map(|(k, _)| k.scope.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new_keys
                .iter()
                .map(|(k, _)| k.key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new_keys
                .iter()
                .map(|(k, _)| k.request_hash.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new_keys
                .iter()
                .map(|(k, _)| i32::from(k.status))
                .collect::<Vec<_>>(),
        )
        .bind(
            new_keys
                .iter()
                .map(|(k, _)| k.response.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new_keys
                .iter()
                .map(|(_, m)| millis(m.created_at))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    if !stored.is_empty() {
        insert_messages(conn, &stored).await?;
    }
    Ok(answers)
}

/// Store the messages the lists let through, in one statement; each row is also its job
/// (`due_at`), as in `messages::insert`.
async fn insert_messages(conn: &mut PgConnection, ms: &[&NewMessage]) -> StoreResult<()> {
    fn column<'a, T>(ms: &[&'a NewMessage], f: impl Fn(&'a NewMessage) -> T) -> Vec<T> {
        ms.iter().map(|m| f(m)).collect()
    }
    sqlx::query(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments, status,
                               source, source_record, metadata, created_at, send_at, updated_at,
                               due_at, expires_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[],
                              $11::text[], $12::int8[], $13::int8[], $14::int8[], $15::int8[],
                              $16::int8[])",
    )
    .bind(column(ms, |m| m.id.as_str()))
    .bind(column(ms, |m| m.to.e164()))
    .bind(column(ms, |m| m.from.as_str()))
    .bind(column(ms, |m| m.body.as_str()))
    .bind(column(ms, |m| {
        decode::encoding_name(m.segmentation.encoding)
    }))
    .bind(column(ms, |m| m.segmentation.characters as i64))
    .bind(column(ms, |m| m.segmentation.segments as i64))
    .bind(column(ms, |m| m.status.as_str()))
    .bind(column(ms, |m| m.source.name()))
    .bind(column(ms, |m| m.source.record()))
    .bind(column(ms, |m| m.metadata.as_ref().map(|v| v.to_string())))
    .bind(column(ms, |m| millis(m.created_at)))
    .bind(column(ms, |m| m.send_at.map(millis)))
    .bind(column(ms, |m| millis(m.created_at)))
    .bind(column(ms, |m| {
        matches!(m.status, JobState::Queued | JobState::Scheduled)
            .then(|| millis(m.send_at.unwrap_or(m.created_at)))
    }))
    .bind(column(ms, |m| m.expires_at.map(millis)))
    .execute(&mut *conn)
    .await?;
    let links: Vec<(&str, &NewLink)> = ms
        .iter()
        .flat_map(|m| m.links.iter().map(|l| (m.id.as_str(), l)))
        .collect();
    let at: Vec<_> = ms
        .iter()
        .flat_map(|m| m.links.iter().map(|_| m.created_at))
        .collect();
    super::links::insert(conn, &links, &at).await
}

//! `ConsentStore` on SQLite, and the consent a reply gives, inside the reply's commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{messages::record_reply, outbox, SqliteStore};
use crate::{
    domain::{consent::Consent, phone::PhoneNumber},
    store::{
        decode::{self, millis},
        rows::{self, OPT_OUT_COLUMNS, REVIEW_COLUMNS},
        ConsentStore, NewOutboxEntry, NewReply, OptOut, ReplyRecord, Review, ReviewQuery,
        SettleOutcome, Settlement, StoreResult, EVERY_SENDER,
    },
};

/// Opt a number out (replacing an older entry for the same sender) in the writer's transaction.
pub(super) fn opt_out(conn: &Connection, entry: &OptOut) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO opt_outs (number, sender, at, via, keyword, message_id)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (number, sender) DO UPDATE SET at = excluded.at, via = excluded.via,
             keyword = excluded.keyword, message_id = excluded.message_id",
    )?
    .execute(params![
        entry.number.e164(),
        entry.sender,
        millis(entry.at),
        entry.via.as_str(),
        entry.keyword,
        entry.message_id.as_ref().map(|id| id.as_str()),
    ])?;
    Ok(())
}

/// Opt a number back in for `sender` in the writer's transaction; whether it was out.
pub(super) fn opt_in(conn: &Connection, number: &PhoneNumber, sender: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM opt_outs WHERE number = ? AND sender = ?")?
        .execute(params![number.e164(), sender])?
        > 0)
}

/// The change a reply's consent makes: out of its sender, or back in for it and for every sender
/// (the person's own word outweighs a block that named every sender).
pub(super) fn apply(conn: &Connection, consent: Consent, entry: &OptOut) -> StoreResult<()> {
    match consent {
        Consent::OptOut => opt_out(conn, entry),
        Consent::OptIn => {
            opt_in(conn, &entry.number, &entry.sender)?;
            opt_in(conn, &entry.number, EVERY_SENDER)?;
            Ok(())
        }
    }
}

/// Hold a stored reply for review in the writer's transaction.
fn hold(conn: &Connection, reply: &ReplyRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO opt_out_reviews (number, sender, body, message_id, received_at)
         VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![
        reply.from.e164(),
        reply.to,
        reply.body,
        reply.message_id.as_ref().map(|id| id.as_str()),
        millis(reply.at),
    ])?;
    Ok(())
}

/// Settle an open review in the writer's transaction, opting its number out when so decided;
/// whether it was still open.
fn settle(
    conn: &Connection,
    review: &Review,
    settlement: Settlement,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let settled = conn
        .prepare_cached(
            "UPDATE opt_out_reviews SET settled_at = ?, outcome = ?
             WHERE id = ? AND settled_at IS NULL",
        )?
        .execute(params![millis(at), settlement.as_str(), review.id])?;
    if settled == 0 {
        return Ok(false);
    }
    if settlement == Settlement::OptOut {
        opt_out(conn, &OptOut::by_review(review, at))?;
        let Some(id) = &review.message_id else {
            return Ok(true);
        };
        let source: Option<(String, Option<String>)> = conn
            .prepare_cached("SELECT source, source_record FROM messages WHERE id = ?")?
            .query_row(params![id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((name, record)) = source {
            let source = decode::source(&name, record.as_deref())?;
            if let Some(entry) = NewOutboxEntry::consent(&source, &review.number, true, at) {
                outbox::add(conn, id.as_str(), &source, entry)?;
            }
        }
    }
    Ok(true)
}

impl SqliteStore {
    /// One held reply.
    async fn review(&self, id: i64) -> StoreResult<Option<Review>> {
        sqlx::query(&format!(
            "SELECT {REVIEW_COLUMNS} FROM opt_out_reviews WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(rows::review)
        .transpose()
    }
}

#[async_trait]
impl ConsentStore for SqliteStore {
    async fn opt_out(&self, entry: OptOut) -> StoreResult<()> {
        self.writer.run(move |conn| opt_out(conn, &entry)).await
    }

    async fn opt_in(&self, number: &PhoneNumber, sender: &str) -> StoreResult<bool> {
        let (number, sender) = (number.clone(), sender.to_string());
        self.writer
            .run(move |conn| opt_in(conn, &number, &sender))
            .await
    }

    async fn opt_outs(&self, number: Option<&PhoneNumber>, limit: u32) -> StoreResult<Vec<OptOut>> {
        sqlx::query(&format!(
            "SELECT {OPT_OUT_COLUMNS} FROM opt_outs WHERE ?1 IS NULL OR number = ?1
             ORDER BY at DESC, number LIMIT ?2"
        ))
        .bind(number.map(|n| n.e164().to_string()))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::opt_out)
        .collect()
    }

    async fn hold_reply(&self, reply: NewReply) -> StoreResult<ReplyRecord> {
        self.writer
            .run(move |conn| {
                let (stored, new) = record_reply(conn, reply, None)?;
                if new {
                    hold(conn, &stored)?;
                }
                Ok(stored)
            })
            .await
    }

    async fn reviews(&self, query: ReviewQuery) -> StoreResult<Vec<Review>> {
        sqlx::query(&format!(
            "SELECT {REVIEW_COLUMNS} FROM opt_out_reviews
             WHERE (?1 IS NULL OR (settled_at IS NULL) = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3"
        ))
        .bind(query.open)
        .bind(query.before)
        .bind(query.limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::review)
        .collect()
    }

    async fn settle_review(
        &self,
        id: i64,
        settlement: Settlement,
        at: DateTime<Utc>,
    ) -> StoreResult<SettleOutcome> {
        // What a review says never changes, so it is read before the guarded update decides.
        let Some(mut review) = self.review(id).await? else {
            return Ok(SettleOutcome::NotFound);
        };
        if review.settled.is_none() {
            let open = review.clone();
            if self
                .writer
                .run(move |conn| settle(conn, &open, settlement, at))
                .await?
            {
                review.settled = Some((at, settlement));
                return Ok(SettleOutcome::Settled(review));
            }
        }
        let review = self.review(id).await?.ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!("review {id} vanished while settled"))
        })?;
        Ok(SettleOutcome::AlreadySettled(review))
    }

    async fn open_reviews(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM opt_out_reviews WHERE settled_at IS NULL")
                .fetch_one(&self.read)
                .await?,
        )
    }
}

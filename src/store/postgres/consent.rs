//! `ConsentStore` on PostgreSQL, and the consent a reply gives, inside the reply's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{messages::record_reply, outbox, PostgresStore};
use crate::{
    domain::{consent::Consent, phone::PhoneNumber},
    store::{
        decode::{self, millis},
        rows::{self, OPT_OUT_COLUMNS, REVIEW_COLUMNS},
        ConsentStore, NewOutboxEntry, NewReply, OptOut, ReplyRecord, Review, ReviewQuery,
        SettleOutcome, Settlement, StoreResult, EVERY_SENDER,
    },
};

/// Opt a number out (replacing an older entry for the same sender) in the caller's transaction.
async fn opt_out(conn: &mut PgConnection, entry: &OptOut) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO opt_outs (number, sender, at, via, keyword, message_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (number, sender) DO UPDATE SET at = excluded.at, via = excluded.via,
             keyword = excluded.keyword, message_id = excluded.message_id",
    )
    .bind(entry.number.e164())
    .bind(&entry.sender)
    .bind(millis(entry.at))
    .bind(entry.via.as_str())
    .bind(&entry.keyword)
    .bind(entry.message_id.as_ref().map(|id| id.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Opt a number back in for the senders given, in the caller's transaction; whether it was out.
async fn opt_in(
    conn: &mut PgConnection,
    number: &PhoneNumber,
    senders: &[&str],
) -> StoreResult<bool> {
    Ok(
        sqlx::query("DELETE FROM opt_outs WHERE number = $1 AND sender = ANY($2)")
            .bind(number.e164())
            .bind(senders)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}

/// The change a reply's consent makes: out of its sender, or back in for it and for every sender
/// (the person's own word outweighs a block that named every sender).
pub(super) async fn apply(
    conn: &mut PgConnection,
    consent: Consent,
    entry: &OptOut,
) -> StoreResult<()> {
    match consent {
        Consent::OptOut => opt_out(conn, entry).await,
        Consent::OptIn => {
            opt_in(conn, &entry.number, &[&entry.sender, EVERY_SENDER]).await?;
            Ok(())
        }
    }
}

/// Hold a stored reply for review in the caller's transaction.
async fn hold(conn: &mut PgConnection, reply: &ReplyRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO opt_out_reviews (number, sender, body, message_id, received_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(reply.from.e164())
    .bind(&reply.to)
    .bind(&reply.body)
    .bind(reply.message_id.as_ref().map(|id| id.as_str()))
    .bind(millis(reply.at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Tell the CRM of the message a settled review answered that its number opted out, in the
/// caller's transaction.
async fn consent_to_crm(conn: &mut PgConnection, review: &Review) -> StoreResult<()> {
    let (Some(id), Some((at, _))) = (&review.message_id, review.settled) else {
        return Ok(());
    };
    let source: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT source, source_record FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((name, record)) = source {
        let source = decode::source(&name, record.as_deref())?;
        if let Some(entry) = NewOutboxEntry::consent(&source, &review.number, true, at) {
            outbox::add(conn, id.as_str(), &source, entry).await?;
        }
    }
    Ok(())
}

#[async_trait]
impl ConsentStore for PostgresStore {
    async fn opt_out(&self, entry: OptOut) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        opt_out(&mut conn, &entry).await
    }

    async fn opt_in(&self, number: &PhoneNumber, sender: &str) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        opt_in(&mut conn, number, &[sender]).await
    }

    async fn opt_outs(&self, number: Option<&PhoneNumber>, limit: u32) -> StoreResult<Vec<OptOut>> {
        sqlx::query(&format!(
            "SELECT {OPT_OUT_COLUMNS} FROM opt_outs WHERE $1::text IS NULL OR number = $1
             ORDER BY at DESC, number LIMIT $2"
        ))
        .bind(number.map(|n| n.e164().to_string()))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::opt_out)
        .collect()
    }

    async fn hold_reply(&self, reply: NewReply) -> StoreResult<ReplyRecord> {
        let mut tx = self.pool.begin().await?;
        let (stored, new) = record_reply(&mut tx, reply, None).await?;
        if new {
            hold(&mut tx, &stored).await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn reviews(&self, query: ReviewQuery) -> StoreResult<Vec<Review>> {
        sqlx::query(&format!(
            "SELECT {REVIEW_COLUMNS} FROM opt_out_reviews
             WHERE ($1::boolean IS NULL OR (settled_at IS NULL) = $1)
               AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(query.open)
        .bind(query.before)
        .bind(query.limit as i64)
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let settled = sqlx::query(&format!(
            "UPDATE opt_out_reviews SET settled_at = $1, outcome = $2
             WHERE id = $3 AND settled_at IS NULL RETURNING {REVIEW_COLUMNS}"
        ))
        .bind(millis(at))
        .bind(settlement.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(rows::review)
        .transpose()?;
        if let Some(review) = settled {
            if settlement == Settlement::OptOut {
                opt_out(&mut tx, &OptOut::by_review(&review, at)).await?;
                consent_to_crm(&mut tx, &review).await?;
            }
            tx.commit().await?;
            return Ok(SettleOutcome::Settled(review));
        }
        drop(tx);
        let review = sqlx::query(&format!(
            "SELECT {REVIEW_COLUMNS} FROM opt_out_reviews WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(rows::review)
        .transpose()?;
        Ok(review.map_or(SettleOutcome::NotFound, SettleOutcome::AlreadySettled))
    }

    async fn open_reviews(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM opt_out_reviews WHERE settled_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

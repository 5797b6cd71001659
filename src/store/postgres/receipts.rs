//! `ReceiptStore` on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::{
    domain::ids::MessageId,
    store::{
        decode::{self, millis},
        rows, KeptReceipt, PartOutcome, PartReceipt, PartState, ReceiptStore, StoreResult,
        Unmatched,
    },
};

/// Record one part receipt in the caller's transaction and read its message's parts back.
async fn part_receipt(conn: &mut PgConnection, r: &PartReceipt) -> StoreResult<PartOutcome> {
    let Some(message) = sqlx::query_scalar::<_, String>(
        "SELECT message_id FROM message_parts WHERE part_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(&r.part_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(PartOutcome::Unknown);
    };
    // Receipts for two parts of one message committing side by side would each miss the
    // other's: the message's row serialises them, so the last to commit sees every part.
    sqlx::query("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE")
        .bind(&message)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE message_parts SET status = $1, detail = $2
         WHERE id = (SELECT MAX(id) FROM message_parts WHERE part_id = $3)",
    )
    .bind(r.status.as_str())
    .bind(&r.detail)
    .bind(&r.part_id)
    .execute(&mut *conn)
    .await?;
    let mut parts = Vec::new();
    let mut first_part = String::new();
    for row in sqlx::query(
        "SELECT status, detail, part_id FROM message_parts WHERE message_id = $1 ORDER BY part",
    )
    .bind(&message)
    .fetch_all(&mut *conn)
    .await?
    {
        if parts.is_empty() {
            first_part = row.try_get("part_id")?;
        }
        let status: Option<&str> = row.try_get("status")?;
        let state: PartState = match status {
            Some(s) => Some((decode::receipt_status(s)?, row.try_get("detail")?)),
            None => None,
        };
        parts.push(state);
    }
    Ok(PartOutcome::Recorded {
        message_id: decode::id(&message)?,
        first_part,
        parts,
    })
}

#[async_trait]
impl ReceiptStore for PostgresStore {
    async fn parts_sent(&self, message_id: &MessageId, part_ids: Vec<String>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // A message sent again (after a crash) gets its new parts in place of the old.
        sqlx::query("DELETE FROM message_parts WHERE message_id = $1")
            .bind(message_id.as_str())
            .execute(&mut *tx)
            .await?;
        let parts: Vec<i64> = (0..part_ids.len() as i64).collect();
        sqlx::query(
            "INSERT INTO message_parts (part_id, message_id, part)
             SELECT p.id, $2, p.part FROM UNNEST($1::text[], $3::bigint[]) AS p(id, part)",
        )
        .bind(&part_ids)
        .bind(message_id.as_str())
        .bind(&parts)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE messages SET segments = $1 WHERE id = $2 AND segments < $1")
            .bind(part_ids.len() as i64)
            .bind(message_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn part_receipts(&self, receipts: Vec<PartReceipt>) -> StoreResult<Vec<PartOutcome>> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(receipts.len());
        for r in &receipts {
            outcomes.push(part_receipt(&mut tx, r).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn keep_receipts(&self, receipts: Vec<Unmatched>, at: DateTime<Utc>) -> StoreResult<()> {
        let mut ids = Vec::new();
        let mut parts = Vec::new();
        let mut statuses = Vec::new();
        let mut details = Vec::new();
        for r in receipts {
            let (id, is_part, status, detail) = match r {
                Unmatched::Whole {
                    provider_message_id,
                    status,
                    detail,
                } => (provider_message_id, false, status, detail),
                Unmatched::Part(p) => (p.part_id, true, p.status, p.detail),
            };
            ids.push(id);
            parts.push(is_part);
            statuses.push(status.as_str());
            details.push(detail);
        }
        sqlx::query(
            "INSERT INTO kept_receipts
             (provider_message_id, is_part, status, detail, received_at, next_try_at)
             SELECT r.id, r.is_part, r.status, r.detail, $5, $5
             FROM UNNEST($1::text[], $2::boolean[], $3::text[], $4::text[])
                  AS r(id, is_part, status, detail)",
        )
        .bind(ids)
        .bind(parts)
        .bind(statuses)
        .bind(details)
        .bind(millis(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn kept_receipts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<KeptReceipt>> {
        sqlx::query(
            "SELECT id, provider_message_id, is_part, status, detail, received_at, tries
             FROM kept_receipts WHERE next_try_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(millis(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::kept_receipt)
        .collect()
    }

    async fn forget_receipts(&self, ids: Vec<i64>) -> StoreResult<()> {
        sqlx::query("DELETE FROM kept_receipts WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry_receipts(&self, retries: Vec<(i64, DateTime<Utc>)>) -> StoreResult<()> {
        let (ids, at): (Vec<i64>, Vec<i64>) =
            retries.into_iter().map(|(id, t)| (id, millis(t))).unzip();
        sqlx::query(
            "UPDATE kept_receipts k SET next_try_at = r.at, tries = k.tries + 1
             FROM UNNEST($1::bigint[], $2::bigint[]) AS r(id, at) WHERE k.id = r.id",
        )
        .bind(ids)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn kept_receipt_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM kept_receipts")
            .fetch_one(&self.pool)
            .await?)
    }
}

//! `ReceiptStore` on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::{
    domain::ids::MessageId,
    store::{
        decode::{self, millis},
        rows, KeptReceipt, PartOutcome, PartReceipt, PartState, ReceiptStore, StoreResult,
        Unmatched,
    },
};

/// Record one part receipt in the writer's transaction and read its message's parts back.
fn part_receipt(conn: &Connection, r: &PartReceipt) -> StoreResult<PartOutcome> {
    let message: Option<String> = conn
        .prepare_cached(
            "UPDATE message_parts SET status = ?, detail = ?
             WHERE id = (SELECT MAX(id) FROM message_parts WHERE part_id = ?)
             RETURNING message_id",
        )?
        .query_row(params![r.status.as_str(), r.detail, r.part_id], |row| {
            row.get(0)
        })
        .optional()?;
    let Some(message) = message else {
        return Ok(PartOutcome::Unknown);
    };
    let mut parts = Vec::new();
    let mut first_part = String::new();
    let mut select = conn.prepare_cached(
        "SELECT status, detail, part_id FROM message_parts WHERE message_id = ? ORDER BY part",
    )?;
    let mut rows = select.query(params![message])?;
    while let Some(row) = rows.next()? {
        if parts.is_empty() {
            first_part = row.get(2)?;
        }
        let status: Option<String> = row.get(0)?;
        let state: PartState = match status {
            Some(s) => Some((decode::receipt_status(&s)?, row.get(1)?)),
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
impl ReceiptStore for SqliteStore {
    async fn parts_sent(&self, message_id: &MessageId, part_ids: Vec<String>) -> StoreResult<()> {
        let message_id = message_id.as_str().to_string();
        self.writer
            .run(move |conn| {
                // A message sent again (after a crash) gets its new parts in place of the old.
                conn.prepare_cached("DELETE FROM message_parts WHERE message_id = ?")?
                    .execute(params![message_id])?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO message_parts (part_id, message_id, part) VALUES (?, ?, ?)",
                )?;
                for (part, id) in part_ids.iter().enumerate() {
                    insert.execute(params![id, message_id, part as i64])?;
                }
                conn.prepare_cached(
                    "UPDATE messages SET segments = ?1 WHERE id = ?2 AND segments < ?1",
                )?
                .execute(params![part_ids.len() as i64, message_id])?;
                Ok(())
            })
            .await
    }

    async fn part_receipts(&self, receipts: Vec<PartReceipt>) -> StoreResult<Vec<PartOutcome>> {
        self.writer
            .run(move |conn| receipts.iter().map(|r| part_receipt(conn, r)).collect())
            .await
    }

    async fn keep_receipts(&self, receipts: Vec<Unmatched>, at: DateTime<Utc>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO kept_receipts
                     (provider_message_id, is_part, status, detail, received_at, next_try_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )?;
                for r in receipts {
                    let (id, is_part, status, detail) = match r {
                        Unmatched::Whole {
                            provider_message_id,
                            status,
                            detail,
                        } => (provider_message_id, false, status, detail),
                        Unmatched::Part(p) => (p.part_id, true, p.status, p.detail),
                    };
                    insert.execute(params![
                        id,
                        is_part,
                        status.as_str(),
                        detail,
                        millis(at),
                        millis(at)
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn kept_receipts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<KeptReceipt>> {
        sqlx::query(
            "SELECT id, provider_message_id, is_part, status, detail, received_at, tries
             FROM kept_receipts WHERE next_try_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(millis(now))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::kept_receipt)
        .collect()
    }

    async fn forget_receipts(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut delete = conn.prepare_cached("DELETE FROM kept_receipts WHERE id = ?")?;
                for id in ids {
                    delete.execute(params![id])?;
                }
                Ok(())
            })
            .await
    }

    async fn retry_receipts(&self, retries: Vec<(i64, DateTime<Utc>)>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut update = conn.prepare_cached(
                    "UPDATE kept_receipts SET next_try_at = ?, tries = tries + 1 WHERE id = ?",
                )?;
                for (id, at) in retries {
                    update.execute(params![millis(at), id])?;
                }
                Ok(())
            })
            .await
    }

    async fn kept_receipt_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM kept_receipts")
            .fetch_one(&self.read)
            .await?)
    }
}

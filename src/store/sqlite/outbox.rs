//! `OutboxStore` on SQLite, and adding an entry inside the writer's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use sqlx::Row;

use super::SqliteStore;
use crate::{
    domain::source::Source,
    store::{
        decode::{self, millis},
        NewOutboxEntry, OutboxEntry, OutboxStore, StoreResult,
    },
};

/// Add `entry` for message `message_id` of `source`, in the caller's transaction.
pub(super) fn add(
    conn: &Connection,
    message_id: &str,
    source: &Source,
    entry: NewOutboxEntry,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (message_id, source, source_record, kind, payload, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        message_id,
        source.name(),
        source.record(),
        entry.kind.as_str(),
        entry.payload.to_string(),
        millis(entry.at)
    ])?;
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn outbox_pending(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        sqlx::query(
            "SELECT id, message_id, source, source_record, kind, payload FROM outbox
             WHERE done_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| {
            Ok(OutboxEntry {
                id: r.try_get("id")?,
                message_id: decode::id(r.try_get("message_id")?)?,
                source: decode::source(r.try_get("source")?, r.try_get("source_record")?)?,
                kind: decode::parsed("outbox kind", r.try_get("kind")?)?,
                payload: decode::json(r.try_get("payload")?)?,
            })
        })
        .collect()
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

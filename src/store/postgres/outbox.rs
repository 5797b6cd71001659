//! `OutboxStore` on PostgreSQL, and adding an entry inside the caller's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::{
    domain::source::Source,
    store::{
        decode::{self, millis},
        NewOutboxEntry, OutboxEntry, OutboxStore, StoreResult,
    },
};

/// Add `entry` for message `message_id` of `source`, in the caller's transaction.
pub(super) async fn add(
    conn: &mut PgConnection,
    message_id: &str,
    source: &Source,
    entry: NewOutboxEntry,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (message_id, source, source_record, kind, payload, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(message_id)
    .bind(source.name())
    .bind(source.record())
    .bind(entry.kind.as_str())
    .bind(entry.payload.to_string())
    .bind(millis(entry.at))
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn outbox_pending(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        sqlx::query(
            "SELECT id, message_id, source, source_record, kind, payload FROM outbox
             WHERE done_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
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
        sqlx::query("UPDATE outbox SET done_at = $1 WHERE id = ANY($2)")
            .bind(millis(now))
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

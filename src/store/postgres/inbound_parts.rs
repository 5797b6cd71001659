//! `InboundPartStore` on PostgreSQL: the parts of one message are taken one after the other
//! under a transaction-scoped advisory lock on its key, so of two instances offering its last
//! parts at once, the second sees the first's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use crate::store::{
    decode::{self, millis},
    InboundPart, InboundPartStore, JoinedParts, PartsKey, StoreResult,
};

#[async_trait]
impl InboundPartStore for PostgresStore {
    async fn inbound_part(
        &self,
        part: InboundPart,
        forget_before: DateTime<Utc>,
    ) -> StoreResult<Option<JoinedParts>> {
        let key = &part.key;
        let (reference, total) = (i32::from(key.reference), i32::from(key.total));
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('inbound_parts'), hashtext($1))")
            .bind(format!("{}:{reference}:{total}", key.from))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM inbound_parts WHERE at < $1")
            .bind(millis(forget_before))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO inbound_parts (sender, reference, total, seq, data_coding, payload,
                                        first_at, at)
             VALUES ($1, $2, $3, $4, $5, $6,
                     COALESCE((SELECT MIN(first_at) FROM inbound_parts
                               WHERE sender = $1 AND reference = $2 AND total = $3), $7), $7)
             ON CONFLICT (sender, reference, total, seq)
             DO UPDATE SET data_coding = excluded.data_coding, payload = excluded.payload,
                           at = excluded.at",
        )
        .bind(&key.from)
        .bind(reference)
        .bind(total)
        .bind(i32::from(part.seq))
        .bind(i32::from(part.data_coding))
        .bind(&part.payload)
        .bind(millis(part.at))
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT seq, data_coding, payload, at, first_at FROM inbound_parts
             WHERE sender = $1 AND reference = $2 AND total = $3 ORDER BY seq",
        )
        .bind(&key.from)
        .bind(reference)
        .bind(total)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut parts = Vec::with_capacity(rows.len());
        let mut first_at = part.at;
        for r in rows {
            first_at = decode::time(r.try_get("first_at")?)?;
            parts.push(InboundPart {
                key: key.clone(),
                seq: small(r.try_get("seq")?)?,
                data_coding: small(r.try_get("data_coding")?)?,
                payload: r.try_get("payload")?,
                at: decode::time(r.try_get("at")?)?,
            });
        }
        Ok((parts.len() == usize::from(key.total)).then_some(JoinedParts { parts, first_at }))
    }

    async fn forget_inbound_parts(&self, key: &PartsKey) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM inbound_parts WHERE sender = $1 AND reference = $2 AND total = $3",
        )
        .bind(&key.from)
        .bind(i32::from(key.reference))
        .bind(i32::from(key.total))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A part number or data coding as stored.
fn small(n: i32) -> StoreResult<u8> {
    decode::parsed("inbound part number", &n.to_string())
}

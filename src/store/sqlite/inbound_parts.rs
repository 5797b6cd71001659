//! `InboundPartStore` on SQLite: the one writer takes the parts one after the other.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::SqliteStore;
use crate::store::{
    decode::{self, millis},
    InboundPart, InboundPartStore, JoinedParts, PartsKey, StoreResult,
};

/// Keep `part` in the writer's transaction; the message's parts once all are in.
fn keep(
    conn: &Connection,
    part: &InboundPart,
    forget_before: DateTime<Utc>,
) -> StoreResult<Option<JoinedParts>> {
    conn.prepare_cached("DELETE FROM inbound_parts WHERE at < ?")?
        .execute(params![millis(forget_before)])?;
    let key = &part.key;
    conn.prepare_cached(
        "INSERT INTO inbound_parts (sender, reference, total, seq, data_coding, payload,
                                    first_at, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                 COALESCE((SELECT MIN(first_at) FROM inbound_parts
                           WHERE sender = ?1 AND reference = ?2 AND total = ?3), ?7), ?7)
         ON CONFLICT (sender, reference, total, seq)
         DO UPDATE SET data_coding = excluded.data_coding, payload = excluded.payload,
                       at = excluded.at",
    )?
    .execute(params![
        key.from,
        key.reference,
        key.total,
        part.seq,
        part.data_coding,
        part.payload,
        millis(part.at)
    ])?;
    let mut select = conn.prepare_cached(
        "SELECT seq, data_coding, payload, at, first_at FROM inbound_parts
         WHERE sender = ? AND reference = ? AND total = ? ORDER BY seq",
    )?;
    let mut rows = select.query(params![key.from, key.reference, key.total])?;
    let mut parts = Vec::new();
    let mut first_at = part.at;
    while let Some(row) = rows.next()? {
        first_at = decode::time(row.get(4)?)?;
        parts.push(InboundPart {
            key: key.clone(),
            seq: row.get(0)?,
            data_coding: row.get(1)?,
            payload: row.get(2)?,
            at: decode::time(row.get(3)?)?,
        });
    }
    Ok((parts.len() == usize::from(key.total)).then_some(JoinedParts { parts, first_at }))
}

#[async_trait]
impl InboundPartStore for SqliteStore {
    async fn inbound_part(
        &self,
        part: InboundPart,
        forget_before: DateTime<Utc>,
    ) -> StoreResult<Option<JoinedParts>> {
        self.writer
            .run(move |conn| keep(conn, &part, forget_before))
            .await
    }

    async fn forget_inbound_parts(&self, key: &PartsKey) -> StoreResult<()> {
        let key = key.clone();
        self.writer
            .run_statement(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM inbound_parts WHERE sender = ? AND reference = ? AND total = ?",
                )?
                .execute(params![key.from, key.reference, key.total])?;
                Ok(())
            })
            .await
    }
}

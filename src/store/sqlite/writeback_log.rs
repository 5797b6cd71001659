//! `WritebackLogStore` on SQLite: the calls dry-run connections would have made.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use crate::store::{
    decode::millis,
    writeback_log::{stored_call, stored_text, CALL_COLUMNS, WRITEBACKS_KEPT},
    NewWritebackCall, StoreResult, WritebackCall, WritebackLogStore, WritebackQuery,
};

#[async_trait]
impl WritebackLogStore for SqliteStore {
    async fn log_writebacks(
        &self,
        calls: Vec<NewWritebackCall>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut log = conn.prepare_cached(
                    "INSERT INTO writeback_calls (connection, method, path, body, message_ids, at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )?;
                for call in &calls {
                    let (body, ids) = stored_text(call);
                    log.execute(params![
                        call.connection,
                        call.method,
                        call.path,
                        body,
                        ids,
                        millis(call.at)
                    ])?;
                }
                conn.prepare_cached("DELETE FROM writeback_calls WHERE at < ?")?
                    .execute(params![millis(now - WRITEBACKS_KEPT)])?;
                Ok(())
            })
            .await
    }

    async fn writebacks(&self, query: WritebackQuery) -> StoreResult<Vec<WritebackCall>> {
        sqlx::query_as(&format!(
            "SELECT {CALL_COLUMNS} FROM writeback_calls
             WHERE (?1 IS NULL OR connection = ?1) AND (?2 IS NULL OR seq < ?2)
             ORDER BY seq DESC LIMIT ?3"
        ))
        .bind(query.connection)
        .bind(query.before)
        .bind(query.limit as i64)
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(stored_call)
        .collect()
    }
}

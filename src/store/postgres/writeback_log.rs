//! `WritebackLogStore` on PostgreSQL: the calls dry-run connections would have made.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{
    decode::millis,
    writeback_log::{stored_call, stored_text, CALL_COLUMNS, WRITEBACKS_KEPT},
    NewWritebackCall, StoreResult, WritebackCall, WritebackLogStore, WritebackQuery,
};

#[async_trait]
impl WritebackLogStore for PostgresStore {
    async fn log_writebacks(
        &self,
        calls: Vec<NewWritebackCall>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut columns: [Vec<String>; 5] = Default::default();
        let mut at = Vec::with_capacity(calls.len());
        for call in &calls {
            let (body, ids) = stored_text(call);
            let values = [&call.connection, &call.method, &call.path, &body, &ids];
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value.clone());
            }
            at.push(millis(call.at));
        }
        let [connection, method, path, body, ids] = columns;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO writeback_calls (connection, method, path, body, message_ids, at)
             SELECT connection, method, path, body, message_ids, at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])
             WITH ORDINALITY AS c(connection, method, path, body, message_ids, at, n) ORDER BY n",
        )
        .bind(connection)
        .bind(method)
        .bind(path)
        .bind(body)
        .bind(ids)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM writeback_calls WHERE at < $1")
            .bind(millis(now - WRITEBACKS_KEPT))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn writebacks(&self, query: WritebackQuery) -> StoreResult<Vec<WritebackCall>> {
        sqlx::query_as(&format!(
            "SELECT {CALL_COLUMNS} FROM writeback_calls
             WHERE ($1::text IS NULL OR connection = $1) AND ($2::int8 IS NULL OR seq < $2)
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(query.connection)
        .bind(query.before)
        .bind(query.limit as i64)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(stored_call)
        .collect()
    }
}

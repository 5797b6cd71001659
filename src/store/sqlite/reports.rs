//! `ReportStore` on SQLite: both reads walk `messages_finished`, named, since without table
//! statistics SQLite would take the status index and read every final message ever kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::{
    decode::millis,
    rows::{self, FACT_COLUMNS},
    DeliveryFact, FactCursor, ReportStore, StoreResult, UsageBucket, USAGE_BUCKET_MINUTES,
};

/// The condition of `messages_finished` (migration 0016), written exactly as there: SQLite uses a
/// partial index only for a query naming its condition.
const FINISHED: &str = "(status = 'delivered' OR status = 'undelivered' OR status = 'failed'
       OR status = 'canceled' OR status = 'rejected')";

#[async_trait]
impl ReportStore for SqliteStore {
    async fn usage(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<UsageBucket>> {
        let sql = format!(
            "SELECT (updated_at / ?1) * ?1 AS bucket, status, count(*), CAST(sum(segments) AS BIGINT)
             FROM messages INDEXED BY messages_finished
             WHERE {FINISHED} AND updated_at >= ?2 AND updated_at < ?3
             GROUP BY bucket, status ORDER BY bucket, status"
        );
        sqlx::query(&sql)
            .bind(USAGE_BUCKET_MINUTES * 60_000)
            .bind(millis(from))
            .bind(millis(to))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(rows::usage_bucket)
            .collect()
    }

    async fn delivery_facts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<FactCursor>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryFact>> {
        let (after_at, after_seq) = after.map_or((millis(from), 0), |(at, seq)| (millis(at), seq));
        let sql = format!(
            "SELECT {FACT_COLUMNS} FROM messages INDEXED BY messages_finished
             WHERE {FINISHED} AND updated_at >= ?1 AND updated_at < ?2
               AND (updated_at, seq) > (?3, ?4)
             ORDER BY updated_at, seq LIMIT ?5"
        );
        sqlx::query(&sql)
            .bind(millis(from))
            .bind(millis(to))
            .bind(after_at)
            .bind(after_seq)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(rows::delivery_fact)
            .collect()
    }
}

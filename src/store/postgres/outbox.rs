//! `OutboxStore` on PostgreSQL, and adding an entry inside the caller's transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::PostgresStore;
use crate::{
    domain::{ids::MessageId, source::Source},
    store::{
        decode::{self, millis},
        rows::{self, OUTBOX_COLUMNS},
        NewOutboxEntry, OutboxEntry, OutboxStore, StoreResult, OWN_WRITES_KEPT,
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
    async fn outbox_pending(&self, connection: &str, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE done_at IS NULL AND source = $1 ORDER BY id LIMIT $2",
        ))
        .bind(connection)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::outbox_entry)
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

    async fn outbox_written(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "WITH done AS (
                 UPDATE outbox SET done_at = $1 WHERE id = ANY($2) RETURNING message_id
             )
             UPDATE messages SET written_back_at = $1 WHERE id IN (SELECT message_id FROM done)",
        )
        .bind(millis(now))
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn writeback_lease(
        &self,
        connection: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO writeback_leases (connection, owner, until) VALUES ($1, $2, $3)
             ON CONFLICT (connection) DO UPDATE SET owner = excluded.owner, until = excluded.until
             WHERE writeback_leases.owner = excluded.owner OR writeback_leases.until < $4
             RETURNING owner",
        )
        .bind(connection)
        .bind(owner)
        .bind(millis(until))
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    async fn unwritten_message_for(&self, connection: &str, record: &str) -> StoreResult<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM messages WHERE source = $1 AND source_record = $2
             AND written_back_at IS NULL LIMIT 1",
        )
        .bind(connection)
        .bind(record)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    async fn poll_id_mark(&self, connection: &str) -> StoreResult<Option<u64>> {
        let id: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_id FROM poll_marks WHERE connection = $1")
                .bind(connection)
                .fetch_optional(&self.pool)
                .await?;
        Ok(id.flatten().map(|id| id as u64))
    }

    async fn raise_poll_id_mark(
        &self,
        connection: &str,
        id: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO poll_marks (connection, started_at, last_id) VALUES ($1, $2, $3)
             ON CONFLICT (connection) DO UPDATE
             SET last_id = GREATEST(COALESCE(poll_marks.last_id, 0), EXCLUDED.last_id)",
        )
        .bind(connection)
        .bind(millis(now))
        .bind(id as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn poll_start_mark(
        &self,
        connection: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<DateTime<Utc>> {
        sqlx::query(
            "INSERT INTO poll_marks (connection, started_at) VALUES ($1, $2)
             ON CONFLICT (connection) DO NOTHING",
        )
        .bind(connection)
        .bind(millis(now))
        .execute(&self.pool)
        .await?;
        let at: i64 = sqlx::query_scalar("SELECT started_at FROM poll_marks WHERE connection = $1")
            .bind(connection)
            .fetch_one(&self.pool)
            .await?;
        decode::time(at)
    }

    async fn writeback_release(&self, connection: &str, owner: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM writeback_leases WHERE connection = $1 AND owner = $2")
            .bind(connection)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remember_own_writes(
        &self,
        connection: &str,
        writes: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (records, revisions): (Vec<String>, Vec<i64>) = writes
            .into_iter()
            .map(|(record, revision)| (record, revision as i64))
            .unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO crm_own_writes (connection, record, revision, at)
             SELECT $1, r, v, $4 FROM UNNEST($2::text[], $3::int8[]) AS w(r, v)
             ON CONFLICT DO NOTHING",
        )
        .bind(connection)
        .bind(records)
        .bind(revisions)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM crm_own_writes WHERE at < $1")
            .bind(millis(at - OWN_WRITES_KEPT))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn forget_own_writes(
        &self,
        connection: &str,
        writes: Vec<(String, u64)>,
    ) -> StoreResult<()> {
        let (records, revisions): (Vec<String>, Vec<i64>) = writes
            .into_iter()
            .map(|(record, revision)| (record, revision as i64))
            .unzip();
        sqlx::query(
            "DELETE FROM crm_own_writes w USING UNNEST($2::text[], $3::int8[]) AS f(r, v)
             WHERE w.connection = $1 AND w.record = f.r AND w.revision = f.v",
        )
        .bind(connection)
        .bind(records)
        .bind(revisions)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remember_revisions(
        &self,
        connection: &str,
        revisions: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (records, numbers): (Vec<String>, Vec<i64>) = revisions
            .into_iter()
            .map(|(record, revision)| (record, revision as i64))
            .unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO crm_record_revisions (connection, record, revision, at)
             SELECT $1, r.record, max(r.revision), $4
             FROM unnest($2::text[], $3::bigint[]) AS r(record, revision)
             GROUP BY r.record
             ON CONFLICT (connection, record) DO UPDATE
             SET revision = GREATEST(crm_record_revisions.revision, excluded.revision),
                 at = excluded.at",
        )
        .bind(connection)
        .bind(records)
        .bind(numbers)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM crm_record_revisions WHERE at < $1")
            .bind(millis(at - OWN_WRITES_KEPT))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn known_revisions(
        &self,
        connection: &str,
        records: Vec<String>,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT record, revision FROM crm_record_revisions
             WHERE connection = $1 AND record = ANY($2)",
        )
        .bind(connection)
        .bind(records)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(record, revision)| (record, revision as u64))
            .collect())
    }

    async fn is_own_write(
        &self,
        connection: &str,
        record: &str,
        revision: u64,
    ) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM crm_own_writes
                            WHERE connection = $1 AND record = $2 AND revision = $3)",
        )
        .bind(connection)
        .bind(record)
        .bind(revision as i64)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn writeback_failed(&self, failures: Vec<(MessageId, String)>) -> StoreResult<()> {
        let (ids, details): (Vec<&str>, Vec<&str>) = failures
            .iter()
            .map(|(id, detail)| (id.as_str(), detail.as_str()))
            .unzip();
        sqlx::query(
            "UPDATE messages SET writeback_error = f.detail
             FROM UNNEST($1::text[], $2::text[]) AS f(id, detail) WHERE messages.id = f.id",
        )
        .bind(ids)
        .bind(details)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

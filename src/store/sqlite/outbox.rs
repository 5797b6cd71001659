//! `OutboxStore` on SQLite, and adding an entry inside the writer's transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::{
    domain::{ids::MessageId, source::Source},
    store::{
        decode::{self, millis},
        rows::{self, OUTBOX_COLUMNS},
        NewOutboxEntry, OutboxEntry, OutboxStore, StoreResult, OWN_WRITES_KEPT,
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
    async fn outbox_pending(&self, connection: &str, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE done_at IS NULL AND source = ? ORDER BY id LIMIT ?",
        ))
        .bind(connection)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::outbox_entry)
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

    async fn outbox_written(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut done = conn.prepare_cached("UPDATE outbox SET done_at = ? WHERE id = ?")?;
                let mut stamp = conn.prepare_cached(
                    "UPDATE messages SET written_back_at = ?
                     WHERE id = (SELECT message_id FROM outbox WHERE id = ?)",
                )?;
                for id in ids {
                    done.execute(params![millis(now), id])?;
                    stamp.execute(params![millis(now), id])?;
                }
                Ok(())
            })
            .await
    }

    async fn writeback_lease(
        &self,
        connection: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (connection, owner) = (connection.to_string(), owner.to_string());
        self.writer
            .run_statement(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO writeback_leases (connection, owner, until) VALUES (?1, ?2, ?3)
                         ON CONFLICT (connection) DO UPDATE
                         SET owner = excluded.owner, until = excluded.until
                         WHERE writeback_leases.owner = excluded.owner
                            OR writeback_leases.until < ?4
                         RETURNING owner",
                    )?
                    .query_row(
                        params![connection, owner, millis(until), millis(now)],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await
    }

    async fn unwritten_message_for(&self, connection: &str, record: &str) -> StoreResult<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM messages WHERE source = ? AND source_record = ?
             AND written_back_at IS NULL LIMIT 1",
        )
        .bind(connection)
        .bind(record)
        .fetch_optional(&self.read)
        .await?
        .is_some())
    }

    async fn poll_id_mark(&self, connection: &str) -> StoreResult<Option<u64>> {
        let id: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_id FROM poll_marks WHERE connection = ?")
                .bind(connection)
                .fetch_optional(&self.read)
                .await?;
        Ok(id.flatten().map(|id| id as u64))
    }

    async fn raise_poll_id_mark(
        &self,
        connection: &str,
        id: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let connection = connection.to_string();
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT INTO poll_marks (connection, started_at, last_id) VALUES (?, ?, ?)
                     ON CONFLICT (connection) DO UPDATE
                     SET last_id = max(coalesce(last_id, 0), excluded.last_id)",
                    params![connection, millis(now), id as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn poll_start_mark(
        &self,
        connection: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<DateTime<Utc>> {
        let connection = connection.to_string();
        let at: i64 = self
            .writer
            .run(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO poll_marks (connection, started_at) VALUES (?, ?)",
                    params![connection, millis(now)],
                )?;
                Ok(conn.query_row(
                    "SELECT started_at FROM poll_marks WHERE connection = ?",
                    params![connection],
                    |r| r.get(0),
                )?)
            })
            .await?;
        decode::time(at)
    }

    async fn writeback_release(&self, connection: &str, owner: &str) -> StoreResult<()> {
        let (connection, owner) = (connection.to_string(), owner.to_string());
        self.writer
            .run_statement(move |conn| {
                conn.execute(
                    "DELETE FROM writeback_leases WHERE connection = ? AND owner = ?",
                    params![connection, owner],
                )?;
                Ok(())
            })
            .await
    }

    async fn remember_own_writes(
        &self,
        connection: &str,
        writes: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.remember_for_a_week(
            "INSERT OR IGNORE INTO crm_own_writes (connection, record, revision, at)
             VALUES (?1, ?2, ?3, ?4)",
            "DELETE FROM crm_own_writes WHERE at < ?",
            connection,
            writes,
            at,
        )
        .await
    }

    async fn forget_own_writes(
        &self,
        connection: &str,
        writes: Vec<(String, u64)>,
    ) -> StoreResult<()> {
        let connection = connection.to_string();
        self.writer
            .run(move |conn| {
                let mut forget = conn.prepare_cached(
                    "DELETE FROM crm_own_writes WHERE connection = ? AND record = ? AND revision = ?",
                )?;
                for (record, revision) in writes {
                    forget.execute(params![connection, record, revision as i64])?;
                }
                Ok(())
            })
            .await
    }

    async fn remember_revisions(
        &self,
        connection: &str,
        revisions: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.remember_for_a_week(
            "INSERT INTO crm_record_revisions (connection, record, revision, at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connection, record) DO UPDATE
             SET revision = MAX(revision, excluded.revision), at = excluded.at",
            "DELETE FROM crm_record_revisions WHERE at < ?",
            connection,
            revisions,
            at,
        )
        .await
    }

    async fn known_revisions(
        &self,
        connection: &str,
        records: Vec<String>,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let mut known = BTreeMap::new();
        for chunk in records.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT record, revision FROM crm_record_revisions
                 WHERE connection = ? AND record IN ({marks})"
            );
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(connection);
            for record in chunk {
                query = query.bind(record);
            }
            for (record, revision) in query.fetch_all(&self.read).await? {
                known.insert(record, revision as u64);
            }
        }
        Ok(known)
    }

    async fn is_own_write(
        &self,
        connection: &str,
        record: &str,
        revision: u64,
    ) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM crm_own_writes
                            WHERE connection = ? AND record = ? AND revision = ?)",
        )
        .bind(connection)
        .bind(record)
        .bind(revision as i64)
        .fetch_one(&self.read)
        .await?)
    }

    async fn writeback_failed(&self, failures: Vec<(MessageId, String)>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut failed =
                    conn.prepare_cached("UPDATE messages SET writeback_error = ? WHERE id = ?")?;
                for (id, detail) in failures {
                    failed.execute(params![detail, id.as_str()])?;
                }
                Ok(())
            })
            .await
    }
}

impl SqliteStore {
    /// Insert `(connection, record, revision, at)` rows with `insert`, and delete with `forget`
    /// those older than `OWN_WRITES_KEPT`, in one commit.
    async fn remember_for_a_week(
        &self,
        insert: &'static str,
        forget: &'static str,
        connection: &str,
        revisions: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let connection = connection.to_string();
        self.writer
            .run(move |conn| {
                let mut remember = conn.prepare_cached(insert)?;
                for (record, revision) in revisions {
                    remember.execute(params![connection, record, revision as i64, millis(at)])?;
                }
                conn.prepare_cached(forget)?
                    .execute(params![millis(at - OWN_WRITES_KEPT)])?;
                Ok(())
            })
            .await
    }
}

//! `SandboxStore` on SQLite: the simulated handsets' inboxes and the receipts still to report.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;
use sqlx::Row;

use super::SqliteStore;
use crate::{
    domain::{ids::MessageId, phone::PhoneNumber, state::JobState},
    store::{
        decode::{self, millis},
        rows::{self, INBOX_COLUMNS},
        InboxEntry, Receipt, ReceiptStatus, SandboxSend, SandboxStore, StoreError, StoreResult,
    },
};

#[async_trait]
impl SandboxStore for SqliteStore {
    async fn sandbox_send(&self, send: SandboxSend) -> StoreResult<String> {
        self.writer
            .run_statement(move |conn| {
                // A repeated send (after a crash) keeps and returns the first one's id.
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO sandbox_sends
                         (message_id, provider_message_id, sender, to_number, body, outcome, detail, at, report_due)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                         ON CONFLICT (message_id) DO UPDATE SET sends = sends + 1
                         RETURNING provider_message_id",
                    )?
                    .query_row(
                        params![
                            send.message_id.as_str(),
                            send.provider_message_id,
                            send.from,
                            send.to.e164(),
                            send.body,
                            send.outcome.as_str(),
                            send.detail,
                            millis(send.at),
                            millis(send.report_due),
                        ],
                        |r| r.get(0),
                    )?)
            })
            .await
    }

    async fn sandbox_due(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Receipt>> {
        sqlx::query(
            "SELECT message_id, provider_message_id, outcome, detail FROM sandbox_sends
             WHERE reported = 0 AND report_due <= ? ORDER BY report_due LIMIT ?",
        )
        .bind(millis(now))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| {
            let status = match decode::state(r.get(2))? {
                JobState::Delivered => ReceiptStatus::Delivered,
                JobState::Undelivered => ReceiptStatus::Undelivered,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "a sandbox receipt says {other}, not delivered or undelivered"
                    )))
                }
            };
            Ok(Receipt {
                message_id: Some(decode::id(r.get(0))?),
                provider_message_id: r.get(1),
                status,
                detail: r.get(3),
            })
        })
        .collect()
    }

    async fn sandbox_mark_reported(&self, ids: Vec<MessageId>) -> StoreResult<()> {
        self.writer
            .run(move |conn| {
                let mut mark = conn
                    .prepare_cached("UPDATE sandbox_sends SET reported = 1 WHERE message_id = ?")?;
                for id in ids {
                    mark.execute(params![id.as_str()])?;
                }
                Ok(())
            })
            .await
    }

    async fn sandbox_next_report(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT MIN(report_due) FROM sandbox_sends WHERE reported = 0")
                .fetch_one(&self.read)
                .await?;
        due.map(decode::time).transpose()
    }

    async fn sandbox_sent(&self, message_id: &MessageId) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT provider_message_id FROM sandbox_sends WHERE message_id = ?",
            )
            .bind(message_id.as_str())
            .fetch_optional(&self.read)
            .await?,
        )
    }

    async fn sandbox_inbox(&self, to: &PhoneNumber, limit: u32) -> StoreResult<Vec<InboxEntry>> {
        sqlx::query(&format!(
            "SELECT {INBOX_COLUMNS} FROM sandbox_sends
             WHERE to_number = ? AND outcome = ? ORDER BY at DESC, rowid DESC LIMIT ?"
        ))
        .bind(to.e164())
        .bind(JobState::Delivered.as_str())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::inbox_entry)
        .collect()
    }
}

//! `SandboxStore` on PostgreSQL: the simulated handsets' inboxes and the receipts still to report.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use crate::{
    domain::{ids::MessageId, phone::PhoneNumber, state::JobState},
    store::{
        decode::{self, millis},
        rows::{self, INBOX_COLUMNS},
        InboxEntry, Receipt, ReceiptStatus, SandboxSend, SandboxStore, StoreError, StoreResult,
    },
};

#[async_trait]
impl SandboxStore for PostgresStore {
    async fn sandbox_send(&self, send: SandboxSend) -> StoreResult<String> {
        // A repeated send (after a crash) keeps and returns the first one's id.
        Ok(sqlx::query_scalar(
            "INSERT INTO sandbox_sends
             (message_id, provider_message_id, sender, to_number, body, outcome, detail, at, report_due)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (message_id) DO UPDATE SET sends = sandbox_sends.sends + 1
             RETURNING provider_message_id",
        )
        .bind(send.message_id.as_str())
        .bind(send.provider_message_id)
        .bind(send.from)
        .bind(send.to.e164())
        .bind(send.body)
        .bind(send.outcome.as_str())
        .bind(send.detail)
        .bind(millis(send.at))
        .bind(millis(send.report_due))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn sandbox_due(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Receipt>> {
        sqlx::query(
            "SELECT message_id, provider_message_id, outcome, detail FROM sandbox_sends
             WHERE NOT reported AND report_due <= $1 ORDER BY report_due LIMIT $2",
        )
        .bind(millis(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let status = match decode::state(r.try_get(2)?)? {
                JobState::Delivered => ReceiptStatus::Delivered,
                JobState::Undelivered => ReceiptStatus::Undelivered,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "a sandbox receipt says {other}, not delivered or undelivered"
                    )))
                }
            };
            Ok(Receipt {
                message_id: Some(decode::id(r.try_get(0)?)?),
                provider_message_id: r.try_get(1)?,
                status,
                detail: r.try_get(3)?,
            })
        })
        .collect()
    }

    async fn sandbox_mark_reported(&self, ids: Vec<MessageId>) -> StoreResult<()> {
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_string()).collect();
        sqlx::query("UPDATE sandbox_sends SET reported = TRUE WHERE message_id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sandbox_next_report(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT MIN(report_due) FROM sandbox_sends WHERE NOT reported")
                .fetch_one(&self.pool)
                .await?;
        due.map(decode::time).transpose()
    }

    async fn sandbox_sent(&self, message_id: &MessageId) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT provider_message_id FROM sandbox_sends WHERE message_id = $1",
        )
        .bind(message_id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn sandbox_inbox(&self, to: &PhoneNumber, limit: u32) -> StoreResult<Vec<InboxEntry>> {
        sqlx::query(&format!(
            "SELECT {INBOX_COLUMNS} FROM sandbox_sends
             WHERE to_number = $1 AND outcome = $2 ORDER BY at DESC, seq DESC LIMIT $3"
        ))
        .bind(to.e164())
        .bind(JobState::Delivered.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::inbox_entry)
        .collect()
    }
}

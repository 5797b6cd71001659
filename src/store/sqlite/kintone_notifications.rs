//! `KintoneNotificationStore` on SQLite: the answers kintone notifications were given.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use crate::store::{
    decode::millis,
    kintone_notifications::{stored_notification, NOTIFICATION_COLUMNS},
    KintoneNotification, KintoneNotificationStore, StoreResult,
};

#[async_trait]
impl KintoneNotificationStore for SqliteStore {
    async fn record_notification(&self, notification: KintoneNotification) -> StoreResult<()> {
        self.writer
            .run_statement(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO kintone_notifications
                         (connection, notification_id, received_at, event, record_id, answer)
                     VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (connection, notification_id) DO NOTHING",
                )?
                .execute(params![
                    notification.connection,
                    notification.notification_id,
                    millis(notification.received_at),
                    notification.event,
                    notification.record_id,
                    notification.answer.to_string(),
                ])?;
                Ok(())
            })
            .await
    }

    async fn notification(
        &self,
        connection: &str,
        id: &str,
    ) -> StoreResult<Option<KintoneNotification>> {
        sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM kintone_notifications
             WHERE connection = ? AND notification_id = ?"
        ))
        .bind(connection)
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        .map(stored_notification)
        .transpose()
    }

    async fn purge_notifications(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.writer
            .run_statement(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM kintone_notifications WHERE received_at < ?",
                    params![millis(before)],
                )? as u64)
            })
            .await
    }
}

//! `KintoneNotificationStore` on PostgreSQL: the answers kintone notifications were given.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{
    decode::millis,
    kintone_notifications::{stored_notification, NOTIFICATION_COLUMNS},
    KintoneNotification, KintoneNotificationStore, StoreResult,
};

#[async_trait]
impl KintoneNotificationStore for PostgresStore {
    async fn record_notification(&self, notification: KintoneNotification) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO kintone_notifications
                 (connection, notification_id, received_at, event, record_id, answer)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (connection, notification_id) DO NOTHING",
        )
        .bind(notification.connection)
        .bind(notification.notification_id)
        .bind(millis(notification.received_at))
        .bind(notification.event)
        .bind(notification.record_id)
        .bind(notification.answer.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn notification(
        &self,
        connection: &str,
        id: &str,
    ) -> StoreResult<Option<KintoneNotification>> {
        sqlx::query_as(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM kintone_notifications
             WHERE connection = $1 AND notification_id = $2"
        ))
        .bind(connection)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(stored_notification)
        .transpose()
    }

    async fn purge_notifications(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM kintone_notifications WHERE received_at < $1")
                .bind(millis(before))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

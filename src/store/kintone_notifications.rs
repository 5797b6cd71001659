//! What each kintone notification (an app webhook, by its `id`) was answered: kintone's webhook
//! log keeps only success or failure and the id, so an admin asks tsunagi what it did with one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// How long answered notifications are kept: an admin looks into a webhook within days, and an
/// hourly purge forgets older ones so the table stays bounded by a month of webhooks.
pub const NOTIFICATIONS_KEPT: chrono::Duration = chrono::Duration::days(30);

/// A kintone notification and the answer it was given.
#[derive(Clone, Debug, PartialEq)]
pub struct KintoneNotification {
    /// The connection's source name, `kintone:NAME`.
    pub connection: String,
    /// The webhook body's `id`, unique per notification.
    pub notification_id: String,
    /// When it was answered.
    pub received_at: DateTime<Utc>,
    /// The webhook's `type`, e.g. `ADD_RECORD`.
    pub event: String,
    /// The record it is about (`$id`, or `recordId`), when it names one.
    pub record_id: Option<String>,
    /// The answer, as the webhook got it.
    pub answer: serde_json::Value,
}

/// The answers given to kintone notifications. Every method commits before it returns.
#[async_trait]
pub trait KintoneNotificationStore: Send + Sync + 'static {
    /// Keep `notification`; one of the same connection and id kept before stays as it was, so
    /// the answer shown is the first one given.
    async fn record_notification(&self, notification: KintoneNotification) -> StoreResult<()>;
    /// The notification `id` of `connection` (its source name), if it is kept.
    async fn notification(
        &self,
        connection: &str,
        id: &str,
    ) -> StoreResult<Option<KintoneNotification>>;
    /// Forget notifications received before `before`; how many.
    async fn purge_notifications(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// The columns a notification is read from, in the order [`stored_notification`] takes them.
pub(super) const NOTIFICATION_COLUMNS: &str =
    "connection, notification_id, received_at, event, record_id, answer";

/// A notification read back from its columns ([`NOTIFICATION_COLUMNS`]).
pub(super) fn stored_notification(
    (connection, notification_id, received_at, event, record_id, answer): (
        String,
        String,
        i64,
        String,
        Option<String>,
        String,
    ),
) -> StoreResult<KintoneNotification> {
    Ok(KintoneNotification {
        connection,
        notification_id,
        received_at: super::decode::time(received_at)?,
        event,
        record_id,
        answer: super::decode::json(&answer)?,
    })
}

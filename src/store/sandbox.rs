//! The sandbox provider's simulated handsets and the receipts it still has to report.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{queue::Receipt, StoreResult};
use crate::domain::{ids::MessageId, phone::PhoneNumber, state::JobState};

/// A send the sandbox provider accepted.
#[derive(Clone, Debug)]
pub struct SandboxSend {
    /// Our message id (the send is idempotent on it).
    pub message_id: MessageId,
    /// The id the sandbox gives it.
    pub provider_message_id: String,
    /// Sender id.
    pub from: String,
    /// Handset.
    pub to: PhoneNumber,
    /// Body.
    pub body: String,
    /// The receipt to report: delivered or undelivered.
    pub outcome: JobState,
    /// Why, for an undelivered outcome.
    pub detail: Option<String>,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// When to report the receipt.
    pub report_due: DateTime<Utc>,
}

/// What a sandbox handset received.
#[derive(Clone, Debug)]
pub struct InboxEntry {
    /// Our message id.
    pub message_id: MessageId,
    /// Sender id.
    pub from: String,
    /// Handset.
    pub to: PhoneNumber,
    /// Body.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// How many times the provider was asked to send it: more than one is a duplicate send.
    pub sends: u32,
}

/// The sandbox carrier's state. Every method commits before it returns.
#[async_trait]
pub trait SandboxStore: Send + Sync + 'static {
    /// Record a sandbox send; a second call for the same message returns the first one's id
    /// and counts the repeat.
    async fn sandbox_send(&self, send: SandboxSend) -> StoreResult<String>;
    /// The sandbox's id for a message it was asked to send, if it was.
    async fn sandbox_sent(&self, message_id: &MessageId) -> StoreResult<Option<String>>;
    /// The receipts due by `now` and not yet reported, oldest first, at most `limit`.
    async fn sandbox_due(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Receipt>>;
    /// Mark these messages' receipts reported (after the receipts were applied).
    async fn sandbox_mark_reported(&self, ids: Vec<MessageId>) -> StoreResult<()>;
    /// When the next receipt falls due.
    async fn sandbox_next_report(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// What a handset received, newest first.
    async fn sandbox_inbox(&self, to: &PhoneNumber, limit: u32) -> StoreResult<Vec<InboxEntry>>;
}

//! Receipts that need the store's memory: which provider ids the parts of a long message got,
//! and receipts that came before their message's id was known (a receipt can beat the commit
//! of `sent`), kept until it is.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{queue::ReceiptStatus, StoreResult};
use crate::domain::ids::MessageId;

/// A delivery receipt for one part of a message sent in several (SMPP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartReceipt {
    /// The provider's id for the part.
    pub part_id: String,
    /// How the part ended.
    pub status: ReceiptStatus,
    /// The provider's words, for an undelivered or failed part.
    pub detail: Option<String>,
}

/// One part's outcome, once its receipt came.
pub type PartState = Option<(ReceiptStatus, Option<String>)>;

/// What recording a part receipt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartOutcome {
    /// Recorded: the message's parts as they stand now, in order.
    Recorded {
        /// The message the part belongs to.
        message_id: MessageId,
        /// The provider's id for its first part: the message's provider id.
        first_part: String,
        /// Every part's outcome so far.
        parts: Vec<PartState>,
    },
    /// No message has a part with that id (yet).
    Unknown,
}

/// A receipt whose id matched no message when it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmatched {
    /// For a whole message, by the provider's id.
    Whole {
        /// The provider's id.
        provider_message_id: String,
        /// How it ended.
        status: ReceiptStatus,
        /// The provider's words.
        detail: Option<String>,
    },
    /// For one part.
    Part(PartReceipt),
}

/// An unmatched receipt as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptReceipt {
    /// Its position in the store.
    pub id: i64,
    /// The receipt.
    pub receipt: Unmatched,
    /// When it came.
    pub received_at: DateTime<Utc>,
    /// How often it was tried again without a match.
    pub tries: u32,
}

/// Parts and kept receipts. Every method commits before it returns.
#[async_trait]
pub trait ReceiptStore: Send + Sync + 'static {
    /// Record the provider ids of every part of a message, in order; a message sent in more
    /// parts than its `segments` said (a coding the route needed) counts, and bills, them all.
    async fn parts_sent(&self, message_id: &MessageId, part_ids: Vec<String>) -> StoreResult<()>;
    /// Record part receipts (the newest part with each id); each answers with its message's parts.
    async fn part_receipts(&self, receipts: Vec<PartReceipt>) -> StoreResult<Vec<PartOutcome>>;
    /// Keep receipts that matched nothing, to try again from `at`.
    async fn keep_receipts(&self, receipts: Vec<Unmatched>, at: DateTime<Utc>) -> StoreResult<()>;
    /// Kept receipts due for another try by `now`, oldest first, at most `limit`.
    async fn kept_receipts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<KeptReceipt>>;
    /// Forget kept receipts (applied, or given up).
    async fn forget_receipts(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// Try these kept receipts again at the times given, counting the try.
    async fn retry_receipts(&self, retries: Vec<(i64, DateTime<Utc>)>) -> StoreResult<()>;
    /// How many receipts are kept, for metrics.
    async fn kept_receipt_count(&self) -> StoreResult<i64>;
}

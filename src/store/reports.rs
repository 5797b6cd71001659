//! The facts usage and delivery reports are made of, read from the stored messages and events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{source::Source, state::JobState};

/// How finely usage is counted in time: 15 minutes, so a day in any time zone (offsets are whole
/// quarters of an hour) is a whole number of buckets.
pub const USAGE_BUCKET_MINUTES: i64 = 15;

/// Messages that became final in one `USAGE_BUCKET_MINUTES` span, in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageBucket {
    /// Where the span starts.
    pub start: DateTime<Utc>,
    /// Their final state.
    pub status: JobState,
    /// How many.
    pub messages: i64,
    /// Their parts over the air.
    pub segments: i64,
}

/// A message that became final, as a delivery report sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryFact {
    /// Its position, to page on.
    pub seq: i64,
    /// When it became final.
    pub finished_at: DateTime<Utc>,
    /// When it was due to be sent: its `send_at`, or when it was accepted.
    pub due_at: DateTime<Utc>,
    /// Its sender id.
    pub sender: String,
    /// Where it came from.
    pub source: Source,
    /// Its final state.
    pub status: JobState,
    /// The route that sent it; none for a message never sent.
    pub route: Option<String>,
    /// Whether a short link in it was clicked.
    pub clicked: bool,
    /// Whether the handset replied to it.
    pub replied: bool,
    /// Whether a reply to it opted the number out (and it is still out).
    pub opted_out: bool,
}

/// Where a page of delivery facts starts: after this finish time and `seq`.
pub type FactCursor = (DateTime<Utc>, i64);

/// Reads for usage and reports.
#[async_trait]
pub trait ReportStore: Send + Sync + 'static {
    /// Messages that became final in `[from, to)`, counted per bucket and state.
    async fn usage(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<UsageBucket>>;
    /// Messages that became final in `[from, to)`, by finish time then `seq`, after `after`, at
    /// most `limit`.
    async fn delivery_facts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<FactCursor>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryFact>>;
}

//! Where a connection's updates go: one implementation per CRM, behind one trait, so the worker
//! that drains the outbox knows no CRM.

use std::time::Duration;

use async_trait::async_trait;

use super::plan::RecordUpdate;

/// What became of one record's update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// On the record.
    Written,
    /// Not now (the record was locked); tried again in a later round.
    Retry,
    /// Refused for good (a deleted record, a validation rule): not tried again, the reason is
    /// shown on the messages.
    Failed(String),
}

/// Why a whole batch was not written; nothing of it is acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// A passing trouble (a network error, 503, 429, a concurrency limit): try again after a
    /// backoff, or after `after` when the CRM says.
    #[error("write-back failed for now: {reason}")]
    Retry {
        /// What went wrong.
        reason: String,
        /// The CRM's own wait, if it named one.
        after: Option<Duration>,
    },
    /// Nothing will succeed for a long while (a daily API allowance is spent, credentials are
    /// refused): hold the queue for `after` and alert.
    #[error("write-back paused: {reason}")]
    Pause {
        /// What the admin must know.
        reason: String,
        /// How long to hold the queue before trying again.
        after: Duration,
    },
}

/// A CRM connection's write-back.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The most records one call takes.
    fn max_batch(&self) -> usize;
    /// API requests one call costs against the CRM's allowance.
    fn cost(&self) -> u32 {
        1
    }
    /// Write `updates` (at most `max_batch`); one outcome per update, in order.
    async fn write(&self, updates: &[RecordUpdate]) -> Result<Vec<Outcome>, SinkError>;
}

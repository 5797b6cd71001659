//! Write-back: drain a CRM connection's outbox into its records, batched and coalesced.
//!
//! Each round reads the connection's pending outbox entries, folds them into one update per
//! record (`plan`), and hands them to the connection's [`Sink`] in batches of its size. Entries
//! are acknowledged once their update is written or refused for good (the refusal is shown on
//! the messages); a record the CRM could not take now stays pending for a later round, and a
//! batch that failed as a whole is retried after a backoff (`backon`), or after a long pause
//! when the CRM says nothing will succeed for a while. One worker at a time holds a connection's
//! lease in the store, so with several instances each record's changes still arrive in order.

pub mod connections;
pub mod dry_run;
pub mod kintone;
pub mod plan;
pub mod salesforce;
pub mod sink;

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

pub use self::{
    plan::{plan, Plan, RecordUpdate, Reply, StatusChange},
    sink::{Outcome, Sink, SinkError},
};
use crate::{
    clock::Clock,
    store::{Store, StoreError},
};

/// How often and how patiently a worker writes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The pause between rounds while the outbox is drained: changes gathered meanwhile share
    /// one round, and so one call per batch.
    pub interval: Duration,
    /// How long a state that is not final waits for its successor before it is written.
    pub settle: Duration,
    /// How long a worker's hold on its connection lasts without renewal.
    pub lease: Duration,
    /// Entries read per round at most.
    pub fetch: u32,
    /// The longest the queue is held when the CRM asks for a pause.
    pub max_pause: Duration,
    /// The longest a change waits for others to fill a batch before a part batch is sent.
    pub fill_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            settle: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            fetch: 10_000,
            max_pause: Duration::from_secs(15 * 60),
            fill_wait: Duration::from_secs(30),
        }
    }
}

/// How a round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// Everything ready was handled.
    Drained,
    /// A full read: more entries are waiting.
    More,
    /// Another worker holds the connection.
    NotOwner,
}

/// Why a round stopped early; what it wrote before stays written.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The CRM did not take a batch.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The store could not be read or written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Writes one connection's outbox back to its CRM.
pub struct Worker {
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    connection: String,
    owner: String,
    timing: Timing,
    clock: Arc<dyn Clock>,
}

impl Worker {
    /// A worker for `connection` (a source name such as `salesforce:prod`) writing through `sink`.
    pub fn new(
        store: Arc<dyn Store>,
        sink: Arc<dyn Sink>,
        connection: impl Into<String>,
        timing: Timing,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            sink,
            connection: connection.into(),
            owner: format!("writeback-{}", ulid::Ulid::new()),
            timing,
            clock,
        }
    }

    /// Run rounds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let backoff = || {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(300))
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut delays = backoff();
        loop {
            let wait = match self.round().await {
                Ok(Round::More) => {
                    delays = backoff();
                    Duration::ZERO
                }
                Ok(Round::Drained | Round::NotOwner) => {
                    delays = backoff();
                    self.timing.interval
                }
                Err(RoundError::Sink(SinkError::Pause { reason, after })) => {
                    let after = after.min(self.timing.max_pause);
                    tracing::error!(connection = %self.connection, %reason, pause_s = after.as_secs(), "write-back paused");
                    metrics::counter!("tsunagi_writeback_pauses_total", "connection" => self.connection.clone()).increment(1);
                    after
                }
                Err(e) => {
                    let after = match &e {
                        RoundError::Sink(SinkError::Retry { after, .. }) => *after,
                        _ => None,
                    };
                    let wait = delays
                        .next()
                        .unwrap_or(Duration::from_secs(300))
                        .max(after.unwrap_or_default());
                    tracing::warn!(connection = %self.connection, error = %e, retry_in_ms = wait.as_millis() as u64, "write-back failed; retrying");
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: take the lease, plan, write, acknowledge.
    pub async fn round(&self) -> Result<Round, RoundError> {
        let now = self.clock.now();
        let until = now + chrono::Duration::from_std(self.timing.lease).unwrap_or_default();
        if !self
            .store
            .writeback_lease(&self.connection, &self.owner, until, now)
            .await?
        {
            return Ok(Round::NotOwner);
        }
        let entries = self
            .store
            .outbox_pending(&self.connection, self.timing.fetch)
            .await?;
        let full = entries.len() as u32 >= self.timing.fetch;
        metrics::gauge!("tsunagi_writeback_pending", "connection" => self.connection.clone())
            .set(entries.len() as f64);
        // A full read holds nothing back: the oldest entries would fill every later read and
        // hide the changes behind them.
        let settle = if full {
            Duration::ZERO
        } else {
            self.timing.settle
        };
        let Plan { updates, skipped } = plan(entries, now, settle);
        if !skipped.is_empty() {
            tracing::warn!(connection = %self.connection, entries = skipped.len(), "unreadable outbox entries skipped");
            self.store.outbox_done(skipped, now).await?;
        }
        let size = self.sink.max_batch().max(1);
        let fill_by = now - chrono::Duration::from_std(self.timing.fill_wait).unwrap_or_default();
        for batch in updates.chunks(size) {
            // A part batch waits for more changes to fill it, unless a change in it has waited
            // `fill_wait` already: calls are the scarce resource, not seconds.
            if batch.len() < size && !full && batch.iter().all(|u| u.since() > fill_by) {
                break;
            }
            self.write(batch).await?;
        }
        Ok(if full { Round::More } else { Round::Drained })
    }

    /// Write one batch and acknowledge what it settled.
    async fn write(&self, batch: &[RecordUpdate]) -> Result<(), RoundError> {
        let connection = self.connection.clone();
        metrics::histogram!("tsunagi_writeback_batch_size", "connection" => connection.clone())
            .record(batch.len() as f64);
        let outcomes = match self.sink.write(batch).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let kind = match e {
                    SinkError::Retry { .. } => "retry",
                    SinkError::Pause { .. } => "pause",
                };
                metrics::counter!("tsunagi_writeback_calls_total", "connection" => connection, "outcome" => kind).increment(1);
                return Err(e.into());
            }
        };
        metrics::counter!("tsunagi_writeback_calls_total", "connection" => connection.clone(), "outcome" => "ok").increment(1);
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for (update, outcome) in batch.iter().zip(outcomes) {
            let kind = match outcome {
                Outcome::Written => {
                    done.extend(&update.entries);
                    "written"
                }
                Outcome::Failed(reason) => {
                    done.extend(&update.entries);
                    failures.extend(update.messages().into_iter().map(|id| (id, reason.clone())));
                    "failed"
                }
                Outcome::Retry => "retry",
            };
            metrics::counter!("tsunagi_writeback_records_total", "connection" => connection.clone(), "outcome" => kind).increment(1);
        }
        if !failures.is_empty() {
            self.store.writeback_failed(failures).await?;
        }
        if !done.is_empty() {
            self.store.outbox_done(done, self.clock.now()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

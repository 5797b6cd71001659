//! Write-back: drain a CRM connection's outbox into its records, batched and coalesced.
//!
//! Each round reads the connection's pending outbox entries, folds them into one update per
//! record (`plan`), and hands them to the connection's [`Sink`] in batches of its size, each when
//! the connection's [`Pace`] says: at once while the connection is quiet, waiting to fill as its
//! flow of changes rises, never beyond its budget of calls a minute. Entries are acknowledged
//! once their update is written or refused for good (the refusal is shown on the messages); a
//! record the CRM could not take now stays pending for a later round, and a batch that failed as
//! a whole is retried after a backoff (`backon`), or after a long pause when the CRM says nothing
//! will succeed for a while. One worker at a time holds a connection's lease in the store, so
//! with several instances each record's changes still arrive in order.

pub mod connections;
pub mod dry_run;
pub mod kintone;
pub mod plan;
pub mod refresh_tokens;
pub mod salesforce;
pub mod sink;
pub mod warnings;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use self::{
    plan::{
        pace::{Decision, Limits, Pace},
        plan, Plan, RecordUpdate, Reply, StatusChange,
    },
    sink::{Outcome, Sink, SinkError},
};
use crate::{
    clock::Clock,
    store::{Store, StoreError},
};

/// How often and how patiently a worker writes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The pause between rounds while the outbox is drained: how soon a change is seen.
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
    /// How long a first change waits for others, so a burst shows its flow before a call.
    pub gather: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            settle: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            fetch: 10_000,
            max_pause: Duration::from_secs(15 * 60),
            fill_wait: Duration::from_secs(30),
            gather: Duration::from_secs(1),
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
    pace: Mutex<Pace>,
}

/// API calls a minute a connection makes at most when its config names no budget.
pub const DEFAULT_CALLS_PER_MINUTE: u32 = 30;

impl Worker {
    /// A worker for `connection` (a source name such as `salesforce:prod`) writing through
    /// `sink`, within `DEFAULT_CALLS_PER_MINUTE` until told otherwise.
    pub fn new(
        store: Arc<dyn Store>,
        sink: Arc<dyn Sink>,
        connection: impl Into<String>,
        timing: Timing,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let pace = Pace::new(Limits {
            batch: sink.max_batch(),
            cost: sink.cost(),
            per_minute: DEFAULT_CALLS_PER_MINUTE,
            hold: timing.fill_wait,
            gather: timing.gather,
        });
        Self {
            store,
            sink,
            connection: connection.into(),
            owner: format!("writeback-{}", ulid::Ulid::new()),
            timing,
            clock,
            pace: Mutex::new(pace),
        }
    }

    /// The same worker with a budget of `per_minute` API calls a minute.
    pub fn with_calls_per_minute(self, per_minute: u32) -> Self {
        let limits = self.pace.lock().expect("pace").limits();
        Self {
            pace: Mutex::new(Pace::new(Limits {
                per_minute,
                ..limits
            })),
            ..self
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
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // A restart, or another instance, takes the connection at once.
        if let Err(error) = self
            .store
            .writeback_release(&self.connection, &self.owner)
            .await
        {
            tracing::warn!(connection = %self.connection, %error, "write-back lease not released");
        }
    }

    /// One round: take the lease, plan, write what the pace lets go, acknowledge.
    pub async fn round(&self) -> Result<Round, RoundError> {
        let now = self.clock.now();
        let connection = self.connection.clone();
        let (used, limits) = {
            let pace = self.pace.lock().expect("pace");
            (pace.used(now), pace.limits())
        };
        metrics::gauge!("tsunagi_writeback_calls_last_minute", "connection" => connection.clone())
            .set(f64::from(used));
        metrics::gauge!("tsunagi_writeback_calls_budget", "connection" => connection.clone())
            .set(f64::from(limits.per_minute));
        // A quiet connection costs a read a round, not a write of the lease.
        if self
            .store
            .outbox_pending(&self.connection, 1)
            .await?
            .is_empty()
        {
            metrics::gauge!("tsunagi_writeback_pending", "connection" => connection.clone())
                .set(0.0);
            metrics::gauge!("tsunagi_writeback_lag_seconds", "connection" => connection).set(0.0);
            return Ok(Round::Drained);
        }
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
        metrics::gauge!("tsunagi_writeback_pending", "connection" => connection.clone())
            .set(entries.len() as f64);
        let oldest = entries
            .iter()
            .filter_map(|e| e.payload["at"].as_i64())
            .min()
            .and_then(DateTime::from_timestamp_millis);
        let lag = oldest.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!("tsunagi_writeback_lag_seconds", "connection" => connection).set(lag);
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
        for batch in updates.chunks(self.sink.max_batch().max(1)) {
            let now = self.clock.now();
            let times: Vec<_> = batch.iter().map(RecordUpdate::since).collect();
            if let Decision::Hold(why) = self.pace(now, &times, full) {
                tracing::trace!(connection = %self.connection, records = batch.len(), ?why, "write-back held");
                break;
            }
            self.write(batch).await?;
        }
        Ok(if full { Round::More } else { Round::Drained })
    }

    /// The pace's decision on a batch of changes made at `times`; a call it lets go is counted
    /// now, before its answer, since a call that failed still spent the allowance.
    fn pace(&self, now: DateTime<Utc>, times: &[DateTime<Utc>], backlog: bool) -> Decision {
        let mut pace = self.pace.lock().expect("pace");
        let decision = pace.decide(now, times, backlog);
        if decision == Decision::Send {
            pace.called(now, times);
        }
        decision
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
        let mut written = Vec::new();
        let mut done = Vec::new();
        let mut failures = Vec::new();
        let now = self.clock.now();
        for (update, outcome) in batch.iter().zip(outcomes) {
            let kind = match outcome {
                Outcome::Written => {
                    written.extend(&update.entries);
                    let latency = (now - update.since()).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!("tsunagi_writeback_latency_seconds", "connection" => connection.clone())
                        .record(latency);
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
            self.store.outbox_done(done, now).await?;
        }
        if !written.is_empty() {
            self.store.outbox_written(written, now).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

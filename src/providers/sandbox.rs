//! The sandbox provider: a simulated carrier whose handsets live in the store.
//!
//! Outcomes by the recipient's last four digits: `9990` undelivered (unreachable handset),
//! `9991` failed (the provider refuses it), `9992` a transient error on the first attempt that
//! the retry gets through; anything else is delivered after `sandbox_latency_ms`.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{Events, OutboundSms, Provider, SendError};
use crate::{
    clock::Clock,
    domain::state::JobState,
    store::{SandboxSend, Store, StoreError},
};

/// Receipts reported per commit.
const REPORT_BATCH: usize = 256;

/// The sandbox provider.
pub struct Sandbox {
    store: Arc<dyn Store>,
    latency: Duration,
    answer: Duration,
    receipts_due: Arc<Notify>,
    clock: Arc<dyn Clock>,
}

impl Sandbox {
    /// A sandbox that reports receipts `latency` after each send, on `clock`.
    pub fn new(store: Arc<dyn Store>, latency: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            latency,
            answer: Duration::ZERO,
            receipts_due: Arc::new(Notify::new()),
            clock,
        }
    }

    /// Answer each send `answer` after recording it, as a carrier slow to acknowledge would.
    pub fn answering_after(mut self, answer: Duration) -> Self {
        self.answer = answer;
        self
    }

    /// Report due receipts through `events` until `shutdown`; receipts not yet reported
    /// survive in the store.
    fn spawn_reporter(&self, events: Events, shutdown: CancellationToken) -> JoinHandle<()> {
        let store = self.store.clone();
        let wake = self.receipts_due.clone();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            loop {
                let reported = match report_due(store.as_ref(), &events).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "sandbox receipts not reported; retrying");
                        0
                    }
                };
                if reported == REPORT_BATCH {
                    continue;
                }
                let wait = match store.sandbox_next_report().await {
                    Ok(Some(due)) => (due - clock.now())
                        .to_std()
                        .unwrap_or_default()
                        .min(Duration::from_secs(1)),
                    _ => Duration::from_secs(1),
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// Apply the due receipts as any provider's receipts are applied, then mark them reported: a
/// crash between the two reports them again, which the guarded transitions ignore.
async fn report_due(store: &dyn Store, events: &Events) -> Result<usize, StoreError> {
    let due = store.sandbox_due(events.now(), REPORT_BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let count = due.len();
    let ids = due.iter().filter_map(|r| r.message_id.clone()).collect();
    events.receipts(due).await?;
    store.sandbox_mark_reported(ids).await?;
    Ok(count)
}

#[async_trait]
impl Provider for Sandbox {
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        let (outcome, detail) = match sms.to.last_digits(4) {
            "9991" => {
                return Err(SendError::Permanent(
                    "sandbox: the provider refused the number (ends 9991)".into(),
                ))
            }
            "9992" if sms.attempt == 1 => {
                return Err(SendError::transient(
                    "sandbox: provider busy on the first attempt (ends 9992)",
                ))
            }
            "9990" => (
                JobState::Undelivered,
                Some("sandbox: handset unreachable (ends 9990)".to_string()),
            ),
            _ => (JobState::Delivered, None),
        };
        let now = self.clock.now();
        let send = SandboxSend {
            message_id: sms.message_id.clone(),
            provider_message_id: format!("sbx_{}", ulid::Ulid::new()),
            from: sms.from.clone(),
            to: sms.to.clone(),
            body: sms.body.clone(),
            outcome,
            detail,
            at: now,
            report_due: now + self.latency,
        };
        let id = self
            .store
            .sandbox_send(send)
            .await
            .map_err(|e| SendError::transient(format!("sandbox store: {e}")))?;
        self.receipts_due.notify_one();
        tokio::time::sleep(self.answer).await;
        Ok(id)
    }

    async fn already_sent(&self, sms: &OutboundSms) -> Result<Option<String>, SendError> {
        self.store
            .sandbox_sent(&sms.message_id)
            .await
            .map_err(|e| SendError::transient(format!("sandbox store: {e}")))
    }

    fn start(&self, events: Events, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        vec![self.spawn_reporter(events, shutdown)]
    }

    fn nudge(&self) {
        self.receipts_due.notify_one();
    }
}

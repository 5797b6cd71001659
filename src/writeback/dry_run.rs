//! Dry-run write-back: a connection with `dry_run = true` drains its outbox as usual, but its
//! sink keeps the CRM calls it would make (method, path, exact body) in the store instead of
//! making them, and reports every record written. No token is asked for, nothing goes on the
//! network; `GET /v1/writebacks` lists what would have landed on the records.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Outcome, RecordUpdate, Sink, SinkError};
use crate::{
    clock::Clock,
    domain::ids::MessageId,
    store::{NewWritebackCall, Store},
};

/// A CRM call a sink would make.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedCall {
    /// `PATCH`, `PUT`, `POST`.
    pub method: &'static str,
    /// The URL path from the CRM's host on (`/services/data/…`, `/k/v1/…`).
    pub path: String,
    /// The exact JSON body.
    pub body: Value,
    /// The messages whose changes it carries.
    pub message_ids: Vec<MessageId>,
}

/// The calls a sink would make for a batch, built by the code its real writes use.
pub trait CallPlan: Send + Sync + 'static {
    /// The most records one call takes, as the real sink's.
    fn max_batch(&self) -> usize;
    /// The calls writing `updates` takes, and each update's outcome were they all taken: a
    /// record the sink cannot address (no mapping, another app's) fails as it would for real.
    fn calls(&self, updates: &[RecordUpdate]) -> (Vec<PlannedCall>, Vec<Outcome>);
}

/// A sink that logs the calls its connection would make instead of making them.
pub struct DryRunSink {
    connection: String,
    plan: Box<dyn CallPlan>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl DryRunSink {
    /// Log `plan`'s calls for `connection` in `store`, stamped by `clock`.
    pub fn new(
        connection: impl Into<String>,
        plan: Box<dyn CallPlan>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            connection: connection.into(),
            plan,
            store,
            clock,
        }
    }
}

#[async_trait]
impl Sink for DryRunSink {
    fn max_batch(&self) -> usize {
        self.plan.max_batch()
    }

    async fn write(&self, updates: &[RecordUpdate]) -> Result<Vec<Outcome>, SinkError> {
        let (calls, outcomes) = self.plan.calls(updates);
        let at = self.clock.now();
        let logged = calls
            .into_iter()
            .map(|call| NewWritebackCall {
                connection: self.connection.clone(),
                method: call.method.to_string(),
                path: call.path,
                body: call.body,
                message_ids: call.message_ids.iter().map(ToString::to_string).collect(),
                at,
            })
            .collect();
        self.store
            .log_writebacks(logged, at)
            .await
            .map_err(|e| SinkError::Retry {
                reason: format!("store: {e}"),
                after: None,
            })?;
        tracing::info!(connection = %self.connection, records = updates.len(), "dry run: write-back logged, not sent");
        Ok(outcomes)
    }
}

/// The messages of `updates`, once each, in order.
pub fn messages_of<'a>(updates: impl IntoIterator<Item = &'a RecordUpdate>) -> Vec<MessageId> {
    let mut ids: Vec<MessageId> = updates
        .into_iter()
        .flat_map(RecordUpdate::messages)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

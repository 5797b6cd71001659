//! How providers report back: delivery receipts and inbound messages, recorded through the store
//! whichever provider (or HTTP callback) brings them.

use std::sync::Arc;

use crate::{
    clock::Clock,
    store::{NewReply, Receipt, ReceiptOutcome, ReplyRecord, Store, StoreResult},
    telemetry,
};

/// The provider event path, shared by providers' background work and their inbound routes.
#[derive(Clone)]
pub struct Events {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Events {
    /// Events recorded in `store`, dated by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Apply delivery receipts in one commit; a receipt for no known message is logged.
    pub async fn receipts(&self, receipts: Vec<Receipt>) -> StoreResult<Vec<ReceiptOutcome>> {
        let outcomes = self
            .store
            .apply_receipts(receipts, self.clock.now())
            .await?;
        for outcome in &outcomes {
            match outcome {
                ReceiptOutcome::Applied {
                    state, created_at, ..
                } => telemetry::state_entered(*state, *created_at),
                ReceiptOutcome::Overtaken(id) => {
                    tracing::debug!(message_id = %id, "receipt for a message already final")
                }
                ReceiptOutcome::Unknown => tracing::warn!("receipt for no known message"),
            }
        }
        Ok(outcomes)
    }

    /// Record a message a handset sent, linked to the latest message of its conversation.
    pub async fn inbound(&self, reply: NewReply) -> StoreResult<ReplyRecord> {
        self.store.record_reply(reply).await
    }

    /// Now, on the service's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

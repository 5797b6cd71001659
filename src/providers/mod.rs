//! Who actually sends: one `Provider` trait, one file per provider.

pub mod sandbox;

use async_trait::async_trait;

use crate::domain::{ids::MessageId, phone::PhoneNumber};

/// A message handed to a provider.
#[derive(Clone, Debug)]
pub struct OutboundSms {
    /// Our id; providers that take an idempotency key get this one.
    pub message_id: MessageId,
    /// Recipient.
    pub to: PhoneNumber,
    /// Sender id.
    pub from: String,
    /// Body.
    pub body: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// Why a provider did not take a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (throttled, timed out, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (refused number, bad sender).
    #[error("{0}")]
    Permanent(String),
}

/// Sends SMS; reports delivery outcomes later through the store.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Hand one message over; `Ok` carries the provider's id for it.
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError>;
}

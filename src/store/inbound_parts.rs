//! Parts of long messages handsets send (SMPP delivers each part on its own, on any bind of any
//! instance), kept until the last comes in so that an acknowledged part survives a restart and
//! parts arriving at different instances still join.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Which long message a part belongs to: its sender and its concatenation header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartsKey {
    /// The handset's number, E.164.
    pub from: String,
    /// The concatenation reference the handset chose.
    pub reference: u16,
    /// How many parts the message has.
    pub total: u8,
}

/// One part of a long inbound message, as the carrier delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundPart {
    /// The message it belongs to.
    pub key: PartsKey,
    /// Its place, from 1 to `key.total`.
    pub seq: u8,
    /// How its payload is encoded (SMPP `data_coding`).
    pub data_coding: u8,
    /// Its bytes, without the concatenation header.
    pub payload: Vec<u8>,
    /// When it came.
    pub at: DateTime<Utc>,
}

/// A long message whose every part is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedParts {
    /// Its parts in order.
    pub parts: Vec<InboundPart>,
    /// When its first part came, which tells it from a later message under the same key.
    pub first_at: DateTime<Utc>,
}

/// The parts of long inbound messages waiting for the rest.
#[async_trait]
pub trait InboundPartStore: Send + Sync {
    /// Keep `part` (a part delivered again replaces its copy) and forget parts that came before
    /// `forget_before`; once every part of its message is in, all of them. Parts of one
    /// message offered at once, on any instance, are taken one after the other, so exactly the
    /// offer that completes the message sees it complete (or a redelivery after it, seeing the
    /// same parts).
    async fn inbound_part(
        &self,
        part: InboundPart,
        forget_before: DateTime<Utc>,
    ) -> StoreResult<Option<JoinedParts>>;
    /// Forget a message's parts once the message is stored.
    async fn forget_inbound_parts(&self, key: &PartsKey) -> StoreResult<()>;
}

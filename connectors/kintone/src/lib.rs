//! kintone for a CRM-to-SMS bridge, usable on its own: it knows kintone and nothing of the
//! service that embeds it.
//!
//! - [`webhook`]: app webhook payloads for every event `type`, unknown ones kept.
//! - [`field`]: typed field values, an explicit empty state, rendering as text in a time zone.
//! - [`client`]: REST calls (`record.json`, `records.json`, comments, `bulkRequest.json`) with
//!   API tokens or OAuth, guest spaces, bounded time and size.
//! - [`error`]: kintone error bodies, validation field maps, and error classes.
//!
//! Tokens are wrapped in [`Secret`] so that `Debug` never shows them.

pub mod client;
pub mod error;
pub mod field;
mod http;
pub mod secret;
pub mod webhook;

pub use client::{Auth, BulkMethod, BulkRequest, Client, ClientError, RecordUpdate, UpdatedRecord};
pub use error::{ErrorClass, KintoneError};
pub use field::{Decimal, Entity, FieldType, FieldValue, FileInfo, Record, RecordError, Row};
pub use secret::Secret;
pub use webhook::{Event, Webhook, WebhookError};

/// Compiles the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
pub(crate) mod test_support {
    /// A recorded payload from the workspace's `tests/fixtures/kintone/`.
    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}{name}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/kintone/")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }
}

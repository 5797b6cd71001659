//! kintone for a CRM-to-SMS bridge, usable on its own: it knows kintone and nothing of the
//! service that embeds it.
//!
//! - [`webhook`]: app webhook payloads for every event `type`, unknown ones kept.
//! - [`field`]: typed field values, an explicit empty state, rendering as text in a time zone.
//! - [`client`]: REST calls (`record.json`, `records.json`, comments, `bulkRequest.json`) with
//!   API tokens or OAuth, guest spaces, bounded time and size.
//! - [`form`]: an app's fields by type, and how to ask for an empty one.
//! - [`error`]: kintone error bodies, validation field maps, and error classes.
//!
//! Tokens are wrapped in [`Secret`] so that `Debug` never shows them.

pub mod client;
pub mod error;
pub mod field;
pub mod form;
mod http;
pub mod identity;
pub mod secret;
pub mod webhook;

pub use client::{
    Auth, BulkMethod, BulkRequest, CallHook, Client, ClientError, RecordUpdate, UpdatedRecord,
};
pub use error::{ErrorClass, KintoneError};
pub use field::{Decimal, Entity, FieldType, FieldValue, FileInfo, Record, RecordError, Row};
pub use form::Form;
pub use identity::client_identity;
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

    /// Every fixture the tests read; a new file must be added here and to a test.
    pub const FIXTURES: [&str; 16] = [
        "webhook_add_record.json",
        "webhook_update_record.json",
        "webhook_update_status_japanese.json",
        "webhook_update_status_english.json",
        "webhook_delete_record.json",
        "webhook_add_record_comment.json",
        "record_every_field_type.json",
        "records_update_response.json",
        "error_revision_conflict.json",
        "error_invalid_token.json",
        "error_validation.json",
        "error_too_many_requests.json",
        "form_fields_opt_out_check_box.json",
        "form_fields_drop_down_status.json",
        "error_query_operator.json",
        // Notes on how these files are shaped.
        "README.md",
    ];

    #[test]
    fn every_fixture_on_disk_is_listed_and_is_json() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/kintone/");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        for name in FIXTURES.iter().filter(|n| n.ends_with(".json")) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&fixture(name));
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        }
    }
}

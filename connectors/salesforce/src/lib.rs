//! Salesforce for a CRM-to-SMS bridge, usable on its own: it knows Salesforce and nothing of the
//! service that embeds it.
//!
//! - [`outbound`]: Outbound Message SOAP envelopes in, `Ack` or fault out.
//! - [`ids`]: 15- and 18-character ids that compare equal.
//! - [`flow`]: the JSON a Flow HTTP callout or External Services action exchanges.
//! - [`oauth`]: server-to-server grants and a single-flight [`TokenSource`].
//! - [`rest`]: sObject Collections writes through [`RestClient`], with typed error classes.
//! - [`describe`]: an sObject's fields, lengths and picklist values, for writing what fits.
//!
//! Secrets (tokens, session ids, client secrets, keys) are wrapped so that `Debug` never shows them.

pub mod describe;
pub mod flow;
mod http;
pub mod ids;
pub mod oauth;
pub mod outbound;
pub mod rest;
pub mod secret;

pub use describe::{FieldDescribe, SObjectDescribe};
pub use flow::{
    FlowRecord, FlowRequest, FlowRequestError, FlowResponse, FlowResult, MergeField, RecordAction,
    RecordActionError,
};
pub use ids::{same_entity, IdError, OrgId, RecordId};
pub use oauth::{
    is_generic_login, jwt_audience, AccessToken, Grant, OAuthErrorCode, RefreshTokenKeeper,
    TokenError, TokenSource, PRODUCTION_LOGIN, SANDBOX_LOGIN,
};
pub use outbound::{
    Notification, OutboundError, OutboundMessage, RefusedNotification, SObjectRecord,
};
pub use rest::{
    CollectionResponse, ErrorClass, LimitInfo, RecordResult, RestClient, RestError, SObject,
};
pub use secret::Secret;

/// Compiles the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
pub(crate) mod test_support {
    /// A recorded payload from the workspace's `tests/fixtures/salesforce/`.
    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/salesforce/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    /// A fixture as text.
    pub fn fixture_str(name: &str) -> String {
        String::from_utf8(fixture(name)).expect("fixture is UTF-8")
    }
}

//! Salesforce for a CRM-to-SMS bridge, usable on its own.

pub mod flow;
mod http;
pub mod ids;
pub mod oauth;
pub mod outbound;
pub mod rest;
pub mod secret;

pub use flow::{FlowRecord, FlowRequest, FlowRequestError, FlowResponse, FlowResult};
pub use ids::{same_entity, IdError, OrgId, RecordId};
pub use oauth::{AccessToken, Grant, OAuthErrorCode, TokenError, TokenSource};
pub use outbound::{Notification, OutboundError, OutboundMessage, SObjectRecord};
pub use rest::{
    CollectionResponse, ErrorClass, LimitInfo, RecordResult, RestClient, RestError, SObject,
};
pub use secret::Secret;

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

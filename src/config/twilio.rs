//! `[providers.twilio]`: the Twilio account tsunagi sends through when `delivery.provider = "twilio"`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_http_url, Problem, Secret};

/// A Twilio account and the sender it sends from.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct TwilioConfig {
    /// The account's SID (`AC…`).
    pub account_sid: String,
    /// The account's auth token: Basic auth for sends, the key of `X-Twilio-Signature`.
    pub auth_token: Secret,
    /// The sender number (E.164), unless `messaging_service_sid` is set.
    pub from: Option<String>,
    /// A Messaging Service (`MG…`) that picks the sender instead of `from`.
    pub messaging_service_sid: Option<String>,
    /// Twilio's API root; tests point it at a local fake.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.twilio.com".into()
}

impl TwilioConfig {
    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if !self.account_sid.starts_with("AC") {
            problems.push(Problem::new(
                "providers.twilio.account_sid",
                "must be an account SID (AC…)",
            ));
        }
        if self.from.is_none() && self.messaging_service_sid.is_none() {
            problems.push(Problem::new(
                "providers.twilio.from",
                "set from or messaging_service_sid",
            ));
        }
        if !is_http_url(&self.base_url) {
            problems.push(Problem::new(
                "providers.twilio.base_url",
                "must start with http:// or https://",
            ));
        }
    }
}

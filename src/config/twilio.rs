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
    /// How long one API call may take, connecting included, before it counts as failed and is retried.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://api.twilio.com".into()
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Longest `timeout_ms`: a send stuck longer holds its lease and a worker for nothing.
const MAX_TIMEOUT_MS: u64 = 120_000;

impl TwilioConfig {
    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if !self.account_sid.starts_with("AC") {
            problems.push(Problem::new(
                "providers.twilio.account_sid",
                "must be an account SID (AC…)",
            ));
        }
        match &self.from {
            Some(from) => {
                super::sender_id("providers.twilio.from".into(), from, problems);
            }
            None if self.messaging_service_sid.is_none() => problems.push(Problem::new(
                "providers.twilio.from",
                "set from or messaging_service_sid",
            )),
            None => {}
        }
        if !is_http_url(&self.base_url) {
            problems.push(Problem::new(
                "providers.twilio.base_url",
                "must start with http:// or https://",
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            problems.push(Problem::new(
                "providers.twilio.timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn twilio(extra: &str) -> String {
        format!(
            "[delivery]\nprovider = \"twilio\"\n[providers.twilio]\naccount_sid = \"AC0123\"\n\
             auth_token = \"token\"\nfrom = \"+815012345678\"\n{extra}"
        )
    }

    #[test]
    fn a_twilio_section_takes_a_timeout_within_bounds() {
        let c = Config::parse(&twilio("timeout_ms = 2500"), |_| None).unwrap();
        assert_eq!(c.providers.twilio.unwrap().timeout_ms, 2500);
        for bad in ["timeout_ms = 0", "timeout_ms = 120001"] {
            let problems = Config::parse(&twilio(bad), |_| None).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "providers.twilio.timeout_ms");
        }
    }
}

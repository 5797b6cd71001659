//! `[providers.twilio]`: the Twilio account tsunagi sends through when `delivery.provider = "twilio"`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_http_url, Problem, Secret};

/// A Twilio account and the sender it sends from.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct TwilioConfig {
    /// The account's SID (`AC…`).
    pub account_sid: String,
    /// The account's auth token: the key of `X-Twilio-Signature`, so required even with an
    /// API key; Basic auth for sends unless `api_key_sid` is set.
    pub auth_token: Secret,
    /// An API key's SID (`SK…`): with `api_key_secret`, Basic auth for sends instead of the
    /// account SID and auth token.
    pub api_key_sid: Option<String>,
    /// The API key's secret.
    pub api_key_secret: Option<Secret>,
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
        if self.auth_token.expose().is_empty() {
            problems.push(Problem::new(
                "providers.twilio.auth_token",
                "required, also when sends use an API key: Twilio signs its callbacks \
                 (X-Twilio-Signature) with the account's auth token",
            ));
        }
        self.validate_api_key(problems);
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

impl TwilioConfig {
    fn validate_api_key(&self, problems: &mut Vec<Problem>) {
        let secret = self.api_key_secret.as_ref();
        match (&self.api_key_sid, secret) {
            (Some(sid), _) if !sid.starts_with("SK") => problems.push(Problem::new(
                "providers.twilio.api_key_sid",
                "must be an API key SID (SK…)",
            )),
            (Some(_), None) => problems.push(Problem::new(
                "providers.twilio.api_key_secret",
                "api_key_sid is set: set its secret too",
            )),
            (None, Some(_)) => problems.push(Problem::new(
                "providers.twilio.api_key_sid",
                "api_key_secret is set: set the SID (SK…) of its key too",
            )),
            _ => {}
        }
        if secret.is_some_and(|s| s.expose().is_empty()) {
            problems.push(Problem::new(
                "providers.twilio.api_key_secret",
                "must not be empty",
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

    fn problems(extra: &str) -> Vec<(String, String)> {
        let problems = Config::parse(&twilio(extra), |_| None).unwrap_err();
        problems.into_iter().map(|p| (p.path, p.message)).collect()
    }

    #[test]
    fn an_api_key_takes_its_sid_and_secret_together() {
        let c = Config::parse(
            &twilio("api_key_sid = \"SK0123\"\napi_key_secret = \"key-secret\""),
            |_| None,
        )
        .unwrap();
        let twilio = c.providers.twilio.unwrap();
        assert_eq!(twilio.api_key_sid.as_deref(), Some("SK0123"));
        assert!(!format!("{twilio:?}").contains("key-secret"));
        assert_eq!(
            problems("api_key_sid = \"SK0123\""),
            [(
                "providers.twilio.api_key_secret".into(),
                "api_key_sid is set: set its secret too".into()
            )]
        );
        assert_eq!(
            problems("api_key_secret = \"key-secret\""),
            [(
                "providers.twilio.api_key_sid".into(),
                "api_key_secret is set: set the SID (SK…) of its key too".into()
            )]
        );
        assert_eq!(
            problems("api_key_sid = \"AC0123\"\napi_key_secret = \"key-secret\""),
            [(
                "providers.twilio.api_key_sid".into(),
                "must be an API key SID (SK…)".into()
            )]
        );
        assert_eq!(
            problems("api_key_sid = \"SK0123\"\napi_key_secret = \"\""),
            [(
                "providers.twilio.api_key_secret".into(),
                "must not be empty".into()
            )]
        );
    }

    #[test]
    fn the_auth_token_is_required_with_an_api_key_since_it_signs_callbacks() {
        let text = twilio("api_key_sid = \"SK0123\"\napi_key_secret = \"key-secret\"")
            .replace("auth_token = \"token\"", "auth_token = \"\"");
        let problems = Config::parse(&text, |_| None).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "providers.twilio.auth_token");
        assert!(
            problems[0].message.contains("X-Twilio-Signature"),
            "{problems:?}"
        );
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

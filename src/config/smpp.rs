//! `[providers.smpp]`: the SMPP 3.4 account tsunagi binds to when `delivery.provider = "smpp"`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Problem, Secret};

/// An SMPP account at an SMSC or aggregator.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct SmppConfig {
    /// The SMSC's host name or address.
    pub host: String,
    /// Its port (2775 by convention).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The account's `system_id`.
    pub system_id: String,
    /// The account's password (at most 8 characters in SMPP 3.4).
    pub password: Secret,
    /// The sender address used when a message names none.
    pub source_addr: Option<String>,
}

fn default_port() -> u16 {
    2775
}

impl SmppConfig {
    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if self.host.is_empty() {
            problems.push(Problem::new("providers.smpp.host", "must not be empty"));
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            problems.push(Problem::new(
                "providers.smpp.system_id",
                "must be 1-15 characters",
            ));
        }
    }
}

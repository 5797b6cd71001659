//! A configured secret: written in the file as a plain string, never printed.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A secret value (server secret, API key, bearer token) whose `Debug` and `Display` are
/// `[redacted]`, so that logging a config, or anything holding one, cannot leak it.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself; every use is meant to be visible at the call site.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// In the file a secret is a plain string, so the schema says just that (no Rust-side docs).
impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        String::json_schema(generator)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_as_redacted_but_reads_and_writes_as_its_string() {
        let secret: Secret = serde_json::from_str("\"hunter2hunter2hunter2\"").unwrap();
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2hunter2hunter2");
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            "\"hunter2hunter2hunter2\""
        );
    }
}

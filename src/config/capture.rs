//! `[capture]`: inbound CRM and provider payloads also written as fixture files, redacted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Problem;

/// `[capture]`: with a `dir`, every authenticated inbound payload (Outbound Message, Flow call,
/// kintone webhook, Twilio callback) is also written there as a fixture file `replay` takes.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct CaptureConfig {
    /// Where fixture files go (created if missing); capture is off without it.
    pub dir: Option<String>,
    /// Replace phone numbers by placeholders of the same shape, names, e-mail addresses, tokens
    /// and session ids by `REDACTED` (the default). Off writes the payload byte for byte: keep
    /// such files out of version control.
    pub redact: bool,
    /// More fields whose values are names or otherwise personal, redacted whole: element
    /// names, JSON keys, field codes or form parameters, compared without case.
    pub redact_fields: Vec<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            dir: None,
            redact: true,
            redact_fields: Vec::new(),
        }
    }
}

impl CaptureConfig {
    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if self.dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
            problems.push(Problem::new(
                "capture.dir",
                "must name a directory, or be left out to capture nothing",
            ));
        }
        if let Some(i) = self.redact_fields.iter().position(|f| f.trim().is_empty()) {
            problems.push(Problem::new(
                format!("capture.redact_fields[{i}]"),
                "must name a field",
            ));
        }
    }
}

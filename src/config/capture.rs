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
    /// Only these sources are captured: `salesforce`, `kintone`, `twilio`, or one connection as
    /// `salesforce:NAME` / `kintone:NAME` (a sandbox org's beside production's); empty: all.
    pub sources: Vec<String>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            dir: None,
            redact: true,
            redact_fields: Vec::new(),
            sources: Vec::new(),
        }
    }
}

/// The sources `sources` may name.
const SOURCES: [&str; 3] = ["salesforce", "kintone", "twilio"];

impl CaptureConfig {
    /// Whether a payload from `kind` (`salesforce`, `kintone`, `twilio`) and `connection` is
    /// captured.
    pub fn takes(&self, kind: &str, connection: Option<&str>) -> bool {
        self.dir.is_some()
            && (self.sources.is_empty()
                || self.sources.iter().any(|s| match s.split_once(':') {
                    Some((k, name)) => k == kind && Some(name) == connection,
                    None => s == kind,
                }))
    }

    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if self.dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
            problems.push(Problem::new(
                "capture.dir",
                "must name a directory, or be left out to capture nothing",
            ));
        }
        for (i, source) in self.sources.iter().enumerate() {
            let (kind, name) = match source.split_once(':') {
                Some((kind, name)) => (kind, Some(name)),
                None => (source.as_str(), None),
            };
            let known =
                SOURCES.contains(&kind) && name.is_none_or(|n| kind != "twilio" && !n.is_empty());
            if !known {
                problems.push(Problem::new(
                    format!("capture.sources[{i}]"),
                    format!("{source:?} is not salesforce, kintone, twilio, salesforce:NAME or kintone:NAME"),
                ));
            }
        }
        if let Some(i) = self.redact_fields.iter().position(|f| f.trim().is_empty()) {
            problems.push(Problem::new(
                format!("capture.redact_fields[{i}]"),
                "must name a field",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text, |_| None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn capture_is_off_by_default_and_redacts_when_on() {
        let config = Config::parse("", |_| None).unwrap();
        assert!(!config.capture.takes("kintone", Some("sales")));
        let config = Config::parse("[capture]\ndir = \"rec\"", |_| None).unwrap();
        assert!(config.capture.redact);
        assert!(config.capture.takes("kintone", Some("sales")));
    }

    #[test]
    fn a_bad_source_or_an_empty_dir_is_named_by_its_key() {
        let text = "[capture]\ndir = \" \"\nsources = [\"kintone:sales\", \"twilio:x\", \"hubspot\", \"salesforce:\"]\nredact_fields = [\"\"]";
        assert_eq!(
            problems(text),
            [
                "capture.dir: must name a directory, or be left out to capture nothing",
                "capture.sources[1]: \"twilio:x\" is not salesforce, kintone, twilio, salesforce:NAME or kintone:NAME",
                "capture.sources[2]: \"hubspot\" is not salesforce, kintone, twilio, salesforce:NAME or kintone:NAME",
                "capture.sources[3]: \"salesforce:\" is not salesforce, kintone, twilio, salesforce:NAME or kintone:NAME",
                "capture.redact_fields[0]: must name a field",
            ]
        );
    }
}

//! Capture: with `[capture] dir`, every authenticated inbound payload is also written there as a
//! fixture file named after its source and kind (`salesforce_prod_outbound_message_…xml`,
//! `kintone_sales_webhook_add_record_…json`, `twilio_status_callback_…form`), redacted unless
//! `redact = false`, for a developer to commit and `tsunagi replay`. A capture that fails is
//! logged and changes nothing for the request.

pub mod redact;

use std::{
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use self::redact::{RedactError, Redactor};
use crate::config::CaptureConfig;

/// Attempts at a free file name before a capture is given up.
const NAME_ATTEMPTS: usize = 4;

/// Which inbound payload is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A Salesforce Outbound Message (SOAP) to connection `.0`.
    OutboundMessage(&'a str),
    /// A Salesforce Flow or External Services call (JSON) to connection `.0`.
    Flow(&'a str),
    /// A kintone webhook (JSON) to connection `.0`.
    KintoneWebhook(&'a str),
    /// A Twilio message status callback (form).
    TwilioStatusCallback,
    /// A Twilio incoming message (form).
    TwilioInboundSms,
}

/// How a payload's body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
    Form,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Xml => "xml",
            Format::Json => "json",
            Format::Form => "form",
        }
    }
}

impl<'a> Payload<'a> {
    /// The source kind and, for a CRM, the connection.
    fn source(self) -> (&'static str, Option<&'a str>) {
        match self {
            Payload::OutboundMessage(c) | Payload::Flow(c) => ("salesforce", Some(c)),
            Payload::KintoneWebhook(c) => ("kintone", Some(c)),
            Payload::TwilioStatusCallback | Payload::TwilioInboundSms => ("twilio", None),
        }
    }

    fn format(self) -> Format {
        match self {
            Payload::OutboundMessage(_) => Format::Xml,
            Payload::Flow(_) | Payload::KintoneWebhook(_) => Format::Json,
            Payload::TwilioStatusCallback | Payload::TwilioInboundSms => Format::Form,
        }
    }

    /// The file name's start: source, connection and kind (a kintone webhook's event from
    /// its body).
    fn stem(self, body: &[u8]) -> String {
        match self {
            Payload::OutboundMessage(c) => format!("salesforce_{c}_outbound_message"),
            Payload::Flow(c) => format!("salesforce_{c}_flow"),
            Payload::KintoneWebhook(c) => match kintone_event(body) {
                Some(event) => format!("kintone_{c}_webhook_{event}"),
                None => format!("kintone_{c}_webhook"),
            },
            Payload::TwilioStatusCallback => "twilio_status_callback".into(),
            Payload::TwilioInboundSms => "twilio_inbound_sms".into(),
        }
    }
}

/// A kintone webhook's `type`, lower case, when it is an event name.
fn kintone_event(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        r#type: String,
    }
    let typed: Typed = serde_json::from_slice(body).ok()?;
    let plain = !typed.r#type.is_empty()
        && typed
            .r#type
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_');
    plain.then(|| typed.r#type.to_ascii_lowercase())
}

/// Why a capture was not written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The body could not be redacted, so it was not written at all.
    #[error("the payload could not be redacted, so it was not captured: {0}")]
    Redact(#[from] RedactError),
    /// The directory or the file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// What was being written.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The writing task did not finish.
    #[error("the capture task failed: {0}")]
    Task(String),
}

/// The body as the file keeps it: redacted, unless the config says not to.
pub fn fixture_body(
    config: &CaptureConfig,
    payload: Payload<'_>,
    body: &[u8],
) -> Result<Vec<u8>, RedactError> {
    redacted(config, payload.format(), body)
}

fn redacted(config: &CaptureConfig, format: Format, body: &[u8]) -> Result<Vec<u8>, RedactError> {
    if !config.redact {
        return Ok(body.to_vec());
    }
    let mut redactor = Redactor::new(&config.redact_fields);
    match format {
        Format::Xml => redactor.xml(body),
        Format::Json => redactor.json(body),
        Format::Form => redactor.form(body),
    }
}

/// Write `body` of `payload` as a fixture file when capture is on; a failure is logged, never
/// returned: the request goes on as if nothing was captured.
pub async fn capture(config: &CaptureConfig, payload: Payload<'_>, body: &[u8]) {
    let (kind, connection) = payload.source();
    let Some(dir) = config
        .dir
        .clone()
        .filter(|_| config.takes(kind, connection))
    else {
        return;
    };
    let stem = payload.stem(body);
    let (config, format, body) = (config.clone(), payload.format(), body.to_vec());
    let kind = stem.clone();
    let written = tokio::task::spawn_blocking(move || {
        let fixture = redacted(&config, format, &body)?;
        write_new(Path::new(&dir), &stem, format.extension(), &fixture)
    })
    .await
    .map_err(|e| CaptureError::Task(e.to_string()))
    .and_then(|written| written);
    match written {
        Ok(path) => tracing::debug!(file = %path.display(), "inbound payload captured"),
        Err(e) => tracing::warn!(kind = %kind, error = %e, "inbound payload not captured"),
    }
}

/// Write `contents` to a new file `STEM_TIME_XXXX.EXT` in `dir` (made if missing), never over
/// another: written beside under a temporary name, then moved into place.
fn write_new(dir: &Path, stem: &str, ext: &str, contents: &[u8]) -> Result<PathBuf, CaptureError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaptureError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let suffix: String = format!("{:04x}", rand::random::<u16>());
        let path = dir.join(format!("{stem}_{time}_{suffix}.{ext}"));
        let part = dir.join(format!(".{stem}_{time}_{suffix}.{ext}.part"));
        if path.exists() {
            continue;
        }
        let mut file = match std::fs::File::create_new(&part) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&part)(e)),
        };
        if let Err(e) = file.write_all(contents) {
            let _ = std::fs::remove_file(&part);
            return Err(io(&part)(e));
        }
        drop(file);
        match std::fs::hard_link(&part, &path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&part);
                return Ok(path);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                last = Some(io(&path)(e));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        io(dir)(std::io::Error::new(
            ErrorKind::AlreadyExists,
            "no free file name",
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, redact: bool) -> CaptureConfig {
        CaptureConfig {
            dir: Some(dir.display().to_string()),
            redact,
            ..CaptureConfig::default()
        }
    }

    /// The files in `dir`, by name.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn each_payload_gets_a_file_of_its_own_named_after_its_source_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("made/on/demand");
        let webhook = br#"{"type": "UPDATE_STATUS", "app": {"id": "3"}}"#;
        for _ in 0..2 {
            capture(&config(&out, false), Payload::KintoneWebhook("us"), webhook).await;
        }
        let form = b"MessageSid=SM1&MessageStatus=sent";
        capture(&config(&out, false), Payload::TwilioStatusCallback, form).await;
        let names = files(&out);
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(
            names[0].starts_with("kintone_us_webhook_update_status_2"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("kintone_us_webhook_update_status_2"),
            "{names:?}"
        );
        assert!(names[2].starts_with("twilio_status_callback_2") && names[2].ends_with(".form"));
        assert_eq!(
            std::fs::read(out.join(&names[2])).unwrap(),
            form,
            "byte for byte"
        );
    }

    #[tokio::test]
    async fn only_the_sources_named_are_captured() {
        let dir = tempfile::tempdir().unwrap();
        let config = CaptureConfig {
            sources: vec!["salesforce:sandbox".into(), "twilio".into()],
            ..config(dir.path(), false)
        };
        let body = br#"{"records": []}"#;
        capture(&config, Payload::Flow("prod"), body).await;
        capture(&config, Payload::KintoneWebhook("sandbox"), body).await;
        assert_eq!(files(dir.path()), Vec::<String>::new());
        capture(&config, Payload::Flow("sandbox"), body).await;
        capture(
            &config,
            Payload::TwilioInboundSms,
            b"From=%2B819012345678&Body=x",
        )
        .await;
        let names = files(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0].starts_with("salesforce_sandbox_flow_"),
            "{names:?}"
        );
        assert!(names[1].starts_with("twilio_inbound_sms_"), "{names:?}");
    }

    #[tokio::test]
    async fn a_body_that_cannot_be_redacted_is_not_written_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"{\"records\": [{\"phone\": \"090-1234-5678\"";
        capture(&config(dir.path(), true), Payload::Flow("prod"), body).await;
        assert_eq!(files(dir.path()), Vec::<String>::new());
        capture(&config(dir.path(), false), Payload::Flow("prod"), body).await;
        assert_eq!(files(dir.path()).len(), 1, "unredacted, it is kept as sent");
    }
}

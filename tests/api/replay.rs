//! `tsunagi replay`: fixture files posted to a running instance's inbound routes, with the
//! connection's token (and Twilio's signature), one line per record, exiting non-zero when one
//! is refused.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{binary, config_text, TestServer};

/// A Salesforce org (the fixtures' org, by its 15-character id), a kintone app (12) and a Twilio
/// account, as an integrator's instance has them; write-back is a dry run, so nothing calls out.
pub const CONNECTIONS: &str = r#"
[[salesforce]]
name = "dev"
organization_id = "00D5j000001aBcD"
inbound_token = "inbound-token-0123456789"
auth = "client_credentials"
client_id = "3MVG9-test"
client_secret = "client-secret"
login_url = "http://127.0.0.1:9"
dry_run = true

[[salesforce.mappings]]
sobject = "Contact"
phone_field = "MobilePhone"
template = "{{LastName}}様 ご予約は{{Appointment_Date__c}}です"
status_field = "SMS_Status__c"
status_detail_field = "SMS_Status_Detail__c"
reply_field = "SMS_Last_Reply__c"

[[kintone]]
name = "sales"
base_url = "http://127.0.0.1:9"
app = 12
api_token = "kintone-api-token"
inbound_token = "kintone-token-0123456789"
phone_field = "電話番号"
template = "{{氏名}}様 ご予約は{{予約日}}です"
status_field = "sms_status"
status_detail_field = "sms_status_detail"
reply_field = "sms_reply"
dry_run = true

[providers.twilio]
account_sid = "AC1f2e3d4c5b6a79881726354453627180"
auth_token = "twilio-auth-token-0123456789"
from = "+815055550100"
base_url = "http://127.0.0.1:9"
"#;

/// The Twilio auth token of [`CONNECTIONS`].
pub const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789";

/// A fixture of `tests/fixtures/`.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// What a `tsunagi replay` run did.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `tsunagi replay FILES… --to SERVER --config (CONNECTIONS + extra)`, plus `args`, off the
/// test's runtime (the server answers on it meanwhile).
pub async fn replay(server: &TestServer, extra: &str, files: &[PathBuf], args: &[&str]) -> Run {
    replay_as(&server.base, &format!("{CONNECTIONS}{extra}"), files, args).await
}

/// `replay` to base URL `to`, with `connections` in the config instead of [`CONNECTIONS`].
async fn replay_as(to: &str, connections: &str, files: &[PathBuf], args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tsunagi.toml");
    std::fs::write(&config, config_text("sqlite://unused.db", connections)).unwrap();
    let mut command = std::process::Command::new(binary());
    command
        .arg("replay")
        .args(files)
        .args(["--to", to, "--config"])
        .arg(&config)
        .args(args)
        .env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    drop(dir);
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A server with [`CONNECTIONS`] and `extra`.
pub async fn server(extra: &str) -> TestServer {
    TestServer::with_delivery(&format!("{CONNECTIONS}{extra}")).await
}

/// The message ids `replay` printed.
pub fn message_ids(stdout: &str) -> Vec<String> {
    stdout
        .split_whitespace()
        .filter(|w| w.starts_with("msg_"))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn replay_of_a_refused_payload_exits_non_zero() {
    let s = server("").await;
    // The second record's number is a landline: stored as rejected, and replay says so.
    let run = replay(
        &s,
        "",
        &[fixture("salesforce/flow_request_contacts.json")],
        &[],
    )
    .await;
    assert!(!run.success, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].contains("[0035j00000Pq7RsAAJ]: queued msg_"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("[0035j00000Pq7RtAAJ]: rejected msg_")
            && lines[1].contains("number_type_not_allowed"),
        "{}",
        lines[1]
    );
    assert!(
        run.stderr.contains("not every record was taken"),
        "{}",
        run.stderr
    );
    // Every message it printed is stored as it said.
    for line in &lines[..2] {
        let id = &message_ids(line)[0];
        let m = s.wait_for(id, |_| true).await;
        assert_eq!(
            line.contains("rejected"),
            m["status"] == "rejected",
            "{line}: {m}"
        );
    }
}

#[tokio::test]
async fn replay_with_a_wrong_token_an_unknown_connection_or_no_server_exits_non_zero() {
    let s = server("").await;
    let webhook = fixture("kintone/webhook_add_record.json");
    let wrong = CONNECTIONS.replace("kintone-token-0123456789", "kintone-token-wrong-000000");
    let run = replay_as(&s.base, &wrong, std::slice::from_ref(&webhook), &[]).await;
    assert!(!run.success);
    assert!(
        run.stdout.contains("refused 401 unauthorized"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("kintone-token-wrong"),
        "{}",
        run.stdout
    );

    // Nothing listens there: the call fails, and its URL (with the token) is not printed.
    let closed = replay_as(
        "http://127.0.0.1:9",
        CONNECTIONS,
        std::slice::from_ref(&webhook),
        &[],
    )
    .await;
    assert!(!closed.success);
    assert!(
        closed.stdout.contains(": not replayed: the call failed"),
        "{}",
        closed.stdout
    );
    assert!(
        !closed.stdout.contains("kintone-token"),
        "{}",
        closed.stdout
    );

    let unknown = replay(&s, "", &[webhook], &["--connection", "nosuch"]).await;
    assert!(!unknown.success);
    assert!(
        unknown.stdout.contains("no kintone connection \"nosuch\""),
        "{}",
        unknown.stdout
    );
    assert_eq!(s.stored_messages().await, 0);
}

#[tokio::test]
async fn replay_of_taken_payloads_exits_zero_and_prints_what_they_became() {
    let s = server("").await;
    let files = [
        fixture("kintone/webhook_add_record.json"),
        fixture("salesforce/outbound_message_session_id.xml"),
        fixture("twilio/status_callback_delivered.form"),
        fixture("twilio/status_callback_failed_30008.form"),
        fixture("twilio/inbound_sms_japanese.form"),
    ];
    let run = replay(&s, "", &files, &[]).await;
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(
        lines[0].contains("webhook_add_record.json: queued msg_"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("[Contact/0035j00000Pq7RvAAJ]: queued msg_"),
        "{}",
        lines[1]
    );
    for line in &lines[2..4] {
        assert!(line.ends_with(": status callback recorded"), "{line}");
    }
    assert!(lines[4].ends_with(": incoming SMS stored"), "{}", lines[4]);
    let id = &message_ids(&run.stdout)[0];
    let text = s.text_of("+819012345678", &Value::from(id.as_str())).await;
    assert_eq!(text, "山田 太郎様 ご予約は2026-12-24です");
    assert_eq!(
        s.stored_messages().await,
        2,
        "one from kintone, one from Salesforce"
    );
}

#[tokio::test]
async fn replay_of_an_outbound_message_names_each_notifications_message_and_fails_on_a_rejected_one(
) {
    let s = server("").await;
    let files = [fixture("salesforce/outbound_message_contact.xml")];
    // Salesforce gets its Ack (the landline is kept as rejected and written back, never
    // delivered again), but replay says which notification was refused and exits non-zero.
    let run = replay(&s, "", &files, &[]).await;
    assert!(!run.success, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].contains("[Contact/0035j00000Pq7RsAAJ]: queued msg_"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("[Contact/0035j00000Pq7RtAAJ]: rejected msg_")
            && lines[1].ends_with("number_type_not_allowed"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("[Contact/0035j00000Pq7RuAAJ]: queued msg_"),
        "{}",
        lines[2]
    );
    assert_eq!(message_ids(&run.stdout).len(), 3);
    assert_eq!(s.stored_messages().await, 3);
    // Replayed again, every notification is a duplicate and nothing new is stored.
    let again = replay(&s, "", &files, &[]).await;
    assert!(
        again.stdout.lines().all(|l| l.contains("duplicate")),
        "{}",
        again.stdout
    );
    assert_eq!(s.stored_messages().await, 3);
}

/// Every file of `tests/fixtures/` is indexed in its README (the notes and `.gitattributes` aside).
#[test]
fn every_fixture_is_indexed() {
    let root = fixture("");
    let index = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut missing = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let listed = format!("`{}`", path.strip_prefix(&root).unwrap().display());
            if !matches!(name.as_str(), "README.md" | ".gitattributes") && !index.contains(&listed)
            {
                missing.push(listed);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in tests/fixtures/README.md: {missing:?}"
    );
}

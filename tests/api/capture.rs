//! Capture: with `[capture] dir`, inbound payloads are also written as fixture files named after
//! their source and kind, redacted by default, that `tsunagi replay` posts again.

use std::path::{Path, PathBuf};

use reqwest::Response;
use serde_json::Value;

use crate::{
    harness::{is_final, TestServer},
    replay::{fixture, replay, server, TWILIO_TOKEN},
};

/// `[capture]` into `dir`, `redact` as given.
fn capture(dir: &Path, redact: bool) -> String {
    format!(
        "\n[capture]\ndir = \"{}\"\nredact = {redact}\n",
        dir.display()
    )
}

async fn post(s: &TestServer, path: &str, content_type: &str, body: Vec<u8>) -> Response {
    s.client
        .post(format!("{}{path}", s.base))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn outbound_message(s: &TestServer) {
    let body = std::fs::read(fixture("salesforce/outbound_message_contact.xml")).unwrap();
    let path = "/v1/inbound/salesforce/dev/outbound-message/inbound-token-0123456789";
    let r = post(s, path, "text/xml; charset=utf-8", body).await;
    assert_eq!(r.status(), 200);
}

async fn kintone_webhook(s: &TestServer) {
    let body = std::fs::read(fixture("kintone/webhook_add_record.json")).unwrap();
    let path = "/v1/inbound/kintone/sales/kintone-token-0123456789";
    let r = post(s, path, "application/json", body).await;
    assert_eq!(r.status(), 200);
}

/// Post a Twilio fixture form to `route`, signed as Twilio signs it.
async fn twilio(s: &TestServer, route: &str, name: &str) {
    let body = std::fs::read(fixture(&format!("twilio/{name}"))).unwrap();
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    let url = format!("http://127.0.0.1:8080{route}");
    let signature = tsunagi::inbound::twilio::signature(TWILIO_TOKEN, &url, &params);
    let r = s
        .client
        .post(format!("{}{route}", s.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// The fixture files in `dir`, by name.
fn captured(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every stored message once final, oldest first: (status, masked number, body as the handset
/// got it, if it got it).
async fn messages(
    s: &TestServer,
    numbers: &[&str],
) -> Vec<(String, Option<String>, Option<String>)> {
    let list: Value = s.get("/v1/messages?limit=100").await.json().await.unwrap();
    let mut out = Vec::new();
    for m in list["data"].as_array().unwrap().iter().rev() {
        let id = m["id"].as_str().unwrap();
        let m = s.wait_for(id, is_final).await;
        let mut body = None;
        for number in numbers {
            let inbox: Value = s
                .get(&format!("/v1/sandbox/inbox?to={number}"))
                .await
                .json()
                .await
                .unwrap();
            body = body.or_else(|| {
                inbox
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["message_id"] == id)
                    .map(|e| e["body"].as_str().unwrap().to_string())
            });
        }
        let to = m["to"].as_str().map(String::from);
        out.push((m["status"].as_str().unwrap().to_string(), to, body));
    }
    out
}

#[tokio::test]
async fn a_captured_payload_replayed_into_a_fresh_instance_makes_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let recording = server(&capture(dir.path(), false)).await;
    outbound_message(&recording).await;
    kintone_webhook(&recording).await;
    let files = captured(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let numbers = ["+819012345678", "+818011112222", "+81312345678"];
    let recorded = messages(&recording, &numbers).await;
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    assert_eq!(
        recorded
            .iter()
            .filter(|(status, _, _)| status == "rejected")
            .count(),
        1,
        "the landline is refused: {recorded:?}"
    );

    let fresh = server("").await;
    let run = replay(&fresh, "", &files, &[]).await;
    // The landline is refused again, so replay reports it and exits non-zero.
    assert!(!run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.contains(": rejected msg_"))
            .count(),
        1,
        "{}",
        run.stdout
    );
    let mut replayed = messages(&fresh, &numbers).await;
    let mut recorded = recorded;
    recorded.sort();
    replayed.sort();
    assert_eq!(replayed, recorded);
}

#[tokio::test]
async fn redaction_leaves_no_number_or_name_in_the_captured_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&capture(dir.path(), true)).await;
    outbound_message(&s).await;
    kintone_webhook(&s).await;
    let flow = std::fs::read(fixture("salesforce/flow_request_contacts.json")).unwrap();
    let path = "/v1/inbound/salesforce/dev/flow/inbound-token-0123456789";
    assert_eq!(post(&s, path, "application/json", flow).await.status(), 202);
    twilio(&s, "/v1/inbound/twilio/sms", "inbound_sms_japanese.form").await;
    twilio(
        &s,
        "/v1/inbound/twilio/status",
        "status_callback_delivered.form",
    )
    .await;
    // Refused before authentication: not captured.
    let wrong = "/v1/inbound/kintone/sales/kintone-token-wrong-000000";
    assert_eq!(
        post(&s, wrong, "application/json", b"{}".to_vec())
            .await
            .status(),
        401
    );

    let files = captured(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let stems = [
        ("kintone_sales_webhook_add_record_", ".json"),
        ("salesforce_dev_flow_", ".json"),
        ("salesforce_dev_outbound_message_", ".xml"),
        ("twilio_inbound_sms_", ".form"),
        ("twilio_status_callback_", ".form"),
    ];
    assert_eq!(names.len(), stems.len(), "{names:?}");
    for (name, (stem, ext)) in names.iter().zip(stems) {
        let stamp = name.strip_prefix(stem).and_then(|n| n.strip_suffix(ext));
        // `20261129T190102Z_ab12`
        let ok = stamp.is_some_and(|s| {
            s.len() == 21
                && s.as_bytes()[8] == b'T'
                && s.as_bytes()[15] == b'Z'
                && s.as_bytes()[16] == b'_'
        });
        assert!(ok, "{name}");
    }
    let personal = [
        "090-1234-5678",
        "09012345678",
        "+819012345678",
        "12345678",
        "234-5678",
        "０８０−１１１１−２２２２",
        "+815055550100",
        "55550100",
        "花子",
        "山田",
        "太郎",
        "Sato",
        "一郎",
        "鈴木",
        "佐藤",
        "hanako.yamada@example.jp",
        "t.sato@example.jp",
    ];
    for file in &files {
        let text = String::from_utf8(std::fs::read(file).unwrap()).unwrap();
        // Form bodies are percent-encoded: read their values.
        let text = match file.extension().and_then(|e| e.to_str()) {
            Some("form") => serde_urlencoded::from_str::<Vec<(String, String)>>(&text)
                .unwrap()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect(),
            _ => text,
        };
        for original in personal {
            assert!(
                !text.contains(original),
                "{} holds {original}:\n{text}",
                file.display()
            );
        }
    }

    // The redacted Outbound Message and webhook still replay: to the placeholder numbers.
    let fresh = server("").await;
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            name.starts_with("salesforce_dev_outbound") || name.starts_with("kintone")
        })
        .collect();
    let run = replay(&fresh, "", &files, &[]).await;
    // Only the landline's placeholder is refused, as the original was.
    let refused: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(": rejected msg_"))
        .collect();
    assert_eq!(refused.len(), 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        refused[0].ends_with("number_type_not_allowed"),
        "{}",
        refused[0]
    );
    // Each file numbers its own placeholders: both records go to the file's first number.
    let bodies = inbox_bodies(&fresh, "+819010000001", 2).await;
    assert_eq!(bodies, ["REDACTED様 ご予約は2026-12-24です"; 2]);
}

/// The bodies handset `to` received, once it has `count` of them (waits up to 10 s).
async fn inbox_bodies(s: &TestServer, to: &str, count: usize) -> Vec<String> {
    let path = format!("/v1/sandbox/inbox?to={}", to.replace('+', "%2B"));
    let mut bodies = Vec::new();
    for _ in 0..400 {
        let inbox: Value = s.get(&path).await.json().await.unwrap();
        bodies = inbox
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["body"].as_str().unwrap().to_string())
            .collect();
        if bodies.len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    bodies.sort();
    bodies
}

#[tokio::test]
async fn a_capture_that_cannot_be_written_does_not_fail_the_request() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: nothing can be written under it.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let s = server(&capture(&blocked.join("fixtures"), true)).await;
    kintone_webhook(&s).await;
    outbound_message(&s).await;
    assert_eq!(s.stored_messages().await, 4);
}

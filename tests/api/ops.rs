use serde_json::{json, Value};

use crate::harness::TestServer;

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_key() {
    let s = TestServer::start().await;
    let h = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = s
        .client
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_acceptances_outcomes_queue_depth_and_latencies() {
    let s = TestServer::start().await;
    let (_, b) = s.send(json!({"to": "09012345678", "body": "x"})).await;
    s.wait_for(b["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    let text = s.metrics().await;
    for name in [
        "tsunagi_messages_accepted_total",
        "tsunagi_message_outcomes_total{status=\"delivered\"}",
        "tsunagi_queue_depth",
        "tsunagi_ingest_seconds_bucket",
        "tsunagi_delivery_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(!text.contains("9012345678"), "metrics never carry numbers");
    s.stop().await;
}

/// Compare a generated document with its committed copy under `schemas/`; with `UPDATE_SCHEMAS`
/// set, rewrite the copy first.
fn assert_committed(file: &str, generated: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(file);
    let generated = serde_json::to_string_pretty(generated).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/{file} is out of date; regenerate it with UPDATE_SCHEMAS=1 cargo test committed"
    );
}

#[test]
fn committed_openapi_document_matches_the_handlers() {
    assert_committed("openapi.json", &tsunagi::api::openapi::document());
}

#[test]
fn committed_salesforce_external_services_document_matches_the_api() {
    assert_committed(
        "salesforce-external-services.json",
        &tsunagi::inbound::external_services::document("prod", "https://sms.example.com"),
    );
}

#[test]
fn committed_config_schema_matches_the_config_types() {
    assert_committed(
        "config.schema.json",
        &tsunagi::config::Config::json_schema(),
    );
}

#[test]
fn committed_history_hook_schema_matches_what_tsunagi_sends_and_reads() {
    assert_committed("number_history_hook.json", &tsunagi::numbers::hook_schema());
}

#[tokio::test]
async fn openapi_json_is_served_and_documents_routes_and_error_codes() {
    let s = TestServer::start().await;
    let doc: Value = s
        .client
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/sandbox/inbox",
        "/v1/sandbox/reply",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    let codes = doc["components"]["schemas"]["ErrorCode"].to_string();
    for code in [
        "unauthorized",
        "invalid_phone_number",
        "idempotency_key_reused",
        "not_cancelable",
        "message_too_long",
    ] {
        assert!(codes.contains(code), "{code}");
    }
    s.stop().await;
}

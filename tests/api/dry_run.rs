//! Dry-run write-back: a connection with `dry_run = true` drains its outbox as usual, but the
//! CRM calls it would make are listed at `GET /v1/writebacks` with their exact bodies, and the
//! CRM receives nothing at all (not even a token request).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    fake_kintone::FakeKintone,
    fake_salesforce::FakeSalesforce,
    harness::TestServer,
    replay::{fixture, CONNECTIONS},
};

/// Write-back every 100 ms; a state that is not final waits for its successor.
const WRITEBACK: &str = "\n[writeback]\ninterval_ms = 100\nsettle_ms = 60000\nfill_wait_ms = 0\n";

/// A Salesforce Contact's message log.
const LOG: &str = r#"
[salesforce.mappings.message_log]
object = "SMS_Message__c"
external_id_field = "Message_Id__c"
record_field = "Contact__c"
status_field = "Status__c"
"#;

/// The integrator's connections (dry runs both) pointed at `crm`, the Contact mapping with
/// `mapping_extra`, and quick write-back.
fn writing_to(crm: &str, mapping_extra: &str) -> String {
    let reply = "reply_field = \"SMS_Last_Reply__c\"\n";
    CONNECTIONS.replace("http://127.0.0.1:9", crm).replacen(
        reply,
        &format!("{reply}{mapping_extra}"),
        1,
    ) + WRITEBACK
}

/// The calls listed for `connection` once `done` holds for them, newest first (waits up to 10 s).
async fn writebacks(
    s: &TestServer,
    connection: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut calls = Vec::new();
    for _ in 0..200 {
        let page: Value = s
            .get(&format!("/v1/writebacks?connection={connection}"))
            .await
            .json()
            .await
            .unwrap();
        calls = page["data"].as_array().unwrap().clone();
        if done(&calls) {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the expected write-back calls were never listed: {calls:#?}");
}

/// A call as listed, without its time.
fn call(listed: &Value) -> Value {
    let mut call = listed.clone();
    call.as_object_mut().unwrap().remove("at");
    call
}

#[tokio::test]
async fn a_salesforce_dry_run_lists_the_exact_calls_and_calls_nothing() {
    let salesforce = FakeSalesforce::start().await;
    let s = TestServer::with_delivery(&writing_to(&salesforce.uri(), LOG)).await;
    let record = json!({"records": [{"id": "0035j00000Pq7RsAAJ", "sobject": "Contact",
        "fields": {"LastName": "山田", "MobilePhone": "090-1234-5678",
            "Appointment_Date__c": "2026-12-24"}}]});
    let (status, answer) = s
        .call(
            "/v1/inbound/salesforce/dev/flow/inbound-token-0123456789",
            record,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["results"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for(&id, |st| st == "delivered").await;

    let calls = writebacks(&s, "dev", |calls| calls.len() >= 2).await;
    let calls: Vec<Value> = calls.iter().map(call).collect();
    assert_eq!(
        calls,
        [
            json!({
                "connection": "salesforce:dev",
                "method": "PATCH",
                "path": "/services/data/v67.0/composite/sobjects/SMS_Message__c/Message_Id__c",
                "body": {"allOrNone": false, "records": [{
                    "attributes": {"type": "SMS_Message__c"},
                    "Message_Id__c": id,
                    "Contact__c": "0035j00000Pq7RsAAJ",
                    "Status__c": "delivered",
                }]},
                "message_ids": [id],
            }),
            json!({
                "connection": "salesforce:dev",
                "method": "PATCH",
                "path": "/services/data/v67.0/composite/sobjects",
                "body": {"allOrNone": false, "records": [{
                    "attributes": {"type": "Contact"},
                    "id": "0035j00000Pq7RsAAJ",
                    "SMS_Status__c": "delivered",
                    "SMS_Status_Detail__c": null,
                }]},
                "message_ids": [id],
            }),
        ],
        "newest first: the record's update, then its message log"
    );
    // A few more rounds: the entries were taken as written, so nothing more is planned.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again: Value = s.get("/v1/writebacks").await.json().await.unwrap();
    assert_eq!(again["data"].as_array().unwrap().len(), 2, "{again}");
    let received = salesforce.server.received_requests().await.unwrap();
    assert!(received.is_empty(), "{received:?}");
    assert!(s.outbox_after_stop("salesforce:dev").await.is_empty());
}

#[tokio::test]
async fn a_kintone_dry_run_lists_the_exact_calls_and_calls_nothing() {
    let kintone = FakeKintone::start().await;
    let s = TestServer::with_delivery(&writing_to(&kintone.uri(), "")).await;
    let webhook = std::fs::read(fixture("kintone/webhook_add_record.json")).unwrap();
    let answer: Value = s
        .client
        .post(format!(
            "{}/v1/inbound/kintone/sales/kintone-token-0123456789",
            s.base
        ))
        .header("Content-Type", "application/json")
        .body(webhook)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["message_id"].as_str().unwrap().to_string();
    let message = s.wait_for(&id, |st| st == "delivered").await;
    let status = json!({
        "connection": "kintone:sales",
        "method": "PUT",
        "path": "/k/v1/records.json",
        "body": {"app": 12, "records": [{"id": 7, "record": {
            "sms_status": {"value": "delivered"},
            "sms_status_detail": {"value": ""},
        }}]},
        "message_ids": [id],
    });
    let calls = writebacks(&s, "sales", |calls| !calls.is_empty()).await;
    assert_eq!(
        calls.iter().map(call).collect::<Vec<_>>(),
        std::slice::from_ref(&status)
    );

    let reply = json!({"from": "+819012345678", "to": message["from"], "body": "はい"});
    let (code, answer) = s.call("/v1/sandbox/reply", reply).await;
    assert_eq!(code, 201, "{answer}");
    let calls = writebacks(&s, "kintone:sales", |calls| calls.len() >= 3).await;
    let calls: Vec<Value> = calls.iter().map(call).collect();
    assert_eq!(
        calls,
        [
            json!({
                "connection": "kintone:sales",
                "method": "POST",
                "path": "/k/v1/bulkRequest.json",
                "body": {"requests": [{
                    "method": "POST",
                    "api": "/k/v1/record/comment.json",
                    "payload": {"app": 12, "record": 7, "comment": {"text": "SMS返信: はい"}},
                }]},
                "message_ids": [id],
            }),
            json!({
                "connection": "kintone:sales",
                "method": "PUT",
                "path": "/k/v1/records.json",
                "body": {"app": 12, "records": [{"id": 7, "record": {"sms_reply": {"value": "はい"}}}]},
                "message_ids": [id],
            }),
            status,
        ],
        "no revision: a dry run reads nothing from kintone"
    );
    // A page of one, then the next.
    let first: Value = s.get("/v1/writebacks?limit=1").await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let next: Value = s
        .get(&format!("/v1/writebacks?limit=1&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(call(&next["data"][0]), calls[1]);
    let received = kintone.server.received_requests().await.unwrap();
    assert!(received.is_empty(), "{received:?}");
}

#[tokio::test]
async fn the_writeback_list_refuses_an_unknown_connection_and_asks_for_a_key() {
    let s = crate::replay::server("").await;
    let (status, problem) = {
        let r = s.get("/v1/writebacks?connection=nosuch").await;
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "connection");
    let r = s.get("/v1/writebacks?limit=0").await;
    assert_eq!(r.status(), 422);
    let r = s
        .client
        .get(format!("{}/v1/writebacks", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

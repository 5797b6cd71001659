//! kintone calling in: app webhooks become SMS through the one admission path; only trigger
//! events send, each record revision at most once; refused records are kept as `rejected`.

use serde_json::{json, Value};

use crate::{
    fake_kintone::FakeKintone,
    harness::{delivered_events, TestServer},
};

const TOKEN: &str = "kintone-token-0123456789";

/// `sales` takes app 12 (a Japanese app: new records and the status SMS送信 send), `us` takes
/// app 3 (an English one: only the status Send SMS sends). Write-back points at a closed port.
const CONNECTIONS: &str = r#"
[[kintone]]
name = "sales"
base_url = "http://127.0.0.1:9"
app = 12
api_token = "kintone-api-token"
inbound_token = "kintone-token-0123456789"
phone_field = "電話番号"
template = "{{氏名}}様 ご予約は{{予約日時}}({{予約日時|date(\"%m月%d日\")}})です 金額{{金額}}円 担当{{担当者}}"
trigger_events = ["ADD_RECORD", "UPDATE_STATUS"]
trigger_status = "SMS送信"
status_field = "sms_status"
status_detail_field = "sms_status_detail"
reply_field = "sms_reply"
opt_out_field = "配信停止"

[[kintone]]
name = "us"
base_url = "http://127.0.0.1:9"
app = 3
api_token = "kintone-api-token-us"
inbound_token = "kintone-us-token-0123456789"
phone_field = "Phone"
template = "Record {{Record_number}}: updated {{Updated_datetime}}"
trigger_events = ["UPDATE_STATUS"]
trigger_status = "Send SMS"
status_field = "sms_status"
status_detail_field = "sms_status_detail"
reply_field = "sms_reply"
"#;

async fn server() -> TestServer {
    TestServer::with_delivery(CONNECTIONS).await
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kintone/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&text).unwrap()
}

/// A recorded webhook of app 12 whose record also holds the booking fields the `sales`
/// template merges (the recordings carry only some of the app's fields).
fn booking(name: &str) -> Value {
    let mut webhook = fixture(name);
    let record = webhook["record"].as_object_mut().unwrap();
    for (code, field) in [
        (
            "電話番号",
            json!({"type": "SINGLE_LINE_TEXT", "value": "090-1234-5678"}),
        ),
        (
            "予約日時",
            json!({"type": "DATETIME", "value": "2026-12-24T01:00:00Z"}),
        ),
        ("金額", json!({"type": "NUMBER", "value": "12000.50"})),
        (
            "担当者",
            json!({"type": "USER_SELECT", "value": [{"code": "sato", "name": "佐藤 花子"}]}),
        ),
    ] {
        record.entry(code).or_insert(field);
    }
    webhook
}

fn set_field(webhook: &mut Value, code: &str, value: Value) {
    webhook["record"][code]["value"] = value;
}

async fn deliver_to(s: &TestServer, name: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = s
        .client
        .post(format!("{}/v1/inbound/kintone/{name}/{token}", s.base))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn deliver(s: &TestServer, body: &Value) -> (u16, Value) {
    deliver_to(s, "sales", TOKEN, body).await
}

async fn message(s: &TestServer, id: &Value) -> Value {
    let path = format!("/v1/messages/{}", id.as_str().unwrap());
    s.get(&path).await.json().await.unwrap()
}

#[tokio::test]
async fn a_new_record_sends_its_merged_fields_and_is_delivered() {
    let s = server().await;
    let (status, answer) = deliver(&s, &booking("webhook_add_record.json")).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("queued")),
        "{answer}"
    );
    let id = &answer["message_id"];
    assert_eq!(
        s.text_of("09012345678", id).await,
        "山田 太郎様 ご予約は2026-12-24 10:00(12月24日)です 金額12000.50円 担当佐藤 花子"
    );
    let m = s
        .wait_for(id.as_str().unwrap(), |st| st == "delivered")
        .await;
    assert_eq!(delivered_events(&m), ["queued", "sending", "delivered"]);
    assert_eq!(m["source"], "kintone:sales");
    s.stop().await;
}

#[tokio::test]
async fn the_same_webhook_again_is_a_duplicate_and_sends_nothing() {
    let s = server().await;
    let webhook = booking("webhook_add_record.json");
    let (_, first) = deliver(&s, &webhook).await;
    assert_eq!(first["result"], "queued");
    let (status, again) = deliver(&s, &webhook).await;
    assert_eq!(
        (status, &again["result"]),
        (200, &json!("duplicate")),
        "{again}"
    );
    assert!(again.get("message_id").is_none(), "{again}");
    assert_eq!(s.stored_messages().await, 1);
    s.stop().await;
}

#[tokio::test]
async fn another_webhook_for_the_same_record_revision_is_a_duplicate() {
    let s = server().await;
    let mut webhook = booking("webhook_add_record.json");
    assert_eq!(deliver(&s, &webhook).await.1["result"], "queued");
    // A second webhook of the app pointing here: its own id, the same record revision.
    webhook["id"] = json!("01J9ZQ4K7T3W8XGQ2V5N6M1B0D");
    let (status, again) = deliver(&s, &webhook).await;
    assert_eq!(
        (status, &again["result"]),
        (200, &json!("duplicate")),
        "{again}"
    );
    // The next revision of the record is another state, and sends.
    webhook["id"] = json!("01J9ZQ4K7T3W8XGQ2V5N6M1B0E");
    webhook["record"]["$revision"]["value"] = json!("2");
    assert_eq!(deliver(&s, &webhook).await.1["result"], "queued");
    assert_eq!(s.stored_messages().await, 2);
    s.stop().await;
}

#[tokio::test]
async fn the_trigger_status_sends_under_the_japanese_and_the_english_key() {
    let s = server().await;
    let (status, japanese) = deliver(&s, &booking("webhook_update_status_japanese.json")).await;
    assert_eq!(
        (status, &japanese["result"]),
        (200, &json!("queued")),
        "{japanese}"
    );
    let english = fixture("webhook_update_status_english.json");
    let (status, answer) = deliver_to(&s, "us", "kintone-us-token-0123456789", &english).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("queued")),
        "{answer}"
    );
    assert_eq!(
        s.text_of("09012345678", &answer["message_id"]).await,
        "Record 42: updated 2026-12-24 10:00"
    );
    let m = message(&s, &answer["message_id"]).await;
    assert_eq!(m["source"], "kintone:us");
    s.stop().await;
}

#[tokio::test]
async fn another_status_or_an_app_without_process_management_sends_nothing() {
    let s = server().await;
    let mut done = booking("webhook_update_status_japanese.json");
    set_field(&mut done, "ステータス", json!("完了"));
    let (status, answer) = deliver(&s, &done).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    assert!(
        answer["reason"].as_str().unwrap().contains("完了"),
        "{answer}"
    );

    let mut no_process = booking("webhook_add_record.json");
    no_process["type"] = json!("UPDATE_STATUS");
    let (status, answer) = deliver(&s, &no_process).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("no STATUS field"),
        "{answer}"
    );
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn events_that_are_not_triggers_or_carry_no_record_are_ignored() {
    let s = server().await;
    for (name, why) in [
        (
            "webhook_update_record.json",
            "not in this connection's trigger_events",
        ),
        ("webhook_delete_record.json", "carries no record"),
        ("webhook_add_record_comment.json", "carries no record"),
    ] {
        let (status, answer) = deliver(&s, &fixture(name)).await;
        assert_eq!(
            (status, &answer["result"]),
            (200, &json!("ignored")),
            "{name}"
        );
        assert!(answer["reason"].as_str().unwrap().contains(why), "{answer}");
    }
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_token_an_unknown_name_or_another_app_stores_nothing() {
    let s = server().await;
    let webhook = booking("webhook_add_record.json");
    let (status, problem) = deliver_to(&s, "sales", "kintone-token-0123456788", &webhook).await;
    assert_eq!((status, &problem["code"]), (401, &json!("unauthorized")));
    let (status, problem) = deliver_to(&s, "nobody", TOKEN, &webhook).await;
    assert_eq!((status, &problem["code"]), (404, &json!("not_found")));
    // App 3's webhook pasted into app 12's connection.
    let other = fixture("webhook_update_status_english.json");
    let (status, problem) = deliver(&s, &other).await;
    assert_eq!((status, &problem["code"]), (422, &json!("invalid_request")));
    assert_eq!(problem["field"], "app.id");
    assert!(
        problem["detail"].as_str().unwrap().contains("app 12"),
        "{problem}"
    );
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_050_number_is_stored_rejected_with_its_code_and_answered_200() {
    let s = server().await;
    let mut webhook = booking("webhook_add_record.json");
    set_field(&mut webhook, "電話番号", json!("050-1234-5678"));
    let (status, answer) = deliver(&s, &webhook).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("rejected")),
        "{answer}"
    );
    assert_eq!(answer["error"]["code"], "number_type_not_allowed");
    let m = message(&s, &answer["message_id"]).await;
    assert_eq!(m["status"], "rejected");
    let detail = m["status_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("number_type_not_allowed: `電話番号`"),
        "{m}"
    );
    assert_eq!(m["source"], "kintone:sales");
    s.stop().await;
}

#[tokio::test]
async fn a_checked_opt_out_or_a_missing_merge_field_is_rejected_with_its_reason() {
    let s = server().await;
    let mut opted_out = booking("webhook_add_record.json");
    opted_out["record"]["配信停止"] = json!({"type": "CHECK_BOX", "value": ["停止"]});
    let (status, answer) = deliver(&s, &opted_out).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("rejected")),
        "{answer}"
    );
    assert_eq!(answer["error"]["code"], "number_blocked");

    // The recorded record as it is, a later revision: it lacks the booking fields.
    let mut bare = fixture("webhook_add_record.json");
    bare["id"] = json!("01J9ZQ4K7T3W8XGQ2V5N6M1B0F");
    set_field(&mut bare, "$revision", json!("2"));
    let (status, answer) = deliver(&s, &bare).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("rejected")),
        "{answer}"
    );
    assert_eq!(answer["error"]["code"], "missing_template_variable");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("予約日時"),
        "{answer}"
    );
    s.stop().await;
}

#[tokio::test]
async fn record_values_are_printed_as_data_never_run_as_template_source() {
    let s = server().await;
    let mut webhook = booking("webhook_add_record.json");
    set_field(&mut webhook, "氏名", json!("{{金額}}"));
    let (_, answer) = deliver(&s, &webhook).await;
    let text = s.text_of("09012345678", &answer["message_id"]).await;
    assert!(text.starts_with("{{金額}}様"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_or_malformed_body_is_refused() {
    let s = server().await;
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = s
        .client
        .post(format!("{}/v1/inbound/kintone/sales/{TOKEN}", s.base))
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let (status, problem) = deliver(&s, &json!({"id": "x", "type": "ADD_RECORD"})).await;
    assert_eq!((status, &problem["code"]), (400, &json!("invalid_request")));
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

/// `GET /v1/inbound/kintone/{name}/notifications/{id}` with the test's API key.
async fn notification(s: &TestServer, name: &str, id: &str) -> (u16, Value) {
    let r = s
        .get(&format!("/v1/inbound/kintone/{name}/notifications/{id}"))
        .await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_queued_webhook_is_looked_up_by_its_notification_id_with_its_message_id() {
    let s = server().await;
    let webhook = booking("webhook_add_record.json");
    let (_, answer) = deliver(&s, &webhook).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    let id = "01J9ZQ4K7T3W8XGQ2V5N6M1B0C";
    let (status, found) = notification(&s, "sales", id).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["notification_id"], id);
    assert_eq!(found["event"], "ADD_RECORD");
    assert_eq!(found["record_id"], "7");
    assert_eq!(found["result"], "queued");
    assert_eq!(found["message_id"], answer["message_id"]);
    assert!(
        found.get("reason").is_none() && found.get("error").is_none(),
        "{found}"
    );
    let at = found["received_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    // The same notification again is answered `duplicate`; the lookup keeps the first answer.
    assert_eq!(deliver(&s, &webhook).await.1["result"], "duplicate");
    assert_eq!(notification(&s, "sales", id).await.1, found);
    let (status, problem) = notification(&s, "us", id).await;
    assert_eq!((status, &problem["code"]), (404, &json!("not_found")));
    s.stop().await;
}

#[tokio::test]
async fn an_ignored_event_is_looked_up_with_the_reason_it_sent_nothing() {
    let s = server().await;
    let (_, answer) = deliver(&s, &fixture("webhook_update_record.json")).await;
    assert_eq!(answer["result"], "ignored", "{answer}");
    let (status, found) = notification(&s, "sales", "01J9ZQ8R2D4F6H8K0M2P4R6T8V").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["event"], "UPDATE_RECORD");
    assert_eq!(found["result"], "ignored");
    assert_eq!(found["reason"], answer["reason"]);
    assert!(found.get("message_id").is_none(), "{found}");
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_notification_or_connection_is_not_found_and_an_overlong_id_is_refused() {
    let s = server().await;
    let (status, problem) = notification(&s, "sales", "01J9ZQ4K7T3W8XGQ2V5N6M1B0C").await;
    assert_eq!((status, &problem["code"]), (404, &json!("not_found")));
    assert!(
        problem["detail"].as_str().unwrap().contains("notification"),
        "{problem}"
    );
    let (status, problem) = notification(&s, "nobody", "01J9ZQ4K7T3W8XGQ2V5N6M1B0C").await;
    assert_eq!((status, &problem["code"]), (404, &json!("not_found")));
    assert!(
        problem["detail"].as_str().unwrap().contains("nobody"),
        "{problem}"
    );
    let (status, problem) = notification(&s, "sales", &"a".repeat(129)).await;
    assert_eq!((status, &problem["code"]), (422, &json!("invalid_request")));
    assert_eq!(problem["field"], "id");
    s.stop().await;
}

#[tokio::test]
async fn looking_up_a_notification_without_an_api_key_is_unauthorized() {
    let s = server().await;
    assert_eq!(
        deliver(&s, &booking("webhook_add_record.json")).await.0,
        200
    );
    let url = format!(
        "{}/v1/inbound/kintone/sales/notifications/01J9ZQ4K7T3W8XGQ2V5N6M1B0C",
        s.base
    );
    let none = s.client.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let wrong = s.client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let problem: Value = wrong.json().await.unwrap();
    assert_eq!(problem["code"], "unauthorized");
    s.stop().await;
}

/// `sales` writing back to a local fake kintone, with UPDATE_RECORD a trigger too (as an app
/// that also has an update webhook would be), rounds every 100 ms.
fn writing_to(kintone: &FakeKintone) -> String {
    let sales = CONNECTIONS
        .replacen("http://127.0.0.1:9", &kintone.uri(), 1)
        .replacen(
            r#"trigger_events = ["ADD_RECORD", "UPDATE_STATUS"]"#,
            r#"trigger_events = ["ADD_RECORD", "UPDATE_RECORD", "UPDATE_STATUS"]"#,
            1,
        );
    format!("{sales}\n[writeback]\ninterval_ms = 100\nsettle_ms = 60000\nfill_wait_ms = 0\n")
}

#[tokio::test]
async fn the_status_is_written_back_and_the_echo_of_that_write_sends_nothing() {
    let kintone = FakeKintone::start().await;
    let s = TestServer::with_delivery(&writing_to(&kintone)).await;
    let (_, answer) = deliver(&s, &booking("webhook_add_record.json")).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    kintone
        .wait_for(|r| r.wrote(7, "sms_status", "delivered"))
        .await;
    let written = kintone.records.lock().unwrap().revisions[&7];

    // kintone fires an UPDATE_RECORD for our own write after all: the revision is ours.
    let mut echo = booking("webhook_update_record.json");
    echo["id"] = json!("01J9ZQECHO0000000000000001");
    set_field(&mut echo, "$revision", json!(written.to_string()));
    let (status, answer) = deliver(&s, &echo).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    assert!(
        answer["reason"].as_str().unwrap().contains("echo"),
        "{answer}"
    );
    assert_eq!(s.stored_messages().await, 1, "the echo sent nothing");

    // A person saving the record afterwards is a real update, and this app sends on those.
    let mut edit = booking("webhook_update_record.json");
    set_field(&mut edit, "$revision", json!((written + 1).to_string()));
    let (_, answer) = deliver(&s, &edit).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    s.stop().await;
}

/// The ADD_RECORD webhook of record `id` (its own number, revision 1).
fn new_record(id: u64) -> Value {
    let mut webhook = booking("webhook_add_record.json");
    webhook["id"] = json!(format!("01J9ZQBURST{id:015}"));
    set_field(&mut webhook, "$id", json!(id.to_string()));
    set_field(&mut webhook, "電話番号", json!(format!("090-2000-{id:04}")));
    webhook
}

/// REST calls (reads, writes, bulk) the fake kintone received.
async fn rest_calls(kintone: &FakeKintone) -> usize {
    kintone.server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn two_hundred_fifty_webhooks_are_written_back_in_at_most_12_calls() {
    let kintone = FakeKintone::start().await;
    // Calls wait up to 3 s to fill: 100 records a call, each with the read of their revisions.
    let config = writing_to(&kintone).replace("fill_wait_ms = 0", "fill_wait_ms = 3000");
    let s = TestServer::with_delivery(&config).await;
    for id in 1..=250 {
        let (_, answer) = deliver(&s, &new_record(id)).await;
        assert_eq!(answer["result"], "queued", "{answer}");
    }
    kintone
        .wait_for(|r| {
            let delivered: std::collections::BTreeSet<u64> = r
                .updates
                .iter()
                .filter(|(_, record)| record["sms_status"]["value"] == "delivered")
                .map(|(id, _)| *id)
                .collect();
            delivered.len() == 250
        })
        .await;
    let calls = rest_calls(&kintone).await;
    assert!(calls <= 12, "{calls} REST calls for 250 records");
    s.stop().await;
}

#[tokio::test]
async fn a_handset_reply_becomes_a_comment_and_fills_the_reply_field() {
    let kintone = FakeKintone::start().await;
    let s = TestServer::with_delivery(&writing_to(&kintone)).await;
    let (_, answer) = deliver(&s, &new_record(31)).await;
    let id = answer["message_id"].as_str().unwrap().to_string();
    s.wait_for(&id, |st| st == "delivered").await;
    let (status, reply) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": "090-2000-0031", "to": "TSUNAGI", "body": "変更希望です"}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    kintone
        .wait_for(|r| r.comments.iter().any(|(record, _)| *record == 31))
        .await;
    {
        let records = kintone.records.lock().unwrap();
        assert_eq!(
            records.comments,
            [(31, "SMS返信: 変更希望です".to_string())]
        );
        assert!(records
            .updates
            .iter()
            .any(|(id, r)| *id == 31 && r["sms_reply"]["value"] == "変更希望です"));
    }
    s.stop().await;
}

/// Record `id` moved to the trigger status (revision 6), as its UPDATE_STATUS webhook carries it.
fn moved_to_trigger(id: u64) -> Value {
    let mut webhook = booking("webhook_update_status_japanese.json");
    webhook["id"] = json!(format!("01J9ZQMOVE{id:016}"));
    set_field(&mut webhook, "$id", json!(id.to_string()));
    set_field(&mut webhook, "電話番号", json!(format!("090-3000-{id:04}")));
    webhook
}

/// Every stored message, paging through the list.
async fn all_messages(s: &TestServer) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = s
            .get(&format!("/v1/messages?limit=100{cursor}"))
            .await
            .json()
            .await
            .unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

#[tokio::test]
async fn three_hundred_records_moved_with_sixty_webhooks_delivered_get_one_sms_each() {
    let kintone = FakeKintone::start().await;
    {
        let mut records = kintone.records.lock().unwrap();
        for id in 1..=300 {
            records
                .waiting
                .insert(id, moved_to_trigger(id)["record"].clone());
            records.revisions.insert(id, 6);
        }
    }
    let config = writing_to(&kintone).replacen(
        "trigger_status = \"SMS送信\"",
        "trigger_status = \"SMS送信\"\npoll_interval_seconds = 1",
        1,
    );
    let s = TestServer::with_delivery(&config).await;
    // kintone delivered only the first 60 webhooks of the campaign.
    for id in 1..=60 {
        let (status, answer) = deliver(&s, &moved_to_trigger(id)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut messages = Vec::new();
    for _ in 0..200 {
        messages = all_messages(&s).await;
        if messages.len() >= 300 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(messages.len(), 300, "one message per record");
    // Webhooks arriving late, after the poller took their records, send nothing more.
    for id in [150, 299] {
        let (_, answer) = deliver(&s, &moved_to_trigger(id)).await;
        assert_eq!(answer["result"], "duplicate", "{answer}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        all_messages(&s).await.len(),
        300,
        "and later polls add none"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_thousand_delivered_messages_take_ten_writes_of_100_at_the_webhooks_revisions_with_the_api_token(
) {
    let kintone = FakeKintone::start().await;
    // A part batch never goes early: every call carries 100 records however slow the machine;
    // a budget above the default lets the 20 requests go within the minute.
    let config = writing_to(&kintone)
        .replace("fill_wait_ms = 0", "fill_wait_ms = 600000")
        .replacen(
            "opt_out_field = \"配信停止\"\n",
            "opt_out_field = \"配信停止\"\nwriteback_calls_per_minute = 60\n",
            1,
        );
    assert!(config.contains("writeback_calls_per_minute = 60"));
    let s = TestServer::with_delivery(&config).await;
    let sends = (1..=1000).map(|id| {
        let webhook = new_record(id);
        let s = &s;
        async move { deliver(s, &webhook).await }
    });
    for (status, answer) in futures_util::future::join_all(sends).await {
        assert_eq!(
            (status, &answer["result"]),
            (200, &json!("queued")),
            "{answer}"
        );
    }
    kintone
        .wait_up_to(std::time::Duration::from_secs(120), |r| {
            let delivered: std::collections::BTreeSet<u64> = r
                .updates
                .iter()
                .filter(|(_, record)| record["sms_status"]["value"] == "delivered")
                .map(|(id, _)| *id)
                .collect();
            delivered.len() == 1000
        })
        .await;
    // The write-back's calls: the reads of revisions and the writes (the poller's look at the
    // trigger status is not write-back). The webhooks told each record's revision, so no read.
    let requests: Vec<_> = kintone
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.method.as_str() == "PUT" || r.url.query().is_some_and(|q| q.contains("%24id+in"))
        })
        .collect();
    // Ten calls of 100 at a steady flow; a loaded machine that stalls delivery for longer than
    // the flow window lets a part call go, never a read.
    let puts = requests
        .iter()
        .filter(|r| r.method.as_str() == "PUT")
        .count();
    assert_eq!(
        requests.len(),
        puts,
        "no revision was read: the webhooks told them"
    );
    assert!(puts <= 12, "{puts} writes for 1,000 delivered messages");
    eprintln!(
        "1,000 delivered: {puts} writes, {} kintone requests in all",
        kintone.server.received_requests().await.unwrap().len()
    );
    assert!(requests.iter().all(|r| r
        .headers
        .get("X-Cybozu-API-Token")
        .and_then(|v| v.to_str().ok())
        == Some("kintone-api-token")));
    s.stop().await;
}

#[tokio::test]
async fn at_rest_a_delivered_status_is_on_the_kintone_record_within_3_s_of_the_delivery() {
    let kintone = FakeKintone::start().await;
    let config = writing_to(&kintone);
    // `[writeback]` at its defaults, as an admin who never set it has it.
    let config = &config[..config.find("[writeback]").unwrap()];
    let s = TestServer::with_delivery(config).await;
    let (_, answer) = deliver(&s, &new_record(41)).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    let id = answer["message_id"].as_str().unwrap().to_string();
    let delivered = |r: &Value| r["sms_status"]["value"] == "delivered";
    kintone
        .wait_for(|r| r.first_written(41, delivered).is_some())
        .await;
    // Stamped once kintone answered, a moment after it took the record.
    let message = s
        .wait_until(&id, |m| m["written_back_at"].is_string())
        .await;
    let at: chrono::DateTime<chrono::Utc> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "delivered")
        .unwrap()["at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let taken = kintone
        .records
        .lock()
        .unwrap()
        .first_written(41, delivered)
        .unwrap();
    let lag = (taken - at).num_milliseconds();
    assert!(lag < 3_000, "the record showed delivered {lag} ms after it");
    s.stop().await;
}

/// The config of `writing_to`, polling every second.
fn polling(kintone: &FakeKintone) -> String {
    writing_to(kintone).replacen(
        "trigger_status = \"SMS送信\"",
        "trigger_status = \"SMS送信\"\npoll_interval_seconds = 1",
        1,
    )
}

/// Wait up to 10 s until `count` messages are stored; how many there are.
async fn stored_up_to(s: &TestServer, count: usize) -> usize {
    for _ in 0..100 {
        if all_messages(s).await.len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    all_messages(s).await.len()
}

#[tokio::test]
async fn a_drop_down_status_field_is_polled_with_in_and_its_waiting_records_are_sent() {
    let kintone = FakeKintone::start().await;
    {
        let mut records = kintone.records.lock().unwrap();
        records.status_type = Some("DROP_DOWN");
        for id in 1..=3 {
            records
                .waiting
                .insert(id, moved_to_trigger(id)["record"].clone());
        }
    }
    let s = TestServer::with_delivery(&polling(&kintone)).await;
    assert_eq!(
        stored_up_to(&s, 3).await,
        3,
        "kintone refused the poll's query"
    );
    let polls: Vec<String> = kintone
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "query")
                .map(|(_, q)| q.to_string())
        })
        .filter(|q| q.contains("$id > "))
        .collect();
    assert!(polls[0].contains("sms_status in (\"\")"), "{polls:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_connection_started_over_records_already_waiting_sends_nothing_until_one_changes() {
    let kintone = FakeKintone::start().await;
    {
        let mut records = kintone.records.lock().unwrap();
        for id in 1..=300 {
            let mut record = moved_to_trigger(id)["record"].clone();
            // In the trigger status since long before the connection was made.
            record["更新日時"] = json!({"type": "UPDATED_TIME", "value": "2026-01-05T09:30:00Z"});
            records.waiting.insert(id, record);
            records.revisions.insert(id, 6);
        }
    }
    let s = TestServer::with_delivery(&polling(&kintone)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(all_messages(&s).await.len(), 0, "old records were sent");
    // Someone moves record 7 into the trigger status again, now.
    {
        let mut records = kintone.records.lock().unwrap();
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:00Z").to_string();
        records.waiting.get_mut(&7).unwrap()["更新日時"]["value"] = json!(now);
        records.revisions.insert(7, 8);
    }
    assert_eq!(stored_up_to(&s, 1).await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let messages = all_messages(&s).await;
    assert_eq!(messages.len(), 1, "only the changed record");
    s.stop().await;
}

#[tokio::test]
async fn a_poll_kintone_refuses_is_a_readyz_warning_and_a_metric_until_polls_work_again() {
    let kintone = FakeKintone::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/k/v1/records.json"))
        .and(wiremock::matchers::query_param_contains("query", "$id > "))
        .respond_with(
            wiremock::ResponseTemplate::new(400)
                .set_body_json(fixture("error_query_operator.json")),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&kintone.server)
        .await;
    let s = TestServer::with_delivery(&polling(&kintone)).await;
    // Only this connection's: the other one's kintone (a closed port) fails its polls too.
    let warnings = |body: &Value| -> Vec<String> {
        body["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|w| w.as_str().map(str::to_string))
                    .filter(|w| w.starts_with("kintone:sales"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seen = Vec::new();
    for _ in 0..50 {
        let body: Value = s.get("/readyz").await.json().await.unwrap();
        seen = warnings(&body);
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen.iter().any(
            |w| w.starts_with("kintone:sales: catch-up poll failed") && w.contains("GAIA_IQ11")
        ),
        "{seen:?}"
    );
    assert!(s
        .metrics()
        .await
        .contains("tsunagi_kintone_poll_failures_total{connection=\"kintone:sales\"}"));
    // The third poll works: the warning goes.
    for _ in 0..60 {
        let body: Value = s.get("/readyz").await.json().await.unwrap();
        seen = warnings(&body);
        if seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.is_empty(), "{seen:?}");
    s.stop().await;
}

#[tokio::test]
async fn two_instances_poll_one_connection_one_at_a_time_and_the_second_takes_over_at_a_stop() {
    let kintone = FakeKintone::start().await;
    let config = polling(&kintone);
    // Instances share a queue on PostgreSQL only.
    let Some(a) = TestServer::on_postgres_with(&config).await else {
        return;
    };
    let b = a.another_instance(&config).await;
    // First pages of polls of the `sales` app, by the time they came.
    let first_pages = || async {
        kintone
            .server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| {
                r.url.query_pairs().any(|(k, q)| {
                    k == "query" && q.contains("ステータス in") && q.contains("$id > 0 ")
                })
            })
            .count()
    };
    tokio::time::sleep(std::time::Duration::from_millis(4000)).await;
    let polls = first_pages().await;
    // One poller of an idle app polls at 0, 1 and 3 s (its waits double); two would poll twice that.
    assert!((1..=3).contains(&polls), "{polls} polls in 4 s");
    // The holder stops: the other polls from its next round.
    a.stop().await;
    let before = first_pages().await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        first_pages().await > before,
        "nobody polls after the holder stopped"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_webhook_wakes_an_idle_poller_to_catch_up_the_webhooks_kintone_dropped() {
    let kintone = FakeKintone::start().await;
    let s = TestServer::with_delivery(&polling(&kintone)).await;
    // Idle: the poller's waits grow; it polls at 0, 1, 3, 7 and next at 15 s.
    tokio::time::sleep(std::time::Duration::from_millis(7500)).await;
    // A burst: kintone delivers the webhook of record 1 and drops those of records 2 to 6.
    {
        let mut records = kintone.records.lock().unwrap();
        for id in 2..=6 {
            records
                .waiting
                .insert(id, moved_to_trigger(id)["record"].clone());
        }
    }
    let (status, answer) = deliver(&s, &moved_to_trigger(1)).await;
    assert_eq!(status, 200, "{answer}");
    let started = std::time::Instant::now();
    assert_eq!(stored_up_to(&s, 6).await, 6);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(4000),
        "caught up after {:?}, not at the poll interval",
        started.elapsed()
    );
    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tsunagi_kintone_api_calls_total")
                && l.contains("api=\"records\"")
                && l.contains("connection=\"kintone:sales\"")),
        "kintone calls are not counted"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_edit_between_a_send_and_its_write_back_sends_nothing_more() {
    let kintone = FakeKintone::start().await;
    // kintone takes no write-back for now: the record's status field stays empty.
    wiremock::Mock::given(wiremock::matchers::method("PUT"))
        .and(wiremock::matchers::path("/k/v1/records.json"))
        .respond_with(wiremock::ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&kintone.server)
        .await;
    let s = TestServer::with_delivery(&polling(&kintone)).await;
    let (status, answer) = deliver(&s, &moved_to_trigger(7)).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &json!("queued")),
        "{answer}"
    );
    // Someone edits the record (a note, a typo): revision 7, still in the trigger status and
    // with no SMS status, where the poller sees it.
    {
        let mut records = kintone.records.lock().unwrap();
        records
            .waiting
            .insert(7, moved_to_trigger(7)["record"].clone());
        records.revisions.insert(7, 7);
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(all_messages(&s).await.len(), 1, "the edit sent again");
    s.stop().await;
}

/// A connection of `kintone` that sends on UPDATE_RECORD only while 「SMS送信」 is checked.
fn on_check_box(kintone: &FakeKintone) -> String {
    writing_to(kintone).replacen(
        "trigger_status = \"SMS送信\"",
        "trigger_status = \"SMS送信\"\ntrigger_field = \"SMS送信\"",
        1,
    )
}

/// The UPDATE_RECORD webhook of record 7 at `revision`, its 「SMS送信」 check box as given.
fn edited(revision: u64, checked: &[&str]) -> Value {
    let mut webhook = booking("webhook_update_record.json");
    webhook["id"] = json!(format!("01J9ZQEDIT{revision:016}"));
    set_field(&mut webhook, "$revision", json!(revision.to_string()));
    webhook["record"]["SMS送信"] = json!({"type": "CHECK_BOX", "value": checked});
    webhook
}

#[tokio::test]
async fn a_trigger_field_sends_once_and_is_cleared_with_the_first_write_back() {
    let kintone = FakeKintone::start().await;
    kintone.records.lock().unwrap().trigger_options = Some(vec!["送信する"]);
    let s = TestServer::with_delivery(&on_check_box(&kintone)).await;
    // An edit with the box unchecked is no request to send.
    let (_, answer) = deliver(&s, &edited(4, &[])).await;
    assert_eq!(answer["result"], "ignored", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("SMS送信"),
        "{answer}"
    );
    let (_, answer) = deliver(&s, &edited(5, &["送信する"])).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    kintone.wait_for(|r| r.wrote(7, "SMS送信", json!([]))).await;
    {
        let records = kintone.records.lock().unwrap();
        let cleared = records
            .updates
            .iter()
            .find(|(_, record)| record.get("SMS送信").is_some())
            .unwrap();
        assert_ne!(
            cleared.1["sms_status"]["value"], "",
            "cleared with a status: {cleared:?}"
        );
    }
    // Someone edits the record again, the box now clear: nothing more is sent.
    let revision = kintone.records.lock().unwrap().revisions[&7] + 1;
    let (_, answer) = deliver(&s, &edited(revision, &[])).await;
    assert_eq!(answer["result"], "ignored", "{answer}");
    assert_eq!(s.stored_messages().await, 1);
    s.stop().await;
}

#[tokio::test]
async fn japanese_status_values_are_written_and_a_drop_down_lacking_one_is_a_readyz_warning() {
    let kintone = FakeKintone::start().await;
    kintone.records.lock().unwrap().status_type = Some("DROP_DOWN");
    let config = writing_to(&kintone).replacen(
        "status_field = \"sms_status\"",
        "status_field = \"sms_status\"\nstatus_values = { sent = \"送信済\", delivered = \"配信済\" }",
        1,
    );
    let s = TestServer::with_delivery(&config).await;
    let (_, answer) = deliver(&s, &booking("webhook_add_record.json")).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    kintone
        .wait_for(|r| r.wrote(7, "sms_status", "配信済"))
        .await;
    // The fake's drop-down has no options at all: every value written is missing from it.
    let mut warning = String::new();
    for _ in 0..50 {
        let body: Value = s.get("/readyz").await.json().await.unwrap();
        if let Some(w) = body["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|w| w.starts_with("kintone:sales: the status field"))
        {
            warning = w.to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        warning.contains("配信済") && warning.contains("送信済"),
        "{warning:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_opt_out_option_refuses_only_a_record_with_that_option_checked() {
    let config = CONNECTIONS.replacen(
        "opt_out_field = \"配信停止\"",
        "opt_out_field = \"配信停止\"\nopt_out_option = \"停止\"",
        1,
    );
    let s = TestServer::with_delivery(&config).await;
    let mut receives = booking("webhook_add_record.json");
    receives["record"]["配信停止"] = json!({"type": "CHECK_BOX", "value": ["受け取る"]});
    let (_, answer) = deliver(&s, &receives).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    let mut stopped = booking("webhook_add_record.json");
    stopped["id"] = json!("01J9ZQ4K7T3W8XGQ2V5N6STOP1");
    set_field(&mut stopped, "$revision", json!("9"));
    stopped["record"]["配信停止"] = json!({"type": "CHECK_BOX", "value": ["受け取る", "停止"]});
    let (_, answer) = deliver(&s, &stopped).await;
    assert_eq!(answer["result"], "rejected", "{answer}");
    assert_eq!(answer["error"]["code"], "number_blocked");
    s.stop().await;
}

#[tokio::test]
async fn add_record_webhooks_kintone_dropped_past_60_are_caught_up_and_older_records_never_sent() {
    let kintone = FakeKintone::start().await;
    {
        // Records added before the connection started.
        let mut records = kintone.records.lock().unwrap();
        for id in 1..=5 {
            records.added.insert(id, new_record(id)["record"].clone());
        }
    }
    let s = TestServer::with_delivery(&polling(&kintone)).await;
    // The poller marks the newest record at its first poll.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    {
        let mut records = kintone.records.lock().unwrap();
        for id in 6..=105 {
            records.added.insert(id, new_record(id)["record"].clone());
        }
    }
    // kintone delivers the first 60 webhooks of the minute and drops the rest.
    for id in 6..=65 {
        // The poller may have found the record first: its webhook is then a duplicate.
        let (_, answer) = deliver(&s, &new_record(id)).await;
        assert!(
            ["queued", "duplicate"].contains(&answer["result"].as_str().unwrap()),
            "{answer}"
        );
    }
    assert_eq!(stored_up_to(&s, 100).await, 100);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let messages = all_messages(&s).await;
    assert_eq!(messages.len(), 100, "one message per new record");
    let mut numbers: Vec<String> = messages
        .iter()
        .map(|m| m["to"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 100, "none sent twice");
    assert!(
        !numbers
            .iter()
            .any(|n| n.ends_with("20000001") || n.ends_with("20000005")),
        "an older record was sent"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_guest_space_app_behind_basic_auth_gets_its_write_back_with_both_headers() {
    let kintone = FakeKintone::start_at("/k/guest/5/v1/").await;
    let config = writing_to(&kintone).replacen(
        "api_token = \"kintone-api-token\"",
        "api_token = \"kintone-api-token\"\nguest_space_id = 5\nbasic_auth_user = \"gate\"\nbasic_auth_password = \"gate-pass\"",
        1,
    );
    let s = TestServer::with_delivery(&config).await;
    let (_, answer) = deliver(&s, &booking("webhook_add_record.json")).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    kintone
        .wait_for(|r| r.wrote(7, "sms_status", "delivered"))
        .await;
    let requests = kintone.server.received_requests().await.unwrap();
    assert!(!requests.is_empty());
    // "gate:gate-pass" in base64.
    for r in &requests {
        assert!(r.url.path().starts_with("/k/guest/5/v1/"), "{}", r.url);
        assert_eq!(
            r.headers["x-cybozu-api-token"], "kintone-api-token",
            "{}",
            r.url
        );
        assert_eq!(
            r.headers["authorization"], "Basic Z2F0ZTpnYXRlLXBhc3M=",
            "{}",
            r.url
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn an_action_on_delivered_moves_the_record_once_its_message_is_delivered() {
    let kintone = FakeKintone::start().await;
    let config = writing_to(&kintone).replacen(
        "status_field = \"sms_status\"",
        "status_field = \"sms_status\"\naction_on_delivered = \"完了にする\"",
        1,
    );
    let s = TestServer::with_delivery(&config).await;
    let (_, answer) = deliver(&s, &booking("webhook_add_record.json")).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    kintone.wait_for(|r| !r.actions.is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    {
        let records = kintone.records.lock().unwrap();
        assert_eq!(records.actions, [(7, "完了にする".to_string())], "once");
        assert!(records.answered(7));
    }
    s.stop().await;
}

#[tokio::test]
async fn the_poller_catches_a_checked_trigger_field_whose_webhook_was_lost_and_sends_it_once() {
    let kintone = FakeKintone::start().await;
    {
        let mut records = kintone.records.lock().unwrap();
        records.trigger_options = Some(vec!["送信する"]);
        for (id, checked) in [(8, json!(["送信する"])), (9, json!([]))] {
            let mut record = new_record(id)["record"].clone();
            record["SMS送信"] = json!({"type": "CHECK_BOX", "value": checked});
            records.added.insert(id, record);
        }
    }
    let config = on_check_box(&kintone)
        .replacen(
            r#"trigger_events = ["ADD_RECORD", "UPDATE_RECORD", "UPDATE_STATUS"]"#,
            r#"trigger_events = ["UPDATE_RECORD"]"#,
            1,
        )
        .replacen("reply_field", "poll_interval_seconds = 1\nreply_field", 1);
    let s = TestServer::with_delivery(&config).await;
    kintone.wait_for(|r| r.wrote(8, "SMS送信", json!([]))).await;
    // Polls go on with the box cleared: nothing more is sent, and record 9 was never asked.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let messages = all_messages(&s).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0]["to"].as_str().unwrap().ends_with("0008"),
        "{messages:?}"
    );
    s.stop().await;
}

/// The kintone requests `connection` made, from `tsunagi_kintone_api_calls_total`.
async fn api_calls(s: &TestServer, connection: &str) -> u64 {
    let label = format!("connection=\"{connection}\"");
    s.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("tsunagi_kintone_api_calls_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn an_idle_app_costs_at_most_300_kintone_requests_a_day_on_the_service_clock() {
    let kintone = FakeKintone::start().await;
    // A name of its own: metrics are per process, and `cargo test` runs every test in one.
    let config = writing_to(&kintone)
        .replacen(
            "trigger_status = \"SMS送信\"",
            "trigger_status = \"SMS送信\"\npoll_interval_seconds = 60",
            1,
        )
        .replacen("name = \"sales\"", "name = \"idle_day\"", 1);
    let s = TestServer::with_delivery(&config).await;
    let polls = || async {
        kintone
            .server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.query().is_some_and(|q| q.contains("asc")))
            .count()
    };
    let wait_for_poll = |seen: usize| async move {
        for _ in 0..40 {
            if polls().await > seen {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        false
    };
    assert!(wait_for_poll(0).await, "the first poll comes at start");
    // A day in steps of the longest idle wait. A step that lands while a poll is still under
    // way is waited out from the moved time, so that poll comes a step later: the day's count
    // is what the service made, whatever the steps.
    for _ in 0..144 {
        let seen = polls().await;
        s.advance(600);
        if wait_for_poll(seen).await {
            // Let the poll finish (its lease, its mark) before the clock moves again.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let calls = api_calls(&s, "kintone:idle_day").await;
    let polled = polls().await as u64;
    assert!(polled >= 120, "{polled} polls in a day");
    assert!(calls <= 300, "{calls} kintone requests in an idle day");
    eprintln!("idle day: {calls} kintone requests, {polled} polls");
    s.stop().await;
}

use serde_json::{json, Value};

use crate::harness::{delivered_events, event_statuses, TestServer};

async fn sent(s: &TestServer, to: &str, body: &str) -> String {
    let (status, b) = s.send(json!({"to": to, "body": body})).await;
    assert_eq!(status, 202, "{b}");
    b["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn numbers_ending_9990_come_back_undelivered() {
    let s = TestServer::start().await;
    let id = sent(&s, "090-1234-9990", "x").await;
    let m = s.wait_for(&id, |st| st == "undelivered").await;
    assert!(m["status_detail"].as_str().unwrap().contains("unreachable"));
    let inbox: Value = s
        .get("/v1/sandbox/inbox?to=09012349990")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inbox, json!([]), "an unreachable handset receives nothing");
    s.stop().await;
}

#[tokio::test]
async fn numbers_ending_9991_are_refused_by_the_provider_and_fail() {
    let s = TestServer::start().await;
    let id = sent(&s, "090-1234-9991", "x").await;
    let m = s.wait_for(&id, |st| st == "failed").await;
    assert!(m["status_detail"].as_str().unwrap().contains("refused"));
    let events = event_statuses(&m);
    assert_eq!(events, ["queued", "sending", "failed"]);
    s.stop().await;
}

#[tokio::test]
async fn transient_provider_errors_are_retried_with_backoff() {
    let s = TestServer::start().await;
    let id = sent(&s, "090-1234-9992", "x").await;
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(
        delivered_events(&m),
        ["queued", "sending", "queued", "sending", "delivered"]
    );
    assert!(m["events"][2]["detail"]
        .as_str()
        .unwrap()
        .contains("retrying"));
    assert_eq!(s.provider_calls(&id), 2, "one failed attempt, one retry");
    s.stop().await;
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_given_up_with_the_reason() {
    let s = TestServer::with_delivery("max_attempts = 1").await;
    let id = sent(&s, "090-1234-9992", "x").await;
    let m = s.wait_for(&id, |st| st == "failed").await;
    assert!(
        m["status_detail"]
            .as_str()
            .unwrap()
            .contains("gave up after 1 attempts"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_inbox_shows_one_entry_per_send_newest_first_with_the_sender() {
    let s = TestServer::start().await;
    let first = sent(&s, "080-5555-1234", "first").await;
    s.wait_for(&first, |st| st == "delivered").await;
    let (_, b) = s
        .send(json!({"to": "08055551234", "body": "second", "from": "SHOP"}))
        .await;
    let second = b["id"].as_str().unwrap().to_string();
    s.wait_for(&second, |st| st == "delivered").await;
    let inbox: Value = s
        .get("/v1/sandbox/inbox?to=%2B818055551234")
        .await
        .json()
        .await
        .unwrap();
    let inbox = inbox.as_array().unwrap();
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0]["message_id"], second);
    assert_eq!(inbox[0]["body"], "second");
    assert_eq!(inbox[0]["from"], "SHOP");
    assert_eq!(inbox[0]["to"], "+81 80-****-1234");
    assert_eq!(inbox[1]["message_id"], first);
    assert_eq!(inbox[1]["from"], "TSUNAGI");
    let other: Value = s
        .get("/v1/sandbox/inbox?to=09012345678")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other, json!([]));
    s.stop().await;
}

#[tokio::test]
async fn inbox_needs_a_valid_handset_number() {
    let s = TestServer::start().await;
    let r = s.get("/v1/sandbox/inbox").await;
    assert_eq!(r.status(), 422);
    let r = s.get("/v1/sandbox/inbox?to=nope").await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "invalid_phone_number");
    s.stop().await;
}

#[tokio::test]
async fn a_handset_reply_is_linked_to_the_latest_message_and_shown_on_it() {
    let s = TestServer::start().await;
    let older = sent(&s, "090-2222-3333", "older").await;
    let latest = sent(&s, "090-2222-3333", "ご予約を確認しますか").await;
    s.wait_for(&latest, |st| st == "delivered").await;
    let r = s
        .post(
            "/v1/sandbox/reply",
            json!({"from": "09022223333", "to": "TSUNAGI", "body": "はい"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["message_id"], latest);
    assert_eq!(reply["from"], "+81 90-****-3333");

    let m: Value = s
        .get(&format!("/v1/messages/{latest}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["replies"][0]["body"], "はい");
    assert_eq!(m["replies"][0]["from"], "+81 90-****-3333");
    let m: Value = s
        .get(&format!("/v1/messages/{older}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["replies"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn a_reply_with_no_conversation_is_stored_unlinked_and_bad_replies_are_refused() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/v1/sandbox/reply",
            json!({"from": "09099998888", "to": "TSUNAGI", "body": "hello?"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let reply: Value = r.json().await.unwrap();
    assert!(reply["message_id"].is_null());
    let r = s
        .post(
            "/v1/sandbox/reply",
            json!({"from": "nobody", "to": "TSUNAGI", "body": "x"}),
        )
        .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("invalid_phone_number"), Some("from"))
    );
    let r = s
        .post(
            "/v1/sandbox/reply",
            json!({"from": "09099998888", "to": "TSUNAGI", "body": ""}),
        )
        .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["field"], "body");
    let r = s
        .post(
            "/v1/sandbox/reply",
            json!({"from": "09099998888", "body": "x"}),
        )
        .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["field"], "to");
    s.stop().await;
}

#[tokio::test]
async fn a_send_slower_than_its_lease_is_not_taken_over_while_its_worker_lives() {
    // The provider takes three leases to answer; the worker's heartbeat keeps the job its own,
    // so nothing claims it again and the provider is asked once.
    let s = TestServer::with_provider_delay("lease_seconds = 1", std::time::Duration::from_secs(3))
        .await;
    let id = sent(&s, "090-1234-5678", "slow").await;
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(s.provider_calls(&id), 1);
    assert_eq!(delivered_events(&m), ["queued", "sending", "delivered"]);
    s.stop().await;
}

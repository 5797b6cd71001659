use serde_json::{json, Value};

use crate::harness::TestServer;

async fn send_with_key(s: &TestServer, key: &str, body: Value) -> (u16, Value) {
    let r = s
        .request(reqwest::Method::POST, "/v1/messages")
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_replay_with_the_same_key_and_body_returns_the_original_response_and_sends_once() {
    let s = TestServer::start().await;
    let body = json!({"to": "09012345678", "body": "once only"});
    let (status1, first) = send_with_key(&s, "order-1", body.clone()).await;
    let (status2, second) = send_with_key(&s, "order-1", body.clone()).await;
    assert_eq!((status1, status2), (202, 202));
    assert_eq!(first, second);
    let list: Value = s.get("/v1/messages").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let id = first["id"].as_str().unwrap();
    s.wait_for(id, |st| st == "delivered").await;
    assert_eq!(s.provider_calls(id), 1, "the provider was asked once");
    s.stop().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_idempotency_key_reused() {
    let s = TestServer::start().await;
    send_with_key(&s, "order-2", json!({"to": "09012345678", "body": "first"})).await;
    let (status, problem) = send_with_key(
        &s,
        "order-2",
        json!({"to": "09012345678", "body": "second"}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let list: Value = s.get("/v1/messages").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_store_one_message() {
    let s = TestServer::start().await;
    let body = json!({"to": "09012345678", "body": "raced"});
    let results =
        futures_util::future::join_all((0..20).map(|_| send_with_key(&s, "race", body.clone())))
            .await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|(st, b)| {
            assert_eq!(*st, 202, "{b}");
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let list: Value = s.get("/v1/messages").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let id = ids.into_iter().next().unwrap();
    s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(s.provider_calls(&id), 1, "the provider was asked once");
    s.stop().await;
}

#[tokio::test]
async fn different_keys_make_different_messages() {
    let s = TestServer::start().await;
    let body = json!({"to": "09012345678", "body": "same text"});
    let (_, a) = send_with_key(&s, "k-a", body.clone()).await;
    let (_, b) = send_with_key(&s, "k-b", body).await;
    assert_ne!(a["id"], b["id"]);
    s.stop().await;
}

#[tokio::test]
async fn a_replay_is_answered_from_the_stored_response_before_any_rule_runs_again() {
    let s = TestServer::start().await;
    // The cancellation-history check (answered by the deny list) passes the first time.
    let body = json!({
        "to": "09012345678",
        "body": "once only",
        "number_confirmed_on": "2026-01-31",
    });
    let (status, first) = send_with_key(&s, "order-3", body.clone()).await;
    assert_eq!(status, 202, "{first}");
    // Rules change after the message was accepted: the number is now denied.
    let (status, _) = s
        .call("/v1/numbers/deny", json!({"number": "09012345678"}))
        .await;
    assert_eq!(status, 201);
    let (status, replay) = send_with_key(&s, "order-3", body).await;
    assert_eq!(
        (status, &replay),
        (202, &first),
        "a request that was accepted stays accepted on replay"
    );
    // A new key meets today's rules.
    let (status, refused) = send_with_key(
        &s,
        "order-4",
        json!({"to": "09012345678", "body": "once only"}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("number_blocked"))
    );
    s.stop().await;
}

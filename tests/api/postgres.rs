//! The service on PostgreSQL (`database_url = "postgres://…"`), when `TSUNAGI_TEST_POSTGRES_URL`
//! names a server; without it these pass without running.

use serde_json::json;

use crate::harness::{delivered_events, TestServer};

#[tokio::test]
async fn a_message_is_accepted_delivered_and_replayed_on_postgres() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    let request = json!({"to": "090-1234-5678", "body": "Hello from tsunagi"});
    let send = || {
        s.request(reqwest::Method::POST, "/v1/messages")
            .header("Idempotency-Key", "order-1042")
            .json(&request)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 202);
    let body: serde_json::Value = first.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    let m = s.wait_for(id, |st| st == "delivered").await;
    assert_eq!(delivered_events(&m), ["queued", "sending", "delivered"]);
    assert_eq!(
        s.text_of("09012345678", &body["id"]).await,
        "Hello from tsunagi"
    );
    let replay: serde_json::Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(
        replay, body,
        "the same key and body replay the first answer"
    );
    assert_eq!(s.stored_messages().await, 1);
    s.stop().await;
}

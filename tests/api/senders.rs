//! `delivery.senders`: requests may name only the configured sender ids.

use serde_json::json;

use crate::harness::TestServer;

#[tokio::test]
async fn only_configured_senders_may_be_named_and_the_default_needs_none() {
    let s = TestServer::with_delivery(
        "default_from = \"SHOP\"\nsenders = [\"SHOP\", \"0005-012-345\"]\n",
    )
    .await;
    let (status, p) = s
        .send(json!({"to": "090-1234-5678", "body": "hi", "from": "OTHER"}))
        .await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("invalid_request"), Some("from")),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("delivery.senders"),
        "{p}"
    );
    let (status, p) = s
        .send(json!({"to": "090-1234-5678", "body": "hi", "from": "０００５０１２３４５"}))
        .await;
    assert_eq!(status, 202, "a listed code in another form: {p}");
    let m = s
        .wait_for(p["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    assert_eq!(m["status"], "delivered");
    let inbox: serde_json::Value = s
        .get("/v1/sandbox/inbox?to=09012345678")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inbox[0]["from"], "0005012345");
    let (status, p) = s.send(json!({"to": "090-1234-5678", "body": "hi"})).await;
    assert_eq!(status, 202, "{p}");
    let (status, p) = s
        .call("/v1/otp", json!({"to": "090-1234-5678", "from": "OTHER"}))
        .await;
    assert_eq!((status, p["field"].as_str()), (422, Some("from")), "{p}");
    s.stop().await;
}

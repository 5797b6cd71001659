use reqwest::Method;
use serde_json::json;

use crate::harness::{delivered_events, is_final, TestServer};

#[tokio::test]
async fn accepted_message_is_queued_then_delivered_with_every_event_recorded() {
    let s = TestServer::start().await;
    let (status, body) = s
        .send(json!({"to": "090-1234-5678", "body": "Hello from tsunagi"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["to"], "+81 90-****-5678");
    assert_eq!(body["encoding"], "gsm7");
    assert_eq!(body["segments"], 1);
    assert_eq!(body["characters"], 18);
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"));

    let m = s.wait_for(id, |st| st == "delivered").await;
    assert_eq!(delivered_events(&m), ["queued", "sending", "delivered"]);
    assert_eq!(m["source"], "api");
    assert_eq!(m["clicks"], 0);
    assert_eq!(m["to"], "+81 90-****-5678");
    assert!(m.get("body").is_none(), "bodies are not echoed back: {m}");
    s.stop().await;
}

#[tokio::test]
async fn every_accepted_number_form_is_stored_as_the_same_recipient() {
    let s = TestServer::start().await;
    for to in [
        "09012345678",
        "090-1234-5678",
        "０９０－１２３４－５６７８",
        "+81 90 1234 5678",
        "+819012345678",
    ] {
        let (status, body) = s.send(json!({"to": to, "body": "x"})).await;
        assert_eq!(status, 202, "{to}: {body}");
        assert_eq!(body["to"], "+81 90-****-5678", "{to}");
    }
    s.stop().await;
}

#[tokio::test]
async fn template_merge_fields_are_filled_before_sending() {
    let s = TestServer::start().await;
    let (status, body) = s
        .send(json!({
            "to": "080-1111-2222",
            "template": "{{LastName}}様 ご予約は{{date}}です",
            "vars": {"LastName": "山田", "date": "12月1日"}
        }))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["encoding"], "ucs2");
    let id = body["id"].as_str().unwrap();
    s.wait_for(id, |st| st == "delivered").await;
    let inbox: serde_json::Value = s
        .get("/v1/sandbox/inbox?to=08011112222")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inbox[0]["body"], "山田様 ご予約は12月1日です");
    s.stop().await;
}

#[tokio::test]
async fn metadata_and_sender_are_kept_with_the_message() {
    let s = TestServer::start().await;
    let (_, body) = s
        .send(
            json!({"to": "07012345678", "body": "x", "from": "MYSHOP", "metadata": {"order": 42}}),
        )
        .await;
    let id = body["id"].as_str().unwrap();
    let m = s
        .get(&format!("/v1/messages/{id}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(m["from"], "MYSHOP");
    assert_eq!(m["metadata"], json!({"order": 42}));
    s.stop().await;
}

#[tokio::test]
async fn list_is_newest_first_filters_by_status_and_pages_with_a_cursor() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, b) = s
            .send(json!({"to": "09012345678", "body": format!("m{i}")}))
            .await;
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    let (status, failed) = s
        .send(json!({"to": "09012349991", "body": "refused"}))
        .await;
    assert_eq!(status, 202, "{failed}");
    let failed_id = failed["id"].as_str().unwrap().to_string();
    for id in ids.iter().chain([&failed_id]) {
        s.wait_for(id, is_final).await;
    }

    let page1: serde_json::Value = s.get("/v1/messages?limit=4").await.json().await.unwrap();
    let got: Vec<&str> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [failed_id.as_str(), &ids[4], &ids[3], &ids[2]]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: serde_json::Value = s
        .get(&format!("/v1/messages?limit=4&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = page2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [&ids[1], &ids[0]]);
    assert!(page2["next_cursor"].is_null());

    let only_failed: serde_json::Value = s
        .get("/v1/messages?status=failed")
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = only_failed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [failed_id.as_str()]);
    s.stop().await;
}

#[tokio::test]
async fn unknown_message_id_is_not_found() {
    let s = TestServer::start().await;
    for id in ["msg_01M88421YYFX7PAYTHAZCE4206", "nonsense"] {
        let r = s.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(r.status(), 404);
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["code"], "not_found");
    }
    let r = s
        .request(
            Method::DELETE,
            "/v1/messages/msg_01M88421YYFX7PAYTHAZCE4206",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn an_expiry_before_the_send_or_too_far_ahead_is_refused_naming_expires_at_and_stores_nothing(
) {
    let s = TestServer::start().await;
    let now = chrono::Utc::now();
    for (expires_at, words) in [
        (
            (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "must be after",
        ),
        (
            (now + chrono::Duration::hours(73)).to_rfc3339(),
            "at most 72 hours",
        ),
        ("tomorrow".to_string(), "expires_at"),
    ] {
        let (status, p) = s
            .send(json!({"to": "090-1234-5678", "body": "x", "expires_at": expires_at}))
            .await;
        assert_eq!(
            (status, p["code"].as_str(), p["field"].as_str()),
            (422, Some("invalid_request"), Some("expires_at")),
            "{p}"
        );
        assert!(p["detail"].as_str().unwrap().contains(words), "{p}");
    }
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

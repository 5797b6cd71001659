use chrono::{Duration, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::TestServer;

fn in_ms(ms: i64) -> String {
    (Utc::now() + Duration::milliseconds(ms)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The service's time (moved with `advance`) plus `seconds`.
fn service_time_in(s: &TestServer, seconds: i64) -> chrono::DateTime<Utc> {
    use tsunagi::clock::Clock;
    s.clock.now() + Duration::seconds(seconds)
}

#[tokio::test]
async fn a_scheduled_message_waits_for_send_at_then_fires() {
    let s = TestServer::start().await;
    let send_at = service_time_in(&s, 3600);
    let (status, b) = s
        .send(json!({"to": "09012345678", "body": "later", "send_at": send_at.to_rfc3339()}))
        .await;
    assert_eq!((status, b["status"].as_str()), (202, Some("scheduled")));
    assert!(b["send_at"].is_string());
    let id = b["id"].as_str().unwrap();
    // Half-way there it still waits; an ordinary message sent meanwhile is delivered first,
    // which shows the dispatcher ran and passed the scheduled one over.
    s.advance(1800);
    let (_, now) = s.send(json!({"to": "09012345678", "body": "now"})).await;
    s.wait_for(now["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    let early: Value = s
        .get(&format!("/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(early["status"], "scheduled");
    assert_eq!(s.provider_calls(id), 0);
    s.advance(1800);
    let m = s.wait_for(id, |st| st == "delivered").await;
    let sending_at = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "sending")
        .unwrap()["at"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<Utc>>()
        .unwrap();
    assert!(
        sending_at >= send_at - Duration::milliseconds(1),
        "sent before its time"
    );
    assert!(
        sending_at < send_at + Duration::seconds(2),
        "sent late: {sending_at} vs {send_at}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_send_at_in_the_past_is_queued_at_once() {
    let s = TestServer::start().await;
    let (_, b) = s
        .send(json!({"to": "09012345678", "body": "now", "send_at": in_ms(-60_000)}))
        .await;
    assert_eq!(b["status"], "queued");
    s.stop().await;
}

#[tokio::test]
async fn a_scheduled_message_can_be_canceled_and_never_sends() {
    let s = TestServer::start().await;
    let send_at = service_time_in(&s, 600).to_rfc3339();
    let (_, b) = s
        .send(json!({"to": "09012345678", "body": "cancel me", "send_at": send_at}))
        .await;
    let id = b["id"].as_str().unwrap();
    let r = s
        .request(Method::DELETE, &format!("/v1/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["status"], "canceled");
    // Well past its time, a message sent after it is delivered while it stays canceled.
    s.advance(3600);
    let (_, later) = s.send(json!({"to": "09012345678", "body": "later"})).await;
    let later = later["id"].as_str().unwrap();
    s.wait_for(later, |st| st == "delivered").await;
    let m: Value = s
        .get(&format!("/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["status"], "canceled");
    assert_eq!(s.provider_calls(id), 0, "the provider never saw it");
    let inbox: Value = s
        .get("/v1/sandbox/inbox?to=09012345678")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [later]);
    s.stop().await;
}

#[tokio::test]
async fn a_message_already_sent_is_not_cancelable() {
    let s = TestServer::start().await;
    let (_, b) = s
        .send(json!({"to": "09012345678", "body": "too late"}))
        .await;
    let id = b["id"].as_str().unwrap();
    s.wait_for(id, |st| st == "delivered").await;
    let r = s
        .request(Method::DELETE, &format!("/v1/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "not_cancelable");
    s.stop().await;
}

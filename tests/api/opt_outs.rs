//! Opt-out by reply and over the API: STOP/停止 refuses the sender's next messages until
//! START/再開, with the `[opt_outs]` exemptions for transactional messages and codes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::TestServer;

const HANDSET: &str = "090-3333-4444";

async fn reply(s: &TestServer, body: &str) -> Value {
    let (status, reply) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": HANDSET, "to": "TSUNAGI", "body": body}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    reply
}

async fn opt_outs(s: &TestServer) -> Vec<Value> {
    s.opt_outs_of("09033334444").await
}

#[tokio::test]
async fn a_stop_reply_refuses_the_senders_next_message_until_the_handset_says_start() {
    let s = TestServer::start().await;
    let (status, first) = s.send(json!({"to": HANDSET, "body": "セール開催中"})).await;
    assert_eq!(status, 202);
    let first_id = first["id"].as_str().unwrap();
    s.wait_for(first_id, |st| st == "delivered").await;
    reply(&s, "ＳＴＯＰ").await;

    let listed = opt_outs(&s).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["via"], "reply");
    assert_eq!(listed[0]["from"], "TSUNAGI");
    assert_eq!(listed[0]["keyword"], "ＳＴＯＰ");
    assert_eq!(listed[0]["message_id"], first_id);
    assert_eq!(listed[0]["to"], "+81 90-****-4444");

    for body in [
        json!({"to": HANDSET, "body": "次回のセール"}),
        json!({"to": HANDSET, "body": "ご予約の確認", "transactional": true}),
    ] {
        let (status, p) = s.send(body).await;
        assert_eq!(status, 422, "{p}");
        assert_eq!(p["code"], "number_blocked");
        assert_eq!(p["field"], "to");
        assert!(p["detail"].as_str().unwrap().contains("opted out"), "{p}");
    }
    let (status, other) = s
        .send(json!({"to": HANDSET, "body": "別の送信元", "from": "SHOP"}))
        .await;
    assert_eq!(status, 202, "another sender is not refused: {other}");

    reply(&s, "再開").await;
    assert!(opt_outs(&s).await.is_empty());
    let (status, again) = s.send(json!({"to": HANDSET, "body": "次回のセール"})).await;
    assert_eq!(status, 202, "{again}");
    s.stop().await;
}

#[tokio::test]
async fn a_reply_that_only_mentions_stop_is_just_a_reply() {
    let s = TestServer::start().await;
    let (_, first) = s.send(json!({"to": HANDSET, "body": "ご予約"})).await;
    s.wait_for(first["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    reply(&s, "予約は停止しないでください").await;
    assert!(opt_outs(&s).await.is_empty());
    let (status, _) = s.send(json!({"to": HANDSET, "body": "ご予約"})).await;
    assert_eq!(status, 202);
    s.stop().await;
}

#[tokio::test]
async fn exempt_transactional_messages_and_codes_still_reach_an_opted_out_number() {
    let s =
        TestServer::with_delivery("[opt_outs]\nexempt_transactional = true\nexempt_otp = true\n")
            .await;
    let (status, added) = s
        .call(
            "/v1/opt-outs",
            json!({"to": HANDSET, "reason": "asked at the counter"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["from"], "*");
    assert_eq!(added["via"], "api");
    let (status, p) = s.send(json!({"to": HANDSET, "body": "セール"})).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));
    let (status, p) = s
        .send(json!({"to": HANDSET, "body": "ご予約の確認", "transactional": true}))
        .await;
    assert_eq!(status, 202, "{p}");
    let (status, p) = s.call("/v1/otp", json!({"to": HANDSET})).await;
    assert_eq!(status, 201, "{p}");
    s.stop().await;
}

#[tokio::test]
async fn codes_are_refused_to_an_opted_out_number_unless_exempt() {
    let s = TestServer::start().await;
    let (status, _) = s.call("/v1/opt-outs", json!({"to": HANDSET})).await;
    assert_eq!(status, 201);
    let (status, p) = s.call("/v1/otp", json!({"to": HANDSET})).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("number_blocked")),
        "{p}"
    );
    s.stop().await;
}

#[tokio::test]
async fn opt_outs_are_added_per_sender_listed_and_removed_over_the_api() {
    let s = TestServer::start().await;
    let (status, added) = s
        .call(
            "/v1/opt-outs",
            json!({"to": "+819033334444", "from": "TSUNAGI"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["from"], "TSUNAGI");
    assert_eq!(opt_outs(&s).await.len(), 1);
    let (status, p) = s
        .call(
            "/v1/opt-outs",
            json!({"to": HANDSET, "from": "not a sender!"}),
        )
        .await;
    assert_eq!((status, p["field"].as_str()), (422, Some("from")), "{p}");
    let (status, p) = s.call("/v1/opt-outs", json!({"to": "nobody"})).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("invalid_phone_number"))
    );

    let remove = |from: &str| {
        s.request(
            Method::DELETE,
            &format!("/v1/opt-outs/09033334444?from={from}"),
        )
        .send()
    };
    assert_eq!(
        remove("*").await.unwrap().status(),
        404,
        "no opt-out from every sender"
    );
    assert_eq!(remove("TSUNAGI").await.unwrap().status(), 204);
    assert_eq!(remove("TSUNAGI").await.unwrap().status(), 404);
    assert!(opt_outs(&s).await.is_empty());
    let r = s
        .client
        .get(format!("{}/v1/opt-outs", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

async fn reviews(s: &TestServer, query: &str) -> Value {
    let r = s.get(&format!("/v1/opt-outs/review{query}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn settle(s: &TestServer, id: &Value, action: &str) -> (u16, Value) {
    s.call(
        &format!("/v1/opt-outs/review/{id}"),
        json!({ "action": action }),
    )
    .await
}

#[tokio::test]
async fn a_reply_asking_to_stop_in_a_sentence_is_held_until_a_person_opts_the_number_out() {
    let s = TestServer::start().await;
    let (_, first) = s.send(json!({"to": HANDSET, "body": "セール開催中"})).await;
    let first_id = first["id"].as_str().unwrap();
    s.wait_for(first_id, |st| st == "delivered").await;
    reply(&s, "停止してください").await;
    assert!(opt_outs(&s).await.is_empty(), "held, not opted out");
    let (status, _) = s.send(json!({"to": HANDSET, "body": "次回のセール"})).await;
    assert_eq!(status, 202, "a held reply refuses nothing yet");
    let shown: Value = s
        .get(&format!("/v1/messages/{first_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["replies"][0]["body"], "停止してください", "{shown}");

    let page = reviews(&s, "?status=open").await;
    let held = &page["data"][0];
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(held["to"], "+81 90-****-4444");
    assert_eq!(held["from"], "TSUNAGI");
    assert_eq!(held["body"], "停止してください");
    assert_eq!(held["message_id"], first_id);
    assert_eq!(held["status"], "open");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("tsunagi_replies_held_for_review_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tsunagi_opt_out_reviews_open 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("33334444"), "metrics never carry numbers");

    let (status, settled) = settle(&s, &held["id"], "opt_out").await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["status"], "opted_out");
    assert!(settled["settled_at"].is_string(), "{settled}");
    let listed = opt_outs(&s).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0]["from"], &listed[0]["keyword"]),
        (&json!("TSUNAGI"), &json!("停止してください"))
    );
    let (status, p) = s.send(json!({"to": HANDSET, "body": "次回のセール"})).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));

    let (status, again) = settle(&s, &held["id"], "opt_out").await;
    assert_eq!((status, &again["status"]), (200, &json!("opted_out")));
    let (status, p) = settle(&s, &held["id"], "dismiss").await;
    assert_eq!((status, p["code"].as_str()), (409, Some("conflict")), "{p}");
    assert!(reviews(&s, "?status=open").await["data"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(s.metrics().await.contains("tsunagi_opt_out_reviews_open 0"));
    s.stop().await;
}

#[tokio::test]
async fn a_dismissed_review_changes_nothing_and_reviews_page_newest_first() {
    let s = TestServer::start().await;
    for body in [
        "please stop texting me",
        "配信停止でお願いします",
        "ストップで",
    ] {
        reply(&s, body).await;
    }
    reply(&s, "はい、大丈夫です").await;
    let page = reviews(&s, "?limit=2").await;
    let bodies: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["ストップで", "配信停止でお願いします"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = reviews(&s, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(rest["data"][0]["body"], "please stop texting me", "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");

    let (status, dismissed) = settle(&s, &rest["data"][0]["id"], "dismiss").await;
    assert_eq!((status, &dismissed["status"]), (200, &json!("dismissed")));
    assert!(opt_outs(&s).await.is_empty());
    let settled = reviews(&s, "?status=settled").await;
    assert_eq!(settled["data"].as_array().unwrap().len(), 1, "{settled}");

    let (status, p) = settle(&s, &json!(999_999), "dismiss").await;
    assert_eq!((status, p["code"].as_str()), (404, Some("not_found")));
    let (status, p) = settle(&s, &page["data"][0]["id"], "ignore").await;
    assert_eq!((status, p["code"].as_str()), (422, Some("invalid_request")));
    let r = s.get("/v1/opt-outs/review?status=closed").await;
    assert_eq!(r.status(), 422);
    s.stop().await;
}

#[tokio::test]
async fn cancel_and_kaijo_are_plain_replies_where_the_config_gives_them_another_meaning() {
    let s = TestServer::with_delivery("[opt_outs]\nambiguous_words_opt_out = false\n").await;
    let (_, booking) = s
        .send(json!({"to": HANDSET, "body": "ご予約の取消はCANCELと返信"}))
        .await;
    let id = booking["id"].as_str().unwrap();
    s.wait_for(id, |st| st == "delivered").await;
    reply(&s, "CANCEL").await;
    reply(&s, "解除").await;
    assert!(opt_outs(&s).await.is_empty());
    assert!(reviews(&s, "").await["data"].as_array().unwrap().is_empty());
    let shown: Value = s
        .get(&format!("/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["replies"].as_array().unwrap().len(),
        2,
        "still replies: {shown}"
    );
    reply(&s, "ストップ").await;
    assert_eq!(opt_outs(&s).await.len(), 1, "the other words still opt out");
    s.stop().await;
}

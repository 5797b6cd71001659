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

/// `/readyz` and a request to the API, each answered within `limit`: (status, problem code).
async fn answers(s: &TestServer, limit: std::time::Duration) -> [(u16, String); 3] {
    let started = std::time::Instant::now();
    let ready = s
        .client
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    let send = s
        .post(
            "/v1/messages",
            json!({"to": "090-1234-5678", "body": "during the outage"}),
        )
        .await;
    let list = s.get("/v1/messages?limit=5").await;
    assert!(
        started.elapsed() < limit,
        "answered in {:?}, not within {limit:?}",
        started.elapsed()
    );
    let mut out = Vec::new();
    for r in [ready, send, list] {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        out.push((
            status,
            body["code"].as_str().unwrap_or_default().to_string(),
        ));
    }
    out.try_into().unwrap()
}

#[tokio::test]
async fn an_unreachable_database_answers_503_and_the_service_recovers_by_itself() {
    let Some(s) = TestServer::on_postgres_with("[database]\nconnect_timeout_ms = 1000\n").await
    else {
        return;
    };
    let (status, before) = s
        .send(json!({"to": "090-1234-5678", "body": "before"}))
        .await;
    assert_eq!(status, 202, "{before}");
    s.wait_for(before["id"].as_str().unwrap(), |st| st == "delivered")
        .await;

    s.postgres().set_reachable(false).await;
    // Three requests, each waiting at most connect_timeout_ms for a connection.
    let unavailable = (503, "unavailable".to_string());
    assert_eq!(
        answers(&s, std::time::Duration::from_secs(4)).await,
        [
            unavailable.clone(),
            unavailable.clone(),
            unavailable.clone()
        ],
        "readiness, a send and a read all answer 503 unavailable, never 500"
    );
    // Still so a moment later, once the workers too have met the outage.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        answers(&s, std::time::Duration::from_secs(4)).await,
        [unavailable.clone(), unavailable.clone(), unavailable]
    );

    s.postgres().set_reachable(true).await;
    let mut ready = 0;
    for _ in 0..100 {
        ready = s
            .client
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 200, "ready again without a restart");
    let (status, after) = s
        .send(json!({"to": "090-1234-5678", "body": "after"}))
        .await;
    assert_eq!(status, 202, "{after}");
    let m = s
        .wait_for(after["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    assert_eq!(delivered_events(&m), ["queued", "sending", "delivered"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_codes_for_one_number_over_two_instances_send_one() {
    let Some(a) = TestServer::on_postgres().await else {
        return;
    };
    let b = a.another_instance("").await;
    let sends = (0..20).map(|i| {
        let s = if i % 2 == 0 { &a } else { &b };
        s.call("/v1/otp", json!({"to": "090-2468-1357"}))
    });
    let answers = futures_util::future::join_all(sends).await;
    let created: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, body) in &answers {
        assert!(
            *status == 201 || (*status == 429 && body["code"] == "rate_limited"),
            "{status} {body}"
        );
    }
    let code = crate::harness::code_in(&b.text_of("09024681357", &created[0]["message_id"]).await);
    let inbox: serde_json::Value = a
        .get("/v1/sandbox/inbox?to=09024681357")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        inbox.as_array().unwrap().len(),
        1,
        "one code reached the handset"
    );
    let id = created[0]["verification_id"].as_str().unwrap();
    let (status, _) = a
        .call(&format!("/v1/otp/{id}/check"), json!({"code": code}))
        .await;
    assert_eq!(status, 200, "either instance checks a code the other sent");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_statement_hung_on_a_lock_answers_503_within_the_statement_timeout_and_nothing_is_lost() {
    let Some(s) = TestServer::on_postgres_with("[database]\nstatement_timeout_ms = 300\n").await
    else {
        return;
    };
    use sqlx::Connection;
    // Another session holds the messages table, as a stuck migration or a runaway report might.
    let mut blocker = sqlx::PgConnection::connect(&s.postgres().url)
        .await
        .unwrap();
    let mut held = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (status, body) = s
        .send(json!({"to": "090-1234-5678", "body": "while locked"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
    held.rollback().await.unwrap();
    blocker.close().await.unwrap();

    let (status, after) = s
        .send(json!({"to": "090-1234-5678", "body": "after"}))
        .await;
    assert_eq!(status, 202, "{after}");
    s.wait_for(after["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    assert_eq!(
        s.stored_messages().await,
        1,
        "the refused send left nothing behind"
    );
    s.stop().await;
}

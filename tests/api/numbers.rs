use reqwest::Method;
use serde_json::{json, Value};
use wiremock::{
    matchers::{body_partial_json, header, method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::harness::TestServer;

#[tokio::test]
async fn a_denied_number_gets_neither_messages_nor_codes_and_the_list_is_masked() {
    let s = TestServer::start().await;
    let (status, entry) = s
        .call(
            "/v1/numbers/deny",
            json!({"number": "090-1111-2222", "reason": "opted out by phone"}),
        )
        .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["number"], "+81 90-****-2222");
    let (status, p) = s
        .call("/v1/messages", json!({"to": "09011112222", "body": "hi"}))
        .await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("number_blocked"), Some("to"))
    );
    let (status, p) = s.call("/v1/otp", json!({"to": "+819011112222"})).await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));
    let list = s.get("/v1/numbers/deny").await.text().await.unwrap();
    assert!(
        list.contains("+81 90-****-2222") && !list.contains("11112222"),
        "{list}"
    );
    assert_eq!(s.get("/v1/numbers/deny/09011112222").await.status(), 200);

    let r = s
        .request(Method::DELETE, "/v1/numbers/deny/%2B819011112222")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.get("/v1/numbers/deny/09011112222").await.status(), 404);
    let (status, _) = s
        .call("/v1/messages", json!({"to": "09011112222", "body": "hi"}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(s.stored_messages().await, 1, "refused sends stored nothing");
    s.stop().await;
}

#[tokio::test]
async fn bad_list_requests_are_refused_precisely() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/v1/numbers/grey").await.status(), 404);
    let (status, p) = s.call("/v1/numbers/deny", json!({"number": "nope"})).await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("invalid_phone_number"), Some("number"))
    );
    let (status, p) = s
        .call("/v1/numbers/deny", json!({"phone": "09011112222"}))
        .await;
    assert_eq!((status, p["field"].as_str()), (422, Some("phone")));
    let r = s
        .request(Method::DELETE, "/v1/numbers/allow/09011112222")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .client
        .get(format!("{}/v1/numbers/deny", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn allow_list_only_sends_to_listed_numbers_alone() {
    let s = TestServer::with_delivery("[numbers]\nallow_list_only = true").await;
    let (status, p) = s
        .call("/v1/messages", json!({"to": "09012345678", "body": "x"}))
        .await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));
    s.call("/v1/numbers/allow", json!({"number": "09012345678"}))
        .await;
    let (status, _) = s
        .call("/v1/messages", json!({"to": "09012345678", "body": "x"}))
        .await;
    assert_eq!(status, 202);
    s.stop().await;
}

#[tokio::test]
async fn the_deny_list_answers_the_cancellation_history_check_by_default() {
    let s = TestServer::start().await;
    s.call(
        "/v1/numbers/deny",
        json!({"number": "09012345678", "reason": "reported cancelled"}),
    )
    .await;
    let (status, p) = s
        .call(
            "/v1/messages",
            json!({"to": "09012345678", "body": "x", "number_confirmed_on": "2026-01-31"}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));
    assert!(
        p["detail"].as_str().unwrap().contains("reported cancelled"),
        "{p}"
    );
    let (status, p) = s
        .call(
            "/v1/messages",
            json!({"to": "09087654321", "body": "x", "number_confirmed_on": "31/01/2026"}),
        )
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (422, Some("number_confirmed_on"))
    );
    s.stop().await;
}

/// A recorded answer of a cancellation-history service.
fn fixture(name: &str) -> Vec<u8> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/number_history");
    std::fs::read(dir.join(name)).unwrap()
}

async fn history_server(changed_number: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/history"))
        .and(header("authorization", "Bearer hook-token"))
        .and(body_partial_json(
            json!({"number": changed_number, "since": "2026-01-31"}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture("answer_reassigned.json"), "application/json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/history"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture("answer_unchanged.json"), "application/json"),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_history_hook_refuses_a_number_that_changed_hands_since_the_crm_confirmed_it() {
    let hook = history_server("+819012345678").await;
    let s = TestServer::with_delivery(&format!(
        "[numbers.history]\nurl = \"{}/history\"\ntoken = \"hook-token\"",
        hook.uri()
    ))
    .await;
    let confirmed = "2026-01-31";
    let (status, p) = s
        .call(
            "/v1/messages",
            json!({"to": "09012345678", "body": "x", "number_confirmed_on": confirmed}),
        )
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("number_blocked")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("reassigned"));
    let (status, p) = s
        .call(
            "/v1/otp",
            json!({"to": "09012345678", "number_confirmed_on": confirmed}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));
    let (status, _) = s
        .call(
            "/v1/messages",
            json!({"to": "09087654321", "body": "x", "number_confirmed_on": confirmed}),
        )
        .await;
    assert_eq!(status, 202, "an unchanged number is sent to");
    let (status, _) = s
        .call("/v1/messages", json!({"to": "09012345678", "body": "x"}))
        .await;
    assert_eq!(
        status, 202,
        "without a confirmation date there is nothing to check"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_unreadable_history_answer_is_a_failure_not_a_yes() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture("answer_maintenance_page.html"), "text/html"),
        )
        .mount(&hook)
        .await;
    let s =
        TestServer::with_delivery(&format!("[numbers.history]\nurl = \"{}/h\"", hook.uri())).await;
    let (status, p) = s
        .call(
            "/v1/otp",
            json!({"to": "09012345678", "number_confirmed_on": "2026-01-31"}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (503, Some("unavailable")));
    assert_eq!(s.stored_messages().await, 0, "nothing was sent");
    s.stop().await;
}

#[tokio::test]
async fn a_failing_history_hook_refuses_or_allows_as_configured() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&hook)
        .await;
    let body = json!({"to": "09012345678", "body": "x", "number_confirmed_on": "2026-01-31"});
    let refuse =
        TestServer::with_delivery(&format!("[numbers.history]\nurl = \"{}/h\"", hook.uri())).await;
    let (status, p) = refuse.call("/v1/messages", body.clone()).await;
    assert_eq!((status, p["code"].as_str()), (503, Some("unavailable")));
    assert_eq!(refuse.stored_messages().await, 0);
    refuse.stop().await;
    let allow = TestServer::with_delivery(&format!(
        "[numbers.history]\nurl = \"{}/h\"\non_error = \"allow\"",
        hook.uri()
    ))
    .await;
    let (status, _) = allow.call("/v1/messages", body).await;
    assert_eq!(status, 202);
    allow.stop().await;
}

#[tokio::test]
async fn a_list_entry_is_looked_up_and_removed_by_its_id() {
    let s = TestServer::start().await;
    let (status, entry) = s
        .call("/v1/numbers/deny", json!({"number": "090-3333-4444"}))
        .await;
    assert_eq!(status, 201, "{entry}");
    let id = entry["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("num_"), "{entry}");
    // Listing again keeps the entry and its id.
    let (_, again) = s
        .call(
            "/v1/numbers/deny",
            json!({"number": "+819033334444", "reason": "asked twice"}),
        )
        .await;
    assert_eq!(again["id"], id.as_str());
    let list: Value = s.get("/v1/numbers/deny").await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let shown: Value = s
        .get(&format!("/v1/numbers/deny/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["number"].as_str(), shown["reason"].as_str()),
        (Some("+81 90-****-4444"), Some("asked twice"))
    );
    // The id of a deny entry is not one on the allow list.
    assert_eq!(
        s.get(&format!("/v1/numbers/allow/{id}")).await.status(),
        404
    );
    let r = s
        .request(Method::DELETE, &format!("/v1/numbers/deny/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.get("/v1/numbers/deny/09033334444").await.status(), 404);
    assert_eq!(
        s.get("/v1/numbers/deny/num_nonsense").await.status(),
        404,
        "a malformed id is simply not found"
    );
    s.stop().await;
}

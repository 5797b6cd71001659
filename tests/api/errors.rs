use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::TestServer;

async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/problem+json", "status {status}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    (status, body)
}

async fn refused(s: &TestServer, request: Value) -> (u16, Value) {
    problem(s.post("/v1/messages", request).await).await
}

async fn assert_nothing_stored(s: &TestServer) {
    assert_eq!(
        s.stored_messages().await,
        0,
        "a refused request left a message behind"
    );
}

#[tokio::test]
async fn requests_without_a_valid_api_key_are_unauthorized() {
    let s = TestServer::start().await;
    let url = format!("{}/v1/messages", s.base);
    let none = s
        .client
        .post(&url)
        .json(&json!({"to": "09012345678", "body": "x"}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(none).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let wrong = s
        .client
        .get(&url)
        .bearer_auth("not-a-key-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(wrong).await.0, 401);
    for path in [
        "/v1/messages/msg_01M88421YYFX7PAYTHAZCE4206",
        "/v1/sandbox/inbox?to=09012345678",
    ] {
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = s
        .client
        .post(format!("{}/v1/sandbox/reply", s.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn malformed_json_is_a_400_invalid_request() {
    let s = TestServer::start().await;
    let r = s
        .request(Method::POST, "/v1/messages")
        .header("content-type", "application/json")
        .body("{\"to\": \"0901234")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn unknown_missing_and_ill_typed_fields_are_named() {
    let s = TestServer::start().await;
    let (status, body) = refused(
        &s,
        json!({"to": "09012345678", "body": "x", "colour": "red"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (422, Some("invalid_request"), Some("colour"))
    );
    let (_, body) = refused(&s, json!({"body": "x"})).await;
    assert_eq!(body["field"], "to");
    let (_, body) = refused(&s, json!({"to": 9012345678u64, "body": "x"})).await;
    assert_eq!(body["field"], "to");
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "body": "x", "metadata": [1]}),
    )
    .await;
    assert_eq!(body["field"], "metadata");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn garbage_numbers_are_invalid_phone_number() {
    let s = TestServer::start().await;
    for to in ["abc", "", "12", "090-1234-567"] {
        let (status, body) = refused(&s, json!({"to": to, "body": "x"})).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (422, Some("invalid_phone_number"), Some("to")),
            "{to}"
        );
    }
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn ip_phones_landlines_and_other_non_mobiles_are_number_type_not_allowed() {
    let s = TestServer::start().await;
    for to in [
        "050-1234-5678",
        "03-1234-5678",
        "0120-123-456",
        "0800-123-4567",
        "0570-123-456",
        "0990-123-456",
        "020-4123-4567",
    ] {
        let (status, body) = refused(&s, json!({"to": to, "body": "x"})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("number_type_not_allowed")),
            "{to}: {body}"
        );
        assert!(
            !body["detail"].as_str().unwrap().contains("1234"),
            "details never show the number"
        );
    }
    let (_, body) = refused(&s, json!({"to": "0180-123-456", "body": "x"})).await;
    assert_eq!(body["code"], "invalid_phone_number");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn foreign_numbers_are_country_not_allowed() {
    let s = TestServer::start().await;
    for to in ["+1 415 555 0123", "+44 7911 123456"] {
        let (status, body) = refused(&s, json!({"to": to, "body": "x"})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("country_not_allowed")),
            "{to}"
        );
    }
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn number_policy_is_configurable() {
    let s = TestServer::with_delivery(
        "[numbers]\nallowed_country_codes = [81, 1]\nallowed_kinds = [\"mobile\", \"fixed_line_or_mobile\", \"voip\"]",
    )
    .await;
    for to in ["+1 415 555 0123", "050-1234-5678"] {
        let (status, body) = s.send(json!({"to": to, "body": "x"})).await;
        assert_eq!(status, 202, "{to}: {body}");
    }
    let (_, body) = refused(&s, json!({"to": "03-1234-5678", "body": "x"})).await;
    assert_eq!(body["code"], "number_type_not_allowed");
    s.stop().await;
}

#[tokio::test]
async fn a_missing_template_variable_is_named() {
    let s = TestServer::start().await;
    let (status, body) = refused(
        &s,
        json!({"to": "09012345678", "template": "{{name}}様 {{date}}", "vars": {"name": "山田"}}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (422, Some("missing_template_variable"), Some("vars.date"))
    );
    assert!(body["detail"].as_str().unwrap().contains("date"));
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "template": "{{ name ", "vars": {"name": "x"}}),
    )
    .await;
    assert_eq!(
        (body["code"].as_str(), body["field"].as_str()),
        (Some("invalid_request"), Some("template"))
    );
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "template": "{{a}}", "vars": {"a": {"nested": 1}}}),
    )
    .await;
    assert_eq!(body["field"], "vars.a");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn body_and_template_are_mutually_exclusive_and_one_is_required() {
    let s = TestServer::start().await;
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "body": "x", "template": "y"}),
    )
    .await;
    assert_eq!(body["code"], "invalid_request");
    let (_, body) = refused(&s, json!({"to": "09012345678"})).await;
    assert_eq!(body["field"], "body");
    let (_, body) = refused(&s, json!({"to": "09012345678", "body": "   "})).await;
    assert_eq!(body["field"], "body");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn bad_send_at_and_sender_are_named() {
    let s = TestServer::start().await;
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "body": "x", "send_at": "tomorrow"}),
    )
    .await;
    assert_eq!(
        (body["code"].as_str(), body["field"].as_str()),
        (Some("invalid_request"), Some("send_at"))
    );
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "body": "x", "send_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(body["field"], "send_at");
    let (_, body) = refused(
        &s,
        json!({"to": "09012345678", "body": "x", "from": "THIS-IS-FAR-TOO-LONG"}),
    )
    .await;
    assert_eq!(body["field"], "from");
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_body_is_payload_too_large() {
    let s = TestServer::start().await;
    let big = "x".repeat(70 * 1024);
    let (status, body) = refused(&s, json!({"to": "09012345678", "body": big})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn bad_list_parameters_are_named() {
    let s = TestServer::start().await;
    for (query, field) in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let (status, body) = problem(s.get(&format!("/v1/messages?{query}")).await).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(field)),
            "{query}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_problem_documents() {
    let s = TestServer::start().await;
    let (status, body) = problem(s.get("/v2/nothing").await).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    s.stop().await;
}

#[tokio::test]
async fn a_number_with_junk_around_it_is_not_a_number() {
    let s = TestServer::start().await;
    for to in [
        "090-1234-5678*",
        "090-1234-5678\u{0}",
        "090-1234-5678#",
        "tel:09012345678",
        "+81+9012345678",
    ] {
        let (status, body) = refused(&s, json!({"to": to, "body": "x"})).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (422, Some("invalid_phone_number"), Some("to")),
            "{to:?}"
        );
        let r = s
            .post("/v1/numbers/deny", json!({"number": to, "reason": "x"}))
            .await;
        let (status, body) = problem(r).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some("number")),
            "{to:?}"
        );
    }
    assert_nothing_stored(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn control_characters_in_a_body_template_or_variable_are_refused() {
    let s = TestServer::start().await;
    for (request, field) in [
        (json!({"to": "09012345678", "body": "hi\u{0}there"}), "body"),
        (json!({"to": "09012345678", "body": "\u{1b}[2J"}), "body"),
        (
            json!({"to": "09012345678", "body": "https://\u{202e}moc.knab"}),
            "body",
        ),
        (
            json!({"to": "09012345678", "template": "{{a}}\u{7}", "vars": {"a": "x"}}),
            "template",
        ),
        (
            json!({"to": "09012345678", "template": "{{a}}", "vars": {"a": "x\u{0}"}}),
            "vars.a",
        ),
    ] {
        let (status, body) = refused(&s, request).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (422, Some("invalid_request"), Some(field)),
            "{body}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains("U+"),
            "the detail names the character: {body}"
        );
    }
    assert_nothing_stored(&s).await;
    let (status, body) = s
        .send(json!({"to": "09012345678", "body": "line one\r\nline two\ttabbed"}))
        .await;
    assert_eq!(status, 202, "line breaks and tabs are text: {body}");
    s.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_unsupported_media_type() {
    let s = TestServer::start().await;
    let json_text = r#"{"to": "09012345678", "body": "hi"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = s
            .request(Method::POST, "/v1/messages")
            .body(json_text.to_string());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let (status, body) = problem(request.send().await.unwrap()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type:?}"
        );
    }
    for path in ["/v1/otp", "/v1/numbers/deny", "/v1/sandbox/reply"] {
        let r = s
            .request(Method::POST, path)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{path}");
    }
    assert_nothing_stored(&s).await;
    let r = s
        .request(Method::POST, "/v1/messages")
        .header("content-type", "application/json; charset=utf-8")
        .body(json_text.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    s.stop().await;
}

#[tokio::test]
async fn a_not_found_detail_does_not_echo_a_huge_id() {
    let s = TestServer::start().await;
    let id = "x".repeat(10_000);
    for path in [
        format!("/v1/messages/{id}"),
        format!("/v1/otp/{id}"),
        format!("/v1/numbers/{id}"),
    ] {
        let (status, body) = problem(s.get(&path).await).await;
        assert_eq!(status, 404);
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.len() < 200, "{} bytes: {detail}", detail.len());
    }
    s.stop().await;
}

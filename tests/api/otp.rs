use serde_json::{json, Value};

use crate::harness::{code_in, TestServer};

/// Send a code to `to`; return the 201 body and the code the handset got.
async fn send_code(s: &TestServer, to: &str) -> (Value, String) {
    let (status, v) = s.call("/v1/otp", json!({"to": to})).await;
    assert_eq!(status, 201, "{v}");
    let code = code_in(&s.text_of(to, &v["message_id"]).await);
    (v, code)
}

async fn check(s: &TestServer, id: &Value, code: &str) -> (u16, Value) {
    s.call(
        &format!("/v1/otp/{}/check", id.as_str().unwrap()),
        json!({"code": code}),
    )
    .await
}

async fn status_of(s: &TestServer, v: &Value) -> Value {
    let id = v["verification_id"].as_str().unwrap();
    s.get(&format!("/v1/otp/{id}")).await.json().await.unwrap()
}

fn wrong(code: &str) -> String {
    let first = if code.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &code[1..])
}

#[tokio::test]
async fn the_code_reaches_the_handset_and_never_an_api_response() {
    let s = TestServer::start().await;
    let (v, code) = send_code(&s, "09012345678").await;
    assert_eq!(v["status"], "pending");
    assert_eq!(v["to"], "+81 90-****-5678");
    assert_eq!(v["attempts_left"], 5);
    assert_eq!(code.len(), 6);
    let id = v["verification_id"].as_str().unwrap();
    let text = s.text_of("09012345678", &v["message_id"]).await;
    assert!(text.contains("tsunagi") && text.contains("5分"), "{text}");

    let shown = s.get(&format!("/v1/otp/{id}")).await.text().await.unwrap();
    let message = s
        .get(&format!(
            "/v1/messages/{}",
            v["message_id"].as_str().unwrap()
        ))
        .await
        .text()
        .await
        .unwrap();
    let list = s.get("/v1/messages").await.text().await.unwrap();
    let metrics = s.metrics().await;
    for (what, text) in [
        ("create", v.to_string()),
        ("status", shown),
        ("message", message),
        ("list", list),
        ("metrics", metrics),
    ] {
        assert!(
            !text.contains(&code),
            "the code leaked into the {what} response: {text}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn the_right_code_is_approved_once_and_then_already_used() {
    let s = TestServer::start().await;
    let (v, code) = send_code(&s, "08011112222").await;
    let (status, body) = check(&s, &v["verification_id"], &code).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("approved")));
    let (status, body) = check(&s, &v["verification_id"], &code).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("otp_already_used"))
    );
    let shown = status_of(&s, &v).await;
    assert_eq!(shown["status"], "approved");
    s.stop().await;
}

#[tokio::test]
async fn wrong_codes_count_down_and_the_right_code_after_five_wrong_is_refused() {
    let s = TestServer::start().await;
    let (v, code) = send_code(&s, "07011112222").await;
    for left in [4, 3, 2, 1, 0] {
        let (status, body) = check(&s, &v["verification_id"], &wrong(&code)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("otp_incorrect")),
            "{body}"
        );
        assert_eq!(body["attempts_left"], left);
    }
    let (status, body) = check(&s, &v["verification_id"], &code).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("otp_attempts_exhausted")),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_expired_code_is_gone_even_when_right() {
    let s = TestServer::start().await;
    let (status, v) = s
        .call("/v1/otp", json!({"to": "09022223333", "ttl_seconds": 180}))
        .await;
    assert_eq!(status, 201);
    let code = code_in(&s.text_of("09022223333", &v["message_id"]).await);
    assert!(s
        .text_of("09022223333", &v["message_id"])
        .await
        .contains("3分"));
    s.advance(181);
    let (status, body) = check(&s, &v["verification_id"], &code).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("otp_expired")));
    let shown = status_of(&s, &v).await;
    assert_eq!(shown["status"], "expired");
    s.stop().await;
}

#[tokio::test]
async fn a_resend_within_the_cooldown_is_rate_limited_with_retry_after() {
    let s = TestServer::start().await;
    send_code(&s, "09033334444").await;
    let r = s.post("/v1/otp", json!({"to": "090-3333-4444"})).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "rate_limited");
    s.stop().await;
}

#[tokio::test]
async fn a_new_code_cancels_the_previous_one() {
    let s = TestServer::start().await;
    let (old, old_code) = send_code(&s, "09044445555").await;
    s.advance(31);
    let (new, new_code) = send_code(&s, "09044445555").await;
    let (status, body) = check(&s, &old["verification_id"], &old_code).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("otp_canceled")));
    let (status, _) = check(&s, &new["verification_id"], &new_code).await;
    assert_eq!(status, 200);
    s.stop().await;
}

#[tokio::test]
async fn at_most_five_codes_go_to_one_number_in_ten_minutes() {
    let s = TestServer::start().await;
    for _ in 0..5 {
        send_code(&s, "09055556666").await;
        s.advance(31);
    }
    let r = s.post("/v1/otp", json!({"to": "09055556666"})).await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 400 && retry <= 600, "{retry}");
    s.advance(retry);
    send_code(&s, "09055556666").await;
    s.stop().await;
}

#[tokio::test]
async fn per_ip_and_per_device_limits_apply_when_given() {
    let s =
        TestServer::with_delivery("[otp]\nmax_sends_per_ip = 2\nmax_sends_per_device = 2").await;
    for to in ["09061110001", "09061110002"] {
        let (status, v) = s
            .call("/v1/otp", json!({"to": to, "client_ip": "203.0.113.7"}))
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, p) = s
        .call(
            "/v1/otp",
            json!({"to": "09061110003", "client_ip": "203.0.113.7"}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (429, Some("rate_limited")));
    assert!(p["detail"].as_str().unwrap().contains("client_ip"));
    let (status, _) = s
        .call(
            "/v1/otp",
            json!({"to": "09061110003", "client_ip": "203.0.113.8"}),
        )
        .await;
    assert_eq!(status, 201, "another IP is not limited");
    for to in ["09062220001", "09062220002"] {
        let (status, _) = s
            .call("/v1/otp", json!({"to": to, "device_id": "device-a"}))
            .await;
        assert_eq!(status, 201);
    }
    let (status, p) = s
        .call(
            "/v1/otp",
            json!({"to": "09062220003", "device_id": "device-a"}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (429, Some("rate_limited")));
    s.stop().await;
}

#[tokio::test]
async fn ip_phones_landlines_and_foreign_numbers_get_no_code() {
    let s = TestServer::start().await;
    for (to, code) in [
        ("050-1234-5678", "number_type_not_allowed"),
        ("03-1234-5678", "number_type_not_allowed"),
        ("020-4123-4567", "number_type_not_allowed"),
        ("+1 415 555 0123", "country_not_allowed"),
        ("not a number", "invalid_phone_number"),
    ] {
        let (status, p) = s.call("/v1/otp", json!({"to": to})).await;
        assert_eq!(
            (status, p["code"].as_str(), p["field"].as_str()),
            (422, Some(code), Some("to")),
            "{to}"
        );
    }
    assert_eq!(s.stored_messages().await, 0, "a refused code sent nothing");
    s.stop().await;
}

#[tokio::test]
async fn bad_otp_parameters_are_named() {
    let s = TestServer::start().await;
    for (body, field) in [
        (
            json!({"to": "09012345678", "code_length": 5}),
            "code_length",
        ),
        (
            json!({"to": "09012345678", "code_length": 11}),
            "code_length",
        ),
        (
            json!({"to": "09012345678", "ttl_seconds": 60}),
            "ttl_seconds",
        ),
        (
            json!({"to": "09012345678", "ttl_seconds": 601}),
            "ttl_seconds",
        ),
        (
            json!({"to": "09012345678", "template": "no code here"}),
            "template",
        ),
        (
            json!({"to": "09012345678", "client_ip": "nope"}),
            "client_ip",
        ),
        (json!({"to": "09012345678", "secret": "x"}), "secret"),
    ] {
        let (status, p) = s.call("/v1/otp", body.clone()).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (422, Some(field)),
            "{body}: {p}"
        );
    }
    let (v, _) = send_code(&s, "09012345678").await;
    for malformed in ["12ab56", "12345", "12345678901"] {
        let (status, p) = check(&s, &v["verification_id"], malformed).await;
        assert_eq!(
            (status, p["field"].as_str()),
            (422, Some("code")),
            "{malformed}"
        );
    }
    let shown = status_of(&s, &v).await;
    assert_eq!(
        shown["attempts_left"], 5,
        "a malformed code, or one of a length no code has, is not a check"
    );
    s.stop().await;
}

#[tokio::test]
async fn custom_length_and_template_are_used() {
    let s = TestServer::start().await;
    let (status, v) = s
        .call("/v1/otp", json!({"to": "09077778888", "code_length": 8, "template": "Your code: 認証コード: {{code}} ({{minutes}} min)"}))
        .await;
    assert_eq!(status, 201, "{v}");
    let text = s.text_of("09077778888", &v["message_id"]).await;
    assert_eq!(code_in(&text).len(), 8);
    assert!(text.ends_with("(5 min)"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn unknown_verifications_are_not_found_and_otp_needs_an_api_key() {
    let s = TestServer::start().await;
    for path in ["/v1/otp/otp_01M88421YYFX7PAYTHAZCE4206", "/v1/otp/whatever"] {
        assert_eq!(s.get(path).await.status(), 404);
    }
    let (status, p) = s
        .call(
            "/v1/otp/otp_01M88421YYFX7PAYTHAZCE4206/check",
            json!({"code": "123456"}),
        )
        .await;
    assert_eq!((status, p["code"].as_str()), (404, Some("not_found")));
    let r = s
        .client
        .post(format!("{}/v1/otp", s.base))
        .json(&json!({"to": "09012345678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .client
        .post(format!(
            "{}/v1/otp/otp_01M88421YYFX7PAYTHAZCE4206/check",
            s.base
        ))
        .json(&json!({"code": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn a_range_whose_codes_stop_being_verified_is_paused_and_says_so() {
    // The burst rule is widened so that this test sees the conversion rule alone.
    let s = TestServer::with_delivery(
        "[otp.pumping]\nmin_sends = 5\ngrace_seconds = 60\nburst_max_sends = 100",
    )
    .await;
    // A normal user in the range verifies; then a burst of codes nobody verifies.
    let (v, code) = send_code(&s, "09012340000").await;
    assert_eq!(check(&s, &v["verification_id"], &code).await.0, 200);
    for i in 1..=9 {
        let (status, _) = s
            .call("/v1/otp", json!({"to": format!("0901234{i:04}")}))
            .await;
        assert_eq!(status, 201);
    }
    s.advance(61);
    let r = s.post("/v1/otp", json!({"to": "09012349999"})).await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 12 * 3600);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("pumping"), "{p}");
    // The range stays paused for everyone in it, but not for other ranges.
    let (status, _) = s.call("/v1/otp", json!({"to": "09012348888"})).await;
    assert_eq!(status, 429);
    let (status, _) = s.call("/v1/otp", json!({"to": "08098765432"})).await;
    assert_eq!(status, 201);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("tsunagi_otp_blocked_prefixes 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tsunagi_otp_breaker_trips_total"),
        "{metrics}"
    );
    // An allow-listed handset in the paused range still gets its code.
    let (status, _) = s
        .call(
            "/v1/numbers/allow",
            json!({"number": "09012347777", "reason": "QA handset"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s.call("/v1/otp", json!({"to": "09012347777"})).await;
    assert_eq!(status, 201);
    s.stop().await;
}

#[tokio::test]
async fn a_burst_to_one_block_of_numbers_trips_the_breaker_at_once() {
    let s = TestServer::start().await;
    // Never-verified codes to numbers that differ only in their last four digits, as fast as
    // a pumping script sends them: the default burst rule stops them long before 80.
    let mut sent = 0;
    let mut refused = None;
    for i in 0..80 {
        let r = s
            .post("/v1/otp", json!({"to": format!("0905555{i:04}")}))
            .await;
        if r.status() == 201 {
            sent += 1;
            continue;
        }
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
        refused = Some(r.json::<Value>().await.unwrap());
        break;
    }
    let p = refused.expect("the burst was never refused");
    assert_eq!(
        sent, 10,
        "the default lets 10 codes out per block per minute"
    );
    assert_eq!(p["code"], "rate_limited");
    assert!(p["detail"].as_str().unwrap().contains("pumping"), "{p}");
    // The block stays paused after the window, with no code ever judged.
    s.advance(120);
    let (status, _) = s.call("/v1/otp", json!({"to": "09055559999"})).await;
    assert_eq!(status, 429);
    // Other blocks, even in the same wider range, still get codes.
    for to in ["09055560001", "08012345678"] {
        let (status, v) = s.call("/v1/otp", json!({"to": to})).await;
        assert_eq!(status, 201, "{to}: {v}");
    }
    // An allow-listed handset in the paused block is exempt.
    let (status, _) = s
        .call("/v1/numbers/allow", json!({"number": "09055558888"}))
        .await;
    assert_eq!(status, 201);
    let (status, _) = s.call("/v1/otp", json!({"to": "09055558888"})).await;
    assert_eq!(status, 201);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("tsunagi_otp_blocked_prefixes 1"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_burst_rule_can_be_turned_off() {
    let s = TestServer::with_delivery("[otp.pumping]\nburst_max_sends = 0").await;
    for i in 0..15 {
        let (status, v) = s
            .call("/v1/otp", json!({"to": format!("0906666{i:04}")}))
            .await;
        assert_eq!(status, 201, "{i}: {v}");
    }
    s.stop().await;
}

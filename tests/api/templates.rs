//! Templates are merge fields, conditions and three filters; anything that could make rendering
//! slow, huge or leak an OTP code is refused before it runs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TestServer;

/// Ten iterations nested eight deep: 10⁸ loop bodies from under 400 bytes.
fn nested_for() -> String {
    format!(
        "{}x{}",
        "{% for a in [0,1,2,3,4,5,6,7,8,9] %}".repeat(8),
        "{% endfor %}".repeat(8)
    )
}

/// A string doubled 33 times: gigabytes from under 700 bytes.
fn set_doubling() -> String {
    format!(
        "{{% set s = 'x' %}}{}{{{{ s }}}}{{{{code}}}}",
        "{% set s = s ~ s %}".repeat(33)
    )
}

/// Send `body` to `path` and answer `/healthz` at the same time; both must be quick.
async fn refused_while_healthy(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let started = Instant::now();
    let (refusal, health) = tokio::join!(
        s.call(path, body.clone()),
        s.client.get(format!("{}/healthz", s.base)).send()
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{path} took {:?}",
        started.elapsed()
    );
    assert_eq!(health.unwrap().status(), 200);
    refusal
}

#[tokio::test]
async fn loops_and_assignments_are_refused_at_once_while_the_server_stays_healthy() {
    let s = TestServer::start().await;
    for template in [nested_for(), set_doubling()] {
        for (path, body) in [
            (
                "/v1/messages",
                json!({"to": "09012345678", "template": template}),
            ),
            (
                "/v1/otp",
                json!({"to": "09012345678", "template": template}),
            ),
        ] {
            let (status, p) = refused_while_healthy(&s, path, body).await;
            assert_eq!(
                (status, p["code"].as_str(), p["field"].as_str()),
                (422, Some("invalid_request"), Some("template")),
                "{path}: {p}"
            );
            assert!(p["detail"].as_str().unwrap().contains("not allowed"), "{p}");
        }
    }
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn an_otp_template_may_print_the_code_but_never_inspect_it() {
    let s = TestServer::start().await;
    for template in [
        r#"{% if code[0] == "1" %}x{% endif %}{{code}}"#,
        r#"{% if code == "123456" %}x{% endif %}{{code}}"#,
        r#"{{ code | default("0") }}"#,
        r#"{% if minutes == "5" %}{{code}}{% endif %}"#,
    ] {
        let (status, p) = s
            .call(
                "/v1/otp",
                json!({"to": "09012345678", "template": template}),
            )
            .await;
        assert_eq!(
            (status, p["code"].as_str(), p["field"].as_str()),
            (422, Some("invalid_request"), Some("template")),
            "{template}: {p}"
        );
    }
    assert_eq!(s.stored_messages().await, 0);
    let (status, v) = s
        .call(
            "/v1/otp",
            json!({"to": "09012345678", "template": "{% if minutes == \"5\" %}5分{% else %}{{minutes}}分{% endif %}有効: {{ code }}"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let text = s.text_of("09012345678", &v["message_id"]).await;
    assert!(text.starts_with("5分有効: "), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn conditions_and_the_three_filters_shape_the_text_sent() {
    let s = TestServer::start().await;
    let template = concat!(
        r#"{% if plan == "gold" %}ゴールド会員{% elif plan != "free" %}会員{% else %}一般{% endif %}の"#,
        r#"{{ nick | default("お客") }}様 ご請求{{ amount | number }}円 "#,
        r#"ご予約{{ d | date("%-m月%-d日(%J) %H:%M") }}"#
    );
    for (to, vars, expected) in [
        (
            "09011110001",
            json!({"plan": "gold", "amount": "1234567.5", "d": "2026-12-01T00:00:00.000Z"}),
            "ゴールド会員のお客様 ご請求1,234,567.5円 ご予約12月1日(火) 09:00",
        ),
        (
            "09011110002",
            json!({"plan": "silver", "nick": "タロウ", "amount": 5000, "d": "2026-11-30T15:30:00Z"}),
            "会員のタロウ様 ご請求5,000円 ご予約12月1日(火) 00:30",
        ),
        (
            "09011110003",
            json!({"plan": "free", "nick": "", "amount": "-42", "d": "2026-12-01T09:00:00+09:00"}),
            "一般のお客様 ご請求-42円 ご予約12月1日(火) 09:00",
        ),
    ] {
        let (status, body) = s
            .send(json!({"to": to, "template": template, "vars": vars}))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(s.text_of(to, &body["id"]).await, expected);
    }
    s.stop().await;
}

#[tokio::test]
async fn a_filter_refusing_its_value_or_a_compared_missing_field_is_named() {
    let s = TestServer::start().await;
    let (status, p) = s
        .send(json!({"to": "09012345678", "template": "{{ n | number }}", "vars": {"n": "abc"}}))
        .await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("invalid_request"), Some("template"))
    );
    assert!(p["detail"].as_str().unwrap().contains("`number`"), "{p}");
    let (status, p) = s
        .send(json!({"to": "09012345678", "template": r#"{% if plna == "gold" %}G{% endif %}x"#, "vars": {"plan": "gold"}}))
        .await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("missing_template_variable"), Some("vars.plna"))
    );
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn long_sources_and_long_texts_are_refused() {
    let s = TestServer::start().await;
    let (status, p) = s
        .send(json!({"to": "09012345678", "template": "x".repeat(10_001)}))
        .await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("invalid_request"), Some("template"))
    );
    let (status, p) = s
        .send(json!({"to": "09012345678", "template": "{{a}}".repeat(1000), "vars": {"a": "x".repeat(30_000)}}))
        .await;
    assert_eq!(
        (status, p["code"].as_str(), p["field"].as_str()),
        (422, Some("message_too_long"), Some("body"))
    );
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

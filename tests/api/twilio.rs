//! Sending through Twilio: a fake Twilio API (wiremock) answering with recorded shapes, and
//! Twilio's signed callbacks posted to the service as Twilio posts them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use reqwest::Response;
use serde_json::{json, Value};
use sha1::Sha1;
use wiremock::{
    matchers::{basic_auth, header, method, path},
    Mock, MockServer, Request, Respond, ResponseTemplate,
};

use crate::harness::TestServer;

const ACCOUNT_SID: &str = "AC1f2e3d4c5b6a79881726354453627180";
const AUTH_TOKEN: &str = "7f3c9a1e5d2b4f6a8c0e1d3b5a7f9c2e";
const SENDER: &str = "+815055550100";
/// The sid in `message_create_queued.json` and the status callback fixtures.
const MESSAGE_SID: &str = "SM3c1d9a0e5b7f4a2c8e6d4b2a09f7e5c3";
/// The test config's `public_base_url` (the default): the URL Twilio is told to call, and so
/// the one it signs, whatever port the test server listens on.
const PUBLIC_BASE_URL: &str = "http://127.0.0.1:8080";
const STATUS: &str = "/v1/inbound/twilio/status";
const SMS: &str = "/v1/inbound/twilio/sms";
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/twilio")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

fn account_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")
}

fn json_answer(status: u16, fixture_name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(fixture(fixture_name), "application/json")
}

/// Twilio's answer to a message it took.
fn created() -> ResponseTemplate {
    json_answer(201, "message_create_queued.json")
}

/// A fake Twilio that takes every message, and a service sending through it.
async fn taking_service() -> (MockServer, TestServer) {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(created())
        .mount(&fake)
        .await;
    let s = service(&fake).await;
    (fake, s)
}

/// A service sending through the fake Twilio at `fake`.
async fn service(fake: &MockServer) -> TestServer {
    service_with(fake, "").await
}

/// A service sending through the fake Twilio at `fake`, `extra` keys in its Twilio section.
async fn service_with(fake: &MockServer, extra: &str) -> TestServer {
    service_delivering(fake, "", extra).await
}

/// `service_with`, with `delivery` keys in `[delivery]` too.
async fn service_delivering(fake: &MockServer, delivery: &str, extra: &str) -> TestServer {
    TestServer::with_delivery(&format!(
        r#"{delivery}provider = "twilio"
[providers.twilio]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "{SENDER}"
base_url = "{}"
timeout_ms = 2000
{extra}"#,
        fake.uri()
    ))
    .await
}

/// Accept a message to 090-1234-5678 and return its id.
async fn accepted(s: &TestServer, body: &str) -> String {
    let (status, m) = s.send(json!({"to": "090-1234-5678", "body": body})).await;
    assert_eq!(status, 202, "{m}");
    m["id"].as_str().unwrap().to_string()
}

/// `X-Twilio-Signature` as Twilio computes it, written out here apart from the service's own.
fn sign(url: &str, form: &str) -> String {
    let mut params: Vec<(String, String)> = serde_urlencoded::from_str(form).unwrap();
    params.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// POST a form to the service, with `signature` in `X-Twilio-Signature` if given.
async fn post_form(s: &TestServer, route: &str, form: &str, signature: Option<&str>) -> Response {
    let mut request = s
        .client
        .post(format!("{}{route}", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string());
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    request.send().await.unwrap()
}

/// POST a form to the service signed as Twilio signs it.
async fn signed(s: &TestServer, route: &str, form: &str) -> Response {
    let signature = sign(&format!("{PUBLIC_BASE_URL}{route}"), form);
    post_form(s, route, form, Some(&signature)).await
}

async fn message(s: &TestServer, id: &str) -> Value {
    s.get(&format!("/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// Poll a message until its `status_detail` holds `words`, or panic after 10 s.
async fn wait_for_detail(s: &TestServer, id: &str, words: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        last = message(s, id).await;
        if last["status_detail"]
            .as_str()
            .is_some_and(|d| d.contains(words))
        {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("message {id} never said {words:?}: {last}");
}

/// The sends the fake Twilio received.
async fn sends(fake: &MockServer) -> Vec<Request> {
    fake.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == messages_path())
        .collect()
}

/// Answers the first call with `first`, later ones with `then`, noting when each came.
struct FirstThen {
    first: ResponseTemplate,
    then: ResponseTemplate,
    at: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for FirstThen {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let mut at = self.at.lock().unwrap();
        at.push(Instant::now());
        if at.len() == 1 {
            self.first.clone()
        } else {
            self.then.clone()
        }
    }
}

/// Mount `first` then `then` for sends; the returned list dates every send.
async fn answer_first_then(
    fake: &MockServer,
    first: ResponseTemplate,
    then: ResponseTemplate,
) -> Arc<Mutex<Vec<Instant>>> {
    let at = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(FirstThen {
            first,
            then,
            at: at.clone(),
        })
        .mount(fake)
        .await;
    at
}

#[tokio::test]
async fn a_message_reaches_twilio_with_basic_auth_its_form_and_status_callback_and_a_signed_callback_delivers_it(
) {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(created())
        .expect(1)
        .mount(&fake)
        .await;
    let s = service(&fake).await;
    let id = accepted(&s, "ご予約の確認です").await;
    s.wait_for(&id, |st| st == "sent").await;

    let sent = sends(&fake).await;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&sent[0].body).unwrap();
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("To"), Some("+819012345678"));
    assert_eq!(field("From"), Some(SENDER));
    assert_eq!(field("Body"), Some("ご予約の確認です"));
    assert_eq!(
        field("StatusCallback"),
        Some(format!("http://127.0.0.1:8080/v1/inbound/twilio/status?message_id={id}").as_str())
    );
    assert_eq!(field("MessagingServiceSid"), None);

    // A status on the way records nothing; the final one, for the sid Twilio gave, delivers.
    let r = signed(&s, STATUS, &fixture("status_callback_sent.form")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(message(&s, &id).await["status"], "sent");
    let r = signed(&s, STATUS, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.text().await.unwrap(), "");
    let m = message(&s, &id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert!(m["status_detail"].is_null(), "{m}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"tsunagi_twilio_api_calls_total{operation="send",outcome="sent"}"#),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn with_an_api_key_sends_authenticate_with_its_sid_and_secret_and_callbacks_with_the_auth_token(
) {
    const KEY_SID: &str = "SK0123456789abcdef0123456789abcdef";
    const KEY_SECRET: &str = "api-key-secret";
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(basic_auth(KEY_SID, KEY_SECRET))
        .respond_with(created())
        .expect(1)
        .mount(&fake)
        .await;
    let extra = format!("api_key_sid = \"{KEY_SID}\"\napi_key_secret = \"{KEY_SECRET}\"\n");
    let s = service_with(&fake, &extra).await;
    let id = accepted(&s, "API key").await;
    s.wait_for(&id, |st| st == "sent").await;
    let sent = sends(&fake).await;
    let authorization = sent[0].headers.get("authorization").unwrap();
    assert_eq!(
        authorization.to_str().unwrap(),
        format!(
            "Basic {}",
            STANDARD.encode(format!("{KEY_SID}:{KEY_SECRET}"))
        )
    );

    let r = signed(&s, STATUS, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(message(&s, &id).await["status"], "delivered");
    s.stop().await;
}

#[tokio::test]
async fn an_undelivered_callback_with_error_30003_says_so_in_the_detail() {
    let (_fake, s) = taking_service().await;
    let id = accepted(&s, "hello").await;
    s.wait_for(&id, |st| st == "sent").await;
    let r = signed(
        &s,
        STATUS,
        &fixture("status_callback_undelivered_30003.form"),
    )
    .await;
    assert_eq!(r.status(), 204);
    let m = message(&s, &id).await;
    assert_eq!(m["status"], "undelivered", "{m}");
    let detail = m["status_detail"].as_str().unwrap();
    assert!(detail.contains("30003"), "{detail}");
    assert!(detail.contains("unreachable"), "{detail}");
    s.stop().await;
}

#[tokio::test]
async fn a_forged_or_missing_signature_is_refused_and_the_message_is_unchanged() {
    let (_fake, s) = taking_service().await;
    let id = accepted(&s, "hello").await;
    s.wait_for(&id, |st| st == "sent").await;
    let delivered = fixture("status_callback_delivered.form");

    let r = post_form(&s, STATUS, &delivered, None).await;
    assert_eq!(r.status(), 403);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["field"], "X-Twilio-Signature", "{problem}");

    // Signed for another URL, or over other parameters, or not base64 at all.
    let elsewhere = sign(
        "https://attacker.example/v1/inbound/twilio/status",
        &delivered,
    );
    let undelivered = sign(
        &format!("{PUBLIC_BASE_URL}{STATUS}"),
        &fixture("status_callback_undelivered_30003.form"),
    );
    for forged in [elsewhere.as_str(), undelivered.as_str(), "%%%"] {
        let r = post_form(&s, STATUS, &delivered, Some(forged)).await;
        assert_eq!(r.status(), 403, "{forged}");
    }
    let r = post_form(
        &s,
        SMS,
        &fixture("inbound_sms_japanese.form"),
        Some(&elsewhere),
    )
    .await;
    assert_eq!(r.status(), 403);

    let m = message(&s, &id).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(m["replies"], json!([]), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn callbacks_that_are_no_signed_form_are_refused_precisely() {
    let fake = MockServer::start().await;
    let s = service(&fake).await;
    let r = s
        .client
        .post(format!("{}{STATUS}", s.base))
        .json(&json!({"MessageSid": MESSAGE_SID}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let huge = format!("Body={}", "a".repeat(70 * 1024));
    let r = signed(&s, SMS, &huge).await;
    assert_eq!(r.status(), 413);

    let no_from = "To=%2B815055550100&Body=hi&MessageSid=SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d";
    let r = signed(&s, SMS, no_from).await;
    assert_eq!(r.status(), 400);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("From"),
        "{problem}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_throttled_send_is_tried_again_no_earlier_than_retry_after_and_delivered() {
    let fake = MockServer::start().await;
    let throttled =
        json_answer(429, "message_create_error_20429.json").insert_header("Retry-After", "2");
    let at = answer_first_then(&fake, throttled, created()).await;
    let s = service(&fake).await;
    let id = accepted(&s, "hello").await;
    let m = wait_for_detail(&s, &id, "retrying after").await;
    assert!(m["status_detail"].as_str().unwrap().contains("429"), "{m}");
    s.wait_for(&id, |st| st == "sent").await;
    let at = at.lock().unwrap().clone();
    assert_eq!(at.len(), 2);
    let waited = at[1] - at[0];
    assert!(
        waited >= Duration::from_secs(2),
        "sent again after {waited:?}"
    );

    let r = signed(&s, STATUS, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(message(&s, &id).await["status"], "delivered");
    s.stop().await;
}

#[tokio::test]
async fn a_twilio_server_error_is_retried_and_the_message_sent() {
    let fake = MockServer::start().await;
    let at = answer_first_then(
        &fake,
        json_answer(500, "message_create_error_20500.json"),
        created(),
    )
    .await;
    let s = service(&fake).await;
    let id = accepted(&s, "hello").await;
    let m = s.wait_for(&id, |st| st == "sent").await;
    assert_eq!(at.lock().unwrap().len(), 2, "{m}");
    assert!(
        m["events"].to_string().contains("20500"),
        "the retry says why: {m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_send_twilio_does_not_answer_within_timeout_ms_is_retried() {
    let fake = MockServer::start().await;
    // Past the service's timeout_ms (2 s).
    let silent = created().set_delay(Duration::from_millis(2500));
    let at = answer_first_then(&fake, silent, created()).await;
    let s = service(&fake).await;
    let id = accepted(&s, "hello").await;
    let m = s.wait_for(&id, |st| st == "sent").await;
    assert_eq!(at.lock().unwrap().len(), 2, "{m}");
    assert!(m["events"].to_string().contains("timed out"), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn a_twilio_timeout_after_acceptance_is_not_sent_on_the_smpp_route() {
    let fake = MockServer::start().await;
    let silent = created().set_delay(Duration::from_millis(2500));
    let at = answer_first_then(&fake, silent, created()).await;
    let smsc = fake_smsc::FakeSmsc::start(fake_smsc::Options::new("tsunagi", "secret"))
        .await
        .unwrap();
    let s = TestServer::with_delivery(&format!(
        r#"
[[delivery.routes]]
name = "twilio"
provider = "twilio"
[delivery.routes.twilio]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "{SENDER}"
base_url = "{}"
timeout_ms = 2000
[[delivery.routes]]
name = "smpp"
provider = "smpp"
[delivery.routes.smpp]
host = "127.0.0.1"
port = {}
system_id = "tsunagi"
password = "secret"
"#,
        fake.uri(),
        smsc.addr().port()
    ))
    .await;
    let id = accepted(&s, "hello").await;
    let m = s.wait_for(&id, |st| st == "sent").await;
    assert_eq!(at.lock().unwrap().len(), 2, "sent again on Twilio: {m}");
    assert_eq!(
        smsc.submit_count(),
        0,
        "a message Twilio may have had went to the SMSC"
    );
    assert!(
        m["events"]
            .to_string()
            .contains("in doubt, retrying on route twilio only"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_send_in_doubt_that_twilios_callback_names_is_delivered_and_not_sent_again() {
    let fake = MockServer::start().await;
    // Twilio takes it, but answers past the service's timeout_ms (2 s).
    let silent = created().set_delay(Duration::from_millis(2500));
    let at = answer_first_then(&fake, silent, created()).await;
    let retry_later = "retry_base_ms = 60000\nretry_max_ms = 60000\n";
    let s = service_delivering(&fake, retry_later, "").await;
    let id = accepted(&s, "hello").await;
    wait_for_detail(&s, &id, "in doubt").await;
    // Twilio's callback for the sid it gave, to the URL the send named the message in.
    let route = format!("{STATUS}?message_id={id}");
    let r = signed(&s, &route, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert!(m["events"].to_string().contains("not sent again"), "{m}");
    // Past the retry's time, nothing more goes to Twilio.
    s.advance(120);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(at.lock().unwrap().len(), 1, "sent twice");
    s.stop().await;
}

#[tokio::test]
async fn a_region_the_twilio_account_may_not_send_to_goes_to_the_next_route() {
    let fake = MockServer::start().await;
    let refused = json_answer(400, "message_create_error_21408.json");
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(refused)
        .mount(&fake)
        .await;
    let s = TestServer::with_delivery(&format!(
        r#"
[[delivery.routes]]
name = "twilio"
provider = "twilio"
[delivery.routes.twilio]
account_sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
from = "{SENDER}"
base_url = "{}"
[[delivery.routes]]
name = "sandbox"
provider = "sandbox"
"#,
        fake.uri()
    ))
    .await;
    let id = accepted(&s, "hello").await;
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(sends(&fake).await.len(), 1);
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "one message's region is not the account's fault"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_final_status_for_a_second_sid_of_one_message_is_noticed() {
    let (_fake, s) = taking_service().await;
    let id = accepted(&s, "hello").await;
    s.wait_for(&id, |st| st == "sent").await;
    let route = format!("{STATUS}?message_id={id}");
    // The sid of an earlier send in doubt that Twilio had taken after all.
    let form = fixture("status_callback_delivered.form")
        .replace(MESSAGE_SID, "SM00000000000000000000000000000001");
    let r = signed(&s, &route, &form).await;
    assert_eq!(r.status(), 204);
    assert!(
        s.metrics()
            .await
            .contains("tsunagi_twilio_second_sids_total 1"),
        "a second sid went unnoticed"
    );
    let r = signed(&s, &route, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(message(&s, &id).await["status"], "delivered");
    assert!(s
        .metrics()
        .await
        .contains("tsunagi_twilio_second_sids_total 1"));
    s.stop().await;
}

#[tokio::test]
async fn an_invalid_to_number_error_21211_fails_the_message_with_the_code_in_the_detail() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(json_answer(400, "message_create_error_21211.json"))
        .expect(1)
        .mount(&fake)
        .await;
    let s = service(&fake).await;
    let id = accepted(&s, "hello").await;
    let m = s.wait_for(&id, |st| st == "failed").await;
    let detail = m["status_detail"].as_str().unwrap();
    assert!(detail.contains("21211"), "{detail}");
    assert!(detail.contains("Invalid 'To' Phone Number"), "{detail}");
    s.stop().await;
}

#[tokio::test]
async fn a_refused_account_keeps_messages_queued_and_readyz_says_why_until_twilio_takes_it_again() {
    let fake = MockServer::start().await;
    let refused = json_answer(401, "message_create_error_20003.json");
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(refused.clone())
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path(account_path()))
        .respond_with(refused)
        .mount(&fake)
        .await;
    let s = service(&fake).await;
    let id = accepted(&s, "hello").await;
    let m = wait_for_detail(&s, &id, "waiting for the provider").await;
    assert_eq!(m["status"], "queued", "{m}");
    assert!(
        m["status_detail"].as_str().unwrap().contains("20003"),
        "{m}"
    );
    let r = s
        .client
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Twilio refuses the account"),
        "{problem}"
    );
    // Nothing more is sent while the account is refused: only the probe asks.
    let second = accepted(&s, "another").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sends(&fake).await.len(), 1);
    assert_eq!(message(&s, &second).await["status"], "queued");

    // The account works again: the probe sees it, and the waiting messages go out.
    fake.reset().await;
    Mock::given(method("GET"))
        .and(path(account_path()))
        .respond_with(json_answer(200, "account_fetch_active.json"))
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(created())
        .mount(&fake)
        .await;
    s.wait_for(&id, |st| st == "sent").await;
    s.wait_for(&second, |st| st == "sent").await;
    let r = s
        .client
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn a_signed_inbound_sms_in_japanese_is_stored_as_a_reply_on_the_latest_message_to_that_number(
) {
    let (_fake, s) = taking_service().await;
    let older = accepted(&s, "older").await;
    s.wait_for(&older, |st| st == "sent").await;
    let latest = accepted(&s, "明日10時のご予約でよろしいですか").await;
    s.wait_for(&latest, |st| st == "sent").await;

    let r = signed(&s, SMS, &fixture("inbound_sms_japanese.form")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    assert_eq!(r.text().await.unwrap(), EMPTY_TWIML);

    let m = message(&s, &latest).await;
    assert_eq!(
        m["replies"][0]["body"], "はい、明日の10時で大丈夫です。",
        "{m}"
    );
    assert_eq!(m["replies"][0]["from"], "+81 90-****-5678", "{m}");
    assert_eq!(message(&s, &older).await["replies"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn an_inbound_sms_webhook_posted_twice_is_stored_once() {
    let (_fake, s) = taking_service().await;
    let id = accepted(&s, "ご予約でよろしいですか").await;
    s.wait_for(&id, |st| st == "sent").await;
    for _ in 0..2 {
        let r = signed(&s, SMS, &fixture("inbound_sms_japanese.form")).await;
        assert_eq!(r.status(), 200);
    }
    let m = message(&s, &id).await;
    assert_eq!(m["replies"].as_array().unwrap().len(), 1, "{m}");
    s.stop().await;
}

#[tokio::test]
async fn an_inbound_sms_from_no_phone_number_is_answered_and_not_stored() {
    let (_fake, s) = taking_service().await;
    let id = accepted(&s, "hello").await;
    s.wait_for(&id, |st| st == "sent").await;
    let form = fixture("inbound_sms_japanese.form").replace("From=%2B819012345678", "From=INFO");
    let r = signed(&s, SMS, &form).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), EMPTY_TWIML);
    assert_eq!(message(&s, &id).await["replies"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn a_callback_for_a_sid_no_message_has_is_answered_and_breaks_nothing() {
    let (_fake, s) = taking_service().await;
    let unknown = fixture("status_callback_delivered.form")
        .replace(MESSAGE_SID, "SM00000000000000000000000000000000");
    let r = signed(&s, STATUS, &unknown).await;
    assert_eq!(r.status(), 204);

    let id = accepted(&s, "hello").await;
    s.wait_for(&id, |st| st == "sent").await;
    let r = signed(&s, STATUS, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(message(&s, &id).await["status"], "delivered");
    s.stop().await;
}

#[tokio::test]
async fn twilio_callbacks_answer_404_when_no_twilio_account_is_configured() {
    let s = TestServer::start().await;
    let form = fixture("status_callback_delivered.form");
    let r = signed(&s, STATUS, &form).await;
    assert_eq!(r.status(), 404);
    let r = signed(&s, SMS, &fixture("inbound_sms_japanese.form")).await;
    assert_eq!(r.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn a_delivered_callback_that_beats_twilios_answer_still_delivers_the_message() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(created().set_delay(Duration::from_millis(1500)))
        .mount(&fake)
        .await;
    let s = service(&fake).await;
    let id = accepted(&s, "hello").await;
    s.wait_for(&id, |st| st == "sending").await;
    let r = signed(&s, STATUS, &fixture("status_callback_delivered.form")).await;
    assert_eq!(r.status(), 204);
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert!(m["status_detail"].is_null(), "{m}");
    s.stop().await;
}

/// The Japanese inbound SMS fixture saying `body` under sid `sid`, with Advanced Opt-Out's
/// `OptOutType` when given.
fn inbound_sms(body: &str, sid: &str, opt_out_type: Option<&str>) -> String {
    let mut form: Vec<(String, String)> =
        serde_urlencoded::from_str(&fixture("inbound_sms_japanese.form")).unwrap();
    for (name, value) in &mut form {
        match name.as_str() {
            "Body" => *value = body.to_string(),
            "MessageSid" | "SmsSid" | "SmsMessageSid" => *value = sid.to_string(),
            _ => {}
        }
    }
    if let Some(kind) = opt_out_type {
        form.push(("OptOutType".into(), kind.into()));
    }
    serde_urlencoded::to_string(form).unwrap()
}

async fn opt_outs_of_the_handset(s: &TestServer) -> Vec<Value> {
    s.opt_outs_of("%2B819012345678").await
}

#[tokio::test]
async fn twilios_opt_out_type_stop_opts_out_in_words_tsunagi_does_not_know_and_start_opts_back_in()
{
    let (_fake, s) = taking_service().await;
    let id = accepted(&s, "セールのお知らせ").await;
    s.wait_for(&id, |st| st == "sent").await;

    let r = signed(&s, SMS, &inbound_sms("やめる", "SMa1", Some("STOP"))).await;
    assert_eq!(r.status(), 200);
    let listed = opt_outs_of_the_handset(&s).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["from"], SENDER);
    assert_eq!(listed[0]["keyword"], "やめる");
    assert_eq!(listed[0]["message_id"], id.as_str());
    let (status, p) = s
        .send(json!({"to": "090-1234-5678", "body": "次のセール"}))
        .await;
    assert_eq!((status, p["code"].as_str()), (422, Some("number_blocked")));

    let r = signed(&s, SMS, &inbound_sms("ヘルプ", "SMa2", Some("HELP"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        opt_outs_of_the_handset(&s).await.len(),
        1,
        "HELP changes nothing"
    );

    let r = signed(&s, SMS, &inbound_sms("また送って", "SMa3", Some("START"))).await;
    assert_eq!(r.status(), 200);
    assert!(opt_outs_of_the_handset(&s).await.is_empty());
    let replies = message(&s, &id).await["replies"].as_array().unwrap().len();
    assert_eq!(replies, 3, "every one is stored as a reply");
    s.stop().await;
}

#[tokio::test]
async fn a_message_with_an_expiry_reaches_twilio_with_the_seconds_left_as_validity_period() {
    let (fake, s) = taking_service().await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let (status, b) = s
        .send(json!({"to": "090-1234-5678", "body": "本日15時まで有効です", "expires_at": expires_at}))
        .await;
    assert_eq!(status, 202, "{b}");
    let expiring = b["id"].as_str().unwrap().to_string();
    s.wait_for(&expiring, |st| st == "sent").await;
    let lasting = accepted(&s, "期限のないお知らせです").await;
    s.wait_for(&lasting, |st| st == "sent").await;

    let validity_of = |request: &Request| {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).unwrap();
        let callback = form.iter().find(|(n, _)| n == "StatusCallback").unwrap();
        let validity = form.iter().find(|(n, _)| n == "ValidityPeriod");
        (
            callback.1.clone(),
            validity.map(|(_, v)| v.parse::<u64>().unwrap()),
        )
    };
    let sent: Vec<_> = sends(&fake).await.iter().map(validity_of).collect();
    let expiring_validity = sent.iter().find(|(c, _)| c.ends_with(&expiring)).unwrap().1;
    assert!(
        expiring_validity.is_some_and(|v| (590..=600).contains(&v)),
        "{expiring_validity:?}"
    );
    let lasting_validity = sent.iter().find(|(c, _)| c.ends_with(&lasting)).unwrap().1;
    assert_eq!(lasting_validity, None, "a ValidityPeriod without an expiry");
    s.stop().await;
}

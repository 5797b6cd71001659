//! Salesforce calling in: Outbound Messages and Flow callouts become SMS through the one
//! admission path; refused records are kept as `rejected`, never dropped.

use reqwest::Response;
use serde_json::{json, Value};

use crate::{
    fake_salesforce::{self, FakeSalesforce},
    harness::{delivered_events, TestServer},
    links,
};

const TOKEN: &str = "inbound-token-0123456789";

/// Two connections, signing in at a local fake Salesforce: `dev` (the org of the Contact fixture,
/// configured by its 15-character id while the envelopes carry 18) and `acme` (the custom-object
/// fixture's org). Write-back runs every 100 ms, holds states that are not final, and pauses
/// at most 300 ms when Salesforce asks for a long pause.
fn connections(salesforce: &FakeSalesforce) -> String {
    let key = format!(
        "{}/tests/fixtures/salesforce/jwt_test_only_private_key.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    format!(
        r#"
[[salesforce]]
name = "dev"
organization_id = "00D5j000001aBcD"
inbound_token = "inbound-token-0123456789"
auth = "client_credentials"
client_id = "3MVG9-test"
client_secret = "client-secret"
login_url = "{login}"

[[salesforce.mappings]]
sobject = "Contact"
phone_field = "MobilePhone"
template = "{{{{LastName}}}}様 ご予約は{{{{Appointment_Date__c}}}}です"
status_field = "SMS_Status__c"
status_detail_field = "SMS_Status_Detail__c"
reply_field = "SMS_Last_Reply__c"
opt_out_field = "SMS_Opt_Out__c"

[[salesforce]]
name = "acme"
organization_id = "00D2x000000XyZaEAK"
inbound_token = "acme-token-0123456789"
auth = "jwt_bearer"
client_id = "3MVG9-acme"
username = "integration@acme.example"
private_key_path = "{key}"
login_url = "{login}"

[[salesforce.mappings]]
sobject = "tsg__Appointment__c"
phone_field = "tsg__Contact_Phone__c"
template = "{{{{Name}}}} {{{{CreatedDate}}}} ({{{{CreatedDate|date(\"%m月%d日\")}}}}) {{{{tsg__Amount__c}}}}円 {{{{tsg__Slot_Count__c}}}}枠"
status_field = "tsg__SMS_Status__c"
status_detail_field = "tsg__SMS_Detail__c"
reply_field = "tsg__SMS_Reply__c"

[writeback]
interval_ms = 100
settle_ms = 60000
max_pause_ms = 300
fill_wait_ms = 0
"#,
        login = salesforce.uri()
    )
}

/// `connections`, with `keys` (lines ending in a newline) added to the `dev` Contact mapping.
fn dev_mapping_with(salesforce: &FakeSalesforce, keys: &str) -> String {
    let opt_out = "opt_out_field = \"SMS_Opt_Out__c\"\n";
    connections(salesforce).replacen(opt_out, &format!("{opt_out}{keys}"), 1)
}

/// `connections`, with the `dev` connection signing in with refresh token `token`.
fn dev_refreshing(salesforce: &FakeSalesforce, token: &str) -> String {
    let secret = "client_secret = \"client-secret\"\n";
    connections(salesforce)
        .replacen(
            "auth = \"client_credentials\"",
            "auth = \"refresh_token\"",
            1,
        )
        .replacen(secret, &format!("{secret}refresh_token = \"{token}\"\n"), 1)
}

/// A test server with the two connections, and the fake org they write back to.
pub async fn server() -> (TestServer, FakeSalesforce) {
    let salesforce = FakeSalesforce::start().await;
    (
        TestServer::with_delivery(&connections(&salesforce)).await,
        salesforce,
    )
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/salesforce/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A notification's id, its Contact's id and the Contact's fields.
type Notification<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// An Outbound Message as Salesforce sends it: CRLF, one-space indents, no declaration.
fn envelope(org: &str, notifications: &[Notification<'_>]) -> Vec<u8> {
    let mut xml = String::from(concat!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\r\n <soapenv:Body>\r\n",
        "  <notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">\r\n",
    ));
    xml += &format!("   <OrganizationId>{org}</OrganizationId>\r\n");
    xml += "   <ActionId>04k5j000000KxYzAAK</ActionId>\r\n   <SessionId xsi:nil=\"true\"/>\r\n";
    xml += "   <EnterpriseUrl>https://x.my.salesforce.com/services/Soap/c/67.0/00D5j000001aBcD</EnterpriseUrl>\r\n";
    xml += "   <PartnerUrl>https://x.my.salesforce.com/services/Soap/u/67.0/00D5j000001aBcD</PartnerUrl>\r\n";
    for (id, record, fields) in notifications {
        xml += &format!("   <Notification>\r\n    <Id>{id}</Id>\r\n");
        xml += "    <sObject xsi:type=\"sf:Contact\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">\r\n";
        xml += &format!("     <sf:Id>{record}</sf:Id>\r\n");
        for (name, value) in *fields {
            xml += &format!("     <sf:{name}>{value}</sf:{name}>\r\n");
        }
        xml += "    </sObject>\r\n   </Notification>\r\n";
    }
    xml += "  </notifications>\r\n </soapenv:Body>\r\n</soapenv:Envelope>";
    xml.into_bytes()
}

async fn post_xml(s: &TestServer, path: &str, body: Vec<u8>) -> Response {
    s.client
        .post(format!("{}{path}", s.base))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn outbound(s: &TestServer, body: Vec<u8>) -> (u16, String) {
    let path = format!("/v1/inbound/salesforce/dev/outbound-message/{TOKEN}");
    let r = post_xml(s, &path, body).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn flow(s: &TestServer, body: Value) -> (u16, Value) {
    let path = format!("/v1/inbound/salesforce/dev/flow/{TOKEN}");
    let r = s
        .client
        .post(format!("{}{path}", s.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn is_ack(body: &str) -> bool {
    body.contains("<Ack>true</Ack>") && body.contains("notificationsResponse")
}

/// Every stored message, newest first.
async fn messages(s: &TestServer) -> Vec<Value> {
    let list: Value = s.get("/v1/messages?limit=100").await.json().await.unwrap();
    list["data"].as_array().unwrap().clone()
}

fn with_status<'a>(all: &'a [Value], status: &str) -> Vec<&'a Value> {
    all.iter().filter(|m| m["status"] == status).collect()
}

#[tokio::test]
async fn an_outbound_message_sends_each_mapped_record_writes_it_back_and_keeps_the_refused_ones_as_rejected(
) {
    let (s, salesforce) = server().await;
    let (status, body) = outbound(&s, fixture("outbound_message_contact.xml")).await;
    assert_eq!(status, 200, "{body}");
    assert!(is_ack(&body), "{body}");

    let all = messages(&s).await;
    assert_eq!(all.len(), 3, "one message per notification: {all:?}");
    assert!(all.iter().all(|m| m["source"] == "salesforce:dev"));
    let id = all.iter().find(|m| m["status"] != "rejected").unwrap()["id"]
        .as_str()
        .unwrap();
    assert_eq!(
        s.text_of("09012345678", &json!(id)).await,
        "山田様 ご予約は2026-12-24です"
    );
    let delivered = s.wait_for(id, |st| st == "delivered").await;
    assert_eq!(
        delivered_events(&delivered),
        ["queued", "sending", "delivered"]
    );

    let rejected = with_status(&all, "rejected");
    let details: Vec<&str> = rejected
        .iter()
        .map(|m| m["status_detail"].as_str().unwrap())
        .collect();
    assert_eq!(rejected.len(), 2, "{all:?}");
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("number_type_not_allowed: `MobilePhone`")),
        "the (031) landline: {details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("number_blocked:") && d.contains("SMS_Opt_Out__c")),
        "the opted-out contact: {details:?}"
    );
    let landline = rejected
        .iter()
        .find(|m| m["status_detail"].as_str().unwrap().contains("MobilePhone"))
        .unwrap();
    assert_eq!(
        landline["to"], "+81 31-***-5678",
        "the number is kept, masked"
    );
    let shown: Value = s
        .get(&format!(
            "/v1/messages/{}",
            landline["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["events"][0]["status"], "rejected");
    assert_eq!(shown["events"][0]["detail"], landline["status_detail"]);

    // Written back: each record once, with its final state (the rejected ones at once, the
    // delivered one when its receipt came), in at most two sObject Collections calls.
    let status_of = |records: &[Value], id: &str| -> Option<(String, Value)> {
        records.iter().rev().find(|r| r["id"] == id).map(|r| {
            (
                r["SMS_Status__c"].as_str().unwrap_or_default().to_string(),
                r["SMS_Status_Detail__c"].clone(),
            )
        })
    };
    let records = salesforce
        .wait_for(|records| {
            status_of(records, "0035j00000Pq7RsAAJ").is_some_and(|(s, _)| s == "delivered")
                && status_of(records, "0035j00000Pq7RtAAJ").is_some()
                && status_of(records, "0035j00000Pq7RuAAJ").is_some()
        })
        .await;
    assert_eq!(records.len(), 3, "one write per record: {records:?}");
    assert!(records.iter().all(|r| r["attributes"]["type"] == "Contact"));
    let (status, detail) = status_of(&records, "0035j00000Pq7RtAAJ").unwrap();
    assert_eq!(status, "rejected");
    assert!(
        detail
            .as_str()
            .unwrap()
            .starts_with("number_type_not_allowed: `MobilePhone`"),
        "{detail}"
    );
    assert_eq!(
        status_of(&records, "0035j00000Pq7RuAAJ").unwrap().0,
        "rejected"
    );
    assert_eq!(
        status_of(&records, "0035j00000Pq7RsAAJ").unwrap().1,
        Value::Null,
        "a delivered record's detail is cleared"
    );
    assert!(salesforce.rest_calls().await <= 2);
    assert!(
        s.outbox_after_stop("salesforce:dev").await.is_empty(),
        "everything written back was acknowledged"
    );
}

#[tokio::test]
async fn a_custom_object_shows_datetimes_in_japan_time_and_numbers_without_a_zero_fraction() {
    let (s, salesforce) = server().await;
    let path = "/v1/inbound/salesforce/acme/outbound-message/acme-token-0123456789";
    let r = post_xml(&s, path, fixture("outbound_message_custom_object.xml")).await;
    assert_eq!(r.status(), 200);
    assert!(is_ack(&r.text().await.unwrap()));
    let all = messages(&s).await;
    assert_eq!(all.len(), 1);
    let text = s.text_of("09012345678", &all[0]["id"]).await;
    assert_eq!(
        text,
        "APT-000042 2020-05-08 22:40 (05月08日) 45000000円 2枠"
    );
    // Written back over a JWT minted at the org's own URL (a My Domain), for the login host.
    salesforce
        .wait_for(|records| {
            records
                .iter()
                .any(|r| r["tsg__SMS_Status__c"] == "delivered")
        })
        .await;
    assert_eq!(
        salesforce.jwt_audiences().await,
        ["https://login.salesforce.com"]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_redelivered_outbound_message_is_acked_and_sends_nothing_more() {
    let (s, _salesforce) = server().await;
    let first = outbound(&s, fixture("outbound_message_contact.xml")).await;
    assert_eq!(first.0, 200);
    let again = outbound(&s, fixture("outbound_message_contact.xml")).await;
    assert_eq!(again.0, 200, "{}", again.1);
    assert!(is_ack(&again.1));
    let all = messages(&s).await;
    assert_eq!(all.len(), 3, "no second message, rejected ones included");
    let id = all.iter().find(|m| m["status"] != "rejected").unwrap()["id"]
        .as_str()
        .unwrap();
    s.wait_for(id, |st| st == "delivered").await;
    assert_eq!(s.provider_calls(id), 1);
    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tsunagi_inbound_records_total")
                && l.contains("connection=\"salesforce:dev\"")
                && l.contains("outcome=\"replayed\"")),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_outbound_message_from_another_org_is_refused_without_ack_and_stores_nothing() {
    let (s, _salesforce) = server().await;
    let path = format!("/v1/inbound/salesforce/dev/outbound-message/{TOKEN}");
    let r = post_xml(&s, &path, fixture("outbound_message_custom_object.xml")).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    let body = r.text().await.unwrap();
    assert!(!is_ack(&body) && body.contains("soapenv:Fault"), "{body}");
    assert!(body.contains("00D2x000000XyZaEAK"), "{body}");
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_token_or_an_unknown_connection_stores_nothing() {
    let (s, _salesforce) = server().await;
    let body = fixture("outbound_message_contact.xml");
    let wrong = post_xml(
        &s,
        "/v1/inbound/salesforce/dev/outbound-message/not-the-token-at-all",
        body.clone(),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let problem: Value = wrong.json().await.unwrap();
    assert_eq!(problem["code"], "unauthorized");
    let acme_token = "/v1/inbound/salesforce/dev/outbound-message/acme-token-0123456789";
    assert_eq!(
        post_xml(&s, acme_token, body.clone()).await.status(),
        401,
        "another connection's token"
    );
    let unknown = post_xml(
        &s,
        &format!("/v1/inbound/salesforce/prod/outbound-message/{TOKEN}"),
        body,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let problem: Value = unknown.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
    let flow_wrong = s
        .client
        .post(format!("{}/v1/inbound/salesforce/dev/flow/wrong-token-0123456789", s.base))
        .json(&json!({"records": [{"id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "phone": "090-1234-5678"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(flow_wrong.status(), 401);
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn an_envelope_that_does_not_parse_or_is_not_xml_is_refused() {
    let (s, _salesforce) = server().await;
    let (status, body) = outbound(&s, b"<notifications/>".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("soapenv:Client"), "{body}");
    let path = format!("/v1/inbound/salesforce/dev/outbound-message/{TOKEN}");
    let json = s
        .client
        .post(format!("{}{path}", s.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_large_envelope_is_taken_up_to_4_mib_and_refused_beyond() {
    let (s, _salesforce) = server().await;
    let long = "x".repeat(200_000);
    let fields = [
        ("LastName", long.as_str()),
        ("MobilePhone", "090-1234-0004"),
        ("Appointment_Date__c", "2026-12-24"),
    ];
    let body = envelope(
        "00D5j000001aBcDEAU",
        &[("04l5j00000ChQ9aAAF", "0035j00000Pq7RsAAJ", &fields)],
    );
    assert!(body.len() > 64 * 1024);
    let (status, text) = outbound(&s, body).await;
    assert_eq!(status, 200, "{text}");
    let all = messages(&s).await;
    assert!(all[0]["status_detail"]
        .as_str()
        .unwrap()
        .starts_with("message_too_long:"));
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let (status, text) = outbound(&s, huge).await;
    assert_eq!(status, 413, "{text}");
    s.stop().await;
}

#[tokio::test]
async fn a_050_number_is_rejected_with_its_code_still_acked_and_written_back() {
    let (s, salesforce) = server().await;
    let fields = [
        ("LastName", "高橋"),
        ("MobilePhone", "050-1234-5678"),
        ("Appointment_Date__c", "2026-12-24"),
    ];
    let body = envelope(
        "00D5j000001aBcDEAU",
        &[("04l5j00000ChQ2aAAF", "0035j00000Pq7RvAAJ", &fields)],
    );
    let (status, text) = outbound(&s, body).await;
    assert_eq!(status, 200);
    assert!(is_ack(&text));
    let all = messages(&s).await;
    assert_eq!(all.len(), 1);
    let m: Value = s
        .get(&format!("/v1/messages/{}", all[0]["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["status"], "rejected");
    assert!(
        m["status_detail"]
            .as_str()
            .unwrap()
            .starts_with("number_type_not_allowed: "),
        "{m}"
    );
    assert_eq!(m["source"], "salesforce:dev");
    assert_eq!(m["events"][0]["detail"], m["status_detail"]);
    let records = salesforce
        .wait_for(|records| records.iter().any(|r| r["id"] == "0035j00000Pq7RvAAJ"))
        .await;
    assert_eq!(records[0]["SMS_Status__c"], "rejected");
    assert_eq!(records[0]["SMS_Status_Detail__c"], m["status_detail"]);
    s.stop().await;
}

#[tokio::test]
async fn a_missing_merge_field_or_phone_is_rejected_with_its_reason() {
    let (s, _salesforce) = server().await;
    let no_date = [("LastName", "高橋"), ("MobilePhone", "090-1234-0001")];
    let no_phone = [("LastName", "高橋"), ("Appointment_Date__c", "2026-12-24")];
    let body = envelope(
        "00D5j000001aBcD",
        &[
            ("04l5j00000ChQ3aAAF", "0035j00000Pq7RwAAJ", &no_date),
            ("04l5j00000ChQ3bAAF", "0035j00000Pq7RxAAJ", &no_phone),
        ],
    );
    let (status, text) = outbound(&s, body).await;
    assert_eq!(status, 200, "{text}");
    let details: Vec<String> = messages(&s)
        .await
        .iter()
        .map(|m| {
            assert_eq!(m["status"], "rejected");
            m["status_detail"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("missing_template_variable:")
                && d.contains("Appointment_Date__c")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("invalid_phone_number: `MobilePhone`")),
        "{details:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_unmapped_sobject_is_rejected_not_dropped() {
    let lead = String::from_utf8(fixture("outbound_message_single_lead.xml")).unwrap();
    let org = lead
        .split("<OrganizationId>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let salesforce = FakeSalesforce::start().await;
    let config = connections(&salesforce).replace("00D2x000000XyZaEAK", org);
    let s = TestServer::with_delivery(&config).await;
    let path = "/v1/inbound/salesforce/acme/outbound-message/acme-token-0123456789";
    let r = post_xml(&s, path, lead.into_bytes()).await;
    assert_eq!(r.status(), 200);
    let all = messages(&s).await;
    assert_eq!(all.len(), 1);
    let detail = all[0]["status_detail"].as_str().unwrap();
    assert!(
        detail
            .starts_with("invalid_request: no [[salesforce.mappings]] entry for sObject \"Lead\""),
        "{detail}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_flow_call_answers_each_record_in_order() {
    let (s, _salesforce) = server().await;
    let mut call: Value = serde_json::from_slice(&fixture("flow_request_contacts.json")).unwrap();
    let records = call["records"].as_array_mut().unwrap();
    records.push(json!({
        "id": "not-an-id", "sobject": "Contact", "phone": "090-1234-5678", "fields": {}
    }));
    records.push(json!({
        "id": "0035j00000Pq7RsAAJ", "sobject": "Contact/x", "phone": "090-1234-5678"
    }));
    let (status, body) = flow(&s, call).await;
    assert_eq!(status, 202, "{body}");
    let results = body["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "0035j00000Pq7RsAAJ",
            "0035j00000Pq7RtAAJ",
            "0035j00000Pq7Ru",
            "not-an-id",
            "0035j00000Pq7RsAAJ"
        ]
    );

    assert_eq!(results[0]["status"], "queued");
    let sent = &results[0]["message_id"];
    assert_eq!(
        s.text_of("09012345678", sent).await,
        "山田様 ご予約は2026-12-24です"
    );

    // The phone is null, so the landline in MobilePhone is used and refused.
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["error"]["code"], "number_type_not_allowed");
    let stored: Value = s
        .get(&format!(
            "/v1/messages/{}",
            results[1]["message_id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "rejected");

    // No Appointment_Date__c in the fields.
    assert_eq!(results[2]["error"]["code"], "missing_template_variable");
    assert!(results[2]["message_id"].is_string());

    assert_eq!(results[3]["status"], "rejected");
    assert_eq!(results[3]["error"]["code"], "invalid_request");
    assert!(results[3]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("records[3].id"));
    assert!(
        results[3].get("message_id").is_none(),
        "no record to keep it for"
    );
    assert_eq!(s.stored_messages().await, 3);
    s.stop().await;
}

#[tokio::test]
async fn a_flow_template_can_format_a_datetime_in_the_connection_zone() {
    let (s, _salesforce) = server().await;
    let call = json!({"records": [{
        "id": "0035j00000Pq7RsAAJ",
        "sobject": "Contact",
        "phone": "090-1234-0002",
        "fields": {"LastName": "山田", "Appointment__c": "2026-12-23T16:00:00.000Z", "Visits__c": 45000.0},
        "template": "{{LastName}}様 {{Appointment__c|date(\"%m月%d日\")}} ({{Appointment__c}}) {{Visits__c}}"
    }]});
    let (status, body) = flow(&s, call).await;
    assert_eq!(status, 202, "{body}");
    let text = s
        .text_of("09012340002", &body["results"][0]["message_id"])
        .await;
    assert_eq!(text, "山田様 12月24日 (2026-12-24 01:00) 45000");
    s.stop().await;
}

#[tokio::test]
async fn record_values_are_printed_as_data_never_run_as_template_source() {
    let (s, _salesforce) = server().await;
    let call = json!({"records": [{
        "id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "phone": "090-1234-0005",
        "fields": {"LastName": "{{Appointment_Date__c}}{% if true %}x{% endif %}", "Appointment_Date__c": "2026-12-24"}
    }]});
    let (status, body) = flow(&s, call).await;
    assert_eq!(status, 202, "{body}");
    let text = s
        .text_of("09012340005", &body["results"][0]["message_id"])
        .await;
    assert_eq!(
        text,
        "{{Appointment_Date__c}}{% if true %}x{% endif %}様 ご予約は2026-12-24です"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_flow_call_over_1_mib_is_refused() {
    let (s, _salesforce) = server().await;
    let fields = json!({"LastName": "x".repeat(1024 * 1024)});
    let call =
        json!({"records": [{"id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "fields": fields}]});
    let (status, body) = flow(&s, call).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["detail"].as_str().unwrap().contains("1 MiB"), "{body}");
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_flow_call_is_not_deduplicated() {
    let (s, _salesforce) = server().await;
    let call = json!({"records": [{
        "id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "phone": "090-1234-0003",
        "fields": {"LastName": "山田", "Appointment_Date__c": "2026-12-24"}
    }]});
    let first = flow(&s, call.clone()).await;
    let second = flow(&s, call).await;
    assert_eq!((first.0, second.0), (202, 202));
    assert_ne!(
        first.1["results"][0]["message_id"],
        second.1["results"][0]["message_id"]
    );
    assert_eq!(s.stored_messages().await, 2);
    s.stop().await;
}

#[tokio::test]
async fn a_flow_call_of_201_records_is_refused_naming_records() {
    let (s, _salesforce) = server().await;
    let record = json!({"id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "phone": "090-1234-5678", "fields": {}});
    let (status, body) = flow(&s, json!({"records": vec![record; 201]})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(body["field"], "records");
    assert!(body["detail"].as_str().unwrap().contains("201"), "{body}");
    let (status, body) = flow(&s, json!({"records": []})).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("records")));
    let (status, body) = flow(&s, json!({"records": [{"sobject": "Contact"}]})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "records[0].id");
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

#[tokio::test]
async fn while_the_store_is_down_calls_are_refused_for_retry_and_a_redelivery_is_taken_once() {
    let salesforce = FakeSalesforce::start().await;
    let config = format!(
        "{}\n[database]\nconnect_timeout_ms = 500\n",
        connections(&salesforce)
    );
    let Some(s) = TestServer::on_postgres_with(&config).await else {
        return;
    };
    s.postgres().set_reachable(false).await;
    let (status, body) = outbound(&s, fixture("outbound_message_contact.xml")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("soapenv:Server") && !is_ack(&body), "{body}");
    let call = json!({"records": [{"id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "phone": "090-1234-5678"}]});
    let (status, problem) = flow(&s, call).await;
    assert_eq!(
        (status, &problem["code"]),
        (503, &json!("unavailable")),
        "{problem}"
    );

    s.postgres().set_reachable(true).await;
    let mut answer = (0, String::new());
    for _ in 0..100 {
        answer = outbound(&s, fixture("outbound_message_contact.xml")).await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(is_ack(&answer.1), "{answer:?}");
    assert_eq!(s.stored_messages().await, 3);
    let again = outbound(&s, fixture("outbound_message_contact.xml")).await;
    assert!(is_ack(&again.1));
    assert_eq!(
        s.stored_messages().await,
        3,
        "the redelivery stores nothing more"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_envelope_with_a_declaration_and_plain_line_feeds_is_taken_too() {
    let (s, _salesforce) = server().await;
    let crlf = String::from_utf8(fixture("outbound_message_contact.xml")).unwrap();
    assert!(
        crlf.contains("\r\n") && !crlf.starts_with("<?xml"),
        "the recorded shape"
    );
    let declared = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
        crlf.replace("\r\n", "\n")
    );
    let (status, body) = outbound(&s, declared.into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert!(is_ack(&body));
    assert_eq!(s.stored_messages().await, 3);
    s.stop().await;
}

/// A valid 18-character Contact id, the `n`th.
fn contact_id(n: usize) -> String {
    tsunagi_salesforce::RecordId::parse(&format!("0035j00000{n:05}"))
        .unwrap()
        .to_string()
}

/// Flow records for contacts `range`, each with a number of its own.
fn flow_records(range: std::ops::Range<usize>) -> Value {
    let records: Vec<Value> = range
        .map(|n| {
            json!({
                "id": contact_id(n),
                "sobject": "Contact",
                "phone": format!("090-1000-{n:04}"),
                "fields": {"LastName": format!("顧客{n}"), "Appointment_Date__c": "2026-12-24"}
            })
        })
        .collect();
    json!({ "records": records })
}

/// The records Salesforce took with `status`, by id.
fn written_with(records: &[Value], status: &str) -> std::collections::BTreeSet<String> {
    records
        .iter()
        .filter(|r| r["SMS_Status__c"] == status)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn two_hundred_fifty_flow_records_are_delivered_and_written_back_in_at_most_8_calls() {
    let salesforce = FakeSalesforce::start().await;
    // Part batches wait up to 2 s for company, as at a steady flow (the default waits 30 s).
    let config = connections(&salesforce).replace("fill_wait_ms = 0", "fill_wait_ms = 2000");
    let s = TestServer::with_delivery(&config).await;
    for range in [0..200, 200..250] {
        let (status, body) = flow(&s, flow_records(range)).await;
        assert_eq!(status, 202, "{body}");
        assert!(body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "queued"));
    }
    let records = salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 250)
        .await;
    let calls = salesforce.rest_calls().await;
    assert!(calls <= 8, "{calls} REST calls for 250 records");
    assert_eq!(records.len(), 250, "each record written once, when final");
    s.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_reminted_once_and_the_write_back_goes_through() {
    let (s, salesforce) = server().await;
    salesforce
        .refuse_next(1, 401, "error_invalid_session_expired.json", 1)
        .await;
    let (status, _) = flow(&s, flow_records(0..1)).await;
    assert_eq!(status, 202);
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 1)
        .await;
    assert_eq!(
        salesforce.token_requests("client_credentials").await,
        2,
        "one token, one re-mint"
    );
    assert_eq!(salesforce.rest_calls().await, 2, "refused once, then taken");
    s.stop().await;
}

#[tokio::test]
async fn a_spent_daily_allowance_and_a_busy_org_hold_the_queue_until_they_clear() {
    let (s, salesforce) = server().await;
    salesforce
        .refuse_next(1, 403, "error_request_limit_total_requests.json", 1)
        .await;
    salesforce
        .refuse_next(1, 403, "error_request_limit_concurrent.json", 2)
        .await;
    let (status, _) = flow(&s, flow_records(0..3)).await;
    assert_eq!(status, 202);
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 3)
        .await;
    assert_eq!(
        salesforce.rest_calls().await,
        3,
        "refused twice, then taken"
    );
    // Other tests' servers in this process may pause the same connection name too.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("tsunagi_writeback_pauses_total{connection=\"salesforce:dev\"} "),
        "the daily limit paused the queue"
    );
    s.stop().await;
}

/// Contact `n`'s message, once delivered and answered 了解です from the handset.
async fn answered(s: &TestServer, n: usize) -> String {
    let (_, body) = flow(s, flow_records(n..n + 1)).await;
    let id = body["results"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for(&id, |st| st == "delivered").await;
    let (status, reply) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": format!("090-1000-{n:04}"), "to": "TSUNAGI", "body": "了解です"}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    id
}

#[tokio::test]
async fn a_handset_reply_lands_in_the_reply_field() {
    let (s, salesforce) = server().await;
    answered(&s, 7).await;
    let records = salesforce
        .wait_for(|records| records.iter().any(|r| r["SMS_Last_Reply__c"] == "了解です"))
        .await;
    assert!(records
        .iter()
        .filter(|r| r["SMS_Last_Reply__c"] == "了解です")
        .all(|r| r["id"] == contact_id(7)));
    s.stop().await;
}

#[tokio::test]
async fn a_click_on_a_short_link_lands_in_the_click_field_of_the_record() {
    let salesforce = FakeSalesforce::start().await;
    let config = connections(&salesforce).replace(
        "opt_out_field = \"SMS_Opt_Out__c\"",
        "opt_out_field = \"SMS_Opt_Out__c\"\nclick_field = \"SMS_Clicked_At__c\"",
    ) + "\n[links]\nshorten = true\n";
    let s = TestServer::with_delivery(&config).await;
    let mut records = flow_records(3..4);
    records["records"][0]["template"] = json!(
        "{{LastName}}様 ご予約の確認はこちら https://example.jp/r?name={{LastName|urlencode}}"
    );
    let (status, body) = flow(&s, records).await;
    assert_eq!(status, 202, "{body}");
    let id = body["results"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let text = s.text_of("09010000003", &json!(id)).await;
    let code = text.rsplit("/s/").next().unwrap();
    let r = links::follow(&s, reqwest::Method::GET, code, Some(links::IPHONE)).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://example.jp/r?name=%E9%A1%A7%E5%AE%A23"
    );
    let records = salesforce
        .wait_for(|records| records.iter().any(|r| r.get("SMS_Clicked_At__c").is_some()))
        .await;
    let clicked: Vec<_> = records
        .iter()
        .filter(|r| r.get("SMS_Clicked_At__c").is_some())
        .collect();
    assert_eq!(clicked.len(), 1, "written once: {records:?}");
    assert_eq!(clicked[0]["id"], contact_id(3));
    let message = s.wait_for(&id, |_| true).await;
    assert_eq!(clicked[0]["SMS_Clicked_At__c"], message["first_clicked_at"]);
    s.stop().await;
}

#[tokio::test]
async fn a_message_log_record_is_upserted_per_message_on_its_external_id() {
    let salesforce = FakeSalesforce::start().await;
    let config = dev_mapping_with(
        &salesforce,
        "\n[salesforce.mappings.message_log]\n\
         object = \"SMS_Message__c\"\nexternal_id_field = \"Message_Id__c\"\n\
         record_field = \"Contact__c\"\nstatus_field = \"Status__c\"\n\
         detail_field = \"Detail__c\"\n",
    );
    let s = TestServer::with_delivery(&config).await;
    let (status, body) = flow(&s, flow_records(3..5)).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message_id"].as_str().unwrap().to_string())
        .collect();
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 2)
        .await;
    // The logs go in the call after the records' update.
    let mut logs = Vec::new();
    for _ in 0..200 {
        logs = salesforce.upserted_records();
        let delivered = |id: &String| {
            logs.iter()
                .any(|l| l["Message_Id__c"] == id.as_str() && l["Status__c"] == "delivered")
        };
        if ids.iter().all(delivered) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (n, id) in [3, 4].into_iter().zip(&ids) {
        let log = logs
            .iter()
            .rev()
            .find(|l| l["Message_Id__c"] == id.as_str())
            .unwrap_or_else(|| panic!("no log for {id}: {logs:?}"));
        assert_eq!(log["attributes"]["type"], "SMS_Message__c");
        assert_eq!(log["Contact__c"], contact_id(n));
        assert_eq!(log["Status__c"], "delivered");
        assert_eq!(log["Detail__c"], Value::Null);
    }
    let upsert_calls = salesforce
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/SMS_Message__c/Message_Id__c"))
        .count();
    let update_calls = salesforce.rest_calls().await - upsert_calls;
    assert_eq!(
        upsert_calls, update_calls,
        "the logs of a round go in one call beside its update"
    );
    s.stop().await;
}

/// The connections with `[writeback]` at its defaults, as an admin who never set it has them.
fn at_defaults(salesforce: &FakeSalesforce) -> String {
    let config = connections(salesforce);
    config[..config.find("[writeback]").unwrap()].to_string()
}

/// When a message entered `status`, as its events say.
fn entered(message: &Value, status: &str) -> chrono::DateTime<chrono::Utc> {
    let at = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == status)
        .unwrap_or_else(|| panic!("no {status} event: {message}"))["at"]
        .as_str()
        .unwrap();
    at.parse().unwrap()
}

/// How long after `event` Salesforce took it; at rest that is the write-back's whole delay.
fn lag(taken: chrono::DateTime<chrono::Utc>, event: chrono::DateTime<chrono::Utc>) -> i64 {
    (taken - event).num_milliseconds()
}

#[tokio::test]
async fn at_rest_a_delivered_status_is_on_the_record_within_3_s_of_the_delivery() {
    let salesforce = FakeSalesforce::start().await;
    let s = TestServer::with_delivery(&at_defaults(&salesforce)).await;
    let fields = [
        ("MobilePhone", "090-1000-0021"),
        ("LastName", "山田"),
        ("Appointment_Date__c", "2026-12-24"),
    ];
    let body = envelope(
        "00D5j000001aBcDEAU",
        &[("04l5j00000ChQ9aAAF", &contact_id(21), &fields)],
    );
    let (status, text) = outbound(&s, body).await;
    assert_eq!(status, 200, "{text}");
    let id = messages(&s).await[0]["id"].as_str().unwrap().to_string();
    let delivered = |r: &Value| r["id"] == contact_id(21) && r["SMS_Status__c"] == "delivered";
    salesforce
        .wait_for(|records| records.iter().any(delivered))
        .await;
    // Stamped once Salesforce answered, a moment after it took the record.
    let message = s
        .wait_until(&id, |m| m["written_back_at"].is_string())
        .await;
    let lag = lag(
        salesforce.first_taken(delivered).unwrap(),
        entered(&message, "delivered"),
    );
    assert!(lag < 3_000, "the record showed delivered {lag} ms after it");
    assert_eq!(salesforce.update_calls().await, [1], "one call, one record");
    let written: chrono::DateTime<chrono::Utc> = message["written_back_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(written >= entered(&message, "delivered"), "{message}");
    // Other tests' servers in this process count on the same connection name.
    let metrics = s.metrics().await;
    for line in [
        "tsunagi_writeback_latency_seconds_bucket{connection=\"salesforce:dev\",le=\"3\"} ",
        "tsunagi_writeback_lag_seconds{connection=\"salesforce:dev\"} ",
        "tsunagi_writeback_calls_last_minute{connection=\"salesforce:dev\"} ",
        "tsunagi_writeback_calls_budget{connection=\"salesforce:dev\"} 30",
    ] {
        assert!(metrics.contains(line), "{line} is not in\n{metrics}");
    }
    s.stop().await;
}

#[tokio::test]
async fn at_rest_a_sandbox_reply_is_on_the_record_within_3_s_of_it() {
    let salesforce = FakeSalesforce::start().await;
    let s = TestServer::with_delivery(&at_defaults(&salesforce)).await;
    let id = answered(&s, 22).await;
    let replied = |r: &Value| r["SMS_Last_Reply__c"] == "了解です";
    salesforce
        .wait_for(|records| records.iter().any(replied))
        .await;
    let message = s.wait_for(&id, |_| true).await;
    let at: chrono::DateTime<chrono::Utc> = message["replies"][0]["at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lag = lag(salesforce.first_taken(replied).unwrap(), at);
    assert!(lag < 3_000, "the record showed the reply {lag} ms after it");
    s.stop().await;
}

#[tokio::test]
async fn a_thousand_record_flow_load_is_written_back_in_five_calls_of_200_at_the_defaults() {
    let salesforce = FakeSalesforce::start().await;
    let s = TestServer::with_delivery(&at_defaults(&salesforce)).await;
    for first in (0..1000).step_by(200) {
        let (status, body) = flow(&s, flow_records(first..first + 200)).await;
        assert_eq!(status, 202, "{body}");
    }
    salesforce
        .wait_up_to(std::time::Duration::from_secs(120), |records| {
            written_with(records, "delivered").len() == 1000
        })
        .await;
    assert_eq!(salesforce.update_calls().await, [200; 5]);
    s.stop().await;
}

/// The `p`th percentile of `sorted` milliseconds.
fn percentile(sorted: &[i64], p: usize) -> i64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Milliseconds from each message's delivery to its record showing it, for `ids` (contact
/// numbers and message ids), sorted.
async fn delivery_lags(
    s: &TestServer,
    salesforce: &FakeSalesforce,
    ids: &[(usize, String)],
) -> Vec<i64> {
    let mut lags = Vec::new();
    for (n, id) in ids {
        let message = s.wait_for(id, |st| st == "delivered").await;
        let record = contact_id(*n);
        let taken = salesforce
            .first_taken(|r| r["id"] == record && r["SMS_Status__c"] == "delivered")
            .unwrap();
        lags.push(lag(taken, entered(&message, "delivered")));
    }
    lags.sort_unstable();
    lags
}

/// Not a test: the figures `bench/writeback.sh` prints. Lone messages 10 s apart (a quiet org),
/// then 1,000 a minute for two minutes, one Flow record every 60 ms; for each, the time from
/// delivery to the record showing it, and the calls the load took.
#[tokio::test]
#[ignore = "a benchmark: bench/writeback.sh"]
async fn writeback_figures_at_rest_and_under_load() {
    let salesforce = FakeSalesforce::start().await;
    let s = TestServer::with_delivery(&at_defaults(&salesforce)).await;
    let send = |n: usize| {
        let s = &s;
        async move {
            let (status, body) = flow(s, flow_records(n..n + 1)).await;
            assert_eq!(status, 202, "{body}");
            (
                n,
                body["results"][0]["message_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        }
    };
    let lone: usize = std::env::var("BENCH_LONE").map_or(18, |v| v.parse().unwrap());
    let mut ids = Vec::new();
    for n in 0..lone {
        ids.push(send(n).await);
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    }
    let rest = delivery_lags(&s, &salesforce, &ids).await;
    let before = salesforce.update_calls().await.len();
    let load: usize = std::env::var("BENCH_LOAD").map_or(2000, |v| v.parse().unwrap());
    let start = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for (i, n) in (lone..lone + load).enumerate() {
        tokio::time::sleep_until(start + std::time::Duration::from_millis(60 * i as u64)).await;
        ids.push(send(n).await);
    }
    let last = contact_id(lone + load - 1);
    salesforce
        .wait_up_to(std::time::Duration::from_secs(120), |records| {
            written_with(records, "delivered").len() == lone + load
        })
        .await;
    let loaded = delivery_lags(&s, &salesforce, &ids).await;
    let calls = salesforce.update_calls().await[before..].to_vec();
    println!(
        "at rest ({} lone messages 10 s apart): delivery to record p50 {} ms, p99 {} ms, max {} ms",
        rest.len(),
        percentile(&rest, 50),
        percentile(&rest, 99),
        rest[rest.len() - 1]
    );
    println!(
        "under load ({load} at 1,000 a minute): p50 {} ms, p99 {} ms; {} calls ({:.1} per 1,000), sizes {:?}",
        percentile(&loaded, 50),
        percentile(&loaded, 99),
        calls.len(),
        calls.len() as f64 * 1000.0 / load as f64,
        calls
    );
    assert!(salesforce.updated_records().iter().any(|r| r["id"] == last));
    s.stop().await;
}

#[tokio::test]
async fn contacts_and_leads_interleaved_are_written_back_grouped_by_type_in_at_most_10_chunks() {
    let salesforce = FakeSalesforce::start().await;
    let lead = "\n[[salesforce.mappings]]\nsobject = \"Lead\"\nphone_field = \"MobilePhone\"\n\
        template = \"{{LastName}}様\"\nstatus_field = \"SMS_Status__c\"\n\
        status_detail_field = \"SMS_Status_Detail__c\"\nreply_field = \"SMS_Last_Reply__c\"\n";
    let config = dev_mapping_with(&salesforce, lead);
    let s = TestServer::with_delivery(&config).await;
    let mut records = flow_records(0..250);
    for (n, record) in records["records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        if n % 2 == 1 {
            let id = tsunagi_salesforce::RecordId::parse(&format!("00Q5j00000{n:05}")).unwrap();
            record["id"] = json!(id.to_string());
            record["sobject"] = json!("Lead");
        }
    }
    let all = records["records"].as_array().unwrap().clone();
    for part in [&all[..200], &all[200..]] {
        let (status, body) = flow(&s, json!({ "records": part })).await;
        assert_eq!(status, 202, "{body}");
        assert!(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "queued"),
            "{body}"
        );
    }
    let written = salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 250)
        .await;
    let types: std::collections::BTreeSet<_> = written
        .iter()
        .map(|r| r["attributes"]["type"].to_string())
        .collect();
    assert_eq!(types.len(), 2, "{types:?}");
    for request in salesforce.server.received_requests().await.unwrap() {
        if request.method.as_str() == "PATCH" {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            assert!(
                fake_salesforce::chunks(&body) <= 2,
                "a call of {} chunks",
                fake_salesforce::chunks(&body)
            );
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn a_flow_record_as_apex_serializes_it_sends_with_a_relationship_field_in_the_template() {
    let (s, _salesforce) = server().await;
    let record = json!({
        "id": contact_id(31),
        "sobject": "Contact",
        "phone": "090-1000-0031",
        "template": "{{Account.Name}} {{LastName}}様 ご予約は{{Appointment_Date__c}}です",
        "fields": {
            "attributes": {"type": "Contact", "url": format!("/services/data/v67.0/sobjects/Contact/{}", contact_id(31))},
            "LastName": "山田",
            "Title": null,
            "Appointment_Date__c": "2026-12-24",
            "Account": {
                "attributes": {"type": "Account", "url": "/services/data/v67.0/sobjects/Account/0015j00000AbCdEAAV"},
                "Name": "山田商事"
            },
            "Cases": {"totalSize": 0, "done": true, "records": []}
        }
    });
    let (status, body) = flow(&s, json!({ "records": [record.clone()] })).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["results"][0]["status"], "queued", "{body}");
    let id = body["results"][0]["message_id"].clone();
    assert_eq!(
        s.text_of("09010000031", &id).await,
        "山田商事 山田様 ご予約は2026-12-24です"
    );

    // Naming what holds no single value refuses the record, naming it.
    let mut whole = record.clone();
    whole["template"] = json!("{{Account}}様");
    let (_, body) = flow(&s, json!({ "records": [whole] })).await;
    assert_eq!(body["results"][0]["status"], "rejected", "{body}");
    assert_eq!(
        body["results"][0]["error"]["code"], "invalid_request",
        "{body}"
    );
    assert!(
        body["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("{{Account}}"),
        "{body}"
    );
    let mut list = record;
    list["template"] = json!("{{Cases.records}}");
    let (_, body) = flow(&s, json!({ "records": [list] })).await;
    assert_eq!(
        body["results"][0]["error"]["code"], "missing_template_variable",
        "{body}"
    );
    assert!(
        body["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Cases.records"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_unreadable_notification_is_rejected_alone_and_the_other_four_are_taken_and_acked() {
    let (s, salesforce) = server().await;
    let records: Vec<(String, String, String)> = (41..46)
        .map(|n| {
            let name = match n {
                // A nested element where a field's text belongs: this notification alone is unreadable.
                43 => "<b>山田</b>".to_string(),
                _ => format!("顧客{n}"),
            };
            (contact_id(n), format!("090-1000-00{n}"), name)
        })
        .collect();
    let fields: Vec<[(&str, &str); 3]> = records
        .iter()
        .map(|(_, phone, name)| {
            [
                ("MobilePhone", phone.as_str()),
                ("LastName", name.as_str()),
                ("Appointment_Date__c", "2026-12-24"),
            ]
        })
        .collect();
    let ids: Vec<String> = (41..46).map(|n| format!("04l5j00000ChQ{n}AAF")).collect();
    let notifications: Vec<Notification<'_>> = (0..5)
        .map(|i| (ids[i].as_str(), records[i].0.as_str(), &fields[i][..]))
        .collect();
    let r = post_xml(
        &s,
        &format!("/v1/inbound/salesforce/dev/outbound-message/{TOKEN}"),
        envelope("00D5j000001aBcDEAU", &notifications),
    )
    .await;
    assert_eq!(r.status(), 200);
    let results = r.headers()["tsunagi-results"].to_str().unwrap().to_string();
    assert!(is_ack(&r.text().await.unwrap()));
    assert!(results.contains(&format!("{}=msg_", ids[2])), "{results}");
    assert!(results.contains("rejected invalid_request"), "{results}");
    let all = messages(&s).await;
    assert_eq!(all.len(), 5, "four sent and one rejected");
    let rejected = with_status(&all, "rejected");
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["status_detail"]
            .as_str()
            .unwrap()
            .contains("could not be read"),
        "{}",
        rejected[0]
    );
    // The refusal reaches the record too.
    salesforce
        .wait_for(|rs| {
            rs.iter()
                .any(|r| r["id"] == records[2].0 && r["SMS_Status__c"] == "rejected")
                && written_with(rs, "delivered").len() == 4
        })
        .await;
    assert!(s.metrics().await.contains(
        "tsunagi_salesforce_notifications_refused_total{connection=\"salesforce:dev\"} "
    ));
    s.stop().await;
}

#[tokio::test]
async fn field_security_refusing_every_record_holds_the_queue_and_loses_no_status() {
    let (s, salesforce) = server().await;
    // The integration user cannot edit the status fields yet: every record of the call refused.
    salesforce
        .refuse_next(1, 200, "collections_update_field_security.json", 1)
        .await;
    let (status, body) = flow(&s, flow_records(51..52)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["results"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Once the admin fixed it (the next call is taken), the status reaches the record.
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 1)
        .await;
    assert_eq!(
        salesforce.update_calls().await.len(),
        2,
        "refused once, then taken"
    );
    let message = s
        .wait_until(&id, |m| m["written_back_at"].is_string())
        .await;
    assert!(message.get("writeback_error").is_none(), "{message}");
    s.stop().await;
}

#[tokio::test]
async fn a_status_renamed_for_the_picklist_is_written_by_its_picklist_value() {
    let salesforce = FakeSalesforce::start().await;
    let config = dev_mapping_with(&salesforce, "status_values = { delivered = \"配信済\" }\n");
    let s = TestServer::with_delivery(&config).await;
    let (status, body) = flow(&s, flow_records(61..62)).await;
    assert_eq!(status, 202, "{body}");
    salesforce
        .wait_for(|records| written_with(records, "配信済").len() == 1)
        .await;
    assert!(written_with(&salesforce.updated_records(), "delivered").is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_restart() {
    let salesforce = FakeSalesforce::start().await;
    salesforce.rotate_refresh_tokens("5Aep861Configured").await;
    let config = dev_refreshing(&salesforce, "5Aep861Configured");
    assert!(config.contains("5Aep861Configured"));
    let s = TestServer::with_delivery(&config).await;
    let (status, body) = flow(&s, flow_records(71..72)).await;
    assert_eq!(status, 202, "{body}");
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 1)
        .await;

    // The config still names the token Salesforce revoked when it issued the next.
    let s = s.restart(&config).await;
    let (status, body) = flow(&s, flow_records(72..73)).await;
    assert_eq!(status, 202, "{body}");
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 2)
        .await;
    assert_eq!(
        salesforce.refresh_tokens_sent().await,
        ["5Aep861Configured", "5Aep861Rotated1"],
        "the restart signs in with the kept token, not the revoked one"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_new_refresh_token_in_the_config_wins_over_the_kept_one() {
    let salesforce = FakeSalesforce::start().await;
    let tokens = salesforce.rotate_refresh_tokens("5Aep861Configured").await;
    let refresh = |token: &str| dev_refreshing(&salesforce, token);
    let s = TestServer::with_delivery(&refresh("5Aep861Configured")).await;
    flow(&s, flow_records(73..74)).await;
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 1)
        .await;

    // The admin signs in again and pastes the token that gives: the kept one is not used.
    tokens.issue("5Aep861Pasted");
    let s = s.restart(&refresh("5Aep861Pasted")).await;
    flow(&s, flow_records(74..75)).await;
    salesforce
        .wait_for(|records| written_with(records, "delivered").len() == 2)
        .await;
    assert_eq!(
        salesforce.refresh_tokens_sent().await,
        ["5Aep861Configured", "5Aep861Pasted"]
    );
    s.stop().await;
}

/// Every status value, renamed to the values of the recorded describe's picklist.
const PICKLIST_VALUES: &str = r#"status_values = { queued = "受付", scheduled = "受付", sending = "送信中", sent = "送信済", delivered = "配信済", undelivered = "不達", failed = "送信不可", canceled = "送信不可", rejected = "送信不可" }
"#;

/// The warnings `/readyz` shows once they name `connection`, waiting up to 5 s for the start
/// check.
async fn setup_warnings(s: &TestServer, connection: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let body: Value = s.get("/readyz").await.json().await.unwrap();
        let warnings: Vec<String> = body["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|w| w.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let found = warnings.iter().any(|w| w.starts_with(connection));
        if found || std::time::Instant::now() > deadline {
            return warnings;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_status_picklist_without_the_values_written_is_named_in_readyz_at_start() {
    let salesforce = FakeSalesforce::start().await;
    salesforce.describe("Contact", "describe_contact.json");
    let config = dev_mapping_with(
        &salesforce,
        "status_values = { delivered = \"配信済\", failed = \"送信失敗\" }\n",
    );
    let s = TestServer::with_delivery(&config).await;
    let warnings = setup_warnings(&s, "salesforce:dev").await;
    assert!(
        warnings.contains(&"salesforce:dev: Contact.SMS_Status__c is a restricted picklist without the values tsunagi writes: queued, scheduled, sending, sent, undelivered, 送信失敗, canceled, rejected (add them as active values, or name its own values in status_values)".to_string()),
        "{warnings:?}"
    );
    // The other connection's object does not exist in this org.
    assert!(
        warnings.contains(
            &"salesforce:acme: tsg__Appointment__c could not be described (see the log)"
                .to_string()
        ),
        "{warnings:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_reply_longer_than_its_field_is_cut_to_the_described_length_and_written() {
    let salesforce = FakeSalesforce::start().await;
    salesforce.describe("Contact", "describe_contact.json");
    let config = dev_mapping_with(&salesforce, PICKLIST_VALUES);
    let s = TestServer::with_delivery(&config).await;
    let (_, body) = flow(&s, flow_records(81..82)).await;
    let id = body["results"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for(&id, |st| st == "delivered").await;
    let long = "ご連絡ありがとうございます。".repeat(30);
    let (status, reply) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": "090-1000-0081", "to": "TSUNAGI", "body": long}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    // The recorded describe makes SMS_Last_Reply__c a 255-character text area.
    let records = salesforce
        .wait_for(|records| records.iter().any(|r| r["SMS_Last_Reply__c"].is_string()))
        .await;
    let written = records
        .iter()
        .find_map(|r| r["SMS_Last_Reply__c"].as_str())
        .unwrap();
    assert_eq!(written.chars().count(), 255);
    assert!(long.starts_with(written));
    assert!(written_with(&records, "配信済").contains(&contact_id(81)));
    // Both connections were checked at start; the other one's object is not in this org.
    let warnings = setup_warnings(&s, "salesforce:acme").await;
    assert!(
        !warnings.iter().any(|w| w.starts_with("salesforce:dev")),
        "{warnings:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_stop_sets_the_opt_out_field_on_every_record_holding_the_number() {
    let (s, salesforce) = server().await;
    // The same handset on two more Contacts, written as people write it; another number on one.
    salesforce.add_records(
        "Contact",
        vec![
            json!({"Id": contact_id(92), "MobilePhone": "+81 90-1000-0091"}),
            json!({"Id": contact_id(93), "MobilePhone": "０９０１０００００９１"}),
            json!({"Id": contact_id(94), "MobilePhone": "090-1000-0094"}),
        ],
    );
    let (_, body) = flow(&s, flow_records(91..92)).await;
    let id = body["results"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for(&id, |st| st == "delivered").await;
    let (status, reply) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": "090-1000-0091", "to": "TSUNAGI", "body": "停止"}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let opted_out = |records: &[Value]| -> std::collections::BTreeSet<String> {
        records
            .iter()
            .filter(|r| r["SMS_Opt_Out__c"] == true)
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    };
    let records = salesforce
        .wait_for(|records| opted_out(records).len() == 3)
        .await;
    assert_eq!(
        opted_out(&records),
        [contact_id(91), contact_id(92), contact_id(93)]
            .into_iter()
            .collect()
    );
    // Back in: START clears it everywhere too.
    let (status, _) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": "090-1000-0091", "to": "TSUNAGI", "body": "START"}),
        )
        .await;
    assert_eq!(status, 201);
    let cleared = |records: &[Value]| -> usize {
        records
            .iter()
            .filter(|r| r["SMS_Opt_Out__c"] == false)
            .count()
    };
    salesforce.wait_for(|records| cleared(records) == 3).await;
    s.stop().await;
}

#[tokio::test]
async fn a_cancel_reply_is_a_plain_reply_for_a_connection_that_says_so_and_an_opt_out_elsewhere() {
    let salesforce = FakeSalesforce::start().await;
    let secret = "client_secret = \"client-secret\"\n";
    let config = connections(&salesforce).replacen(
        secret,
        &format!("{secret}ambiguous_words_opt_out = false\n"),
        1,
    );
    let s = TestServer::with_delivery(&config).await;
    let id = {
        let (_, body) = flow(&s, flow_records(96..97)).await;
        body["results"][0]["message_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    s.wait_for(&id, |st| st == "delivered").await;
    let cancel = json!({"from": "090-1000-0096", "to": "TSUNAGI", "body": "解除"});
    let (status, _) = s.call("/v1/sandbox/reply", cancel.clone()).await;
    assert_eq!(status, 201);
    // The appointment flow reads it: it reaches the record, and the number may still be sent to.
    salesforce
        .wait_for(|records| records.iter().any(|r| r["SMS_Last_Reply__c"] == "解除"))
        .await;
    assert!(s.opt_outs_of("09010000096").await.is_empty());

    // The same word answering a message sent over the API opts the number out, as [opt_outs] says.
    let (status, sent) = s
        .send(json!({"to": "090-1000-0096", "body": "セールのお知らせ"}))
        .await;
    assert_eq!(status, 202, "{sent}");
    s.wait_for(sent["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    let (status, _) = s.call("/v1/sandbox/reply", cancel).await;
    assert_eq!(status, 201);
    assert_eq!(s.opt_outs_of("09010000096").await.len(), 1);
    s.stop().await;
}

//! Salesforce calling in: Outbound Messages and Flow callouts become SMS through the one
//! admission path; refused records are kept as `rejected`, never dropped.

use reqwest::Response;
use serde_json::{json, Value};
use tsunagi::store::OutboxKind;

use crate::harness::{delivered_events, TestServer};

const TOKEN: &str = "inbound-token-0123456789";

/// Two connections: `dev` (the org of the Contact fixture, configured by its 15-character id
/// while the envelopes carry 18) and `acme` (the custom-object fixture's org).
const CONNECTIONS: &str = r#"
[[salesforce]]
name = "dev"
organization_id = "00D5j000001aBcD"
inbound_token = "inbound-token-0123456789"
auth = "client_credentials"
client_id = "3MVG9-test"
client_secret = "client-secret"
login_url = "https://tsunagi-dev-ed.develop.my.salesforce.com"

[[salesforce.mappings]]
sobject = "Contact"
phone_field = "MobilePhone"
template = "{{LastName}}様 ご予約は{{Appointment_Date__c}}です"
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
private_key_path = "/etc/tsunagi/acme.pem"

[[salesforce.mappings]]
sobject = "tsg__Appointment__c"
phone_field = "tsg__Contact_Phone__c"
template = "{{Name}} {{CreatedDate}} ({{CreatedDate|date(\"%m月%d日\")}}) {{tsg__Amount__c}}円 {{tsg__Slot_Count__c}}枠"
status_field = "tsg__SMS_Status__c"
status_detail_field = "tsg__SMS_Detail__c"
reply_field = "tsg__SMS_Reply__c"
"#;

async fn server() -> TestServer {
    TestServer::with_delivery(CONNECTIONS).await
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
async fn an_outbound_message_sends_each_mapped_record_and_keeps_the_refused_ones_as_rejected() {
    let s = server().await;
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

    let outbox = s.outbox_after_stop("salesforce:dev").await;
    let statuses = |record: &str| -> Vec<String> {
        outbox
            .iter()
            .filter(|e| e.kind == OutboxKind::Status && e.source.record() == Some(record))
            .map(|e| e.payload["status"].as_str().unwrap().to_string())
            .collect()
    };
    // `sent` may be overtaken by the receipt, as in every delivery (see `delivered_events`).
    let delivered = statuses("Contact/0035j00000Pq7RsAAJ");
    let delivered: Vec<&str> = delivered
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "sent")
        .collect();
    assert_eq!(delivered, ["sending", "delivered"]);
    assert_eq!(statuses("Contact/0035j00000Pq7RtAAJ"), ["rejected"]);
    assert_eq!(statuses("Contact/0035j00000Pq7RuAAJ"), ["rejected"]);
    let landline_entry = outbox
        .iter()
        .find(|e| e.source.record() == Some("Contact/0035j00000Pq7RtAAJ"))
        .unwrap();
    assert!(landline_entry.payload["detail"]
        .as_str()
        .unwrap()
        .starts_with("number_type_not_allowed: "));
    assert!(outbox.iter().all(|e| e.source.name() == "salesforce:dev"));
}

#[tokio::test]
async fn a_custom_object_shows_datetimes_in_japan_time_and_numbers_without_a_zero_fraction() {
    let s = server().await;
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
    s.stop().await;
}

#[tokio::test]
async fn a_redelivered_outbound_message_is_acked_and_sends_nothing_more() {
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
async fn a_050_number_is_rejected_with_its_code_and_still_acked() {
    let s = server().await;
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
    s.stop().await;
}

#[tokio::test]
async fn a_missing_merge_field_or_phone_is_rejected_with_its_reason() {
    let s = server().await;
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
    let s = TestServer::with_delivery(&CONNECTIONS.replace("00D2x000000XyZaEAK", org)).await;
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
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
    let s = server().await;
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
    let config = format!("{CONNECTIONS}\n[database]\nconnect_timeout_ms = 500\n");
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
    let s = server().await;
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

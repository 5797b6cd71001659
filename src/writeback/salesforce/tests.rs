use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tsunagi_salesforce::{Grant, TokenSource};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use super::*;
use crate::{
    domain::{ids::MessageId, state::JobState},
    writeback::{
        plan::{ClickChange, ConsentChange},
        Reply, StatusChange,
    },
};

const COLLECTIONS: &str = "/services/data/v67.0/composite/sobjects";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/salesforce/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A Salesforce that mints client-credentials tokens pointing back at itself.
async fn salesforce() -> MockServer {
    let server = MockServer::start().await;
    let mut token: Value = serde_json::from_str(&fixture("token_client_credentials.json")).unwrap();
    token["instance_url"] = json!(server.uri());
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token))
        .mount(&server)
        .await;
    server
}

fn sink(server: &MockServer) -> SalesforceSink {
    let tokens = TokenSource::new(&server.uri(), Grant::client_credentials("client", "secret"));
    let client = RestClient::new(Arc::new(tokens))
        .with_api_version("67.0")
        .unwrap();
    let fields = StatusFields {
        phone: "MobilePhone".into(),
        status_values: BTreeMap::new(),
        status: "SMS_Status__c".into(),
        detail: "SMS_Status_Detail__c".into(),
        reply: "SMS_Last_Reply__c".into(),
        opt_out: Some("SMS_Opt_Out__c".into()),
        click: Some("SMS_Clicked_At__c".into()),
    };
    SalesforceSink::new(
        "salesforce:prod",
        client,
        BTreeMap::from([("Contact".to_string(), fields)]),
    )
}

/// Salesforce takes the one record of a call, Contact …RsAAJ.
async fn takes_one(server: &MockServer) {
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "0035j00000Pq7RsAAJ", "success": true, "errors": []}
        ])))
        .mount(server)
        .await;
}

/// Salesforce takes both records of a call.
async fn takes_both(server: &MockServer) {
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "0035j00000Pq7RsAAJ", "success": true, "errors": []},
            {"id": "0035j00000Pq7RtAAJ", "success": true, "errors": []}
        ])))
        .mount(server)
        .await;
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn update(record: &str, status: JobState, detail: Option<&str>) -> RecordUpdate {
    RecordUpdate {
        opens: false,
        record: record.into(),
        status: Some(StatusChange {
            message_id: MessageId::new(),
            status,
            detail: detail.map(str::to_string),
            at: at(),
        }),
        replies: Vec::new(),
        messages: Vec::new(),
        consent: None,
        click: None,
        entries: vec![1],
    }
}

/// The records of the one collections call `server` received.
async fn sent_records(server: &MockServer) -> Vec<Value> {
    let calls: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == COLLECTIONS)
        .collect();
    assert_eq!(calls.len(), 1, "one collections call");
    let body: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(body["allOrNone"], false);
    body["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_record_gets_the_outcome_salesforce_gave_it_by_position() {
    let server = salesforce().await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(
                    fixture("collections_update_mixed_errors.json"),
                    "application/json",
                )
                .insert_header("Sforce-Limit-Info", "api-usage=18/5000"),
        )
        .mount(&server)
        .await;
    let updates = [
        update("Contact/0035j00000Pq7RsAAJ", JobState::Delivered, None),
        update("Contact/0035j00000Pq7RtAAJ", JobState::Delivered, None),
        update("Contact/0035j00000Pq7", JobState::Delivered, None),
        update("Contact/0035j00000Pq7RuAAJ", JobState::Delivered, None),
    ];
    let outcomes = sink(&server).write(&updates).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Written);
    assert_eq!(
        outcomes[1],
        Outcome::Failed(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION: SMS status must be one of the allowed values"
                .into()
        )
    );
    assert!(
        matches!(&outcomes[2], Outcome::Failed(reason) if reason.starts_with("MALFORMED_ID")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], Outcome::Retry, "a locked row is tried again");
    let records = sent_records(&server).await;
    assert_eq!(
        records[0],
        json!({
            "attributes": {"type": "Contact"},
            "id": "0035j00000Pq7RsAAJ",
            "SMS_Status__c": "delivered",
            "SMS_Status_Detail__c": null
        })
    );
}

#[tokio::test]
async fn a_refusal_and_the_latest_reply_land_in_their_fields() {
    let server = salesforce().await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!([{"id": "0035j00000Pq7RsAAJ", "success": true, "errors": []}]),
            ),
        )
        .mount(&server)
        .await;
    let long = "number_type_not_allowed: ".to_string() + &"x".repeat(400);
    let mut u = update(
        "Contact/0035j00000Pq7RsAAJ",
        JobState::Rejected,
        Some(&long),
    );
    u.replies = ["はい", "STOP"]
        .iter()
        .map(|body| Reply {
            message_id: MessageId::new(),
            body: body.to_string(),
            at: at(),
        })
        .collect();
    assert_eq!(sink(&server).write(&[u]).await.unwrap(), [Outcome::Written]);
    let record = &sent_records(&server).await[0];
    assert_eq!(record["SMS_Status__c"], "rejected");
    let detail = record["SMS_Status_Detail__c"].as_str().unwrap();
    assert!(detail.starts_with("number_type_not_allowed: "));
    assert_eq!(detail.chars().count(), 255, "cut to a text field's length");
    assert_eq!(record["SMS_Last_Reply__c"], "STOP");
}

#[tokio::test]
async fn an_opt_out_and_an_opt_in_set_and_clear_the_checkbox() {
    let server = salesforce().await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "0035j00000Pq7RsAAJ", "success": true, "errors": []},
            {"id": "0035j00000Pq7RtAAJ", "success": true, "errors": []},
            {"id": "0035j00000Pq7RuAAJ", "success": true, "errors": []}
        ])))
        .mount(&server)
        .await;
    let consent = |opted_out| {
        Some(ConsentChange {
            number: None,
            message_id: MessageId::new(),
            opted_out,
            at: at(),
        })
    };
    let mut out = update("Contact/0035j00000Pq7RsAAJ", JobState::Delivered, None);
    out.consent = consent(true);
    let mut back = update("Contact/0035j00000Pq7RtAAJ", JobState::Delivered, None);
    back.consent = consent(false);
    let untouched = update("Contact/0035j00000Pq7RuAAJ", JobState::Delivered, None);
    let outcomes = sink(&server).write(&[out, back, untouched]).await.unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Written, Outcome::Written, Outcome::Written]
    );
    let records = sent_records(&server).await;
    assert_eq!(records[0]["SMS_Opt_Out__c"], true);
    assert_eq!(records[1]["SMS_Opt_Out__c"], false);
    assert_eq!(records[2].get("SMS_Opt_Out__c"), None);
}

#[tokio::test]
async fn a_first_click_sets_the_click_field_to_its_time() {
    let server = salesforce().await;
    takes_both(&server).await;
    let mut clicked = update("Contact/0035j00000Pq7RsAAJ", JobState::Delivered, None);
    clicked.click = Some(ClickChange {
        message_id: MessageId::new(),
        at: at(),
    });
    let untouched = update("Contact/0035j00000Pq7RtAAJ", JobState::Delivered, None);
    sink(&server).write(&[clicked, untouched]).await.unwrap();
    let records = sent_records(&server).await;
    assert_eq!(records[0]["SMS_Clicked_At__c"], "2027-01-15T08:00:00.000Z");
    assert_eq!(records[1].get("SMS_Clicked_At__c"), None);
}

#[tokio::test]
async fn a_record_of_an_unmapped_object_fails_without_a_call() {
    let server = salesforce().await;
    let outcomes = sink(&server)
        .write(&[update("Lead/00Q5j00000AbCdEAAZ", JobState::Delivered, None)])
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Failed(reason) if reason.contains("\"Lead\"")),
        "{outcomes:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_daily_allowance_spent_pauses_the_queue_and_a_busy_org_retries() {
    let server = salesforce().await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            fixture("error_request_limit_total_requests.json"),
            "application/json",
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            fixture("error_request_limit_concurrent.json"),
            "application/json",
        ))
        .mount(&server)
        .await;
    let updates = [update(
        "Contact/0035j00000Pq7RsAAJ",
        JobState::Delivered,
        None,
    )];
    let sink = sink(&server);
    match sink.write(&updates).await {
        Err(SinkError::Pause { after, reason }) => {
            assert_eq!(after, DAILY_LIMIT_PAUSE);
            assert!(reason.contains("TotalRequests"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(sink.write(&updates).await, Err(SinkError::Retry { .. })),
        "a concurrency limit clears in seconds"
    );
}

#[tokio::test]
async fn a_dry_run_plans_the_very_body_the_write_sends_and_asks_for_no_token() {
    let server = salesforce().await;
    let mut contact = update(
        "Contact/0035j00000Pq7RsAAJ",
        JobState::Undelivered,
        Some("Twilio undelivered, error 30003"),
    );
    contact.consent = Some(ConsentChange {
        number: None,
        message_id: MessageId::new(),
        opted_out: true,
        at: at(),
    });
    let lead = update("Lead/00Q5j00000AbCdEAAZ", JobState::Delivered, None);
    let (calls, outcomes) = sink(&server).calls(&[contact.clone(), lead]);
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(outcomes[0], Outcome::Written);
    assert!(matches!(&outcomes[1], Outcome::Failed(reason) if reason.contains("\"Lead\"")));
    assert_eq!(calls.len(), 1, "the Lead is in no call: {calls:?}");
    assert_eq!(
        (calls[0].method, calls[0].path.as_str()),
        ("PATCH", COLLECTIONS)
    );
    assert_eq!(calls[0].message_ids, contact.messages());

    takes_one(&server).await;
    sink(&server).write(&[contact]).await.unwrap();
    let sent = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == COLLECTIONS)
        .unwrap();
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(calls[0].body, sent);
}

#[test]
fn only_one_setup_error_on_every_record_holds_the_queue() {
    let result = |code: &str, success: bool| RecordResult {
        id: None,
        success,
        errors: vec![tsunagi_salesforce::rest::RecordError {
            status_code: code.into(),
            message: "m".into(),
            fields: vec![],
        }],
        created: None,
    };
    let security = || result("INVALID_FIELD_FOR_INSERT_UPDATE", false);
    assert!(misconfigured(&[security(), security()]).is_some());
    for mixed in [
        vec![security(), result("STRING_TOO_LONG", false)],
        vec![security(), result("", true)],
        vec![result("FIELD_CUSTOM_VALIDATION_EXCEPTION", false)],
        vec![],
    ] {
        assert!(misconfigured(&mixed).is_none(), "{mixed:?}");
    }
    let long = misconfigured(&[result("STRING_TOO_LONG", false)]).unwrap();
    assert!(long.contains("STRING_TOO_LONG"), "{long}");
}

#[tokio::test]
async fn a_message_log_call_that_fails_does_not_send_the_record_update_again() {
    let server = salesforce().await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!([{"id": "0035j00000Pq7RsAAJ", "success": true, "errors": []}]),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{COLLECTIONS}/SMS_Log__c/Message_Id__c")))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let log = MessageLog {
        object: "SMS_Log__c".into(),
        external_id_field: "Message_Id__c".into(),
        record_field: "Contact__c".into(),
        status_field: "Status__c".into(),
        detail_field: None,
    };
    let sink = sink(&server).with_message_logs(BTreeMap::from([("Contact".to_string(), log)]));
    let mut written = update("Contact/0035j00000Pq7RsAAJ", JobState::Delivered, None);
    written.messages = written.status.clone().into_iter().collect();
    let outcomes = sink.write(&[written]).await.unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Written],
        "the record is written; the log is reported"
    );
    server.verify().await;
}

#[tokio::test]
async fn a_renamed_status_value_is_written_as_the_picklist_names_it() {
    let server = salesforce().await;
    takes_both(&server).await;
    let mut sink = sink(&server);
    let contact = sink.fields.get_mut("Contact").unwrap();
    contact.status_values = BTreeMap::from([("delivered".to_string(), "配信済".to_string())]);
    let updates = [
        update("Contact/0035j00000Pq7RsAAJ", JobState::Delivered, None),
        update(
            "Contact/0035j00000Pq7RtAAJ",
            JobState::Failed,
            Some("refused"),
        ),
    ];
    sink.write(&updates).await.unwrap();
    let statuses: Vec<Value> = sent_records(&server)
        .await
        .iter()
        .map(|r| r["SMS_Status__c"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!("配信済"), json!("failed")],
        "a state not renamed keeps its name"
    );
}

/// An opt-out from 090-1234-5678 answering a message of Contact …RsAAJ.
fn opted_out_record() -> RecordUpdate {
    let mut contact = update("Contact/0035j00000Pq7RsAAJ", JobState::Delivered, None);
    contact.consent = Some(ConsentChange {
        number: Some(crate::domain::phone::PhoneNumber::parse("090-1234-5678").unwrap()),
        message_id: MessageId::new(),
        opted_out: true,
        at: at(),
    });
    contact
}

#[tokio::test]
async fn an_opt_out_spread_that_salesforce_cannot_answer_now_leaves_its_update_to_retry() {
    let server = salesforce().await;
    takes_both(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v67.0/query"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let plain = update("Contact/0035j00000Pq7RtAAJ", JobState::Delivered, None);
    let outcomes = sink(&server)
        .write(&[opted_out_record(), plain.clone()])
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Retry, Outcome::Written]);

    // A query Salesforce refuses for good (a phone field it cannot filter) is not retried.
    let server = salesforce().await;
    takes_one(&server).await;
    Mock::given(method("GET"))
        .and(path("/services/data/v67.0/query"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!([{
            "message": "field 'MobilePhone' can not be filtered in a query call",
            "errorCode": "INVALID_FIELD"
        }])))
        .mount(&server)
        .await;
    let outcomes = sink(&server).write(&[opted_out_record()]).await.unwrap();
    assert_eq!(outcomes, [Outcome::Written]);
}

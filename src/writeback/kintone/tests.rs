use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tsunagi_kintone::Auth;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use super::*;
use crate::{
    domain::{ids::MessageId, state::JobState},
    store::SqliteStore,
    writeback::{
        plan::{ClickChange, ConsentChange},
        Reply, StatusChange,
    },
};

const CONNECTION: &str = "kintone:sales";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/kintone/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A records.json answer giving each id its revision.
fn revisions(records: &[(u64, u64)]) -> ResponseTemplate {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, revision)| {
            json!({
                "$id": {"type": "__ID__", "value": id.to_string()},
                "$revision": {"type": "__REVISION__", "value": revision.to_string()}
            })
        })
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({"records": records, "totalCount": null}))
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn update(record: &str, status: JobState, replies: &[&str]) -> Update {
    Update {
        record: record.into(),
        status: Some(StatusChange {
            message_id: MessageId::new(),
            status,
            detail: None,
            at: at(),
        }),
        messages: Vec::new(),
        consent: None,
        click: None,
        replies: replies
            .iter()
            .map(|body| Reply {
                message_id: MessageId::new(),
                body: body.to_string(),
                at: at(),
            })
            .collect(),
        entries: vec![1],
        opens: false,
    }
}

struct Setup {
    server: MockServer,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    Setup {
        server: MockServer::start().await,
        store: Arc::new(SqliteStore::open(&url).await.unwrap()),
        _dir: dir,
    }
}

impl Setup {
    fn sink(&self) -> KintoneSink {
        self.sink_with(|_| {})
    }

    /// A sink whose fields `adjust` changes first.
    fn sink_with(&self, adjust: impl FnOnce(&mut KintoneFields)) -> KintoneSink {
        let client = Client::new(&self.server.uri(), Auth::api_token("token-a")).unwrap();
        let fields = KintoneFields {
            status: "sms_status".into(),
            detail: "sms_status_detail".into(),
            reply: "sms_reply".into(),
            opt_out: Some("sms_opt_out".into()),
            click: Some("sms_clicked_at".into()),
            trigger: None,
            status_values: Default::default(),
            opt_out_option: None,
            action_on_delivered: None,
        };
        let mut fields = fields;
        adjust(&mut fields);
        KintoneSink::new(CONNECTION, client, 12, fields, self.store.clone())
    }

    /// The bodies of the `PUT`s and `POST`s to `api`, oldest first.
    async fn bodies(&self, api: &str) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == format!("/k/v1/{api}") && r.method.as_str() != "GET")
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    async fn puts(&self, body: ResponseTemplate, times: u64) {
        Mock::given(method("PUT"))
            .and(path("/k/v1/records.json"))
            .respond_with(body)
            .up_to_n_times(times)
            .mount(&self.server)
            .await;
    }

    /// Record 7's next write is refused as a conflict, and the one after gives `revision`.
    async fn conflict_then_written(&self, revision: u64) {
        self.puts(
            ResponseTemplate::new(409)
                .set_body_raw(fixture("error_revision_conflict.json"), "application/json"),
            1,
        )
        .await;
        self.puts(
            ResponseTemplate::new(200)
                .set_body_json(json!({"records": [{"id": "7", "revision": revision.to_string()}]})),
            1,
        )
        .await;
    }

    async fn reads(&self, body: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path("/k/v1/records.json"))
            .respond_with(body)
            .mount(&self.server)
            .await;
    }
}

#[tokio::test]
async fn records_are_written_at_the_revision_just_read_and_our_revisions_are_remembered() {
    let s = setup().await;
    s.reads(revisions(&[(7, 4), (92, 0)])).await;
    s.puts(
        ResponseTemplate::new(200)
            .set_body_raw(fixture("records_update_response.json"), "application/json"),
        1,
    )
    .await;
    let updates = [
        update("12/7", JobState::Delivered, &[]),
        update("12/92", JobState::Rejected, &[]),
    ];
    let outcomes = s.sink().write(&updates).await.unwrap();
    assert_eq!(outcomes, [Outcome::Written, Outcome::Written]);
    let put = &s.bodies("records.json").await[0];
    assert_eq!(put["app"], 12);
    assert_eq!(
        put["records"][0],
        json!({"id": 7, "revision": 4, "record": {
            "sms_status": {"value": "delivered"},
            "sms_status_detail": {"value": ""}
        }})
    );
    assert!(s.store.is_own_write(CONNECTION, "12/7", 5).await.unwrap());
    assert!(s.store.is_own_write(CONNECTION, "12/92", 1).await.unwrap());
    assert!(!s.store.is_own_write(CONNECTION, "12/7", 4).await.unwrap());
}

#[tokio::test]
async fn an_opt_out_checks_the_first_option_of_the_check_box_and_an_opt_in_clears_it() {
    let s = setup().await;
    Mock::given(method("GET"))
        .and(path("/k/v1/app/form/fields.json"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            fixture("form_fields_opt_out_check_box.json"),
            "application/json",
        ))
        .mount(&s.server)
        .await;
    s.reads(revisions(&[(7, 4), (8, 2), (9, 1)])).await;
    s.puts(
        ResponseTemplate::new(200).set_body_json(json!({"records": [
            {"id": "7", "revision": "5"}, {"id": "8", "revision": "3"}, {"id": "9", "revision": "2"}
        ]})),
        2,
    )
    .await;
    let consent = |opted_out| {
        Some(ConsentChange {
            number: None,
            message_id: MessageId::new(),
            opted_out,
            at: at(),
        })
    };
    let mut out = update("12/7", JobState::Delivered, &[]);
    out.consent = consent(true);
    let mut back = update("12/8", JobState::Delivered, &[]);
    back.consent = consent(false);
    let untouched = update("12/9", JobState::Delivered, &[]);
    let sink = s.sink();
    let outcomes = sink.write(&[out.clone(), back, untouched]).await.unwrap();
    assert_eq!(
        outcomes,
        [Outcome::Written, Outcome::Written, Outcome::Written]
    );
    let put = &s.bodies("records.json").await[0];
    assert_eq!(
        put["records"][0]["record"]["sms_opt_out"],
        json!({"value": ["配信停止"]})
    );
    assert_eq!(
        put["records"][1]["record"]["sms_opt_out"],
        json!({"value": []})
    );
    assert_eq!(put["records"][2]["record"].get("sms_opt_out"), None);
    sink.write(&[out]).await.unwrap();
    let form_reads = s
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/k/v1/app/form/fields.json")
        .count();
    assert_eq!(form_reads, 1, "the options are read once");
}

#[tokio::test]
async fn an_unreadable_form_answer_holds_the_opt_out_until_the_form_can_be_read() {
    let s = setup().await;
    Mock::given(method("GET"))
        .and(path("/k/v1/app/form/fields.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("{\"properties\": [", "application/json"),
        )
        .up_to_n_times(1)
        .mount(&s.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/k/v1/app/form/fields.json"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            fixture("form_fields_opt_out_check_box.json"),
            "application/json",
        ))
        .mount(&s.server)
        .await;
    s.reads(revisions(&[(7, 4)])).await;
    s.puts(
        ResponseTemplate::new(200)
            .set_body_json(json!({"records": [{"id": "7", "revision": "5"}]})),
        1,
    )
    .await;
    let mut out = update("12/7", JobState::Delivered, &[]);
    out.consent = Some(ConsentChange {
        number: None,
        message_id: MessageId::new(),
        opted_out: true,
        at: at(),
    });
    let sink = s.sink();
    assert!(
        sink.write(std::slice::from_ref(&out)).await.is_err(),
        "nothing is acknowledged while the form cannot be read"
    );
    assert!(
        s.bodies("records.json").await.is_empty(),
        "no record was written"
    );
    let outcomes = sink.write(&[out]).await.unwrap();
    assert_eq!(outcomes, [Outcome::Written]);
    let put = &s.bodies("records.json").await[0];
    assert_eq!(
        put["records"][0]["record"]["sms_opt_out"],
        json!({"value": ["配信停止"]})
    );
}

#[tokio::test]
async fn a_first_click_sets_the_date_and_time_field_in_utc() {
    let s = setup().await;
    s.reads(revisions(&[(7, 4), (8, 2)])).await;
    s.puts(
        ResponseTemplate::new(200).set_body_json(json!({"records": [
            {"id": "7", "revision": "5"}, {"id": "8", "revision": "3"}
        ]})),
        1,
    )
    .await;
    let mut clicked = update("12/7", JobState::Delivered, &[]);
    clicked.click = Some(ClickChange {
        message_id: MessageId::new(),
        at: at() + chrono::Duration::seconds(59),
    });
    let untouched = update("12/8", JobState::Delivered, &[]);
    s.sink().write(&[clicked, untouched]).await.unwrap();
    let put = &s.bodies("records.json").await[0];
    assert_eq!(
        put["records"][0]["record"]["sms_clicked_at"],
        json!({"value": "2027-01-15T08:00:00Z"})
    );
    assert_eq!(put["records"][1]["record"].get("sms_clicked_at"), None);
}

#[tokio::test]
async fn a_revision_conflict_is_read_again_and_written() {
    let s = setup().await;
    s.reads(revisions(&[(7, 4)])).await;
    s.conflict_then_written(6).await;
    let outcomes = s
        .sink()
        .write(&[update("12/7", JobState::Delivered, &[])])
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Written]);
    let requests = s.server.received_requests().await.unwrap();
    let gets = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 2, "the revision was read again after the conflict");
}

#[tokio::test]
async fn a_known_revision_is_written_at_without_a_read_and_a_stale_one_is_read_again() {
    let s = setup().await;
    s.store
        .remember_revisions(CONNECTION, vec![("12/7".into(), 4)], at())
        .await
        .unwrap();
    s.reads(revisions(&[(7, 5)])).await;
    s.puts(
        ResponseTemplate::new(200)
            .set_body_json(json!({"records": [{"id": "7", "revision": "5"}]})),
        1,
    )
    .await;
    let write = || async {
        s.sink()
            .write(&[update("12/7", JobState::Delivered, &[])])
            .await
            .unwrap()
    };
    assert_eq!(write().await, [Outcome::Written]);
    let requests = s.server.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| r.method.as_str() == "PUT"),
        "no read: the webhook's revision was known"
    );
    assert_eq!(
        s.bodies("records.json").await[0]["records"][0]["revision"],
        4
    );
    let known = s
        .store
        .known_revisions(CONNECTION, vec!["12/7".into()])
        .await
        .unwrap();
    assert_eq!(
        known["12/7"], 5,
        "the revision our write gave is known next"
    );
    assert!(s.store.is_own_write(CONNECTION, "12/7", 5).await.unwrap());

    // Someone saved the record since: kintone refuses the write, which is read and made again.
    s.server.reset().await;
    s.reads(revisions(&[(7, 8)])).await;
    s.conflict_then_written(9).await;
    assert_eq!(write().await, [Outcome::Written]);
    let puts: Vec<Value> = s
        .bodies("records.json")
        .await
        .iter()
        .map(|b| b["records"][0]["revision"].clone())
        .collect();
    assert_eq!(puts, [json!(5), json!(8)]);
    assert!(
        !s.store.is_own_write(CONNECTION, "12/7", 6).await.unwrap(),
        "forgotten"
    );
}

#[tokio::test]
async fn a_record_kintone_refuses_fails_alone_and_the_rest_is_written() {
    let s = setup().await;
    s.reads(revisions(&[(7, 4), (8, 2)])).await;
    s.puts(
        ResponseTemplate::new(400)
            .set_body_raw(fixture("error_validation.json"), "application/json"),
        1,
    )
    .await;
    s.puts(
        ResponseTemplate::new(200)
            .set_body_json(json!({"records": [{"id": "8", "revision": "3"}]})),
        1,
    )
    .await;
    let outcomes = s
        .sink()
        .write(&[
            update("12/7", JobState::Delivered, &[]),
            update("12/8", JobState::Delivered, &[]),
        ])
        .await
        .unwrap();
    match &outcomes[0] {
        Outcome::Failed(reason) => {
            assert!(
                reason.starts_with("CB_VA01: records[0].SMS状態.value"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(outcomes[1], Outcome::Written);
    let puts = s.bodies("records.json").await;
    assert_eq!(puts[1]["records"].as_array().unwrap().len(), 1);
    assert_eq!(puts[1]["records"][0]["id"], 8);
}

#[tokio::test]
async fn a_deleted_record_fails_and_replies_become_comments() {
    let s = setup().await;
    s.reads(revisions(&[(8, 2)])).await;
    s.puts(
        ResponseTemplate::new(200)
            .set_body_json(json!({"records": [{"id": "8", "revision": "3"}]})),
        1,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/k/v1/bulkRequest.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"results": [{"id": "3"}, {"id": "4"}]})),
        )
        .mount(&s.server)
        .await;
    let outcomes = s
        .sink()
        .write(&[
            update("12/7", JobState::Delivered, &[]),
            update("12/8", JobState::Delivered, &["はい", "STOP"]),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Failed("GAIA_RE01: the record no longer exists".into()),
            Outcome::Written
        ]
    );
    let put = &s.bodies("records.json").await[0];
    assert_eq!(put["records"][0]["record"]["sms_reply"]["value"], "STOP");
    let bulk = &s.bodies("bulkRequest.json").await[0];
    let texts: Vec<&str> = bulk["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["payload"]["comment"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["SMS返信: はい", "SMS返信: STOP"]);
}

#[tokio::test]
async fn a_busy_domain_leaves_the_batch_for_later() {
    let s = setup().await;
    s.reads(revisions(&[(7, 4)])).await;
    s.puts(
        ResponseTemplate::new(429)
            .set_body_raw(fixture("error_too_many_requests.json"), "application/json"),
        1,
    )
    .await;
    let result = s
        .sink()
        .write(&[update("12/7", JobState::Delivered, &[])])
        .await;
    assert!(matches!(result, Err(SinkError::Retry { .. })), "{result:?}");
    assert!(
        !s.store.is_own_write(CONNECTION, "12/7", 5).await.unwrap(),
        "the revision expected of a write that did not happen is forgotten"
    );
}

#[tokio::test]
async fn a_record_of_another_app_fails_without_a_call() {
    let s = setup().await;
    let outcomes = s
        .sink()
        .write(&[update("13/7", JobState::Delivered, &[])])
        .await
        .unwrap();
    assert!(matches!(&outcomes[0], Outcome::Failed(r) if r.contains("app 12")));
    assert!(s.server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dry_run_plans_the_writes_without_a_revision_and_reads_nothing() {
    let s = setup().await;
    let mut answered = update("12/7", JobState::Delivered, &["はい"]);
    answered.consent = Some(ConsentChange {
        number: None,
        message_id: MessageId::new(),
        opted_out: true,
        at: at(),
    });
    let other_app = update("3/1", JobState::Delivered, &[]);
    let (calls, outcomes) = s.sink().calls(&[answered.clone(), other_app]);
    assert_eq!(outcomes[0], Outcome::Written);
    assert!(matches!(&outcomes[1], Outcome::Failed(reason) if reason.contains("app 12")));
    let planned: Vec<(&str, &str, &Value)> = calls
        .iter()
        .map(|c| (c.method, c.path.as_str(), &c.body))
        .collect();
    assert_eq!(
        planned,
        [
            (
                "PUT",
                "/k/v1/records.json",
                // No revision (none was read), no opt-out (its option is read from the form).
                &json!({"app": 12, "records": [{"id": 7, "record": {
                    "sms_status": {"value": "delivered"},
                    "sms_status_detail": {"value": ""},
                    "sms_reply": {"value": "はい"},
                }}]})
            ),
            (
                "POST",
                "/k/v1/bulkRequest.json",
                &json!({"requests": [{
                    "method": "POST",
                    "api": "/k/v1/record/comment.json",
                    "payload": {"app": 12, "record": 7, "comment": {"text": "SMS返信: はい"}},
                }]})
            ),
        ]
    );
    assert_eq!(calls[0].message_ids, answered.messages());
    assert!(s.server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_action_kintone_refuses_keeps_the_written_status_and_shows_in_readyz() {
    let s = setup().await;
    s.reads(revisions(&[(7, 4)])).await;
    s.puts(
        ResponseTemplate::new(200)
            .set_body_json(json!({"records": [{"id": "7", "revision": "5"}]})),
        1,
    )
    .await;
    // An API token runs an action only where the record has no assignee, or Administrator.
    Mock::given(method("PUT"))
        .and(path("/k/v1/records/status.json"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "code": "CB_NO02", "id": "1505999166-836316825", "message": "権限がありません。"
        })))
        .expect(1)
        .mount(&s.server)
        .await;
    let warnings = SetupWarnings::default();
    let sink = s
        .sink_with(|f| f.action_on_delivered = Some("完了にする".into()))
        .with_warnings(warnings.clone());
    let updates = [update("12/7", JobState::Delivered, &[])];
    assert_eq!(sink.write(&updates).await.unwrap(), [Outcome::Written]);
    let shown = warnings.all();
    assert!(
        shown.len() == 1
            && shown[0].starts_with("kintone:sales: action_on_delivered \"完了にする\""),
        "{shown:?}"
    );
    assert!(shown[0].contains("CB_NO02"), "{shown:?}");
    let action = &s.bodies("records/status.json").await[0];
    assert_eq!(
        action,
        &json!({"app": 12, "records": [{"id": 7, "action": "完了にする"}]})
    );
}

//! The OpenAPI 3.0 document Salesforce External Services imports: served per connection, within
//! the rules Salesforce sets for it, and describing requests the API really takes.

use serde_json::{json, Map, Value};
use tsunagi::inbound::external_services::document;

use crate::{
    harness::{code_in, TestServer},
    salesforce::server,
};

/// The harness's `public_base_url`: the default.
const BASE_URL: &str = "http://127.0.0.1:8080";

/// Fetch a connection's document without any key or token, as an admin's `curl` does.
async fn fetch(s: &TestServer, name: &str) -> (u16, Value) {
    let r = s
        .client
        .get(format!(
            "{}/v1/inbound/salesforce/{name}/openapi.json",
            s.base
        ))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The operation with this `operationId`, and its path.
fn operation<'a>(doc: &'a Value, id: &str) -> (&'a str, &'a Value) {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().values().map(move |o| (path, o)))
        .find(|(_, o)| o["operationId"] == id)
        .map(|(path, o)| (path.as_str(), o))
        .unwrap_or_else(|| panic!("no operation {id}"))
}

fn request_schema<'a>(doc: &'a Value, id: &str) -> &'a Value {
    &operation(doc, id).1["requestBody"]["content"]["application/json"]["schema"]
}

/// The schema of the operation's success response.
fn success_schema<'a>(doc: &'a Value, id: &str, status: &str) -> &'a Value {
    &operation(doc, id).1["responses"][status]["content"]["application/json"]["schema"]
}

/// Whether `value` has the schema's type, its required properties, and only properties of
/// the declared types (what Salesforce's generated Apex classes read).
fn conforms(value: &Value, schema: &Value) -> Result<(), String> {
    let fits = match schema["type"].as_str().unwrap() {
        "string" => value.is_string() || value.is_null(),
        "integer" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => return Err(format!("unexpected type {other}")),
    };
    if !fits {
        return Err(format!("{value} is not a {}", schema["type"]));
    }
    if let Some(required) = schema["required"].as_array() {
        for name in required.iter().filter_map(Value::as_str) {
            if value.get(name).is_none() {
                return Err(format!("{value} lacks {name}"));
            }
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            if let Some(v) = value.get(name).filter(|v| !v.is_null()) {
                conforms(v, property).map_err(|e| format!("{name}: {e}"))?;
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            conforms(v, items).map_err(|e| format!("[{i}]: {e}"))?;
        }
    }
    Ok(())
}

/// A letter, then letters, digits and single underscores, not ending in one: Apex's rule.
fn is_apex_identifier(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !id.contains("__")
        && !id.ends_with('_')
}

/// Every rule broken anywhere in `value`, with its JSON path.
fn broken_rules(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{at}/{key}");
                // `$ref` too: the schemas are inlined, flat and explicit.
                if ["not", "enum", "oneOf", "anyOf", "allOf", "$ref"].contains(&key.as_str()) {
                    found.push(format!("{here}: keyword {key}"));
                }
                if key == "type" && v == "number" {
                    found.push(format!("{here}: number"));
                }
                if key == "format"
                    && ["int64", "float", "double"].contains(&v.as_str().unwrap_or(""))
                {
                    found.push(format!("{here}: format {v}"));
                }
                if key == "content" {
                    check_content(v, &here, found);
                }
                broken_rules(v, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                broken_rules(v, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Only JSON, each with a schema.
fn check_content(content: &Value, at: &str, found: &mut Vec<String>) {
    for (media, entry) in content.as_object().unwrap() {
        if media != "application/json" {
            found.push(format!("{at}: media type {media}"));
        }
        if !entry["schema"].is_object() {
            found.push(format!("{at}/{media}: no schema"));
        }
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_key_for_a_configured_connection() {
    let (s, _salesforce) = server().await;
    let (status, doc) = fetch(&s, "dev").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc, document("dev", BASE_URL));
    assert_eq!(doc["servers"][0]["url"], BASE_URL);
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_connection_is_a_not_found_problem() {
    let (s, _salesforce) = server().await;
    let (status, problem) = fetch(&s, "staging").await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "not_found");
    s.stop().await;
}

#[tokio::test]
async fn the_main_openapi_document_stays_3_1_and_does_not_list_the_flow_actions() {
    let (s, _salesforce) = server().await;
    let main: Value = s.get("/openapi.json").await.json().await.unwrap();
    assert!(main["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(!main.to_string().contains("sendSms"));
    s.stop().await;
}

#[test]
fn the_document_keeps_every_rule_external_services_sets() {
    let doc = document("prod", "https://sms.example.com/");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    assert_eq!(doc["servers"], json!([{"url": "https://sms.example.com"}]));
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    assert_eq!(doc["security"], json!([{"api_key": []}]));

    let mut found = Vec::new();
    broken_rules(&doc, "", &mut found);
    assert!(found.is_empty(), "rules broken:\n{}", found.join("\n"));

    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(is_apex_identifier(id), "{method} {path}: {id:?}");
            ids.push(id.to_string());
            let responses: &Map<String, Value> = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{id}: a success response"
            );
            for (status, response) in responses {
                let schema = &response["content"]["application/json"]["schema"];
                assert!(schema.is_object(), "{id} {status}: a JSON body schema");
                if status.starts_with('4') {
                    let problem = &schema["properties"];
                    for field in ["type", "title", "status", "detail", "code"] {
                        assert!(problem.get(field).is_some(), "{id} {status}: {field}");
                    }
                }
            }
            assert!(
                responses.keys().any(|s| s.starts_with('4')),
                "{id}: errors documented"
            );
        }
    }
    ids.sort();
    assert_eq!(ids, ["checkOtp", "sendOtp", "sendSms", "sendSmsForRecord"]);
    // The connection is the document's: a Flow is not asked for it.
    let (path, record) = operation(&doc, "sendSmsForRecord");
    assert_eq!(path, "/v1/salesforce/prod/records");
    assert!(record.get("parameters").is_none(), "{record}");
    assert_eq!(
        operation(&doc, "checkOtp").0,
        "/v1/otp/{verification_id}/verify"
    );
    // External Services ignores response headers: none are described.
    assert!(!doc.to_string().contains("\"headers\""), "{doc}");
}

#[test]
fn apex_identifiers_are_recognised_as_salesforce_does() {
    for good in ["sendSms", "checkOtp", "send_sms2"] {
        assert!(is_apex_identifier(good), "{good}");
    }
    for bad in ["2send", "send__sms", "send_", "send-sms", "_send", ""] {
        assert!(!is_apex_identifier(bad), "{bad}");
    }
}

#[test]
fn the_validator_catches_each_refused_construct() {
    for broken in [
        json!({"not": {}}),
        json!({"enum": ["a"]}),
        json!({"oneOf": []}),
        json!({"type": "number"}),
        json!({"format": "int64"}),
        json!({"content": {"application/xml": {"schema": {}}}}),
        json!({"content": {"application/json": {}}}),
    ] {
        let mut found = Vec::new();
        broken_rules(&json!({"paths": broken}), "", &mut found);
        assert!(!found.is_empty(), "{broken} passed");
    }
}

#[tokio::test]
async fn a_send_sms_body_built_from_the_documents_properties_is_accepted() {
    let (s, _salesforce) = server().await;
    let doc = document("dev", BASE_URL);
    let schema = request_schema(&doc, "sendSms");
    let properties = schema["properties"].as_object().unwrap();
    for name in ["to", "body", "send_at", "from"] {
        assert!(properties.contains_key(name), "sendSms lists {name}");
    }
    assert!(!properties.contains_key("vars"), "a Flow cannot fill a map");
    assert_eq!(schema["required"], json!(["to"]));

    // As a Flow fills the inputs: a Date and a Datetime as Salesforce serializes them.
    let request = json!({
        "to": "09012345678",
        "body": "ご予約の確認です",
        "send_at": "2020-05-08T13:40:22.000Z",
        "number_confirmed_on": "2026-12-24",
        "shorten_links": false,
    });
    conforms(&request, schema).unwrap();
    let (status, accepted) = s.send(request).await;
    assert_eq!(status, 202, "{accepted}");
    conforms(&accepted, success_schema(&doc, "sendSms", "202")).unwrap();
    s.stop().await;
}

#[tokio::test]
async fn send_and_check_otp_bodies_built_from_the_document_are_accepted() {
    let (s, _salesforce) = server().await;
    let doc = document("dev", BASE_URL);
    let start = request_schema(&doc, "sendOtp");
    assert!(start["properties"].get("to").is_some());
    let request = json!({"to": "09012345678", "code_length": 6, "ttl_seconds": 300});
    conforms(&request, start).unwrap();
    let (status, sent) = s.call("/v1/otp", request).await;
    assert_eq!(status, 201, "{sent}");
    conforms(&sent, success_schema(&doc, "sendOtp", "201")).unwrap();

    let (path, check) = operation(&doc, "checkOtp");
    let parameter = &check["parameters"][0];
    assert_eq!(parameter["name"], "verification_id");
    assert_eq!(parameter["in"], "path");
    let code = code_in(&s.text_of("09012345678", &sent["message_id"]).await);
    let path = path.replace(
        "{verification_id}",
        sent["verification_id"].as_str().unwrap(),
    );
    // A code that is no code is refused naming it, and costs the verification no check.
    let (status, problem) = s.call(&path, json!({"code": "12ab"})).await;
    assert_eq!(
        (status, &problem["field"]),
        (422, &json!("code")),
        "{problem}"
    );
    // A wrong code is a verdict a Screen Flow branches on, not its fault path.
    let wrong = json!({"code": if code == "000000" { "111111" } else { "000000" }});
    conforms(&wrong, request_schema(&doc, "checkOtp")).unwrap();
    let (status, verdict) = s.call(&path, wrong).await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(
        (
            &verdict["valid"],
            &verdict["status"],
            &verdict["attempts_left"]
        ),
        (&json!(false), &json!("incorrect"), &json!(4)),
        "{verdict}"
    );
    conforms(&verdict, success_schema(&doc, "checkOtp", "200")).unwrap();
    let body = json!({"code": code});
    let (status, approved) = s.call(&path, body.clone()).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(
        (&approved["valid"], &approved["status"]),
        (&json!(true), &json!("approved"))
    );
    conforms(&approved, success_schema(&doc, "checkOtp", "200")).unwrap();
    let (status, again) = s.call(&path, body).await;
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("already_used")),
        "{again}"
    );
    // The plain API keeps its statuses.
    let plain = format!(
        "/v1/otp/{}/check",
        sent["verification_id"].as_str().unwrap()
    );
    let (status, problem) = s.call(&plain, json!({"code": code})).await;
    assert_eq!(
        (status, &problem["code"]),
        (409, &json!("otp_already_used")),
        "{problem}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_record_action_built_from_the_document_sends_and_its_status_is_written_back() {
    let (s, salesforce) = server().await;
    let doc = document("dev", BASE_URL);
    let schema = request_schema(&doc, "sendSmsForRecord");
    let pairs = &schema["properties"]["merge_fields"];
    assert_eq!(pairs["type"], "array");
    assert_eq!(pairs["items"]["required"], json!(["name"]));
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/salesforce/external_services_record_action.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    conforms(&body, schema).unwrap();
    let (path, _) = operation(&doc, "sendSmsForRecord");
    // The record has no phone in the pairs: the Flow passes it.
    let mut body = body;
    body["phone"] = json!("090-1234-5678");
    let (status, result) = s.call(path, body).await;
    assert_eq!(status, 202, "{result}");
    conforms(&result, success_schema(&doc, "sendSmsForRecord", "202")).unwrap();
    assert_eq!(result["status"], "queued");
    assert_eq!(
        s.text_of("09012345678", &result["message_id"]).await,
        "山田様 ご予約は2026-12-24です"
    );
    let records = salesforce
        .wait_for(|records| {
            records
                .iter()
                .any(|r| r["id"] == "0035j00000Pq7RsAAJ" && r["SMS_Status__c"] == "delivered")
        })
        .await;
    assert!(records.iter().all(|r| r["attributes"]["type"] == "Contact"));
    s.stop().await;
}

#[tokio::test]
async fn a_record_action_with_a_bad_id_name_or_connection_is_refused_naming_it() {
    let (s, _salesforce) = server().await;
    let good = json!({"record_id": "0035j00000Pq7RsAAJ", "sobject": "Contact", "phone": "090-1234-5678",
        "merge_fields": [{"name": "LastName", "value": "山田"}, {"name": "Appointment_Date__c", "value": "2026-12-24"}]});
    let mut cases = Vec::new();
    let mut bad_id = good.clone();
    bad_id["record_id"] = json!("not-an-id");
    cases.push((bad_id, "record_id"));
    let mut bad_object = good.clone();
    bad_object["sobject"] = json!("Contact/x");
    cases.push((bad_object, "sobject"));
    let mut twice = good.clone();
    twice["merge_fields"][1]["name"] = json!("LastName");
    cases.push((twice, "merge_fields[1].name"));
    for (body, field) in cases {
        let (status, problem) = s.call("/v1/salesforce/dev/records", body).await;
        assert_eq!(
            (status, &problem["code"], &problem["field"]),
            (422, &json!("invalid_request"), &json!(field)),
            "{problem}"
        );
    }
    let (status, problem) = s.call("/v1/salesforce/nope/records", good.clone()).await;
    assert_eq!(
        (status, &problem["code"]),
        (404, &json!("not_found")),
        "{problem}"
    );
    // Without the API key, nothing is taken.
    let r = s
        .client
        .post(format!("{}/v1/salesforce/dev/records", s.base))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(s.stored_messages().await, 0);
    s.stop().await;
}

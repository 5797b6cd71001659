//! App webhook payloads: one JSON `POST` per record event, no signature, no retries, ≤ 1 MB.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::field::{number_text, utc, Entity, FieldValue, Record, RecordError};

/// Largest body [`parse`] reads: kintone caps payloads at 1 MB, plus room for escaping slack.
pub const MAX_WEBHOOK_BYTES: usize = 1_536 * 1024;

/// The app a webhook comes from; kintone sends both as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// App id (`"12"`).
    pub id: String,
    /// App name at the time of the event.
    pub name: String,
}

impl App {
    /// The app id as a number, as the REST API takes it.
    pub fn id_number(&self) -> Option<u64> {
        self.id.parse().ok()
    }
}

/// A record added, updated or moved to another status: the whole record after the event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    /// The record, shaped like a `GET record.json` answer.
    pub record: Record,
    /// The app's record title (may be just the record number); `""` if absent.
    pub record_title: String,
    /// Link to the record (`https://x.cybozu.com/k/1/show#record=2`); `""` if absent.
    pub url: String,
}

/// A deleted record: only its id remains.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteEvent {
    /// The deleted record's id.
    pub record_id: u64,
    /// Who deleted it.
    pub deleted_by: Entity,
    /// When, to the second.
    pub deleted_at: DateTime<Utc>,
}

/// A mention in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// User, organization or group code.
    pub code: String,
    /// `USER`, `GROUP` or `ORGANIZATION`.
    pub kind: String,
}

/// A record comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    /// Comment id within the record (string or number on the wire).
    pub id: String,
    /// Text; kintone prefixes the mentioned users' names.
    pub text: String,
    /// When, to the second.
    pub created_at: DateTime<Utc>,
    /// Who wrote it; API-token posts show as the administrator.
    pub creator: Entity,
    /// Who was mentioned.
    pub mentions: Vec<Mention>,
}

/// A comment added to a record.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentEvent {
    /// The commented record's id.
    pub record_id: u64,
    /// The comment.
    pub comment: Comment,
    /// Link ending `#record=ID&comment=CID`; `""` if absent.
    pub url: String,
}

/// What happened, by the payload's `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `ADD_RECORD`
    AddRecord(RecordEvent),
    /// `UPDATE_RECORD`
    UpdateRecord(RecordEvent),
    /// `UPDATE_STATUS`: read the new status with [`Record::status`].
    UpdateStatus(RecordEvent),
    /// `DELETE_RECORD`
    DeleteRecord(DeleteEvent),
    /// `ADD_RECORD_COMMENT`
    AddRecordComment(CommentEvent),
    /// A `type` this crate does not know; the whole body is kept.
    Unknown {
        /// The `type` as sent.
        type_name: String,
        /// The whole payload.
        body: Value,
    },
}

/// One webhook notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Unique per notification: dedupe on it.
    pub id: String,
    /// The app it comes from; check it against the app you expect.
    pub app: App,
    /// The event and its data.
    pub event: Event,
}

impl Webhook {
    /// The payload's `type` string.
    pub fn type_name(&self) -> &str {
        match &self.event {
            Event::AddRecord(_) => "ADD_RECORD",
            Event::UpdateRecord(_) => "UPDATE_RECORD",
            Event::UpdateStatus(_) => "UPDATE_STATUS",
            Event::DeleteRecord(_) => "DELETE_RECORD",
            Event::AddRecordComment(_) => "ADD_RECORD_COMMENT",
            Event::Unknown { type_name, .. } => type_name,
        }
    }

    /// The record, for events that carry one.
    pub fn record(&self) -> Option<&Record> {
        match &self.event {
            Event::AddRecord(e) | Event::UpdateRecord(e) | Event::UpdateStatus(e) => {
                Some(&e.record)
            }
            _ => None,
        }
    }

    /// The record id (`$id`, or `recordId` for deletes and comments).
    pub fn record_id(&self) -> Option<u64> {
        match &self.event {
            Event::DeleteRecord(e) => Some(e.record_id),
            Event::AddRecordComment(e) => Some(e.record_id),
            _ => self.record()?.id(),
        }
    }

    /// The record revision after the event (`$revision`), for events that carry a record.
    pub fn revision(&self) -> Option<u64> {
        self.record()?.revision()
    }

    /// The STATUS field's value, found by its type; `None` without process management.
    pub fn status(&self) -> Option<&str> {
        self.record()?.status()
    }

    /// The STATUS field's code and value, found by its type.
    pub fn status_field(&self) -> Option<(&str, &FieldValue)> {
        self.record()?.status_field()
    }
}

/// Why a webhook body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The body passed the size cap.
    #[error("webhook body is {size} bytes, over the {limit}-byte cap")]
    TooLarge {
        /// Body size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("webhook body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("webhook body is not a JSON object")]
    NotAnObject,
    /// A required key is missing.
    #[error("webhook has no {0}")]
    Missing(&'static str),
    /// A key holds the wrong kind of value.
    #[error("webhook {key} is not {expected}")]
    WrongType {
        /// The key, dotted (`app.id`).
        key: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The record is malformed.
    #[error("webhook record: {0}")]
    Record(#[from] RecordError),
}

/// Parses a webhook body of at most [`MAX_WEBHOOK_BYTES`].
pub fn parse(body: &[u8]) -> Result<Webhook, WebhookError> {
    parse_with_limit(body, MAX_WEBHOOK_BYTES)
}

/// Parses a webhook body of at most `limit` bytes.
pub fn parse_with_limit(body: &[u8], limit: usize) -> Result<Webhook, WebhookError> {
    if body.len() > limit {
        return Err(WebhookError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let top = value.as_object().ok_or(WebhookError::NotAnObject)?;

    let id = string(top, "id", "id")?;
    let app = top
        .get("app")
        .ok_or(WebhookError::Missing("app"))?
        .as_object()
        .ok_or(WebhookError::WrongType {
            key: "app",
            expected: "an object",
        })?;
    let app = App {
        id: id_text(app, "id", "app.id")?,
        name: optional_string(app, "name", "app.name")?,
    };
    let type_name = string(top, "type", "type")?;

    let event = match type_name.as_str() {
        "ADD_RECORD" => Event::AddRecord(record_event(top)?),
        "UPDATE_RECORD" => Event::UpdateRecord(record_event(top)?),
        "UPDATE_STATUS" => Event::UpdateStatus(record_event(top)?),
        "DELETE_RECORD" => Event::DeleteRecord(DeleteEvent {
            record_id: record_id(top)?,
            deleted_by: entity(top, "deletedBy", "deletedBy")?,
            deleted_at: instant(top, "deletedAt", "deletedAt")?,
        }),
        "ADD_RECORD_COMMENT" => Event::AddRecordComment(comment_event(top)?),
        _ => Event::Unknown {
            type_name,
            body: value.clone(),
        },
    };
    Ok(Webhook { id, app, event })
}

fn record_event(top: &Map<String, Value>) -> Result<RecordEvent, WebhookError> {
    let record = top.get("record").ok_or(WebhookError::Missing("record"))?;
    Ok(RecordEvent {
        record: Record::from_json(record)?,
        record_title: optional_string(top, "recordTitle", "recordTitle")?,
        url: optional_string(top, "url", "url")?,
    })
}

fn comment_event(top: &Map<String, Value>) -> Result<CommentEvent, WebhookError> {
    let comment = top
        .get("comment")
        .ok_or(WebhookError::Missing("comment"))?
        .as_object()
        .ok_or(WebhookError::WrongType {
            key: "comment",
            expected: "an object",
        })?;
    let mentions = match comment.get("mentions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| {
                let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
                Some(Mention {
                    code: field("code")?,
                    kind: field("type").unwrap_or_default(),
                })
            })
            .collect::<Option<_>>()
            .ok_or(WebhookError::WrongType {
                key: "comment.mentions",
                expected: "a list of {code, type}",
            })?,
        Some(_) => {
            return Err(WebhookError::WrongType {
                key: "comment.mentions",
                expected: "a list",
            })
        }
    };
    Ok(CommentEvent {
        record_id: record_id(top)?,
        comment: Comment {
            id: id_text(comment, "id", "comment.id")?,
            text: string(comment, "text", "comment.text")?,
            created_at: instant(comment, "createdAt", "comment.createdAt")?,
            creator: entity(comment, "creator", "comment.creator")?,
            mentions,
        },
        url: optional_string(top, "url", "url")?,
    })
}

fn string(
    object: &Map<String, Value>,
    key: &str,
    name: &'static str,
) -> Result<String, WebhookError> {
    match object.get(key) {
        None | Some(Value::Null) => Err(WebhookError::Missing(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(WebhookError::WrongType {
            key: name,
            expected: "a string",
        }),
    }
}

fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    name: &'static str,
) -> Result<String, WebhookError> {
    match string(object, key, name) {
        Err(WebhookError::Missing(_)) => Ok(String::new()),
        other => other,
    }
}

/// An id kintone sends as a string but that some payloads carry as a number.
fn id_text(
    object: &Map<String, Value>,
    key: &str,
    name: &'static str,
) -> Result<String, WebhookError> {
    let value = object.get(key).ok_or(WebhookError::Missing(name))?;
    number_text(value).ok_or(WebhookError::WrongType {
        key: name,
        expected: "a string or number",
    })
}

fn record_id(top: &Map<String, Value>) -> Result<u64, WebhookError> {
    id_text(top, "recordId", "recordId")?
        .parse()
        .map_err(|_| WebhookError::WrongType {
            key: "recordId",
            expected: "a record number",
        })
}

fn entity(
    object: &Map<String, Value>,
    key: &str,
    name: &'static str,
) -> Result<Entity, WebhookError> {
    let value = object.get(key).ok_or(WebhookError::Missing(name))?;
    serde::Deserialize::deserialize(value).map_err(|_| WebhookError::WrongType {
        key: name,
        expected: "{code, name}",
    })
}

fn instant(
    object: &Map<String, Value>,
    key: &str,
    name: &'static str,
) -> Result<DateTime<Utc>, WebhookError> {
    utc(&string(object, key, name)?).ok_or(WebhookError::WrongType {
        key: name,
        expected: "an RFC 3339 time",
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::field::FieldType;
    use crate::test_support::fixture;

    #[test]
    fn every_webhook_fixture_parses_to_its_event() {
        for (name, type_name, record_id) in [
            ("webhook_add_record.json", "ADD_RECORD", 7),
            ("webhook_update_record.json", "UPDATE_RECORD", 7),
            ("webhook_update_status_japanese.json", "UPDATE_STATUS", 7),
            ("webhook_update_status_english.json", "UPDATE_STATUS", 42),
            ("webhook_delete_record.json", "DELETE_RECORD", 7),
            ("webhook_add_record_comment.json", "ADD_RECORD_COMMENT", 7),
        ] {
            let webhook = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(webhook.type_name(), type_name, "{name}");
            assert_eq!(webhook.record_id(), Some(record_id), "{name}");
            assert!(
                !webhook.id.is_empty() && webhook.app.id_number().is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn record_events_carry_the_record_and_its_revision() {
        let webhook = parse(&fixture("webhook_add_record.json")).unwrap();
        assert_eq!(webhook.app.id, "12");
        assert_eq!(webhook.app.name, "顧客リスト");
        assert_eq!(webhook.revision(), Some(1));
        let Event::AddRecord(event) = &webhook.event else {
            panic!("{:?}", webhook.event);
        };
        assert_eq!(event.record_title, "山田 太郎");
        assert_eq!(event.url, "https://example.cybozu.com/k/12/show#record=7");
        assert_eq!(
            event.record.get("SMS状態"),
            Some(&FieldValue::Empty(FieldType::DropDown))
        );
        let update = parse(&fixture("webhook_update_record.json")).unwrap();
        assert_eq!((update.record_id(), update.revision()), (Some(7), Some(4)));
    }

    #[test]
    fn status_is_found_by_type_under_either_language_key() {
        let japanese = parse(&fixture("webhook_update_status_japanese.json")).unwrap();
        assert_eq!(japanese.status(), Some("SMS送信"));
        assert_eq!(japanese.status_field().unwrap().0, "ステータス");
        assert_eq!(japanese.revision(), Some(6));

        let english = parse(&fixture("webhook_update_status_english.json")).unwrap();
        assert_eq!(english.status(), Some("Send SMS"));
        assert_eq!(english.status_field().unwrap().0, "Status");
    }

    #[test]
    fn status_is_absent_when_process_management_is_off() {
        for name in ["webhook_add_record.json", "webhook_update_record.json"] {
            let webhook = parse(&fixture(name)).unwrap();
            assert_eq!(webhook.status(), None, "{name}");
            assert!(webhook.status_field().is_none(), "{name}");
        }
        let deleted = parse(&fixture("webhook_delete_record.json")).unwrap();
        assert_eq!(deleted.status(), None);
    }

    #[test]
    fn delete_and_comment_events_carry_their_own_keys() {
        let deleted = parse(&fixture("webhook_delete_record.json")).unwrap();
        let Event::DeleteRecord(event) = deleted.event else {
            panic!("{:?}", deleted.event);
        };
        assert_eq!(event.record_id, 7);
        assert_eq!(event.deleted_by.code, "sato");
        assert_eq!(event.deleted_at.to_rfc3339(), "2026-12-24T03:15:42+00:00");

        let commented = parse(&fixture("webhook_add_record_comment.json")).unwrap();
        let Event::AddRecordComment(event) = commented.event else {
            panic!("{:?}", commented.event);
        };
        assert_eq!(event.comment.id, "3");
        assert!(event.comment.text.ends_with("折り返しお願いします"));
        assert_eq!(event.comment.creator.name, "佐藤 花子");
        assert_eq!(
            event.comment.mentions,
            vec![Mention {
                code: "suzuki".into(),
                kind: "USER".into()
            }]
        );
        assert!(event.url.ends_with("#record=7&comment=3"));
    }

    #[test]
    fn a_comment_id_sent_as_a_number_is_accepted() {
        let mut body: Value =
            serde_json::from_slice(&fixture("webhook_add_record_comment.json")).unwrap();
        body["comment"]["id"] = json!(3);
        body["recordId"] = json!(7);
        let webhook = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(webhook.record_id(), Some(7));
    }

    #[test]
    fn an_unknown_type_parses_to_unknown_with_its_body() {
        let body = br#"{"id":"x1","type":"UPDATE_APP","app":{"id":"12","name":"a"},"extra":1}"#;
        let webhook = parse(body).unwrap();
        let Event::Unknown { type_name, body } = &webhook.event else {
            panic!("{:?}", webhook.event);
        };
        assert_eq!(type_name, "UPDATE_APP");
        assert_eq!(body["extra"], json!(1));
        assert_eq!(webhook.type_name(), "UPDATE_APP");
        assert_eq!(webhook.record_id(), None);
    }

    #[test]
    fn an_oversized_body_is_refused_before_parsing() {
        let body = vec![b' '; MAX_WEBHOOK_BYTES + 1];
        assert_eq!(
            parse(&body).unwrap_err(),
            WebhookError::TooLarge {
                size: MAX_WEBHOOK_BYTES + 1,
                limit: MAX_WEBHOOK_BYTES
            }
        );
        let small = fixture("webhook_add_record.json");
        assert!(matches!(
            parse_with_limit(&small, 100),
            Err(WebhookError::TooLarge { limit: 100, .. })
        ));
    }

    #[test]
    fn malformed_bodies_get_precise_errors() {
        let app = r#""app":{"id":"1","name":"a"}"#;
        for (body, expected) in [
            ("[]".to_owned(), WebhookError::NotAnObject),
            (
                format!(r#"{{"type":"ADD_RECORD",{app}}}"#),
                WebhookError::Missing("id"),
            ),
            (
                r#"{"id":"x","type":"ADD_RECORD"}"#.to_owned(),
                WebhookError::Missing("app"),
            ),
            (
                r#"{"id":"x","type":"ADD_RECORD","app":{"id":true}}"#.to_owned(),
                WebhookError::WrongType {
                    key: "app.id",
                    expected: "a string or number",
                },
            ),
            (
                format!(r#"{{"id":"x",{app}}}"#),
                WebhookError::Missing("type"),
            ),
            (
                format!(r#"{{"id":"x","type":"ADD_RECORD",{app}}}"#),
                WebhookError::Missing("record"),
            ),
            (
                format!(r#"{{"id":"x","type":"DELETE_RECORD",{app},"recordId":"7"}}"#),
                WebhookError::Missing("deletedBy"),
            ),
            (
                format!(
                    r#"{{"id":"x","type":"UPDATE_RECORD",{app},"record":{{"f":{{"value":1}}}}}}"#
                ),
                WebhookError::Record(RecordError::UntypedField { code: "f".into() }),
            ),
        ] {
            assert_eq!(parse(body.as_bytes()).unwrap_err(), expected, "{body}");
        }
        let not_json = parse(b"{\"id\": ").unwrap_err();
        assert!(
            matches!(&not_json, WebhookError::NotJson(m) if m.contains("line 1")),
            "{not_json:?}"
        );
    }

    /// A small deterministic generator, so a failure reproduces from its seed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn random_value(rng: &mut XorShift) -> Value {
        match rng.below(8) {
            0 => Value::Null,
            1 => json!(rng.next() & 1 == 0),
            2 => json!(rng.next() as i64),
            3 => json!(""),
            4 => json!("2026-13-45T99:00:00Z"),
            5 => json!([{"code": "x"}, 1, null]),
            6 => {
                json!({"type": "SUBTABLE", "value": [{"id": 1, "value": {"a": {"type": "NUMBER"}}}]})
            }
            _ => json!("\u{0}\u{ffff}"),
        }
    }

    /// Replaces one node, chosen at random along a random path, with a random value.
    fn mutate_tree(value: &mut Value, rng: &mut XorShift) {
        let stop = rng.below(4) == 0;
        match value {
            Value::Object(map) if !map.is_empty() && !stop => {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                if rng.below(6) == 0 {
                    map.remove(&key);
                } else {
                    mutate_tree(map.get_mut(&key).unwrap(), rng);
                }
            }
            Value::Array(items) if !items.is_empty() && !stop => {
                let index = rng.below(items.len());
                mutate_tree(&mut items[index], rng);
            }
            _ => *value = random_value(rng),
        }
    }

    #[test]
    fn random_mutations_of_webhooks_never_panic() {
        let mut rng = XorShift(0x5eed_2026_1224_0001);
        let names = [
            "webhook_update_status_japanese.json",
            "webhook_add_record_comment.json",
            "webhook_delete_record.json",
        ];
        let originals: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
        let mut parsed = 0;
        for round in 0..3000 {
            let original = &originals[round % originals.len()];
            let body = if round % 2 == 0 {
                // Byte-level: flips, cuts, duplications.
                let mut bytes = original.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(bytes.len());
                    match rng.below(3) {
                        0 => bytes[at] = rng.next() as u8,
                        1 => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, bytes[rng.below(bytes.len())]),
                    }
                }
                bytes
            } else {
                // Structural: valid JSON with a node replaced or removed.
                let mut tree: Value = serde_json::from_slice(original).unwrap();
                for _ in 0..=rng.below(3) {
                    mutate_tree(&mut tree, &mut rng);
                }
                serde_json::to_vec(&tree).unwrap()
            };
            if let Ok(webhook) = parse(&body) {
                parsed += 1;
                let _ = (webhook.status(), webhook.record_id(), webhook.revision());
                if let Some(record) = webhook.record() {
                    for (code, _) in record.iter() {
                        let _ = record.render(code, &chrono::Utc);
                    }
                }
            }
        }
        assert!(
            parsed > 100,
            "only {parsed} mutants parsed: the loop tests little"
        );
    }
}

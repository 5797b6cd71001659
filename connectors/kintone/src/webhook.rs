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

//! `/v1/messages`: accept, show, list and cancel SMS.

use std::{collections::BTreeMap, str::FromStr};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::KeyScope,
    body::JsonBody,
    problem::{quoted, ApiError, ErrorCode, Problem},
    AppState,
};
use crate::{
    domain::{ids::MessageId, segment::Encoding, source::Source, state::JobState},
    messaging::{Admitted, Content, Dedupe, Submission},
    store::{CancelOutcome, ListQuery, MessageRecord},
};

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    /// Recipient: national (090-1234-5678), full-width or +81 form.
    #[schema(max_length = 64, format = "phone")]
    pub to: String,
    /// The text; give either `body` or `template`.
    #[schema(min_length = 1)]
    pub body: Option<String>,
    /// A body with `{{name}}` fields from `vars`, `{% if %}` and the default/number/date filters.
    #[schema(min_length = 1)]
    pub template: Option<String>,
    /// Values for the template's merge fields (strings, numbers or booleans).
    #[schema(value_type = Option<Object>)]
    pub vars: Option<BTreeMap<String, serde_json::Value>>,
    /// Sender id: a number, a 0005 short code or an alphanumeric id; defaults to `delivery.default_from`.
    pub from: Option<String>,
    /// RFC 3339 time to send at, at most 366 days ahead; omitted or past means now.
    #[schema(format = DateTime)]
    pub send_at: Option<String>,
    /// Replace each http(s) URL in the text by a short link under `public_base_url` that counts
    /// clicks, before the text is measured; `[links] shorten` when absent.
    pub shorten_links: Option<bool>,
    /// RFC 3339 time the message's short links stop working (after `send_at`, at most 3660
    /// days ahead); `[links] expire_after_days` when absent.
    #[schema(format = DateTime)]
    pub links_expire_at: Option<String>,
    /// RFC 3339 time after which the message is not worth sending (after `send_at`, at most 72
    /// hours after it is due): never handed over later, and the provider is told the time left
    /// (SMPP `validity_period`, Twilio `ValidityPeriod`) so the network drops it then too. A
    /// message that expires before it is sent ends `undelivered`. No expiry when absent.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Not advertising (a reminder, a notice): where `[opt_outs] exempt_transactional` is on,
    /// numbers that opted out of the sender still get it. Default false.
    #[serde(default)]
    pub transactional: bool,
    /// Any JSON object, returned with the message.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The date (YYYY-MM-DD) your CRM last confirmed the number; enables the cancellation-history check.
    #[schema(format = Date)]
    pub number_confirmed_on: Option<String>,
}

/// The answer to an accepted message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Message id.
    pub id: String,
    /// `queued` or `scheduled`.
    pub status: JobState,
    /// Recipient, masked.
    pub to: String,
    /// Parts over the air (billing counts these).
    pub segments: usize,
    /// `gsm7` or `ucs2`.
    #[schema(value_type = String)]
    pub encoding: Encoding,
    /// Characters in the body.
    pub characters: usize,
    /// When it is scheduled for, if it is.
    pub send_at: Option<DateTime<Utc>>,
    /// When it stops being worth sending, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
}

/// What happened to a message: a state it entered, or its first click.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Accepted, waiting for a worker.
    Queued,
    /// Accepted, waiting for its `send_at`.
    Scheduled,
    /// Handed to a worker.
    Sending,
    /// The provider accepted it.
    Sent,
    /// The handset received it.
    Delivered,
    /// The provider could not reach the handset.
    Undelivered,
    /// The provider refused it, or every attempt failed.
    Failed,
    /// Canceled before it was sent.
    Canceled,
    /// Refused by a rule.
    Rejected,
    /// A person first clicked one of its short links (previews and scanners do not count).
    Clicked,
}

impl From<JobState> for EventKind {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Queued => EventKind::Queued,
            JobState::Scheduled => EventKind::Scheduled,
            JobState::Sending => EventKind::Sending,
            JobState::Sent => EventKind::Sent,
            JobState::Delivered => EventKind::Delivered,
            JobState::Undelivered => EventKind::Undelivered,
            JobState::Failed => EventKind::Failed,
            JobState::Canceled => EventKind::Canceled,
            JobState::Rejected => EventKind::Rejected,
        }
    }
}

/// One thing that happened to the message.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The state entered, or `clicked`.
    pub status: EventKind,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, when there is more to say.
    pub detail: Option<String>,
}

/// A reply from the handset.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyView {
    /// The handset, masked.
    pub from: String,
    /// What it said.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// A message and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// Message id.
    pub id: String,
    /// Current state.
    pub status: JobState,
    /// Why it is in that state, when known.
    pub status_detail: Option<String>,
    /// Recipient, masked; null for a CRM record rejected before it had a readable number.
    pub to: Option<String>,
    /// Sender id.
    pub from: String,
    /// Parts over the air.
    pub segments: i64,
    /// `gsm7` or `ucs2`.
    #[schema(value_type = String)]
    pub encoding: Encoding,
    /// Characters in the body.
    pub characters: i64,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it is scheduled for.
    pub send_at: Option<DateTime<Utc>>,
    /// After this it is not sent (marked `undelivered`), and carriers drop it; absent when it
    /// has no expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// `api`, or the CRM source it came from.
    pub source: String,
    /// Client metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// State changes, oldest first.
    pub events: Vec<EventView>,
    /// Clicks by people on its short links (link previews and scanners are not counted).
    pub clicks: u64,
    /// When a person first clicked one of its short links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_clicked_at: Option<DateTime<Utc>>,
    /// When a person last clicked one of its short links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_clicked_at: Option<DateTime<Utc>>,
    /// Replies from the handset, oldest first.
    pub replies: Vec<ReplyView>,
    /// For a CRM record's message: why the CRM refused for good to take its status or reply
    /// (a deleted record, a validation rule); absent while write-back succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writeback_error: Option<String>,
    /// For a CRM record's message: when its latest status, reply or click last reached the
    /// record; absent until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_back_at: Option<DateTime<Utc>>,
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Newest first.
    pub data: Vec<MessageView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only messages in this state.
    #[param(value_type = Option<JobState>)]
    pub status: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,18}$")]
    pub cursor: Option<String>,
}

impl MessageView {
    /// The API's view of a stored message.
    pub fn from_record(m: MessageRecord) -> Self {
        Self {
            id: m.id.to_string(),
            status: m.status,
            status_detail: m.status_detail,
            to: m.to.as_ref().map(|to| to.masked()),
            from: m.from,
            segments: m.segments,
            encoding: m.encoding,
            characters: m.characters,
            created_at: m.created_at,
            send_at: m.send_at,
            expires_at: m.expires_at,
            source: m.source.name().to_string(),
            metadata: m.metadata,
            writeback_error: m.writeback_error,
            written_back_at: m.written_back_at,
            events: events(m.events, m.clicks.first_at),
            clicks: m.clicks.count.max(0) as u64,
            first_clicked_at: m.clicks.first_at,
            last_clicked_at: m.clicks.last_at,
            replies: m
                .replies
                .into_iter()
                .map(|r| ReplyView {
                    from: r.from.masked(),
                    body: r.body,
                    at: r.at,
                })
                .collect(),
        }
    }
}

/// The state changes, with the first click in its place in time.
fn events(
    changes: Vec<crate::store::EventRecord>,
    first_click: Option<DateTime<Utc>>,
) -> Vec<EventView> {
    let mut events: Vec<EventView> = changes
        .into_iter()
        .map(|e| EventView {
            status: e.status.into(),
            at: e.at,
            detail: e.detail,
        })
        .collect();
    // Lists carry no state changes, so no click event either.
    if let Some(at) = first_click.filter(|_| !events.is_empty()) {
        let position = events.partition_point(|e| e.at <= at);
        events.insert(
            position,
            EventView {
                status: EventKind::Clicked,
                at,
                detail: Some("first click on a short link".into()),
            },
        );
    }
    events
}

/// 422 `invalid_request` naming `field`.
pub(super) fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
    ApiError::unprocessable(ErrorCode::InvalidRequest, field, detail)
}

impl CreateMessage {
    /// The submission this request makes; only the request's own shape is judged here.
    fn into_submission(self, dedupe: Option<Dedupe>) -> Result<Submission, ApiError> {
        let content = match (self.body, self.template) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "template",
                    "give either `body` or `template`, not both",
                ))
            }
            (None, None) => return Err(invalid("body", "give `body` or `template`")),
            (Some(body), None) => {
                if self.vars.is_some() {
                    return Err(invalid("vars", "`vars` needs a `template`"));
                }
                Content::Body(body)
            }
            (None, Some(source)) => Content::Template {
                source,
                vars: self.vars.unwrap_or_default(),
                time_zone: chrono_tz::Asia::Tokyo,
            },
        };
        Ok(Submission {
            source: Source::Api,
            to: self.to,
            to_field: "to".into(),
            content,
            from: self.from,
            send_at: self.send_at,
            metadata: self.metadata,
            number_confirmed_on: self.number_confirmed_on,
            opted_out: None,
            dedupe,
            transactional: self.transactional,
            shorten_links: self.shorten_links,
            links_expire_at: self.links_expire_at,
            expires_at: self.expires_at,
        })
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .field("Idempotency-Key")
        })?;
    Ok(Some(key.to_string()))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Accept a message for delivery.
#[utoipa::path(
    post, path = "/v1/messages", operation_id = "createMessage", tag = "messages",
    request_body = CreateMessage,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$", description = "Replays with the same body return the original response for 48 h")),
    responses(
        (status = 202, description = "Stored durably; queued or scheduled", body = Accepted),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field a rule refuses (invalid_request, invalid_phone_number, number_type_not_allowed, country_not_allowed, number_blocked, message_too_long, missing_template_variable, idempotency_key_reused)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(scope): Extension<KeyScope>,
    headers: HeaderMap,
    JsonBody {
        value: request,
        bytes,
    }: JsonBody<CreateMessage>,
) -> Result<Response, ApiError> {
    let dedupe = idempotency_key(&headers)?.map(|key| Dedupe {
        scope: scope.0,
        key,
        request_hash: hex::encode(Sha256::digest(&bytes)),
    });
    let submission = request.into_submission(dedupe)?;
    let admitted = state
        .admission
        .submit(submission, |message| {
            let accepted = Accepted {
                id: message.id.to_string(),
                status: message.status,
                to: message.to.masked(),
                segments: message.segmentation.segments,
                encoding: message.segmentation.encoding,
                characters: message.segmentation.characters,
                send_at: message.send_at,
                expires_at: message.expires_at,
                created_at: message.created_at,
            };
            (
                StatusCode::ACCEPTED.as_u16(),
                serde_json::to_string(&accepted).expect("serialisable"),
            )
        })
        .await?;
    let (status, body) = match admitted {
        Admitted::Stored { response, .. } => response,
        Admitted::Replayed { status, response } => (status, response),
    };
    Ok(json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED),
        body,
    ))
}

fn message_id(id: &str) -> Result<MessageId, ApiError> {
    MessageId::from_str(id).map_err(|_| ApiError::not_found(format!("no message {}", quoted(id))))
}

async fn view(state: &AppState, id: &MessageId) -> Result<Json<MessageView>, ApiError> {
    let record = state
        .store
        .message(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no message {id}")))?;
    Ok(Json(MessageView::from_record(record)))
}

/// A message with its events and replies.
#[utoipa::path(
    get, path = "/v1/messages/{id}", operation_id = "getMessage", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, body = MessageView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    view(&state, &message_id(&id)?).await
}

/// Messages, newest first.
#[utoipa::path(
    get, path = "/v1/messages", operation_id = "listMessages", tag = "messages",
    params(ListParams),
    responses(
        (status = 200, body = MessagePage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let status = params
        .status
        .map(|s| {
            JobState::from_str(&s).map_err(|_| {
                invalid(
                    "status",
                    format!("unknown status {s:?}; use one of queued, scheduled, sending, sent, delivered, undelivered, failed, canceled, rejected"),
                )
            })
        })
        .transpose()?;
    let (limit, before) = super::paging::page(params.limit.as_deref(), params.cursor.as_deref())?;
    let records = state
        .store
        .messages(ListQuery {
            status,
            limit,
            before,
        })
        .await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|m| m.seq.to_string()))
        .flatten();
    Ok(Json(MessagePage {
        data: records.into_iter().map(MessageView::from_record).collect(),
        next_cursor,
    }))
}

/// Cancel a scheduled message.
#[utoipa::path(
    delete, path = "/v1/messages/{id}", operation_id = "cancelMessage", tag = "messages",
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "Canceled", body = MessageView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_cancelable: no longer scheduled", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id = message_id(&id)?;
    match state.store.cancel(&id, state.admission.clock.now()).await? {
        CancelOutcome::Canceled => {}
        CancelOutcome::NotFound => return Err(ApiError::not_found(format!("no message {id}"))),
        CancelOutcome::NotCancelable(status) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NotCancelable,
                format!("the message is {status}; only scheduled messages can be canceled"),
            ))
        }
    }
    view(&state, &id).await
}

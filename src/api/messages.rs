//! `/v1/messages`: accept, show, list and cancel SMS.

use std::{collections::BTreeMap, str::FromStr, time::Instant};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
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
    domain::{
        ids::MessageId,
        phone::{NumberKind, PhoneNumber, PolicyViolation, SenderId},
        segment::{Encoding, Segmentation},
        source::Source,
        state::JobState,
        template::{RenderOptions, Rules, Template, TemplateError},
        text,
    },
    store::{Acceptance, CancelOutcome, IdempotencyRecord, ListQuery, MessageRecord, NewMessage},
    telemetry,
};

/// Furthest ahead a message may be scheduled.
const MAX_SCHEDULE_DAYS: i64 = 366;
/// Largest `metadata` object, serialised.
const MAX_METADATA_BYTES: usize = 4096;

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
    /// Shorten links and track clicks (not available in this release: only `false` is accepted).
    pub shorten_links: Option<bool>,
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
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
}

/// One state change.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The state entered.
    pub status: JobState,
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
    /// Recipient, masked.
    pub to: String,
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
    /// `api`, or the CRM source it came from.
    pub source: String,
    /// Client metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// State changes, oldest first.
    pub events: Vec<EventView>,
    /// Clicks on its short links.
    pub clicks: u64,
    /// Replies from the handset, oldest first.
    pub replies: Vec<ReplyView>,
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
            to: m.to.masked(),
            from: m.from,
            segments: m.segments,
            encoding: m.encoding,
            characters: m.characters,
            created_at: m.created_at,
            send_at: m.send_at,
            source: m.source.name().to_string(),
            metadata: m.metadata,
            events: m
                .events
                .into_iter()
                .map(|e| EventView {
                    status: e.status,
                    at: e.at,
                    detail: e.detail,
                })
                .collect(),
            clicks: 0,
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

/// Refuse a number that may have been cancelled or reassigned since the CRM confirmed it.
pub(super) async fn check_history(
    state: &AppState,
    to: &PhoneNumber,
    confirmed_on: Option<&str>,
) -> Result<(), ApiError> {
    let Some(text) = confirmed_on else {
        return Ok(());
    };
    let since = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        invalid(
            "number_confirmed_on",
            "`number_confirmed_on` must be a date such as 2026-11-01",
        )
    })?;
    match state.history.may_have_changed(to, since).await {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => Err(ApiError::unprocessable(
            ErrorCode::NumberBlocked,
            "to",
            format!("not sent: {reason}"),
        )),
        Err(e) if state.config.numbers.history.on_error == "allow" => {
            tracing::warn!(error = %e, "number history unavailable; sending as configured");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "number history unavailable; refusing as configured");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the cancellation-history check could not answer; nothing was sent, retry later",
            )
            .field("number_confirmed_on"))
        }
    }
}

/// Parse any valid phone number, or say that `field` is not one.
pub(super) fn phone_number(input: &str, field: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(input).map_err(|_| {
        ApiError::unprocessable(
            ErrorCode::InvalidPhoneNumber,
            field,
            format!("`{field}` is not a phone number"),
        )
    })
}

/// Parse and check a recipient against the number policy.
pub fn recipient(
    input: &str,
    field: &str,
    policy: &crate::domain::phone::NumberPolicy,
) -> Result<PhoneNumber, ApiError> {
    let number = phone_number(input, field)?;
    policy.check(&number).map_err(|v| match v {
        PolicyViolation::CountryNotAllowed(cc) => ApiError::unprocessable(
            ErrorCode::CountryNotAllowed,
            field,
            format!("`{field}` is a +{cc} number; this service sends only to allowed countries"),
        ),
        PolicyViolation::KindNotAllowed(kind) => ApiError::unprocessable(
            ErrorCode::NumberTypeNotAllowed,
            field,
            format!(
                "`{field}` is a number of type {kind}; {}",
                if kind == NumberKind::FixedLine {
                    "landlines cannot receive SMS"
                } else {
                    "only mobile numbers are allowed"
                }
            ),
        ),
    })?;
    Ok(number)
}

/// Refuse control characters (line breaks and tabs aside) in text that becomes a message.
pub(super) fn plain_text(text: Option<&str>, field: &str) -> Result<(), ApiError> {
    match text.and_then(text::forbidden_character) {
        None => Ok(()),
        Some((position, c)) => Err(invalid(
            field,
            format!(
                "`{field}` contains a control character ({}); only text, line breaks and tabs may be sent",
                text::describe(position, c)
            ),
        )),
    }
}

/// 422 `invalid_request` naming `field`.
pub(super) fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
    ApiError::unprocessable(ErrorCode::InvalidRequest, field, detail)
}

/// The problem for a template that was refused or did not render: a text over
/// `delivery.max_characters` is `message_too_long` on `body`, like a long `body`; a printed field
/// without a value is `missing_template_variable` on `vars.NAME`; the rest are the template's own.
fn template_problem(e: TemplateError) -> ApiError {
    match &e {
        TemplateError::MissingVariable(name) => ApiError::unprocessable(
            ErrorCode::MissingTemplateVariable,
            &format!("vars.{name}"),
            e.to_string(),
        ),
        TemplateError::OutputTooLong(max) => ApiError::unprocessable(
            ErrorCode::MessageTooLong,
            "body",
            format!("the body has more than {max} characters; at most {max} are allowed"),
        ),
        TemplateError::Syntax(_)
        | TemplateError::NotAllowed(_)
        | TemplateError::TooLong
        | TemplateError::MissingRequired(_)
        | TemplateError::Render(_) => invalid("template", e.to_string()),
    }
}

/// Turn a request into a message to store, or say precisely what is wrong with it.
fn validate(
    req: CreateMessage,
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<NewMessage, ApiError> {
    let to = recipient(&req.to, "to", &state.message_policy)?;
    plain_text(req.body.as_deref(), "body")?;
    plain_text(req.template.as_deref(), "template")?;
    for (name, value) in req.vars.iter().flatten() {
        plain_text(value.as_str(), &format!("vars.{name}"))?;
    }
    let body = match (req.body, req.template) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "template",
                "give either `body` or `template`, not both",
            ))
        }
        (None, None) => return Err(invalid("body", "give `body` or `template`")),
        (Some(body), None) => {
            if req.vars.is_some() {
                return Err(invalid("vars", "`vars` needs a `template`"));
            }
            body
        }
        (None, Some(source)) => {
            // Checked before the vars: a refused template is refused whatever they hold.
            let template =
                Template::compile(&source, &Rules::default()).map_err(template_problem)?;
            let mut vars = BTreeMap::new();
            for (name, value) in req.vars.unwrap_or_default() {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(invalid(
                            &format!("vars.{name}"),
                            "template variables must be strings, numbers or booleans",
                        ))
                    }
                };
                vars.insert(name, text);
            }
            let options = RenderOptions::japan(state.config.delivery.max_characters);
            template.render(&vars, &options).map_err(template_problem)?
        }
    };
    if body.trim().is_empty() {
        return Err(invalid("body", "the message body is empty"));
    }
    let segmentation = Segmentation::of(&body);
    let max = state.config.delivery.max_characters;
    if segmentation.characters > max {
        return Err(ApiError::unprocessable(
            ErrorCode::MessageTooLong,
            "body",
            format!(
                "the body has {} characters; at most {max} are allowed",
                segmentation.characters
            ),
        ));
    }
    let from = match req.from {
        Some(from) => SenderId::parse(&from).map_err(|_| {
            invalid(
                "from",
                "`from` must be a phone number, a 0005 short code or 1-11 letters and digits",
            )
        })?,
        None => state.default_from.clone(),
    };
    let send_at = match req.send_at {
        None => None,
        Some(text) => {
            let at = DateTime::parse_from_rfc3339(&text)
                .map_err(|_| {
                    invalid(
                        "send_at",
                        "`send_at` must be an RFC 3339 time such as 2026-12-01T09:00:00+09:00",
                    )
                })?
                .with_timezone(&Utc);
            // The store keeps milliseconds; echo what is kept.
            let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
            if at > now + Duration::days(MAX_SCHEDULE_DAYS) {
                return Err(invalid(
                    "send_at",
                    format!("`send_at` may be at most {MAX_SCHEDULE_DAYS} days ahead"),
                ));
            }
            (at > now).then_some(at)
        }
    };
    if req.shorten_links == Some(true) {
        return Err(invalid(
            "shorten_links",
            "link shortening is not available in this release",
        ));
    }
    if let Some(metadata) = &req.metadata {
        if !metadata.is_object() {
            return Err(invalid("metadata", "`metadata` must be a JSON object"));
        }
        if metadata.to_string().len() > MAX_METADATA_BYTES {
            return Err(invalid(
                "metadata",
                format!("`metadata` may be at most {MAX_METADATA_BYTES} bytes"),
            ));
        }
    }
    Ok(NewMessage {
        id: MessageId::new(),
        to,
        from: from.as_str().to_string(),
        body,
        segmentation,
        status: if send_at.is_some() {
            JobState::Scheduled
        } else {
            JobState::Queued
        },
        source: Source::Api,
        metadata: req.metadata,
        created_at: now,
        send_at,
    })
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
    let started = Instant::now();
    let key = idempotency_key(&headers)?;
    let confirmed_on = request.number_confirmed_on.clone();
    let message = validate(request, &state, Utc::now())?;
    check_history(&state, &message.to, confirmed_on.as_deref()).await?;
    let accepted = Accepted {
        id: message.id.to_string(),
        status: message.status,
        to: message.to.masked(),
        segments: message.segmentation.segments,
        encoding: message.segmentation.encoding,
        characters: message.segmentation.characters,
        send_at: message.send_at,
        created_at: message.created_at,
    };
    let body = serde_json::to_string(&accepted).expect("serialisable");
    let idempotency = key.map(|key| IdempotencyRecord {
        scope: scope.0,
        key,
        request_hash: hex::encode(Sha256::digest(&bytes)),
        status: StatusCode::ACCEPTED.as_u16(),
        response: body.clone(),
    });
    let span = tracing::info_span!("accept", message_id = %message.id);
    let _guard = span.enter();
    match state
        .store
        .accept(message, idempotency, state.hygiene)
        .await?
    {
        Acceptance::Stored => {
            telemetry::accepted(started.elapsed().as_secs_f64());
            state.dispatch_wake.notify_one();
            Ok(json_response(StatusCode::ACCEPTED, body))
        }
        Acceptance::Replayed { status, response } => Ok(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED),
            response,
        )),
        Acceptance::Blocked(reason) => Err(ApiError::unprocessable(
            ErrorCode::NumberBlocked,
            "to",
            format!("not sent: {reason}"),
        )),
        Acceptance::KeyReused => Err(ApiError::unprocessable(
            ErrorCode::IdempotencyKeyReused,
            "Idempotency-Key",
            "this Idempotency-Key was used with a different request body",
        )),
    }
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
    let limit = match params.limit {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| invalid("limit", "`limit` must be a number from 1 to 100"))?,
    };
    let before = params
        .cursor
        .map(|c| {
            c.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
                invalid(
                    "cursor",
                    "`cursor` must be a `next_cursor` from a previous page",
                )
            })
        })
        .transpose()?;
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
    match state.store.cancel(&id, Utc::now()).await? {
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

//! Salesforce calling in: Outbound Messages (SOAP) and Flow HTTP callouts (JSON), each record
//! mapped by its sObject type and submitted through the one admission path.
//!
//! - `POST /v1/inbound/salesforce/{name}/outbound-message/{inbound_token}` answers the `Ack`
//!   only once every notification is committed (or was, on a redelivery: notifications are
//!   deduplicated on their `Id` for as long as idempotency keys are kept, 48 h). A refused
//!   record is committed as a `rejected` message and acknowledged; only a store that cannot
//!   answer makes Salesforce retry.
//! - `POST /v1/inbound/salesforce/{name}/flow/{inbound_token}` answers one result per record,
//!   in order. It does not deduplicate: Salesforce does not retry a callout by itself, and a
//!   Flow may rightly message the same record twice with the same fields (a reminder).

use std::{borrow::Cow, collections::BTreeMap};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRequest, Path, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures_util::future::join_all;
use serde_json::{json, Value};
use tsunagi_salesforce::{
    flow::{FlowRecord, FlowRequest, FlowResponse, FlowResult},
    outbound::{self, Notification, OutboundError},
    RecordId, RefusedNotification,
};
use utoipa::{
    openapi::{RefOr, Schema},
    PartialSchema, ToSchema,
};

use super::{authenticate, body, outcome_label, InboundError, InboundPath};
use crate::{
    api::{
        body::JsonBody,
        problem::{ApiError, Problem},
        AppState,
    },
    capture::{capture, Payload},
    config::{is_api_name, SalesforceConfig},
    domain::source::Source,
    mapping::Record,
    messaging::{AdmitError, Dedupe, RecordOutcome, Refusal},
    telemetry,
};

/// Largest Outbound Message: 100 notifications of a wide record stay far below it.
pub const OUTBOUND_MESSAGE_LIMIT: usize = outbound::DEFAULT_MAX_BYTES;
/// Largest Flow call: 200 records with their fields and templates.
pub const FLOW_LIMIT: usize = 1024 * 1024;

/// Every redelivery of a notification carries the record as it was when the notification was
/// made, so its `Id` alone names the request: the hash is the same for all.
const NOTIFICATION_HASH: &str = "salesforce-notification";

/// Why an authenticated Outbound Message was not acknowledged: answered as a SOAP fault, which
/// Salesforce counts as a failed delivery.
#[derive(Debug, thiserror::Error)]
pub enum SoapFault {
    /// The body is not an Outbound Message envelope.
    #[error("not an Outbound Message: {0}")]
    Malformed(OutboundError),
    /// The envelope names another org than the connection's.
    #[error("this endpoint takes Outbound Messages from one org only; this one is from {0}")]
    OtherOrg(String),
    /// The store could not take the notifications; those taken are kept and a redelivery
    /// finds them.
    #[error("the notifications could not be stored; Salesforce will deliver them again")]
    Unavailable(#[source] AdmitError),
}

/// The connection as sources name it: `salesforce:NAME`.
pub(super) fn connection_label(connection: &SalesforceConfig) -> String {
    format!("salesforce:{}", connection.name)
}

/// The record a message keeps for write-back: `Object/18-character id`.
fn record_key(object_type: &str, id: &RecordId) -> String {
    format!("{object_type}/{id}")
}

/// A record whose sObject type the connection has no mapping for.
fn unmapped(object_type: &str, connection: &SalesforceConfig) -> Refusal {
    Refusal::invalid(
        "sobject",
        format!(
            "no [[salesforce.mappings]] entry for sObject {object_type:?} on connection {:?}",
            connection.name
        ),
    )
}

/// Map one record and submit it; an unmapped sObject type is kept as a refusal.
async fn take(
    state: &AppState,
    connection: &SalesforceConfig,
    object_type: &str,
    record: Record<'_>,
) -> Result<RecordOutcome, AdmitError> {
    match connection.mapping(object_type) {
        Some(mapping) => {
            let submission = mapping.submission(record);
            state.admission.submit_record(submission).await
        }
        None => {
            let refusal = unmapped(object_type, connection);
            state
                .admission
                .reject_record(record.source, record.dedupe, refusal)
                .await
        }
    }
}

/// One notification, deduplicated on its `Id` within the connection.
async fn take_notification(
    state: &AppState,
    connection: &SalesforceConfig,
    label: &str,
    notification: &Notification,
) -> Result<RecordOutcome, AdmitError> {
    let sobject = &notification.sobject;
    let mut fields: BTreeMap<String, Value> = sobject
        .fields
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                value.clone().map_or(Value::Null, Value::String),
            )
        })
        .collect();
    // `sf:Id` is always sent; templates may print it like any field.
    fields.insert("Id".into(), Value::String(sobject.id.to_string()));
    let record = Record {
        source: Source::Crm {
            connection: label.to_string(),
            record: record_key(&sobject.object_type, &sobject.id),
        },
        fields: &fields,
        time_zone: connection.zone(),
        phone: None,
        template: None,
        dedupe: Some(Dedupe {
            scope: label.to_string(),
            key: notification.id.clone(),
            request_hash: NOTIFICATION_HASH.into(),
        }),
    };
    take(state, connection, &sobject.object_type, record).await
}

/// Whether a `Content-Type` is XML, as SOAP 1.1 is sent (`text/xml; charset=utf-8`).
fn is_xml(value: Option<&header::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|essence| essence == "text/xml" || essence == "application/xml")
}

/// Take an Outbound Message: authenticate, parse, check the org, then commit every
/// notification before answering the `Ack`.
#[utoipa::path(
    post, path = "/v1/inbound/salesforce/{name}/outbound-message/{inbound_token}",
    operation_id = "salesforceOutboundMessage", tag = "inbound",
    params(InboundPath),
    request_body(content = String, content_type = "text/xml", description = "A SOAP 1.1 Outbound Message envelope (`notifications`), at most 4 MiB"),
    responses(
        (status = 200, description = "`notificationsResponse` with `Ack` true: every notification is stored (sent, or rejected with its reason)", body = String, content_type = "text/xml",
            headers(("tsunagi-results" = String, description = "What each notification became: `NOTIFICATION_ID=MESSAGE_ID STATUS[ CODE]`, comma separated (`-` and `duplicate` for one taken before)"))),
        (status = 400, description = "SOAP fault (Client): the body is not an Outbound Message", body = String, content_type = "text/xml"),
        (status = 401, description = "unauthorized: the inbound token is wrong; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "SOAP fault (Client): the message comes from another org; not acknowledged, nothing stored", body = String, content_type = "text/xml"),
        (status = 404, description = "not_found: no connection of that name; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: over 4 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type: not sent as text/xml", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "SOAP fault (Server): the store cannot answer; Salesforce delivers again and nothing is stored twice", body = String, content_type = "text/xml"),
    )
)]
pub async fn outbound_message(
    State(state): State<AppState>,
    Path(path): Path<InboundPath>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Response {
    let connection = match authenticate(&state.config.salesforce, &path) {
        Ok(connection) => connection,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !is_xml(headers.get(header::CONTENT_TYPE)) {
        let e = InboundError::UnsupportedMediaType {
            expected: "SOAP, `Content-Type: text/xml`",
        };
        return ApiError::from(e).into_response();
    }
    let bytes = match body(read, OUTBOUND_MESSAGE_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) => return ApiError::from(e).into_response(),
    };
    capture(
        &state.config.capture,
        Payload::OutboundMessage(&path.name),
        &bytes,
    )
    .await;
    match take_message(&state, connection, &bytes).await {
        Ok(results) => {
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                outbound::ACK,
            )
                .into_response();
            if let Ok(value) = header::HeaderValue::from_str(&results) {
                response.headers_mut().insert(RESULTS_HEADER, value);
            }
            response
        }
        Err(fault) => fault.into_response(),
    }
}

/// Beside the SOAP `Ack` (which names no message, and Salesforce reads nothing else), what each
/// notification became, for `tsunagi replay` and anyone testing by hand:
/// `NOTIFICATION_ID=MESSAGE_ID STATUS[ CODE]`, comma separated.
pub const RESULTS_HEADER: &str = "tsunagi-results";

/// One notification's entry in `RESULTS_HEADER`.
fn result_entry(notification: &str, outcome: &RecordOutcome) -> String {
    match outcome {
        RecordOutcome::Accepted { id, status } => format!("{notification}={id} {status}"),
        RecordOutcome::Rejected { id, refusal } => {
            format!("{notification}={id} rejected {}", refusal.code())
        }
        RecordOutcome::Replayed => format!("{notification}=- duplicate"),
    }
}

async fn take_message(
    state: &AppState,
    connection: &SalesforceConfig,
    bytes: &[u8],
) -> Result<String, SoapFault> {
    let message = outbound::parse(bytes).map_err(SoapFault::Malformed)?;
    if !message.is_from(&connection.org_id()) {
        return Err(SoapFault::OtherOrg(message.organization_id.to_string()));
    }
    let label = connection_label(connection);
    // Submitted together, so the notifications share group commits; acknowledged only if all
    // were taken (those taken replay on the redelivery).
    let outcomes = join_all(
        message
            .notifications
            .iter()
            .map(|n| take_notification(state, connection, &label, n)),
    )
    .await;
    let mut results = Vec::with_capacity(outcomes.len());
    for (notification, outcome) in message.notifications.iter().zip(outcomes) {
        telemetry::inbound_record(&label, outcome_label(outcome.as_ref()));
        let outcome = outcome.map_err(SoapFault::Unavailable)?;
        results.push(result_entry(&notification.id, &outcome));
    }
    for refused in &message.refused {
        results.push(take_refused(state, &label, refused).await?);
    }
    tracing::info!(
        connection = %label,
        notifications = message.notifications.len(),
        refused = message.refused.len(),
        "outbound message taken"
    );
    Ok(results.join(", "))
}

/// A notification that could not be read: kept as a `rejected` message with the reason (and
/// written back as such) when its id and record are known, else counted and logged; either way
/// it no longer holds the message's other notifications.
async fn take_refused(
    state: &AppState,
    label: &str,
    refused: &RefusedNotification,
) -> Result<String, SoapFault> {
    metrics::counter!("tsunagi_salesforce_notifications_refused_total", "connection" => label.to_string())
        .increment(1);
    let reason = format!("the notification could not be read: {}", refused.reason);
    let known = (&refused.id, &refused.object_type, &refused.record_id);
    let (Some(id), Some(object_type), Some(record_id)) = known else {
        tracing::warn!(connection = %label, position = refused.position, notification = ?refused.id, %reason, "unreadable notification refused");
        telemetry::inbound_record(label, "refused");
        let name = refused
            .id
            .clone()
            .unwrap_or_else(|| format!("#{}", refused.position));
        return Ok(format!("{name}=- refused"));
    };
    let source = Source::Crm {
        connection: label.to_string(),
        record: record_key(object_type, record_id),
    };
    let dedupe = Dedupe {
        scope: label.to_string(),
        key: id.clone(),
        request_hash: NOTIFICATION_HASH.into(),
    };
    let outcome = state
        .admission
        .reject_record(
            source,
            Some(dedupe),
            Refusal::invalid("notification", reason),
        )
        .await;
    telemetry::inbound_record(label, outcome_label(outcome.as_ref()));
    Ok(result_entry(id, &outcome.map_err(SoapFault::Unavailable)?))
}

/// The result for one Flow record. A record whose id or sObject name is malformed is refused
/// alone and not stored: there is no record to write back to. Only a store that stopped
/// answering is an error.
pub(super) async fn take_flow_record(
    state: &AppState,
    connection: &SalesforceConfig,
    label: &str,
    index: usize,
    record: &FlowRecord,
) -> Result<FlowResult, AdmitError> {
    let malformed = |field: &str, why: String| {
        telemetry::inbound_record(label, "rejected");
        let message = format!("records[{index}].{field} {why}");
        Ok(FlowResult::rejected(&record.id, "invalid_request", message))
    };
    let id = match record.record_id() {
        Ok(id) => id,
        Err(e) => return malformed("id", format!("is not a Salesforce id: {e}")),
    };
    if !is_api_name(&record.sobject) {
        return malformed("sobject", "is not an sObject API name".into());
    }
    let mapped = Record {
        source: Source::Crm {
            connection: label.to_string(),
            record: record_key(&record.sobject, &id),
        },
        fields: &record.fields,
        time_zone: connection.zone(),
        phone: record.phone.as_deref(),
        template: record.template.as_deref(),
        dedupe: None,
    };
    let outcome = take(state, connection, &record.sobject, mapped).await;
    telemetry::inbound_record(label, outcome_label(outcome.as_ref()));
    Ok(flow_result(&record.id, outcome?))
}

/// What a record became, as the Flow reads it.
fn flow_result(id: &str, outcome: RecordOutcome) -> FlowResult {
    match outcome {
        RecordOutcome::Accepted {
            id: message,
            status,
        } => FlowResult::accepted(id, message.as_str(), status.as_str()),
        RecordOutcome::Rejected {
            id: message,
            refusal,
        } => FlowResult {
            message_id: Some(message.to_string()),
            ..FlowResult::rejected(id, refusal.code(), refusal.to_string())
        },
        RecordOutcome::Replayed => FlowResult {
            status: "replayed".into(),
            ..FlowResult::rejected(id, "replayed", "this record was taken before")
        },
    }
}

/// A record not taken because the store could not answer: the Flow may send it again.
fn not_taken(id: &str) -> FlowResult {
    FlowResult {
        status: "unavailable".into(),
        ..FlowResult::rejected(
            id,
            "unavailable",
            "the store could not take this record; nothing was stored for it, send it again",
        )
    }
}

/// Take a Flow call: one result per record, in order.
#[utoipa::path(
    post, path = "/v1/inbound/salesforce/{name}/flow/{inbound_token}",
    operation_id = "salesforceFlow", tag = "inbound",
    params(InboundPath),
    request_body(content = FlowCall, description = "Up to 200 records, at most 1 MiB"),
    responses(
        (status = 202, description = "One result per record, in order: `queued` with its `message_id`, `rejected` with the stored message and the refusal's `code` and `message`, or `unavailable` (not stored, send it again) when the store could not take it", body = FlowResults),
        (status = 401, description = "unauthorized: the inbound token is wrong; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no connection of that name; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: no records or more than 200 (`field` = `records`), or an ill-typed field; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the store could not take any record; nothing stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn flow(
    State(state): State<AppState>,
    Path(path): Path<InboundPath>,
    request: Request,
) -> Result<(StatusCode, Json<FlowResponse>), ApiError> {
    let connection = authenticate(&state.config.salesforce, &path)?;
    let JsonBody { value: call, bytes } =
        JsonBody::<FlowRequest>::from_request(request, &()).await?;
    capture(&state.config.capture, Payload::Flow(&path.name), &bytes).await;
    call.check_bounds()
        .map_err(|e| InboundError::Records(e.to_string()))?;
    let label = connection_label(connection);
    // Submitted together, so the records share group commits; results stay in request order.
    let outcomes = join_all(
        call.records
            .iter()
            .enumerate()
            .map(|(index, record)| take_flow_record(&state, connection, &label, index, record)),
    )
    .await;
    // When no record was taken, nothing was stored and the whole call may be sent again.
    let any_taken = outcomes.iter().any(Result::is_ok);
    let mut results = Vec::with_capacity(outcomes.len());
    for (outcome, record) in outcomes.into_iter().zip(&call.records) {
        match outcome {
            Ok(result) => results.push(result),
            Err(e) if !any_taken => return Err(InboundError::Unavailable(e).into()),
            Err(e) => {
                tracing::error!(error = %e, connection = %label, "a Flow record was not taken");
                results.push(not_taken(&record.id));
            }
        }
    }
    Ok((StatusCode::ACCEPTED, Json(FlowResponse { results })))
}

/// The Flow call's body in the OpenAPI document (the connector crate's `FlowRequest`).
pub struct FlowCall;

impl PartialSchema for FlowCall {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "object",
            "required": ["records"],
            "properties": {
                "records": {
                    "type": "array", "minItems": 1, "maxItems": 200,
                    "items": {
                        "type": "object",
                        "required": ["id", "sobject"],
                        "properties": {
                            "id": {"type": "string", "description": "The record's 15- or 18-character id"},
                            "sobject": {"type": "string", "description": "The record's sObject API name; picks the mapping"},
                            "phone": {"type": ["string", "null"], "description": "A number to use instead of the mapping's phone field"},
                            "fields": {"type": ["object", "null"], "description": "Field values by API name, the template's merge fields", "additionalProperties": true},
                            "template": {"type": ["string", "null"], "description": "A template to use instead of the mapping's"}
                        }
                    }
                }
            }
        }))
    }
}

impl ToSchema for FlowCall {
    fn name() -> Cow<'static, str> {
        "SalesforceFlowCall".into()
    }
}

/// The Flow call's answer in the OpenAPI document (the connector crate's `FlowResponse`).
pub struct FlowResults;

impl PartialSchema for FlowResults {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {"type": "array", "items": result_schema()}
            }
        }))
    }
}

/// One record's result (the connector crate's `FlowResult`), as a JSON Schema.
pub(super) fn result_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string", "description": "The record id as sent"},
            "message_id": {"type": "string", "description": "The stored message, queued or rejected"},
            "status": {"type": "string", "description": "queued, scheduled, rejected or unavailable"},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "The refusal's stable code"},
                    "message": {"type": "string", "description": "Why, for the admin"}
                }
            }
        }
    })
}

impl ToSchema for FlowResults {
    fn name() -> Cow<'static, str> {
        "SalesforceFlowResults".into()
    }
}

pub(super) fn schema(value: Value) -> RefOr<Schema> {
    RefOr::T(serde_json::from_value(value).expect("a valid schema"))
}

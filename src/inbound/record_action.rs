//! `POST /v1/salesforce/{name}/records`: one record sent from a Flow through External Services
//! (`sendSmsForRecord`), with the API key of the Named Credential. A Flow cannot build a map,
//! so the merge values come as name/value pairs; the record is then taken as a Flow callout's
//! record is, and its status is written back the same way.

use std::borrow::Cow;

use axum::{
    extract::{FromRequest, Path, Request, State},
    http::StatusCode,
    Json,
};
use serde_json::json;
use tsunagi_salesforce::{
    flow::{FlowRequest, FlowResult},
    RecordAction, RecordId,
};
use utoipa::{
    openapi::{RefOr, Schema},
    PartialSchema, ToSchema,
};

use super::{
    find,
    salesforce::{connection_label, result_schema, schema, take_flow_record},
    InboundError,
};
use crate::{
    api::{
        body::JsonBody,
        problem::{ApiError, ErrorCode, Problem},
        AppState,
    },
    capture::{capture, Payload},
    config::is_api_name,
};

/// Send an SMS for one Salesforce record, written back like an Outbound Message's.
#[utoipa::path(
    post, path = "/v1/salesforce/{name}/records",
    operation_id = "sendForRecord", tag = "messages",
    params(("name" = String, Path, description = "The Salesforce connection's `name`")),
    request_body(content = RecordActionCall, description = "One record, its merge values as name/value pairs, at most 64 KiB"),
    responses(
        (status = 202, description = "What the record became: `queued` or `scheduled` with its `message_id`, or `rejected` with the stored message and the refusal's `code` and `message`", body = RecordActionResult),
        (status = 404, description = "not_found: no Salesforce connection of that name; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: a malformed `record_id`, `sobject` or merge field name (`field` names it); nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the store could not take the record; nothing stored, send it again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn send_for_record(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<FlowResult>), ApiError> {
    let connection = find(&state.config.salesforce, &name)?;
    let JsonBody { value: action, .. } =
        JsonBody::<RecordAction>::from_request(request, &()).await?;
    let invalid =
        |field: &str, why: String| ApiError::unprocessable(ErrorCode::InvalidRequest, field, why);
    if let Err(e) = RecordId::parse(&action.record_id) {
        return Err(invalid("record_id", format!("is not a Salesforce id: {e}")));
    }
    if !is_api_name(&action.sobject) {
        return Err(invalid("sobject", "is not an sObject API name".into()));
    }
    let record = action
        .into_flow_record()
        .map_err(|e| invalid(&e.field(), e.to_string()))?;
    // Captured as the Flow callout it amounts to, so a replay goes through the Flow route.
    let as_flow = FlowRequest {
        records: vec![record],
    };
    if let Ok(bytes) = serde_json::to_vec(&as_flow) {
        capture(&state.config.capture, Payload::Flow(&name), &bytes).await;
    }
    let label = connection_label(connection);
    let result = take_flow_record(&state, connection, &label, 0, &as_flow.records[0])
        .await
        .map_err(InboundError::Unavailable)?;
    Ok((StatusCode::ACCEPTED, Json(result)))
}

/// The action's body in the OpenAPI document (the connector crate's `RecordAction`).
pub struct RecordActionCall;

impl PartialSchema for RecordActionCall {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "object",
            "required": ["record_id", "sobject"],
            "properties": {
                "record_id": {"type": "string", "description": "The record's 15- or 18-character id; its status is written back to it"},
                "sobject": {"type": "string", "description": "The record's sObject API name; picks the mapping"},
                "phone": {"type": ["string", "null"], "description": "A number to use instead of the mapping's phone field"},
                "merge_fields": {
                    "type": ["array", "null"], "maxItems": 100,
                    "description": "The template's merge values: each a field API name (or a relationship path such as Account.Name) and its value",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "description": "A field API name, or a relationship path such as Account.Name"},
                            "value": {"type": ["string", "null"], "description": "The value as text; empty for none"}
                        }
                    }
                },
                "template": {"type": ["string", "null"], "description": "A template to use instead of the mapping's"}
            }
        }))
    }
}

impl ToSchema for RecordActionCall {
    fn name() -> Cow<'static, str> {
        "SalesforceRecordAction".into()
    }
}

/// The action's answer in the OpenAPI document (the connector crate's `FlowResult`).
pub struct RecordActionResult;

impl PartialSchema for RecordActionResult {
    fn schema() -> RefOr<Schema> {
        schema(result_schema())
    }
}

impl ToSchema for RecordActionResult {
    fn name() -> Cow<'static, str> {
        "SalesforceRecordActionResult".into()
    }
}

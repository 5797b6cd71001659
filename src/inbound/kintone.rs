//! kintone calling in: `POST /v1/inbound/kintone/{name}/{inbound_token}` takes an app webhook
//! and answers 200 once its record is stored as a message (queued, or rejected with its
//! reason), or once it is known that the event sends nothing.
//!
//! kintone waits a few seconds for the answer and never delivers a webhook again, so the
//! answer comes as soon as the one commit is done. Only the connection's `trigger_events`
//! send, as `mapping::kintone_rules` says; a record is taken once per revision, so a
//! redelivered webhook, or a second webhook for the same revision (two webhooks pointing here),
//! stores nothing more.

use std::borrow::Cow;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    Json,
};
use serde_json::json;
use tsunagi_kintone::{
    webhook::{self, WebhookError},
    Webhook,
};
use utoipa::{
    openapi::{RefOr, Schema},
    PartialSchema, ToSchema,
};

pub use super::kintone_intake::{KintoneAnswer, KintoneRefusal, KintoneResult};
use super::{authenticate, body, kintone_intake::KintoneIntake, InboundError, InboundPath};
use crate::{
    api::{
        problem::{ApiError, Problem},
        AppState,
    },
    capture::{capture, Payload},
    config::KintoneConfig,
    mapping::kintone_rules::{not_sending, Arrival, Trigger},
};

/// Largest webhook body: kintone sends at most 1 MB, plus room for escaping.
pub const WEBHOOK_LIMIT: usize = webhook::MAX_WEBHOOK_BYTES;

/// Take an app webhook: authenticate, parse, check the app, then store its record as a
/// message before answering.
#[utoipa::path(
    post, path = "/v1/inbound/kintone/{name}/{inbound_token}",
    operation_id = "kintoneWebhook", tag = "inbound",
    params(InboundPath),
    request_body(content = KintoneWebhook, description = "An app webhook as kintone sends it, at most 1.5 MiB"),
    responses(
        (status = 200, description = "`queued` with its `message_id`; `rejected` (stored with the refusal's `code` and `message`, written back); `ignored` with the `reason` nothing is sent (an event not in `trigger_events`, another status, a deleted record or a comment); `duplicate` when this webhook or another for the same record revision was taken before", body = KintoneAnswer),
        (status = 400, description = "invalid_request: the body is not a kintone webhook; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized: the inbound token is wrong; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no connection of that name; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: over 1.5 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request (`field` = `app.id`): the webhook comes from another app than the connection's; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the store could not take the record; nothing stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn webhook(
    State(state): State<AppState>,
    Path(path): Path<InboundPath>,
    read: Result<Bytes, BytesRejection>,
) -> Result<Json<KintoneAnswer>, ApiError> {
    let connection = authenticate(&state.config.kintone, &path)?;
    let bytes = body(read, WEBHOOK_LIMIT)?;
    capture(
        &state.config.capture,
        Payload::KintoneWebhook(&path.name),
        &bytes,
    )
    .await;
    let webhook = webhook::parse(&bytes).map_err(|e| match e {
        WebhookError::TooLarge { limit, .. } => InboundError::TooLarge { limit },
        e => InboundError::Malformed(format!("not a kintone webhook: {e}")),
    })?;
    if webhook.app.id_number() != Some(connection.app) {
        return Err(InboundError::OtherSource {
            field: "app.id",
            message: format!(
                "this URL takes webhooks from app {} only; this one is from app {:?}",
                connection.app, webhook.app.id
            ),
        }
        .into());
    }
    // A busy app: its poller looks again at its interval, for webhooks kintone dropped.
    state
        .poll_nudges
        .nudge(&format!("kintone:{}", connection.name));
    let answer = take(&state, connection, &webhook).await?;
    super::kintone_notifications::record(&state, connection, &webhook, &answer).await;
    Ok(Json(answer))
}

/// Submit the webhook's record, unless its event sends nothing.
async fn take(
    state: &AppState,
    connection: &KintoneConfig,
    webhook: &Webhook,
) -> Result<KintoneAnswer, InboundError> {
    let arrival = Arrival::Webhook {
        event: webhook.type_name(),
        triggers: connection.triggers_on(webhook.type_name()),
    };
    if let Some(reason) = not_sending(Trigger::of(connection), arrival, webhook.record()) {
        return Ok(KintoneAnswer::because(KintoneResult::Ignored, reason));
    }
    let (Some(record), Some(id)) = (webhook.record(), webhook.record_id()) else {
        return Err(InboundError::Malformed(
            "the webhook's record has no $id".into(),
        ));
    };
    let request = format!("webhook/{}", webhook.id);
    KintoneIntake::of(state)
        .take(connection, record, id, webhook.revision(), &request)
        .await
        .map_err(InboundError::Unavailable)
}

/// The webhook body in the OpenAPI document (the connector crate parses it).
pub struct KintoneWebhook;

impl PartialSchema for KintoneWebhook {
    fn schema() -> RefOr<Schema> {
        let value = json!({
            "type": "object",
            "required": ["id", "type", "app"],
            "properties": {
                "id": {"type": "string", "description": "Unique per notification"},
                "type": {"type": "string", "description": "ADD_RECORD, UPDATE_RECORD, UPDATE_STATUS, DELETE_RECORD or ADD_RECORD_COMMENT"},
                "app": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "description": "Must be the connection's app"},
                        "name": {"type": "string"}
                    }
                },
                "record": {
                    "type": "object",
                    "description": "Fields by code, each `{type, value}` as `GET record.json` gives them; ADD_RECORD, UPDATE_RECORD and UPDATE_STATUS",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"type": "string", "description": "The field type; `value` follows it"}}
                    }
                },
                "recordId": {"type": "string", "description": "DELETE_RECORD and ADD_RECORD_COMMENT"},
                "recordTitle": {"type": "string"},
                "url": {"type": "string"}
            }
        });
        RefOr::T(serde_json::from_value::<Schema>(value).expect("a valid schema"))
    }
}

impl ToSchema for KintoneWebhook {
    fn name() -> Cow<'static, str> {
        "KintoneWebhook".into()
    }
}

//! kintone calling in: `POST /v1/inbound/kintone/{name}/{inbound_token}` takes an app webhook
//! and answers 200 once its record is stored as a message (queued, or rejected with its
//! reason), or once it is known that the event sends nothing.
//!
//! kintone waits a few seconds for the answer and never delivers a webhook again, so the
//! answer comes as soon as the one commit is done. Only the connection's `trigger_events`
//! send; UPDATE_STATUS only when the record's STATUS field, found by its type (its key is a
//! display name in the admin's language), holds `trigger_status`. A record is taken once per
//! revision: a redelivered webhook, or a second webhook for the same revision (two webhooks
//! pointing here), stores nothing more.

use std::borrow::Cow;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    Json,
};
use serde::Serialize;
use serde_json::json;
use tsunagi_kintone::{
    webhook::{self, WebhookError},
    Event, Webhook,
};
use utoipa::{
    openapi::{RefOr, Schema},
    PartialSchema, ToSchema,
};

use super::{authenticate, body, outcome_label, InboundError, InboundPath};
use crate::{
    api::{
        problem::{ApiError, Problem},
        AppState,
    },
    capture::{capture, Payload},
    config::KintoneConfig,
    domain::source::Source,
    mapping::Record,
    messaging::{AdmitError, Dedupe, RecordOutcome, Refusal},
    telemetry,
};

/// Largest webhook body: kintone sends at most 1 MB, plus room for escaping.
pub const WEBHOOK_LIMIT: usize = webhook::MAX_WEBHOOK_BYTES;

/// What became of a webhook.
#[derive(Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KintoneResult {
    /// Stored for delivery.
    Queued,
    /// Refused by a rule and stored as a `rejected` message, written back with its reason.
    Rejected,
    /// The event sends nothing (not a trigger, another status, no record).
    Ignored,
    /// This webhook, or another for the same record revision, was taken before.
    Duplicate,
}

/// Why a record was rejected.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct KintoneRefusal {
    /// The refusal's stable code, e.g. `number_type_not_allowed`.
    pub code: String,
    /// Why, naming the field.
    pub message: String,
}

/// The answer to a webhook (kintone shows it in the app's webhook log).
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct KintoneAnswer {
    /// What became of it.
    pub result: KintoneResult,
    /// The stored message, queued or rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Why nothing was sent, when ignored or a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the record was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<KintoneRefusal>,
}

impl KintoneAnswer {
    fn because(result: KintoneResult, reason: String) -> Self {
        Self {
            result,
            message_id: None,
            reason: Some(reason),
            error: None,
        }
    }
}

/// The dedupe key of a record's state: kintone gives every edit and status action a new
/// revision, so one revision sends at most once whichever webhook brings it.
pub fn revision_key(app: u64, record_id: u64, revision: u64) -> String {
    format!("{app}/{record_id}/{revision}")
}

/// Why a webhook of an event that can send does not.
fn not_sending(connection: &KintoneConfig, webhook: &Webhook) -> Option<String> {
    let event = webhook.type_name();
    if webhook.record().is_none() {
        return Some(format!(
            "{event} carries no record to message; nothing is sent"
        ));
    }
    if !connection.triggers_on(event) {
        return Some(format!(
            "{event} is not in this connection's trigger_events; nothing is sent"
        ));
    }
    if !matches!(webhook.event, Event::UpdateStatus(_)) {
        return None;
    }
    let wanted = connection.trigger_status.as_deref();
    match webhook.status() {
        None => Some(
            "the record has no STATUS field (process management is off); nothing is sent".into(),
        ),
        Some(status) if Some(status) != wanted => Some(format!(
            "the status {status:?} is not the trigger_status; nothing is sent"
        )),
        Some(_) => None,
    }
}

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
    if let Some(reason) = not_sending(connection, webhook) {
        return Ok(KintoneAnswer::because(KintoneResult::Ignored, reason));
    }
    let (Some(record), Some(id)) = (webhook.record(), webhook.record_id()) else {
        return Err(InboundError::Malformed(
            "the webhook's record has no $id".into(),
        ));
    };
    let request = format!("webhook/{}", webhook.id);
    take_record(state, connection, record, id, webhook.revision(), &request).await
}

/// Submit record `id` of the connection's app, as webhook or poll `request` brought it at
/// `revision`: once per revision, whichever brought it first.
pub(crate) async fn take_record(
    state: &AppState,
    connection: &KintoneConfig,
    record: &tsunagi_kintone::Record,
    id: u64,
    revision: Option<u64>,
    request: &str,
) -> Result<KintoneAnswer, InboundError> {
    let label = format!("kintone:{}", connection.name);
    let record_key = format!("{}/{id}", connection.app);
    let store = |e| InboundError::Unavailable(AdmitError::Store(e));
    // Our own write-back is made not to fire webhooks, but kintone has fired them for it: a
    // revision our write gave the record is an echo, and must not send again.
    if let Some(revision) = revision {
        let own = state
            .store
            .is_own_write(&label, &record_key, revision)
            .await
            .map_err(store)?;
        if own {
            return Ok(KintoneAnswer::because(
                KintoneResult::Ignored,
                "an echo of tsunagi's own write-back to this record".into(),
            ));
        }
    }
    // The record's revision now, so write-back can write at it without reading it first: kept
    // beside the submission, so both go in one group commit rather than one after the other.
    let seen = revision.map(|revision| vec![(record_key.clone(), revision)]);
    let remember = async {
        match seen {
            Some(seen) => {
                let now = state.events.now();
                state.store.remember_revisions(&label, seen, now).await
            }
            None => Ok(()),
        }
    };
    // Without a revision (never seen from kintone) the request itself is the key.
    let key = match revision {
        Some(revision) => revision_key(connection.app, id, revision),
        None => request.to_string(),
    };
    let mapped = Record {
        source: Source::Crm {
            connection: label.clone(),
            record: record_key,
        },
        fields: record,
        time_zone: connection.zone(),
        phone: None,
        template: None,
        // The same webhook again replays; another webhook, or the poller, for the same
        // revision finds the key used by another request.
        dedupe: Some(Dedupe {
            scope: label.clone(),
            key,
            request_hash: request.to_string(),
        }),
    };
    let submission = connection.mapping().submission(mapped);
    let (remembered, outcome) = tokio::join!(remember, state.admission.submit_record(submission));
    remembered.map_err(store)?;
    let outcome = match outcome {
        Err(AdmitError::Refused(Refusal::IdempotencyKeyReused)) => Ok(RecordOutcome::Replayed),
        other => other,
    };
    telemetry::inbound_record(&label, outcome_label(outcome.as_ref()));
    Ok(match outcome.map_err(InboundError::Unavailable)? {
        RecordOutcome::Accepted { id, .. } => KintoneAnswer {
            result: KintoneResult::Queued,
            message_id: Some(id.to_string()),
            reason: None,
            error: None,
        },
        RecordOutcome::Rejected { id, refusal } => KintoneAnswer {
            result: KintoneResult::Rejected,
            message_id: Some(id.to_string()),
            reason: None,
            error: Some(KintoneRefusal {
                code: refusal.code().to_string(),
                message: refusal.to_string(),
            }),
        },
        RecordOutcome::Replayed => KintoneAnswer::because(
            KintoneResult::Duplicate,
            "this record revision was taken before; nothing more is sent".into(),
        ),
    })
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

//! What became of a kintone notification. kintone's webhook log keeps only the notification's
//! `id` and whether it succeeded, not our answer; so every answered webhook is kept by its `id`
//! for 30 days, and `GET /v1/inbound/kintone/{name}/notifications/{id}` (with an API key) shows
//! what it was answered.

use axum::{
    extract::{Path, State},
    Json,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tsunagi_kintone::Webhook;
use utoipa::ToSchema;

use super::{find, kintone::KintoneAnswer};
use crate::{
    api::{
        problem::{quoted, ApiError, ErrorCode, Problem},
        AppState,
    },
    config::KintoneConfig,
    store::{KintoneNotification, StoreError},
};

/// Longest notification id kept or looked up: kintone's are UUIDs, of 36 characters.
const MAX_ID_CHARS: usize = 128;

/// What tsunagi did with a kintone notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct KintoneNotificationView {
    /// The webhook body's `id`, as kintone's webhook log shows it.
    pub notification_id: String,
    /// When tsunagi answered it.
    pub received_at: DateTime<Utc>,
    /// The webhook's `type`: ADD_RECORD, UPDATE_RECORD, UPDATE_STATUS, DELETE_RECORD or
    /// ADD_RECORD_COMMENT.
    pub event: String,
    /// The record's `$id` (`recordId` for deletes and comments), when the webhook names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// The answer the webhook got: `result`, and `message_id`, `reason` or `error`.
    #[serde(flatten)]
    pub answer: KintoneAnswer,
}

/// Keep the answer `webhook` of `connection` got, so it can be looked up by the webhook's id.
/// Never fails the webhook: its record is taken already, and kintone never delivers it again.
pub(crate) async fn record(
    state: &AppState,
    connection: &KintoneConfig,
    webhook: &Webhook,
    answer: &KintoneAnswer,
) {
    // A longer id is no kintone id, and could never be looked up.
    if webhook.id.chars().count() > MAX_ID_CHARS {
        return;
    }
    let notification = KintoneNotification {
        connection: format!("kintone:{}", connection.name),
        notification_id: webhook.id.clone(),
        received_at: state.events.now(),
        event: webhook.type_name().to_string(),
        record_id: webhook.record_id().map(|id| id.to_string()),
        // Strings and an enum of names: always JSON.
        answer: serde_json::to_value(answer).expect("an answer is JSON"),
    };
    if let Err(e) = state.store.record_notification(notification).await {
        tracing::warn!(
            connection = %connection.name,
            notification = %webhook.id,
            error = %e,
            "a kintone webhook's answer was not kept; looking it up will answer 404"
        );
    }
}

/// What tsunagi answered a kintone notification (webhook), by the id kintone's webhook log shows.
#[utoipa::path(
    get, path = "/v1/inbound/kintone/{name}/notifications/{id}",
    operation_id = "getKintoneNotification", tag = "inbound",
    params(
        ("name" = String, Path, description = "The kintone connection's `name`"),
        ("id" = String, Path, max_length = 128, description = "The notification's id: the webhook body's `id`, shown in the app's webhook log"),
    ),
    responses(
        (status = 200, description = "The answer the webhook got, as it got it (the first, if it came more than once); kept 30 days", body = KintoneNotificationView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no kintone connection of that name, or no notification of that id answered for it in the last 30 days", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request (`field` = `id`): an id over 128 characters", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<KintoneNotificationView>, ApiError> {
    let connection = find(&state.config.kintone, &name)?;
    if id.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::unprocessable(
            ErrorCode::InvalidRequest,
            "id",
            format!("`id` may have at most {MAX_ID_CHARS} characters; kintone's notification ids are UUIDs"),
        ));
    }
    let label = format!("kintone:{}", connection.name);
    let notification = state
        .store
        .notification(&label, &id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "kintone connection {:?} has no notification {} (answers are kept 30 days)",
                connection.name,
                quoted(&id)
            ))
        })?;
    // The error's text would quote the stored answer: it is left out of the logs.
    let answer = serde_json::from_value(notification.answer).map_err(|_| {
        StoreError::Corrupt("a kintone notification's stored answer does not read back".into())
    })?;
    Ok(Json(KintoneNotificationView {
        notification_id: notification.notification_id,
        received_at: notification.received_at,
        event: notification.event,
        record_id: notification.record_id,
        answer,
    }))
}

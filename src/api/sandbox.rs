//! `/v1/sandbox/*`: the simulated handsets of the sandbox provider.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    body::JsonBody,
    problem::{ApiError, ErrorCode, Problem},
    AppState,
};
use crate::{
    domain::phone::{SenderId, SENDER_FORMS},
    messaging::{phone_number, plain_text},
    store::NewReply,
};

/// Which handset.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// The handset's number, in any accepted form.
    #[param(required = true, max_length = 64, format = "phone")]
    pub to: Option<String>,
    /// At most this many entries, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One message a handset received.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// Our message id.
    pub message_id: String,
    /// Sender id it came from.
    pub from: String,
    /// The handset, masked.
    pub to: String,
    /// What the handset shows.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// How many times tsunagi asked the sandbox to send this message: 1, or more if a send was
    /// repeated (the handset still shows it once, as a carrier deduplicating would not).
    #[schema(minimum = 1)]
    pub sends: u32,
}

/// A simulated reply from a handset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// The handset replying.
    #[schema(max_length = 64, format = "phone")]
    pub from: String,
    /// The sender id it replies to.
    pub to: String,
    /// What it says.
    #[schema(min_length = 1, max_length = 1000)]
    pub body: String,
}

/// A stored reply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplyCreated {
    /// The message it was linked to (the latest from `to` to `from`), if any.
    pub message_id: Option<String>,
    /// The handset, masked.
    pub from: String,
    /// The sender id.
    pub to: String,
    /// What it said.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// What a simulated handset received, newest first.
#[utoipa::path(
    get, path = "/v1/sandbox/inbox", operation_id = "sandboxInbox", tag = "sandbox",
    params(InboxParams),
    responses(
        (status = 200, body = [InboxItem]),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn inbox(
    State(state): State<AppState>,
    query: Result<Query<InboxParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<InboxItem>>, ApiError> {
    let Query(params) = query.map_err(|e| {
        ApiError::unprocessable(ErrorCode::InvalidRequest, "(query)", e.body_text())
    })?;
    let to = params.to.ok_or_else(|| {
        ApiError::unprocessable(
            ErrorCode::InvalidRequest,
            "to",
            "give the handset as `?to=`",
        )
    })?;
    let to = phone_number(&to, "to")?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::unprocessable(
            ErrorCode::InvalidRequest,
            "limit",
            "`limit` must be between 1 and 500",
        ));
    }
    let entries = state.store.sandbox_inbox(&to, limit).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| InboxItem {
                message_id: e.message_id.to_string(),
                from: e.from,
                to: e.to.masked(),
                body: e.body,
                at: e.at,
                sends: e.sends,
            })
            .collect(),
    ))
}

/// Simulate a handset replying.
#[utoipa::path(
    post, path = "/v1/sandbox/reply", operation_id = "sandboxReply", tag = "sandbox",
    request_body = ReplyRequest,
    responses(
        (status = 201, body = ReplyCreated),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn reply(
    State(state): State<AppState>,
    JsonBody { value: request, .. }: JsonBody<ReplyRequest>,
) -> Result<(StatusCode, Json<ReplyCreated>), ApiError> {
    let from = phone_number(&request.from, "from")?;
    let to = SenderId::parse(&request.to).map_err(|_| {
        ApiError::unprocessable(
            ErrorCode::InvalidRequest,
            "to",
            format!("`to` must be a sender id: {SENDER_FORMS}"),
        )
    })?;
    plain_text(&request.body, "body")?;
    if request.body.is_empty() || request.body.chars().count() > 1000 {
        return Err(ApiError::unprocessable(
            ErrorCode::InvalidRequest,
            "body",
            "`body` must have 1 to 1000 characters",
        ));
    }
    let stored = state
        .events
        .inbound(NewReply {
            from,
            to: to.as_str().to_string(),
            body: request.body,
            at: state.admission.clock.now(),
            provider_id: None,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ReplyCreated {
            message_id: stored.message_id.map(|id| id.to_string()),
            from: stored.from.masked(),
            to: stored.to,
            body: stored.body,
            at: stored.at,
        }),
    ))
}

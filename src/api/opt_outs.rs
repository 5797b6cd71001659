//! `/v1/opt-outs`: the numbers that asked a sender to stop (by a STOP or 停止 reply, or added
//! here), listed, added and removed.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{body::JsonBody, messages::invalid, problem::ApiError, problem::Problem, AppState};
use crate::{
    domain::phone::SenderId,
    messaging::phone_number,
    store::{OptOut, OptOutVia, EVERY_SENDER},
};

/// A number to opt out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOptOut {
    /// The number, in any accepted form.
    #[schema(max_length = 64, format = "phone")]
    pub to: String,
    /// The sender it refuses; every sender when absent.
    #[schema(max_length = 64)]
    pub from: Option<String>,
    /// Why (e.g. "asked at the counter").
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// An opted-out number.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OptOutView {
    /// The number, masked.
    pub to: String,
    /// The sender it refuses, or `*` for every sender.
    pub from: String,
    /// `reply` (the handset sent an opt-out word) or `api`.
    pub via: String,
    /// The reply's words, or the reason given.
    pub keyword: Option<String>,
    /// The message the reply answered.
    pub message_id: Option<String>,
    /// Since when.
    pub at: DateTime<Utc>,
}

/// Opt-outs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutPage {
    /// Newest first.
    pub data: Vec<OptOutView>,
}

/// Which opt-outs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OptOutParams {
    /// Only this number's (any accepted form).
    pub to: Option<String>,
    /// 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Which sender an opt-out is removed for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveParams {
    /// The sender; the opt-out from every sender (`*`) when absent.
    pub from: Option<String>,
}

/// A sender as stored: its canonical form, or `*`.
fn sender(input: Option<&str>) -> Result<String, ApiError> {
    match input {
        None | Some(EVERY_SENDER) => Ok(EVERY_SENDER.to_string()),
        Some(text) => SenderId::parse(text)
            .map(|s| s.as_str().to_string())
            .map_err(|_| {
                invalid(
                    "from",
                    "`from` must be a phone number, a 0005 short code, 1-11 letters and digits, or *",
                )
            }),
    }
}

fn view(o: OptOut) -> OptOutView {
    OptOutView {
        to: o.number.masked(),
        from: o.sender,
        via: o.via.as_str().into(),
        keyword: o.keyword,
        message_id: o.message_id.map(|id| id.to_string()),
        at: o.at,
    }
}

/// Opted-out numbers, masked, newest first.
#[utoipa::path(
    get, path = "/v1/opt-outs", operation_id = "listOptOuts", tag = "numbers",
    params(OptOutParams),
    responses(
        (status = 200, body = OptOutPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: a bad `limit`; invalid_phone_number: a bad `to`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<OptOutParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OptOutPage>, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit", "`limit` must be between 1 and 1000"));
    }
    let number = params
        .to
        .as_deref()
        .map(|to| phone_number(to, "to"))
        .transpose()?;
    let entries = state.store.opt_outs(number.as_ref(), limit).await?;
    Ok(Json(OptOutPage {
        data: entries.into_iter().map(view).collect(),
    }))
}

/// Opt a number out of a sender's messages, or of every sender's.
#[utoipa::path(
    post, path = "/v1/opt-outs", operation_id = "addOptOut", tag = "numbers",
    request_body = AddOptOut,
    responses(
        (status = 201, body = OptOutView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    JsonBody { value: req, .. }: JsonBody<AddOptOut>,
) -> Result<(StatusCode, Json<OptOutView>), ApiError> {
    let number = phone_number(&req.to, "to")?;
    let sender = sender(req.from.as_deref())?;
    if req.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(invalid(
            "reason",
            "`reason` may have at most 500 characters",
        ));
    }
    let entry = OptOut {
        number,
        sender,
        at: state.admission.clock.now(),
        via: OptOutVia::Api,
        keyword: req.reason,
        message_id: None,
    };
    state.store.opt_out(entry.clone()).await?;
    Ok((StatusCode::CREATED, Json(view(entry))))
}

/// Opt a number back in for a sender (or remove its opt-out from every sender).
#[utoipa::path(
    delete, path = "/v1/opt-outs/{number}", operation_id = "removeOptOut", tag = "numbers",
    params(("number" = String, Path, description = "The number, e.g. +819012345678 or 09012345678"), RemoveParams),
    responses(
        (status = 204, description = "Opted back in"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    Path(input): Path<String>,
    query: Result<Query<RemoveParams>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let number = phone_number(&input, "number")?;
    let sender = sender(params.from.as_deref())?;
    if state.store.opt_in(&number, &sender).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "the number has no opt-out from {sender}"
        )))
    }
}

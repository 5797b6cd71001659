//! `/v1/opt-outs`: the numbers that asked a sender to stop (by a STOP or 停止 reply, or added
//! here), listed, added and removed; and `/v1/opt-outs/review`: replies that asked to stop inside
//! a sentence, held until a person opts the number out or dismisses them.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    body::JsonBody,
    messages::invalid,
    problem::{quoted, ApiError, ErrorCode, Problem},
    AppState,
};
use crate::{
    domain::phone::SenderId,
    messaging::phone_number,
    store::{OptOut, OptOutVia, Review, ReviewQuery, SettleOutcome, Settlement, EVERY_SENDER},
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

/// A reply that asked to stop inside a sentence (「停止してください」), held for a person to
/// settle: opt the number out of the sender it answered, or dismiss it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    /// Pass to `POST /v1/opt-outs/review/{id}`.
    pub id: i64,
    /// The number that replied, masked.
    pub to: String,
    /// The sender it answered: the one an opt-out would refuse.
    pub from: String,
    /// What it said.
    pub body: String,
    /// The message it answered.
    pub message_id: Option<String>,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// `open`, `opted_out` or `dismissed`.
    pub status: String,
    /// When it was settled.
    pub settled_at: Option<DateTime<Utc>>,
}

/// Held replies, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    /// Newest first.
    pub data: Vec<ReviewView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which held replies.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewParams {
    /// `open` or `settled`; both when absent.
    #[param(value_type = Option<String>, pattern = "^(open|settled)$")]
    pub status: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// What to do with a held reply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleReview {
    /// `opt_out`: the reply asked to stop, so the number is opted out of the sender it
    /// answered (and the CRM told, as for a STOP reply); `dismiss`: it did not.
    pub action: ReviewAction,
}

/// `opt_out` or `dismiss`.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// Opt the number out of the sender.
    OptOut,
    /// Change nothing.
    Dismiss,
}

impl From<ReviewAction> for Settlement {
    fn from(action: ReviewAction) -> Self {
        match action {
            ReviewAction::OptOut => Settlement::OptOut,
            ReviewAction::Dismiss => Settlement::Dismiss,
        }
    }
}

fn review_view(r: Review) -> ReviewView {
    let (status, settled_at) = match r.settled {
        None => ("open", None),
        Some((at, Settlement::OptOut)) => ("opted_out", Some(at)),
        Some((at, Settlement::Dismiss)) => ("dismissed", Some(at)),
    };
    ReviewView {
        id: r.id,
        to: r.number.masked(),
        from: r.sender,
        body: r.body,
        message_id: r.message_id.map(|id| id.to_string()),
        at: r.at,
        status: status.into(),
        settled_at,
    }
}

/// Replies held for review, newest first.
#[utoipa::path(
    get, path = "/v1/opt-outs/review", operation_id = "listOptOutReviews", tag = "numbers",
    params(ReviewParams),
    responses(
        (status = 200, body = ReviewPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: a bad `status`, `limit` or `cursor`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn reviews(
    State(state): State<AppState>,
    query: Result<Query<ReviewParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReviewPage>, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let open = match params.status.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("settled") => Some(false),
        Some(_) => return Err(invalid("status", "`status` must be open or settled")),
    };
    let (limit, before) = super::paging::page(params.limit.as_deref(), params.cursor.as_deref())?;
    let held = state
        .store
        .reviews(ReviewQuery {
            open,
            limit,
            before,
        })
        .await?;
    let next_cursor = (held.len() == limit as usize)
        .then(|| held.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(ReviewPage {
        data: held.into_iter().map(review_view).collect(),
        next_cursor,
    }))
}

/// Settle a held reply: opt its number out of the sender it answered, or dismiss it. Settling
/// again the same way answers as the first time.
#[utoipa::path(
    post, path = "/v1/opt-outs/review/{id}", operation_id = "settleOptOutReview", tag = "numbers",
    params(("id" = i64, Path, minimum = 1, description = "The held reply's `id`")),
    request_body = SettleReview,
    responses(
        (status = 200, body = ReviewView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no held reply has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict: it was settled the other way before", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: `action` is not opt_out or dismiss", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn settle(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody { value: req, .. }: JsonBody<SettleReview>,
) -> Result<Json<ReviewView>, ApiError> {
    let not_found = || ApiError::not_found(format!("no held reply has id {}", quoted(&id)));
    let review_id = id.parse::<i64>().map_err(|_| not_found())?;
    let settlement = Settlement::from(req.action);
    let now = state.admission.clock.now();
    match state
        .store
        .settle_review(review_id, settlement, now)
        .await?
    {
        SettleOutcome::Settled(review) => {
            tracing::info!(
                review = review.id,
                from = %review.number,
                settlement = settlement.as_str(),
                "held reply settled"
            );
            Ok(Json(review_view(review)))
        }
        SettleOutcome::AlreadySettled(review)
            if review.settled.is_some_and(|(_, s)| s == settlement) =>
        {
            Ok(Json(review_view(review)))
        }
        SettleOutcome::AlreadySettled(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "the held reply was settled the other way before; nothing was changed",
        )),
        SettleOutcome::NotFound => Err(not_found()),
    }
}

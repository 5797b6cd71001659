//! `/v1/numbers/{allow|deny}`: the managed allow and deny lists.

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
    problem::{quoted, ApiError, Problem},
    AppState,
};
use crate::{
    domain::ids::ListEntryId,
    messaging::phone_number,
    store::{ListKey, ListedNumber, NumberList},
};

/// A number to list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNumber {
    /// The number, in any accepted form.
    #[schema(max_length = 64, format = "phone")]
    pub number: String,
    /// Why (e.g. "opted out by phone", "reported cancelled").
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// A listed number.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListedView {
    /// The entry's id (`num_…`): use it in the URL to look the entry up or remove it.
    pub id: String,
    /// `allow` or `deny`.
    pub list: String,
    /// The number, masked.
    pub number: String,
    /// Why it is listed.
    pub reason: Option<String>,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// A list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage {
    /// Newest first.
    pub data: Vec<ListedView>,
}

/// Page size.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

fn which(list: &str) -> Result<NumberList, ApiError> {
    match list {
        "allow" => Ok(NumberList::Allow),
        "deny" => Ok(NumberList::Deny),
        _ => Err(ApiError::not_found(format!(
            "no list {}; the lists are allow and deny",
            quoted(list)
        ))),
    }
}

/// An entry named in the URL: its id (`num_…`) or the number in any accepted form.
fn key(input: &str) -> Result<ListKey, ApiError> {
    if input.starts_with("num_") {
        return input
            .parse::<ListEntryId>()
            .map(ListKey::Id)
            .map_err(|_| ApiError::not_found(format!("no list entry {}", quoted(input))));
    }
    Ok(ListKey::Number(phone_number(input, "number")?))
}

fn view(list: NumberList, entry: ListedNumber) -> ListedView {
    ListedView {
        id: entry.id.to_string(),
        list: list.as_str().into(),
        number: entry.number.masked(),
        reason: entry.reason,
        created_at: entry.created_at,
    }
}

/// A list's numbers, masked.
#[utoipa::path(
    get, path = "/v1/numbers/{list}", operation_id = "listNumbers", tag = "numbers",
    params(("list" = String, Path, pattern = "^(allow|deny)$", description = "allow or deny"), ListParams),
    responses(
        (status = 200, body = ListPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: a bad `limit`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(list): Path<String>,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListPage>, ApiError> {
    let list = which(&list)?;
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit", "`limit` must be between 1 and 1000"));
    }
    let entries = state.store.list_numbers(list, limit).await?;
    Ok(Json(ListPage {
        data: entries.into_iter().map(|e| view(list, e)).collect(),
    }))
}

/// Put a number on a list.
#[utoipa::path(
    post, path = "/v1/numbers/{list}", operation_id = "addNumber", tag = "numbers",
    params(("list" = String, Path, pattern = "^(allow|deny)$", description = "allow or deny")),
    request_body = AddNumber,
    responses(
        (status = 201, body = ListedView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    Path(list): Path<String>,
    JsonBody { value: req, .. }: JsonBody<AddNumber>,
) -> Result<(StatusCode, Json<ListedView>), ApiError> {
    let list = which(&list)?;
    let number = phone_number(&req.number, "number")?;
    if req.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(invalid(
            "reason",
            "`reason` may have at most 500 characters",
        ));
    }
    let entry = state.store.list_add(list, &number, req.reason).await?;
    Ok((StatusCode::CREATED, Json(view(list, entry))))
}

/// Whether a number is on a list.
#[utoipa::path(
    get, path = "/v1/numbers/{list}/{number}", operation_id = "getNumber", tag = "numbers",
    params(("list" = String, Path, pattern = "^(allow|deny)$", description = "allow or deny"), ("number" = String, Path, description = "The entry's id (num_…) or the number, e.g. +819012345678 or 09012345678")),
    responses(
        (status = 200, body = ListedView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_phone_number: `{number}` is neither an entry id nor a number", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    Path((list, input)): Path<(String, String)>,
) -> Result<Json<ListedView>, ApiError> {
    let list = which(&list)?;
    let entry = state
        .store
        .listed(list, &key(&input)?)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("the number is not on the {} list", list.as_str()))
        })?;
    Ok(Json(view(list, entry)))
}

/// Take a number off a list.
#[utoipa::path(
    delete, path = "/v1/numbers/{list}/{number}", operation_id = "removeNumber", tag = "numbers",
    params(("list" = String, Path, pattern = "^(allow|deny)$", description = "allow or deny"), ("number" = String, Path, description = "The entry's id (num_…) or the number")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_phone_number: `{number}` is neither an entry id nor a number", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    Path((list, input)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let list = which(&list)?;
    if state.store.list_remove(list, &key(&input)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "the number is not on the {} list",
            list.as_str()
        )))
    }
}

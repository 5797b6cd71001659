//! `/v1/writebacks`: the CRM calls dry-run connections (`dry_run = true`) would have made, with
//! their exact bodies, so a developer sees what would land on the records before pointing
//! write-back at production.

use axum::{
    extract::{Query, State},
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{messages::invalid, problem::ApiError, problem::Problem, AppState};
use crate::{
    config::Config,
    store::{WritebackCall, WritebackQuery},
};

/// Largest page.
const MAX_LIMIT: u32 = 100;

/// A call write-back would have made.
#[derive(Debug, Serialize, ToSchema)]
pub struct WritebackView {
    /// The connection, as `salesforce:NAME` or `kintone:NAME`.
    pub connection: String,
    /// `PATCH`, `PUT` or `POST`.
    pub method: String,
    /// The URL path from the CRM's host on, e.g. `/services/data/v67.0/composite/sobjects` or
    /// `/k/v1/records.json`.
    pub path: String,
    /// The exact JSON request body.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// The messages whose status, reply or opt-out the call carries.
    pub message_ids: Vec<String>,
    /// When write-back would have made it.
    pub at: DateTime<Utc>,
}

/// A page of dry-run calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct WritebackPage {
    /// Newest first.
    pub data: Vec<WritebackView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which calls.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WritebackParams {
    /// Only this connection's: `salesforce:NAME`, `kintone:NAME`, or a name only one
    /// connection has.
    pub connection: Option<String>,
    /// 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
}

/// The source name of the connection `given` names, as write-back logs it.
fn connection(config: &Config, given: &str) -> Result<String, ApiError> {
    let named: Vec<String> = config
        .salesforce
        .iter()
        .map(|c| format!("salesforce:{}", c.name))
        .chain(config.kintone.iter().map(|c| format!("kintone:{}", c.name)))
        .collect();
    let matching: Vec<&String> = named
        .iter()
        .filter(|n| n.as_str() == given || n.split_once(':').is_some_and(|(_, name)| name == given))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(invalid(
            "connection",
            format!("no connection is named {given:?}; the connections are {named:?}"),
        )),
        _ => Err(invalid(
            "connection",
            format!("{given:?} names more than one connection; say one of {matching:?}"),
        )),
    }
}

fn view(c: WritebackCall) -> WritebackView {
    let c = c.call;
    WritebackView {
        connection: c.connection,
        method: c.method,
        path: c.path,
        body: c.body,
        message_ids: c.message_ids,
        at: c.at,
    }
}

/// The calls dry-run write-back would have made, newest first.
#[utoipa::path(
    get, path = "/v1/writebacks", operation_id = "listWritebacks", tag = "writebacks",
    params(WritebackParams),
    responses(
        (status = 200, description = "Newest first; kept a week. Only connections with `dry_run = true` log calls", body = WritebackPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: a bad `limit` or `cursor`, or a `connection` no connection (or more than one) has", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<WritebackParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<WritebackPage>, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit", "`limit` must be between 1 and 100"));
    }
    if params.cursor.is_some_and(|c| c < 1) {
        return Err(invalid(
            "cursor",
            "`cursor` must be a `next_cursor` from a previous page",
        ));
    }
    let connection = params
        .connection
        .map(|c| connection(&state.config, &c))
        .transpose()?;
    let calls = state
        .store
        .writebacks(WritebackQuery {
            connection,
            limit,
            before: params.cursor,
        })
        .await?;
    let next_cursor = (calls.len() == limit as usize)
        .then(|| calls.last().map(|c| c.seq.to_string()))
        .flatten();
    Ok(Json(WritebackPage {
        data: calls.into_iter().map(view).collect(),
        next_cursor,
    }))
}

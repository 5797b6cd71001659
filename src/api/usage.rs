//! `GET /v1/usage`: messages and segments per day and final state; only delivered messages are
//! billable. JSON, or CSV for accountants.

use axum::{
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{messages::invalid, problem::ApiError, problem::Problem, AppState};
use crate::reports::{
    usage_report, DayRange, DayUsage, RangeError, StatusUsage, Usage, MAX_USAGE_DAYS,
};

/// Which days, in which zone, in which format.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// First day, YYYY-MM-DD (default: the first of this month).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day, included, YYYY-MM-DD (default: today); at most 366 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
    /// IANA time zone the days are in (default Asia/Tokyo).
    #[param(max_length = 64)]
    pub tz: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Messages and their parts over the air.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Messages.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
}

/// Messages per final state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    /// Delivered: the billable ones.
    pub delivered: Counts,
    /// The handset could not be reached.
    pub undelivered: Counts,
    /// The provider refused them, or every attempt failed.
    pub failed: Counts,
    /// Canceled before they were sent.
    pub canceled: Counts,
    /// Refused by a rule.
    pub rejected: Counts,
}

/// One day.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageDay {
    /// The day, in `tz`.
    #[schema(format = Date)]
    pub date: String,
    /// Delivered messages that day.
    pub billable_messages: i64,
    /// Their segments.
    pub billable_segments: i64,
    /// Every message that became final that day.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
    /// By final state.
    pub statuses: StatusCounts,
}

/// Usage over a range of days; a message counts on the day it became final.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// First day.
    #[schema(format = Date)]
    pub from: String,
    /// Last day, included.
    #[schema(format = Date)]
    pub to: String,
    /// The zone of the days.
    pub tz: String,
    /// Delivered messages: what is billed.
    pub billable_messages: i64,
    /// Their segments.
    pub billable_segments: i64,
    /// Every message that became final.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
    /// Every day of the range, in order.
    pub days: Vec<UsageDay>,
}

impl From<StatusUsage> for Counts {
    fn from(u: StatusUsage) -> Self {
        Counts {
            messages: u.messages,
            segments: u.segments,
        }
    }
}

fn day_view(day: &DayUsage) -> UsageDay {
    use crate::domain::state::JobState::*;
    UsageDay {
        date: day.date.to_string(),
        billable_messages: day.billable().messages,
        billable_segments: day.billable().segments,
        messages: day.total().messages,
        segments: day.total().segments,
        statuses: StatusCounts {
            delivered: day.of(Delivered).into(),
            undelivered: day.of(Undelivered).into(),
            failed: day.of(Failed).into(),
            canceled: day.of(Canceled).into(),
            rejected: day.of(Rejected).into(),
        },
    }
}

fn view(range: &DayRange, usage: &Usage) -> UsageView {
    UsageView {
        from: range.from.to_string(),
        to: range.to.to_string(),
        tz: range.tz.name().to_string(),
        billable_messages: usage.billable().messages,
        billable_segments: usage.billable().segments,
        messages: usage.total().messages,
        segments: usage.total().segments,
        days: usage.days.iter().map(day_view).collect(),
    }
}

/// One row per day and final state, with a header.
fn csv(usage: &Usage) -> String {
    let mut out =
        String::from("date,status,messages,segments,billable_messages,billable_segments\n");
    for day in &usage.days {
        for (state, u) in &day.statuses {
            let billable = if *state == crate::domain::state::JobState::Delivered {
                *u
            } else {
                StatusUsage::default()
            };
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                day.date, state, u.messages, u.segments, billable.messages, billable.segments
            ));
        }
    }
    out
}

/// The day range the parameters name, or the problem naming the parameter.
pub(super) fn range(
    state: &AppState,
    from: Option<&str>,
    to: Option<&str>,
    tz: Option<&str>,
    max_days: i64,
) -> Result<DayRange, ApiError> {
    DayRange::parse(from, to, tz, state.admission.clock.now(), max_days)
        .map_err(|RangeError { field, detail }| invalid(field, detail))
}

/// Usage per day: messages and segments by final state, and what is billable (delivered only).
#[utoipa::path(
    get, path = "/v1/usage", operation_id = "getUsage", tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "JSON, or `text/csv` with `format=csv`: date,status,messages,segments,billable_messages,billable_segments", content(
            (UsageView = "application/json"),
            (String = "text/csv"),
        )),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request naming `from`, `to`, `tz` or `format`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn usage(
    State(state): State<AppState>,
    query: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let as_csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(invalid("format", "`format` must be json or csv")),
    };
    let range = range(
        &state,
        params.from.as_deref(),
        params.to.as_deref(),
        params.tz.as_deref(),
        MAX_USAGE_DAYS,
    )?;
    let buckets = state.store.usage(range.start(), range.end()).await?;
    let usage = usage_report(&range, &buckets);
    if as_csv {
        let name = format!(
            "attachment; filename=\"usage-{}-{}.csv\"",
            range.from, range.to
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, name),
            ],
            csv(&usage),
        )
            .into_response());
    }
    Ok(Json(view(&range, &usage)).into_response())
}

//! `GET /v1/reports/delivery`: delivery rate, time to delivery, clicks, replies and opt-outs per
//! day, sender or source.

use axum::{
    extract::{Query, State},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{messages::invalid, problem::ApiError, problem::Problem, usage::range, AppState};
use crate::{
    reports::{delivery_report, DeliveryGroup, GroupBy, MAX_REPORT_DAYS},
    store::FactCursor,
};

/// Facts read per store call while a report is folded.
const PAGE: u32 = 5_000;

/// Which days, in which zone, grouped how.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// First day, YYYY-MM-DD (default: the first of this month).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day, included, YYYY-MM-DD (default: today); at most 92 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
    /// IANA time zone the days are in (default Asia/Tokyo).
    #[param(max_length = 64)]
    pub tz: Option<String>,
    /// `day` (default), `sender`, `source` or `route`.
    #[param(pattern = "^(day|sender|source|route)$")]
    pub group_by: Option<String>,
}

/// The messages of one group that became final in the range.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// The day (YYYY-MM-DD), sender id, source (`api`, `otp`, `salesforce:NAME`,
    /// `kintone:NAME`) or route (`-` for messages never sent); `total` for the whole range.
    pub key: String,
    /// Messages that became final.
    pub messages: u64,
    /// Delivered.
    pub delivered: u64,
    /// Not delivered: the handset could not be reached.
    pub undelivered: u64,
    /// Refused by the provider, or every attempt failed.
    pub failed: u64,
    /// Canceled before they were sent.
    pub canceled: u64,
    /// Refused by a rule.
    pub rejected: u64,
    /// Delivered of those that went out (delivered + undelivered + failed); null when none did.
    pub delivery_rate: Option<f64>,
    /// Median seconds from when a delivered message was due to its delivery.
    pub median_seconds_to_delivery: Option<f64>,
    /// 95th percentile of the same.
    pub p95_seconds_to_delivery: Option<f64>,
    /// Delivered messages a person clicked a short link in.
    pub clicked: u64,
    /// Clicked of delivered.
    pub click_through_rate: Option<f64>,
    /// Delivered messages the handset replied to.
    pub replied: u64,
    /// Replied of delivered.
    pub reply_rate: Option<f64>,
    /// Messages whose reply opted the number out (and it still is).
    pub opt_outs: u64,
}

/// A delivery report; a message counts on the day it became final.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryReportView {
    /// First day.
    #[schema(format = Date)]
    pub from: String,
    /// Last day, included.
    #[schema(format = Date)]
    pub to: String,
    /// The zone of the days.
    pub tz: String,
    /// `day`, `sender`, `source` or `route`.
    pub group_by: String,
    /// The groups that had messages, by key.
    pub groups: Vec<GroupView>,
    /// The whole range.
    pub total: GroupView,
}

fn group_view(g: &DeliveryGroup) -> GroupView {
    let count = |s: &str| g.statuses.get(s).copied().unwrap_or(0);
    GroupView {
        key: g.key.clone(),
        messages: g.messages(),
        delivered: g.delivered(),
        undelivered: count("undelivered"),
        failed: count("failed"),
        canceled: count("canceled"),
        rejected: count("rejected"),
        delivery_rate: g.delivery_rate(),
        median_seconds_to_delivery: g.latency.quantile_seconds(0.5),
        p95_seconds_to_delivery: g.latency.quantile_seconds(0.95),
        clicked: g.clicked,
        click_through_rate: g.click_through_rate(),
        replied: g.replied,
        reply_rate: g.reply_rate(),
        opt_outs: g.opt_outs,
    }
}

/// Delivery rate, median and p95 time to delivery, click-through and reply rates and opt-outs,
/// per day, sender, source or route.
#[utoipa::path(
    get, path = "/v1/reports/delivery", operation_id = "getDeliveryReport", tag = "usage",
    params(ReportParams),
    responses(
        (status = 200, body = DeliveryReportView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request naming `from`, `to`, `tz` or `group_by`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delivery(
    State(state): State<AppState>,
    query: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryReportView>, ApiError> {
    let Query(params) = query.map_err(|e| invalid("(query)", e.body_text()))?;
    let group_by_name = params.group_by.as_deref().unwrap_or("day");
    let group_by: GroupBy = group_by_name.parse().map_err(|_| {
        invalid(
            "group_by",
            "`group_by` must be day, sender, source or route",
        )
    })?;
    let range = range(
        &state,
        params.from.as_deref(),
        params.to.as_deref(),
        params.tz.as_deref(),
        MAX_REPORT_DAYS,
    )?;
    let mut report = delivery_report(range, group_by);
    let mut after: Option<FactCursor> = None;
    loop {
        let facts = state
            .store
            .delivery_facts(range.start(), range.end(), after, PAGE)
            .await?;
        facts.iter().for_each(|f| report.add(f));
        if facts.len() < PAGE as usize {
            break;
        }
        after = facts.last().map(|f| (f.finished_at, f.seq));
    }
    Ok(Json(DeliveryReportView {
        from: range.from.to_string(),
        to: range.to.to_string(),
        tz: range.tz.name().to_string(),
        group_by: group_by_name.to_string(),
        groups: report.groups().map(group_view).collect(),
        total: group_view(report.total()),
    }))
}

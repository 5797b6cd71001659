//! Liveness, readiness, metrics and the OpenAPI document.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde_json::json;

use super::{
    problem::{ApiError, ErrorCode},
    AppState,
};
use crate::telemetry;

/// Liveness: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers and every migration is applied.
pub async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ready().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("not ready: {e}"),
        )
    })?;
    state.provider.ready().map_err(|reason| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("not ready: the provider cannot send: {reason}"),
        )
    })?;
    let mut warnings = state.provider.warnings();
    warnings.extend(state.setup_warnings.all());
    if warnings.is_empty() {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Ok(Json(json!({"status": "ready", "warnings": warnings})))
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.admission.clock.now();
    let conversion = state
        .store
        .otp_conversion(now - chrono::Duration::hours(1))
        .await
        .ok()
        .and_then(|(sent, verified)| (sent > 0).then(|| verified as f64 / sent as f64));
    let gauges = telemetry::ScrapeGauges {
        queue_depth: state.store.queue_depth().await.ok(),
        otp_conversion: conversion,
        otp_blocked_prefixes: state.store.otp_blocked_prefixes(now).await.ok(),
        opt_out_reviews_open: state.store.open_reviews().await.ok(),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(gauges),
    )
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi::document())
}

/// Unknown routes answer with a problem too.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

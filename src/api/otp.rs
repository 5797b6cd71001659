//! `/v1/otp`: send one-time passwords and check them.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    body::JsonBody,
    problem::{quoted, ApiError, ErrorCode, Problem},
    AppState,
};
use crate::{
    domain::ids::VerificationId,
    messaging::CodeRequest,
    store::{CheckOutcome, VerificationRecord},
};

/// A code to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartOtp {
    /// Recipient: a Japanese mobile number by default.
    #[schema(max_length = 64, format = "phone")]
    pub to: String,
    /// Digits, 6–10 (default `otp.code_length`).
    #[schema(minimum = 6, maximum = 10)]
    pub code_length: Option<u32>,
    /// Lifetime in seconds, 180–600 (default `otp.ttl_seconds`).
    #[schema(minimum = 180, maximum = 600)]
    pub ttl_seconds: Option<u32>,
    /// The text: `{{code}}` (only ever printed whole), optionally `{{minutes}}` and `{{service}}`.
    pub template: Option<String>,
    /// Sender id (default `delivery.default_from`).
    pub from: Option<String>,
    /// Your end user's IP address, for per-IP limits.
    pub client_ip: Option<String>,
    /// Your end user's device id, for per-device limits.
    #[schema(max_length = 128)]
    pub device_id: Option<String>,
    /// The date (YYYY-MM-DD) your CRM last confirmed the number; enables the cancellation-history check.
    #[schema(format = Date)]
    pub number_confirmed_on: Option<String>,
}

/// A verification.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationView {
    /// Its id.
    pub verification_id: String,
    /// Recipient, masked.
    pub to: String,
    /// pending, approved, expired, canceled or max_attempts_reached.
    pub status: String,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
    /// Checks left.
    pub attempts_left: u32,
    /// The SMS that carries the code.
    pub message_id: String,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

/// A code to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckOtp {
    /// The digits the user typed (surrounding spaces are ignored).
    #[schema(pattern = "^\\s*[0-9]{1,10}\\s*$")]
    pub code: String,
}

/// A successful check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Approved {
    /// The verification.
    pub verification_id: String,
    /// Always `approved`.
    pub status: String,
}

fn view(v: VerificationRecord, now: DateTime<Utc>) -> VerificationView {
    VerificationView {
        verification_id: v.id.to_string(),
        to: v.to.masked(),
        status: v.status.shown_at(v.expires_at, now).to_string(),
        expires_at: v.expires_at,
        attempts_left: v.max_checks.saturating_sub(v.checks),
        message_id: v.message_id.to_string(),
        created_at: v.created_at,
    }
}

/// Send a one-time password.
#[utoipa::path(
    post, path = "/v1/otp", operation_id = "startOtp", tag = "otp",
    request_body = StartOtp,
    responses(
        (status = 201, description = "The code is on its way; it is never in a response", body = VerificationView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request, invalid_phone_number, number_type_not_allowed, country_not_allowed, number_blocked", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (cool-down, per-number/IP/device limits, a paused number range); see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    JsonBody { value: req, .. }: JsonBody<StartOtp>,
) -> Result<(StatusCode, Json<VerificationView>), ApiError> {
    let record = state
        .admission
        .start_otp(CodeRequest {
            to: req.to,
            code_length: req.code_length,
            ttl_seconds: req.ttl_seconds,
            template: req.template,
            from: req.from,
            client_ip: req.client_ip,
            device_id: req.device_id,
            number_confirmed_on: req.number_confirmed_on,
        })
        .await?;
    let now = state.admission.clock.now();
    Ok((StatusCode::CREATED, Json(view(record, now))))
}

fn verification_id(id: &str) -> Result<VerificationId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no verification {}", quoted(id))))
}

/// Check a code.
#[utoipa::path(
    post, path = "/v1/otp/{id}/check", operation_id = "checkOtp", tag = "otp",
    params(("id" = String, Path, description = "Verification id")),
    request_body = CheckOtp,
    responses(
        (status = 200, description = "approved", body = Approved),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "otp_already_used", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "otp_expired, otp_canceled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "otp_incorrect (with attempts_left), invalid_request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "otp_attempts_exhausted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody { value: req, .. }: JsonBody<CheckOtp>,
) -> Result<Json<Approved>, ApiError> {
    let (id, outcome) = checked(&state, &id, &req).await?;
    match outcome {
        CheckOutcome::Approved => Ok(Json(Approved {
            verification_id: id.to_string(),
            status: "approved".into(),
        })),
        CheckOutcome::Incorrect(left) => Err(ApiError::unprocessable(
            ErrorCode::OtpIncorrect,
            "code",
            format!("the code is not correct; {left} checks left"),
        )
        .attempts_left(left)),
        CheckOutcome::Exhausted => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::OtpAttemptsExhausted,
            "every check of this code is used up; send a new code",
        )),
        CheckOutcome::Expired => Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::OtpExpired,
            "the code has expired; send a new code",
        )),
        CheckOutcome::Canceled => Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::OtpCanceled,
            "a newer code was sent to this number; check that one",
        )),
        CheckOutcome::AlreadyUsed => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::OtpAlreadyUsed,
            "the code was already verified",
        )),
        CheckOutcome::NotFound => Err(ApiError::not_found(format!("no verification {id}"))),
    }
}

/// A check's verdict as a Flow branches on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verdict {
    /// The verification.
    pub verification_id: String,
    /// The code is right: the number is verified.
    pub valid: bool,
    /// `approved`, `incorrect`, `exhausted`, `expired`, `canceled` or `already_used`.
    pub status: String,
    /// After an incorrect code: the checks left before the code is used up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// Check a code and answer 200 with the verdict whatever it is, for a Flow (Salesforce sends
/// every status from 300 up to the Flow's fault path, where a Screen Flow cannot branch).
#[utoipa::path(
    post, path = "/v1/otp/{id}/verify", operation_id = "verifyOtp", tag = "otp",
    params(("id" = String, Path, description = "Verification id")),
    request_body = CheckOtp,
    responses(
        (status = 200, description = "the verdict: `valid`, and `status` approved, incorrect (with `attempts_left`), exhausted, expired, canceled or already_used", body = Verdict),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_request: the code is not 6-10 digits", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody { value: req, .. }: JsonBody<CheckOtp>,
) -> Result<Json<Verdict>, ApiError> {
    let (id, outcome) = checked(&state, &id, &req).await?;
    let (status, attempts_left) = match outcome {
        CheckOutcome::Approved => ("approved", None),
        CheckOutcome::Incorrect(left) => ("incorrect", Some(left)),
        CheckOutcome::Exhausted => ("exhausted", None),
        CheckOutcome::Expired => ("expired", None),
        CheckOutcome::Canceled => ("canceled", None),
        CheckOutcome::AlreadyUsed => ("already_used", None),
        CheckOutcome::NotFound => return Err(ApiError::not_found(format!("no verification {id}"))),
    };
    Ok(Json(Verdict {
        verification_id: id.to_string(),
        valid: status == "approved",
        status: status.into(),
        attempts_left,
    }))
}

/// One check of `req`'s code against verification `id`, through the admission path.
async fn checked(
    state: &AppState,
    id: &str,
    req: &CheckOtp,
) -> Result<(VerificationId, CheckOutcome), ApiError> {
    let id = verification_id(id)?;
    let outcome = state.admission.check_otp(&id, &req.code).await?;
    Ok((id, outcome))
}

/// A verification's status.
#[utoipa::path(
    get, path = "/v1/otp/{id}", operation_id = "getOtp", tag = "otp",
    params(("id" = String, Path, description = "Verification id")),
    responses(
        (status = 200, body = VerificationView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VerificationView>, ApiError> {
    let id = verification_id(&id)?;
    let record = state
        .store
        .otp_verification(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no verification {id}")))?;
    Ok(Json(view(record, state.admission.clock.now())))
}

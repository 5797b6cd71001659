//! `/v1/otp`: send one-time passwords and check them.

use std::net::IpAddr;

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
    messages::{check_history, invalid, plain_text, recipient},
    problem::{quoted, ApiError, ErrorCode, Problem},
    AppState,
};
use crate::{
    domain::{
        ids::VerificationId, phone::SenderId, segment::Segmentation, template::TemplateError,
    },
    otp::{self, SendRequest},
    store::{CheckOutcome, CodeMatcher, OtpStart, VerificationRecord},
    telemetry,
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

fn in_range(
    value: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    field: &str,
) -> Result<u32, ApiError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            format!(
                "`{field}` must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
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
    let config = &state.config.otp;
    let to = recipient(&req.to, "to", &state.otp_policy)?;
    let code_length = in_range(req.code_length, config.code_length, 6..=10, "code_length")?;
    let ttl_seconds = in_range(
        req.ttl_seconds,
        config.ttl_seconds,
        180..=600,
        "ttl_seconds",
    )?;
    let from = match &req.from {
        Some(from) => SenderId::parse(from).map_err(|_| {
            invalid(
                "from",
                "`from` must be a phone number, a 0005 short code or 1-11 letters and digits",
            )
        })?,
        None => state.default_from.clone(),
    };
    let client_ip = req
        .client_ip
        .map(|ip| {
            ip.trim()
                .parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| invalid("client_ip", "`client_ip` must be an IPv4 or IPv6 address"))
        })
        .transpose()?;
    let device_id = req
        .device_id
        .filter(|d| !d.is_empty())
        .map(|d| {
            if d.chars().count() <= 128 {
                Ok(d)
            } else {
                Err(invalid(
                    "device_id",
                    "`device_id` may have at most 128 characters",
                ))
            }
        })
        .transpose()?;
    plain_text(req.template.as_deref(), "template")?;
    check_history(&state, &to, req.number_confirmed_on.as_deref()).await?;

    let id = VerificationId::new();
    let code = otp::generate_code(code_length);
    let template = req.template.as_deref().unwrap_or(&config.template);
    let max_chars = state.config.delivery.max_characters;
    let text = otp::text(
        template,
        &code,
        ttl_seconds,
        &config.service_name,
        max_chars,
    )
    .map_err(|e| match e {
        TemplateError::OutputTooLong(max) => ApiError::unprocessable(
            ErrorCode::MessageTooLong,
            "template",
            format!("the text has more than {max} characters; at most {max} are allowed"),
        ),
        TemplateError::Syntax(_)
        | TemplateError::NotAllowed(_)
        | TemplateError::TooLong
        | TemplateError::MissingRequired(_)
        | TemplateError::MissingVariable(_)
        | TemplateError::Render(_) => invalid("template", e.to_string()),
    })?;
    let characters = Segmentation::of(&text).characters;
    if characters > max_chars {
        return Err(ApiError::unprocessable(
            ErrorCode::MessageTooLong,
            "template",
            format!("the text has {characters} characters; at most {max_chars} are allowed"),
        ));
    }
    let now = state.clock.now();
    let verification = otp::verification(
        SendRequest {
            to,
            from,
            body: text,
            code_hash: state.otp_key.hash(&id, &code),
            id: id.clone(),
            ttl_seconds,
            client_ip,
            device_id,
        },
        config,
        now,
    );
    let prefix = verification
        .message
        .to
        .national_prefix(config.pumping.prefix_digits);
    let span = tracing::info_span!("otp_start", verification_id = %id);
    let _guard = span.enter();
    match state
        .store
        .otp_start(verification, otp::limits(config), state.hygiene)
        .await?
    {
        OtpStart::Started => {
            telemetry::otp_sent();
            state.dispatch_wake.notify_one();
            let record = state
                .store
                .otp_verification(&id)
                .await?
                .ok_or_else(|| ApiError::not_found("the verification vanished"))?;
            Ok((StatusCode::CREATED, Json(view(record, now))))
        }
        OtpStart::Blocked(reason) => Err(ApiError::unprocessable(
            ErrorCode::NumberBlocked,
            "to",
            reason,
        )),
        OtpStart::Limited {
            reason,
            retry_after,
            tripped,
        } => {
            if tripped {
                // The prefix is a number range, not a subscriber: safe to log.
                tracing::warn!(%prefix, %reason, "OTP pumping breaker tripped: number range paused");
                telemetry::otp_breaker_tripped();
            }
            telemetry::otp_refused();
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                reason,
            )
            .field("to")
            .retry_after(retry_after.max(1) as u64))
        }
    }
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
    let id = verification_id(&id)?;
    let code = req.code.trim().to_string();
    if code.is_empty() || code.len() > 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "code",
            "`code` must be the 6-10 digits from the SMS",
        ));
    }
    let key = state.otp_key.clone();
    let bound = id.clone();
    let matches: CodeMatcher = Box::new(move |stored: &[u8]| key.verify(&bound, &code, stored));
    let outcome = state
        .store
        .otp_check(&id, matches, state.clock.now())
        .await?;
    telemetry::otp_checked(match &outcome {
        CheckOutcome::Approved => "approved",
        CheckOutcome::Incorrect(_) => "incorrect",
        CheckOutcome::Exhausted => "exhausted",
        CheckOutcome::Expired => "expired",
        CheckOutcome::AlreadyUsed => "already_used",
        CheckOutcome::Canceled => "canceled",
        CheckOutcome::NotFound => "not_found",
    });
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
    Ok(Json(view(record, state.clock.now())))
}

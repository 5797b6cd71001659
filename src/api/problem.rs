//! The one place errors become RFC 9457 `application/problem+json` responses.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use tsunagi_salesforce::outbound::{self, FaultCode};

use crate::{
    inbound::{salesforce::SoapFault, InboundError},
    messaging::{AdmitError, Refusal},
    store::StoreError,
};

/// Stable machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No valid `Authorization: Bearer` API key.
    Unauthorized,
    /// Malformed JSON, unknown or ill-typed fields, or a value a rule refuses.
    InvalidRequest,
    /// `to` is not a phone number.
    InvalidPhoneNumber,
    /// The number is of a kind the policy refuses (050 IP phone, landline, pager, toll free…).
    NumberTypeNotAllowed,
    /// The number's country is not allowed.
    CountryNotAllowed,
    /// The number is on the deny list or opted out.
    NumberBlocked,
    /// The body has more characters than `delivery.max_characters`.
    MessageTooLong,
    /// The template uses a variable that `vars` does not give.
    MissingTemplateVariable,
    /// The text links to a domain outside `[links] allowed_domains`.
    LinkDomainNotAllowed,
    /// The `Idempotency-Key` was used before with a different body.
    IdempotencyKeyReused,
    /// No such resource.
    NotFound,
    /// The message is no longer scheduled.
    NotCancelable,
    /// The request conflicts with what is stored (a value that must be unique).
    Conflict,
    /// Too many requests; see `Retry-After`.
    RateLimited,
    /// The code is wrong; `attempts_left` says how many checks remain.
    OtpIncorrect,
    /// Every check is used up; even the right code is refused now.
    OtpAttemptsExhausted,
    /// The code has expired.
    OtpExpired,
    /// A newer code to the same number replaced this one.
    OtpCanceled,
    /// The code was already verified.
    OtpAlreadyUsed,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    /// The store cannot be reached; retry later.
    Unavailable,
    /// An unexpected failure; nothing was accepted.
    Internal,
}

impl ErrorCode {
    fn title(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::InvalidRequest => "Invalid request",
            ErrorCode::InvalidPhoneNumber => "Invalid phone number",
            ErrorCode::NumberTypeNotAllowed => "Number type not allowed",
            ErrorCode::CountryNotAllowed => "Country not allowed",
            ErrorCode::NumberBlocked => "Number blocked",
            ErrorCode::MessageTooLong => "Message too long",
            ErrorCode::MissingTemplateVariable => "Missing template variable",
            ErrorCode::LinkDomainNotAllowed => "Link domain not allowed",
            ErrorCode::IdempotencyKeyReused => "Idempotency key reused",
            ErrorCode::NotFound => "Not found",
            ErrorCode::NotCancelable => "Not cancelable",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::RateLimited => "Rate limited",
            ErrorCode::OtpIncorrect => "Incorrect code",
            ErrorCode::OtpAttemptsExhausted => "No checks left",
            ErrorCode::OtpExpired => "Code expired",
            ErrorCode::OtpCanceled => "Code replaced",
            ErrorCode::OtpAlreadyUsed => "Code already used",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::Unavailable => "Service unavailable",
            ErrorCode::Internal => "Internal error",
        }
    }

    fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What went wrong with this request, in words.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Checks left, for `otp_incorrect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    detail: String,
    field: Option<String>,
    retry_after: Option<u64>,
    attempts_left: Option<u32>,
}

impl ApiError {
    /// An error with its status, code and detail.
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
            retry_after: None,
            attempts_left: None,
        }
    }

    /// Ask the client to wait (`Retry-After`, seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Say how many OTP checks remain.
    pub fn attempts_left(mut self, left: u32) -> Self {
        self.attempts_left = Some(left);
        self
    }

    /// Name the offending field.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422 for a well-formed request a rule refuses.
    pub fn unprocessable(code: ErrorCode, field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).field(field)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "send a valid API key as `Authorization: Bearer <key>`",
        )
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, what)
    }

    /// The code, for logs and tests.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

/// Client input quoted in an error detail, cut short so a huge id is not echoed back whole.
pub fn quoted(input: &str) -> String {
    const SHOWN: usize = 64;
    match input.char_indices().nth(SHOWN) {
        None => format!("{input:?}"),
        Some((end, _)) => format!(
            "{:?}… ({} characters)",
            &input[..end],
            input.chars().count()
        ),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Locked(_) => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the store is unavailable; nothing was changed, retry later",
                )
            }
            StoreError::Conflict(_) => {
                tracing::warn!(error = %e, "store refused a conflicting write");
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    "the request conflicts with what is stored; nothing was changed",
                )
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "store holds a value that does not read back");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "an unexpected failure; nothing was changed",
                )
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let (status, code) = match &r {
            Refusal::Invalid { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidRequest)
            }
            Refusal::InvalidPhoneNumber { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidPhoneNumber,
            ),
            Refusal::NumberTypeNotAllowed { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::NumberTypeNotAllowed,
            ),
            Refusal::CountryNotAllowed { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::CountryNotAllowed,
            ),
            Refusal::NumberBlocked { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::NumberBlocked)
            }
            Refusal::MessageTooLong { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::MessageTooLong)
            }
            Refusal::LinkDomainNotAllowed { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::LinkDomainNotAllowed,
            ),
            Refusal::MissingTemplateVariable { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::MissingTemplateVariable,
            ),
            Refusal::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
            ),
            Refusal::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Refusal::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
        };
        let retry_after = match &r {
            Refusal::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let mut error = ApiError::new(status, code, r.to_string()).field(r.field());
        error.retry_after = retry_after;
        error
    }
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> Self {
        match e {
            AdmitError::Refused(r) => r.into(),
            AdmitError::Store(e) => e.into(),
        }
    }
}

impl From<InboundError> for ApiError {
    fn from(e: InboundError) -> Self {
        let detail = e.to_string();
        match e {
            InboundError::UnknownConnection { .. } => ApiError::not_found(detail),
            InboundError::WrongToken => {
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, detail)
            }
            InboundError::UnsupportedMediaType { .. } => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                detail,
            )
            .field("Content-Type"),
            InboundError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                detail,
            ),
            InboundError::Unreadable(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, detail)
            }
            InboundError::Records(_) => {
                ApiError::unprocessable(ErrorCode::InvalidRequest, "records", detail)
            }
            InboundError::Malformed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, detail)
                    .field("body")
            }
            InboundError::OtherSource { field, .. } => {
                ApiError::unprocessable(ErrorCode::InvalidRequest, field, detail)
            }
            InboundError::Unavailable(e) => e.into(),
        }
    }
}

/// An Outbound Message not acknowledged: a SOAP fault, so Salesforce counts the delivery as
/// failed (and retries it, unless the org is wrong and it never will be right).
impl IntoResponse for SoapFault {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            SoapFault::Malformed(e) => {
                tracing::warn!(error = %e, "an Outbound Message did not parse");
                (StatusCode::BAD_REQUEST, FaultCode::Client)
            }
            SoapFault::OtherOrg(org) => {
                tracing::warn!(org = %org, "an Outbound Message from another org was refused");
                (StatusCode::FORBIDDEN, FaultCode::Client)
            }
            SoapFault::Unavailable(e) => {
                tracing::error!(error = %e, "an Outbound Message could not be stored");
                (StatusCode::SERVICE_UNAVAILABLE, FaultCode::Server)
            }
        };
        let body = outbound::fault(code, &self.to_string());
        (
            status,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code.as_str();
        let problem = Problem {
            kind: format!("urn:tsunagi:error:{code}"),
            title: self.code.title(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            field: self.field,
            attempts_left: self.attempts_left,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_answer_by_their_kind() {
        let cases = [
            (
                StoreError::Unavailable("busy".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
            ),
            (
                StoreError::Locked("held".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
            ),
            (
                StoreError::Conflict("unique".into()),
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
            ),
            (
                StoreError::Corrupt("id".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status, api.code), (status, code));
        }
    }

    #[test]
    fn a_corrupt_store_does_not_leak_the_stored_value() {
        let api = ApiError::from(StoreError::Corrupt("stored id \"msg_secret\"".into()));
        assert!(!api.detail.contains("msg_secret"));
    }
}

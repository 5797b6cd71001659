//! Twilio calling in: `POST /v1/inbound/twilio/status` (a message's status changed) and
//! `POST /v1/inbound/twilio/sms` (a handset sent an SMS to the account's number).
//!
//! Both are form posts signed with the account's auth token: `X-Twilio-Signature` is
//! base64(HMAC-SHA1(auth_token, URL + every parameter's name and value, sorted by name)), where
//! the URL is the one Twilio called, `public_base_url` followed by the request's path and query.
//! An unsigned or forged call changes nothing. A status callback is answered only once its
//! receipt is recorded, so a store failure (503) makes Twilio call again. What Twilio's words
//! mean lives in `providers::twilio::vocabulary`.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{header, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Deserialize};
use sha1::Sha1;
use utoipa::ToSchema;

use super::{body, InboundError};
use crate::{
    api::{
        problem::{ApiError, ErrorCode, Problem},
        AppState,
    },
    capture::{capture, Payload},
    config::TwilioConfig,
    domain::{ids::MessageId, phone::PhoneNumber},
    providers::twilio::vocabulary,
    store::{NewReply, Receipt, ReceiptOutcome, StoreError},
};

/// Largest callback body: Twilio's forms are a few hundred bytes, a 1,600-character body
/// percent-encoded well under this.
pub const CALLBACK_LIMIT: usize = 64 * 1024;

/// The header Twilio signs its requests in.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The answer to an inbound SMS: empty TwiML, so Twilio sends no automatic reply.
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

const FORM: &str = "application/x-www-form-urlencoded";

/// The callbacks, as errors name them and as they are captured.
const STATUS_CALLBACK: (&str, Payload<'static>) =
    ("status callback", Payload::TwilioStatusCallback);
const INBOUND_SMS: (&str, Payload<'static>) = ("inbound SMS", Payload::TwilioInboundSms);

/// Why a Twilio callback was refused or could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// No `[providers.twilio]` is configured, so no signature can be checked.
    #[error("no Twilio account is configured")]
    NotConfigured,
    /// The request carries no `X-Twilio-Signature`.
    #[error("the request carries no X-Twilio-Signature")]
    Unsigned,
    /// The signature is not the account's over this request.
    #[error("X-Twilio-Signature does not match this request")]
    Forged,
    /// The form lacks a parameter this callback always carries.
    #[error("the form is not a Twilio {kind}: {reason}")]
    Form {
        /// `status callback`, `inbound SMS`.
        kind: &'static str,
        /// What is wrong, naming the parameter.
        reason: String,
    },
    /// The body could not be taken (media type, size, encoding).
    #[error(transparent)]
    Body(#[from] InboundError),
    /// The store could not record it; Twilio calls again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CallbackError> for ApiError {
    fn from(e: CallbackError) -> Self {
        let detail = e.to_string();
        match e {
            CallbackError::NotConfigured => ApiError::not_found(detail),
            CallbackError::Unsigned | CallbackError::Forged => {
                tracing::warn!(error = %detail, "a Twilio callback was refused");
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Unauthorized, detail)
                    .field("X-Twilio-Signature")
            }
            CallbackError::Form { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, detail)
                    .field("body")
            }
            CallbackError::Body(e) => e.into(),
            CallbackError::Store(e) => e.into(),
        }
    }
}

/// A status callback's form, as far as it is read (every parameter counts for the signature).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TwilioStatusCallback {
    /// The message's sid, as the send's answer gave it.
    #[serde(rename = "MessageSid")]
    pub message_sid: String,
    /// `queued`, `sending`, `sent`, `accepted` (nothing recorded), `delivered`, `undelivered`
    /// or `failed`.
    #[serde(rename = "MessageStatus")]
    pub message_status: String,
    /// Twilio's error code for an undelivered or failed message (30003, 30007…).
    #[serde(rename = "ErrorCode", default)]
    pub error_code: Option<String>,
}

/// An inbound SMS's form, as far as it is read (every parameter counts for the signature).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TwilioInboundSms {
    /// The handset, E.164.
    #[serde(rename = "From")]
    pub from: String,
    /// The account's number it was sent to.
    #[serde(rename = "To")]
    pub to: String,
    /// What it said.
    #[serde(rename = "Body")]
    pub body: String,
    /// Twilio's sid for it.
    #[serde(rename = "MessageSid")]
    pub message_sid: String,
    /// With Advanced Opt-Out on the Messaging Service: `STOP`, `START` or `HELP` when the whole
    /// body is one of the keywords configured there.
    #[serde(rename = "OptOutType", default)]
    pub opt_out_type: Option<String>,
}

/// `X-Twilio-Signature` for a request to `url` with form `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `given` is the signature of a request to `url` with `params`, compared in constant
/// time.
pub fn signature_matches(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    given: &str,
) -> bool {
    let Ok(given) = STANDARD.decode(given.trim()) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&given).is_ok()
}

/// The HMAC over the URL and the parameters in name order (a repeated name in value order, as
/// Twilio's libraries sort them).
fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The callback's form as a `kind`, once its signature is the configured account's (and
/// captured as `payload`).
async fn signed_form<T: DeserializeOwned>(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    read: Result<Bytes, BytesRejection>,
    (kind, payload): (&'static str, Payload<'static>),
) -> Result<T, CallbackError> {
    let accounts: Vec<&TwilioConfig> = state.config.twilio_accounts();
    if accounts.is_empty() {
        return Err(CallbackError::NotConfigured);
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(FORM));
    if !is_form {
        return Err(InboundError::UnsupportedMediaType { expected: FORM }.into());
    }
    let bytes = body(read, CALLBACK_LIMIT)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| InboundError::Malformed(format!("not a form body: {e}")))?;
    let given = headers
        .get(SIGNATURE_HEADER)
        .ok_or(CallbackError::Unsigned)?
        .to_str()
        .map_err(|_| CallbackError::Forged)?;
    let url = called_url(&state.config.public_base_url, uri);
    // Each route may have its own account: the callback is genuine if one of them signed it.
    let signed = accounts
        .iter()
        .any(|account| signature_matches(account.auth_token.expose(), &url, &params, given));
    if !signed {
        return Err(CallbackError::Forged);
    }
    capture(&state.config.capture, payload, &bytes).await;
    serde_urlencoded::from_bytes(&bytes).map_err(|e| CallbackError::Form {
        kind,
        reason: e.to_string(),
    })
}

/// The URL Twilio called: `public_base_url` with this request's path and query.
fn called_url(public_base_url: &str, uri: &Uri) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{}{path_and_query}", public_base_url.trim_end_matches('/'))
}

/// Take a status callback: a final status becomes the message's receipt.
#[utoipa::path(
    post, path = "/v1/inbound/twilio/status",
    operation_id = "twilioStatusCallback", tag = "inbound",
    request_body(content = TwilioStatusCallback, content_type = "application/x-www-form-urlencoded", description = "A message status callback as Twilio posts it, signed in `X-Twilio-Signature`; at most 64 KiB"),
    responses(
        (status = 204, description = "Recorded (`delivered`, `undelivered`, `failed`), or a status on the way that records nothing; a sid no message has is logged"),
        (status = 400, description = "invalid_request: not a form, or `MessageSid` or `MessageStatus` is absent", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "unauthorized: `X-Twilio-Signature` is absent or does not match; nothing recorded", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no `[providers.twilio]` is configured", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type: not `application/x-www-form-urlencoded`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the store could not record it; Twilio calls again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let form: TwilioStatusCallback =
        signed_form(&state, &uri, &headers, read, STATUS_CALLBACK).await?;
    let (sid, status) = (form.message_sid.as_str(), form.message_status.as_str());
    let error_code = form.error_code.as_deref();
    let Some((receipt_status, detail)) = vocabulary::receipt_of(status, error_code) else {
        tracing::debug!(sid, status, "Twilio status on the way; nothing recorded");
        return Ok(StatusCode::NO_CONTENT);
    };
    let ours = named_message(&uri);
    if let Some(ours) = &ours {
        noticed_second_sid(&state, ours, sid).await;
    }
    let receipt = Receipt {
        message_id: None,
        provider_message_id: sid.to_string(),
        status: receipt_status,
        detail,
    };
    let outcomes = state
        .events
        .receipts(vec![receipt.clone()])
        .await
        .map_err(CallbackError::from)?;
    // No message has the sid: a send that timed out may have reached Twilio after all. Its
    // message, waiting to be sent again on this route, is then sent, with this sid.
    if let (Some(ours), [ReceiptOutcome::Unknown]) = (&ours, outcomes.as_slice()) {
        let settled = state
            .events
            .settle_doubt(ours, sid)
            .await
            .map_err(CallbackError::from)?;
        if settled {
            tracing::info!(message_id = %ours, sid, "a send in doubt had reached Twilio: recorded as sent, not sent again");
            metrics::counter!("tsunagi_twilio_doubts_settled_total").increment(1);
            state
                .events
                .receipts(vec![receipt])
                .await
                .map_err(CallbackError::from)?;
        }
    }
    tracing::info!(sid, status, error_code, "Twilio receipt recorded");
    Ok(StatusCode::NO_CONTENT)
}

/// The message a status callback is about, as the send named it in the signed callback URL
/// (`?message_id=`); callbacks of sends made before it was named carry none.
fn named_message(uri: &Uri) -> Option<MessageId> {
    let query = uri.query()?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    params
        .into_iter()
        .find(|(name, _)| name == "message_id")
        .and_then(|(_, id)| id.parse().ok())
}

/// Log and count a final status for a sid other than the one the message's send recorded:
/// Twilio took the message twice (a send in doubt, sent again on its route, had reached it).
async fn noticed_second_sid(state: &AppState, ours: &MessageId, sid: &str) {
    let Ok(Some(message)) = state.store.message(ours).await else {
        return;
    };
    match message.provider_message_id.as_deref() {
        Some(recorded) if recorded != sid => {
            metrics::counter!("tsunagi_twilio_second_sids_total").increment(1);
            tracing::warn!(
                message_id = %ours,
                sid,
                recorded,
                to = ?message.to.as_ref().map(ToString::to_string),
                "Twilio reports a second sid for one message: it was sent twice"
            );
        }
        _ => {}
    }
}

/// Take an inbound SMS: store it as a reply on its conversation, and answer empty TwiML.
#[utoipa::path(
    post, path = "/v1/inbound/twilio/sms",
    operation_id = "twilioInboundSms", tag = "inbound",
    request_body(content = TwilioInboundSms, content_type = "application/x-www-form-urlencoded", description = "An incoming message webhook as Twilio posts it, signed in `X-Twilio-Signature`; at most 64 KiB"),
    responses(
        (status = 200, description = "Stored (or, from a `From` that is no phone number, logged and dropped); empty TwiML, so Twilio sends no reply", body = String, content_type = "text/xml"),
        (status = 400, description = "invalid_request: not a form, or `From`, `To`, `Body` or `MessageSid` is absent", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "unauthorized: `X-Twilio-Signature` is absent or does not match; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: no `[providers.twilio]` is configured", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type: not `application/x-www-form-urlencoded`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: the store could not take it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sms(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let form: TwilioInboundSms = signed_form(&state, &uri, &headers, read, INBOUND_SMS).await?;
    let sid = form.message_sid.as_str();
    let Ok(from) = PhoneNumber::parse(&form.from) else {
        tracing::warn!(
            sid,
            from = %masked(&form.from),
            "an inbound SMS from no phone number was dropped"
        );
        return Ok(twiml());
    };
    let reply = NewReply {
        from,
        to: form.to.clone(),
        body: form.body.clone(),
        at: state.events.now(),
        // Twilio posts a webhook again when our answer was late: its sid makes that one reply.
        provider_id: Some(form.message_sid.clone()),
    };
    let stored = match vocabulary::reading_of(form.opt_out_type.as_deref()) {
        Some(reading) => state.events.inbound_read(reply, reading).await,
        None => state.events.inbound(reply).await,
    }
    .map_err(CallbackError::from)?;
    tracing::info!(
        sid,
        from = %stored.from,
        message_id = stored.message_id.as_ref().map(tracing::field::display),
        "inbound SMS stored"
    );
    Ok(twiml())
}

/// Empty TwiML with its media type.
fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        EMPTY_TWIML,
    )
        .into_response()
}

/// A sender that is no phone number, shown by its last two characters only.
fn masked(from: &str) -> String {
    let tail: String = {
        let chars: Vec<char> = from.chars().collect();
        chars[chars.len().saturating_sub(2)..].iter().collect()
    };
    format!("…{tail} ({} characters)", from.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// The worked example of Twilio's "Secure webhooks" guide, parameters out of order.
    #[test]
    fn twilios_published_example_signature_matches() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = pairs(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
        ]);
        let expected = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert_eq!(signature("12345", url, &params), expected);
        assert!(signature_matches("12345", url, &params, expected));
        assert!(!signature_matches("54321", url, &params, expected));
        assert!(!signature_matches(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            expected
        ));
        let mut tampered = params.clone();
        tampered[2].1 = "9999".into();
        assert!(!signature_matches("12345", url, &tampered, expected));
        assert!(!signature_matches("12345", url, &params, "not base64!"));
        assert!(!signature_matches("12345", url, &params, ""));
    }

    #[test]
    fn the_called_url_is_the_public_base_url_with_the_path_and_query() {
        let uri: Uri = "/v1/inbound/twilio/status?x=1".parse().unwrap();
        assert_eq!(
            called_url("https://sms.example.com/", &uri),
            "https://sms.example.com/v1/inbound/twilio/status?x=1"
        );
    }

    #[test]
    fn an_unparsable_sender_is_logged_by_its_tail_only() {
        assert_eq!(masked("abcdef123"), "…23 (9 characters)");
        assert_eq!(masked("x"), "…x (1 characters)");
    }
}

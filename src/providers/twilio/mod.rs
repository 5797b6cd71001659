//! The Twilio provider: one `POST …/Messages.json` per message, receipts and replies coming back
//! as signed callbacks (`inbound::twilio`).
//!
//! Twilio answers a send with the message's `sid` and reports its fate later to the
//! `StatusCallback` URL each send names. Throttling (429) and Twilio's own failures (5xx) are
//! retried, honouring `Retry-After`; a refused account (401, 403, or 404 for an account SID
//! Twilio does not know) stops all sending: messages wait in the queue, attempts unspent, while
//! a background probe asks Twilio for the account with backoff until it is usable again. The
//! probe rather than the next claim: a claim would hand real messages to a refused account
//! only to put them back, and a busy queue would call Twilio once per worker instead of once. Twilio has no idempotency key for sends, so a message
//! whose worker died mid-send is sent again (`already_sent` stays the default).

pub mod vocabulary;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use reqwest::{header::RETRY_AFTER, Response, StatusCode};
use serde::Deserialize;
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{Events, OutboundSms, Provider, SendError};
use crate::{
    clock::{Clock, SystemClock},
    config::{Secret, TwilioConfig},
};

/// The path of the status callback every send names, under `public_base_url`.
pub const STATUS_CALLBACK_PATH: &str = "/v1/inbound/twilio/status";

/// Most of an answer read: a message resource is about 1 KiB, an error far less.
const ANSWER_LIMIT: usize = 64 * 1024;

/// First wait before trying again a sender Twilio refused (21606…); it doubles after each
/// refusal up to `SENDER_REST_MAX`. A refused sender is not cured by time, only by the admin:
/// a short rest would fail one send a second and flap `/readyz`.
const SENDER_REST_FIRST: Duration = Duration::from_secs(30);
/// Longest rest of a refused sender between tries.
const SENDER_REST_MAX: Duration = Duration::from_secs(15 * 60);

/// First wait before asking again whether a refused account is usable.
const PROBE_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between those probes.
const PROBE_MAX: Duration = Duration::from_secs(60);

/// Sends through a Twilio account.
pub struct Twilio {
    api: Arc<Api>,
    messaging_service_sid: Option<String>,
    messages_url: String,
    status_callback: String,
    account: Arc<AccountState>,
    sender: Mutex<SenderState>,
    /// Tells the time a message has left (its `ValidityPeriod`).
    clock: Arc<dyn Clock>,
}

/// Twilio's bounds for `ValidityPeriod`, in seconds (its errors 21624 and 90007).
const VALIDITY_SECONDS: std::ops::RangeInclusive<u64> = 1..=36_000;

/// `left` as the `ValidityPeriod` Twilio takes: whole seconds within its bounds; a longer
/// expiry gets Twilio's longest, which is also its default.
fn validity_period(left: Duration) -> String {
    left.as_secs()
        .clamp(*VALIDITY_SECONDS.start(), *VALIDITY_SECONDS.end())
        .to_string()
}

/// A sender Twilio refused: why, until when it rests, and how long the next rest is.
#[derive(Default)]
struct SenderState {
    refused: Option<(String, Instant)>,
    next_rest: Option<Duration>,
}

impl SenderState {
    /// Why the sender cannot send now, while it rests.
    fn resting(&self) -> Option<String> {
        let (reason, until) = self.refused.as_ref()?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "{reason}; tried again in {} s",
            left.as_secs().max(1)
        ))
    }

    /// Twilio refused the sender: rest it, longer each time in a row.
    fn refuse(&mut self, reason: String) {
        let rest = self.next_rest.unwrap_or(SENDER_REST_FIRST);
        tracing::warn!(%reason, rest_seconds = rest.as_secs(), "Twilio refuses the sender; its messages wait");
        self.refused = Some((reason, Instant::now() + rest));
        self.next_rest = Some((rest * 2).min(SENDER_REST_MAX));
    }

    /// A send went through: the sender is fine.
    fn usable(&mut self) {
        if self.refused.take().is_some() {
            tracing::info!("Twilio takes the sender again");
        }
        self.next_rest = None;
    }
}

/// Authenticated calls to the account's API, shared by sends and the account probe.
struct Api {
    client: reqwest::Client,
    /// Basic auth's user: the account's SID, or an API key's (`SK…`).
    username: String,
    /// Basic auth's password: the auth token, or the API key's secret.
    password: Secret,
    account_url: String,
}

impl Api {
    /// Make one call and read its answer, timing it under `operation`.
    async fn call(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, CallError> {
        let started = Instant::now();
        let answer = async {
            let response = request
                .basic_auth(&self.username, Some(self.password.expose()))
                .send()
                .await
                .map_err(|e| CallError::Transport {
                    reason: transport_reason(&e),
                    sent: !e.is_connect(),
                })?;
            read_answer(response).await
        }
        .await;
        metrics::histogram!("tsunagi_twilio_api_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        answer
    }

    /// Fetch the account once and record whether it is usable (Twilio says `active`).
    async fn probe(&self, account: &AccountState) {
        let request = self.client.get(&self.account_url);
        let outcome = match self.call("probe", request).await {
            Ok(answer) if answer.status.is_success() => {
                match serde_json::from_slice::<AccountResource>(&answer.body) {
                    Ok(found) if found.status == "active" => {
                        account.usable();
                        "ok"
                    }
                    Ok(found) => {
                        account.refuse(format!("the Twilio account is {}", found.status));
                        "refused"
                    }
                    Err(_) => "error",
                }
            }
            Ok(answer) if is_refusal(answer.status) => {
                account.refuse(refusal_reason(&answer));
                "refused"
            }
            Ok(_) => "error",
            Err(_) => "unreachable",
        };
        tracing::debug!(outcome, "Twilio account probed");
        count("probe", outcome);
    }
}

/// Why the account refuses sends, if it does; shared with the probe.
#[derive(Default)]
struct AccountState {
    refused: Mutex<Option<String>>,
    probe: Notify,
}

impl AccountState {
    fn refuse(&self, reason: String) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.is_none() {
            tracing::warn!(%reason, "Twilio refuses the account; sending stops until it is usable");
            self.probe.notify_one();
        }
        *refused = Some(reason);
    }

    fn usable(&self) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.take().is_some() {
            tracing::info!("Twilio takes the account again; sending resumes");
        }
    }

    fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Why a call to Twilio did not go through.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No answer in time, no connection, or an answer cut short.
    #[error("Twilio could not be reached: {reason}")]
    Transport {
        /// What happened, in words.
        reason: String,
        /// Whether the request may have reached Twilio (anything but a failed connection).
        sent: bool,
    },
    /// An answer larger than any Twilio sends.
    #[error("Twilio's answer is larger than {ANSWER_LIMIT} bytes")]
    TooLarge,
}

/// An answer, read whole up to `ANSWER_LIMIT`.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// A message resource, as far as it is read.
#[derive(Deserialize)]
struct MessageResource {
    sid: String,
}

/// An account resource, as far as it is read.
#[derive(Deserialize)]
struct AccountResource {
    status: String,
}

/// Twilio's error document: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Deserialize)]
struct ErrorDocument {
    code: Option<u32>,
    message: Option<String>,
}

impl Twilio {
    /// A provider for `config`'s account whose sends ask for status callbacks under
    /// `public_base_url`.
    pub fn new(config: &TwilioConfig, public_base_url: &str) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tsunagi/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let account_url = format!(
            "{}/2010-04-01/Accounts/{}",
            config.base_url.trim_end_matches('/'),
            config.account_sid
        );
        // An API key, when set, authenticates the REST calls in the auth token's place (one can
        // be revoked alone); Twilio still signs callbacks with the token.
        let (username, password) = match (&config.api_key_sid, &config.api_key_secret) {
            (Some(sid), Some(secret)) => (sid.clone(), secret.clone()),
            _ => (config.account_sid.clone(), config.auth_token.clone()),
        };
        Ok(Self {
            api: Arc::new(Api {
                client,
                username,
                password,
                account_url: format!("{account_url}.json"),
            }),
            messaging_service_sid: config.messaging_service_sid.clone(),
            messages_url: format!("{account_url}/Messages.json"),
            status_callback: format!(
                "{}{STATUS_CALLBACK_PATH}",
                public_base_url.trim_end_matches('/')
            ),
            account: Arc::new(AccountState::default()),
            sender: Mutex::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same provider telling the time on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Once the account is refused, ask Twilio for it until it is usable again, waiting longer
    /// after each refusal; sends wait meanwhile, so none is spent on finding out.
    fn spawn_probe(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let api = self.api.clone();
        let account = self.account.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = account.probe.notified() => {}
                }
                let mut wait = PROBE_FIRST;
                while account.refused().is_some() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    api.probe(&account).await;
                    wait = (wait * 2).min(PROBE_MAX);
                }
            }
        })
    }
}

/// Read the answer's status, `Retry-After` and at most `ANSWER_LIMIT` bytes of its body.
async fn read_answer(mut response: Response) -> Result<Answer, CallError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    if response
        .content_length()
        .is_some_and(|n| n > ANSWER_LIMIT as u64)
    {
        return Err(CallError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| CallError::Transport {
        reason: transport_reason(&e),
        sent: true,
    })? {
        if body.len() + chunk.len() > ANSWER_LIMIT {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// `Retry-After` as a wait: delay-seconds, or an HTTP date (compared with the wall clock, as
/// the server that wrote it did) that is `now` or later.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// What went wrong with a request that got no answer, without the URL (it names the account).
fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_string(),
    }
}

/// Whether Twilio refuses the account itself: bad credentials, a suspended or closed account,
/// or an account SID it does not know.
fn is_refusal(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    )
}

/// Twilio's error codes that fault the account's sender, not the message: every message would get
/// them until the admin fixes the number or the Messaging Service (21212 invalid From, 21606 From
/// cannot send to this destination, 21659 From is not a Twilio number, 21703 and 21704 a
/// Messaging Service without senders).
const SENDER_ERRORS: [u32; 5] = [21212, 21606, 21659, 21703, 21704];

/// Twilio's 21408: the account may not send to the recipient's region (Geographic
/// Permissions), so this account cannot send the message though another may.
const REGION_NOT_ENABLED: u32 = 21408;

/// The outcome label of a send whose sender Twilio refused.
const SENDER_REFUSED: &str = "sender_refused";

/// The error code of a 400 answer, when Twilio sent its document.
fn error_code(answer: &Answer) -> Option<u32> {
    if answer.status != StatusCode::BAD_REQUEST {
        return None;
    }
    serde_json::from_slice::<ErrorDocument>(&answer.body)
        .ok()
        .and_then(|d| d.code)
}

/// Whether a 400 answer faults the sender configured for the account rather than the message.
fn is_sender_error(answer: &Answer) -> bool {
    error_code(answer).is_some_and(|code| SENDER_ERRORS.contains(&code))
}

/// Twilio's words for an error answer: `error {code}: {message}` when it sent its document.
fn error_words(answer: &Answer) -> String {
    let document = serde_json::from_slice::<ErrorDocument>(&answer.body).ok();
    let (code, message) = match document {
        Some(d) => (d.code, d.message),
        None => (None, None),
    };
    match (code, message) {
        (Some(code), Some(message)) => format!("error {code}: {message}"),
        (Some(code), None) => format!("error {code}"),
        (None, Some(message)) => message,
        (None, None) => format!("HTTP {}", answer.status.as_u16()),
    }
}

/// Why a refused account cannot send, for the queue's detail and `/readyz`.
fn refusal_reason(answer: &Answer) -> String {
    let hint = match answer.status {
        StatusCode::NOT_FOUND => "check account_sid and base_url",
        _ => "check account_sid and auth_token (or api_key_sid and api_key_secret), and that the account is active",
    };
    format!(
        "Twilio refuses the account (HTTP {}, {}); {hint}",
        answer.status.as_u16(),
        error_words(answer)
    )
}

/// Count one API call by its operation and outcome.
fn count(operation: &'static str, outcome: &'static str) {
    metrics::counter!(
        "tsunagi_twilio_api_calls_total",
        "operation" => operation,
        "outcome" => outcome
    )
    .increment(1);
}

/// What a send's answer means for the message, and its outcome label.
fn classify(answer: Answer) -> (Result<String, SendError>, &'static str) {
    let status = answer.status;
    if status.is_success() {
        return match serde_json::from_slice::<MessageResource>(&answer.body) {
            Ok(m) if !m.sid.is_empty() => (Ok(m.sid), "sent"),
            _ => (
                Err(SendError::transient(format!(
                    "Twilio answered HTTP {} without a message sid",
                    status.as_u16()
                ))),
                "error",
            ),
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let error = SendError::Transient {
            reason: format!("Twilio HTTP 429, {}", error_words(&answer)),
            retry_after: answer.retry_after,
        };
        return (Err(error), "throttled");
    }
    if status.is_server_error() {
        // Twilio may have queued the message before its error: sent again on this route only.
        let reason = format!("Twilio HTTP {}, {}", status.as_u16(), error_words(&answer));
        return (Err(SendError::in_doubt(reason)), "server_error");
    }
    if is_refusal(status) {
        return (
            Err(SendError::Unavailable(refusal_reason(&answer))),
            "refused",
        );
    }
    if is_sender_error(&answer) {
        // The message waits (or goes to the next route) instead of failing with every other.
        return (
            Err(SendError::Unavailable(format!(
                "Twilio cannot send from the configured sender ({}); check from or messaging_service_sid",
                error_words(&answer)
            ))),
            SENDER_REFUSED,
        );
    }
    if error_code(&answer) == Some(REGION_NOT_ENABLED) {
        return (
            Err(SendError::NotOnThisRoute(format!(
                "this Twilio account may not send to the number's region ({}); enable it under Messaging Geographic Permissions",
                error_words(&answer)
            ))),
            "region_not_enabled",
        );
    }
    if status.is_client_error() {
        return (
            Err(SendError::Permanent(format!(
                "Twilio refused the message: {}",
                error_words(&answer)
            ))),
            "rejected",
        );
    }
    (
        Err(SendError::transient(format!(
            "Twilio answered HTTP {}",
            status.as_u16()
        ))),
        "error",
    )
}

#[async_trait]
impl Provider for Twilio {
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        if let Some(reason) = self.account.refused() {
            return Err(SendError::Unavailable(reason));
        }
        if let Some(reason) = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resting()
        {
            return Err(SendError::Unavailable(reason));
        }
        let sender = match &self.messaging_service_sid {
            Some(service) => ("MessagingServiceSid", service.as_str()),
            None => ("From", sms.from.as_str()),
        };
        let mut form = [
            ("To", sms.to.e164()),
            sender,
            ("Body", sms.body.as_str()),
            ("StatusCallback", self.status_callback.as_str()),
        ];
        // Twilio signs the whole callback URL, our id included, so a callback names the message
        // it is about even for a sid tsunagi never learned (a send in doubt sent again).
        let callback = format!("{}?message_id={}", self.status_callback, sms.message_id);
        form[3].1 = callback.as_str();
        // Twilio drops a message still queued when its validity runs out, as we would.
        let validity = sms.time_left(self.clock.now()).map(validity_period);
        let mut fields = form.to_vec();
        if let Some(seconds) = &validity {
            fields.push(("ValidityPeriod", seconds.as_str()));
        }
        let request = self.api.client.post(&self.messages_url).form(&fields);
        let (result, outcome) = match self.api.call("send", request).await {
            Ok(answer) => classify(answer),
            Err(e @ CallError::Transport { sent: false, .. }) => {
                (Err(SendError::transient(e.to_string())), "unreachable")
            }
            // The request may have been read and the message taken before the answer was lost.
            Err(e @ CallError::Transport { sent: true, .. }) => {
                (Err(SendError::in_doubt(e.to_string())), "in_doubt")
            }
            Err(e @ CallError::TooLarge) => (Err(SendError::transient(e.to_string())), "error"),
        };
        count("send", outcome);
        match &result {
            Ok(sid) => {
                self.account.usable();
                self.sender
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .usable();
                tracing::debug!(sid = %sid, "Twilio took the message");
            }
            Err(SendError::Unavailable(reason)) if outcome == SENDER_REFUSED => self
                .sender
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refuse(reason.clone()),
            Err(SendError::Unavailable(reason)) => self.account.refuse(reason.clone()),
            Err(e) => tracing::debug!(outcome, error = %e, "Twilio did not take the message"),
        }
        result
    }

    fn ready(&self) -> Result<(), String> {
        let resting = || {
            self.sender
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .resting()
        };
        match self.account.refused().or_else(resting) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    fn start(&self, _events: Events, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        vec![self.spawn_probe(shutdown)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, retry_after: Option<Duration>) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 29 Nov 2026 16:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 16:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 15:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date passed means no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_bad_request_with_a_twilio_code_is_permanent_and_names_it() {
        let body = r#"{"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}"#;
        let (result, outcome) = classify(answer(400, body, None));
        assert_eq!(outcome, "rejected");
        let Err(SendError::Permanent(reason)) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("21610"), "{reason}");
        assert!(reason.contains("unsubscribed recipient"), "{reason}");
    }

    #[test]
    fn a_sender_the_account_cannot_use_holds_the_message_instead_of_failing_it() {
        let body = r#"{"code": 21606, "message": "The From phone number +15005550001 is not a valid, SMS-capable inbound phone number or short code for your account.", "more_info": "https://www.twilio.com/docs/errors/21606", "status": 400}"#;
        let (result, outcome) = classify(answer(400, body, None));
        assert_eq!(outcome, SENDER_REFUSED);
        let Err(SendError::Unavailable(reason)) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("21606"), "{reason}");
        assert!(reason.contains("messaging_service_sid"), "{reason}");
    }

    #[test]
    fn throttling_is_transient_with_the_wait_asked_for_and_a_server_error_is_in_doubt() {
        let (result, outcome) = classify(answer(429, "", Some(Duration::from_secs(3))));
        assert_eq!(outcome, "throttled");
        assert!(matches!(
            result,
            Err(SendError::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(3)
        ));
        let (result, outcome) = classify(answer(503, "<html>", None));
        assert_eq!(outcome, "server_error");
        assert!(
            matches!(result, Err(SendError::InDoubt { .. })),
            "Twilio may have queued it: {result:?}"
        );
    }

    #[test]
    fn a_region_the_account_may_not_send_to_is_for_another_route() {
        let body = r#"{"code": 21408, "message": "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +819012345678.", "more_info": "https://www.twilio.com/docs/errors/21408", "status": 400}"#;
        let (result, outcome) = classify(answer(400, body, None));
        assert_eq!(outcome, "region_not_enabled");
        let Err(SendError::NotOnThisRoute(reason)) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("21408"), "{reason}");
    }

    #[test]
    fn a_refused_sender_rests_longer_each_time_until_a_send_goes_through() {
        let mut sender = SenderState::default();
        assert_eq!(sender.resting(), None);
        sender.refuse("error 21606".into());
        let reason = sender.resting().expect("resting");
        assert!(
            reason.starts_with("error 21606; tried again in "),
            "{reason}"
        );
        assert_eq!(sender.next_rest, Some(SENDER_REST_FIRST * 2));
        for _ in 0..10 {
            sender.refuse("error 21606".into());
        }
        assert_eq!(sender.next_rest, Some(SENDER_REST_MAX));
        sender.usable();
        assert_eq!((sender.resting(), sender.next_rest), (None, None));
    }

    #[test]
    fn a_refused_account_makes_the_provider_unavailable_not_the_message_failed() {
        let body = r#"{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#;
        let (result, _) = classify(answer(401, body, None));
        let Err(SendError::Unavailable(reason)) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("20003"), "{reason}");
    }

    #[test]
    fn a_success_without_a_sid_is_retried() {
        let (result, _) = classify(answer(201, "{}", None));
        assert!(matches!(result, Err(SendError::Transient { .. })));
    }

    #[test]
    fn the_validity_period_is_whole_seconds_within_twilios_bounds() {
        assert_eq!(validity_period(Duration::from_secs(300)), "300");
        assert_eq!(validity_period(Duration::ZERO), "1");
        assert_eq!(validity_period(Duration::from_secs(72 * 3600)), "36000");
    }
}

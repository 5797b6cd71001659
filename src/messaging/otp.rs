//! Admitting a one-time password: the message rules, then the code, then the anti-fraud limits
//! counted in the same commit that stores it; and checking a code, counted as a check in the
//! store's one commit.

use std::{net::IpAddr, ops::RangeInclusive};

use tracing::Instrument;

use super::{checks, Admission, AdmitError, Refusal};
use crate::{
    config::OtpConfig,
    domain::{
        ids::VerificationId, phone::NumberPolicy, segment::Segmentation, template::TemplateError,
    },
    otp::{self, CodeKey, SendRequest},
    store::Hygiene,
    store::{CheckOutcome, CodeMatcher, OtpStart, VerificationRecord},
    telemetry,
};

/// Longest `device_id`, in characters.
const MAX_DEVICE_ID_CHARS: usize = 128;

/// What the OTP rules need beyond the message rules.
pub struct OtpSettings {
    /// `[otp]`.
    pub config: OtpConfig,
    /// Who codes may go to.
    pub policy: NumberPolicy,
    /// Keys code hashes.
    pub key: CodeKey,
}

/// A code someone asks to send, fields still as they were given.
#[derive(Clone, Debug, Default)]
pub struct CodeRequest {
    /// The recipient, as typed.
    pub to: String,
    /// Digits; the configured length when absent.
    pub code_length: Option<u32>,
    /// Lifetime in seconds; the configured one when absent.
    pub ttl_seconds: Option<u32>,
    /// The text, with `{{code}}`; the configured one when absent.
    pub template: Option<String>,
    /// A sender id; the default when absent.
    pub from: Option<String>,
    /// The end user's IP address, for per-IP limits.
    pub client_ip: Option<String>,
    /// The end user's device, for per-device limits.
    pub device_id: Option<String>,
    /// When the CRM last confirmed the number (YYYY-MM-DD).
    pub number_confirmed_on: Option<String>,
}

fn in_range(
    value: Option<u32>,
    default: u32,
    range: RangeInclusive<u32>,
    field: &str,
) -> Result<u32, Refusal> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Refusal::invalid(
            field,
            format!(
                "`{field}` must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// An OTP text that did not render: too long is `message_too_long`, anything else the template's.
fn text_refusal(e: TemplateError) -> Refusal {
    match e {
        TemplateError::OutputTooLong(max) => Refusal::MessageTooLong {
            field: "template".into(),
            detail: format!("the text has more than {max} characters; at most {max} are allowed"),
        },
        e => Refusal::invalid("template", e.to_string()),
    }
}

impl Admission {
    /// One check of `code` (as typed: surrounding spaces are ignored) against verification
    /// `id`, counted as any check is. A code no verification can have (not digits, or of a
    /// length no code has) is refused without spending a check: a typing slip, not a guess.
    pub async fn check_otp(
        &self,
        id: &VerificationId,
        code: &str,
    ) -> Result<CheckOutcome, AdmitError> {
        let code = code.trim().to_string();
        let digits = u32::try_from(code.len()).unwrap_or(u32::MAX);
        if !otp::CODE_LENGTHS.contains(&digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::invalid(
                "code",
                format!(
                    "`code` must be the {}-{} digits from the SMS",
                    otp::CODE_LENGTHS.start(),
                    otp::CODE_LENGTHS.end()
                ),
            )
            .into());
        }
        let key = self.otp.key.clone();
        let bound = id.clone();
        let matches: CodeMatcher = Box::new(move |stored: &[u8]| key.verify(&bound, &code, stored));
        let outcome = self.store.otp_check(id, matches, self.clock.now()).await?;
        telemetry::otp_checked(match &outcome {
            CheckOutcome::Approved => "approved",
            CheckOutcome::Incorrect(_) => "incorrect",
            CheckOutcome::Exhausted => "exhausted",
            CheckOutcome::Expired => "expired",
            CheckOutcome::AlreadyUsed => "already_used",
            CheckOutcome::Canceled => "canceled",
            CheckOutcome::NotFound => "not_found",
        });
        Ok(outcome)
    }

    /// Send a code: check the request, make the code and its text, and store the verification
    /// with its SMS in one commit that also counts every limit.
    pub async fn start_otp(&self, req: CodeRequest) -> Result<VerificationRecord, AdmitError> {
        let settings = &self.otp;
        let config = &settings.config;
        let to = checks::recipient(&req.to, "to", &settings.policy)?;
        let code_length = in_range(
            req.code_length,
            config.code_length,
            otp::CODE_LENGTHS,
            "code_length",
        )?;
        let ttl_seconds = in_range(
            req.ttl_seconds,
            config.ttl_seconds,
            otp::TTL_SECONDS,
            "ttl_seconds",
        )?;
        let from = checks::sender(req.from.as_deref(), &self.default_from, &self.senders)?;
        let client_ip = req
            .client_ip
            .map(|ip| {
                ip.trim()
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .map_err(|_| {
                        Refusal::invalid("client_ip", "`client_ip` must be an IPv4 or IPv6 address")
                    })
            })
            .transpose()?;
        let device_id = req.device_id.filter(|d| !d.is_empty());
        if device_id
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DEVICE_ID_CHARS)
        {
            return Err(Refusal::invalid(
                "device_id",
                format!("`device_id` may have at most {MAX_DEVICE_ID_CHARS} characters"),
            )
            .into());
        }
        if let Some(template) = &req.template {
            checks::plain_text(template, "template")?;
        }
        checks::history(
            self.history.as_ref(),
            &to,
            req.number_confirmed_on.as_deref(),
            self.allow_on_history_error,
        )
        .await?;

        let id = VerificationId::new();
        let code = otp::generate_code(code_length);
        let template = req.template.as_deref().unwrap_or(&config.template);
        let text = otp::text(
            template,
            &code,
            ttl_seconds,
            &config.service_name,
            self.max_characters,
        )
        .map_err(text_refusal)?;
        // Held to the allow-list, never shortened: the text reaches the handset as written.
        let text = checks::links(&self.links, text, false, "template", self.clock.now())?.text;
        let characters = Segmentation::of(&text).characters;
        if characters > self.max_characters {
            return Err(Refusal::MessageTooLong {
                field: "template".into(),
                detail: format!(
                    "the text has {characters} characters; at most {} are allowed",
                    self.max_characters
                ),
            }
            .into());
        }
        let now = self.clock.now();
        let verification = otp::verification(
            SendRequest {
                to,
                from,
                body: text,
                code_hash: settings.key.hash(&id, &code),
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
        let started = self
            .store
            .otp_start(
                verification,
                otp::limits(config),
                Hygiene {
                    honour_opt_outs: !self.opt_outs.exempt_otp,
                    ..self.hygiene
                },
            )
            .instrument(span)
            .await?;
        match started {
            OtpStart::Started => {
                telemetry::otp_sent();
                self.wake.notify_one();
                self.store.otp_verification(&id).await?.ok_or_else(|| {
                    AdmitError::Store(crate::store::StoreError::Corrupt(format!(
                        "verification {id} vanished after it was stored"
                    )))
                })
            }
            OtpStart::Blocked(reason) => Err(Refusal::NumberBlocked {
                field: "to".into(),
                reason,
            }
            .into()),
            OtpStart::Limited {
                reason,
                retry_after,
                tripped,
            } => {
                if tripped {
                    // The prefix is a number range, not a subscriber: safe to log.
                    tracing::warn!(verification_id = %id, %prefix, %reason, "OTP pumping breaker tripped: number range paused");
                    telemetry::otp_breaker_tripped();
                }
                telemetry::otp_refused();
                Err(Refusal::RateLimited {
                    reason,
                    retry_after: retry_after.max(1) as u64,
                }
                .into())
            }
        }
    }
}

//! One-time passwords: codes from a CSPRNG, kept only as HMAC-SHA256 under the server secret,
//! compared in constant time. The rules for sending (`rules`) and checking (`check`) are pure
//! functions the store feeds with what it reads.

pub mod check;
pub mod rules;

use std::{collections::BTreeMap, ops::RangeInclusive};

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use self::rules::OtpLimits;
use crate::{
    config::OtpConfig,
    domain::{
        ids::{MessageId, VerificationId},
        phone::{PhoneNumber, SenderId},
        segment::Segmentation,
        source::Source,
        state::JobState,
        template::{RenderOptions, Rules, Template, TemplateError},
    },
    store::{NewMessage, NewVerification},
};

type HmacSha256 = Hmac<Sha256>;

/// Digits a code may have, whether `otp.code_length` or a request's `code_length` sets it.
pub const CODE_LENGTHS: RangeInclusive<u32> = 6..=10;
/// Seconds a code may live, whether `otp.ttl_seconds` or a request's `ttl_seconds` sets it.
pub const TTL_SECONDS: RangeInclusive<u32> = 180..=600;
/// Checks a code may allow (`otp.max_checks`).
pub const MAX_CHECKS: RangeInclusive<u32> = 3..=5;

/// Keys code hashes; made from the server secret.
#[derive(Clone)]
pub struct CodeKey(Vec<u8>);

impl CodeKey {
    /// A key from the server secret.
    pub fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    fn mac(&self, id: &VerificationId, code: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Binding the id means a hash copied to another verification does not verify there.
        mac.update(id.as_str().as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac
    }

    /// HMAC-SHA256 of a code for one verification.
    pub fn hash(&self, id: &VerificationId, code: &str) -> Vec<u8> {
        self.mac(id, code).finalize().into_bytes().to_vec()
    }

    /// Whether `code` hashes to `stored`, compared in constant time.
    pub fn verify(&self, id: &VerificationId, code: &str, stored: &[u8]) -> bool {
        self.mac(id, code).verify_slice(stored).is_ok()
    }
}

/// A fresh numeric code of `length` digits from the thread's CSPRNG.
pub fn generate_code(length: u32) -> String {
    let mut rng = rand::rng();
    (0..length)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// What OTP templates may do with their variables: `{{code}}` may only be substituted, never
/// inspected (a condition on its digits would show in the text's length or encoding, which the
/// API reports), and must be there outside any `if`.
const TEMPLATE_RULES: Rules<'static> = Rules {
    protected: &["code"],
    required: &["code"],
};

/// Check an OTP text template (`otp.template` or a request's `template`).
pub fn compile_template(source: &str) -> Result<Template, TemplateError> {
    Template::compile(source, &TEMPLATE_RULES)
}

/// The SMS text for a code, at most `max_chars` characters.
pub fn text(
    template_source: &str,
    code: &str,
    ttl_seconds: u32,
    service: &str,
    max_chars: usize,
) -> Result<String, TemplateError> {
    let template = compile_template(template_source)?;
    let vars = BTreeMap::from([
        ("code".to_string(), code.to_string()),
        ("minutes".to_string(), ttl_seconds.div_ceil(60).to_string()),
        ("service".to_string(), service.to_string()),
    ]);
    template.render(&vars, &RenderOptions::japan(max_chars))
}

/// What one send needs beyond the config.
pub struct SendRequest {
    /// Recipient.
    pub to: PhoneNumber,
    /// Sender id.
    pub from: SenderId,
    /// The rendered text (holds the code).
    pub body: String,
    /// HMAC of the code.
    pub code_hash: Vec<u8>,
    /// The verification's id (the hash is bound to it).
    pub id: VerificationId,
    /// Lifetime of the code.
    pub ttl_seconds: u32,
    /// Caller-supplied end-user IP.
    pub client_ip: Option<String>,
    /// Caller-supplied end-user device.
    pub device_id: Option<String>,
}

/// The verification and its SMS, ready for the store; `now` is the OTP rules' time.
pub fn verification(req: SendRequest, config: &OtpConfig, now: DateTime<Utc>) -> NewVerification {
    let segmentation = Segmentation::of(&req.body);
    let expires_at = now + Duration::seconds(req.ttl_seconds as i64);
    NewVerification {
        prefix: req.to.national_prefix(config.pumping.prefix_digits),
        burst_prefix: req.to.burst_prefix().to_string(),
        code_hash: req.code_hash,
        max_checks: config.max_checks,
        expires_at,
        client_ip: req.client_ip,
        device_id: req.device_id,
        created_at: now,
        message: NewMessage {
            id: MessageId::new(),
            to: req.to,
            from: req.from.as_str().to_string(),
            body: req.body,
            segmentation,
            status: JobState::Queued,
            source: Source::Otp,
            metadata: Some(serde_json::json!({"verification_id": req.id.as_str()})),
            created_at: now,
            send_at: None,
            // The code is worthless once expired, so its SMS must not arrive later.
            expires_at: Some(expires_at),
            links: Vec::new(),
        },
        id: req.id,
    }
}

/// The configured limits, as the store counts them.
pub fn limits(config: &OtpConfig) -> OtpLimits {
    let p = &config.pumping;
    OtpLimits {
        cooldown_seconds: config.resend_cooldown_seconds.into(),
        per_number: config.max_sends_per_number.into(),
        per_ip: config.max_sends_per_ip.into(),
        per_device: config.max_sends_per_device.into(),
        window_seconds: config.send_window_seconds.into(),
        pumping_window_seconds: p.window_seconds.into(),
        pumping_grace_seconds: p.grace_seconds.into(),
        pumping_min_sends: p.min_sends.into(),
        pumping_min_conversion: p.min_conversion,
        pumping_block_seconds: p.block_seconds.into(),
        burst_max_sends: p.burst_max_sends.into(),
        burst_window_seconds: p.burst_window_seconds.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_requested_number_of_digits() {
        for length in CODE_LENGTHS {
            let code = generate_code(length);
            assert_eq!(code.len(), length as usize);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn the_openapi_document_states_the_bounds_the_api_enforces() {
        // utoipa takes only literals for `minimum`/`maximum`, so the document cannot use the
        // consts; this keeps the two from drifting apart.
        let document = crate::api::openapi::document();
        let fields = &document["components"]["schemas"]["StartOtp"]["properties"];
        for (field, range) in [("code_length", CODE_LENGTHS), ("ttl_seconds", TTL_SECONDS)] {
            assert_eq!(fields[field]["minimum"], *range.start(), "{field}");
            assert_eq!(fields[field]["maximum"], *range.end(), "{field}");
        }
    }

    #[test]
    fn codes_are_not_repeated() {
        let codes: std::collections::HashSet<String> =
            (0..1000).map(|_| generate_code(8)).collect();
        assert!(codes.len() > 990);
    }

    #[test]
    fn a_hash_verifies_only_its_code_and_its_verification() {
        let key = CodeKey::new("server-secret-0123456789");
        let id = VerificationId::new();
        let stored = key.hash(&id, "123456");
        assert!(key.verify(&id, "123456", &stored));
        assert!(!key.verify(&id, "123457", &stored));
        assert!(!key.verify(&VerificationId::new(), "123456", &stored));
        assert!(!CodeKey::new("another-secret-0123456").verify(&id, "123456", &stored));
    }

    #[test]
    fn the_default_text_names_the_service_the_code_and_the_expiry() {
        let body = text(
            crate::config::DEFAULT_OTP_TEMPLATE,
            "483920",
            300,
            "つなぎ",
            660,
        )
        .unwrap();
        assert!(body.contains("つなぎ") && body.contains("483920") && body.contains("5分"));
    }

    #[test]
    fn a_template_without_the_code_is_refused() {
        assert_eq!(
            text("hello {{service}}", "1", 300, "x", 660).unwrap_err(),
            TemplateError::MissingRequired("code".into())
        );
    }

    #[test]
    fn a_template_cannot_inspect_the_code() {
        for leaky in [
            r#"{% if code[0] == "1" %}x{% endif %}{{code}}"#,
            r#"{{ code | default("0") }}"#,
        ] {
            assert!(
                matches!(
                    text(leaky, "123456", 300, "x", 660),
                    Err(TemplateError::NotAllowed(_))
                ),
                "{leaky}"
            );
        }
    }

    #[test]
    fn conditions_on_other_variables_are_allowed() {
        let body = text(
            r#"{{code}}{% if minutes == "5" %} (5分){% endif %}"#,
            "483920",
            300,
            "x",
            660,
        )
        .unwrap();
        assert_eq!(body, "483920 (5分)");
    }
}

//! The rules a submission passes, each naming the field it judges.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::Refusal;
use crate::{
    domain::{
        phone::{NumberPolicy, PhoneError, PhoneNumber, PolicyViolation, SenderId, SENDER_FORMS},
        segment::Segmentation,
        template::{RenderOptions, Rules, Template, TemplateError},
        text,
    },
    links::{LinkRules, Rewritten},
    numbers::NumberHistory,
};

/// Furthest ahead a message may be scheduled.
pub const MAX_SCHEDULE_DAYS: i64 = 366;
/// Largest `metadata` object, serialised.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Any valid phone number, or `invalid_phone_number` on `field`.
pub fn phone_number(input: &str, field: &str) -> Result<PhoneNumber, Refusal> {
    PhoneNumber::parse(input).map_err(|_| Refusal::InvalidPhoneNumber {
        field: field.into(),
    })
}

/// A number the policy lets receive.
pub fn recipient(input: &str, field: &str, policy: &NumberPolicy) -> Result<PhoneNumber, Refusal> {
    let number = phone_number(input, field)?;
    policy.check(&number).map_err(|v| match v {
        PolicyViolation::CountryNotAllowed(country) => Refusal::CountryNotAllowed {
            field: field.into(),
            country,
        },
        PolicyViolation::KindNotAllowed(kind) => Refusal::NumberTypeNotAllowed {
            field: field.into(),
            kind,
        },
    })?;
    Ok(number)
}

/// The sender id given, or the default; one of `allowed` (canonical forms) unless it is empty.
pub fn sender(
    input: Option<&str>,
    default: &SenderId,
    allowed: &[String],
) -> Result<SenderId, Refusal> {
    let Some(text) = input else {
        return Ok(default.clone());
    };
    let id = SenderId::parse(text).map_err(|e| match e {
        PhoneError::ShortCodeLength => Refusal::invalid("from", format!("`from`: {e}")),
        PhoneError::Invalid => Refusal::invalid("from", format!("`from` must be {SENDER_FORMS}")),
    })?;
    if !allowed.is_empty() && !allowed.iter().any(|a| a == id.as_str()) {
        return Err(Refusal::invalid(
            "from",
            format!("`from` {id} is not one of the configured senders (delivery.senders)"),
        ));
    }
    Ok(id)
}

/// The text with its links held to the allow-list and, with `shorten`, replaced by short links;
/// a link outside the allowed domains is `link_domain_not_allowed` on `field`.
pub fn links(
    rules: &LinkRules,
    text: String,
    shorten: bool,
    field: &str,
    now: DateTime<Utc>,
) -> Result<Rewritten, Refusal> {
    rules
        .apply(text, shorten, now)
        .map_err(|e| Refusal::LinkDomainNotAllowed {
            field: field.into(),
            url: e.url,
        })
}

/// Refuse control characters (line breaks and tabs aside) in text that becomes a message.
pub fn plain_text(text: &str, field: &str) -> Result<(), Refusal> {
    match text::forbidden_character(text) {
        None => Ok(()),
        Some((position, c)) => Err(Refusal::invalid(
            field,
            format!(
                "`{field}` contains a control character ({}); only text, line breaks and tabs may be sent",
                text::describe(position, c)
            ),
        )),
    }
}

/// A template source a caller gave, checked against the whitelist under `rules`.
pub fn compile(source: &str, rules: &Rules<'_>) -> Result<Template, Refusal> {
    plain_text(source, "template")?;
    Template::compile(source, rules).map_err(template_refusal)
}

/// Field values as the text a template prints: strings, numbers and booleans, no control characters.
pub fn var_texts(
    vars: &BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, Refusal> {
    vars.iter()
        .map(|(name, value)| {
            let field = format!("vars.{name}");
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(Refusal::invalid(
                        field,
                        "template variables must be strings, numbers or booleans",
                    ))
                }
            };
            plain_text(&text, &field)?;
            Ok((name.clone(), text))
        })
        .collect()
}

/// Render a template with `vars`, times in `time_zone`, capped at `max_characters`.
pub fn render(
    template: &Template,
    vars: &BTreeMap<String, String>,
    time_zone: Tz,
    max_characters: usize,
) -> Result<String, Refusal> {
    let options = RenderOptions {
        time_zone,
        max_chars: max_characters,
    };
    template.render(vars, &options).map_err(template_refusal)
}

/// A text over `delivery.max_characters` is `message_too_long` on `body`, like a long `body`; a
/// printed field without a value is `missing_template_variable`; the rest are the template's own.
fn template_refusal(e: TemplateError) -> Refusal {
    match e {
        TemplateError::MissingVariable(name) => Refusal::MissingTemplateVariable { name },
        TemplateError::OutputTooLong(max) => Refusal::MessageTooLong {
            field: "body".into(),
            detail: format!("the body has more than {max} characters; at most {max} are allowed"),
        },
        e @ (TemplateError::Syntax(_)
        | TemplateError::NotAllowed(_)
        | TemplateError::TooLong
        | TemplateError::MissingRequired(_)
        | TemplateError::NotScalar(_)
        | TemplateError::Render(_)) => Refusal::invalid("template", e.to_string()),
    }
}

/// The text's segmentation, unless it is empty or longer than `max` characters.
pub fn length(text: &str, field: &str, max: usize) -> Result<Segmentation, Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::invalid(field, "the message body is empty"));
    }
    let segmentation = Segmentation::of(text);
    if segmentation.characters > max {
        return Err(Refusal::MessageTooLong {
            field: field.into(),
            detail: format!(
                "the {field} has {} characters; at most {max} are allowed",
                segmentation.characters
            ),
        });
    }
    Ok(segmentation)
}

/// When to send: `None` for now (absent or past), else a time at most a year ahead.
pub fn send_at(input: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Refusal> {
    let Some(text) = input else {
        return Ok(None);
    };
    let at = time(text, "send_at")?;
    if at > now + Duration::days(MAX_SCHEDULE_DAYS) {
        return Err(Refusal::invalid(
            "send_at",
            format!("`send_at` may be at most {MAX_SCHEDULE_DAYS} days ahead"),
        ));
    }
    Ok((at > now).then_some(at))
}

/// Furthest ahead a short link may be set to expire.
pub const MAX_LINK_DAYS: i64 = 3660;

/// When the message's short links stop working, if the submission says: after `send_at` (or
/// now) and at most `MAX_LINK_DAYS` ahead.
pub fn links_expire_at(
    input: Option<&str>,
    send_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Refusal> {
    let field = "links_expire_at";
    bounded_time(
        input,
        field,
        (
            send_at.unwrap_or(now),
            "`links_expire_at` must be after the message is sent",
        ),
        (
            now + Duration::days(MAX_LINK_DAYS),
            format!("`links_expire_at` may be at most {MAX_LINK_DAYS} days ahead"),
        ),
    )
}

/// Longest a message may stay worth sending after it is due: the usual SMSC maximum for a
/// validity period.
pub const MAX_EXPIRY_HOURS: i64 = 72;

/// When the message stops being worth sending, if the submission says: after it is due
/// (`send_at`, or now) and at most `MAX_EXPIRY_HOURS` after.
pub fn expires_at(
    input: Option<&str>,
    send_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Refusal> {
    let due = send_at.unwrap_or(now);
    bounded_time(
        input,
        "expires_at",
        (
            due,
            "`expires_at` must be after the message is due (`send_at`, or now)",
        ),
        (
            due + Duration::hours(MAX_EXPIRY_HOURS),
            format!(
                "`expires_at` may be at most {MAX_EXPIRY_HOURS} hours after the message is due"
            ),
        ),
    )
}

/// The time `input` names in `field`, if it names one: later than `after`, and no later than
/// `at_most`, each refused with its words.
fn bounded_time(
    input: Option<&str>,
    field: &str,
    (after, too_early): (DateTime<Utc>, &str),
    (at_most, too_late): (DateTime<Utc>, String),
) -> Result<Option<DateTime<Utc>>, Refusal> {
    let Some(text) = input else {
        return Ok(None);
    };
    let at = time(text, field)?;
    if at <= after {
        return Err(Refusal::invalid(field, too_early));
    }
    if at > at_most {
        return Err(Refusal::invalid(field, too_late));
    }
    Ok(Some(at))
}

/// An RFC 3339 time in `field`, to the millisecond the store keeps (so what is echoed is what is
/// kept).
fn time(text: &str, field: &str) -> Result<DateTime<Utc>, Refusal> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| {
            Refusal::invalid(
                field,
                format!("`{field}` must be an RFC 3339 time such as 2026-12-01T09:00:00+09:00"),
            )
        })?
        .with_timezone(&Utc);
    Ok(DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at))
}

/// Client metadata: a JSON object of bounded size.
pub fn metadata(value: Option<&serde_json::Value>) -> Result<(), Refusal> {
    let Some(value) = value else {
        return Ok(());
    };
    if !value.is_object() {
        return Err(Refusal::invalid(
            "metadata",
            "`metadata` must be a JSON object",
        ));
    }
    if value.to_string().len() > MAX_METADATA_BYTES {
        return Err(Refusal::invalid(
            "metadata",
            format!("`metadata` may be at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Whether to send to a number that may have been cancelled or reassigned since the CRM
/// confirmed it on `confirmed_on`; a failed lookup refuses or allows as `allow_on_error` says.
pub async fn history(
    history: &dyn NumberHistory,
    to: &PhoneNumber,
    confirmed_on: Option<&str>,
    allow_on_error: bool,
) -> Result<(), Refusal> {
    let Some(text) = confirmed_on else {
        return Ok(());
    };
    let since = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        Refusal::invalid(
            "number_confirmed_on",
            "`number_confirmed_on` must be a date such as 2026-11-01",
        )
    })?;
    match history.may_have_changed(to, since).await {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => Err(Refusal::NumberBlocked {
            field: "to".into(),
            reason: format!("not sent: {reason}"),
        }),
        Err(e) if allow_on_error => {
            tracing::warn!(error = %e, "number history unavailable; sending as configured");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "number history unavailable; refusing as configured");
            Err(Refusal::Unavailable {
                field: "number_confirmed_on".into(),
                detail:
                    "the cancellation-history check could not answer; nothing was sent, retry later"
                        .into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-29T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_expiry_must_fall_after_the_message_is_due_and_within_72_hours_of_it() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(expires_at(None, None, now()), Ok(None));
        assert_eq!(
            expires_at(Some("2026-11-29T00:10:00Z"), None, now()),
            Ok(Some(at("2026-11-29T00:10:00Z")))
        );
        let send_at = Some(at("2026-11-30T00:00:00Z"));
        assert_eq!(
            expires_at(Some("2026-12-03T00:00:00Z"), send_at, now()),
            Ok(Some(at("2026-12-03T00:00:00Z"))),
            "72 hours after send_at"
        );
        for refused in [
            ("2026-11-29T00:00:00Z", None),
            ("2026-11-29T12:00:00Z", send_at),
            ("2026-12-02T00:00:01Z", None),
            ("2026-12-03T00:00:01Z", send_at),
            ("in five minutes", None),
        ] {
            let e = expires_at(Some(refused.0), refused.1, now()).unwrap_err();
            assert_eq!(e.field(), "expires_at", "{refused:?}");
        }
    }

    #[test]
    fn a_past_send_at_means_now_and_a_far_one_is_refused() {
        assert_eq!(send_at(Some("2020-01-01T00:00:00Z"), now()), Ok(None));
        assert!(send_at(Some("2026-12-01T09:00:00+09:00"), now())
            .unwrap()
            .is_some());
        let far = send_at(Some("2028-01-01T00:00:00Z"), now()).unwrap_err();
        assert_eq!(far.field(), "send_at");
        assert_eq!(
            send_at(Some("tomorrow"), now()).unwrap_err().field(),
            "send_at"
        );
    }

    #[test]
    fn an_empty_or_long_text_is_refused_on_its_field() {
        assert_eq!(
            length("  ", "body", 10).unwrap_err().code(),
            "invalid_request"
        );
        let long = length(&"あ".repeat(11), "body", 10).unwrap_err();
        assert_eq!(
            (long.code(), long.field()),
            ("message_too_long", "body".into())
        );
        assert_eq!(length("hello", "body", 10).unwrap().characters, 5);
    }

    #[test]
    fn metadata_must_be_a_small_object() {
        assert!(metadata(Some(&serde_json::json!({"order": 1}))).is_ok());
        assert!(metadata(Some(&serde_json::json!([1]))).is_err());
        let big = serde_json::json!({"x": "y".repeat(MAX_METADATA_BYTES)});
        assert!(metadata(Some(&big)).is_err());
    }

    #[test]
    fn a_template_refusal_keeps_its_code_and_field() {
        let template = compile("{{name}}様", &Rules::default()).unwrap();
        let missing = render(&template, &BTreeMap::new(), chrono_tz::Asia::Tokyo, 660).unwrap_err();
        assert_eq!(missing.field(), "vars.name");
        let looped = compile("{% for x in y %}{% endfor %}", &Rules::default()).unwrap_err();
        assert_eq!(
            (looped.code(), looped.field()),
            ("invalid_request", "template".into())
        );
    }

    #[test]
    fn only_scalar_vars_become_text() {
        let vars = BTreeMap::from([
            ("n".to_string(), serde_json::json!(12)),
            ("b".to_string(), serde_json::json!(true)),
        ]);
        let texts = var_texts(&vars).unwrap();
        assert_eq!((texts["n"].as_str(), texts["b"].as_str()), ("12", "true"));
        let nested = BTreeMap::from([("x".to_string(), serde_json::json!([1]))]);
        assert_eq!(var_texts(&nested).unwrap_err().field(), "vars.x");
    }
}

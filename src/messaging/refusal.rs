//! Why a submission was not accepted: one variant per public error code, with the field it concerns.

use crate::domain::phone::NumberKind;

/// A submission refused by a rule. The HTTP API maps it to an RFC 9457 problem; a CRM route maps
/// the same refusal to a `rejected` status on the record, with `code()` and the detail.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// `invalid_request`: a field a rule refuses.
    #[error("{detail}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong, in words.
        detail: String,
    },
    /// `invalid_phone_number`: the field is not a phone number.
    #[error("`{field}` is not a phone number")]
    InvalidPhoneNumber {
        /// The field at fault.
        field: String,
    },
    /// `number_type_not_allowed`: a landline, an IP phone, a pager…
    #[error("`{field}` is a number of type {kind}; {}", if *kind == NumberKind::FixedLine { "landlines cannot receive SMS" } else { "only mobile numbers are allowed" })]
    NumberTypeNotAllowed {
        /// The field at fault.
        field: String,
        /// What the number is.
        kind: NumberKind,
    },
    /// `country_not_allowed`: the number's country is not allowed.
    #[error("`{field}` is a +{country} number; this service sends only to allowed countries")]
    CountryNotAllowed {
        /// The field at fault.
        field: String,
        /// Its calling code.
        country: u16,
    },
    /// `number_blocked`: a list, an opt-out or the cancellation-history check refuses the number.
    #[error("{reason}")]
    NumberBlocked {
        /// The field at fault.
        field: String,
        /// Why, in words.
        reason: String,
    },
    /// `message_too_long`: more characters than `delivery.max_characters`.
    #[error("{detail}")]
    MessageTooLong {
        /// The field at fault.
        field: String,
        /// How long it is and may be.
        detail: String,
    },
    /// `link_domain_not_allowed`: the text links outside `[links] allowed_domains`.
    #[error("the text links to {url}, which is not in an allowed domain (links.allowed_domains)")]
    LinkDomainNotAllowed {
        /// The field whose text holds the link.
        field: String,
        /// The link, as written.
        url: String,
    },
    /// `missing_template_variable`: the template prints a field that has no value.
    #[error("the template uses {{{{{name}}}}} but vars has no {name:?}")]
    MissingTemplateVariable {
        /// The variable.
        name: String,
    },
    /// `idempotency_key_reused`: the dedupe key came before with another request.
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    /// `rate_limited`: an OTP limit; retry after `retry_after` seconds.
    #[error("{reason}")]
    RateLimited {
        /// Which limit, in words.
        reason: String,
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// `unavailable`: a dependency (the history lookup) cannot answer; nothing was stored.
    #[error("{detail}")]
    Unavailable {
        /// The field whose check could not be made.
        field: String,
        /// What could not answer.
        detail: String,
    },
}

impl Refusal {
    /// `invalid_request` naming `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Refusal::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The stable error code, as the API and the CRM write-back show it.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid { .. } => "invalid_request",
            Refusal::InvalidPhoneNumber { .. } => "invalid_phone_number",
            Refusal::NumberTypeNotAllowed { .. } => "number_type_not_allowed",
            Refusal::CountryNotAllowed { .. } => "country_not_allowed",
            Refusal::NumberBlocked { .. } => "number_blocked",
            Refusal::MessageTooLong { .. } => "message_too_long",
            Refusal::LinkDomainNotAllowed { .. } => "link_domain_not_allowed",
            Refusal::MissingTemplateVariable { .. } => "missing_template_variable",
            Refusal::IdempotencyKeyReused => "idempotency_key_reused",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Unavailable { .. } => "unavailable",
        }
    }

    /// Whether the refusal is the answer for a CRM record, to be stored and written back as
    /// `rejected`: false when the same record may go through on a retry (a dependency that
    /// could not answer, a rate limit) or the refusal concerns the dedupe key, not the record.
    pub fn settles_the_record(&self) -> bool {
        !matches!(
            self,
            Refusal::Unavailable { .. }
                | Refusal::RateLimited { .. }
                | Refusal::IdempotencyKeyReused
        )
    }

    /// The submission field the refusal concerns.
    pub fn field(&self) -> String {
        match self {
            Refusal::Invalid { field, .. }
            | Refusal::InvalidPhoneNumber { field }
            | Refusal::NumberTypeNotAllowed { field, .. }
            | Refusal::CountryNotAllowed { field, .. }
            | Refusal::NumberBlocked { field, .. }
            | Refusal::MessageTooLong { field, .. }
            | Refusal::LinkDomainNotAllowed { field, .. }
            | Refusal::Unavailable { field, .. } => field.clone(),
            Refusal::MissingTemplateVariable { name } => format!("vars.{name}"),
            Refusal::IdempotencyKeyReused => "Idempotency-Key".into(),
            Refusal::RateLimited { .. } => "to".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_names_its_vars_field() {
        let r = Refusal::MissingTemplateVariable {
            name: "date".into(),
        };
        assert_eq!(
            (r.code(), r.field()),
            ("missing_template_variable", "vars.date".into())
        );
        assert_eq!(
            r.to_string(),
            "the template uses {{date}} but vars has no \"date\""
        );
    }

    #[test]
    fn only_refusals_about_the_record_settle_it() {
        let settled = [
            Refusal::invalid("template", "x"),
            Refusal::MissingTemplateVariable { name: "d".into() },
            Refusal::NumberBlocked {
                field: "MobilePhone".into(),
                reason: "opted out".into(),
            },
        ];
        assert!(settled.iter().all(Refusal::settles_the_record));
        let retried = [
            Refusal::Unavailable {
                field: "number_confirmed_on".into(),
                detail: "down".into(),
            },
            Refusal::RateLimited {
                reason: "cool-down".into(),
                retry_after: 30,
            },
            Refusal::IdempotencyKeyReused,
        ];
        assert!(!retried.iter().any(Refusal::settles_the_record));
    }

    #[test]
    fn number_kinds_are_explained_in_words() {
        let landline = Refusal::NumberTypeNotAllowed {
            field: "to".into(),
            kind: NumberKind::FixedLine,
        };
        assert!(landline
            .to_string()
            .contains("landlines cannot receive SMS"));
        let voip = Refusal::NumberTypeNotAllowed {
            field: "to".into(),
            kind: NumberKind::Voip,
        };
        assert!(voip.to_string().contains("only mobile numbers are allowed"));
    }
}

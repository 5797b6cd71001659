//! kintone error bodies (`{code, id, message, errors?}`) and what a caller should do about them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// What the caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Back off and retry: 429, concurrency limit, 5xx, network trouble, timeout.
    Retryable,
    /// The record changed since it was read (`GAIA_CO02`): re-read, then write again.
    Conflict,
    /// Retrying the same request cannot help.
    Final,
}

/// Revision conflict.
pub const REVISION_CONFLICT: &str = "GAIA_CO02";
/// Unknown API token, or the app not updated after the token was made.
pub const INVALID_API_TOKEN: &str = "GAIA_IA02";
/// Validation error, with a field map.
pub const VALIDATION: &str = "CB_VA01";
/// Too many concurrent requests (recorded with HTTP 429).
pub const TOO_MANY_CONCURRENT: &str = "GAIA_TO04";

/// The domain's open cursors are at their limit (10, each living up to 10 minutes; answered
/// with 429): a cursor limit, not a rate limit, reached by whatever else uses the domain.
pub const TOO_MANY_CURSORS: &str = "GAIA_TM12";

/// HTTP status kintone gives an application error: its `code` says whether to retry, where
/// another 5xx is the service being unavailable.
pub const APPLICATION_ERROR: u16 = 520;

/// Codes that mean "later": the concurrency limit, the cursor limit (cursors expire), and a
/// database lock kintone could not take ("try again after a while").
const RETRYABLE_CODES: [&str; 4] = [
    TOO_MANY_CONCURRENT,
    TOO_MANY_CURSORS,
    "GAIA_RE18",
    "GAIA_DA02",
];

/// An error body as kintone sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KintoneError {
    /// `GAIA_CO02`, `CB_VA01`…: match on this, never on the message (it follows the user's language).
    #[serde(default)]
    pub code: String,
    /// kintone's request id, for support.
    #[serde(default)]
    pub id: String,
    /// Human-readable, in the user's language.
    #[serde(default)]
    pub message: String,
    /// Validation messages by key (`record.F.value`, `records[0].F.value`…).
    #[serde(default, deserialize_with = "field_errors")]
    pub errors: BTreeMap<String, Vec<String>>,
}

impl KintoneError {
    /// Parses an error body, or a bulkRequest answer (`{"results":[{}, {error}, {}]}`) giving the
    /// failing request's index.
    pub fn parse(body: &[u8]) -> Option<(Self, Option<usize>)> {
        let value: Value = serde_json::from_slice(body).ok()?;
        if let Some(results) = value.get("results").and_then(Value::as_array) {
            return results.iter().enumerate().find_map(|(index, result)| {
                result.get("code")?;
                Some((Self::deserialize(result).ok()?, Some(index)))
            });
        }
        value.get("code")?;
        Some((Self::deserialize(&value).ok()?, None))
    }

    /// The validation messages by the field code they name (the innermost code for table cells),
    /// whatever form the key takes.
    pub fn field_errors(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_field: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, messages) in &self.errors {
            let field = field_code(key).unwrap_or_else(|| key.clone());
            by_field
                .entry(field)
                .or_default()
                .extend(messages.iter().cloned());
        }
        by_field
    }
}

fn field_errors<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    struct Messages {
        #[serde(default)]
        messages: Vec<String>,
    }
    let map = Option::<BTreeMap<String, Messages>>::deserialize(deserializer)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(key, m)| (key, m.messages))
        .collect())
}

/// The field code in a validation key: `record.F.value`, `record.F.values`,
/// `record.F.values.value`, `record[F].value`, `records[3].F.value`,
/// `record.T.value[1].value.F.value` (→ `F`).
pub fn field_code(key: &str) -> Option<String> {
    // Split on dots outside brackets, so `record[F]` and `records[3]` stay one segment.
    let mut segments = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in key.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                segments.push(&key[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    segments.push(&key[start..]);

    let is_value = |s: &str| s == "value" || s == "values" || s.starts_with("value[");
    let is_root = |s: &str| s == "record" || s == "records" || s.starts_with("records[");
    let mut code = None;
    for segment in segments {
        if let Some(inner) = segment
            .strip_prefix("record[")
            .and_then(|s| s.strip_suffix(']'))
        {
            code = Some(inner.to_owned());
        } else if !segment.is_empty() && !is_value(segment) && !is_root(segment) {
            code = Some(segment.to_owned());
        }
    }
    code
}

/// The class of an HTTP status with an optional kintone error.
pub(crate) fn classify(status: u16, error: Option<&KintoneError>) -> ErrorClass {
    let code = error.map(|e| e.code.as_str()).unwrap_or_default();
    if code == REVISION_CONFLICT || status == 409 {
        ErrorClass::Conflict
    } else if status == 429 || RETRYABLE_CODES.contains(&code) {
        ErrorClass::Retryable
    } else if status == APPLICATION_ERROR && !code.is_empty() {
        // An application error with any other code (an input kintone refuses) fails alike
        // however often it is sent.
        ErrorClass::Final
    } else if (500..=599).contains(&status) {
        ErrorClass::Retryable
    } else {
        ErrorClass::Final
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    fn error(code: &str) -> KintoneError {
        KintoneError {
            code: code.into(),
            id: "1505999166-897850006".into(),
            message: "m".into(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn a_520_is_judged_by_its_code_and_the_cursor_limit_is_retried_later() {
        assert_eq!(classify(520, Some(&error("GAIA_IL23"))), ErrorClass::Final);
        assert_eq!(
            classify(520, Some(&error("GAIA_RE18"))),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify(520, Some(&error("GAIA_DA02"))),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify(520, None),
            ErrorClass::Retryable,
            "no kintone body"
        );
        assert_eq!(
            classify(503, Some(&error("GAIA_XX01"))),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify(429, Some(&error(TOO_MANY_CURSORS))),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify(400, Some(&error(TOO_MANY_CURSORS))),
            ErrorClass::Retryable
        );
        assert_eq!(classify(400, Some(&error(VALIDATION))), ErrorClass::Final);
    }

    #[test]
    fn validation_keys_of_every_recorded_form_name_their_field() {
        for (key, field) in [
            ("record.電話番号.value", "電話番号"),
            ("record.対応.values", "対応"),
            ("record.担当者.values.value", "担当者"),
            ("record[電話番号].value", "電話番号"),
            ("records[0].SMS状態.value", "SMS状態"),
            ("record.明細.value[1].value.数量.value", "数量"),
        ] {
            assert_eq!(field_code(key).as_deref(), Some(field), "{key}");
        }
        assert_eq!(field_code("record"), None);
    }

    #[test]
    fn validation_error_exposes_its_field_map() {
        let (error, index) = KintoneError::parse(&fixture("error_validation.json")).unwrap();
        assert_eq!(index, None);
        assert_eq!(error.code, VALIDATION);
        assert_eq!(error.errors.len(), 5);
        let fields = error.field_errors();
        assert_eq!(
            fields["対応"],
            vec!["\"済\"は選択肢にありません。", "重複しています。"]
        );
        assert_eq!(fields["数量"], vec!["数字でなければなりません。"]);
        assert!(fields.contains_key("SMS状態") && fields.contains_key("担当者"));
        assert_eq!(fields["電話番号"], vec!["必須です。"]);
    }

    #[test]
    fn error_fixtures_parse_and_classify() {
        for (name, status, code, class) in [
            (
                "error_revision_conflict.json",
                409,
                REVISION_CONFLICT,
                ErrorClass::Conflict,
            ),
            (
                "error_invalid_token.json",
                400,
                INVALID_API_TOKEN,
                ErrorClass::Final,
            ),
            ("error_validation.json", 400, VALIDATION, ErrorClass::Final),
            (
                "error_too_many_requests.json",
                429,
                TOO_MANY_CONCURRENT,
                ErrorClass::Retryable,
            ),
        ] {
            let (error, _) = KintoneError::parse(&fixture(name)).unwrap();
            assert_eq!(error.code, code, "{name}");
            assert!(!error.message.is_empty() && !error.id.is_empty(), "{name}");
            assert_eq!(classify(status, Some(&error)), class, "{name}");
        }
        assert_eq!(classify(503, None), ErrorClass::Retryable);
        assert_eq!(classify(404, None), ErrorClass::Final);
    }

    #[test]
    fn a_bulk_error_is_found_at_its_index() {
        let body = br#"{"results":[{},{"code":"GAIA_CO02","id":"x","message":"m"},{}]}"#;
        let (error, index) = KintoneError::parse(body).unwrap();
        assert_eq!((error.code.as_str(), index), (REVISION_CONFLICT, Some(1)));
        assert!(KintoneError::parse(b"<html>").is_none());
    }
}

//! A CRM field value as a person reads it in an SMS.
//!
//! CRMs serialise values for machines: Salesforce SOAP sends every value as text (`45000.0`,
//! `2026-12-24T01:00:00.000Z`), its REST and Flow JSON use JSON types and `…000+0000` times.
//! Without a field's type, the value's own shape decides, and only shapes no person writes
//! are rewritten: a datetime in UTC and a number with a `.0` tail.

use chrono_tz::Tz;
use serde_json::Value;

use crate::domain::template;

/// `value` as a merge field shows it, in `zone` for datetimes; `None` when the field is empty.
///
/// - null and `""` are missing (Salesforce stores an empty text field as null), so the
///   template's `default` filter or its `missing_template_variable` refusal decides;
/// - a datetime becomes `2026-12-24 10:00` in `zone`; a date stays `2026-12-24`;
/// - a number loses a fractional part that is all zeros (`45000.0` → `45000`), and keeps any
///   other as given (`2.50` stays `2.50`: the CRM chose that scale);
/// - booleans and all other text stay as given (`true`, `Dental;Checkup`, `090-1234-5678`);
/// - lists and objects pass unchanged, for the admission path to refuse as merge values.
pub fn shown(value: &Value, zone: Tz) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(Value::String(shown_text(text, zone))),
        Value::Number(n) => Some(Value::String(without_zero_fraction(&n.to_string()))),
        Value::Bool(b) => Some(Value::String(b.to_string())),
        Value::Array(_) | Value::Object(_) => Some(value.clone()),
    }
}

fn shown_text(text: &str, zone: Tz) -> String {
    match template::parse_datetime(text) {
        Some(at) => at
            .with_timezone(&zone)
            .format(template::LOCAL_DATETIME_FORMAT)
            .to_string(),
        None => without_zero_fraction(text),
    }
}

/// `45000.0` → `45000`, `-3.00` → `-3`; anything but a plain decimal with an all-zero
/// fraction is returned as it is.
fn without_zero_fraction(text: &str) -> String {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let Some((int, frac)) = unsigned.split_once('.') else {
        return text.to_string();
    };
    let all = |s: &str, f: fn(u8) -> bool| !s.is_empty() && s.bytes().all(f);
    if all(int, |b| b.is_ascii_digit()) && all(frac, |b| b == b'0') {
        text[..text.len() - frac.len() - 1].to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TOKYO: Tz = chrono_tz::Asia::Tokyo;

    fn text(value: Value) -> Option<String> {
        shown(&value, TOKYO).map(|v| v.as_str().unwrap().to_string())
    }

    #[test]
    fn a_date_is_shown_as_given() {
        assert_eq!(text(json!("2026-12-24")).unwrap(), "2026-12-24");
    }

    #[test]
    fn a_soap_datetime_is_shown_in_the_connection_zone() {
        assert_eq!(
            text(json!("2026-12-24T01:00:00.000Z")).unwrap(),
            "2026-12-24 10:00"
        );
        assert_eq!(
            text(json!("2026-12-23T16:00:00.000Z")).unwrap(),
            "2026-12-24 01:00"
        );
    }

    #[test]
    fn a_rest_datetime_is_shown_in_the_connection_zone() {
        assert_eq!(
            text(json!("2026-12-25T01:30:00.000+0000")).unwrap(),
            "2026-12-25 10:30"
        );
    }

    #[test]
    fn another_zone_shows_its_own_local_time() {
        let shown = shown(
            &json!("2026-12-24T01:00:00.000Z"),
            chrono_tz::America::New_York,
        );
        assert_eq!(shown.unwrap(), json!("2026-12-23 20:00"));
    }

    #[test]
    fn numbers_lose_only_an_all_zero_fraction() {
        assert_eq!(text(json!("45000.0")).unwrap(), "45000");
        assert_eq!(text(json!("45000000.0")).unwrap(), "45000000");
        assert_eq!(text(json!("-3.00")).unwrap(), "-3");
        assert_eq!(text(json!("2.50")).unwrap(), "2.50");
        assert_eq!(text(json!("2.5")).unwrap(), "2.5");
        assert_eq!(text(json!(45000.0)).unwrap(), "45000");
        assert_eq!(text(json!(2.5)).unwrap(), "2.5");
        assert_eq!(text(json!(3)).unwrap(), "3");
    }

    #[test]
    fn text_that_only_looks_numeric_stays_as_given() {
        for given in [
            "090-1234-5678",
            "1.0.0",
            ".0",
            "1.",
            "0012",
            "1e3",
            "Dental;Checkup",
        ] {
            assert_eq!(text(json!(given)).unwrap(), given);
        }
    }

    #[test]
    fn booleans_are_shown_as_given() {
        assert_eq!(text(json!("false")).unwrap(), "false");
        assert_eq!(text(json!(true)).unwrap(), "true");
    }

    #[test]
    fn null_and_empty_fields_are_missing() {
        assert_eq!(shown(&Value::Null, TOKYO), None);
        assert_eq!(shown(&json!(""), TOKYO), None);
    }

    #[test]
    fn lists_and_objects_pass_for_the_admission_path_to_judge() {
        assert_eq!(shown(&json!([1]), TOKYO), Some(json!([1])));
    }
}

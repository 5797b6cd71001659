//! kintone's form: typed field values by field code, shown with the connector crate's
//! rendering (DATE as given, DATETIME to the minute in the connection's zone, NUMBER with its
//! digits as entered, users by name, check boxes joined with 、).

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde_json::Value;
use tsunagi_kintone::{FieldValue, Record};

use super::Fields;

impl Fields for Record {
    fn text(&self, code: &str) -> Option<String> {
        // Phones sit in text or link fields; any other type is shown as a person reads it and
        // left for the admission path to judge as a number.
        self.render(code, &chrono_tz::UTC)
    }

    /// A check box (or multi-select) with `option` checked, or any: kintone has no boolean
    /// field.
    fn is_checked(&self, code: &str, option: Option<&str>) -> bool {
        match self.get(code) {
            Some(FieldValue::CheckBox(checked) | FieldValue::MultiSelect(checked)) => {
                match option {
                    Some(option) => checked.iter().any(|c| c == option),
                    None => !checked.is_empty(),
                }
            }
            _ => false,
        }
    }

    fn vars(&self, zone: Tz) -> BTreeMap<String, Value> {
        self.iter()
            .filter_map(|(code, value)| {
                Some((code.to_string(), Value::String(value.render(&zone)?)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(fields: Value) -> Record {
        Record::from_json(&fields).unwrap()
    }

    #[test]
    fn values_are_shown_as_a_person_reads_them() {
        let r = record(json!({
            "予約日時": {"type": "DATETIME", "value": "2026-12-24T01:00:00Z"},
            "予約日": {"type": "DATE", "value": "2026-12-24"},
            "金額": {"type": "NUMBER", "value": "1234.50"},
            "担当者": {"type": "USER_SELECT", "value": [{"code": "sato", "name": "佐藤 花子"}]},
            "希望": {"type": "CHECK_BOX", "value": ["朝", "夜"]},
            "備考": {"type": "MULTI_LINE_TEXT", "value": ""},
        }));
        let vars = r.vars(chrono_tz::Asia::Tokyo);
        assert_eq!(vars["予約日時"], json!("2026-12-24 10:00"));
        assert_eq!(vars["予約日"], json!("2026-12-24"));
        assert_eq!(vars["金額"], json!("1234.50"));
        assert_eq!(vars["担当者"], json!("佐藤 花子"));
        assert_eq!(vars["希望"], json!("朝、夜"));
        assert!(!vars.contains_key("備考"), "empty fields are missing");
    }

    #[test]
    fn the_phone_is_read_from_a_text_or_link_field() {
        let r = record(json!({
            "携帯": {"type": "SINGLE_LINE_TEXT", "value": "090-1234-5678"},
            "Phone": {"type": "LINK", "value": "+81 90 1234 5678"},
            "空": {"type": "LINK", "value": ""},
        }));
        assert_eq!(r.text("携帯").unwrap(), "090-1234-5678");
        assert_eq!(r.text("Phone").unwrap(), "+81 90 1234 5678");
        assert_eq!(r.text("空"), None);
        assert_eq!(r.text("none"), None);
    }

    #[test]
    fn an_opt_out_is_any_checked_option_or_the_named_one() {
        let r = record(json!({
            "配信停止": {"type": "CHECK_BOX", "value": ["停止"]},
            "SMS配信": {"type": "CHECK_BOX", "value": ["受け取る"]},
            "未選択": {"type": "CHECK_BOX", "value": []},
            "文字": {"type": "SINGLE_LINE_TEXT", "value": "true"},
        }));
        assert!(r.is_checked("配信停止", None));
        assert!(!r.is_checked("未選択", None));
        assert!(!r.is_checked("文字", None), "only check boxes say checked");
        assert!(!r.is_checked("none", None));
        assert!(r.is_checked("SMS配信", None));
        assert!(
            !r.is_checked("SMS配信", Some("配信停止")),
            "受け取る is no opt-out"
        );
        assert!(r.is_checked("配信停止", Some("停止")));
    }
}

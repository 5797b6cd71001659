//! An app's form (`GET app/form/fields.json`), read for what a poller needs: each field's type
//! by code, and the system fields found by type (their codes differ by language and admin).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The fields of an app's form, by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// Each field's type (`SINGLE_LINE_TEXT`, `DROP_DOWN`, `STATUS`…), by code.
    pub types: BTreeMap<String, String>,
    /// Codes of fields that are switched off (process management's STATUS when it is off).
    pub disabled: Vec<String>,
    /// The options of each choice field (check box, drop-down, radio button, multi-select), in
    /// the form's order, by code.
    pub options: BTreeMap<String, Vec<String>>,
}

impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            properties: BTreeMap<String, Value>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let mut form = Form::default();
        for (code, field) in raw.properties {
            if field["enabled"] == false {
                form.disabled.push(code.clone());
            }
            if let Some(options) = field["options"].as_object() {
                let mut listed: Vec<(u64, &String)> = options
                    .iter()
                    .map(|(label, option)| {
                        let index = option["index"].as_str().and_then(|i| i.parse().ok());
                        (
                            index.or(option["index"].as_u64()).unwrap_or(u64::MAX),
                            label,
                        )
                    })
                    .collect();
                listed.sort();
                let labels = listed.into_iter().map(|(_, label)| label.clone()).collect();
                form.options.insert(code.clone(), labels);
            }
            if let Some(kind) = field["type"].as_str() {
                form.types.insert(code, kind.to_string());
            }
        }
        Ok(form)
    }
}

impl Form {
    /// The type of the field `code`, if the form has it.
    pub fn type_of(&self, code: &str) -> Option<&str> {
        self.types.get(code).map(String::as_str)
    }

    /// The code of the first enabled field of type `kind` (`STATUS`, `UPDATED_TIME`).
    pub fn code_of(&self, kind: &str) -> Option<&str> {
        self.types
            .iter()
            .find(|(code, t)| *t == kind && !self.disabled.contains(code))
            .map(|(code, _)| code.as_str())
    }

    /// The options of the choice field `code`, if the form has it with options.
    pub fn options_of(&self, code: &str) -> Option<&[String]> {
        self.options.get(code).map(Vec::as_slice)
    }

    /// The query condition that a check box `code` has an option checked (`in` every option),
    /// or `None` when the form has no options for it.
    pub fn checked_condition(&self, code: &str) -> Option<String> {
        let options = self.options_of(code).filter(|o| !o.is_empty())?;
        let quoted: Vec<String> = options
            .iter()
            .map(|o| format!("\"{}\"", quote(o)))
            .collect();
        Some(format!("{code} in ({})", quoted.join(", ")))
    }

    /// The query condition that a field `code` is empty: `in ("")` for the choice fields that
    /// take no `=` (drop-down, radio button), `= ""` for the others.
    pub fn empty_condition(&self, code: &str) -> String {
        match self.type_of(code) {
            Some("DROP_DOWN" | "RADIO_BUTTON") => format!("{code} in (\"\")"),
            _ => format!("{code} = \"\""),
        }
    }
}

/// `text` inside a kintone query's double quotes.
pub fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn the_recorded_form_gives_types_and_system_fields_by_type() {
        let form: Form =
            serde_json::from_slice(&fixture("form_fields_drop_down_status.json")).unwrap();
        assert_eq!(form.code_of("STATUS"), Some("ステータス"));
        assert_eq!(form.code_of("UPDATED_TIME"), Some("更新日時"));
        assert_eq!(form.type_of("sms_status"), Some("DROP_DOWN"));
        assert_eq!(form.empty_condition("sms_status"), "sms_status in (\"\")");
        assert_eq!(form.empty_condition("sms_reply"), "sms_reply = \"\"");
        assert_eq!(form.empty_condition("unknown"), "unknown = \"\"");
        assert_eq!(
            form.options_of("sms_status").unwrap(),
            ["送信待ち", "送信済", "配信済", "不達", "送信不可"],
            "in the form's order"
        );
        assert_eq!(form.options_of("氏名"), None);
    }

    #[test]
    fn a_checked_check_box_is_asked_for_by_every_option() {
        let form: Form = serde_json::from_str(
            r#"{"properties":{"SMS送信":{"type":"CHECK_BOX","code":"SMS送信","options":{"送信する":{"label":"送信する","index":"0"},"再送 \"至急\"":{"label":"再送 \"至急\"","index":"1"}}}},"revision":"4"}"#,
        )
        .unwrap();
        assert_eq!(
            form.checked_condition("SMS送信").unwrap(),
            r#"SMS送信 in ("送信する", "再送 \"至急\"")"#
        );
        assert_eq!(form.checked_condition("none"), None);
    }

    #[test]
    fn a_disabled_status_field_is_not_found() {
        let form: Form = serde_json::from_str(
            r#"{"properties":{"Status":{"type":"STATUS","code":"Status","enabled":false}},"revision":"2"}"#,
        )
        .unwrap();
        assert_eq!(form.code_of("STATUS"), None);
    }
}

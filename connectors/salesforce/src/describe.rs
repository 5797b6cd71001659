//! An sObject's describe (`GET sobjects/{object}/describe`), read for what a writer needs: which
//! fields exist and take writes, how long a text may be, and which values a picklist holds.

use serde::Deserialize;

/// Largest describe read: objects with hundreds of fields answer with several MiB.
pub const MAX_DESCRIBE_BYTES: usize = 16 * 1024 * 1024;

/// An object's fields, as its describe lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SObjectDescribe {
    /// The object's API name.
    pub name: String,
    /// Its fields.
    pub fields: Vec<FieldDescribe>,
}

/// One field of a describe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    /// The field's API name.
    pub name: String,
    /// Its type: `string`, `textarea`, `picklist`, `boolean`, `datetime`, ….
    #[serde(rename = "type")]
    pub kind: String,
    /// Most characters a text field holds; 0 for other types.
    #[serde(default)]
    pub length: usize,
    /// Whether the running user may write it on existing records.
    #[serde(default)]
    pub updateable: bool,
    /// Whether a picklist refuses values it does not list.
    #[serde(default)]
    pub restricted_picklist: bool,
    /// A picklist's values (empty for other types).
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
}

/// One value of a picklist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PicklistValue {
    /// The API value, the one written.
    pub value: String,
    /// Whether it may be chosen now.
    #[serde(default)]
    pub active: bool,
}

impl SObjectDescribe {
    /// The field named `name`; API names are case-insensitive.
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

impl FieldDescribe {
    /// Whether the field holds text of a bounded length (text, text area, picklist, phone…).
    pub fn is_text(&self) -> bool {
        self.length > 0
    }

    /// Whether it is a picklist (single or multi-select).
    pub fn is_picklist(&self) -> bool {
        self.kind == "picklist" || self.kind == "multipicklist"
    }

    /// Whether a picklist takes `value` now: it is an active value, or the picklist is not
    /// restricted. Values compare as Salesforce compares them, exactly.
    pub fn takes(&self, value: &str) -> bool {
        !self.restricted_picklist
            || self
                .picklist_values
                .iter()
                .any(|v| v.active && v.value == value)
    }

    /// `text` cut to the field's length, counted in UTF-16 units as Salesforce counts a
    /// string's length; a field that is not text takes it whole.
    pub fn fit<'a>(&self, text: &'a str) -> &'a str {
        if !self.is_text() {
            return text;
        }
        let mut units = 0;
        for (at, c) in text.char_indices() {
            units += c.len_utf16();
            if units > self.length {
                return &text[..at];
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    fn contact() -> SObjectDescribe {
        serde_json::from_slice(&fixture("describe_contact.json")).unwrap()
    }

    #[test]
    fn a_recorded_describe_gives_each_fields_type_length_and_picklist() {
        let d = contact();
        assert_eq!(d.name, "Contact");
        let status = d.field("sms_status__c").unwrap();
        assert!(status.is_picklist() && status.restricted_picklist && status.updateable);
        assert!(status.takes("配信済"));
        assert!(!status.takes("delivered"), "not a value");
        assert!(!status.takes("送信失敗"), "an inactive value");
        let detail = d.field("SMS_Status_Detail__c").unwrap();
        assert_eq!((detail.kind.as_str(), detail.length), ("string", 100));
        assert!(!d.field("Id").unwrap().updateable);
        assert!(d.field("No_Such_Field__c").is_none());
        let opt_out = d.field("SMS_Opt_Out__c").unwrap();
        assert!(!opt_out.is_text() && opt_out.takes("anything"));
    }

    #[test]
    fn text_is_cut_to_the_fields_length_in_utf16_units() {
        let d = contact();
        let detail = d.field("SMS_Status_Detail__c").unwrap();
        let long = "あ".repeat(150);
        assert_eq!(detail.fit(&long).chars().count(), 100);
        // An emoji is two units: it goes whole or not at all.
        let emoji = format!("{}😀", "a".repeat(99));
        assert_eq!(detail.fit(&emoji), "a".repeat(99));
        assert_eq!(detail.fit("short"), "short");
        let opt_out = d.field("SMS_Opt_Out__c").unwrap();
        assert_eq!(opt_out.fit(&long), long);
    }
}

//! A CRM record becomes a submission: the number from its phone field, the mapping's template,
//! and its fields as merge values rendered as a person reads them. Knows no particular CRM:
//! each CRM's field values read through [`Fields`].

mod kintone;
pub mod kintone_rules;
mod value;

use std::{collections::BTreeMap, fmt};

use chrono_tz::Tz;
use serde_json::Value;

pub use self::value::shown;
use crate::{
    domain::source::Source,
    messaging::{Content, Dedupe, Submission},
};

/// A record's fields as its CRM delivered them, read by field name (API name, field code).
/// `Sync`: inbound handlers hold a record across the admission path's awaits.
pub trait Fields: fmt::Debug + Sync {
    /// The field's value as text, for a phone number; `None` when absent or empty.
    fn text(&self, name: &str) -> Option<String>;
    /// Whether the field says "checked" (an opt-out): where it has options (a kintone check
    /// box), `option` is checked, or any when `None`.
    fn is_checked(&self, name: &str, option: Option<&str>) -> bool;
    /// Every non-empty field as a merge value, as a person reads it, times shown in `zone`.
    fn vars(&self, zone: Tz) -> BTreeMap<String, Value>;
}

/// Salesforce's form: JSON values by API name, as SOAP text or Flow JSON.
impl Fields for BTreeMap<String, Value> {
    fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(scalar_text)
    }

    /// A Salesforce checkbox is one boolean: `option` does not apply.
    fn is_checked(&self, name: &str, _option: Option<&str>) -> bool {
        self.get(name).is_some_and(is_checked)
    }

    fn vars(&self, zone: Tz) -> BTreeMap<String, Value> {
        let mut vars = BTreeMap::new();
        flatten("", self.iter(), zone, &mut vars);
        vars
    }
}

/// Relationship levels a merge field may reach (`Owner.Manager.Account.Name`), as many as SOQL
/// traverses from a child to its parents.
const MAX_RELATIONSHIP_DEPTH: usize = 5;

/// Salesforce's record shapes as merge values: the `attributes` object Apex and REST add is
/// left out, a relationship's fields are named by path (`Account.Name`), and what holds no
/// single value (a list, a relationship deeper than `MAX_RELATIONSHIP_DEPTH`) is left out too,
/// so only a template that names it is refused.
fn flatten<'a>(
    prefix: &str,
    fields: impl Iterator<Item = (&'a String, &'a Value)>,
    zone: Tz,
    vars: &mut BTreeMap<String, Value>,
) {
    for (name, value) in fields {
        if name == "attributes" {
            continue;
        }
        let path = format!("{prefix}{name}");
        match value {
            Value::Object(inner) if prefix.matches('.').count() < MAX_RELATIONSHIP_DEPTH => {
                flatten(&format!("{path}."), inner.iter(), zone, vars)
            }
            Value::Object(_) | Value::Array(_) => {}
            _ => {
                if let Some(shown) = shown(value, zone) {
                    vars.insert(path, shown);
                }
            }
        }
    }
}

/// How records of one object type become messages (a `[[salesforce.mappings]]` entry, a
/// `[[kintone]]` connection).
#[derive(Clone, Copy, Debug)]
pub struct Mapping<'a> {
    /// The field holding the recipient's number.
    pub phone_field: &'a str,
    /// The SMS text, merge fields named by field name (API name, field code).
    pub template: &'a str,
    /// A checkbox field that, when checked, says the record opted out of SMS.
    pub opt_out_field: Option<&'a str>,
    /// The option of `opt_out_field` that says so, where it has options; any when `None`.
    pub opt_out_option: Option<&'a str>,
    /// Its messages are not advertising (see `[opt_outs] exempt_transactional`).
    pub transactional: bool,
}

/// One CRM record as its source delivered it.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// Where it came from (the connection and the record, for write-back).
    pub source: Source,
    /// Its field values.
    pub fields: &'a dyn Fields,
    /// The zone datetimes are shown in.
    pub time_zone: Tz,
    /// A number given beside the fields (a Flow's `phone`), used instead of the phone field.
    pub phone: Option<&'a str>,
    /// A template given beside the fields (a Flow's `template`), used instead of the mapping's;
    /// it comes from the admin's Flow, never from record values.
    pub template: Option<&'a str>,
    /// Makes the submission happen once (an Outbound Message's notification id).
    pub dedupe: Option<Dedupe>,
}

impl Mapping<'_> {
    /// The submission `record` makes: every judgement (a missing or refused number, a missing
    /// merge field, an opt-out) is left to the admission path, which refuses with its codes.
    pub fn submission(&self, record: Record<'_>) -> Submission {
        let (to, to_field) = match record.phone.filter(|p| !p.trim().is_empty()) {
            Some(phone) => (phone.to_string(), "phone".to_string()),
            None => (
                record.fields.text(self.phone_field).unwrap_or_default(),
                self.phone_field.to_string(),
            ),
        };
        let vars = record.fields.vars(record.time_zone);
        let opted_out = self
            .opt_out_field
            .filter(|field| record.fields.is_checked(field, self.opt_out_option))
            .map(|field| format!("the record has opted out of SMS ({field} is checked)"));
        Submission {
            source: record.source,
            to,
            to_field,
            content: Content::Template {
                source: record.template.unwrap_or(self.template).to_string(),
                vars,
                time_zone: record.time_zone,
            },
            from: None,
            send_at: None,
            metadata: None,
            number_confirmed_on: None,
            opted_out,
            dedupe: record.dedupe,
            transactional: self.transactional,
            shorten_links: None,
            links_expire_at: None,
            expires_at: None,
        }
    }
}

/// A text or number field's value as text; `None` for anything else.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A checkbox that is checked: JSON `true`, or `true` as SOAP writes it.
fn is_checked(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MAPPING: Mapping<'static> = Mapping {
        opt_out_option: None,
        phone_field: "MobilePhone",
        template: "{{LastName}}様 {{Appointment__c}}",
        opt_out_field: Some("SMS_Opt_Out__c"),
        transactional: false,
    };

    fn record(fields: &BTreeMap<String, Value>) -> Record<'_> {
        Record {
            source: Source::Crm {
                connection: "salesforce:prod".into(),
                record: "Contact/0035j00000Pq7RsAAJ".into(),
            },
            fields,
            time_zone: chrono_tz::Asia::Tokyo,
            phone: None,
            template: None,
            dedupe: None,
        }
    }

    fn fields(value: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_phone_field_and_the_mapping_template_make_the_submission() {
        let f = fields(json!({
            "MobilePhone": "090-1234-5678",
            "LastName": "山田",
            "Appointment__c": "2026-12-24T01:00:00.000Z",
            "Notes__c": null,
        }));
        let s = MAPPING.submission(record(&f));
        assert_eq!(
            (s.to.as_str(), s.to_field.as_str()),
            ("090-1234-5678", "MobilePhone")
        );
        let Content::Template { source, vars, .. } = s.content else {
            panic!("a template")
        };
        assert_eq!(source, MAPPING.template);
        assert_eq!(vars["Appointment__c"], json!("2026-12-24 10:00"));
        assert!(!vars.contains_key("Notes__c"), "null fields are missing");
        assert!(s.opted_out.is_none());
    }

    #[test]
    fn a_given_phone_and_template_replace_the_mapping_ones() {
        let f = fields(json!({"MobilePhone": "090-1234-5678"}));
        let s = MAPPING.submission(Record {
            phone: Some("080-1111-2222"),
            template: Some("{{LastName}}"),
            ..record(&f)
        });
        assert_eq!(
            (s.to.as_str(), s.to_field.as_str()),
            ("080-1111-2222", "phone")
        );
        assert!(matches!(s.content, Content::Template { source, .. } if source == "{{LastName}}"));
    }

    #[test]
    fn a_missing_phone_is_left_for_the_admission_path_to_refuse() {
        let f = fields(json!({"LastName": "山田"}));
        let s = MAPPING.submission(Record {
            phone: Some(" "),
            ..record(&f)
        });
        assert_eq!((s.to.as_str(), s.to_field.as_str()), ("", "MobilePhone"));
    }

    #[test]
    fn a_checked_opt_out_field_is_reported_in_either_form() {
        for checked in [json!(true), json!("true")] {
            let f = fields(json!({"SMS_Opt_Out__c": checked}));
            let reason = MAPPING.submission(record(&f)).opted_out.unwrap();
            assert!(reason.contains("SMS_Opt_Out__c"), "{reason}");
        }
        for unchecked in [json!(false), json!("false"), Value::Null] {
            let f = fields(json!({"SMS_Opt_Out__c": unchecked}));
            assert!(MAPPING.submission(record(&f)).opted_out.is_none());
        }
    }

    #[test]
    fn apex_and_rest_record_shapes_become_merge_fields_by_path() {
        let fields = fields(json!({
            "attributes": {"type": "Contact", "url": "/services/data/v67.0/sobjects/Contact/003"},
            "LastName": "山田",
            "Title": null,
            "Account": {
                "attributes": {"type": "Account", "url": "/services/data/v67.0/sobjects/Account/001"},
                "Name": "山田商事",
                "Owner": {"Name": "佐藤", "Manager": {"Manager": {"Manager": {"Manager": {"Name": "deep"}}}}}
            },
            "Cases": {"totalSize": 1, "done": true, "records": [{"Subject": "x"}]}
        }));
        let vars = fields.vars(chrono_tz::Asia::Tokyo);
        let names: Vec<&str> = vars.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "Account.Name",
                "Account.Owner.Name",
                "Cases.done",
                "Cases.totalSize",
                "LastName"
            ],
            "no attributes, no null, no list, nothing past five levels"
        );
        assert_eq!(vars["Account.Name"], json!("山田商事"));
    }
}

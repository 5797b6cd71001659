//! What a Salesforce org's setup must give a mapping, checked against an object's describe: the
//! fields it writes exist and take writes, and a restricted status picklist holds every value
//! written, so a misconfiguration shows at start instead of as refused write-backs.

use tsunagi_salesforce::SObjectDescribe;

use super::{MessageLog, StatusFields};
use crate::domain::state::JobState;

/// What is wrong with `object`'s fields for `fields`, one sentence each naming the field.
pub fn problems(object: &str, fields: &StatusFields, described: &SObjectDescribe) -> Vec<String> {
    let mut out = Vec::new();
    let written = [
        Some(&fields.status),
        Some(&fields.detail),
        Some(&fields.reply),
        fields.opt_out.as_ref(),
        fields.click.as_ref(),
    ];
    for name in written.into_iter().flatten() {
        writable(object, name, described, &mut out);
    }
    if let Some(status) = described.field(&fields.status) {
        let missing: Vec<String> = JobState::ALL
            .iter()
            .map(|state| fields.status_value(*state))
            .filter(|value| !status.takes(value))
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "{object}.{} is a restricted picklist without the values tsunagi writes: {} \
                 (add them as active values, or name its own values in status_values)",
                status.name,
                missing.join(", ")
            ));
        }
    }
    out
}

/// What is wrong with a message log object's fields.
pub fn log_problems(log: &MessageLog, described: &SObjectDescribe) -> Vec<String> {
    let mut out = Vec::new();
    let written = [
        Some(&log.external_id_field),
        Some(&log.record_field),
        Some(&log.status_field),
        log.detail_field.as_ref(),
    ];
    for name in written.into_iter().flatten() {
        writable(&log.object, name, described, &mut out);
    }
    out
}

fn writable(object: &str, name: &str, described: &SObjectDescribe, out: &mut Vec<String>) {
    match described.field(name) {
        None => out.push(format!(
            "{object}.{name} does not exist, or the integration user cannot see it \
             (field-level security)"
        )),
        Some(field) if !field.updateable => out.push(format!(
            "{object}.{name} is read-only for the integration user (give it Edit access)"
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn contact() -> SObjectDescribe {
        let path = format!(
            "{}/tests/fixtures/salesforce/describe_contact.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn fields(status_values: &[(&str, &str)]) -> StatusFields {
        StatusFields {
            phone: "MobilePhone".into(),
            status: "SMS_Status__c".into(),
            detail: "SMS_Status_Detail__c".into(),
            reply: "SMS_Last_Reply__c".into(),
            opt_out: Some("SMS_Opt_Out__c".into()),
            click: Some("SMS_Clicked_At__c".into()),
            status_values: status_values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_restricted_picklist_is_checked_for_every_value_written_naming_the_missing_ones() {
        let found = problems("Contact", &fields(&[("delivered", "配信済")]), &contact());
        assert_eq!(found.len(), 1, "{found:?}");
        let problem = &found[0];
        assert!(problem.starts_with("Contact.SMS_Status__c is a restricted picklist"));
        for missing in ["queued", "scheduled", "failed", "canceled"] {
            assert!(problem.contains(missing), "{problem}");
        }
        assert!(!problem.contains("配信済"), "{problem}");
    }

    #[test]
    fn a_mapping_naming_the_picklists_own_values_has_no_problem() {
        let all = [
            ("queued", "受付"),
            ("scheduled", "受付"),
            ("sending", "送信中"),
            ("sent", "送信済"),
            ("delivered", "配信済"),
            ("undelivered", "不達"),
            ("failed", "送信不可"),
            ("canceled", "送信不可"),
            ("rejected", "送信不可"),
        ];
        assert_eq!(
            problems("Contact", &fields(&all), &contact()),
            Vec::<String>::new()
        );
        // An inactive value is refused as a missing one.
        let mut inactive = all;
        inactive[6] = ("failed", "送信失敗");
        let found = problems("Contact", &fields(&inactive), &contact());
        assert!(found[0].ends_with("values tsunagi writes: 送信失敗 (add them as active values, or name its own values in status_values)"), "{found:?}");
    }

    #[test]
    fn a_field_missing_or_read_only_is_named() {
        let mut f = fields(&[]);
        f.reply = "SMS_Reply__c".into();
        f.click = Some("Appointment_Date__c".into());
        let found = problems("Contact", &f, &contact());
        assert!(found
            .iter()
            .any(|p| p.starts_with("Contact.SMS_Reply__c does not exist")));
        assert!(found
            .iter()
            .any(|p| p.starts_with("Contact.Appointment_Date__c is read-only")));
    }

    #[test]
    fn a_message_log_objects_fields_are_checked_too() {
        let log = MessageLog {
            object: "Contact".into(),
            external_id_field: "Id".into(),
            record_field: "LastName".into(),
            status_field: "SMS_Status__c".into(),
            detail_field: Some("Nope__c".into()),
        };
        let found = log_problems(&log, &contact());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("Contact.Id is read-only"));
        assert!(found[1].starts_with("Contact.Nope__c does not exist"));
    }
}

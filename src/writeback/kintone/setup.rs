//! What a kintone connection writes, checked against the app's form at start: a field that is
//! missing or of another type, and every status value a choice field lacks, named in `/readyz`
//! before the first write-back is refused for it.

use tsunagi_kintone::Form;

use super::KintoneFields;
use crate::domain::state::JobState;

/// The problems of `form` for `fields`, each naming its field.
pub(super) fn problems(form: &Form, fields: &KintoneFields) -> Vec<String> {
    let mut problems = Vec::new();
    for field in [&fields.status, &fields.detail, &fields.reply] {
        if form.type_of(field).is_none() {
            problems.push(format!("the field {field} is not in the app's form"));
        }
    }
    let check_boxes = [
        (&fields.opt_out, "opt_out_field"),
        (&fields.trigger, "trigger_field"),
    ];
    for (field, key) in check_boxes {
        let Some(field) = field else { continue };
        match form.type_of(field) {
            Some("CHECK_BOX") => {}
            Some(other) => problems.push(format!("{key} {field} is a {other}, not a check box")),
            None => problems.push(format!("{key} {field} is not in the app's form")),
        }
    }
    if let (Some(field), Some(option)) = (&fields.opt_out, &fields.opt_out_option) {
        let options = form.options_of(field).unwrap_or_default();
        if form.type_of(field).is_some() && !options.contains(option) {
            problems.push(format!(
                "opt_out_option {option:?} is not an option of {field}"
            ));
        }
    }
    if let Some(options) = form.options_of(&fields.status).filter(|_| {
        matches!(
            form.type_of(&fields.status),
            Some("DROP_DOWN" | "RADIO_BUTTON")
        )
    }) {
        let missing: Vec<&str> = JobState::ALL
            .iter()
            .map(|state| state.shown_as(&fields.status_values))
            .filter(|value| !options.iter().any(|o| o == value))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "the status field {} lacks the options {} (add them, or name its own in status_values)",
                fields.status,
                missing.join(", ")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn form() -> Form {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kintone/form_fields_drop_down_status.json"
        ))
        .unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    fn fields(values: &[(&str, &str)]) -> KintoneFields {
        KintoneFields {
            status: "sms_status".into(),
            detail: "sms_status_detail".into(),
            reply: "sms_reply".into(),
            opt_out: None,
            click: None,
            trigger: None,
            status_values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            opt_out_option: None,
            action_on_delivered: None,
        }
    }

    #[test]
    fn a_drop_down_status_field_names_every_value_it_lacks() {
        let english = problems(&form(), &fields(&[]));
        assert_eq!(english.len(), 1, "{english:?}");
        assert!(english[0].contains("delivered, undelivered"), "{english:?}");
        let japanese = fields(&[
            ("queued", "送信待ち"),
            ("scheduled", "送信待ち"),
            ("sending", "送信待ち"),
            ("sent", "送信済"),
            ("delivered", "配信済"),
            ("undelivered", "不達"),
            ("failed", "送信不可"),
            ("canceled", "送信不可"),
            ("rejected", "送信不可"),
        ]);
        assert!(problems(&form(), &japanese).is_empty());
        let one_short = fields(&[("delivered", "配信済み")]);
        assert!(problems(&form(), &one_short)[0].contains("配信済み"));
    }

    #[test]
    fn a_missing_field_or_a_trigger_that_is_no_check_box_is_named() {
        let mut f = fields(&[]);
        f.status = "sms_state".into();
        f.trigger = Some("氏名".into());
        let found = problems(&form(), &f);
        assert!(
            found.iter().any(|p| p.contains("sms_state is not in")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("trigger_field 氏名 is a SINGLE_LINE_TEXT")),
            "{found:?}"
        );
    }
}

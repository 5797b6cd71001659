//! A handset's opt-out (or opt-in) written on every record of a mapping whose phone field holds
//! its number, not only on the record whose message it answered: one SOQL query per object and
//! round finds them, by each way the number is commonly written, and each found record's field
//! value is read back as a number before it is written, so only exact matches change.

use std::collections::BTreeMap;

use tsunagi_salesforce::rest::{soql_literal, soql_name, RestError, SObject};

use crate::domain::phone::PhoneNumber;

/// Numbers asked for in one query: each brings about ten written forms, and the query travels
/// in the URL.
pub const NUMBERS_PER_QUERY: usize = 20;
/// Most records one round changes for one object; a number on more records than this is not a
/// person's.
pub const MAX_RECORDS: usize = 2000;

/// The consent of each number that changed this round on records of one object.
#[derive(Debug, Default)]
pub struct Changes {
    /// Opted out (true) or back in, by number, the latest of the round.
    pub by_number: BTreeMap<String, (PhoneNumber, bool)>,
    /// The records already written with it this round, by 18-character id.
    pub written: Vec<String>,
}

/// The query for the records of `object` whose `phone_field` holds one of `numbers`.
pub fn query(
    object: &str,
    phone_field: &str,
    numbers: &[&PhoneNumber],
) -> Result<String, RestError> {
    let forms: Vec<String> = numbers
        .iter()
        .flat_map(|n| n.written_forms())
        .map(|form| soql_literal(&form))
        .collect();
    let (object, field) = (soql_name(object)?, soql_name(phone_field)?);
    Ok(format!(
        "SELECT Id, {field} FROM {object} WHERE {field} IN ({}) LIMIT {MAX_RECORDS}",
        forms.join(", ")
    ))
}

/// The updates that give the found `records` their number's consent in `opt_out_field`,
/// leaving out those written already and any whose phone is not exactly one of the numbers.
pub fn updates(
    object: &str,
    phone_field: &str,
    opt_out_field: &str,
    changes: &Changes,
    records: &[serde_json::Map<String, serde_json::Value>],
) -> Vec<SObject> {
    records
        .iter()
        .filter_map(|record| {
            let id = record.get("Id")?.as_str()?;
            if changes
                .written
                .iter()
                .any(|w| tsunagi_salesforce::same_entity(w, id))
            {
                return None;
            }
            let phone = record.get(phone_field)?.as_str()?;
            let number = PhoneNumber::parse(phone).ok()?;
            let (_, opted_out) = changes.by_number.get(number.e164())?;
            Some(
                SObject::new(object)
                    .with_id(id)
                    .set(opt_out_field, *opted_out),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

    fn record(id: &str, phone: Value) -> Map<String, Value> {
        json!({"attributes": {"type": "Contact"}, "Id": id, "MobilePhone": phone})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn the_query_asks_for_every_written_form_of_each_number() {
        let a = PhoneNumber::parse("090-1234-5678").unwrap();
        let b = PhoneNumber::parse("080-1111-2222").unwrap();
        let soql = query("Contact", "MobilePhone", &[&a, &b]).unwrap();
        assert!(soql.starts_with("SELECT Id, MobilePhone FROM Contact WHERE MobilePhone IN ('"));
        for form in [
            "'090-1234-5678'",
            "'+819012345678'",
            "'０８０－１１１１－２２２２'",
        ] {
            assert!(soql.contains(form), "{form} in {soql}");
        }
        assert!(soql.ends_with(") LIMIT 2000"));
        assert!(query("Contact", "Mobile Phone", &[&a]).is_err());
    }

    #[test]
    fn only_records_holding_exactly_a_changed_number_and_not_yet_written_change() {
        let mobile = PhoneNumber::parse("090-1234-5678").unwrap();
        let changes = Changes {
            by_number: BTreeMap::from([(mobile.e164().to_string(), (mobile.clone(), true))]),
            written: vec!["0035j00000Pq7Rs".into()],
        };
        let found = [
            record("0035j00000Pq7RsAAJ", json!("090-1234-5678")),
            record("0035j00000Pq7RtAAJ", json!("+81 90-1234-5678")),
            record("0035j00000Pq7RuAAJ", json!("０９０１２３４５６７８")),
            record("0035j00000Pq7RvAAJ", json!("090-1234-5679")),
            record("0035j00000Pq7RwAAJ", Value::Null),
        ];
        let out = updates("Contact", "MobilePhone", "SMS_Opt_Out__c", &changes, &found);
        let ids: Vec<&str> = out.iter().map(|r| r.id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["0035j00000Pq7RtAAJ", "0035j00000Pq7RuAAJ"]);
        assert!(out.iter().all(|r| r.fields["SMS_Opt_Out__c"] == true));
    }
}

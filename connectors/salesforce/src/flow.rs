//! JSON that a Flow HTTP callout or External Services action sends, and the answer it gets.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::ids::{IdError, RecordId};

/// Most records one request may carry (a Flow's bulkified batch).
pub const MAX_FLOW_RECORDS: usize = 200;

/// `{records:[…]}` posted by the Flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRequest {
    /// The records to message, 1 to [`MAX_FLOW_RECORDS`].
    pub records: Vec<FlowRecord>,
}

/// One record of a Flow request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The record id as the Flow sent it; see [`FlowRecord::record_id`].
    pub id: String,
    /// The record's object API name.
    pub sobject: String,
    /// Phone number to use instead of the mapping's phone field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Field values for the template, by API name; Flow sends JSON types, `null` for empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub fields: BTreeMap<String, Value>,
    /// Template to use instead of the mapping's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl FlowRecord {
    /// The id, checked; kept as text in the request so one bad id refuses one record, not all.
    pub fn record_id(&self) -> Result<RecordId, IdError> {
        RecordId::parse(&self.id)
    }
}

/// `{results:[…]}`, one result per request record, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowResponse {
    /// Results in the order of the request's records.
    pub results: Vec<FlowResult>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowResult {
    /// The record id, as sent in the request.
    pub id: String,
    /// The message created for the record, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Status of the message (`queued`, `scheduled`) or `rejected`.
    pub status: String,
    /// Why the record was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FlowResultError>,
}

impl FlowResult {
    /// A record that became a message.
    pub fn accepted(
        id: impl Into<String>,
        message_id: impl Into<String>,
        status: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            message_id: Some(message_id.into()),
            status: status.into(),
            error: None,
        }
    }

    /// A record refused with a stable code and a human message.
    pub fn rejected(
        id: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            message_id: None,
            status: "rejected".to_owned(),
            error: Some(FlowResultError {
                code: code.into(),
                message: message.into(),
            }),
        }
    }
}

/// A per-record refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowResultError {
    /// Stable machine-readable code.
    pub code: String,
    /// Explanation for the admin reading the Flow's fault path.
    pub message: String,
}

/// Why a Flow request as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowRequestError {
    /// Not JSON of the expected shape.
    #[error("invalid Flow request: {0}")]
    Json(String),
    /// No records.
    #[error("the request holds no records")]
    Empty,
    /// More records than one request may carry.
    #[error("{count} records, more than the {limit} one request may carry")]
    TooManyRecords {
        /// Records in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl FlowRequest {
    /// Checks the record count against 1..=[`MAX_FLOW_RECORDS`].
    pub fn check_bounds(&self) -> Result<(), FlowRequestError> {
        match self.records.len() {
            0 => Err(FlowRequestError::Empty),
            count if count > MAX_FLOW_RECORDS => Err(FlowRequestError::TooManyRecords {
                count,
                limit: MAX_FLOW_RECORDS,
            }),
            _ => Ok(()),
        }
    }

    /// Parses a request body and checks its bounds.
    pub fn from_slice(body: &[u8]) -> Result<Self, FlowRequestError> {
        let request: Self =
            serde_json::from_slice(body).map_err(|e| FlowRequestError::Json(e.to_string()))?;
        request.check_bounds()?;
        Ok(request)
    }
}

/// Most merge values one record action carries.
pub const MAX_MERGE_FIELDS: usize = 100;

/// One record as an External Services action sends it. A Flow cannot build a free-form map, so
/// the merge values come as a list of name/value pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordAction {
    /// The record's 15- or 18-character id.
    pub record_id: String,
    /// The record's object API name.
    pub sobject: String,
    /// Phone number to use instead of the mapping's phone field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The template's merge values; `Account.Name` reaches a relationship field.
    #[serde(default, deserialize_with = "null_as_none")]
    pub merge_fields: Vec<MergeField>,
    /// Template to use instead of the mapping's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// One merge value: a field's API name (or relationship path) and its value as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeField {
    /// `LastName`, or `Account.Name` through a relationship.
    pub name: String,
    /// The value; `null` (an empty Flow variable) for none.
    #[serde(default)]
    pub value: Option<String>,
}

/// Why a record action's merge values cannot make a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordActionError {
    /// More pairs than one action may carry.
    #[error("{count} merge fields, more than the {limit} one action may carry")]
    TooManyMergeFields {
        /// Pairs sent.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A name that is not an API name or a dotted path of them.
    #[error("merge_fields[{index}].name {name:?} is not a field API name or relationship path")]
    BadName {
        /// The pair's position.
        index: usize,
        /// The name sent.
        name: String,
    },
    /// A name given twice, or given both as a value and as a relationship.
    #[error("merge_fields[{index}].name {name:?} is given twice")]
    Duplicate {
        /// The later pair's position.
        index: usize,
        /// The name sent.
        name: String,
    },
}

impl RecordActionError {
    /// The request field the error is about.
    pub fn field(&self) -> String {
        match self {
            Self::TooManyMergeFields { .. } => "merge_fields".into(),
            Self::BadName { index, .. } | Self::Duplicate { index, .. } => {
                format!("merge_fields[{index}].name")
            }
        }
    }
}

impl RecordAction {
    /// The action as a Flow record: the pairs become its fields, a dotted name nesting as
    /// Salesforce serializes a relationship (`Account.Name` → `{"Account": {"Name": …}}`).
    pub fn into_flow_record(self) -> Result<FlowRecord, RecordActionError> {
        if self.merge_fields.len() > MAX_MERGE_FIELDS {
            return Err(RecordActionError::TooManyMergeFields {
                count: self.merge_fields.len(),
                limit: MAX_MERGE_FIELDS,
            });
        }
        let mut fields = serde_json::Map::new();
        for (index, pair) in self.merge_fields.iter().enumerate() {
            let path: Vec<&str> = pair.name.split('.').collect();
            let valid = path.iter().all(|part| {
                !part.is_empty()
                    && part.len() <= 80
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            if !valid || path.len() > 5 {
                return Err(RecordActionError::BadName {
                    index,
                    name: pair.name.clone(),
                });
            }
            let duplicate = || RecordActionError::Duplicate {
                index,
                name: pair.name.clone(),
            };
            let (last, parents) = path.split_last().expect("split gives one part at least");
            let mut node = &mut fields;
            for part in parents {
                let child = node
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                node = child.as_object_mut().ok_or_else(duplicate)?;
            }
            if node.contains_key(*last) {
                return Err(duplicate());
            }
            let value = pair.value.clone().map_or(Value::Null, Value::String);
            node.insert(last.to_string(), value);
        }
        Ok(FlowRecord {
            id: self.record_id,
            sobject: self.sobject,
            phone: self.phone,
            fields: fields.into_iter().collect(),
            template: self.template,
        })
    }
}

fn null_as_none<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

fn null_as_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Value>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;

    #[test]
    fn contacts_request_fixture_parses() {
        let request = FlowRequest::from_slice(&fixture("flow_request_contacts.json")).unwrap();
        assert_eq!(request.records.len(), 3);
        let first = &request.records[0];
        assert_eq!(first.sobject, "Contact");
        assert_eq!(first.phone.as_deref(), Some("090-1234-5678"));
        assert_eq!(first.fields["Visit_Count__c"], Value::from(3));
        assert_eq!(first.template, None);
        let second = &request.records[1];
        assert_eq!(second.phone, None);
        assert_eq!(second.fields["Notes__c"], Value::Null);
        assert!(second.template.as_deref().unwrap().contains("{{LastName}}"));
        let third = &request.records[2];
        assert_eq!(third.record_id().unwrap().as_str(), "0035j00000Pq7RuAAJ");
    }

    #[test]
    fn response_fixture_round_trips() {
        let raw = fixture("flow_response_mixed.json");
        let response: FlowResponse = serde_json::from_slice(&raw).unwrap();
        assert_eq!(
            response.results[0],
            FlowResult::accepted("0035j00000Pq7RsAAJ", "01JH8Z6M3V7Q2K9R4T5W8X1Y2Z", "queued")
        );
        assert_eq!(
            response.results[2],
            FlowResult::rejected(
                "0035j00000Pq7Ru",
                "number_blocked",
                "the number has opted out of SMS"
            )
        );
        let again: Value = serde_json::to_value(&response).unwrap();
        assert_eq!(again, serde_json::from_slice::<Value>(&raw).unwrap());
    }

    #[test]
    fn rejected_result_has_no_message_id_key() {
        let json = serde_json::to_value(FlowResult::rejected("x", "c", "m")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "x", "status": "rejected", "error": {"code": "c", "message": "m"}})
        );
    }

    #[test]
    fn null_fields_and_missing_optionals_are_accepted() {
        let request =
            FlowRequest::from_slice(br#"{"records":[{"id":"a","sobject":"Lead","fields":null}]}"#)
                .unwrap();
        assert!(request.records[0].fields.is_empty());
        assert!(request.records[0].record_id().is_err());
    }

    fn action(pairs: &[(&str, Option<&str>)]) -> RecordAction {
        RecordAction {
            record_id: "0035j00000Pq7RsAAJ".into(),
            sobject: "Contact".into(),
            phone: None,
            merge_fields: pairs
                .iter()
                .map(|(name, value)| MergeField {
                    name: name.to_string(),
                    value: value.map(str::to_string),
                })
                .collect(),
            template: None,
        }
    }

    #[test]
    fn a_record_actions_pairs_become_fields_with_relationships_nested() {
        let raw = fixture("external_services_record_action.json");
        let parsed: RecordAction = serde_json::from_slice(&raw).unwrap();
        let record = parsed.into_flow_record().unwrap();
        assert_eq!(record.id, "0035j00000Pq7RsAAJ");
        assert_eq!(record.fields["LastName"], "山田");
        assert_eq!(record.fields["Account"]["Name"], "株式会社つなぎ");
        assert_eq!(record.fields["Account"]["Owner"]["LastName"], "佐藤");
        assert_eq!(record.fields["Notes__c"], Value::Null);
    }

    #[test]
    fn a_bad_or_repeated_merge_field_name_is_refused_naming_its_position() {
        let bad = action(&[("LastName", Some("a")), ("Last Name", Some("b"))]);
        let error = bad.into_flow_record().unwrap_err();
        assert_eq!(error.field(), "merge_fields[1].name");
        for pairs in [
            [("LastName", Some("a")), ("LastName", Some("b"))],
            [("Account", Some("a")), ("Account.Name", Some("b"))],
            [("Account.Name", Some("a")), ("Account", Some("b"))],
        ] {
            let error = action(&pairs).into_flow_record().unwrap_err();
            assert!(
                matches!(error, RecordActionError::Duplicate { index: 1, .. }),
                "{pairs:?}: {error:?}"
            );
        }
        let many: Vec<(String, Option<&str>)> =
            (0..101).map(|i| (format!("F{i}__c"), None)).collect();
        let many: Vec<(&str, Option<&str>)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(
            action(&many).into_flow_record().unwrap_err().field(),
            "merge_fields"
        );
        let empty: RecordAction = serde_json::from_str(
            r#"{"record_id":"0035j00000Pq7RsAAJ","sobject":"Contact","merge_fields":null}"#,
        )
        .unwrap();
        assert!(empty.into_flow_record().unwrap().fields.is_empty());
    }

    #[test]
    fn two_hundred_records_pass_and_two_hundred_and_one_are_refused() {
        let record = FlowRecord {
            id: "0035j00000Pq7RsAAJ".into(),
            sobject: "Contact".into(),
            phone: None,
            fields: BTreeMap::new(),
            template: None,
        };
        let mut request = FlowRequest {
            records: vec![record; MAX_FLOW_RECORDS],
        };
        assert_eq!(request.check_bounds(), Ok(()));
        request.records.push(request.records[0].clone());
        let body = serde_json::to_vec(&request).unwrap();
        assert_eq!(
            FlowRequest::from_slice(&body),
            Err(FlowRequestError::TooManyRecords {
                count: 201,
                limit: 200
            })
        );
        assert_eq!(
            FlowRequest::from_slice(br#"{"records":[]}"#),
            Err(FlowRequestError::Empty)
        );
        assert!(matches!(
            FlowRequest::from_slice(b"{\"records\":"),
            Err(FlowRequestError::Json(_))
        ));
    }
}

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

//! Reading stored values back into their types. A value that does not read back is
//! [`StoreError::Corrupt`], never a default: a fresh id or a guessed state would hide the damage.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::{queue::ReceiptStatus, StoreError, StoreResult};
use crate::domain::{phone::PhoneNumber, segment::Encoding, source::Source, state::JobState};

fn corrupt(what: &str, text: impl std::fmt::Debug) -> StoreError {
    StoreError::Corrupt(format!("stored {what} {text:?} does not read back"))
}

/// A value stored by its name (a state, a kind), `what` naming it in the error.
pub fn parsed<T: FromStr>(what: &str, text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| corrupt(what, text))
}

/// An id of any kind (`MessageId`, `VerificationId`, `ListEntryId`…).
pub fn id<T: FromStr>(text: &str) -> StoreResult<T> {
    parsed("id", text)
}

/// A number stored in E.164 form.
pub fn number(text: &str) -> StoreResult<PhoneNumber> {
    // Only the shape is checked: a number valid when stored stays readable even if the phone
    // metadata no longer knows its range.
    let digits = text.strip_prefix('+').unwrap_or_default();
    if (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(PhoneNumber::from_e164_trusted(text))
    } else {
        Err(corrupt("number", text))
    }
}

/// A message state by its name.
pub fn state(text: &str) -> StoreResult<JobState> {
    parsed("state", text)
}

/// A receipt's status by its name.
pub fn receipt_status(text: &str) -> StoreResult<ReceiptStatus> {
    ReceiptStatus::from_name(text).ok_or_else(|| corrupt("receipt status", text))
}

/// An encoding's stored name, read back.
pub fn encoding(text: &str) -> StoreResult<Encoding> {
    match text {
        "gsm7" => Ok(Encoding::Gsm7),
        "ucs2" => Ok(Encoding::Ucs2),
        _ => Err(corrupt("encoding", text)),
    }
}

/// The stored name of an encoding.
pub fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Gsm7 => "gsm7",
        Encoding::Ucs2 => "ucs2",
    }
}

/// A message source by its name and, for a CRM, its record.
pub fn source(name: &str, record: Option<&str>) -> StoreResult<Source> {
    Source::from_stored(name, record).map_err(|_| corrupt("source", (name, record)))
}

/// A JSON document.
pub fn json(text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|_| corrupt("JSON", text))
}

/// A time stored as Unix milliseconds.
pub fn time(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("time", ms))
}

/// A time as stored: Unix milliseconds.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::MessageId;

    #[test]
    fn an_id_that_does_not_parse_is_corrupt_not_a_fresh_id() {
        assert!(matches!(
            id::<MessageId>("msg_nope"),
            Err(StoreError::Corrupt(_))
        ));
        let fresh = MessageId::new();
        assert_eq!(id::<MessageId>(fresh.as_str()).unwrap(), fresh);
    }

    #[test]
    fn a_number_keeps_reading_back_when_its_range_is_unknown_but_garbage_is_corrupt() {
        assert_eq!(number("+819012345678").unwrap().e164(), "+819012345678");
        assert_eq!(number("+6831234").unwrap().e164(), "+6831234");
        for bad in [
            "",
            "+",
            "not-a-number",
            "09012345678",
            "+81 90",
            "+1234567890123456",
        ] {
            assert!(matches!(number(bad), Err(StoreError::Corrupt(_))), "{bad}");
        }
    }

    #[test]
    fn unknown_states_encodings_and_sources_are_corrupt() {
        assert!(state("lost").is_err());
        assert!(encoding("utf8").is_err());
        assert!(source("salesforce:prod", None).is_err());
        assert_eq!(state("sent").unwrap(), JobState::Sent);
        assert_eq!(
            encoding(encoding_name(Encoding::Gsm7)).unwrap(),
            Encoding::Gsm7
        );
    }
}

//! What Twilio's words mean for a message: a status callback's `MessageStatus` and `ErrorCode`
//! as a receipt, and an inbound SMS's `OptOutType` as a reading of the reply. The inbound
//! routes authenticate and parse; the meanings live here, beside the provider that sends.

use crate::{
    domain::consent::{Consent, Reading},
    store::ReceiptStatus,
};

/// The receipt a status callback makes: a final status with its detail, or `None` for a status
/// on the way (`queued`, `sent`…), which records nothing.
pub fn receipt_of(
    status: &str,
    error_code: Option<&str>,
) -> Option<(ReceiptStatus, Option<String>)> {
    match status {
        "delivered" => Some((ReceiptStatus::Delivered, None)),
        "undelivered" => Some((
            ReceiptStatus::Undelivered,
            Some(receipt_detail(status, error_code)),
        )),
        "failed" => Some((
            ReceiptStatus::Failed,
            Some(receipt_detail(status, error_code)),
        )),
        _ => None,
    }
}

/// What an error code means, in a few words, for the codes a sender meets most.
fn error_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "30003" => "unreachable destination handset (off or out of coverage)",
        "30004" => "message blocked by the recipient or the carrier",
        "30005" => "unknown destination handset (the number does not exist)",
        "30006" => "landline or unreachable carrier",
        "30007" => "filtered by the carrier",
        "30008" => "unknown error",
        "21610" => "the recipient opted out (replied STOP)",
        "21614" => "not a mobile number",
        _ => return None,
    })
}

/// The receipt's detail: Twilio's status and its error code with what it means.
fn receipt_detail(status: &str, error_code: Option<&str>) -> String {
    match error_code.filter(|c| !c.is_empty()) {
        Some(code) => match error_meaning(code) {
            Some(meaning) => format!("Twilio {status}, error {code}: {meaning}"),
            None => format!("Twilio {status}, error {code}"),
        },
        None => format!("Twilio {status}"),
    }
}

/// How a reply reads when Twilio classified it: STOP opts out and START back in whatever the
/// words (Twilio has already blocked or unblocked the number on its side); HELP changes
/// nothing. Anything else (or nothing) leaves the reading to tsunagi's keywords.
pub fn reading_of(opt_out_type: Option<&str>) -> Option<Reading> {
    match opt_out_type?.trim().to_ascii_uppercase().as_str() {
        "STOP" => Some(Reading::Keyword(Consent::OptOut)),
        "START" => Some(Reading::Keyword(Consent::OptIn)),
        "HELP" => Some(Reading::Plain),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilios_opt_out_type_decides_the_reading_and_help_changes_nothing() {
        assert_eq!(
            reading_of(Some("STOP")),
            Some(Reading::Keyword(Consent::OptOut))
        );
        assert_eq!(
            reading_of(Some("start")),
            Some(Reading::Keyword(Consent::OptIn))
        );
        assert_eq!(reading_of(Some("HELP")), Some(Reading::Plain));
        assert_eq!(reading_of(Some("SOMETHING_NEW")), None);
        assert_eq!(reading_of(None), None);
    }

    #[test]
    fn a_receipt_detail_names_the_error_code_and_what_it_means() {
        assert_eq!(
            receipt_of("undelivered", Some("30003")),
            Some((
                ReceiptStatus::Undelivered,
                Some("Twilio undelivered, error 30003: unreachable destination handset (off or out of coverage)".into())
            ))
        );
        assert_eq!(
            receipt_of("failed", Some("63016")).unwrap().1.unwrap(),
            "Twilio failed, error 63016"
        );
        assert_eq!(
            receipt_of("failed", None).unwrap().1.unwrap(),
            "Twilio failed"
        );
        assert_eq!(
            receipt_of("delivered", None),
            Some((ReceiptStatus::Delivered, None))
        );
        assert_eq!(
            receipt_of("sent", None),
            None,
            "on the way: nothing recorded"
        );
    }
}

//! Delivery receipts (`deliver_sm` or `data_sm` with esm_class 0x04): the TLVs
//! `receipted_message_id` and `message_state` when the SMSC sends them, the
//! `id:… stat:… err:…` text (in `short_message` or `message_payload`) otherwise.

use rusmpp::values::MessageState;

use super::delivery::Delivery;
use crate::store::ReceiptStatus;

/// What one receipt says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// A final outcome for the part the SMSC knows as `part_id`.
    Final {
        part_id: String,
        status: ReceiptStatus,
        detail: Option<String>,
    },
    /// An interim state (ENROUTE, ACCEPTD…): nothing to record.
    Interim,
    /// Neither TLVs nor text name the message and its state.
    Unreadable(&'static str),
}

/// Read a receipt, preferring the TLVs over the text.
pub(super) fn read(delivery: &Delivery) -> Reading {
    let text = String::from_utf8_lossy(&delivery.payload);
    let field = |name: &str| field(&text, name);
    let tlv_id = delivery.receipted_message_id.clone();
    let Some(part_id) = tlv_id.or_else(|| field("id:").map(str::to_string)) else {
        return Reading::Unreadable("no receipted_message_id and no id: in the text");
    };
    let stat = match delivery.message_state {
        Some(state) => state_name(state),
        None => match field("stat:") {
            Some(stat) => stat,
            None => return Reading::Unreadable("no message_state and no stat: in the text"),
        },
    };
    let status = match stat {
        "DELIVRD" => ReceiptStatus::Delivered,
        "UNDELIV" | "EXPIRED" | "DELETED" | "UNKNOWN" => ReceiptStatus::Undelivered,
        "REJECTD" => ReceiptStatus::Failed,
        "ACCEPTD" | "ENROUTE" | "SCHEDULED" | "SKIPPED" => return Reading::Interim,
        _ => return Reading::Unreadable("an unknown message state"),
    };
    let detail = (status != ReceiptStatus::Delivered).then(|| match field("err:") {
        Some(err) => format!("SMSC receipt: {stat} err:{err}"),
        None => format!("SMSC receipt: {stat}"),
    });
    Reading::Final {
        part_id,
        status,
        detail,
    }
}

/// The word after `name` in a receipt text (`id:abc sub:001 … stat:DELIVRD err:000 text:…`).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    // "text:" ends the fields: what follows is the message's own words and may contain anything.
    let fields = text.split("text:").next().unwrap_or_default();
    let lower = fields.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let at = from + found;
        // A whole field name only: "id:" must not match inside "submit date:" or "sub:".
        let starts_word = at == 0 || fields.as_bytes()[at - 1].is_ascii_whitespace();
        if starts_word {
            let value = fields[at + name.len()..].split_whitespace().next()?;
            return Some(value);
        }
        from = at + name.len();
    }
    None
}

/// The receipt-text word for a `message_state` value.
fn state_name(state: MessageState) -> &'static str {
    match state {
        MessageState::Scheduled => "SCHEDULED",
        MessageState::Enroute => "ENROUTE",
        MessageState::Delivered => "DELIVRD",
        MessageState::Expired => "EXPIRED",
        MessageState::Deleted => "DELETED",
        MessageState::Undeliverable => "UNDELIV",
        MessageState::Accepted => "ACCEPTD",
        MessageState::Unknown => "UNKNOWN",
        MessageState::Rejected => "REJECTD",
        MessageState::Skipped => "SKIPPED",
        MessageState::Other(_) => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use rusmpp::{
        pdus::DeliverSm,
        tlvs::MessageDeliveryRequestTlvValue,
        types::{AnyOctetString, COctetString, OctetString},
        values::{EsmClass, MessagePayload},
    };

    use super::*;

    fn receipt(text: &str, tlvs: Option<(&str, MessageState)>) -> Delivery {
        let mut d = DeliverSm::builder()
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_vec(text.as_bytes().to_vec()).unwrap())
            .build();
        if let Some((id, state)) = tlvs {
            d.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                COctetString::from_string(id.to_string()).unwrap(),
            ));
            d.push_tlv(MessageDeliveryRequestTlvValue::MessageState(state));
        }
        Delivery::from(d)
    }

    const TEXT: &str =
        "id:0a1b2c sub:001 dlvrd:000 submit date:2611291200 done date:2611291201 stat:UNDELIV err:034 text:id:zz stat:DELIVRD";

    #[test]
    fn the_text_is_read_when_there_are_no_tlvs() {
        assert_eq!(
            read(&receipt(TEXT, None)),
            Reading::Final {
                part_id: "0a1b2c".into(),
                status: ReceiptStatus::Undelivered,
                detail: Some("SMSC receipt: UNDELIV err:034".into()),
            }
        );
    }

    #[test]
    fn the_text_in_message_payload_is_read_when_short_message_is_empty() {
        let mut d = DeliverSm::builder().esm_class(EsmClass::from(0x04)).build();
        d.push_tlv(MessageDeliveryRequestTlvValue::MessagePayload(
            MessagePayload::new(AnyOctetString::from_slice(TEXT.as_bytes())),
        ));
        assert_eq!(read(&Delivery::from(d)), read(&receipt(TEXT, None)));
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let r = read(&receipt(TEXT, Some(("ffee", MessageState::Delivered))));
        assert_eq!(
            r,
            Reading::Final {
                part_id: "ffee".into(),
                status: ReceiptStatus::Delivered,
                detail: None,
            }
        );
    }

    #[test]
    fn states_map_to_outcomes_and_interim_states_are_ignored() {
        let cases = [
            ("DELIVRD", Some(ReceiptStatus::Delivered)),
            ("EXPIRED", Some(ReceiptStatus::Undelivered)),
            ("DELETED", Some(ReceiptStatus::Undelivered)),
            ("UNKNOWN", Some(ReceiptStatus::Undelivered)),
            ("REJECTD", Some(ReceiptStatus::Failed)),
            ("ACCEPTD", None),
            ("ENROUTE", None),
        ];
        for (stat, expected) in cases {
            let text = format!("id:1 sub:001 dlvrd:000 stat:{stat} err:000 text:");
            match (read(&receipt(&text, None)), expected) {
                (Reading::Final { status, .. }, Some(e)) => assert_eq!(status, e, "{stat}"),
                (Reading::Interim, None) => {}
                (other, _) => panic!("{stat}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_receipt_without_id_or_state_is_unreadable() {
        assert!(matches!(
            read(&receipt("stat:DELIVRD", None)),
            Reading::Unreadable(_)
        ));
        assert!(matches!(
            read(&receipt("id:1 sub:001", None)),
            Reading::Unreadable(_)
        ));
        assert!(matches!(
            read(&receipt("id:1 stat:WHATEVER", None)),
            Reading::Unreadable(_)
        ));
    }

    #[test]
    fn field_names_match_whole_words_only() {
        assert_eq!(field("sub:001 id:7 submit date:1", "id:"), Some("7"));
        assert_eq!(field("ID:8 STAT:DELIVRD", "stat:"), Some("DELIVRD"));
        assert_eq!(field("xid:9", "id:"), None);
    }
}

//! What the SMSC delivers, by `deliver_sm` or `data_sm`, read into one shape: receipts and
//! replies are then handled alike whichever PDU, and whichever of `short_message` and
//! `message_payload`, carried them.

use rusmpp::{
    pdus::{DataSm, DataSmResp, DeliverSm, DeliverSmResp},
    tlvs::{Tlv, TlvValue},
    types::COctetString,
    values::{MessageState, Ton},
    Command, CommandStatus,
};

use super::udh::Concat;
use crate::domain::phone::PhoneNumber;

/// The PDU a delivery came in, which decides the PDU that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Carrier {
    DeliverSm,
    DataSm,
}

impl Carrier {
    /// Its name, as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Self::DeliverSm => "deliver_sm",
            Self::DataSm => "data_sm",
        }
    }
}

/// Where the answer to one delivery goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticket {
    pub sequence: u32,
    pub carrier: Carrier,
}

impl Ticket {
    /// The response that answers the delivery with `status`.
    pub fn answer(self, status: CommandStatus) -> Command {
        match self.carrier {
            Carrier::DeliverSm => Command::new(status, self.sequence, DeliverSmResp::default()),
            Carrier::DataSm => Command::new(status, self.sequence, DataSmResp::default()),
        }
    }
}

/// A source or destination address with its type of number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Address {
    pub ton: u8,
    pub addr: String,
}

impl Address {
    fn of(ton: Ton, addr: &COctetString<1, 21>) -> Self {
        Address {
            ton: ton.into(),
            addr: addr.as_str().to_string(),
        }
    }

    /// The handset's number: TON 1 digits are international, anything else is read as dialled.
    pub fn handset(&self) -> Option<PhoneNumber> {
        let international = self.ton == 1 && self.addr.bytes().all(|b| b.is_ascii_digit());
        let text = if international {
            format!("+{}", self.addr)
        } else {
            self.addr.clone()
        };
        PhoneNumber::parse(&text).ok()
    }

    /// Our sender id, in the form messages store it (E.164 for numbers).
    pub fn ours(&self) -> String {
        if self.ton == 1 && !self.addr.starts_with('+') {
            format!("+{}", self.addr)
        } else {
            self.addr.clone()
        }
    }

    /// The address as logs may show it: a number masked, anything else with its middle hidden.
    pub fn masked(&self) -> String {
        if let Some(number) = self.handset() {
            return number.to_string();
        }
        let chars: Vec<char> = self.addr.chars().collect();
        if chars.len() <= 4 {
            return "*".repeat(chars.len());
        }
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("{}{}{tail}", chars[0], "*".repeat(chars.len() - 3))
    }
}

/// A delivery receipt or mobile-originated message, as either PDU brings it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Delivery {
    pub carrier: Carrier,
    pub source: Address,
    pub destination: Address,
    pub esm_class: u8,
    pub data_coding: u8,
    /// The user data: `short_message`, or `message_payload` when `short_message` is empty
    /// (SMPP 3.4 §5.3.2.32 allows only one of them).
    pub payload: Vec<u8>,
    /// The `receipted_message_id` TLV.
    pub receipted_message_id: Option<String>,
    /// The `message_state` TLV.
    pub message_state: Option<MessageState>,
    /// Where the SAR TLVs place it in a long message (those that join parts without a UDH).
    pub sar: Option<Concat>,
}

impl Delivery {
    fn read(
        carrier: Carrier,
        (source, destination): (Address, Address),
        (esm_class, data_coding): (u8, u8),
        short_message: &[u8],
        tlvs: &[Tlv],
    ) -> Self {
        let mut delivery = Delivery {
            carrier,
            source,
            destination,
            esm_class,
            data_coding,
            payload: short_message.to_vec(),
            receipted_message_id: None,
            message_state: None,
            sar: None,
        };
        let (mut reference, mut total, mut seq) = (None, None, None);
        for tlv in tlvs {
            match tlv.value() {
                Some(TlvValue::ReceiptedMessageId(id)) => {
                    delivery.receipted_message_id = Some(id.as_str().to_string())
                }
                Some(TlvValue::MessageState(state)) => delivery.message_state = Some(*state),
                Some(TlvValue::MessagePayload(p)) if short_message.is_empty() => {
                    delivery.payload = p.value.as_ref().to_vec()
                }
                Some(TlvValue::SarMsgRefNum(r)) => reference = Some(*r),
                Some(TlvValue::SarTotalSegments(t)) => total = Some(*t),
                Some(TlvValue::SarSegmentSeqnum(n)) => seq = Some(*n),
                _ => {}
            }
        }
        if let (Some(reference), Some(total), Some(seq)) = (reference, total, seq) {
            delivery.sar = Concat::new(reference, total, seq);
        }
        delivery
    }
}

impl From<DeliverSm> for Delivery {
    fn from(d: DeliverSm) -> Self {
        let addresses = (
            Address::of(d.source_addr_ton, &d.source_addr),
            Address::of(d.dest_addr_ton, &d.destination_addr),
        );
        let codes = (u8::from(d.esm_class), u8::from(d.data_coding));
        let short_message = d.short_message().as_ref();
        Delivery::read(
            Carrier::DeliverSm,
            addresses,
            codes,
            short_message,
            d.tlvs(),
        )
    }
}

impl From<DataSm> for Delivery {
    /// `data_sm` has no `short_message`: its user data is always in `message_payload`.
    fn from(d: DataSm) -> Self {
        let addresses = (
            Address::of(d.source_addr_ton, &d.source_addr),
            Address::of(d.dest_addr_ton, &d.destination_addr),
        );
        let codes = (u8::from(d.esm_class), u8::from(d.data_coding));
        Delivery::read(Carrier::DataSm, addresses, codes, &[], d.tlvs())
    }
}

#[cfg(test)]
mod tests {
    use rusmpp::{
        tlvs::MessageDeliveryRequestTlvValue,
        types::{AnyOctetString, OctetString},
        values::{EsmClass, MessagePayload},
        CommandId,
    };

    use super::*;

    fn payload(bytes: &[u8]) -> MessagePayload {
        MessagePayload::new(AnyOctetString::from_slice(bytes))
    }

    fn address(ton: u8, addr: &str) -> Address {
        Address {
            ton,
            addr: addr.into(),
        }
    }

    #[test]
    fn a_deliver_sm_reads_short_message_first_and_message_payload_when_it_is_empty() {
        let with_text = |short: &[u8]| {
            let mut d = DeliverSm::builder()
                .short_message(OctetString::from_vec(short.to_vec()).unwrap())
                .build();
            d.push_tlv(MessageDeliveryRequestTlvValue::MessagePayload(payload(
                b"in the payload",
            )));
            Delivery::from(d)
        };
        assert_eq!(with_text(b"").payload, b"in the payload");
        assert_eq!(with_text(b"short").payload, b"short");
    }

    #[test]
    fn sar_tlvs_place_a_part_and_impossible_ones_place_none() {
        let with_sar = |reference: u16, total: u8, seq: u8| {
            let mut parts = DataSm::default().into_parts();
            parts.tlvs = [
                TlvValue::MessagePayload(payload(b"part")),
                TlvValue::SarMsgRefNum(reference),
                TlvValue::SarTotalSegments(total),
                TlvValue::SarSegmentSeqnum(seq),
            ]
            .into_iter()
            .map(Tlv::from)
            .collect();
            Delivery::from(DataSm::from_parts(parts)).sar
        };
        assert_eq!(
            with_sar(0x1234, 3, 2),
            Some(Concat {
                reference: 0x1234,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(with_sar(1, 2, 3), None, "a place beyond the parts");
        assert_eq!(with_sar(1, 0, 0), None, "no parts");
        assert_eq!(Delivery::from(DataSm::default()).sar, None);
    }

    #[test]
    fn a_data_sm_reads_its_payload_and_receipt_tlvs_and_is_answered_with_data_sm_resp() {
        let tlvs = [
            TlvValue::MessagePayload(payload(b"id:7 stat:DELIVRD")),
            TlvValue::ReceiptedMessageId(COctetString::from_string("7".into()).unwrap()),
            TlvValue::MessageState(MessageState::Delivered),
        ];
        let mut parts = DataSm::default().into_parts();
        parts.esm_class = EsmClass::from(0x04);
        parts.source_addr = COctetString::from_string("819012345678".into()).unwrap();
        parts.tlvs = tlvs.into_iter().map(Tlv::from).collect();
        let d = Delivery::from(DataSm::from_parts(parts));
        assert_eq!(d.carrier, Carrier::DataSm);
        assert_eq!(d.esm_class, 0x04);
        assert_eq!(d.payload, b"id:7 stat:DELIVRD");
        assert_eq!(d.receipted_message_id.as_deref(), Some("7"));
        assert_eq!(d.message_state, Some(MessageState::Delivered));
        let ticket = Ticket {
            sequence: 9,
            carrier: d.carrier,
        };
        let answer = ticket.answer(CommandStatus::EsmeRok);
        assert_eq!(
            (answer.id(), answer.sequence_number()),
            (CommandId::DataSmResp, 9)
        );
    }

    #[test]
    fn handsets_are_read_international_for_ton_1_and_as_dialled_otherwise() {
        let e164 = |ton, addr| address(ton, addr).handset().map(|n| n.e164().to_string());
        assert_eq!(e164(1, "819012345678").as_deref(), Some("+819012345678"));
        assert_eq!(e164(2, "09012345678").as_deref(), Some("+819012345678"));
        assert_eq!(e164(5, "Tsunagi"), None);
        assert_eq!(e164(1, "12"), None);
    }

    #[test]
    fn addresses_are_logged_masked() {
        assert_eq!(address(1, "819012345678").masked(), "+81 90-****-5678");
        assert_eq!(address(0, "0312345678901").masked(), "0**********01");
        assert_eq!(address(0, "abc").masked(), "***");
    }

    #[test]
    fn our_numbers_read_back_as_e164() {
        assert_eq!(address(1, "81312345678").ours(), "+81312345678");
        assert_eq!(address(5, "Tsunagi").ours(), "Tsunagi");
        assert_eq!(address(3, "0005123456").ours(), "0005123456");
    }
}

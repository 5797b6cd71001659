//! `deliver_sm` from the SMSC: delivery receipts and mobile-originated messages, each answered
//! only once what it says is recorded, so an SMSC redelivers whatever a crash lost.

use std::sync::Arc;

use rusmpp::{pdus::DeliverSm, pdus::DeliverSmResp, Command, CommandStatus};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{
    metrics,
    receipt::{self, Reading},
    udh, Shared,
};
use crate::{
    domain::{phone::PhoneNumber, segment},
    providers::Events,
    store::{InboundPart, JoinedParts, NewReply, PartReceipt, PartsKey, ReceiptStatus},
};

/// `deliver_sm`s recorded per commit, at most.
const BATCH: usize = 256;

/// The esm_class bits that say what a `deliver_sm` carries.
const MESSAGE_TYPE: u8 = 0x3C;
/// A delivery receipt from the SMSC.
const DELIVERY_RECEIPT: u8 = 0x04;
/// The payload starts with a UDH.
const UDHI: u8 = 0x40;

/// Record what arrives on `deliveries` and hand each `deliver_sm_resp` to `answers`, until the
/// connection is gone.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut deliveries: mpsc::Receiver<(u32, DeliverSm)>,
    answers: mpsc::UnboundedSender<Command>,
) {
    let Some(events) = shared.events.get().cloned() else {
        return;
    };
    let mut batch = Vec::with_capacity(BATCH);
    while deliveries.recv_many(&mut batch, BATCH).await > 0 {
        for (sequence, status) in handle(&shared, &events, std::mem::take(&mut batch)).await {
            let resp = Command::new(status, sequence, DeliverSmResp::default());
            if answers.send(resp).is_err() {
                return;
            }
        }
    }
}

/// Record a batch: receipts in one commit, replies one by one; the status to answer each with.
async fn handle(
    shared: &Shared,
    events: &Events,
    batch: Vec<(u32, DeliverSm)>,
) -> Vec<(u32, CommandStatus)> {
    let mut answers = Vec::with_capacity(batch.len());
    let mut receipts = Vec::new();
    let mut receipt_sequences = Vec::new();
    for (sequence, deliver) in batch {
        let esm_class = u8::from(deliver.esm_class);
        if esm_class & MESSAGE_TYPE == 0 {
            answers.push((sequence, inbound(events, &deliver).await));
            continue;
        }
        if esm_class & MESSAGE_TYPE != DELIVERY_RECEIPT {
            // Intermediate notifications and SME acknowledgements change nothing here.
            metrics::receipt("interim");
            answers.push((sequence, CommandStatus::EsmeRok));
            continue;
        }
        match receipt::read(&deliver) {
            Reading::Final {
                part_id,
                status,
                detail,
            } => {
                metrics::receipt(match status {
                    ReceiptStatus::Delivered => "delivered",
                    ReceiptStatus::Undelivered => "undelivered",
                    ReceiptStatus::Failed => "failed",
                });
                receipts.push(PartReceipt {
                    part_id: format!("{}{}", shared.id_prefix, shared.ids.receipted(&part_id)),
                    status,
                    detail,
                });
                receipt_sequences.push(sequence);
            }
            Reading::Interim => {
                metrics::receipt("interim");
                answers.push((sequence, CommandStatus::EsmeRok));
            }
            Reading::Unreadable(why) => {
                metrics::receipt("unreadable");
                tracing::warn!(why, "unreadable delivery receipt refused");
                // A permanent refusal: sending the same bytes again would not make them readable.
                answers.push((sequence, CommandStatus::EsmeRxRAppn));
            }
        }
    }
    if !receipts.is_empty() {
        let status = match events.part_receipts(receipts).await {
            Ok(()) => CommandStatus::EsmeRok,
            Err(e) => {
                tracing::warn!(error = %e, "receipts not recorded; the SMSC will send them again");
                CommandStatus::EsmeRxTAppn
            }
        };
        answers.extend(receipt_sequences.into_iter().map(|s| (s, status)));
    }
    answers
}

/// Store a mobile-originated message (once all its parts are in).
async fn inbound(events: &Events, deliver: &DeliverSm) -> CommandStatus {
    let source = deliver.source_addr.as_str();
    let Some(from) = handset(u8::from(deliver.source_addr_ton), source) else {
        metrics::inbound("invalid_sender");
        tracing::warn!(sender = %masked(source), "reply from no valid number answered, not stored");
        return CommandStatus::EsmeRok;
    };
    let short_message = deliver.short_message().as_ref();
    let (concat, payload) = if u8::from(deliver.esm_class) & UDHI != 0 {
        match udh::split(short_message) {
            Some(split) => split,
            None => {
                tracing::warn!(sender = %from, "reply with a malformed UDH refused");
                return CommandStatus::EsmeRxRAppn;
            }
        }
    } else {
        (None, short_message)
    };
    let data_coding = u8::from(deliver.data_coding);
    let at = events.now();
    let (data_coding, bytes, joined) = match concat {
        None => (data_coding, payload.to_vec(), None),
        Some(c) => {
            let part = InboundPart {
                key: PartsKey {
                    from: from.e164().to_string(),
                    reference: c.reference,
                    total: c.total,
                },
                seq: c.seq,
                data_coding,
                payload: payload.to_vec(),
                at,
            };
            match events.inbound_part(part).await {
                Ok(Some(joined)) => (
                    joined.parts[0].data_coding,
                    joined
                        .parts
                        .iter()
                        .flat_map(|p| p.payload.clone())
                        .collect(),
                    Some(joined),
                ),
                Ok(None) => {
                    metrics::inbound("part_kept");
                    return CommandStatus::EsmeRok;
                }
                Err(e) => {
                    metrics::inbound("store_error");
                    tracing::warn!(error = %e, "reply part not kept; the SMSC will send it again");
                    return CommandStatus::EsmeRxTAppn;
                }
            }
        }
    };
    let reply = NewReply {
        // SMPP gives a mobile-originated message no id of its own; a joined one gets one from
        // its parts, so that two instances completing it at once store it once.
        provider_id: joined.as_ref().map(joined_id),
        from,
        to: our_address(
            u8::from(deliver.dest_addr_ton),
            deliver.destination_addr.as_str(),
        ),
        body: decode(data_coding, &bytes),
        at,
    };
    match events.inbound(reply).await {
        Ok(_) => {
            if let Some(joined) = joined {
                // Left behind only by a crash just before: given up after `PARTS_KEPT`.
                if let Err(e) = events.forget_inbound_parts(&joined.parts[0].key).await {
                    tracing::warn!(error = %e, "parts of a stored reply not forgotten");
                }
            }
            metrics::inbound("stored");
            CommandStatus::EsmeRok
        }
        Err(e) => {
            metrics::inbound("store_error");
            tracing::warn!(error = %e, "reply not stored; the SMSC will send it again");
            CommandStatus::EsmeRxTAppn
        }
    }
}

/// The id of a reply joined from parts: its sender, reference, part count and first part's
/// time, hashed (the number stays out of it).
fn joined_id(joined: &JoinedParts) -> String {
    let key = &joined.parts[0].key;
    let digest = Sha256::digest(format!(
        "{}:{}:{}:{}",
        key.from,
        key.reference,
        key.total,
        joined.first_at.timestamp_millis()
    ));
    format!("smpp-mo-{}", hex::encode(&digest[..16]))
}

/// The handset's number: TON 1 digits are international, anything else is read as dialled.
fn handset(ton: u8, addr: &str) -> Option<PhoneNumber> {
    let international = ton == 1 && addr.bytes().all(|b| b.is_ascii_digit());
    let text = if international {
        format!("+{addr}")
    } else {
        addr.to_string()
    };
    PhoneNumber::parse(&text).ok()
}

/// The sender id the reply answers, in the form messages store it (E.164 for numbers).
fn our_address(ton: u8, addr: &str) -> String {
    if ton == 1 && !addr.starts_with('+') {
        format!("+{addr}")
    } else {
        addr.to_string()
    }
}

/// Text of a payload by its `data_coding`.
fn decode(data_coding: u8, bytes: &[u8]) -> String {
    match data_coding {
        0x08 => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        // Latin-1: each byte is its own code point.
        0x03 => bytes.iter().map(|&b| char::from(b)).collect(),
        0x01 | 0x02 | 0x04 => String::from_utf8_lossy(bytes).into_owned(),
        _ => segment::gsm7_decode(bytes),
    }
}

/// An address that is not a valid number, shown with its middle hidden.
fn masked(addr: &str) -> String {
    let chars: Vec<char> = addr.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{}{}{tail}", chars[0], "*".repeat(chars.len() - 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handsets_are_read_international_for_ton_1_and_as_dialled_otherwise() {
        assert_eq!(handset(1, "819012345678").unwrap().e164(), "+819012345678");
        assert_eq!(handset(2, "09012345678").unwrap().e164(), "+819012345678");
        assert!(handset(5, "Tsunagi").is_none());
        assert!(handset(1, "12").is_none());
    }

    #[test]
    fn replies_decode_by_data_coding() {
        assert_eq!(decode(0, &[b'H', b'i', 0x00, 0x1B, 0x65]), "Hi@€");
        assert_eq!(decode(8, &[0x30, 0x42, 0xD8, 0x3D, 0xDE, 0x00]), "あ😀");
        assert_eq!(decode(3, &[0xE9]), "é");
    }

    #[test]
    fn invalid_senders_are_logged_masked() {
        assert_eq!(masked("0312345678901"), "0**********01");
        assert_eq!(masked("abc"), "***");
    }

    #[test]
    fn our_numbers_read_back_as_e164() {
        assert_eq!(our_address(1, "81312345678"), "+81312345678");
        assert_eq!(our_address(5, "Tsunagi"), "Tsunagi");
        assert_eq!(our_address(3, "0005123456"), "0005123456");
    }
}

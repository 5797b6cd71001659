//! Deliveries from the SMSC (`deliver_sm` or `data_sm`): delivery receipts and
//! mobile-originated messages, each answered only once what it says is recorded, so an SMSC
//! redelivers whatever a crash lost.

use std::sync::Arc;

use rusmpp::{Command, CommandStatus};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{
    coding,
    delivery::{Delivery, Ticket},
    metrics,
    receipt::{self, Reading},
    udh, Shared,
};
use crate::{
    providers::Events,
    store::{InboundPart, JoinedParts, NewReply, PartReceipt, PartsKey, ReceiptStatus},
};

/// Deliveries recorded per commit, at most.
const BATCH: usize = 256;

/// The esm_class bits that say what a delivery carries.
const MESSAGE_TYPE: u8 = 0x3C;
/// A delivery receipt from the SMSC.
const DELIVERY_RECEIPT: u8 = 0x04;
/// The payload starts with a UDH.
const UDHI: u8 = 0x40;

/// Record what arrives on `deliveries` and hand each answer (`deliver_sm_resp` or
/// `data_sm_resp`) to `answers`, until the connection is gone.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut deliveries: mpsc::Receiver<(u32, Delivery)>,
    answers: mpsc::UnboundedSender<Command>,
) {
    let Some(events) = shared.events.get().cloned() else {
        return;
    };
    let mut batch = Vec::with_capacity(BATCH);
    while deliveries.recv_many(&mut batch, BATCH).await > 0 {
        for answer in handle(&shared, &events, std::mem::take(&mut batch)).await {
            if answers.send(answer).is_err() {
                return;
            }
        }
    }
}

/// Record a batch: receipts in one commit, replies one by one; the answer to each.
async fn handle(shared: &Shared, events: &Events, batch: Vec<(u32, Delivery)>) -> Vec<Command> {
    let mut answers = Vec::with_capacity(batch.len());
    let mut receipts = Vec::new();
    let mut receipt_tickets = Vec::new();
    for (sequence, delivery) in batch {
        metrics::delivery(delivery.carrier.name());
        let ticket = Ticket {
            sequence,
            carrier: delivery.carrier,
        };
        if delivery.esm_class & MESSAGE_TYPE == 0 {
            answers.push(ticket.answer(inbound(events, &delivery).await));
            continue;
        }
        if delivery.esm_class & MESSAGE_TYPE != DELIVERY_RECEIPT {
            // Intermediate notifications and SME acknowledgements change nothing here.
            metrics::receipt("interim");
            answers.push(ticket.answer(CommandStatus::EsmeRok));
            continue;
        }
        match receipt::read(&delivery) {
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
                receipt_tickets.push(ticket);
            }
            Reading::Interim => {
                metrics::receipt("interim");
                answers.push(ticket.answer(CommandStatus::EsmeRok));
            }
            Reading::Unreadable(why) => {
                metrics::receipt("unreadable");
                tracing::warn!(why, "unreadable delivery receipt refused");
                // A permanent refusal: sending the same bytes again would not make them readable.
                answers.push(ticket.answer(CommandStatus::EsmeRxRAppn));
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
        answers.extend(receipt_tickets.into_iter().map(|t| t.answer(status)));
    }
    answers
}

/// Store a mobile-originated message (once all its parts are in).
async fn inbound(events: &Events, delivery: &Delivery) -> CommandStatus {
    let Some(from) = delivery.source.handset() else {
        metrics::inbound("invalid_sender");
        let sender = delivery.source.masked();
        tracing::warn!(%sender, "reply from no valid number answered, not stored");
        return CommandStatus::EsmeRok;
    };
    let user_data = delivery.payload.as_slice();
    let (concat, payload) = if delivery.esm_class & UDHI != 0 {
        match udh::split(user_data) {
            Some(split) => split,
            None => {
                tracing::warn!(sender = %from, "reply with a malformed UDH refused");
                return CommandStatus::EsmeRxRAppn;
            }
        }
    } else {
        // Without a UDH, parts of a long message are joined by the SAR TLVs, if any.
        (delivery.sar, user_data)
    };
    let data_coding = delivery.data_coding;
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
        to: delivery.destination.ours(),
        body: coding::decode(data_coding, &bytes),
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

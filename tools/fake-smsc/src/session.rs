//! One ESME connection: bind, then answer its PDUs until it unbinds or the fake drops it.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use rusmpp::{
    pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp},
    tokio_codec::CommandCodec,
    types::{AnyOctetString, COctetString},
    Command, CommandId, CommandStatus, Pdu,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};
use tokio_util::{
    bytes::BytesMut,
    codec::{Encoder, FramedRead},
    sync::CancellationToken,
};

use crate::{Receiver, Shared, Submit};

/// The most `short_message` an SMS carries: 140 octets of user data, UDH included (SMSCs answer
/// more with `ESME_RINVMSGLEN`; longer texts belong in `message_payload`).
const MAX_SHORT_MESSAGE: usize = 140;

/// How a connection ends.
enum End {
    /// After writing what is queued (unbind, the peer closed).
    Clean,
    /// At once, queued responses lost (a dropped connection).
    Abrupt,
}

/// What the connection is bound as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    Transmitter,
    Receiver,
    Transceiver,
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    bound: Option<Bound>,
}

/// Serve one connection, given as its halves (a TCP stream's, or a TLS session's).
pub(crate) async fn serve(
    read: impl AsyncRead + Unpin,
    write: impl AsyncWrite + Unpin + Send + 'static,
    shared: Arc<Shared>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = shared.stop.child_token();
    let writer = tokio::spawn(write_loop(write, rx, stop.clone()));
    let mut frames = FramedRead::new(read, CommandCodec::new());
    let mut session = Session {
        id: shared.next_session.fetch_add(1, Ordering::Relaxed),
        shared,
        tx,
        bound: None,
    };
    let end = loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break End::Abrupt,
            frame = frames.next() => frame,
        };
        let Some(Ok(command)) = frame else {
            break End::Clean;
        };
        if let Some(end) = session.handle(command) {
            break end;
        }
    };
    session.shared.sessions.lock().unwrap().remove(&session.id);
    match end {
        End::Abrupt => stop.cancel(),
        End::Clean => drop(session),
    }
    let _ = writer.await;
}

/// Write queued PDUs, many per syscall when they pile up, until every sender is gone.
async fn write_loop(
    mut write: impl AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    let mut codec = CommandCodec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            next = rx.recv() => match next {
                Some(command) => command,
                None => return,
            },
        };
        let _ = codec.encode(&first, &mut buf);
        while buf.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(command) => {
                    let _ = codec.encode(&command, &mut buf);
                }
                Err(_) => break,
            }
        }
        // A TLS stream may hold the end of a write until flushed.
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
}

/// A response with the header only, as SMPP 3.4 sends for most errors.
fn bare(id: CommandId, status: CommandStatus, sequence: u32) -> Command {
    Command::new(
        status,
        sequence,
        Pdu::Other {
            command_id: id,
            body: AnyOctetString::empty(),
        },
    )
}

impl Session {
    fn reply(&self, command: Command) {
        let _ = self.tx.send(command);
    }

    /// Answer a bind, after the configured delay.
    fn reply_to_bind(&self, command: Command) {
        let delay = self.shared.faults.bind_delay_ms.load(Ordering::Relaxed);
        if delay == 0 {
            return self.reply(command);
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = tx.send(command);
        });
    }

    /// Count a `deliver_sm_resp` or `data_sm_resp`, and apart those that refuse.
    fn count_resp(&self, id: CommandId, status: CommandStatus) {
        let counters = &self.shared.counters;
        let (resps, refusals) = match id {
            CommandId::DataSmResp => (&counters.data_sm_resps, &counters.data_sm_refusals),
            _ => (&counters.deliver_sm_resps, &counters.deliver_sm_refusals),
        };
        resps.fetch_add(1, Ordering::Relaxed);
        if status != CommandStatus::EsmeRok {
            refusals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answer one PDU; `Some` ends the connection.
    fn handle(&mut self, command: Command) -> Option<End> {
        let sequence = command.sequence_number();
        let id = command.id();
        let response = u32::from(id) & 0x8000_0000 != 0;
        if response && self.shared.alerts.lock().unwrap().contains(&sequence) {
            // alert_notification has no response in SMPP 3.4: whatever answers one is wrong.
            self.shared
                .counters
                .alert_answers
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => {
                let ok = self.bind(&b.system_id, &b.password, Bound::Transmitter);
                let resp = BindTransmitterResp::new(self.system_id(), None);
                self.reply_to_bind(Command::new(ok, sequence, resp));
            }
            Some(Pdu::BindReceiver(b)) => {
                let ok = self.bind(&b.system_id, &b.password, Bound::Receiver);
                let resp = BindReceiverResp::new(self.system_id(), None);
                self.reply_to_bind(Command::new(ok, sequence, resp));
            }
            Some(Pdu::BindTransceiver(b)) => {
                let ok = self.bind(&b.system_id, &b.password, Bound::Transceiver);
                let resp = BindTransceiverResp::new(self.system_id(), None);
                self.reply_to_bind(Command::new(ok, sequence, resp));
            }
            Some(Pdu::SubmitSm(submit)) => return self.submit(submit, sequence),
            Some(Pdu::EnquireLink) => {
                self.shared
                    .counters
                    .enquire_links
                    .fetch_add(1, Ordering::Relaxed);
                self.reply(Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    Pdu::EnquireLinkResp,
                ));
            }
            Some(Pdu::Unbind) => {
                self.shared.counters.unbinds.fetch_add(1, Ordering::Relaxed);
                self.shared.sessions.lock().unwrap().remove(&self.id);
                self.reply(Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    Pdu::UnbindResp,
                ));
                return Some(End::Clean);
            }
            Some(Pdu::DeliverSmResp(_) | Pdu::DataSmResp(_)) => {
                self.count_resp(id, command.status())
            }
            // Answers to our own enquire_link or unbind, and generic_nack: nothing to do.
            Some(Pdu::EnquireLinkResp | Pdu::UnbindResp | Pdu::GenericNack) => {}
            _ if matches!(id, CommandId::DeliverSmResp | CommandId::DataSmResp) => {
                self.count_resp(id, command.status())
            }
            _ => self.reply(bare(
                CommandId::GenericNack,
                CommandStatus::EsmeRinvcmdid,
                sequence,
            )),
        }
        None
    }

    fn system_id(&self) -> COctetString<1, 16> {
        COctetString::from_string(self.shared.system_id.clone())
            .unwrap_or_else(|_| COctetString::empty())
    }

    fn bind(
        &mut self,
        system_id: &COctetString<1, 16>,
        password: &COctetString<1, 9>,
        kind: Bound,
    ) -> CommandStatus {
        let counters = &self.shared.counters;
        if self.bound.is_some() {
            return CommandStatus::EsmeRalybnd;
        }
        if system_id.as_str() != self.shared.system_id {
            counters.refused_binds.fetch_add(1, Ordering::Relaxed);
            return CommandStatus::EsmeRinvsysid;
        }
        if password.as_str() != *self.shared.password.lock().unwrap() {
            counters.refused_binds.fetch_add(1, Ordering::Relaxed);
            return CommandStatus::EsmeRinvpaswd;
        }
        if kind == Bound::Receiver && self.shared.faults.refuse_receivers.load(Ordering::Relaxed) {
            counters.refused_binds.fetch_add(1, Ordering::Relaxed);
            return CommandStatus::EsmeRbindfail;
        }
        counters.binds.fetch_add(1, Ordering::Relaxed);
        self.bound = Some(kind);
        self.shared.sessions.lock().unwrap().insert(
            self.id,
            Receiver {
                tx: self.tx.clone(),
                can_receive: kind != Bound::Transmitter,
            },
        );
        CommandStatus::EsmeRok
    }

    fn submit(&mut self, pdu: &SubmitSm, sequence: u32) -> Option<End> {
        let shared = self.shared.clone();
        let (counters, faults) = (&shared.counters, &shared.faults);
        let refuse = |status| {
            self.reply(bare(CommandId::SubmitSmResp, status, sequence));
            None
        };
        if !matches!(self.bound, Some(Bound::Transmitter | Bound::Transceiver)) {
            return refuse(CommandStatus::EsmeRinvbndsts);
        }
        let seen = counters.submits_seen.fetch_add(1, Ordering::Relaxed) + 1;
        let dropping = faults.drop_after.load(Ordering::Relaxed);
        if dropping > 0 {
            counters.unanswered.fetch_add(1, Ordering::Relaxed);
            if faults.drop_after.fetch_sub(1, Ordering::Relaxed) == 1 {
                return Some(End::Abrupt);
            }
            return None;
        }
        let refusing = faults.refuse_with.load(Ordering::Relaxed);
        if refusing != 0 {
            return refuse(CommandStatus::from(refusing));
        }
        if faults.ignore_at.load(Ordering::Relaxed) == seen {
            // Taken and never answered, the connection kept: a lost response.
            counters.unanswered.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let every = |n: u64| n > 0 && seen.is_multiple_of(n);
        let throttled_now = faults
            .throttle_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until);
        if throttled_now || every(faults.throttle_every.load(Ordering::Relaxed)) {
            counters.throttled.fetch_add(1, Ordering::Relaxed);
            return refuse(CommandStatus::EsmeRthrottled);
        }
        if every(faults.queue_full_every.load(Ordering::Relaxed)) {
            counters.throttled.fetch_add(1, Ordering::Relaxed);
            return refuse(CommandStatus::EsmeRmsgqful);
        }
        let destination = pdu.destination_addr.as_str();
        if destination.ends_with("9991") {
            return refuse(CommandStatus::EsmeRinvdstadr);
        }
        if destination.ends_with("9992") {
            return refuse(CommandStatus::EsmeRsyserr);
        }
        if pdu.short_message().as_ref().len() > MAX_SHORT_MESSAGE {
            return refuse(CommandStatus::EsmeRinvmsglen);
        }
        if !valid_time(pdu.validity_period.to_string().as_str()) {
            // As an SMSC does: a validity period it cannot read is refused, never guessed at.
            return refuse(CommandStatus::EsmeRinvexpiry);
        }
        let message_id = format!(
            "{:x}",
            shared.next_message_id.fetch_add(1, Ordering::Relaxed)
        );
        let resp = SubmitSmResp::new(
            COctetString::from_string(message_id.clone()).expect("a short id"),
            Vec::new(),
        );
        self.reply(Command::new(CommandStatus::EsmeRok, sequence, resp));
        counters.submits.fetch_add(1, Ordering::Relaxed);
        let wants_receipt = u8::from(pdu.registered_delivery) & 0x03 != 0;
        if !shared.record && !wants_receipt {
            return None;
        }
        let submit = decoded(pdu, message_id, shared.gsm_packed);
        shared.schedule_receipt(self.id, &submit);
        if shared.record {
            shared.submits.lock().unwrap().push(submit);
        }
        None
    }
}

/// Whether `text` is empty or an SMPP 3.4 time (§7.1.1): 12 digits, tenths, a quarter-hour
/// offset and `+`, `-` or `R` (relative, with tenths and offset zero).
fn valid_time(text: &str) -> bool {
    let b = text.as_bytes();
    text.is_empty()
        || (b.len() == 16
            && b[..15].iter().all(u8::is_ascii_digit)
            && match b[15] {
                b'R' => &b[12..15] == b"000",
                b'+' | b'-' => true,
                _ => false,
            })
}

fn decoded(pdu: &SubmitSm, message_id: String, gsm_packed: bool) -> Submit {
    let esm_class = u8::from(pdu.esm_class);
    let short_message = pdu.short_message().as_ref();
    let (udh, payload) = match crate::text::split_udh(short_message) {
        Some((udh, rest)) if esm_class & 0x40 != 0 => (Some(udh.to_vec()), rest.to_vec()),
        _ => (None, short_message.to_vec()),
    };
    Submit {
        message_id,
        source_addr: pdu.source_addr.as_str().to_string(),
        source_ton: pdu.source_addr_ton.into(),
        source_npi: pdu.source_addr_npi.into(),
        destination_addr: pdu.destination_addr.as_str().to_string(),
        dest_ton: pdu.dest_addr_ton.into(),
        dest_npi: pdu.dest_addr_npi.into(),
        data_coding: pdu.data_coding.into(),
        esm_class,
        registered_delivery: pdu.registered_delivery.into(),
        validity_period: pdu.validity_period.to_string(),
        udh,
        payload,
        gsm_packed,
    }
}

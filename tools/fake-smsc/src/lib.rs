//! A fake SMSC speaking SMPP 3.4 over TCP, controllable from a test: binds checked against one
//! account, `submit_sm` answered and recorded, delivery receipts and mobile-originated messages
//! sent as `deliver_sm` (text in `short_message` or `message_payload`) or `data_sm`,
//! `alert_notification`s (whose answers, which SMPP 3.4 does not define, are counted), and the
//! faults a real SMSC shows (throttling, a full queue, a dropped connection, a refused
//! password).
//!
//! Outcomes by the destination's last four digits: `9990` UNDELIV, `9995` REJECTD, `9996`
//! EXPIRED (all in the receipt), `9991` refused at submit with `ESME_RINVDSTADR`, `9992` with
//! `ESME_RSYSERR`; anything else DELIVRD.

mod session;
pub mod text;
mod tls;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rusmpp::{
    pdus::{AlertNotification, DataSm, DeliverSm},
    tlvs::{Tlv, TlvValue},
    types::{AnyOctetString, COctetString, OctetString},
    values::{EsmClass, MessagePayload, MessageState, Npi, Ton},
    Command, CommandStatus, Pdu,
};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What a delivery receipt carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipts {
    /// The `receipted_message_id` and `message_state` TLVs, empty text.
    Tlv,
    /// Only the `id:… stat:…` text.
    Text,
    /// TLVs and text.
    Both,
    /// No receipts at all.
    None,
    /// Only the text, its `id:` in decimal while `submit_sm_resp` gave the id in hex, as some
    /// SMSCs do.
    DecimalText,
    /// Only the text, in the `message_payload` TLV with `short_message` empty.
    Payload,
    /// A `data_sm`: the text in `message_payload`, and the TLVs.
    DataSm,
}

impl Receipts {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        [
            Self::Tlv,
            Self::Text,
            Self::Both,
            Self::None,
            Self::DecimalText,
            Self::Payload,
            Self::DataSm,
        ][code as usize]
    }
}

impl std::str::FromStr for Receipts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tlv" => Ok(Self::Tlv),
            "text" => Ok(Self::Text),
            "both" => Ok(Self::Both),
            "none" => Ok(Self::None),
            "decimal-text" => Ok(Self::DecimalText),
            "payload" => Ok(Self::Payload),
            "data-sm" => Ok(Self::DataSm),
            other => Err(format!(
                "unknown receipt mode {other:?}: tlv, text, both, none, decimal-text, payload or data-sm"
            )),
        }
    }
}

/// How a receipt or mobile-originated message carries its user data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carriage {
    /// A `deliver_sm`, in `short_message`.
    ShortMessage,
    /// A `deliver_sm` with an empty `short_message`, in the `message_payload` TLV.
    Payload,
    /// A `data_sm`, in `message_payload` (it has no `short_message`).
    DataSm,
}

/// How the fake starts.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// The one account's `system_id`.
    pub system_id: String,
    /// Its password (changeable later with [`FakeSmsc::set_password`]).
    pub password: String,
    /// What receipts carry.
    pub receipts: Receipts,
    /// How long after the `submit_sm` its receipt is sent.
    pub receipt_delay: Duration,
    /// Keep every submit for [`FakeSmsc::submits`]; off for a benchmark.
    pub record: bool,
    /// Speak TLS with a certificate from a CA made at start ([`FakeSmsc::tls_ca_pem`]),
    /// valid for `localhost` and the listening address.
    pub tls: bool,
    /// The account takes GSM-7 (data_coding 0) packed, eight septets in seven octets, as some
    /// SMSCs are configured per account; [`Submit::text`] and [`FakeSmsc::texts_to`] unpack it.
    pub gsm_packed: bool,
}

impl Options {
    /// An account on a free local port, receipts as TLVs 20 ms after the submit, submits recorded.
    pub fn new(system_id: &str, password: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: system_id.into(),
            password: password.into(),
            receipts: Receipts::Tlv,
            receipt_delay: Duration::from_millis(20),
            record: true,
            tls: false,
            gsm_packed: false,
        }
    }
}

/// A `submit_sm` as the fake decoded and accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submit {
    /// The id the fake gave it in `submit_sm_resp`.
    pub message_id: String,
    /// Sender address, TON and NPI.
    pub source_addr: String,
    /// `source_addr_ton`.
    pub source_ton: u8,
    /// `source_addr_npi`.
    pub source_npi: u8,
    /// Recipient address.
    pub destination_addr: String,
    /// `dest_addr_ton`.
    pub dest_ton: u8,
    /// `dest_addr_npi`.
    pub dest_npi: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class`.
    pub esm_class: u8,
    /// `registered_delivery`.
    pub registered_delivery: u8,
    /// `validity_period` as sent (SMPP time format), empty when none.
    pub validity_period: String,
    /// The user data header, when `esm_class` has UDHI set.
    pub udh: Option<Vec<u8>>,
    /// The payload after the UDH.
    pub payload: Vec<u8>,
    /// Whether the account takes GSM-7 packed ([`Options::gsm_packed`]).
    pub gsm_packed: bool,
}

impl Submit {
    /// The part's text, decoded by its `data_coding`.
    pub fn text(&self) -> String {
        text::decode(self.data_coding, &self.user_data())
    }

    /// The payload as [`text::decode`] reads it: packed GSM-7 unpacked to one septet a byte,
    /// past the fill bits that follow the UDH.
    pub fn user_data(&self) -> Vec<u8> {
        match (self.gsm_packed, self.data_coding) {
            (true, 0x00) => {
                let udh_len = self.udh.as_ref().map_or(0, Vec::len);
                text::gsm7_unpack(&self.payload, text::fill_after(udh_len))
            }
            _ => self.payload.clone(),
        }
    }

    /// The concatenation header, if the part is one of several.
    pub fn concat(&self) -> Option<text::Concat> {
        self.udh.as_deref().and_then(text::concat_of)
    }
}

/// Counters a test or the benchmark reads.
#[derive(Debug, Default)]
struct Counters {
    submits: AtomicU64,
    submits_seen: AtomicU64,
    unanswered: AtomicU64,
    throttled: AtomicU64,
    binds: AtomicU64,
    refused_binds: AtomicU64,
    unbinds: AtomicU64,
    enquire_links: AtomicU64,
    deliver_sm_resps: AtomicU64,
    deliver_sm_refusals: AtomicU64,
    data_sm_resps: AtomicU64,
    data_sm_refusals: AtomicU64,
    /// Any response (a generic_nack included) to an `alert_notification`, which has none.
    alert_answers: AtomicU64,
    failed_handshakes: AtomicU64,
}

/// A connection the fake may send `deliver_sm` on.
struct Receiver {
    tx: mpsc::UnboundedSender<Command>,
    can_receive: bool,
}

/// Faults to show, set at runtime.
#[derive(Debug, Default)]
struct Faults {
    throttle_every: AtomicU64,
    queue_full_every: AtomicU64,
    throttle_until: Mutex<Option<Instant>>,
    /// Submits still to take unanswered before the connection is dropped; 0 is off.
    drop_after: AtomicU64,
    /// The count of submits seen at which one is taken and never answered; 0 is off.
    ignore_at: AtomicU64,
    /// A command status every submit is refused with; 0 is off.
    refuse_with: std::sync::atomic::AtomicU32,
    /// How long bind responses take.
    bind_delay_ms: AtomicU64,
    /// Refuse receiver binds (`ESME_RBINDFAIL`), as an account without receiving rights.
    refuse_receivers: std::sync::atomic::AtomicBool,
}

struct Shared {
    system_id: String,
    password: Mutex<String>,
    receipts: AtomicU8,
    receipt_delay_ms: AtomicU64,
    record: bool,
    gsm_packed: bool,
    submits: Mutex<Vec<Submit>>,
    counters: Counters,
    faults: Faults,
    next_message_id: AtomicU64,
    next_sequence: AtomicU32,
    next_session: AtomicU64,
    sessions: Mutex<HashMap<u64, Receiver>>,
    /// Sequence numbers of the `alert_notification`s sent, to tell an answer to one.
    alerts: Mutex<HashSet<u32>>,
    receipts_tx: mpsc::UnboundedSender<Pending>,
    stop: CancellationToken,
}

/// A receipt waiting for its time, preferably on the session the submit came on.
struct Pending {
    due: Instant,
    session: u64,
    deliver: Pdu,
}

/// A running fake SMSC; dropping it closes the listener and every connection.
pub struct FakeSmsc {
    addr: SocketAddr,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeSmsc {
    /// Listen and serve until dropped.
    pub async fn start(options: Options) -> std::io::Result<FakeSmsc> {
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let identity = match options.tls {
            true => Some(tls::Identity::generate(addr.ip())?),
            false => None,
        };
        let (receipts_tx, receipts_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            system_id: options.system_id,
            password: Mutex::new(options.password),
            receipts: AtomicU8::new(options.receipts.code()),
            receipt_delay_ms: AtomicU64::new(options.receipt_delay.as_millis() as u64),
            record: options.record,
            gsm_packed: options.gsm_packed,
            submits: Mutex::default(),
            counters: Counters::default(),
            faults: Faults::default(),
            next_message_id: AtomicU64::new(0x1000),
            next_sequence: AtomicU32::new(1),
            next_session: AtomicU64::new(1),
            sessions: Mutex::default(),
            alerts: Mutex::default(),
            receipts_tx,
            stop: CancellationToken::new(),
        });
        let ca_pem = identity.as_ref().map(|i| i.ca_pem.clone());
        let acceptor = identity.map(|i| i.acceptor);
        let accept = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        let receipts = tokio::spawn(receipt_loop(receipts_rx, shared.clone()));
        Ok(FakeSmsc {
            addr,
            ca_pem,
            shared,
            tasks: vec![accept, receipts],
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that issued the TLS listener's certificate (none without TLS).
    pub fn tls_ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Connections whose TLS handshake failed (an untrusted certificate, a client not
    /// speaking TLS).
    pub fn failed_handshake_count(&self) -> u64 {
        self.shared
            .counters
            .failed_handshakes
            .load(Ordering::Relaxed)
    }

    /// Accept binds with `password` from now on.
    pub fn set_password(&self, password: &str) {
        *self.shared.password.lock().unwrap() = password.into();
    }

    /// Send receipts as `mode` from now on.
    pub fn set_receipts(&self, mode: Receipts) {
        self.shared.receipts.store(mode.code(), Ordering::Relaxed);
    }

    /// Refuse receiver binds with `ESME_RBINDFAIL` (or accept them again).
    pub fn refuse_receiver_binds(&self, refuse: bool) {
        self.shared
            .faults
            .refuse_receivers
            .store(refuse, Ordering::Relaxed);
    }

    /// Answer every `n`th submit with `ESME_RTHROTTLED` (0 stops).
    pub fn throttle_every(&self, n: u64) {
        self.shared
            .faults
            .throttle_every
            .store(n, Ordering::Relaxed);
    }

    /// Answer every submit with `ESME_RTHROTTLED` for `period`.
    pub fn throttle_for(&self, period: Duration) {
        *self.shared.faults.throttle_until.lock().unwrap() = Some(Instant::now() + period);
    }

    /// Answer every `n`th submit with `ESME_RMSGQFUL` (0 stops).
    pub fn queue_full_every(&self, n: u64) {
        self.shared
            .faults
            .queue_full_every
            .store(n, Ordering::Relaxed);
    }

    /// Answer binds only after `delay`, as a slow SMSC would.
    pub fn set_bind_delay(&self, delay: Duration) {
        self.shared
            .faults
            .bind_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Take the next `n` submits without answering them, then drop their connection.
    pub fn drop_after(&self, n: u64) {
        self.shared.faults.drop_after.store(n, Ordering::Relaxed);
    }

    /// Take the `n`th submit from now (1 is the next) and never answer it, keeping the
    /// connection, as an SMSC that lost the response would.
    pub fn ignore_submit(&self, n: u64) {
        let seen = self.shared.counters.submits_seen.load(Ordering::Relaxed);
        self.shared
            .faults
            .ignore_at
            .store(seen + n, Ordering::Relaxed);
    }

    /// Refuse every submit with `status` (e.g. 0x08 `ESME_RSYSERR`); 0 stops.
    pub fn refuse_submits_with(&self, status: u32) {
        self.shared
            .faults
            .refuse_with
            .store(status, Ordering::Relaxed);
    }

    /// Every accepted submit so far, in arrival order.
    pub fn submits(&self) -> Vec<Submit> {
        self.shared.submits.lock().unwrap().clone()
    }

    /// Accepted submits to `destination_addr`.
    pub fn submits_to(&self, destination_addr: &str) -> Vec<Submit> {
        self.shared
            .submits
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.destination_addr == destination_addr)
            .cloned()
            .collect()
    }

    /// The texts `destination_addr` received, concatenated parts joined in order.
    pub fn texts_to(&self, destination_addr: &str) -> Vec<String> {
        let mut texts: Vec<Group> = Vec::new();
        for submit in self.submits_to(destination_addr) {
            match submit.concat() {
                Some(c) => {
                    let key = Some((c.reference, c.total));
                    match texts
                        .iter_mut()
                        .find(|(k, parts)| *k == key && parts.len() < c.total as usize)
                    {
                        Some((_, parts)) => parts.push((c.seq, submit)),
                        None => texts.push((key, vec![(c.seq, submit)])),
                    }
                }
                None => texts.push((None, vec![(1, submit)])),
            }
        }
        texts
            .into_iter()
            .map(|(_, mut parts)| {
                parts.sort_by_key(|(seq, _)| *seq);
                let coding = parts[0].1.data_coding;
                let payload: Vec<u8> = parts.iter().flat_map(|(_, s)| s.user_data()).collect();
                text::decode(coding, &payload)
            })
            .collect()
    }

    /// Submits accepted (answered `ESME_ROK`).
    pub fn submit_count(&self) -> u64 {
        self.shared.counters.submits.load(Ordering::Relaxed)
    }

    /// Submits taken and never answered (before a dropped connection).
    pub fn unanswered_count(&self) -> u64 {
        self.shared.counters.unanswered.load(Ordering::Relaxed)
    }

    /// Submits answered `ESME_RTHROTTLED` or `ESME_RMSGQFUL`.
    pub fn throttled_count(&self) -> u64 {
        self.shared.counters.throttled.load(Ordering::Relaxed)
    }

    /// Binds accepted.
    pub fn bind_count(&self) -> u64 {
        self.shared.counters.binds.load(Ordering::Relaxed)
    }

    /// Binds refused.
    pub fn refused_bind_count(&self) -> u64 {
        self.shared.counters.refused_binds.load(Ordering::Relaxed)
    }

    /// `unbind`s received.
    pub fn unbind_count(&self) -> u64 {
        self.shared.counters.unbinds.load(Ordering::Relaxed)
    }

    /// `enquire_link`s received.
    pub fn enquire_link_count(&self) -> u64 {
        self.shared.counters.enquire_links.load(Ordering::Relaxed)
    }

    /// `deliver_sm_resp`s received.
    pub fn deliver_sm_resp_count(&self) -> u64 {
        self.shared
            .counters
            .deliver_sm_resps
            .load(Ordering::Relaxed)
    }

    /// `deliver_sm_resp`s with a status other than `ESME_ROK`.
    pub fn deliver_sm_refusal_count(&self) -> u64 {
        self.shared
            .counters
            .deliver_sm_refusals
            .load(Ordering::Relaxed)
    }

    /// `data_sm_resp`s received.
    pub fn data_sm_resp_count(&self) -> u64 {
        self.shared.counters.data_sm_resps.load(Ordering::Relaxed)
    }

    /// `data_sm_resp`s with a status other than `ESME_ROK`.
    pub fn data_sm_refusal_count(&self) -> u64 {
        self.shared
            .counters
            .data_sm_refusals
            .load(Ordering::Relaxed)
    }

    /// Responses received to `alert_notification`s (SMPP 3.4 defines none, so any is wrong).
    pub fn alert_answer_count(&self) -> u64 {
        self.shared.counters.alert_answers.load(Ordering::Relaxed)
    }

    /// Send one mobile-originated `deliver_sm` exactly as given (`short_message` with any UDH
    /// already in it), such as a part with a broken header; `false` if no bind can receive it.
    pub fn inject_mo_raw(
        &self,
        from: &str,
        to: &str,
        esm_class: u8,
        data_coding: u8,
        short_message: Vec<u8>,
    ) -> bool {
        let carriage = Carriage::ShortMessage;
        self.inject_mo_raw_as(carriage, from, to, esm_class, data_coding, short_message)
    }

    /// `inject_mo_raw`, its user data carried as `carriage` says.
    pub fn inject_mo_raw_as(
        &self,
        carriage: Carriage,
        from: &str,
        to: &str,
        esm_class: u8,
        data_coding: u8,
        user_data: Vec<u8>,
    ) -> bool {
        let codes = (esm_class, data_coding);
        let pdu = delivery(carriage, (from, to), codes, user_data, Vec::new());
        self.shared.send_deliver(0, pdu)
    }

    /// Send a long mobile-originated message as `carriage` says, cut into `parts` of user data
    /// joined by SAR TLVs (`sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`)
    /// rather than a UDH, as SMSCs that deliver by `data_sm` do; `false` if no bind can receive.
    pub fn inject_mo_sar(
        &self,
        carriage: Carriage,
        (from, to): (&str, &str),
        data_coding: u8,
        reference: u16,
        parts: Vec<Vec<u8>>,
    ) -> bool {
        let total = parts.len() as u8;
        parts.into_iter().enumerate().all(|(i, part)| {
            let tlvs = vec![
                TlvValue::SarMsgRefNum(reference),
                TlvValue::SarTotalSegments(total),
                TlvValue::SarSegmentSeqnum(i as u8 + 1),
            ];
            let pdu = delivery(carriage, (from, to), (0, data_coding), part, tlvs);
            self.shared.send_deliver(0, pdu)
        })
    }

    /// Tell the ESME that the handset `from` is reachable again (`alert_notification`, as after
    /// a `set_dpf`), on a connection that can receive; `false` if there is none.
    pub fn send_alert_notification(&self, from: &str, esme_addr: &str) -> bool {
        let (ton, npi, source) = address(from);
        let (esme_ton, esme_npi, esme) = address(esme_addr);
        let alert = AlertNotification::new(
            ton,
            npi,
            widen(source),
            esme_ton,
            esme_npi,
            widen(esme),
            None,
        );
        let sequence = self.shared.sequence();
        self.shared.alerts.lock().unwrap().insert(sequence);
        self.shared.send_on(0, sequence, alert.into())
    }

    /// Connections bound now.
    pub fn bound_sessions(&self) -> usize {
        self.shared.sessions.lock().unwrap().len()
    }

    /// Send a mobile-originated message from `from` to `to` (split into UDH parts when long);
    /// `false` if no bound connection can receive it.
    pub fn inject_mo(&self, from: &str, to: &str, body: &str) -> bool {
        self.inject(from, to, body, false)
    }

    /// `inject_mo`, with the parts of a long message spread over the binds that can receive,
    /// one after the other, as an SMSC balancing over several binds (or instances) may.
    pub fn inject_mo_spread(&self, from: &str, to: &str, body: &str) -> bool {
        self.inject(from, to, body, true)
    }

    fn inject(&self, from: &str, to: &str, body: &str, spread: bool) -> bool {
        let (coding, units, single, multi) = match text::gsm7_encode(body) {
            Some(septets) => (0u8, septets_units(&septets), 160, 153),
            None => (
                8u8,
                body.chars()
                    .map(|c| text::ucs2_encode(&c.to_string()))
                    .collect(),
                140,
                134,
            ),
        };
        let total: usize = units.iter().map(Vec::len).sum();
        let payloads: Vec<Vec<u8>> = if total <= single {
            vec![units.concat()]
        } else {
            let mut parts = vec![Vec::new()];
            for unit in units {
                if parts.last().unwrap().len() + unit.len() > multi {
                    parts.push(Vec::new());
                }
                parts.last_mut().unwrap().extend(unit);
            }
            let reference = self.shared.next_message_id.fetch_add(1, Ordering::Relaxed) as u8;
            let count = parts.len() as u8;
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| [vec![5, 0, 3, reference, count, i as u8 + 1], p].concat())
                .collect()
        };
        let udh = payloads.len() > 1;
        let receiving = self.shared.receiving_sessions();
        payloads.into_iter().enumerate().all(|(i, payload)| {
            let codes = (if udh { 0x40 } else { 0 }, coding);
            let deliver = delivery(
                Carriage::ShortMessage,
                (from, to),
                codes,
                payload,
                Vec::new(),
            );
            let session = match spread {
                true if !receiving.is_empty() => receiving[i % receiving.len()],
                _ => 0,
            };
            self.shared.send_deliver(session, deliver)
        })
    }
}

/// Parts of one message as they arrived: the (reference, total) of its UDH and (seq, part)s.
type Group = (Option<(u16, u8)>, Vec<(u8, Submit)>);

/// One GSM-7 character's septets each (an escape and its code stay together).
fn septets_units(septets: &[u8]) -> Vec<Vec<u8>> {
    let mut units = Vec::new();
    let mut i = 0;
    while i < septets.len() {
        let width = if septets[i] == 0x1B { 2 } else { 1 };
        units.push(septets[i..(i + width).min(septets.len())].to_vec());
        i += width;
    }
    units
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    fn receipts(&self) -> Receipts {
        Receipts::from_code(self.receipts.load(Ordering::Relaxed))
    }

    fn sequence(&self) -> u32 {
        self.next_sequence.fetch_add(1, Ordering::Relaxed)
    }

    /// Send on `preferred` if it can receive, else on any connection that can.
    /// The sessions that can take a `deliver_sm`, oldest first.
    fn receiving_sessions(&self) -> Vec<u64> {
        let sessions = self.sessions.lock().unwrap();
        let mut ids: Vec<u64> = sessions
            .iter()
            .filter(|(_, r)| r.can_receive)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn send_deliver(&self, preferred: u64, deliver: Pdu) -> bool {
        self.send_on(preferred, self.sequence(), deliver)
    }

    /// Send `pdu` as `sequence` on `preferred` if it can receive, else on any that can.
    fn send_on(&self, preferred: u64, sequence: u32, pdu: Pdu) -> bool {
        let sessions = self.sessions.lock().unwrap();
        let target = sessions
            .get(&preferred)
            .filter(|r| r.can_receive)
            .or_else(|| sessions.values().find(|r| r.can_receive));
        match target {
            Some(r) => {
                r.tx.send(Command::new(CommandStatus::EsmeRok, sequence, pdu))
                    .is_ok()
            }
            None => false,
        }
    }

    /// Queue the receipt for an accepted submit.
    fn schedule_receipt(&self, session: u64, submit: &Submit) {
        let mode = self.receipts();
        if mode == Receipts::None || submit.registered_delivery & 0x03 == 0 {
            return;
        }
        let (state, stat, err) = match last4(&submit.destination_addr) {
            "9990" => (MessageState::Undeliverable, "UNDELIV", "001"),
            "9995" => (MessageState::Rejected, "REJECTD", "002"),
            "9996" => (MessageState::Expired, "EXPIRED", "003"),
            _ => (MessageState::Delivered, "DELIVRD", "000"),
        };
        let id = match mode {
            Receipts::DecimalText => u64::from_str_radix(&submit.message_id, 16)
                .expect("the fake's ids are hex")
                .to_string(),
            _ => submit.message_id.clone(),
        };
        let body = if mode == Receipts::Tlv {
            Vec::new()
        } else {
            format!(
                "id:{id} sub:001 dlvrd:{} submit date:2611291200 done date:2611291201 stat:{stat} err:{err} text:",
                if stat == "DELIVRD" { "001" } else { "000" },
            )
            .into_bytes()
        };
        let tlvs = match mode {
            Receipts::Text | Receipts::DecimalText | Receipts::Payload => Vec::new(),
            _ => vec![
                TlvValue::ReceiptedMessageId(
                    COctetString::from_string(submit.message_id.clone()).expect("short id"),
                ),
                TlvValue::MessageState(state),
            ],
        };
        let carriage = match mode {
            Receipts::Payload => Carriage::Payload,
            Receipts::DataSm => Carriage::DataSm,
            _ => Carriage::ShortMessage,
        };
        let addresses = (
            submit.destination_addr.as_str(),
            submit.source_addr.as_str(),
        );
        let deliver = delivery(carriage, addresses, (0x04, 0), body, tlvs);
        let delay = Duration::from_millis(self.receipt_delay_ms.load(Ordering::Relaxed));
        let _ = self.receipts_tx.send(Pending {
            due: Instant::now() + delay,
            session,
            deliver,
        });
    }
}

fn last4(addr: &str) -> &str {
    &addr[addr.len().saturating_sub(4)..]
}

/// An address's TON, NPI and digits: international-looking digits get TON 1 / NPI 1.
fn address(a: &str) -> (Ton, Npi, COctetString<1, 21>) {
    let digits = a.bytes().all(|b| b.is_ascii_digit());
    let (ton, npi) = if digits && !a.starts_with('0') {
        (Ton::International, Npi::Isdn)
    } else if digits {
        (Ton::National, Npi::Isdn)
    } else {
        (Ton::Alphanumeric, Npi::Unknown)
    };
    let text = COctetString::from_string(a.to_string()).unwrap_or_else(|_| COctetString::empty());
    (ton, npi, text)
}

/// An address in `alert_notification`'s wider field.
fn widen(addr: COctetString<1, 21>) -> COctetString<1, 65> {
    COctetString::from_string(addr.as_str().to_string()).unwrap_or_else(|_| COctetString::empty())
}

/// A receipt or mobile-originated message from `from` to `to` with `(esm_class, data_coding)`,
/// its `user_data` carried as `carriage` says, with `tlvs` besides.
fn delivery(
    carriage: Carriage,
    (from, to): (&str, &str),
    (esm_class, data_coding): (u8, u8),
    user_data: Vec<u8>,
    mut tlvs: Vec<TlvValue>,
) -> Pdu {
    let (source_ton, source_npi, source) = address(from);
    let (dest_ton, dest_npi, dest) = address(to);
    let (short_message, in_payload) = match carriage {
        Carriage::ShortMessage => (user_data, None),
        _ => (Vec::new(), Some(user_data)),
    };
    if let Some(bytes) = in_payload {
        let payload = MessagePayload::new(AnyOctetString::from_vec(bytes));
        tlvs.insert(0, TlvValue::MessagePayload(payload));
    }
    let tlvs: Vec<Tlv> = tlvs.into_iter().map(Tlv::from).collect();
    if carriage == Carriage::DataSm {
        // DataSm's own TLV setter takes only submission TLVs; an SMSC's data_sm carries
        // delivery ones (receipted_message_id, message_state) too.
        let mut parts = DataSm::default().into_parts();
        parts.source_addr_ton = source_ton;
        parts.source_addr_npi = source_npi;
        parts.source_addr = source;
        parts.dest_addr_ton = dest_ton;
        parts.dest_addr_npi = dest_npi;
        parts.destination_addr = dest;
        parts.esm_class = EsmClass::from(esm_class);
        parts.data_coding = data_coding.into();
        parts.tlvs = tlvs;
        return DataSm::from_parts(parts).into();
    }
    let deliver = DeliverSm::builder()
        .source_addr_ton(source_ton)
        .source_addr_npi(source_npi)
        .source_addr(source)
        .dest_addr_ton(dest_ton)
        .dest_addr_npi(dest_npi)
        .destination_addr(dest)
        .esm_class(EsmClass::from(esm_class))
        .data_coding(data_coding.into())
        .short_message(OctetString::from_vec(short_message).expect("at most 255 bytes"))
        .build();
    let mut parts = deliver.into_parts();
    parts.tlvs = tlvs;
    DeliverSm::from_parts(parts).into()
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let Some(tls) = tls.clone() else {
            let (read, write) = stream.into_split();
            tokio::spawn(session::serve(read, write, shared));
            continue;
        };
        // Handshakes in their own task: a stalled client must not hold up the next accept.
        tokio::spawn(async move {
            match tls.accept(stream).await {
                Ok(stream) => {
                    let (read, write) = tokio::io::split(stream);
                    session::serve(read, write, shared).await
                }
                Err(_) => {
                    shared
                        .counters
                        .failed_handshakes
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Send receipts when due; a receipt with no connection to go on waits for one.
async fn receipt_loop(mut rx: mpsc::UnboundedReceiver<Pending>, shared: Arc<Shared>) {
    while let Some(pending) = rx.recv().await {
        tokio::time::sleep_until(pending.due.into()).await;
        while !shared.send_deliver(pending.session, pending.deliver.clone()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

//! One bind: connect, bind, then submits out and answers, receipts and replies in, until the
//! connection drops (reconnect with backoff) or shutdown (unbind).

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rusmpp::{
    command::CommandParts,
    pdus::{AlertNotification, BindReceiver, BindTransceiver, BindTransmitter, SubmitSm},
    tokio_codec::CommandCodec,
    types::COctetString,
    values::{InterfaceVersion, Npi, Ton},
    Command, CommandId, CommandStatus, Pdu,
};
use tokio::{
    io::AsyncWriteExt,
    sync::{mpsc, oneshot},
    time::{sleep_until, timeout, Instant},
};
use tokio_util::{
    bytes::BytesMut,
    codec::{Encoder, FramedRead},
    sync::CancellationToken,
};
use tracing::Instrument;

use super::{
    deliver,
    delivery::{Address, Delivery},
    metrics, status_text,
    wire::{self, OpenError, Reader, Writer},
    Shared,
};
use crate::config::SmppConfig;

/// A part on its way to a bind, with where its answer goes; dropped unanswered when the
/// connection is lost first.
pub(super) struct Submission {
    pub pdu: SubmitSm,
    pub reply: oneshot::Sender<Answer>,
    /// Whether the part reached the wire, which its sender reads when it stops waiting.
    pub written: Arc<Written>,
}

/// Whether a part was written to an SMSC: decided once between the bind that would write it
/// and the sender that stops waiting for it, so a part given up is certainly not sent and one
/// sent is never taken for unsent.
#[derive(Debug, Default)]
pub(super) struct Written(AtomicU8);

impl Written {
    const QUEUED: u8 = 0;
    const WRITTEN: u8 = 1;
    const WITHDRAWN: u8 = 2;

    /// The bind is about to write the part: `false` if its sender withdrew it first.
    fn write(&self) -> bool {
        self.0
            .compare_exchange(
                Self::QUEUED,
                Self::WRITTEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The SMSC refused the part for now (throttled): it waits to be written again.
    fn unwritten(&self) {
        self.0.store(Self::QUEUED, Ordering::Release);
    }

    /// The sender stops waiting: `true` if the part never reached the wire (and now never will).
    pub fn withdraw(&self) -> bool {
        self.0
            .compare_exchange(
                Self::QUEUED,
                Self::WITHDRAWN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

/// The SMSC's final word on a submit.
#[derive(Debug)]
pub(super) enum Answer {
    /// Taken, under this message id.
    Accepted(String),
    /// Refused for good.
    Refused(CommandStatus),
}

/// What a connection binds as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Transceiver,
    Transmitter,
    Receiver,
}

/// Deliveries (`deliver_sm`, `data_sm`) read but not yet recorded, per connection; reading
/// pauses when it is full.
const DELIVER_BACKLOG: usize = 256;

type Frames = FramedRead<Reader, CommandCodec>;

/// Why a connection ended.
enum End {
    /// Our shutdown: unbound (or tried to).
    Shutdown,
    /// Lost, for this reason; reconnect.
    Lost(String),
}

/// Why a bind did not come up.
#[derive(Debug, thiserror::Error)]
enum BindError {
    #[error("cannot reach the SMSC at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("no TLS session with the SMSC at {addr}: {reason}")]
    Tls { addr: String, reason: String },
    #[error("SMPP bind refused by the SMSC: {0}")]
    Refused(String),
    #[error("the SMSC answered the bind with {0}")]
    Protocol(String),
}

/// Keep bind `slot` up as `role` until `shutdown`, reconnecting with backoff.
pub(super) async fn run(
    shared: Arc<Shared>,
    slot: usize,
    role: Role,
    submissions: Option<mpsc::Receiver<Submission>>,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("smpp_bind", slot, role = ?role);
    keep_bound(shared, slot, role, submissions, shutdown)
        .instrument(span)
        .await
}

async fn keep_bound(
    shared: Arc<Shared>,
    slot: usize,
    role: Role,
    mut submissions: Option<mpsc::Receiver<Submission>>,
    shutdown: CancellationToken,
) {
    let config = &shared.config;
    let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(rate));
    let mut backoff = new_backoff(config);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = refusing(&mut submissions, connect(config, role)) => c,
        };
        match connected {
            Ok((frames, write)) => {
                backoff = new_backoff(config);
                tracing::info!("SMPP bound");
                let connection = Connection::new(shared.clone(), slot, role, write);
                let end = connection
                    .serve(frames, submissions.as_mut(), &limiter, &shutdown)
                    .await;
                match end {
                    End::Shutdown => {
                        tracing::info!("SMPP unbound");
                        return;
                    }
                    End::Lost(reason) => {
                        tracing::warn!(%reason, "SMPP connection lost; reconnecting")
                    }
                }
            }
            Err(e) => {
                metrics::bind_failed(match e {
                    BindError::Refused(_) => "refused",
                    BindError::Tls { .. } => "tls",
                    _ => "unreachable",
                });
                tracing::warn!(error = %e, "SMPP bind failed; retrying");
                if role == Role::Receiver {
                    shared.set_receiver(slot, false, Some(e.to_string()));
                } else {
                    shared.set_failed(slot, e.to_string());
                }
            }
        }
        let wait = backoff
            .next()
            .unwrap_or(Duration::from_millis(config.reconnect_max_ms));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = refusing(&mut submissions, tokio::time::sleep(wait)) => {}
        }
    }
}

fn new_backoff(config: &SmppConfig) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(config.reconnect_min_ms))
        .with_max_delay(Duration::from_millis(config.reconnect_max_ms))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Run `work`, meanwhile dropping any submission that reaches this unbound link, so its
/// sender tries another bind at once.
async fn refusing<T>(
    submissions: &mut Option<mpsc::Receiver<Submission>>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        let next = async {
            match submissions.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = &mut work => return out,
            Some(stray) = next => drop(stray),
        }
    }
}

/// Open the connection (TLS when configured) and bind as `role`.
async fn connect(config: &SmppConfig, role: Role) -> Result<(Frames, Writer), BindError> {
    let addr = format!("{}:{}", config.host, config.port);
    let wait = Duration::from_millis(config.response_timeout_ms);
    let unreachable = |reason: String| BindError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let (read, mut write) = match wire::open(config, wait).await {
        Ok(halves) => halves,
        Err(OpenError::Unreachable(reason)) => return Err(unreachable(reason)),
        Err(OpenError::Tls(reason)) => return Err(BindError::Tls { addr, reason }),
    };
    let mut frames = FramedRead::new(read, CommandCodec::new());
    // Validation keeps each within its SMPP length.
    let (system_id, password, system_type) = (
        c_string(&config.system_id),
        c_string(config.password.expose()),
        c_string(&config.system_type),
    );
    macro_rules! bind {
        ($pdu:ident) => {
            Pdu::from(
                $pdu::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .build(),
            )
        };
    }
    let (bind, expected) = match role {
        Role::Transceiver => (bind!(BindTransceiver), CommandId::BindTransceiverResp),
        Role::Transmitter => (bind!(BindTransmitter), CommandId::BindTransmitterResp),
        Role::Receiver => (bind!(BindReceiver), CommandId::BindReceiverResp),
    };
    let mut buf = BytesMut::new();
    let _ = CommandCodec::new().encode(&Command::new(CommandStatus::EsmeRok, 1, bind), &mut buf);
    let sent = async {
        write.write_all(&buf).await?;
        write.flush().await
    };
    sent.await.map_err(|e| unreachable(e.to_string()))?;
    let answer = match timeout(wait, frames.next()).await {
        Err(_) => return Err(unreachable("no answer to the bind".into())),
        Ok(None) => return Err(unreachable("closed during the bind".into())),
        Ok(Some(Err(e))) => return Err(BindError::Protocol(format!("an unreadable PDU: {e}"))),
        Ok(Some(Ok(answer))) => answer,
    };
    if answer.id() != expected && answer.id() != CommandId::GenericNack {
        return Err(BindError::Protocol(format!("{:?}", answer.id())));
    }
    match answer.status() {
        CommandStatus::EsmeRok if answer.id() == expected => Ok((frames, write)),
        status => Err(BindError::Refused(status_text(status))),
    }
}

fn c_string<const MAX: usize>(text: &str) -> COctetString<1, MAX> {
    COctetString::from_string(text.to_string()).unwrap_or_default()
}

/// Hand a delivery to the handler that records and answers it. Waits while the backlog is
/// full, which stops reading: the SMSC's window then holds the rest.
async fn deliver_to(
    deliveries: &mpsc::Sender<(u32, Delivery)>,
    sequence: u32,
    delivery: Delivery,
) -> Result<(), End> {
    deliveries
        .send((sequence, delivery))
        .await
        .map_err(|_| End::Lost("the receipt handler stopped".into()))
}

/// Note that a handset the SMSC was asked to watch (`set_dpf`) is reachable again. Nothing
/// here asks for these, so there is nothing to resend: it is only counted and logged.
fn alerted(alert: &AlertNotification) {
    metrics::alert_notification();
    let handset = Address {
        ton: alert.source_addr_ton.into(),
        addr: alert.source_addr.as_str().to_string(),
    };
    tracing::info!(
        handset = %handset.masked(),
        available = ?alert.ms_availability_status(),
        "SMSC alert_notification taken (no response is defined)"
    );
}

/// A submit sent and not yet answered.
struct InFlight {
    submission: Submission,
    sent: Instant,
}

/// One bound connection.
struct Connection {
    shared: Arc<Shared>,
    slot: usize,
    role: Role,
    write: Writer,
    buf: BytesMut,
    codec: CommandCodec,
    next_sequence: u32,
    in_flight: HashMap<u32, InFlight>,
    /// Throttled submits, sent again first once the pause is over.
    retry: VecDeque<Submission>,
    paused_until: Option<Instant>,
    /// Our `enquire_link` awaiting its answer.
    link_check: Option<(u32, Instant)>,
}

impl Connection {
    fn new(shared: Arc<Shared>, slot: usize, role: Role, write: Writer) -> Self {
        if role == Role::Receiver {
            shared.set_receiver(slot, true, None);
        } else {
            shared.set_bound(slot, true);
        }
        Self {
            shared,
            slot,
            role,
            write,
            buf: BytesMut::with_capacity(4096),
            codec: CommandCodec::new(),
            // 1 was the bind.
            next_sequence: 2,
            in_flight: HashMap::new(),
            retry: VecDeque::new(),
            paused_until: None,
            link_check: None,
        }
    }

    fn config(&self) -> &SmppConfig {
        &self.shared.config
    }

    fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.config().response_timeout_ms)
    }

    async fn serve(
        mut self,
        mut frames: Frames,
        mut submissions: Option<&mut mpsc::Receiver<Submission>>,
        limiter: &DefaultDirectRateLimiter,
        shutdown: &CancellationToken,
    ) -> End {
        let (deliver_tx, deliver_rx) = mpsc::channel(DELIVER_BACKLOG);
        let (answer_tx, mut answers) = mpsc::unbounded_channel();
        tokio::spawn(deliver::run(self.shared.clone(), deliver_rx, answer_tx).in_current_span());
        let period = Duration::from_secs(self.config().enquire_link_seconds);
        let mut enquire = tokio::time::interval_at(Instant::now() + period, period);
        let check_every = (self.response_timeout() / 4).max(Duration::from_millis(20));
        let mut check = tokio::time::interval(check_every);
        let window = self.config().window as usize;
        let end = loop {
            let paused = self.paused_until.is_some();
            let room = submissions.is_some() && self.in_flight.len() < window && !paused;
            if room {
                // Throttled parts already waited out the pause: they skip the rate limiter.
                if let Some(again) = self.retry.pop_front() {
                    if let Err(end) = self.submit(again).await {
                        break end;
                    }
                    continue;
                }
            }
            let next = async {
                match submissions.as_deref_mut() {
                    Some(rx) => {
                        limiter.until_ready().await;
                        rx.recv().await
                    }
                    None => std::future::pending().await,
                }
            };
            let resume = self.paused_until.unwrap_or_else(Instant::now);
            let step = tokio::select! {
                _ = shutdown.cancelled() => break self.unbind(&mut frames).await,
                frame = frames.next() => match frame {
                    Some(Ok(command)) => self.on_command(command, &deliver_tx).await,
                    Some(Err(e)) => Err(End::Lost(format!("unreadable PDU from the SMSC: {e}"))),
                    None => Err(End::Lost("the SMSC closed the connection".into())),
                },
                Some(answer) = answers.recv() => self.write(&answer).await,
                Some(submission) = next, if room => {
                    self.queue_submit(submission);
                    Ok(())
                }
                _ = sleep_until(resume), if paused => {
                    self.paused_until = None;
                    Ok(())
                }
                _ = enquire.tick() => self.enquire_link().await,
                _ = check.tick() => self.check_answers_in_time(),
            };
            if let Err(end) = step {
                break end;
            }
            if !self.buf.is_empty() {
                // Submissions already waiting go out in the same write, as far as the window
                // and the rate allow: one system call for a burst instead of one a PDU.
                if let Some(rx) = submissions.as_deref_mut() {
                    while self.in_flight.len() < window && !rx.is_empty() && limiter.check().is_ok()
                    {
                        let Ok(submission) = rx.try_recv() else { break };
                        self.queue_submit(submission);
                    }
                }
                if let Err(end) = self.flush().await {
                    break end;
                }
            }
        };
        if self.role == Role::Receiver {
            self.shared.set_receiver(self.slot, false, None);
        } else {
            self.shared.set_bound(self.slot, false);
        }
        // Dropping what is in flight tells each sender its part went unanswered.
        metrics::window(-(self.in_flight.len() as f64));
        for _ in &self.in_flight {
            metrics::submit("lost");
        }
        end
    }

    fn sequence(&mut self) -> u32 {
        let s = self.next_sequence;
        // Sequence numbers run 1..=0x7FFFFFFF.
        self.next_sequence = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    async fn write(&mut self, command: &Command) -> Result<(), End> {
        let _ = self.codec.encode(command, &mut self.buf);
        self.flush().await
    }

    /// Write whatever PDUs are encoded in the buffer.
    async fn flush(&mut self) -> Result<(), End> {
        // TLS may keep the end of a write in its records until flushed (TCP's flush does nothing).
        let write = &mut self.write;
        let written = async {
            write.write_all(&self.buf).await?;
            write.flush().await
        }
        .await
        .map_err(|e| End::Lost(format!("cannot write to the SMSC: {e}")));
        self.buf.clear();
        written
    }

    async fn submit(&mut self, submission: Submission) -> Result<(), End> {
        self.queue_submit(submission);
        self.flush().await
    }

    /// Encode a `submit_sm` into the buffer, in flight from now; the next flush sends it.
    fn queue_submit(&mut self, submission: Submission) {
        if !submission.written.write() {
            // Its sender gave up (send timeout) and counts it as not sent.
            return;
        }
        let sequence = self.sequence();
        let command = Command::new(CommandStatus::EsmeRok, sequence, submission.pdu.clone());
        let _ = self.codec.encode(&command, &mut self.buf);
        self.in_flight.insert(
            sequence,
            InFlight {
                submission,
                sent: Instant::now(),
            },
        );
        metrics::window(1.0);
    }

    async fn enquire_link(&mut self) -> Result<(), End> {
        if self.link_check.is_some() {
            return Ok(());
        }
        let sequence = self.sequence();
        self.link_check = Some((sequence, Instant::now()));
        self.write(&Command::new(
            CommandStatus::EsmeRok,
            sequence,
            Pdu::EnquireLink,
        ))
        .await
    }

    fn check_answers_in_time(&self) -> Result<(), End> {
        let limit = self.response_timeout();
        let late = |sent: &Instant| sent.elapsed() > limit;
        if self.in_flight.values().any(|f| late(&f.sent)) {
            return Err(End::Lost(format!(
                "no submit_sm_resp within {} ms",
                limit.as_millis()
            )));
        }
        if self.link_check.is_some_and(|(_, sent)| late(&sent)) {
            return Err(End::Lost(format!(
                "no enquire_link_resp within {} ms",
                limit.as_millis()
            )));
        }
        Ok(())
    }

    async fn on_command(
        &mut self,
        command: Command,
        deliveries: &mpsc::Sender<(u32, Delivery)>,
    ) -> Result<(), End> {
        let (id, status, sequence) = (command.id(), command.status(), command.sequence_number());
        match (id, command.into_parts().pdu) {
            (CommandId::SubmitSmResp | CommandId::GenericNack, pdu) => {
                let message_id = match pdu {
                    Some(Pdu::SubmitSmResp(resp)) => resp.message_id().as_str().to_string(),
                    _ => String::new(),
                };
                self.answered(sequence, status, message_id);
            }
            (CommandId::EnquireLinkResp, _) => {
                if self.link_check.is_some_and(|(s, _)| s == sequence) {
                    self.link_check = None;
                }
            }
            (CommandId::EnquireLink, _) => {
                let resp = Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp);
                self.write(&resp).await?;
            }
            (CommandId::DeliverSm, Some(Pdu::DeliverSm(deliver))) => {
                deliver_to(deliveries, sequence, deliver.into()).await?
            }
            (CommandId::DataSm, Some(Pdu::DataSm(data))) => {
                deliver_to(deliveries, sequence, data.into()).await?
            }
            // SMPP 3.4 defines no alert_notification_resp: answering it, even with a
            // generic_nack, is a protocol error some SMSCs unbind for.
            (CommandId::AlertNotification, Some(Pdu::AlertNotification(alert))) => alerted(&alert),
            (CommandId::Unbind, _) => {
                let resp = Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp);
                let _ = self.write(&resp).await;
                return Err(End::Lost("the SMSC unbound".into()));
            }
            (CommandId::UnbindResp, _) => {}
            (id, _) if u32::from(id) & 0x8000_0000 == 0 => {
                tracing::warn!(command_id = ?id, "SMSC sent a request we do not handle");
                let nack = Command::from_parts(CommandParts {
                    id: CommandId::GenericNack,
                    status: CommandStatus::EsmeRinvcmdid,
                    sequence_number: sequence,
                    pdu: None,
                });
                self.write(&nack).await?;
            }
            (id, _) => tracing::debug!(command_id = ?id, sequence, "unexpected response ignored"),
        }
        Ok(())
    }

    /// Settle the submit `sequence`: accepted, throttled (again after a pause) or refused.
    fn answered(&mut self, sequence: u32, status: CommandStatus, message_id: String) {
        let Some(InFlight { submission, .. }) = self.in_flight.remove(&sequence) else {
            tracing::debug!(sequence, "answer to no submit in flight ignored");
            return;
        };
        metrics::window(-1.0);
        let answer = match status {
            CommandStatus::EsmeRok if !message_id.is_empty() => Answer::Accepted(message_id),
            CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => {
                metrics::throttled();
                metrics::submit("throttled");
                let pause = Duration::from_millis(self.config().throttle_pause_ms);
                self.paused_until = Some(Instant::now() + pause);
                submission.written.unwritten();
                self.retry.push_back(submission);
                return;
            }
            CommandStatus::EsmeRok => {
                tracing::warn!(sequence, "submit_sm_resp without a message id");
                Answer::Refused(CommandStatus::EsmeRinvmsgid)
            }
            refused => Answer::Refused(refused),
        };
        metrics::submit(match answer {
            Answer::Accepted(_) => "accepted",
            Answer::Refused(_) => "refused",
        });
        let _ = submission.reply.send(answer);
    }

    /// Wait briefly for the answers to submits already sent, then unbind.
    async fn unbind(&mut self, frames: &mut Frames) -> End {
        let deadline = Instant::now() + self.response_timeout();
        let (ignored, _) = mpsc::channel(1);
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(Some(Ok(command))) => {
                    let _ = self.on_command(command, &ignored).await;
                }
                _ => return End::Shutdown,
            }
        }
        let sequence = self.sequence();
        let unbind = Command::new(CommandStatus::EsmeRok, sequence, Pdu::Unbind);
        if self.write(&unbind).await.is_err() {
            return End::Shutdown;
        }
        while let Ok(Some(Ok(command))) = tokio::time::timeout_at(deadline, frames.next()).await {
            if command.id() == CommandId::UnbindResp {
                break;
            }
        }
        End::Shutdown
    }
}

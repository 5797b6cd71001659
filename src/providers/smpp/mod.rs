//! The SMPP 3.4 provider: a few binds to one SMSC account, each with its window of
//! unanswered submits and its send rate; messages are spread over the bound ones, receipts and
//! mobile-originated messages come back as `deliver_sm` on the same connections.
//!
//! `send` returns once every part of a message has its `submit_sm_resp`. A part whose answer
//! was lost with its connection is submitted again on the next bind (SMPP cannot be asked
//! whether the first one got through); a message no bind could take within
//! `send_timeout_ms` goes back to the queue without spending an attempt.

mod coding;
mod deliver;
mod delivery;
mod ids;
mod metrics;
mod pack;
mod payload;
mod receipt;
mod session;
mod submit;
mod udh;
mod wire;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use async_trait::async_trait;
use futures_util::future::join_all;
use rusmpp::{pdus::SubmitSm, CommandStatus};
use tokio::{
    sync::{mpsc, oneshot, Notify},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use self::session::{Answer, Role, Submission};
use super::{Events, OutboundSms, Provider, SendError};
use crate::{
    clock::{Clock, SystemClock},
    config::{BindMode, SmppConfig},
};

/// The SMPP provider.
pub struct Smpp {
    shared: Arc<Shared>,
    /// Each transmitting bind's queue of submits, handed to its session by `start`.
    queues: Mutex<Vec<mpsc::Receiver<Submission>>>,
}

/// What the sessions and `send` share.
struct Shared {
    config: SmppConfig,
    /// The binds that carry submits (transceivers, or transmitters).
    links: Vec<Link>,
    /// The receiver binds (transmitter + receiver mode only), which bring receipts and replies.
    receivers: Vec<ReceiverLink>,
    /// Woken whenever a link comes up or goes down.
    changed: Notify,
    events: OnceLock<Events>,
    shutdown: OnceLock<CancellationToken>,
    next_reference: AtomicU8,
    next_link: AtomicUsize,
    /// Put before the SMSC's ids: two SMSCs (two routes) may hand out the same id.
    id_prefix: String,
    /// How ids are read from `submit_sm_resp` and from receipts.
    ids: ids::MessageIds,
    /// Tells the time a message has left (its `validity_period`).
    clock: Arc<dyn Clock>,
}

/// One transmitting bind as `send` sees it.
struct Link {
    submissions: mpsc::Sender<Submission>,
    bound: AtomicBool,
    /// Why the last connect or bind failed, until a bind succeeds.
    last_error: Mutex<Option<String>>,
}

/// One receiver bind as the provider's health sees it.
#[derive(Default)]
struct ReceiverLink {
    bound: AtomicBool,
    /// Why the last connect or bind failed, until a bind succeeds.
    last_error: Mutex<Option<String>>,
}

impl Smpp {
    /// A provider for the account `config` describes; nothing connects until `start`.
    pub fn new(config: SmppConfig) -> Self {
        let (links, queues) = (0..config.binds)
            .map(|_| {
                let (tx, rx) = mpsc::channel(config.window as usize);
                let link = Link {
                    submissions: tx,
                    bound: AtomicBool::new(false),
                    last_error: Mutex::new(None),
                };
                (link, rx)
            })
            .unzip();
        Self {
            shared: Arc::new(Shared {
                links,
                receivers: match config.bind_mode {
                    BindMode::TransmitterReceiver => {
                        (0..config.binds).map(|_| ReceiverLink::default()).collect()
                    }
                    BindMode::Transceiver => Vec::new(),
                },
                changed: Notify::new(),
                events: OnceLock::new(),
                shutdown: OnceLock::new(),
                next_reference: AtomicU8::new(rand::random()),
                next_link: AtomicUsize::new(0),
                id_prefix: String::new(),
                ids: ids::MessageIds::new(config.submit_ids, config.receipt_ids),
                clock: Arc::new(SystemClock),
                config,
            }),
            queues: Mutex::new(queues),
        }
    }

    /// The same provider as a route among others: its ids read `{route}:{SMSC id}`, so they
    /// cannot be mistaken for another SMSC's.
    pub fn for_route(config: SmppConfig, route: &str) -> Self {
        let mut smpp = Self::new(config);
        Arc::get_mut(&mut smpp.shared)
            .expect("not shared before start")
            .id_prefix = format!("{route}:");
        smpp
    }

    /// The same provider telling the time on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("not shared before start")
            .clock = clock;
        self
    }
}

impl Shared {
    /// The reason no message can go now, if none can.
    fn unavailable(&self) -> Option<String> {
        if self.links.iter().any(|l| l.bound.load(Ordering::Acquire)) {
            return None;
        }
        self.links
            .iter()
            .find_map(|l| l.last_error.lock().unwrap().clone())
    }

    /// What works only in part: no receiver bound (while transmitters may be), so receipts
    /// and replies wait at the SMSC.
    fn degraded(&self) -> Option<String> {
        if self
            .receivers
            .iter()
            .any(|r| r.bound.load(Ordering::Acquire))
        {
            return None;
        }
        let reason = self
            .receivers
            .iter()
            .find_map(|r| r.last_error.lock().unwrap().clone())?;
        Some(format!(
            "no SMPP receiver bind, so receipts and replies wait at the SMSC: {reason}"
        ))
    }

    /// Receiver `slot` came up (`true`) or went down; `failed` says why a bind failed.
    fn set_receiver(&self, slot: usize, bound: bool, failed: Option<String>) {
        let Some(receiver) = self.receivers.get(slot) else {
            return;
        };
        if bound || failed.is_some() {
            *receiver.last_error.lock().unwrap() = failed;
        }
        if receiver.bound.swap(bound, Ordering::AcqRel) != bound {
            metrics::receivers_up(if bound { 1.0 } else { -1.0 });
        }
    }

    /// Link `slot` came up or went down.
    fn set_bound(&self, slot: usize, bound: bool) {
        let link = &self.links[slot];
        if bound {
            *link.last_error.lock().unwrap() = None;
        }
        if link.bound.swap(bound, Ordering::AcqRel) != bound {
            metrics::binds_up(if bound { 1.0 } else { -1.0 });
        }
        self.changed.notify_waiters();
    }

    /// Link `slot` could not connect or bind.
    fn set_failed(&self, slot: usize, reason: String) {
        *self.links[slot].last_error.lock().unwrap() = Some(reason);
        self.changed.notify_waiters();
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.get().is_some_and(|s| s.is_cancelled())
    }

    /// A bound link, round robin, waiting for one until `deadline`.
    async fn pick_link(&self, deadline: Instant) -> Option<&Link> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shutting_down() {
                return None;
            }
            let start = self.next_link.fetch_add(1, Ordering::Relaxed);
            let n = self.links.len();
            let bound = (0..n)
                .map(|i| &self.links[(start + i) % n])
                .find(|l| l.bound.load(Ordering::Acquire));
            // A refused bind or an unreachable SMSC will not be over by the deadline: the
            // message goes back to the queue at once, with the reason.
            if bound.is_some() || self.unavailable().is_some() {
                return bound;
            }
            tokio::time::timeout_at(deadline, changed).await.ok()?;
        }
    }

    /// Why `send` gives a message back: the bind's own failure when there is one.
    fn why_waiting(&self) -> String {
        if self.shutting_down() {
            return "the SMPP binds are shutting down".into();
        }
        self.unavailable().unwrap_or_else(|| {
            format!(
                "no SMPP bind to {}:{} answered within {} ms",
                self.config.host, self.config.port, self.config.send_timeout_ms
            )
        })
    }

    /// Submit one part, on another bind if its connection drops before the answer (SMPP cannot
    /// be asked whether the lost one got through, so that part alone may arrive twice).
    async fn submit_part(&self, pdu: SubmitSm, deadline: Instant) -> Part {
        let mut written_before = false;
        loop {
            let Some(link) = self.pick_link(deadline).await else {
                return self.gave_up(written_before, None);
            };
            let written = Arc::new(session::Written::default());
            let (reply, answer) = oneshot::channel();
            let queued = Submission {
                pdu: pdu.clone(),
                reply,
                written: written.clone(),
            };
            match tokio::time::timeout_at(deadline, link.submissions.send(queued)).await {
                Err(_) => return self.gave_up(written_before, None),
                Ok(Err(_)) => continue,
                Ok(Ok(())) => {}
            }
            match tokio::time::timeout_at(deadline, answer).await {
                Err(_) => return self.gave_up(written_before, Some(&written)),
                // Dropped unanswered: the connection went down; the part goes again.
                Ok(Err(_)) => written_before = true,
                Ok(Ok(Answer::Accepted(id))) => return Part::Accepted(id),
                Ok(Ok(Answer::Refused(status))) => {
                    let words = format!("SMSC refused: {}", status_text(status));
                    return if self.is_transient(status) {
                        Part::NotTaken(SendError::transient(words))
                    } else {
                        Part::Refused(words)
                    };
                }
            }
        }
    }

    /// A part whose wait ran out: certainly not sent if it never reached the wire (and is
    /// withdrawn now), in doubt otherwise.
    fn gave_up(&self, written_before: bool, written: Option<&session::Written>) -> Part {
        let withdrawn = written.is_none_or(|w| w.withdraw());
        if withdrawn && !written_before {
            Part::NotTaken(SendError::Unavailable(self.why_waiting()))
        } else {
            Part::InDoubt(format!(
                "a part was written to the SMSC and no submit_sm_resp came within {} ms",
                self.config.send_timeout_ms
            ))
        }
    }

    /// Whether the SMSC's refusal is its own trouble rather than the message's: worth sending
    /// again, on this route or another (it did not take the part).
    fn is_transient(&self, status: CommandStatus) -> bool {
        matches!(
            status,
            CommandStatus::EsmeRsyserr
                | CommandStatus::EsmeRxTAppn
                | CommandStatus::EsmeRunknownerr
        ) || self.config.transient_statuses.contains(&u32::from(status))
    }
}

/// How one part's submit ended.
enum Part {
    /// The SMSC took it under this id.
    Accepted(String),
    /// Refused for good.
    Refused(String),
    /// Certainly not taken: never written, or refused for now.
    NotTaken(SendError),
    /// Written, and no answer came in time.
    InDoubt(String),
}

/// What a send in doubt left: the concatenation reference and each part's id once accepted,
/// so the retry sends the rest with the same reference and the handset joins them.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Progress {
    reference: u8,
    ids: Vec<Option<String>>,
}

impl Progress {
    /// The progress an earlier attempt at `sms` left, if it left any.
    fn of(sms: &OutboundSms) -> Option<Progress> {
        serde_json::from_str(sms.progress.as_deref()?).ok()
    }
}

/// A command status as operators read it: `ESME_RINVDSTADR (0x0000000B)`.
pub(crate) fn status_text(status: CommandStatus) -> String {
    let code = u32::from(status);
    let name = match status {
        CommandStatus::Other(_) => "unknown status".to_string(),
        known => {
            // `EsmeRinvdstadr` is the spec's `ESME_RINVDSTADR`.
            let debug = format!("{known:?}");
            match debug.strip_prefix("Esme") {
                Some(rest) => format!("ESME_{}", rest.to_ascii_uppercase()),
                None => debug.to_ascii_uppercase(),
            }
        }
    };
    format!("{name} (0x{code:08X})")
}

#[async_trait]
impl Provider for Smpp {
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        let shared = &self.shared;
        let deadline = Instant::now() + Duration::from_millis(shared.config.send_timeout_ms);
        let resumed = Progress::of(sms);
        let reference = match &resumed {
            Some(p) => p.reference,
            None => shared.next_reference.fetch_add(1, Ordering::Relaxed),
        };
        let parts = submit::build(sms, &shared.config, reference, shared.clock.now())?;
        let mut ids = match resumed {
            Some(p) if p.ids.len() == parts.len() => p.ids,
            _ => vec![None; parts.len()],
        };
        let pending: Vec<usize> = (0..parts.len()).filter(|&i| ids[i].is_none()).collect();
        let answers = join_all(
            parts
                .into_iter()
                .enumerate()
                .filter(|(i, _)| ids[*i].is_none())
                .map(|(_, p)| shared.submit_part(p, deadline)),
        )
        .await;
        let (mut refused, mut doubt, mut not_taken, mut taken_now) = (None, None, None, 0);
        for (i, answer) in pending.into_iter().zip(answers) {
            match answer {
                Part::Accepted(id) => {
                    taken_now += 1;
                    ids[i] = Some(format!("{}{}", shared.id_prefix, shared.ids.submitted(&id)))
                }
                Part::Refused(words) => refused = Some(words),
                Part::InDoubt(words) => doubt = Some(words),
                // A refusal for now outranks waiting for a bind: the attempt counts.
                Part::NotTaken(e) => {
                    if !matches!(not_taken, Some(SendError::Transient { .. })) {
                        not_taken = Some(e)
                    }
                }
            }
        }
        // One refused part fails the whole message, whatever else happened.
        if let Some(words) = refused {
            return Err(SendError::Permanent(words));
        }
        let accepted = ids.iter().filter(|id| id.is_some()).count();
        if accepted == ids.len() {
            let ids: Vec<String> = ids.into_iter().flatten().collect();
            if let (Some(events), true) = (shared.events.get(), ids.len() > 1) {
                if let Err(e) = events.parts_sent(&sms.message_id, ids.clone()).await {
                    // The parts are with the SMSC: failing the send would submit them again.
                    tracing::warn!(message_id = %sms.message_id, error = %e, "part ids not recorded");
                }
            }
            return Ok(ids.into_iter().next().unwrap_or_default());
        }
        if taken_now == 0 && doubt.is_none() {
            // Nothing changed at the SMSC: the message waits or is retried as it was, the
            // progress of an earlier attempt kept.
            return Err(not_taken.unwrap_or_else(|| SendError::Unavailable(shared.why_waiting())));
        }
        // Some parts are with the SMSC, or may be: only the rest goes again, on this route.
        let reason = match (doubt, not_taken) {
            (Some(words), _) => words,
            (None, Some(e)) => format!(
                "{accepted} of {} parts accepted, the rest not: {e}",
                ids.len()
            ),
            (None, None) => format!("{accepted} of {} parts accepted", ids.len()),
        };
        Err(SendError::InDoubt {
            reason,
            route: None,
            progress: serde_json::to_string(&Progress { reference, ids }).ok(),
        })
    }

    fn ready(&self) -> Result<(), String> {
        match self.shared.unavailable() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    fn warnings(&self) -> Vec<String> {
        self.shared.degraded().into_iter().collect()
    }

    fn start(&self, events: Events, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let shared = &self.shared;
        if shared.events.set(events).is_err() || shared.shutdown.set(shutdown.clone()).is_err() {
            tracing::error!("the SMPP provider was started twice; the second start does nothing");
            return Vec::new();
        }
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        let mut tasks = Vec::new();
        for (slot, queue) in queues.into_iter().enumerate() {
            let role = match shared.config.bind_mode {
                BindMode::Transceiver => Role::Transceiver,
                BindMode::TransmitterReceiver => {
                    tasks.push(tokio::spawn(session::run(
                        shared.clone(),
                        slot,
                        Role::Receiver,
                        None,
                        shutdown.clone(),
                    )));
                    Role::Transmitter
                }
            };
            tasks.push(tokio::spawn(session::run(
                shared.clone(),
                slot,
                role,
                Some(queue),
                shutdown.clone(),
            )));
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_the_spec_names_them() {
        assert_eq!(
            status_text(CommandStatus::EsmeRinvdstadr),
            "ESME_RINVDSTADR (0x0000000B)"
        );
        assert_eq!(
            status_text(CommandStatus::EsmeRinvpaswd),
            "ESME_RINVPASWD (0x0000000E)"
        );
        assert_eq!(
            status_text(CommandStatus::Other(0x400)),
            "unknown status (0x00000400)"
        );
    }
}

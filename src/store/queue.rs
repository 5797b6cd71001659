//! The job queue: a message is its own job, leased to one worker at a time, and every change of
//! its state is one guarded transition.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::StoreResult;
use crate::domain::{ids::MessageId, phone::PhoneNumber, state::JobState};

/// The detail of the `sending` event of a job taken over from a worker that stopped.
pub const IN_DOUBT: &str =
    "taken over: the previous attempt's worker stopped before recording whether it was sent";

/// A job leased to a worker.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// The message to send.
    pub message_id: MessageId,
    /// Recipient.
    pub to: PhoneNumber,
    /// Sender id.
    pub from: String,
    /// Body.
    pub body: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the message was accepted.
    pub created_at: DateTime<Utc>,
    /// When it stops being worth sending, if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its last attempt was claimed by a worker that stopped before recording the outcome, so
    /// the provider may or may not have it.
    pub in_doubt: bool,
    /// The route an earlier attempt may have reached (it ended in doubt): sent on it alone.
    pub in_doubt_on: Option<String>,
    /// What that attempt left for the provider to resume from.
    pub progress: Option<String>,
}

/// A state change to record.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Which message.
    pub message_id: MessageId,
    /// The state it enters.
    pub to: JobState,
    /// Why.
    pub detail: Option<String>,
    /// The provider's id for the message, once it has one.
    pub provider_message_id: Option<String>,
    /// For a retry (`to` = queued): when the job is due again.
    pub retry_at: Option<DateTime<Utc>>,
    /// For a retry (`to` = queued): the attempt did not count, because the provider could
    /// not take the message at all (not bound, bind refused), so waiting uses up no attempts.
    pub refund_attempt: bool,
    /// For `sent`: the route that took it (the provider's name without routes); for a retry
    /// in doubt, the route that may have it, which the retry goes to alone.
    pub route: Option<String>,
    /// For a retry in doubt: what the provider resumes from (replaced at every transition).
    pub progress: Option<String>,
}

/// Which rows a transition may change: those in its target's `allowed_from` states, or (to
/// settle a send in doubt) only a queued message held to a route with no provider id yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The target state's `allowed_from`.
    States,
    /// A queued message in doubt: `route` set, `provider_message_id` not.
    InDoubt,
}

impl Guard {
    /// The states the message may be in.
    pub fn from(self, t: &Transition) -> &'static [JobState] {
        match self {
            Guard::States => t.to.allowed_from(),
            Guard::InDoubt => &[JobState::Queued],
        }
    }

    /// The further condition on the row, as SQL both backends take.
    pub fn condition(self) -> &'static str {
        match self {
            Guard::States => "",
            Guard::InDoubt => " AND route IS NOT NULL AND provider_message_id IS NULL",
        }
    }
}

/// The transition that settles a send in doubt the provider had after all.
pub fn settled_doubt(message_id: &MessageId, provider_message_id: &str) -> Transition {
    Transition {
        message_id: message_id.clone(),
        to: JobState::Sent,
        detail: Some(
            "the send in doubt had reached the provider (its callback named this message): \
             not sent again"
                .into(),
        ),
        provider_message_id: Some(provider_message_id.to_string()),
        retry_at: None,
        refund_attempt: false,
        route: None,
        progress: None,
    }
}

impl Transition {
    /// A send's outcome carrying what only the send knows (the route, the provider's id), which
    /// is kept even when a receipt for the message was recorded first.
    pub fn tells_the_send(&self) -> bool {
        self.to == JobState::Sent && (self.route.is_some() || self.provider_message_id.is_some())
    }
}

/// A transition that took effect.
#[derive(Clone, Debug)]
pub struct Applied {
    /// When the message was accepted, for latency metrics.
    pub created_at: DateTime<Utc>,
    /// The route that sent it, for per-route metrics.
    pub route: Option<String>,
}

/// How a provider says a message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// The handset has it.
    Delivered,
    /// The network could not reach the handset.
    Undelivered,
    /// The provider or the network refused it.
    Failed,
}

impl ReceiptStatus {
    /// The message state it leads to.
    pub fn state(self) -> JobState {
        match self {
            ReceiptStatus::Delivered => JobState::Delivered,
            ReceiptStatus::Undelivered => JobState::Undelivered,
            ReceiptStatus::Failed => JobState::Failed,
        }
    }

    /// The stored name: the state's.
    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }

    /// The status a stored name names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "delivered" => Some(ReceiptStatus::Delivered),
            "undelivered" => Some(ReceiptStatus::Undelivered),
            "failed" => Some(ReceiptStatus::Failed),
            _ => None,
        }
    }
}

/// A delivery receipt a provider reported.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// Our id, when the provider echoes it; otherwise the message is found by `provider_message_id`.
    pub message_id: Option<MessageId>,
    /// The provider's id for the message.
    pub provider_message_id: String,
    /// How it ended.
    pub status: ReceiptStatus,
    /// The provider's words, for an undelivered or failed message.
    pub detail: Option<String>,
}

/// What a receipt did.
#[derive(Clone, Debug, PartialEq)]
pub enum ReceiptOutcome {
    /// The message entered the receipt's state.
    Applied {
        /// Which message.
        message_id: MessageId,
        /// The state it entered.
        state: JobState,
        /// When it was accepted, for latency metrics.
        created_at: DateTime<Utc>,
        /// The route that sent it, for per-route metrics.
        route: Option<String>,
    },
    /// The message's state no longer allowed it (already final, or canceled).
    Overtaken(MessageId),
    /// No message has that id.
    Unknown,
}

/// The queue the dispatcher works from. Every method commits before it returns; a change of
/// state also logs an event and, when the message's source feeds it, an outbox entry, in the
/// same commit.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Lease up to `limit` due jobs to `owner`, marking their messages `sending`.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedJob>>;
    /// When the next waiting job falls due, if any is waiting; a job under a lease is not
    /// waiting (its lease running out is found by the dispatcher's next look at the queue).
    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// A receiver that changes when other processes sharing this queue may have made work due
    /// (accepted a message, handed a job back for a retry), so a dispatcher need not wait for its
    /// idle poll; `None` when no other process can share the queue. Called inside a Tokio runtime.
    fn wakeups(&self) -> Option<watch::Receiver<()>>;
    /// Extend to `until` the leases `owner` holds on jobs it is still sending; how many. A worker
    /// renews while it lives, so only a dead worker's leases run out and its jobs are taken over.
    async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64>;
    /// Record a state change if the message's state allows it; `None` when it did not apply.
    async fn transition(&self, t: Transition, now: DateTime<Utc>) -> StoreResult<Option<Applied>>;
    /// Record as `sent`, with `provider_message_id`, a message waiting to be sent again after
    /// a send in doubt, when the provider says it had it after all (a callback naming the
    /// message); `false` when the message is not waiting in doubt (sent, claimed again).
    async fn settle_doubt(
        &self,
        message_id: &MessageId,
        provider_message_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Jobs waiting or in flight.
    async fn queue_depth(&self) -> StoreResult<i64>;
    /// Apply providers' delivery receipts, in one commit, each as a guarded transition of the
    /// message it names (by our id, or by the provider's).
    async fn apply_receipts(
        &self,
        receipts: Vec<Receipt>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ReceiptOutcome>>;
}

//! Messages: acceptance (with its idempotency record), reading them back, canceling, replies.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClickSummary, NewLink, StoreResult};
use crate::{
    domain::hygiene::Hygiene,
    domain::{
        consent::Consent,
        ids::MessageId,
        phone::PhoneNumber,
        segment::{Encoding, Segmentation},
        source::Source,
        state::JobState,
    },
};

/// A validated message ready to be accepted.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Its public id.
    pub id: MessageId,
    /// Recipient.
    pub to: PhoneNumber,
    /// Canonical sender id.
    pub from: String,
    /// Rendered body.
    pub body: String,
    /// How the body goes over the air.
    pub segmentation: Segmentation,
    /// `queued` or `scheduled`.
    pub status: JobState,
    /// Where it came from.
    pub source: Source,
    /// Client metadata, a JSON object.
    pub metadata: Option<serde_json::Value>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When to send it, if scheduled.
    pub send_at: Option<DateTime<Utc>>,
    /// When it stops being worth sending: never handed to a provider after, and providers are
    /// told the time left (an OTP's code expiry, a request's `expires_at`).
    pub expires_at: Option<DateTime<Utc>>,
    /// The short links in its body, stored with it.
    pub links: Vec<NewLink>,
}

/// A CRM record a rule refused, kept as a `rejected` message so the refusal is visible and
/// written back, never dropped.
#[derive(Clone, Debug)]
pub struct RejectedMessage {
    /// Its public id.
    pub id: MessageId,
    /// Recipient, when the record held a readable number.
    pub to: Option<PhoneNumber>,
    /// Sender id it would have gone from.
    pub from: String,
    /// Where it came from: the CRM record the refusal is written back to.
    pub source: Source,
    /// Why, as `code: message` (the refusal's stable code and its words).
    pub detail: String,
    /// Client metadata, a JSON object.
    pub metadata: Option<serde_json::Value>,
    /// When it was refused.
    pub created_at: DateTime<Utc>,
}

/// An `Idempotency-Key` claim stored with the response it produced.
#[derive(Clone, Debug)]
pub struct IdempotencyRecord {
    /// Whose key space (one per API key).
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// Hash of the request body.
    pub request_hash: String,
    /// HTTP status of the original response.
    pub status: u16,
    /// Body of the original response.
    pub response: String,
}

/// What accepting a message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Stored now.
    Stored,
    /// The key was seen with the same body: this is the original response.
    Replayed {
        /// HTTP status.
        status: u16,
        /// Response body.
        response: String,
    },
    /// The key was seen with a different body.
    KeyReused,
    /// The recipient is on the deny list, or not on the allow list when only it may receive.
    Blocked(String),
}

/// One recorded state change.
#[derive(Clone, Debug)]
pub struct EventRecord {
    /// The state entered.
    pub status: JobState,
    /// Why, when there is more to say.
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A handset's reply.
#[derive(Clone, Debug)]
pub struct ReplyRecord {
    /// The message it answers, if one matched.
    pub message_id: Option<MessageId>,
    /// The handset.
    pub from: PhoneNumber,
    /// The sender id it was sent to.
    pub to: String,
    /// What it said.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// A stored message as the API shows it.
#[derive(Clone, Debug)]
pub struct MessageRecord {
    /// Position in acceptance order; the list cursor.
    pub seq: i64,
    /// Public id.
    pub id: MessageId,
    /// Recipient; none for a CRM record rejected before it had a readable number.
    pub to: Option<PhoneNumber>,
    /// Sender id.
    pub from: String,
    /// Current state.
    pub status: JobState,
    /// Why it is in that state, when known.
    pub status_detail: Option<String>,
    /// Encoding of the body.
    pub encoding: Encoding,
    /// Characters in the body.
    pub characters: i64,
    /// Parts over the air.
    pub segments: i64,
    /// Where it came from.
    pub source: Source,
    /// Client metadata.
    pub metadata: Option<serde_json::Value>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// Scheduled for.
    pub send_at: Option<DateTime<Utc>>,
    /// Not sent after this.
    pub expires_at: Option<DateTime<Utc>>,
    /// Why the CRM refused for good to take the message's changes, if it did.
    pub writeback_error: Option<String>,
    /// When its changes last reached its CRM record.
    pub written_back_at: Option<DateTime<Utc>>,
    /// The provider's id for it, once a send's outcome or a receipt named one.
    pub provider_message_id: Option<String>,
    /// State changes, oldest first (filled by `message`, empty in lists).
    pub events: Vec<EventRecord>,
    /// Replies, oldest first (filled by `message`, empty in lists).
    pub replies: Vec<ReplyRecord>,
    /// Clicks on its short links.
    pub clicks: ClickSummary,
}

impl MessageRecord {
    /// The full history from the changes logged after acceptance, for a store that keeps
    /// acceptance as the message itself rather than as an event.
    pub fn with_history(mut self, logged: Vec<EventRecord>) -> Self {
        // Before any change the message is still in the state it was accepted in; after one,
        // it was accepted scheduled if it had a send time, else queued.
        let accepted_as = match (logged.is_empty(), self.send_at) {
            (true, _) => self.status,
            (false, Some(_)) => JobState::Scheduled,
            (false, None) => JobState::Queued,
        };
        // A message stored in its final state (a rejected CRM record) says why on that event.
        let detail = logged
            .is_empty()
            .then(|| self.status_detail.clone())
            .flatten();
        self.events = std::iter::once(EventRecord {
            status: accepted_as,
            detail,
            at: self.created_at,
        })
        .chain(logged)
        .collect();
        self
    }
}

/// A page request for the message list.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Only messages in this state.
    pub status: Option<JobState>,
    /// Page size.
    pub limit: u32,
    /// Only messages older than this `seq`.
    pub before: Option<i64>,
}

/// What a cancel did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Canceled; the message as it is now.
    Canceled,
    /// Not in a cancelable state; its state.
    NotCancelable(JobState),
    /// No such message.
    NotFound,
}

/// A reply to store.
#[derive(Clone, Debug)]
pub struct NewReply {
    /// The handset.
    pub from: PhoneNumber,
    /// The sender id it answers.
    pub to: String,
    /// What it said.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// The provider's id for it, when it gives one (Twilio's `MessageSid`): a reply delivered
    /// again under the same id is stored once.
    pub provider_id: Option<String>,
}

/// Messages as clients see them. Every method commits before it returns.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Accept a message (and its idempotency record) durably, unless a number list refuses it.
    async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
        hygiene: Hygiene,
    ) -> StoreResult<Acceptance>;
    /// Store a refused CRM record as a `rejected` message, with its outbox entry and its
    /// dedupe record, in one commit; `Stored`, `Replayed` or `KeyReused` like `accept`.
    async fn reject(
        &self,
        message: RejectedMessage,
        idempotency: Option<IdempotencyRecord>,
    ) -> StoreResult<Acceptance>;
    /// One message with its events and replies.
    async fn message(&self, id: &MessageId) -> StoreResult<Option<MessageRecord>>;
    /// Newest first.
    async fn messages(&self, query: ListQuery) -> StoreResult<Vec<MessageRecord>>;
    /// Cancel a scheduled message.
    async fn cancel(&self, id: &MessageId, now: DateTime<Utc>) -> StoreResult<CancelOutcome>;
    /// The record kept for an idempotency key, if the key was used.
    async fn idempotency(&self, scope: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>>;
    /// Forget idempotency keys created before `before`.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// Store a reply, linked to the latest message from `to` to `from`, and the change of
    /// consent it makes (opting the number out of the sender, or back in), in one commit; a
    /// reply to a message whose source feeds the outbox goes there too, with its consent. A
    /// reply whose `provider_id` is already stored changes nothing and answers as stored.
    async fn record_reply(
        &self,
        reply: NewReply,
        consent: Option<Consent>,
    ) -> StoreResult<ReplyRecord>;
    /// The source of the latest message to `number` from `sender`: what a reply from that
    /// number to that sender answers.
    async fn conversation_source(
        &self,
        number: &PhoneNumber,
        sender: &str,
    ) -> StoreResult<Option<Source>>;
}

//! The durable store: one interface, a backend per database. The only place SQL lives.

mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    ids::{ListEntryId, MessageId, VerificationId},
    phone::PhoneNumber,
    segment::{Encoding, Segmentation},
    state::JobState,
};

pub use sqlite::SqliteStore;

/// The store failed; the operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(String),
    /// Another process holds the store.
    #[error("{0}")]
    Locked(String),
    /// A stored value does not read back as what was written.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

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
    /// Where it came from: `api`, or a CRM source such as `salesforce:prod`.
    pub source: String,
    /// Client metadata, a JSON object.
    pub metadata: Option<serde_json::Value>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When to send it, if scheduled.
    pub send_at: Option<DateTime<Utc>>,
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

/// Which managed number list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberList {
    /// Numbers that may receive even when limits or blocks would refuse them.
    Allow,
    /// Numbers that must never receive.
    Deny,
}

impl NumberList {
    /// The list's name on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberList::Allow => "allow",
            NumberList::Deny => "deny",
        }
    }
}

/// How a client names a list entry: by the number, or by the entry's id (numbers are shown masked).
#[derive(Clone, Debug)]
pub enum ListKey {
    /// The number itself.
    Number(PhoneNumber),
    /// The id the entry was given when listed.
    Id(ListEntryId),
}

/// A number on a managed list.
#[derive(Clone, Debug)]
pub struct ListedNumber {
    /// The entry's id.
    pub id: ListEntryId,
    /// The number.
    pub number: PhoneNumber,
    /// Why it is there.
    pub reason: Option<String>,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// Who may receive, checked inside the commit that accepts a message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hygiene {
    /// Only numbers on the allow list may receive.
    pub allow_list_only: bool,
}

/// The anti-fraud limits an OTP send is checked against.
#[derive(Clone, Debug)]
pub struct OtpLimits {
    /// Seconds between two codes to one number.
    pub cooldown_seconds: i64,
    /// Codes per number in the window.
    pub per_number: i64,
    /// Codes per client IP in the window.
    pub per_ip: i64,
    /// Codes per device in the window.
    pub per_device: i64,
    /// The window, in seconds.
    pub window_seconds: i64,
    /// Breaker: window, in seconds.
    pub pumping_window_seconds: i64,
    /// Breaker: codes younger than this are not judged yet.
    pub pumping_grace_seconds: i64,
    /// Breaker: judged codes needed before judging.
    pub pumping_min_sends: i64,
    /// Breaker: verified share below which the prefix trips.
    pub pumping_min_conversion: f64,
    /// Breaker: how long a tripped prefix stays blocked.
    pub pumping_block_seconds: i64,
    /// Burst rule: codes to one burst prefix within the burst window that trip the breaker (0: off).
    pub burst_max_sends: i64,
    /// Burst rule: the window, in seconds.
    pub burst_window_seconds: i64,
}

/// A verification to start, with the message that carries its code.
#[derive(Clone, Debug)]
pub struct NewVerification {
    /// Its id.
    pub id: VerificationId,
    /// HMAC of the code.
    pub code_hash: Vec<u8>,
    /// The number prefix the pumping breaker judges.
    pub prefix: String,
    /// The number without its last four digits, which the burst rule counts by.
    pub burst_prefix: String,
    /// Checks allowed.
    pub max_checks: u32,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
    /// The caller's end user's IP, if given.
    pub client_ip: Option<String>,
    /// The caller's end user's device, if given.
    pub device_id: Option<String>,
    /// When it was sent, on the OTP rules' clock (limits count from here).
    pub created_at: DateTime<Utc>,
    /// The SMS.
    pub message: NewMessage,
}

/// What starting a verification did.
#[derive(Clone, Debug, PartialEq)]
pub enum OtpStart {
    /// Stored and queued.
    Started,
    /// Refused by a list.
    Blocked(String),
    /// Refused by a limit; retry after this many seconds.
    Limited {
        /// Which limit, in words.
        reason: String,
        /// Seconds until it may succeed.
        retry_after: i64,
        /// The pumping breaker tripped on this very send.
        tripped: bool,
    },
}

/// A verification as stored.
#[derive(Clone, Debug)]
pub struct VerificationRecord {
    /// Its id.
    pub id: VerificationId,
    /// Recipient.
    pub to: PhoneNumber,
    /// pending, approved, canceled, max_attempts_reached (expiry is judged by the caller).
    pub status: String,
    /// Checks made.
    pub checks: u32,
    /// Checks allowed.
    pub max_checks: u32,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// The SMS that carried the code.
    pub message_id: MessageId,
}

/// Compares a stored code hash with the code being checked, in constant time.
pub type CodeMatcher = Box<dyn for<'a> FnOnce(&'a [u8]) -> bool + Send + 'static>;

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The code matched; the verification is used up.
    Approved,
    /// Wrong code; this many checks are left.
    Incorrect(u32),
    /// No checks left (this one included).
    Exhausted,
    /// Past its expiry.
    Expired,
    /// Already approved.
    AlreadyUsed,
    /// Replaced by a newer code to the same number.
    Canceled,
    /// No such verification.
    NotFound,
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
    /// Recipient.
    pub to: PhoneNumber,
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
    pub source: String,
    /// Client metadata.
    pub metadata: Option<serde_json::Value>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// Scheduled for.
    pub send_at: Option<DateTime<Utc>>,
    /// State changes, oldest first (filled by `message`, empty in lists).
    pub events: Vec<EventRecord>,
    /// Replies, oldest first (filled by `message`, empty in lists).
    pub replies: Vec<ReplyRecord>,
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
#[derive(Clone, Debug)]
pub enum CancelOutcome {
    /// Canceled; the message as it is now.
    Canceled,
    /// Not in a cancelable state; its state.
    NotCancelable(JobState),
    /// No such message.
    NotFound,
}

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
}

/// A transition that took effect.
#[derive(Clone, Debug)]
pub struct Applied {
    /// When the message was accepted, for latency metrics.
    pub created_at: DateTime<Utc>,
}

/// A send the sandbox provider accepted.
#[derive(Clone, Debug)]
pub struct SandboxSend {
    /// Our message id (the send is idempotent on it).
    pub message_id: MessageId,
    /// The id the sandbox gives it.
    pub provider_message_id: String,
    /// Sender id.
    pub from: String,
    /// Handset.
    pub to: PhoneNumber,
    /// Body.
    pub body: String,
    /// The receipt to report: delivered or undelivered.
    pub outcome: JobState,
    /// Why, for an undelivered outcome.
    pub detail: Option<String>,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// When to report the receipt.
    pub report_due: DateTime<Utc>,
}

/// A sandbox receipt that was reported.
#[derive(Clone, Debug)]
pub struct SandboxReported {
    /// Which message.
    pub message_id: MessageId,
    /// delivered or undelivered.
    pub outcome: JobState,
    /// The transition, if the message's state allowed it.
    pub applied: Option<Applied>,
}

/// What a sandbox handset received.
#[derive(Clone, Debug)]
pub struct InboxEntry {
    /// Our message id.
    pub message_id: MessageId,
    /// Sender id.
    pub from: String,
    /// Handset.
    pub to: PhoneNumber,
    /// Body.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
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
}

/// A pending outbox entry for CRM write-back.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    /// Position; acknowledge up to it.
    pub id: i64,
    /// The message it concerns.
    pub message_id: MessageId,
    /// The message's source, e.g. `salesforce:prod`.
    pub source: String,
    /// `status` or `reply`.
    pub kind: String,
    /// JSON payload.
    pub payload: serde_json::Value,
}

/// Everything tsunagi keeps. Every method commits before it returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store reachable and every migration applied.
    async fn ready(&self) -> StoreResult<()>;
    /// The server secret, made and kept on first use when the config gives none.
    async fn secret(&self) -> StoreResult<String>;

    /// Keep a new API key's hash.
    async fn create_api_key(&self, name: &str, key_hash: &str) -> StoreResult<()>;
    /// Whether a key with this hash exists.
    async fn api_key_exists(&self, key_hash: &str) -> StoreResult<bool>;
    /// How many keys are stored.
    async fn count_api_keys(&self) -> StoreResult<i64>;

    /// Accept a message (and its idempotency record) durably, unless a number list refuses it.
    async fn accept(
        &self,
        message: NewMessage,
        idempotency: Option<IdempotencyRecord>,
        hygiene: Hygiene,
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

    /// Lease up to `limit` due jobs to `owner`, marking their messages `sending`.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimedJob>>;
    /// When the next job falls due, if any is waiting.
    async fn next_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Free every lease (at start, when no other instance can hold one).
    async fn release_leases(&self) -> StoreResult<u64>;
    /// Record a state change if the message's state allows it; `None` when it did not apply.
    async fn transition(&self, t: Transition, now: DateTime<Utc>) -> StoreResult<Option<Applied>>;
    /// Jobs waiting or in flight.
    async fn queue_depth(&self) -> StoreResult<i64>;

    /// Record a sandbox send; a second call for the same message returns the first one's id.
    async fn sandbox_send(&self, send: SandboxSend) -> StoreResult<String>;
    /// Apply the receipts due by `now` (at most `limit`) and mark them reported, in one commit.
    async fn sandbox_report_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<SandboxReported>>;
    /// When the next receipt falls due.
    async fn sandbox_next_report(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// What a handset received, newest first.
    async fn sandbox_inbox(&self, to: &PhoneNumber, limit: u32) -> StoreResult<Vec<InboxEntry>>;

    /// Store a reply, linked to the latest message from `to` to `from`.
    async fn record_reply(&self, reply: NewReply) -> StoreResult<ReplyRecord>;

    /// Check every limit and list, cancel the number's pending codes, and store the
    /// verification and its SMS, all in one commit.
    async fn otp_start(
        &self,
        verification: NewVerification,
        limits: OtpLimits,
        hygiene: Hygiene,
    ) -> StoreResult<OtpStart>;
    /// Count a check; `matches` compares the stored code hash in constant time.
    async fn otp_check(
        &self,
        id: &VerificationId,
        matches: CodeMatcher,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome>;
    /// One verification.
    async fn otp_verification(
        &self,
        id: &VerificationId,
    ) -> StoreResult<Option<VerificationRecord>>;
    /// Prefixes blocked by the breaker at `now`.
    async fn otp_blocked_prefixes(&self, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Codes sent since `since`, and how many of them were verified.
    async fn otp_conversion(&self, since: DateTime<Utc>) -> StoreResult<(i64, i64)>;

    /// Put a number on a list (again: update its reason, keeping its id); the entry as stored.
    async fn list_add(
        &self,
        list: NumberList,
        number: &PhoneNumber,
        reason: Option<String>,
    ) -> StoreResult<ListedNumber>;
    /// Take an entry off a list; whether it was there.
    async fn list_remove(&self, list: NumberList, key: &ListKey) -> StoreResult<bool>;
    /// A list, newest first.
    async fn list_numbers(&self, list: NumberList, limit: u32) -> StoreResult<Vec<ListedNumber>>;
    /// An entry of a list, if it is there.
    async fn listed(&self, list: NumberList, key: &ListKey) -> StoreResult<Option<ListedNumber>>;

    /// Pending outbox entries, oldest first.
    async fn outbox_pending(&self, limit: u32) -> StoreResult<Vec<OutboxEntry>>;
    /// Mark outbox entries written back.
    async fn outbox_done(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()>;
}

/// Open the store a database URL names, applying migrations.
pub async fn open(database_url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(std::sync::Arc::new(SqliteStore::open(database_url).await?))
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

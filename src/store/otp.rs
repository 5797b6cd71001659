//! One-time-password verifications: starting one (limits counted in the same commit that stores
//! the code) and checking codes against it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{messages::NewMessage, StoreResult};
use crate::{
    domain::hygiene::Hygiene,
    domain::{
        ids::{MessageId, VerificationId},
        phone::PhoneNumber,
    },
    otp::{
        check::{CheckOutcome, VerificationState},
        rules::{OtpLimits, Refusal},
    },
};

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

impl From<Refusal> for OtpStart {
    fn from(r: Refusal) -> Self {
        OtpStart::Limited {
            reason: r.reason,
            retry_after: r.retry_after,
            tripped: r.tripped,
        }
    }
}

/// A verification as stored.
#[derive(Clone, Debug)]
pub struct VerificationRecord {
    /// Its id.
    pub id: VerificationId,
    /// Recipient.
    pub to: PhoneNumber,
    /// Its state (expiry is judged from `expires_at`).
    pub status: VerificationState,
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

/// OTP verifications. Every method commits before it returns.
#[async_trait]
pub trait OtpStore: Send + Sync + 'static {
    /// Refuse by the lists, count the facts `otp::rules` judges and follow its verdict; if it
    /// sends, cancel the number's pending codes and store the verification and its SMS, all in
    /// one commit.
    async fn otp_start(
        &self,
        verification: NewVerification,
        limits: OtpLimits,
        hygiene: Hygiene,
    ) -> StoreResult<OtpStart>;
    /// Count a check as `otp::check` judges it; `matches` compares the stored code hash in
    /// constant time.
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
}

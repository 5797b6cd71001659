//! Opt-outs: the numbers that asked a sender (or every sender) to stop, by reply or over the API;
//! and the replies that asked to stop inside a sentence, held until a person settles them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{NewReply, ReplyRecord, StoreResult};
use crate::domain::{ids::MessageId, phone::PhoneNumber};

/// The sender of an opt-out that holds for every sender.
pub const EVERY_SENDER: &str = "*";

/// How a number came to be opted out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptOutVia {
    /// The handset replied with an opt-out keyword.
    Reply,
    /// A client added it over the API.
    Api,
}

impl OptOutVia {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OptOutVia::Reply => "reply",
            OptOutVia::Api => "api",
        }
    }
}

impl std::str::FromStr for OptOutVia {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "reply" => Ok(OptOutVia::Reply),
            "api" => Ok(OptOutVia::Api),
            _ => Err(()),
        }
    }
}

/// A number opted out of a sender's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptOut {
    /// The number.
    pub number: PhoneNumber,
    /// The sender id (canonical form), or [`EVERY_SENDER`].
    pub sender: String,
    /// Since when.
    pub at: DateTime<Utc>,
    /// How.
    pub via: OptOutVia,
    /// The reply's words, or the reason a client gave.
    pub keyword: Option<String>,
    /// The message the reply answered.
    pub message_id: Option<MessageId>,
}

impl OptOut {
    /// The opt-out a reply gives: from the sender it answered, in its own words.
    pub fn by_reply(reply: &NewReply, message_id: Option<MessageId>) -> Self {
        OptOut {
            number: reply.from.clone(),
            sender: reply.to.clone(),
            at: reply.at,
            via: OptOutVia::Reply,
            // The reply is a keyword, so this is short; the cap keeps it so whatever comes.
            keyword: Some(keyword(&reply.body)),
            message_id,
        }
    }

    /// The opt-out a person gives a held reply: from the sender it answered, in its words.
    pub fn by_review(review: &Review, at: DateTime<Utc>) -> Self {
        OptOut {
            number: review.number.clone(),
            sender: review.sender.clone(),
            at,
            via: OptOutVia::Reply,
            keyword: Some(keyword(&review.body)),
            message_id: review.message_id.clone(),
        }
    }
}

/// A reply's words as an opt-out keeps them: a keyword is short, and the cap keeps a sentence so.
fn keyword(body: &str) -> String {
    body.trim().chars().take(64).collect()
}

/// What a person decided about a held reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The reply asked to stop: the number is opted out of the sender it answered.
    OptOut,
    /// It did not: nothing changes.
    Dismiss,
}

impl Settlement {
    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::OptOut => "opt_out",
            Settlement::Dismiss => "dismiss",
        }
    }
}

impl std::str::FromStr for Settlement {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "opt_out" => Ok(Settlement::OptOut),
            "dismiss" => Ok(Settlement::Dismiss),
            _ => Err(()),
        }
    }
}

/// A reply that asked to stop inside a sentence, held for review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// Position in arrival order; the list cursor.
    pub id: i64,
    /// The handset.
    pub number: PhoneNumber,
    /// The sender id it answered (canonical form).
    pub sender: String,
    /// What it said.
    pub body: String,
    /// The message it answered, if one matched.
    pub message_id: Option<MessageId>,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// When and how it was settled; open while absent.
    pub settled: Option<(DateTime<Utc>, Settlement)>,
}

/// A page request for held replies.
#[derive(Clone, Debug)]
pub struct ReviewQuery {
    /// Only open ones (`true`) or only settled ones (`false`); both when absent.
    pub open: Option<bool>,
    /// Page size.
    pub limit: u32,
    /// Only those older than this id.
    pub before: Option<i64>,
}

/// What settling a held reply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Settled now; the reply as it is now.
    Settled(Review),
    /// Settled before (perhaps otherwise); the reply as it is.
    AlreadySettled(Review),
    /// No such held reply.
    NotFound,
}

/// Opt-outs. Every method commits before it returns; replies opt out and in through
/// `MessageStore::record_reply`, in the commit that stores the reply.
#[async_trait]
pub trait ConsentStore: Send + Sync + 'static {
    /// Opt a number out of a sender's messages (again: the newer entry replaces the older).
    async fn opt_out(&self, entry: OptOut) -> StoreResult<()>;
    /// Opt a number back in for a sender; whether it was opted out.
    async fn opt_in(&self, number: &PhoneNumber, sender: &str) -> StoreResult<bool>;
    /// Opt-outs, newest first, of one number or of all, at most `limit`.
    async fn opt_outs(&self, number: Option<&PhoneNumber>, limit: u32) -> StoreResult<Vec<OptOut>>;
    /// Store a reply as `MessageStore::record_reply` does with no consent, and hold it for
    /// review in the same commit (once: a reply whose `provider_id` is stored changes nothing).
    async fn hold_reply(&self, reply: NewReply) -> StoreResult<ReplyRecord>;
    /// Held replies, newest first.
    async fn reviews(&self, query: ReviewQuery) -> StoreResult<Vec<Review>>;
    /// Settle an open held reply; opting out also opts the number out of the sender and tells
    /// the CRM of the message it answered, in the same commit.
    async fn settle_review(
        &self,
        id: i64,
        settlement: Settlement,
        at: DateTime<Utc>,
    ) -> StoreResult<SettleOutcome>;
    /// How many held replies are open.
    async fn open_reviews(&self) -> StoreResult<i64>;
}

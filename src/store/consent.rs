//! Opt-outs: the numbers that asked a sender (or every sender) to stop, by reply or over the API.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
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
    pub fn by_reply(reply: &super::NewReply, message_id: Option<MessageId>) -> Self {
        OptOut {
            number: reply.from.clone(),
            sender: reply.to.clone(),
            at: reply.at,
            via: OptOutVia::Reply,
            // The reply is a keyword, so this is short; the cap keeps it so whatever comes.
            keyword: Some(reply.body.trim().chars().take(64).collect()),
            message_id,
        }
    }
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
}

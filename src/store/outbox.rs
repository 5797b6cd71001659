//! The outbox: status changes and replies of messages whose source feeds it, waiting for
//! write-back. Backends add entries in the commit that makes the change; which sources feed it is
//! [`Source::feeds_outbox`]'s call alone.

use std::{collections::BTreeMap, fmt, str::FromStr};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{decode::millis, StoreResult};
use crate::domain::{ids::MessageId, phone::PhoneNumber, source::Source, state::JobState};

/// What an outbox entry reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// The message entered a state.
    Status,
    /// The handset replied.
    Reply,
    /// The handset opted out of the sender (STOP, 停止) or back in (START, 再開).
    Consent,
    /// A person clicked a short link in the message for the first time.
    Click,
}

impl OutboxKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Status => "status",
            OutboxKind::Reply => "reply",
            OutboxKind::Consent => "consent",
            OutboxKind::Click => "click",
        }
    }
}

impl fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no outbox kind.
#[derive(Debug, thiserror::Error)]
#[error("not an outbox kind: {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for OutboxKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        match s {
            "status" => Ok(OutboxKind::Status),
            "reply" => Ok(OutboxKind::Reply),
            "consent" => Ok(OutboxKind::Consent),
            "click" => Ok(OutboxKind::Click),
            _ => Err(UnknownKind(s.to_string())),
        }
    }
}

/// An entry to add, built only for a source that feeds the outbox.
#[derive(Clone, Debug)]
pub struct NewOutboxEntry {
    /// What it reports.
    pub kind: OutboxKind,
    /// The JSON payload.
    pub payload: serde_json::Value,
    /// When the change happened.
    pub at: DateTime<Utc>,
}

impl NewOutboxEntry {
    /// The entry for a message of `source` entering `status`, if that source feeds the outbox.
    pub fn status(
        source: &Source,
        status: JobState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Option<Self> {
        source.feeds_outbox().then(|| NewOutboxEntry {
            kind: OutboxKind::Status,
            payload: serde_json::json!({"status": status.as_str(), "detail": detail, "at": millis(at)}),
            at,
        })
    }

    /// The entry for a reply to a message of `source`, if that source feeds the outbox.
    pub fn reply(source: &Source, body: &str, at: DateTime<Utc>) -> Option<Self> {
        source.feeds_outbox().then(|| NewOutboxEntry {
            kind: OutboxKind::Reply,
            payload: serde_json::json!({"body": body, "at": millis(at)}),
            at,
        })
    }
}

impl NewOutboxEntry {
    /// The entry for a reply from `number` to a message of `source` that opted out (or back
    /// in), if that source feeds the outbox; the number finds the CRM's other records holding it.
    pub fn consent(
        source: &Source,
        number: &PhoneNumber,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Option<Self> {
        source.feeds_outbox().then(|| NewOutboxEntry {
            kind: OutboxKind::Consent,
            payload: serde_json::json!({
                "opted_out": opted_out,
                "number": number.e164(),
                "at": millis(at),
            }),
            at,
        })
    }
}

impl NewOutboxEntry {
    /// The entry for the first click on a link in a message of `source`, if that source feeds
    /// the outbox.
    pub fn click(source: &Source, url: &str, at: DateTime<Utc>) -> Option<Self> {
        source.feeds_outbox().then(|| NewOutboxEntry {
            kind: OutboxKind::Click,
            payload: serde_json::json!({"url": url, "at": millis(at)}),
            at,
        })
    }
}

/// A pending outbox entry for CRM write-back.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    /// Position; acknowledge up to it.
    pub id: i64,
    /// The message it concerns.
    pub message_id: MessageId,
    /// The message's source: the CRM connection and record to write back to.
    pub source: Source,
    /// What it reports.
    pub kind: OutboxKind,
    /// JSON payload.
    pub payload: serde_json::Value,
}

/// The write-back queue. Every method commits before it returns.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Pending outbox entries of one CRM connection (a source name), oldest first.
    async fn outbox_pending(&self, connection: &str, limit: u32) -> StoreResult<Vec<OutboxEntry>>;
    /// Mark outbox entries handled without reaching the record (refused for good, unreadable).
    async fn outbox_done(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()>;
    /// Mark outbox entries written back, and their messages as written back at `now`.
    async fn outbox_written(&self, ids: Vec<i64>, now: DateTime<Utc>) -> StoreResult<()>;
    /// Take or renew the lease on a connection's write-back for `owner` until `until`; false
    /// while another owner's lease runs (at `now`). One worker at a time writes a connection's
    /// records back, so each record's changes reach the CRM in order.
    async fn writeback_lease(
        &self,
        connection: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Whether a message of `connection` for `record` has not been written back to it yet.
    async fn unwritten_message_for(&self, connection: &str, record: &str) -> StoreResult<bool>;
    /// The highest record id the new-record catch-up of `connection` has looked at, once it
    /// started.
    async fn poll_id_mark(&self, connection: &str) -> StoreResult<Option<u64>>;
    /// Raise `connection`'s record id mark to `id` (a lower `id` leaves it), starting its
    /// polling at `now` if it had not started.
    async fn raise_poll_id_mark(
        &self,
        connection: &str,
        id: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// When catch-up polling of `connection` started: `now` the first time it is asked, the
    /// same ever after (also for another instance sharing the store).
    async fn poll_start_mark(
        &self,
        connection: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<DateTime<Utc>>;
    /// Give up `owner`'s lease on a connection's write-back (a stopping instance), so another
    /// takes it at once instead of when it runs out.
    async fn writeback_release(&self, connection: &str, owner: &str) -> StoreResult<()>;
    /// Record why the CRM refused for good to take these messages' changes (a deleted record,
    /// a validation rule); shown on each message.
    async fn writeback_failed(&self, failures: Vec<(MessageId, String)>) -> StoreResult<()>;
    /// Remember the revisions our writes gave these records of `connection` (and forget those
    /// older than `OWN_WRITES_KEPT`), so their echoes can be told from a person's edits.
    async fn remember_own_writes(
        &self,
        connection: &str,
        writes: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Forget revisions remembered ahead of a write that did not happen.
    async fn forget_own_writes(
        &self,
        connection: &str,
        writes: Vec<(String, u64)>,
    ) -> StoreResult<()>;
    /// Remember the latest revisions seen of these records of `connection` (a webhook's, or
    /// the one our write gave), keeping the higher where one is known, and forget those older
    /// than `OWN_WRITES_KEPT`.
    async fn remember_revisions(
        &self,
        connection: &str,
        revisions: Vec<(String, u64)>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The latest revision known of each of `records` of `connection`, for those with one.
    async fn known_revisions(
        &self,
        connection: &str,
        records: Vec<String>,
    ) -> StoreResult<BTreeMap<String, u64>>;
    /// Whether `revision` of `record` is one our own write gave it.
    async fn is_own_write(
        &self,
        connection: &str,
        record: &str,
        revision: u64,
    ) -> StoreResult<bool>;
}

/// How long the revisions of our own writes are remembered: longer than any webhook is late.
pub const OWN_WRITES_KEPT: chrono::Duration = chrono::Duration::days(7);

#[cfg(test)]
mod tests {
    use super::*;

    fn crm() -> Source {
        Source::Crm {
            connection: "salesforce:prod".into(),
            record: "003xx000004TmiQAAS".into(),
        }
    }

    #[test]
    fn only_sources_that_feed_the_outbox_get_entries() {
        let now = Utc::now();
        for quiet in [Source::Api, Source::Otp] {
            assert!(NewOutboxEntry::status(&quiet, JobState::Sent, None, now).is_none());
            assert!(NewOutboxEntry::reply(&quiet, "はい", now).is_none());
        }
        assert!(NewOutboxEntry::status(&crm(), JobState::Sent, None, now).is_some());
        assert!(NewOutboxEntry::reply(&crm(), "はい", now).is_some());
    }

    #[test]
    fn a_status_payload_carries_the_state_its_detail_and_the_time_in_milliseconds() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let entry =
            NewOutboxEntry::status(&crm(), JobState::Undelivered, Some("unreachable"), at).unwrap();
        assert_eq!(entry.kind, OutboxKind::Status);
        assert_eq!(
            entry.payload,
            serde_json::json!({"status": "undelivered", "detail": "unreachable", "at": 1_700_000_000_123i64})
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in [
            OutboxKind::Status,
            OutboxKind::Reply,
            OutboxKind::Consent,
            OutboxKind::Click,
        ] {
            assert_eq!(kind.as_str().parse::<OutboxKind>().unwrap(), kind);
        }
        assert!("opened".parse::<OutboxKind>().is_err());
    }
}

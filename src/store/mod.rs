//! The durable store: a narrow trait per concern, a backend per database. The only place SQL
//! lives, and no rule lives here: backends read facts in their transaction, the rules in
//! `otp`, `domain::hygiene`, `domain` decide, and backends write what they decided.

mod consent;
#[cfg(test)]
pub(crate) mod contract;
mod decode;
mod error;
mod health;
mod inbound_parts;
mod keys;
mod kintone_notifications;
mod links;
mod lists;
mod messages;
mod otp;
mod outbox;
mod postgres;
mod queue;
mod receipts;
mod reports;
mod rows;
mod sandbox;
mod sqlite;
mod writeback_log;

use std::{sync::Arc, time::Duration};

pub use consent::{
    ConsentStore, OptOut, OptOutVia, Review, ReviewQuery, SettleOutcome, Settlement, EVERY_SENDER,
};
pub use error::{StoreError, StoreResult};
pub use health::HealthStore;
pub use inbound_parts::{InboundPart, InboundPartStore, JoinedParts, PartsKey};
pub use keys::{KeptRefreshToken, KeyStore};
pub use kintone_notifications::{
    KintoneNotification, KintoneNotificationStore, NOTIFICATIONS_KEPT,
};
pub use links::{ClickSummary, LinkStore, LinkTarget, NewClick, NewLink};
pub use lists::{ListKey, ListStore, ListedNumber, NumberList};
pub use messages::{
    Acceptance, CancelOutcome, EventRecord, IdempotencyRecord, ListQuery, MessageRecord,
    MessageStore, NewMessage, NewReply, RejectedMessage, ReplyRecord,
};
pub use otp::{CodeMatcher, NewVerification, OtpStart, OtpStore, VerificationRecord};
pub use outbox::{
    NewOutboxEntry, OutboxEntry, OutboxKind, OutboxStore, UnknownKind, OWN_WRITES_KEPT,
};
pub use postgres::PostgresStore;
pub use queue::{
    Applied, ClaimedJob, QueueStore, Receipt, ReceiptOutcome, ReceiptStatus, Transition, IN_DOUBT,
};
pub use receipts::{KeptReceipt, PartOutcome, PartReceipt, PartState, ReceiptStore, Unmatched};
pub use reports::{DeliveryFact, FactCursor, ReportStore, UsageBucket, USAGE_BUCKET_MINUTES};
pub use sandbox::{InboxEntry, SandboxSend, SandboxStore};
pub use sqlite::SqliteStore;
pub use writeback_log::{
    NewWritebackCall, WritebackCall, WritebackLogStore, WritebackQuery, WRITEBACKS_KEPT,
};

// The rules' types the traits speak, so callers find them with the store.
pub use crate::{
    domain::hygiene::Hygiene,
    otp::{
        check::{CheckOutcome, VerificationState},
        rules::OtpLimits,
    },
};

/// Everything tsunagi keeps, behind one handle; implemented by every type that implements each
/// concern's store.
pub trait Store:
    HealthStore
    + KeyStore
    + MessageStore
    + QueueStore
    + SandboxStore
    + OtpStore
    + ListStore
    + OutboxStore
    + ReceiptStore
    + ConsentStore
    + LinkStore
    + ReportStore
    + WritebackLogStore
    + InboundPartStore
    + KintoneNotificationStore
{
}

impl<T> Store for T where
    T: HealthStore
        + KeyStore
        + MessageStore
        + QueueStore
        + SandboxStore
        + OtpStore
        + ListStore
        + OutboxStore
        + ReceiptStore
        + ConsentStore
        + LinkStore
        + ReportStore
        + WritebackLogStore
        + InboundPartStore
        + KintoneNotificationStore
{
}

/// How a store holds its connections (`[database]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connections {
    /// Connections in the pool: PostgreSQL's (16 when `None`), SQLite's readers (4 when `None`).
    pub pool_size: Option<u32>,
    /// PostgreSQL: the longest a query waits for a connection, free in the pool or new, before
    /// failing as `Unavailable`.
    pub connect_timeout: Duration,
    /// PostgreSQL: the longest one statement runs, or a transaction idles, on the server.
    pub statement_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            pool_size: None,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Open the store a database URL names (`postgres://…` or `postgresql://…` a PostgreSQL
/// server, anything else an SQLite file), applying migrations.
pub async fn open(database_url: &str) -> StoreResult<Arc<dyn Store>> {
    open_with(database_url, &Connections::default()).await
}

/// `open`, holding connections as `connections` says.
pub async fn open_with(
    database_url: &str,
    connections: &Connections,
) -> StoreResult<Arc<dyn Store>> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::open_with(database_url, connections).await?,
        ))
    } else {
        Ok(Arc::new(
            SqliteStore::open_with(database_url, connections).await?,
        ))
    }
}

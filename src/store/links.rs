//! Short links and their clicks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::ids::MessageId;

/// A short link made for a message, stored with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLink {
    /// The code in `/s/{code}`.
    pub code: String,
    /// The URL it stands for, exactly as the text had it.
    pub url: String,
    /// When it stops working, if it does.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a short link goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkTarget {
    /// The message it was sent in.
    pub message_id: MessageId,
    /// The URL it stands for.
    pub url: String,
    /// When it stops working, if it does.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A person's click on a short link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewClick {
    /// The link's code.
    pub code: String,
    /// The message it was sent in.
    pub message_id: MessageId,
    /// When.
    pub at: DateTime<Utc>,
    /// The browser's `User-Agent`, cut short.
    pub user_agent: Option<String>,
}

/// The clicks on a message's links.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClickSummary {
    /// How many.
    pub count: i64,
    /// The first.
    pub first_at: Option<DateTime<Utc>>,
    /// The latest.
    pub last_at: Option<DateTime<Utc>>,
}

/// Short links. Every method commits before it returns.
#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// The link a code names.
    async fn link(&self, code: &str) -> StoreResult<Option<LinkTarget>>;
    /// Count clicks, in one commit; a message's first click also goes into the outbox when its
    /// source feeds it, so its CRM record can show it was clicked.
    async fn record_clicks(&self, clicks: Vec<NewClick>) -> StoreResult<()>;
}

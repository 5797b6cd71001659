//! The dry-run write-back log: the CRM calls a connection with `dry_run = true` would have
//! made, kept with their exact bodies so a developer sees what would land on the records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// How long logged calls are kept: each write purges those older, so the log stays bounded by
/// a week of traffic however long a dry run lasts.
pub const WRITEBACKS_KEPT: chrono::Duration = chrono::Duration::days(7);

/// A call a dry-run sink would have made.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWritebackCall {
    /// The connection's source name, e.g. `salesforce:prod`.
    pub connection: String,
    /// The HTTP method: `PATCH`, `PUT`, `POST`.
    pub method: String,
    /// The URL path the call would go to, from the API root (`/services/data/…`, `/k/v1/…`).
    pub path: String,
    /// The exact JSON request body.
    pub body: serde_json::Value,
    /// The messages whose changes the call carries.
    pub message_ids: Vec<String>,
    /// When it would have been made.
    pub at: DateTime<Utc>,
}

/// A logged call, with its place in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct WritebackCall {
    /// Increasing with every call logged; pages are cut on it.
    pub seq: i64,
    /// What was logged.
    pub call: NewWritebackCall,
}

/// Which logged calls to read: newest first.
#[derive(Clone, Debug, Default)]
pub struct WritebackQuery {
    /// Only this connection's (its source name).
    pub connection: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Only calls older than this `seq`.
    pub before: Option<i64>,
}

/// The log of dry-run write-back calls. Every method commits before it returns.
#[async_trait]
pub trait WritebackLogStore: Send + Sync + 'static {
    /// Keep `calls`, and forget those logged before `now - WRITEBACKS_KEPT`.
    async fn log_writebacks(
        &self,
        calls: Vec<NewWritebackCall>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Logged calls, newest first.
    async fn writebacks(&self, query: WritebackQuery) -> StoreResult<Vec<WritebackCall>>;
}

/// The columns a logged call is read from, in the order [`stored_call`] takes them.
pub(super) const CALL_COLUMNS: &str = "seq, connection, method, path, body, message_ids, at";

/// A logged call's stored text: its body and its message ids, each as JSON.
pub(super) fn stored_text(call: &NewWritebackCall) -> (String, String) {
    let ids = serde_json::Value::from(call.message_ids.clone());
    (call.body.to_string(), ids.to_string())
}

/// A logged call read back from its columns ([`CALL_COLUMNS`]).
pub(super) fn stored_call(
    (seq, connection, method, path, body, message_ids, at): (
        i64,
        String,
        String,
        String,
        String,
        String,
        i64,
    ),
) -> StoreResult<WritebackCall> {
    let corrupt = |what: &str, e: serde_json::Error| {
        super::StoreError::Corrupt(format!("a logged write-back call's {what}: {e}"))
    };
    Ok(WritebackCall {
        seq,
        call: NewWritebackCall {
            connection,
            method,
            path,
            body: serde_json::from_str(&body).map_err(|e| corrupt("body", e))?,
            message_ids: serde_json::from_str(&message_ids)
                .map_err(|e| corrupt("message ids", e))?,
            at: super::decode::time(at)?,
        },
    })
}

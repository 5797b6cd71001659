//! Number hygiene: the cancellation-history check (解約履歴チェック); the list policy it sits
//! beside is `domain::hygiene`.
//!
//! Given a number and the date the CRM last confirmed it, answer whether it may have been
//! cancelled or reassigned since; Japanese carriers reassign numbers days after deactivation.

mod http;
mod local;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;

pub use http::{hook_schema, HistoryAnswer, HistoryQuery, HttpHistory};
pub use local::DenyListHistory;

use crate::{config::HistoryConfig, domain::phone::PhoneNumber, store::Store};

/// The lookup could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the number history lookup failed: {0}")]
pub struct HistoryError(pub String);

/// Whether a number may have changed hands since a date.
#[async_trait]
pub trait NumberHistory: Send + Sync + 'static {
    /// `Some(why)` when `number` may have been cancelled or reassigned since `since`.
    async fn may_have_changed(
        &self,
        number: &PhoneNumber,
        since: NaiveDate,
    ) -> Result<Option<String>, HistoryError>;
}

/// The configured lookup: the HTTP hook when a URL is set, else the local deny list.
pub fn from_config(
    config: &HistoryConfig,
    store: Arc<dyn Store>,
) -> Result<Arc<dyn NumberHistory>, HistoryError> {
    Ok(match &config.url {
        Some(url) => Arc::new(HttpHistory::new(
            url,
            config.token.clone(),
            std::time::Duration::from_millis(config.timeout_ms),
        )?),
        None => Arc::new(DenyListHistory::new(store)),
    })
}

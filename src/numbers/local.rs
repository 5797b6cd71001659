//! The default history: a number on the local deny list may have changed hands.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;

use super::{HistoryError, NumberHistory};
use crate::{
    domain::phone::PhoneNumber,
    store::{ListKey, NumberList, Store},
};

/// Answers from the managed deny list (e.g. numbers a carrier or a customer reported cancelled).
pub struct DenyListHistory {
    store: Arc<dyn Store>,
}

impl DenyListHistory {
    /// A lookup over `store`'s deny list.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl NumberHistory for DenyListHistory {
    async fn may_have_changed(
        &self,
        number: &PhoneNumber,
        _since: NaiveDate,
    ) -> Result<Option<String>, HistoryError> {
        let listed = self
            .store
            .listed(NumberList::Deny, &ListKey::Number(number.clone()))
            .await
            .map_err(|e| HistoryError(e.to_string()))?;
        Ok(listed.map(|entry| match entry.reason {
            Some(reason) => format!("the number is on the deny list: {reason}"),
            None => "the number is on the deny list".into(),
        }))
    }
}

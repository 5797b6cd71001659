//! The managed allow and deny lists.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{ids::ListEntryId, phone::PhoneNumber};

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
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// The number lists. Every method commits before it returns.
#[async_trait]
pub trait ListStore: Send + Sync + 'static {
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
}

//! The life of a message: its states and which changes between them are allowed.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a message is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, waiting for a worker.
    Queued,
    /// Accepted, waiting for its `send_at`.
    Scheduled,
    /// Handed to a worker, which is talking to the provider.
    Sending,
    /// The provider accepted it; no receipt yet.
    Sent,
    /// The handset received it (billable).
    Delivered,
    /// The provider could not reach the handset.
    Undelivered,
    /// The provider refused it, or every attempt failed.
    Failed,
    /// Canceled by the client before it was sent.
    Canceled,
    /// Refused by a rule after it was accepted (e.g. a CRM record without a usable number).
    Rejected,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 9] = [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Sending,
        JobState::Sent,
        JobState::Delivered,
        JobState::Undelivered,
        JobState::Failed,
        JobState::Canceled,
        JobState::Rejected,
    ];

    /// The value a CRM status field gets for this state: its name in `names` (a connection's
    /// `status_values`), or its own name.
    pub fn shown_as(self, names: &BTreeMap<String, String>) -> &str {
        names
            .get(self.as_str())
            .map_or(self.as_str(), String::as_str)
    }

    /// The lowercase name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Scheduled => "scheduled",
            JobState::Sending => "sending",
            JobState::Sent => "sent",
            JobState::Delivered => "delivered",
            JobState::Undelivered => "undelivered",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
            JobState::Rejected => "rejected",
        }
    }

    /// No change leaves a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Delivered
                | JobState::Undelivered
                | JobState::Failed
                | JobState::Canceled
                | JobState::Rejected
        )
    }

    /// The states a message may be in for a change to `self` to apply.
    ///
    /// A receipt may overtake the worker's own "sent" record, so delivery outcomes also apply
    /// from `sending`; a duplicate receipt finds a final state and changes nothing.
    pub fn allowed_from(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            Queued => &[Sending],
            Scheduled => &[],
            Sending => &[Queued, Scheduled, Sending],
            Sent => &[Sending],
            Delivered | Undelivered => &[Sending, Sent],
            Failed => &[Sending, Sent],
            Canceled => &[Scheduled],
            Rejected => &[Queued, Scheduled],
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no state.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_name() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
    }

    #[test]
    fn no_change_leaves_a_final_state() {
        for target in JobState::ALL {
            for from in target.allowed_from() {
                assert!(!from.is_final(), "{from} -> {target}");
            }
        }
    }

    #[test]
    fn only_scheduled_messages_can_be_canceled() {
        assert_eq!(JobState::Canceled.allowed_from(), &[JobState::Scheduled]);
    }
}

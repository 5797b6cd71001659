//! Usage per day: messages and segments by final state; only delivered ones are billable.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::DayRange;
use crate::{domain::state::JobState, store::UsageBucket};

/// The final states usage reports, in the order shown.
pub const BILLED_STATES: [JobState; 5] = [
    JobState::Delivered,
    JobState::Undelivered,
    JobState::Failed,
    JobState::Canceled,
    JobState::Rejected,
];

/// Messages and their segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusUsage {
    /// Messages.
    pub messages: i64,
    /// Their parts over the air.
    pub segments: i64,
}

/// One day's usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayUsage {
    /// The day, in the range's zone.
    pub date: NaiveDate,
    /// Per final state, in `BILLED_STATES` order.
    pub statuses: Vec<(JobState, StatusUsage)>,
}

impl DayUsage {
    /// What is billed: the delivered messages.
    pub fn billable(&self) -> StatusUsage {
        self.of(JobState::Delivered)
    }

    /// Every final message.
    pub fn total(&self) -> StatusUsage {
        self.statuses
            .iter()
            .fold(StatusUsage::default(), |sum, (_, u)| add(sum, *u))
    }

    /// One state's usage.
    pub fn of(&self, state: JobState) -> StatusUsage {
        self.statuses
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, u)| *u)
            .unwrap_or_default()
    }
}

/// Usage over a range of days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Every day of the range, in order, days without messages too.
    pub days: Vec<DayUsage>,
}

impl Usage {
    /// What is billed over the whole range.
    pub fn billable(&self) -> StatusUsage {
        self.days
            .iter()
            .fold(StatusUsage::default(), |sum, d| add(sum, d.billable()))
    }

    /// Every final message over the whole range.
    pub fn total(&self) -> StatusUsage {
        self.days
            .iter()
            .fold(StatusUsage::default(), |sum, d| add(sum, d.total()))
    }
}

fn add(a: StatusUsage, b: StatusUsage) -> StatusUsage {
    StatusUsage {
        messages: a.messages + b.messages,
        segments: a.segments + b.segments,
    }
}

/// Fold the store's buckets into the range's days: a message counts on the day, in the range's
/// zone, it became final.
pub fn usage_report(range: &DayRange, buckets: &[UsageBucket]) -> Usage {
    let mut counted: BTreeMap<(NaiveDate, usize), StatusUsage> = BTreeMap::new();
    for b in buckets {
        let Some(position) = BILLED_STATES.iter().position(|s| *s == b.status) else {
            continue;
        };
        let entry = counted
            .entry((range.day_of(b.start), position))
            .or_default();
        *entry = add(
            *entry,
            StatusUsage {
                messages: b.messages,
                segments: b.segments,
            },
        );
    }
    Usage {
        days: range
            .days()
            .map(|date| DayUsage {
                date,
                statuses: BILLED_STATES
                    .iter()
                    .enumerate()
                    .map(|(i, state)| {
                        (*state, counted.get(&(date, i)).copied().unwrap_or_default())
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn bucket(start: &str, status: JobState, messages: i64, segments: i64) -> UsageBucket {
        UsageBucket {
            start: at(start),
            status,
            messages,
            segments,
        }
    }

    #[test]
    fn only_delivered_messages_are_billable_and_days_split_at_japanese_midnight() {
        let range = DayRange::parse(
            Some("2026-12-01"),
            Some("2026-12-03"),
            None,
            at("2026-12-03T00:00:00Z"),
            366,
        )
        .unwrap();
        let usage = usage_report(
            &range,
            &[
                bucket("2026-12-01T14:45:00Z", JobState::Delivered, 2, 3),
                bucket("2026-12-01T14:45:00Z", JobState::Undelivered, 1, 1),
                bucket("2026-12-01T15:00:00Z", JobState::Delivered, 1, 2),
                bucket("2026-12-01T15:00:00Z", JobState::Failed, 4, 4),
            ],
        );
        assert_eq!(usage.days.len(), 3);
        let (first, second, third) = (&usage.days[0], &usage.days[1], &usage.days[2]);
        assert_eq!(
            first.billable(),
            StatusUsage {
                messages: 2,
                segments: 3
            }
        );
        assert_eq!(
            first.total(),
            StatusUsage {
                messages: 3,
                segments: 4
            }
        );
        assert_eq!(
            second.billable(),
            StatusUsage {
                messages: 1,
                segments: 2
            }
        );
        assert_eq!(
            second.of(JobState::Failed),
            StatusUsage {
                messages: 4,
                segments: 4
            }
        );
        assert_eq!(third.total(), StatusUsage::default());
        assert_eq!(
            usage.billable(),
            StatusUsage {
                messages: 3,
                segments: 5
            }
        );
        assert_eq!(
            usage.total(),
            StatusUsage {
                messages: 8,
                segments: 10
            }
        );
    }
}

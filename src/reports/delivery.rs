//! Delivery reports: per day, sender or source, how many messages were delivered, how fast, and
//! what the handsets did with them.

use std::{collections::BTreeMap, str::FromStr};

use super::{DayRange, LatencyHistogram};
use crate::{domain::state::JobState, store::DeliveryFact};

/// What a report's groups are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The day a message became final, in the range's zone.
    Day,
    /// Its sender id.
    Sender,
    /// Where it came from: `api`, `otp`, or a CRM connection.
    Source,
    /// The route that sent it (`[[delivery.routes]]` name, or the provider's name without
    /// routes); `-` for messages never sent.
    Route,
}

impl FromStr for GroupBy {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "day" => Ok(GroupBy::Day),
            "sender" => Ok(GroupBy::Sender),
            "source" => Ok(GroupBy::Source),
            "route" => Ok(GroupBy::Route),
            _ => Err(()),
        }
    }
}

/// The messages of one group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryGroup {
    /// The day, sender or source; `total` for the whole report.
    pub key: String,
    /// Messages per final state.
    pub statuses: BTreeMap<&'static str, u64>,
    /// Delivered messages' times from when they were due to their delivery.
    pub latency: LatencyHistogram,
    /// Delivered messages a person clicked a short link in.
    pub clicked: u64,
    /// Delivered messages the handset replied to.
    pub replied: u64,
    /// Messages whose reply opted the number out (still out).
    pub opt_outs: u64,
}

impl DeliveryGroup {
    fn add(&mut self, fact: &DeliveryFact) {
        *self.statuses.entry(fact.status.as_str()).or_default() += 1;
        self.opt_outs += u64::from(fact.opted_out);
        if fact.status == JobState::Delivered {
            self.latency
                .record((fact.finished_at - fact.due_at).num_milliseconds());
            self.clicked += u64::from(fact.clicked);
            self.replied += u64::from(fact.replied);
        }
    }

    fn count(&self, state: JobState) -> u64 {
        self.statuses.get(state.as_str()).copied().unwrap_or(0)
    }

    /// Every message in the group.
    pub fn messages(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Delivered messages.
    pub fn delivered(&self) -> u64 {
        self.count(JobState::Delivered)
    }

    /// Delivered of those that went out (delivered, undelivered, failed); canceled and
    /// rejected messages never went out. `None` when none did.
    pub fn delivery_rate(&self) -> Option<f64> {
        let out =
            self.delivered() + self.count(JobState::Undelivered) + self.count(JobState::Failed);
        rate(self.delivered(), out)
    }

    /// Clicked of delivered.
    pub fn click_through_rate(&self) -> Option<f64> {
        rate(self.clicked, self.delivered())
    }

    /// Replied to of delivered.
    pub fn reply_rate(&self) -> Option<f64> {
        rate(self.replied, self.delivered())
    }
}

/// A share to four decimal places, or `None` of nothing.
fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// A report being folded from facts.
#[derive(Clone, Debug)]
pub struct DeliveryReport {
    range: DayRange,
    group_by: GroupBy,
    groups: BTreeMap<String, DeliveryGroup>,
    total: DeliveryGroup,
}

/// An empty report over `range`, grouped by `group_by`; facts are added page by page.
pub fn delivery_report(range: DayRange, group_by: GroupBy) -> DeliveryReport {
    DeliveryReport {
        range,
        group_by,
        groups: BTreeMap::new(),
        total: DeliveryGroup {
            key: "total".into(),
            ..DeliveryGroup::default()
        },
    }
}

impl DeliveryReport {
    /// Count one message.
    pub fn add(&mut self, fact: &DeliveryFact) {
        let key = match self.group_by {
            GroupBy::Day => self.range.day_of(fact.finished_at).to_string(),
            GroupBy::Sender => fact.sender.clone(),
            GroupBy::Source => fact.source.name().to_string(),
            GroupBy::Route => fact.route.clone().unwrap_or_else(|| "-".into()),
        };
        self.groups
            .entry(key.clone())
            .or_insert_with(|| DeliveryGroup {
                key,
                ..DeliveryGroup::default()
            })
            .add(fact);
        self.total.add(fact);
    }

    /// The groups, by key.
    pub fn groups(&self) -> impl Iterator<Item = &DeliveryGroup> {
        self.groups.values()
    }

    /// The whole report as one group.
    pub fn total(&self) -> &DeliveryGroup {
        &self.total
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::domain::source::Source;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fact(status: JobState, finished: &str, seconds: i64, sender: &str) -> DeliveryFact {
        DeliveryFact {
            seq: 1,
            finished_at: at(finished),
            due_at: at(finished) - Duration::seconds(seconds),
            sender: sender.into(),
            source: Source::Api,
            status,
            route: Some("sandbox".into()),
            clicked: false,
            replied: false,
            opted_out: false,
        }
    }

    #[test]
    fn rates_and_times_count_delivered_messages_and_groups_split_by_japanese_day() {
        let range = DayRange::parse(
            Some("2026-12-01"),
            Some("2026-12-02"),
            None,
            at("2026-12-02T00:00:00Z"),
            92,
        )
        .unwrap();
        let mut report = delivery_report(range, GroupBy::Day);
        let mut clicked = fact(JobState::Delivered, "2026-12-01T01:00:00Z", 2, "A");
        clicked.clicked = true;
        clicked.replied = true;
        report.add(&clicked);
        report.add(&fact(JobState::Delivered, "2026-12-01T02:00:00Z", 4, "A"));
        report.add(&fact(JobState::Undelivered, "2026-12-01T03:00:00Z", 9, "A"));
        let mut stopped = fact(JobState::Rejected, "2026-12-01T03:00:00Z", 0, "A");
        stopped.opted_out = true;
        report.add(&stopped);
        report.add(&fact(JobState::Delivered, "2026-12-01T15:30:00Z", 6, "B"));
        let groups: Vec<_> = report.groups().collect();
        assert_eq!(groups.len(), 2);
        let first = groups[0];
        assert_eq!(first.key, "2026-12-01");
        assert_eq!((first.messages(), first.delivered()), (4, 2));
        assert_eq!(
            first.delivery_rate(),
            Some(0.6667),
            "rejected never went out"
        );
        assert_eq!(first.click_through_rate(), Some(0.5));
        assert_eq!(first.reply_rate(), Some(0.5));
        assert_eq!(first.opt_outs, 1);
        assert_eq!(groups[1].key, "2026-12-02");
        let total = report.total();
        assert_eq!(total.messages(), 5);
        let median = total.latency.quantile_seconds(0.5).unwrap();
        assert!((median - 4.0).abs() < 0.05, "{median}");
    }

    #[test]
    fn a_group_with_nothing_sent_has_no_rates() {
        let g = DeliveryGroup::default();
        assert_eq!(
            (g.delivery_rate(), g.click_through_rate(), g.reply_rate()),
            (None, None, None)
        );
    }
}

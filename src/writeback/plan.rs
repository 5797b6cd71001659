//! What one round of write-back sends: the pending outbox entries of a connection folded into
//! one update per CRM record, so a record gets one write however many changes it went through;
//! [`pace`] says when a round's batches go.

pub mod pace;

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    domain::{ids::MessageId, phone::PhoneNumber, state::JobState},
    store::{OutboxEntry, OutboxKind},
};

/// The state to show on a record: its newest message's latest state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// The message whose state it is.
    pub message_id: MessageId,
    /// The state.
    pub status: JobState,
    /// Why, when the state says more (a refusal, an undelivered receipt).
    pub detail: Option<String>,
    /// When it was entered.
    pub at: DateTime<Utc>,
}

/// A reply from a handset, to show on the record of the message it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The message it answers.
    pub message_id: MessageId,
    /// What the handset sent.
    pub body: String,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// The handset opted out of the sender (or back in) by a reply to a message of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentChange {
    /// The message the reply answered.
    pub message_id: MessageId,
    /// Opted out after it.
    pub opted_out: bool,
    /// The handset's number; `None` in entries written before it was kept.
    pub number: Option<PhoneNumber>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A person first clicked a short link in a message of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickChange {
    /// The message clicked.
    pub message_id: MessageId,
    /// When.
    pub at: DateTime<Utc>,
}

/// Everything to write on one record in this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordUpdate {
    /// The record, as the connection's source names it.
    pub record: String,
    /// The state to show, if it changed and is ready to be shown.
    pub status: Option<StatusChange>,
    /// With a ready state: the latest state of every message of the record that changed, by
    /// message id (for a per-message log beside the record).
    pub messages: Vec<StatusChange>,
    /// New replies, oldest first.
    pub replies: Vec<Reply>,
    /// The latest change of consent, if one came.
    pub consent: Option<ConsentChange>,
    /// The latest first click, if one came.
    pub click: Option<ClickChange>,
    /// The outbox entries this update covers, acknowledged once it is written.
    pub entries: Vec<i64>,
    /// It carries a message's first state (the message was just taken): a trigger check box
    /// that asked for it is cleared with it.
    pub opens: bool,
}

impl RecordUpdate {
    /// When the oldest change it carries happened.
    pub fn since(&self) -> DateTime<Utc> {
        self.status
            .iter()
            .map(|s| s.at)
            .chain(self.replies.iter().map(|r| r.at))
            .chain(self.consent.iter().map(|c| c.at))
            .chain(self.click.iter().map(|c| c.at))
            .min()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The messages this update concerns, to note a refused write-back on.
    pub fn messages(&self) -> Vec<MessageId> {
        let mut ids: Vec<MessageId> = self
            .status
            .iter()
            .map(|s| s.message_id.clone())
            .chain(self.replies.iter().map(|r| r.message_id.clone()))
            .chain(self.consent.iter().map(|c| c.message_id.clone()))
            .chain(self.click.iter().map(|c| c.message_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// One round's updates, in the order their records first appear in the outbox.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Records to write.
    pub updates: Vec<RecordUpdate>,
    /// Entries that nothing needs to write (unreadable payloads), to acknowledge as they are.
    pub skipped: Vec<i64>,
}

/// Fold `entries` (one connection's, oldest first) into one update per record.
///
/// A record shows its newest message's latest state (messages are ordered by id, which grows
/// with time), so a late receipt for an older message does not hide the newer one. A state that
/// is not final and younger than `settle` is held back for a later round, in which a final state
/// will usually have replaced it: most records are then written once, not once per state.
/// Replies and changes of consent are never held; of the latter the newest wins.
pub fn plan(entries: Vec<OutboxEntry>, now: DateTime<Utc>, settle: Duration) -> Plan {
    let mut order: Vec<String> = Vec::new();
    let mut records: BTreeMap<String, Folded> = BTreeMap::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let Some(record) = entry.source.record().map(str::to_string) else {
            skipped.push(entry.id);
            continue;
        };
        let folded = records.entry(record.clone()).or_insert_with(|| {
            order.push(record);
            Folded::default()
        });
        if !folded.add(entry) {
            skipped.extend(folded.unreadable.pop());
        }
    }
    let settle = chrono::Duration::from_std(settle).unwrap_or(chrono::Duration::MAX);
    let updates = order
        .into_iter()
        .filter_map(|record| {
            let folded = records.remove(&record)?;
            folded.into_update(record, now, settle)
        })
        .collect();
    Plan { updates, skipped }
}

/// One record's entries so far.
#[derive(Default)]
struct Folded {
    status: Option<StatusChange>,
    latest: BTreeMap<MessageId, StatusChange>,
    status_entries: Vec<i64>,
    replies: Vec<Reply>,
    reply_entries: Vec<i64>,
    consent: Option<ConsentChange>,
    click: Option<ClickChange>,
    unreadable: Vec<i64>,
    opens: bool,
}

impl Folded {
    /// Take in one entry; false (and the entry noted as unreadable) if its payload is not one
    /// the store writes.
    fn add(&mut self, entry: OutboxEntry) -> bool {
        let p = &entry.payload;
        let at = p["at"].as_i64().and_then(DateTime::from_timestamp_millis);
        match (entry.kind, at) {
            (OutboxKind::Status, Some(at)) => {
                let Some(status) = p["status"].as_str().and_then(|s| s.parse().ok()) else {
                    self.unreadable.push(entry.id);
                    return false;
                };
                let change = StatusChange {
                    message_id: entry.message_id,
                    status,
                    detail: p["detail"].as_str().map(str::to_string),
                    at,
                };
                // Entries come oldest first: a later one of the same or a newer message wins.
                if self
                    .status
                    .as_ref()
                    .is_none_or(|shown| change.message_id >= shown.message_id)
                {
                    self.status = Some(change.clone());
                }
                // A message's first entry is its first move (to sending) or its refusal.
                self.opens |= matches!(
                    change.status,
                    JobState::Queued | JobState::Scheduled | JobState::Sending | JobState::Rejected
                );
                self.latest.insert(change.message_id.clone(), change);
                self.status_entries.push(entry.id);
                true
            }
            (OutboxKind::Reply, Some(at)) => {
                let Some(body) = p["body"].as_str() else {
                    self.unreadable.push(entry.id);
                    return false;
                };
                self.replies.push(Reply {
                    message_id: entry.message_id,
                    body: body.to_string(),
                    at,
                });
                self.reply_entries.push(entry.id);
                true
            }
            (OutboxKind::Consent, Some(at)) => {
                let Some(opted_out) = p["opted_out"].as_bool() else {
                    self.unreadable.push(entry.id);
                    return false;
                };
                self.consent = Some(ConsentChange {
                    message_id: entry.message_id,
                    opted_out,
                    number: p["number"].as_str().map(PhoneNumber::from_e164_trusted),
                    at,
                });
                // Written with the replies: never held back.
                self.reply_entries.push(entry.id);
                true
            }
            (OutboxKind::Click, Some(at)) => {
                if self.click.as_ref().is_none_or(|shown| at >= shown.at) {
                    self.click = Some(ClickChange {
                        message_id: entry.message_id,
                        at,
                    });
                }
                // Written with the replies: never held back.
                self.reply_entries.push(entry.id);
                true
            }
            _ => {
                self.unreadable.push(entry.id);
                false
            }
        }
    }

    fn into_update(
        self,
        record: String,
        now: DateTime<Utc>,
        settle: chrono::Duration,
    ) -> Option<RecordUpdate> {
        let ready = self
            .status
            .filter(|s| s.status.is_final() || now - s.at >= settle);
        let mut entries = self.reply_entries;
        if ready.is_some() {
            entries.extend(self.status_entries);
            entries.sort_unstable();
        }
        let messages = match ready {
            Some(_) => self.latest.into_values().collect(),
            None => Vec::new(),
        };
        let news = !self.replies.is_empty() || self.consent.is_some() || self.click.is_some();
        let opens = self.opens && ready.is_some();
        (ready.is_some() || news).then_some(RecordUpdate {
            opens,
            record,
            status: ready,
            messages,
            replies: self.replies,
            consent: self.consent,
            click: self.click,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::source::Source;

    const SETTLE: Duration = Duration::from_secs(10);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn id(n: u8) -> MessageId {
        format!("msg_01M8KQJD6RZGWS9F0YE6DWKD{n:02}")
            .parse()
            .unwrap()
    }

    fn status(entry: i64, record: &str, message: u8, status: &str, t: i64) -> OutboxEntry {
        OutboxEntry {
            id: entry,
            message_id: id(message),
            source: Source::Crm {
                connection: "salesforce:prod".into(),
                record: record.into(),
            },
            kind: OutboxKind::Status,
            payload: json!({"status": status, "detail": null, "at": at(t).timestamp_millis()}),
        }
    }

    fn reply(entry: i64, record: &str, message: u8, body: &str, t: i64) -> OutboxEntry {
        OutboxEntry {
            kind: OutboxKind::Reply,
            payload: json!({"body": body, "at": at(t).timestamp_millis()}),
            ..status(entry, record, message, "sent", t)
        }
    }

    fn consent(entry: i64, record: &str, message: u8, opted_out: bool, t: i64) -> OutboxEntry {
        OutboxEntry {
            kind: OutboxKind::Consent,
            payload: json!({"opted_out": opted_out, "at": at(t).timestamp_millis()}),
            ..status(entry, record, message, "sent", t)
        }
    }

    fn click(entry: i64, record: &str, message: u8, t: i64) -> OutboxEntry {
        OutboxEntry {
            kind: OutboxKind::Click,
            payload: json!({"url": "https://example.jp/a", "at": at(t).timestamp_millis()}),
            ..status(entry, record, message, "sent", t)
        }
    }

    #[test]
    fn the_latest_first_click_is_written_at_once_beside_a_state_still_settling() {
        let entries = vec![
            status(1, "Contact/a", 1, "sent", 0),
            click(2, "Contact/a", 1, 3),
            click(3, "Contact/a", 2, 2),
        ];
        let plan = plan(entries, at(4), SETTLE);
        assert_eq!(plan.updates.len(), 1);
        let update = &plan.updates[0];
        assert_eq!(update.status, None, "sent is still settling");
        assert_eq!(
            update.click,
            Some(ClickChange {
                message_id: id(1),
                at: at(3)
            })
        );
        assert_eq!(update.entries, [2, 3]);
    }

    #[test]
    fn the_latest_consent_is_written_at_once_with_nothing_held_back() {
        let entries = vec![
            status(1, "Contact/a", 1, "sent", 0),
            consent(2, "Contact/a", 1, true, 1),
            consent(3, "Contact/a", 1, false, 2),
            consent(4, "Contact/b", 2, true, 3),
        ];
        let plan = plan(entries, at(4), SETTLE);
        assert_eq!(plan.updates.len(), 2);
        let a = &plan.updates[0];
        assert_eq!(a.status, None, "a young sent is still held");
        assert_eq!(a.consent.as_ref().map(|c| c.opted_out), Some(false));
        assert_eq!(a.entries, [2, 3], "the held status entry stays pending");
        assert_eq!(a.messages(), [id(1)]);
        assert_eq!(
            plan.updates[1].consent.as_ref().map(|c| c.opted_out),
            Some(true)
        );
        let unreadable = OutboxEntry {
            payload: json!({"at": at(0).timestamp_millis()}),
            ..consent(5, "Contact/c", 3, true, 0)
        };
        assert_eq!(super::plan(vec![unreadable], at(4), SETTLE).skipped, [5]);
    }

    fn shown(u: &RecordUpdate) -> Option<(MessageId, JobState)> {
        u.status.as_ref().map(|s| (s.message_id.clone(), s.status))
    }

    #[test]
    fn a_record_gets_one_update_with_its_latest_state_covering_every_entry() {
        let entries = vec![
            status(1, "Contact/a", 1, "sending", 0),
            status(2, "Contact/b", 2, "sending", 0),
            status(3, "Contact/a", 1, "sent", 1),
            status(4, "Contact/a", 1, "delivered", 2),
        ];
        let plan = plan(entries, at(3), SETTLE);
        assert_eq!(plan.updates.len(), 1, "b is still settling: {plan:?}");
        let a = &plan.updates[0];
        assert_eq!(a.record, "Contact/a");
        assert_eq!(shown(a), Some((id(1), JobState::Delivered)));
        assert_eq!(a.entries, [1, 3, 4]);
    }

    #[test]
    fn a_state_that_is_not_final_is_written_once_it_has_settled() {
        let entries = vec![status(1, "Contact/a", 1, "sent", 0)];
        assert!(plan(entries.clone(), at(9), SETTLE).updates.is_empty());
        let later = plan(entries, at(10), SETTLE);
        assert_eq!(shown(&later.updates[0]), Some((id(1), JobState::Sent)));
    }

    #[test]
    fn the_newest_message_of_a_record_wins_over_a_late_receipt_of_an_older_one() {
        let entries = vec![
            status(1, "Contact/a", 2, "rejected", 0),
            status(2, "Contact/a", 1, "delivered", 1),
        ];
        let plan = plan(entries, at(2), SETTLE);
        assert_eq!(shown(&plan.updates[0]), Some((id(2), JobState::Rejected)));
        assert_eq!(plan.updates[0].entries, [1, 2]);
        let each: Vec<_> = plan.updates[0]
            .messages
            .iter()
            .map(|s| (s.message_id.clone(), s.status))
            .collect();
        assert_eq!(
            each,
            [(id(1), JobState::Delivered), (id(2), JobState::Rejected)],
            "every message keeps its own latest state for the log"
        );
    }

    #[test]
    fn replies_are_kept_in_order_and_never_held() {
        let entries = vec![
            status(1, "Contact/a", 1, "sent", 0),
            reply(2, "Contact/a", 1, "はい", 1),
            reply(3, "Contact/a", 1, "STOP", 2),
        ];
        let plan = plan(entries, at(3), SETTLE);
        let a = &plan.updates[0];
        assert_eq!(a.status, None, "the sent state is still settling");
        let bodies: Vec<_> = a.replies.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["はい", "STOP"]);
        assert_eq!(a.entries, [2, 3], "only the replies are covered");
    }

    #[test]
    fn updates_follow_the_order_records_first_appear_in() {
        let entries = vec![
            status(1, "Contact/z", 1, "delivered", 0),
            status(2, "Contact/a", 2, "delivered", 0),
            status(3, "Contact/z", 3, "failed", 0),
        ];
        let records: Vec<_> = plan(entries, at(1), SETTLE)
            .updates
            .into_iter()
            .map(|u| u.record)
            .collect();
        assert_eq!(records, ["Contact/z", "Contact/a"]);
    }

    #[test]
    fn unreadable_payloads_are_skipped_without_holding_the_rest() {
        let mut broken = status(1, "Contact/a", 1, "delivered", 0);
        broken.payload = json!({"status": "teleported", "at": 0});
        let entries = vec![broken, status(2, "Contact/a", 1, "delivered", 0)];
        let plan = plan(entries, at(1), SETTLE);
        assert_eq!(plan.skipped, [1]);
        assert_eq!(plan.updates[0].entries, [2]);
    }
}

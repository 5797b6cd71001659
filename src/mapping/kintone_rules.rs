//! When a kintone record sends, and how often: the rules the webhook handler and the catch-up
//! poller share, as plain functions of what each of them saw.

use tsunagi_kintone::{FieldValue, Record};

use crate::config::KintoneConfig;

/// What makes a connection's record send, beside its trigger events.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trigger<'a> {
    /// The process-management status that sends on UPDATE_STATUS.
    pub status: Option<&'a str>,
    /// A check box that must have an option checked.
    pub field: Option<&'a str>,
}

impl<'a> Trigger<'a> {
    /// What makes a record of `connection` send.
    pub fn of(connection: &'a KintoneConfig) -> Self {
        Self {
            status: connection.trigger_status.as_deref(),
            field: connection.trigger_field.as_deref(),
        }
    }
}

/// How a record came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival<'a> {
    /// A webhook of this `type`, which is or is not in the connection's trigger events.
    Webhook {
        /// `ADD_RECORD`, `UPDATE_STATUS`…
        event: &'a str,
        /// Whether the connection's `trigger_events` has it.
        triggers: bool,
    },
    /// The catch-up poller found it; `status_trigger` when it looked for the trigger status.
    Poll {
        /// Whether the record must be in the trigger status.
        status_trigger: bool,
    },
}

/// Why `record` does not send, arriving as `arrival`; `None` when it sends.
pub fn not_sending(
    trigger: Trigger<'_>,
    arrival: Arrival<'_>,
    record: Option<&Record>,
) -> Option<String> {
    let status_trigger = match arrival {
        Arrival::Webhook { event, .. } if record.is_none() => {
            return Some(format!(
                "{event} carries no record to message; nothing is sent"
            ));
        }
        Arrival::Webhook {
            event,
            triggers: false,
        } => {
            return Some(format!(
                "{event} is not in this connection's trigger_events; nothing is sent"
            ));
        }
        Arrival::Webhook { event, .. } => event == "UPDATE_STATUS",
        Arrival::Poll { status_trigger } => status_trigger,
    };
    let record = record?;
    if status_trigger {
        match record.status() {
            None => {
                return Some(
                    "the record has no STATUS field (process management is off); nothing is sent"
                        .into(),
                )
            }
            Some(status) if Some(status) != trigger.status => {
                return Some(format!(
                    "the status {status:?} is not the trigger_status; nothing is sent"
                ))
            }
            Some(_) => {}
        }
    }
    match trigger.field {
        Some(field) if !has_checked_option(record, field) => Some(format!(
            "the trigger_field {field} is not checked; nothing is sent"
        )),
        _ => None,
    }
}

/// Whether the check box `field` of `record` has an option checked.
fn has_checked_option(record: &Record, field: &str) -> bool {
    matches!(record.get(field), Some(FieldValue::CheckBox(checked)) if !checked.is_empty())
}

/// The dedupe key of a record's state: kintone gives every edit and status action a new
/// revision, so one revision sends at most once whichever webhook or poll brings it.
pub fn revision_key(app: u64, record_id: u64, revision: u64) -> String {
    format!("{app}/{record_id}/{revision}")
}

/// The key naming a record of `app` in a message's source (`12/7`), as write-back reads it.
pub fn record_key(app: u64, record_id: u64) -> String {
    format!("{app}/{record_id}")
}

/// Why a record at `revision` sends nothing though it is a trigger: our own write-back gave it
/// that revision (`own_write`), so its webhook is an echo; or a message of the record has not
/// been written back to it yet (`unwritten`), so the record is still in the trigger episode
/// that message answered, and an edit to it is no new trigger. Only the poller asks the
/// latter: a webhook is a person's act, and its revision's key dedupes it.
pub fn already_answered(own_write: bool, unwritten: bool) -> Option<&'static str> {
    if own_write {
        Some("an echo of tsunagi's own write-back to this record")
    } else if unwritten {
        Some("the record's last message has not been written back to it yet")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(value: serde_json::Value) -> Record {
        serde_json::from_value(value).unwrap()
    }

    const STATUS: Trigger<'static> = Trigger {
        status: Some("SMS送信"),
        field: None,
    };

    #[test]
    fn update_status_sends_only_in_the_trigger_status() {
        let waiting = record(json!({"ステータス": {"type": "STATUS", "value": "SMS送信"}}));
        let done = record(json!({"ステータス": {"type": "STATUS", "value": "完了"}}));
        let webhook = Arrival::Webhook {
            event: "UPDATE_STATUS",
            triggers: true,
        };
        assert_eq!(not_sending(STATUS, webhook, Some(&waiting)), None);
        assert!(not_sending(STATUS, webhook, Some(&done))
            .unwrap()
            .contains("完了"));
        let poll = Arrival::Poll {
            status_trigger: true,
        };
        assert_eq!(not_sending(STATUS, poll, Some(&waiting)), None);
        assert!(not_sending(STATUS, poll, Some(&done)).is_some());
        let added = Arrival::Webhook {
            event: "ADD_RECORD",
            triggers: true,
        };
        assert_eq!(
            not_sending(STATUS, added, Some(&done)),
            None,
            "not filtered by status"
        );
    }

    #[test]
    fn events_that_are_no_trigger_or_carry_no_record_send_nothing() {
        let r = record(json!({}));
        let other = Arrival::Webhook {
            event: "UPDATE_RECORD",
            triggers: false,
        };
        assert!(not_sending(STATUS, other, Some(&r))
            .unwrap()
            .contains("trigger_events"));
        let deleted = Arrival::Webhook {
            event: "DELETE_RECORD",
            triggers: true,
        };
        assert!(not_sending(STATUS, deleted, None)
            .unwrap()
            .contains("no record"));
    }

    #[test]
    fn a_trigger_field_must_have_an_option_checked() {
        let trigger = Trigger {
            status: None,
            field: Some("SMS送信"),
        };
        let edit = Arrival::Webhook {
            event: "UPDATE_RECORD",
            triggers: true,
        };
        let checked = record(json!({"SMS送信": {"type": "CHECK_BOX", "value": ["送信する"]}}));
        let cleared = record(json!({"SMS送信": {"type": "CHECK_BOX", "value": []}}));
        assert_eq!(not_sending(trigger, edit, Some(&checked)), None);
        assert!(not_sending(trigger, edit, Some(&cleared))
            .unwrap()
            .contains("SMS送信"));
        let poll = Arrival::Poll {
            status_trigger: false,
        };
        assert!(not_sending(trigger, poll, Some(&cleared)).is_some());
    }

    #[test]
    fn an_echo_or_an_unwritten_message_answers_the_record_already() {
        assert!(already_answered(true, false).unwrap().contains("echo"));
        assert!(already_answered(false, true).is_some());
        assert_eq!(already_answered(false, false), None);
        assert_eq!(revision_key(12, 7, 3), "12/7/3");
        assert_eq!(record_key(12, 7), "12/7");
    }
}

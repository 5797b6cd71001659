//! A kintone record taken into the one admission path, whoever brought it: the webhook
//! handler and the catch-up poller both hand records here, with no HTTP state between.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::outcome_label;
use crate::{
    config::KintoneConfig,
    domain::source::Source,
    mapping::{
        kintone_rules::{already_answered, record_key, revision_key},
        Record,
    },
    messaging::{Admission, AdmitError, Dedupe, RecordOutcome, Refusal},
    providers::Events,
    store::Store,
    telemetry,
};

/// What became of a webhook.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KintoneResult {
    /// Stored for delivery.
    Queued,
    /// Refused by a rule and stored as a `rejected` message, written back with its reason.
    Rejected,
    /// The event sends nothing (not a trigger, another status, no record).
    Ignored,
    /// This webhook, or another for the same record revision, was taken before.
    Duplicate,
}

/// Why a record was rejected.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KintoneRefusal {
    /// The refusal's stable code, e.g. `number_type_not_allowed`.
    pub code: String,
    /// Why, naming the field.
    pub message: String,
}

/// The answer to a webhook, kept for a lookup by its notification id (kintone's webhook log
/// shows only success or failure).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KintoneAnswer {
    /// What became of it.
    pub result: KintoneResult,
    /// The stored message, queued or rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Why nothing was sent, when ignored or a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the record was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<KintoneRefusal>,
}

impl KintoneAnswer {
    /// An answer without a message, saying why.
    pub fn because(result: KintoneResult, reason: String) -> Self {
        Self {
            result,
            message_id: None,
            reason: Some(reason),
            error: None,
        }
    }
}

/// What a kintone record needs to become a message: the store (our own writes' revisions),
/// the admission path, and the clock.
#[derive(Clone)]
pub struct KintoneIntake {
    store: Arc<dyn Store>,
    admission: Arc<Admission>,
    events: Events,
}

impl KintoneIntake {
    /// Records submitted through `admission`, stored in `store`, timed by `events`.
    pub fn new(store: Arc<dyn Store>, admission: Arc<Admission>, events: Events) -> Self {
        Self {
            store,
            admission,
            events,
        }
    }

    /// The intake of a running service's state.
    pub fn of(state: &crate::api::AppState) -> Self {
        Self::new(
            state.store.clone(),
            state.admission.clone(),
            state.events.clone(),
        )
    }

    /// Submit record `id` of the connection's app, as webhook or poll `request` brought it at
    /// `revision`: once per revision, whichever brought it first.
    pub async fn take(
        &self,
        connection: &KintoneConfig,
        record: &tsunagi_kintone::Record,
        id: u64,
        revision: Option<u64>,
        request: &str,
    ) -> Result<KintoneAnswer, AdmitError> {
        let label = format!("kintone:{}", connection.name);
        let record_key = record_key(connection.app, id);
        // Our own write-back is made not to fire webhooks, but kintone has fired them for it: a
        // revision our write gave the record is an echo, and must not send again.
        if let Some(revision) = revision {
            let own = self
                .store
                .is_own_write(&label, &record_key, revision)
                .await?;
            if let Some(reason) = already_answered(own, false) {
                return Ok(KintoneAnswer::because(
                    KintoneResult::Ignored,
                    reason.into(),
                ));
            }
        }
        // The record's revision now, so write-back can write at it without reading it first: kept
        // beside the submission, so both go in one group commit rather than one after the other.
        let seen = revision.map(|revision| vec![(record_key.clone(), revision)]);
        let remember = async {
            match seen {
                Some(seen) => {
                    let now = self.events.now();
                    self.store.remember_revisions(&label, seen, now).await
                }
                None => Ok(()),
            }
        };
        // Without a revision (never seen from kintone) the request itself is the key.
        let key = match revision {
            Some(revision) => revision_key(connection.app, id, revision),
            None => request.to_string(),
        };
        let mapped = Record {
            source: Source::Crm {
                connection: label.clone(),
                record: record_key,
            },
            fields: record,
            time_zone: connection.zone(),
            phone: None,
            template: None,
            // The same webhook again replays; another webhook, or the poller, for the same
            // revision finds the key used by another request.
            dedupe: Some(Dedupe {
                scope: label.clone(),
                key,
                request_hash: request.to_string(),
            }),
        };
        let submission = connection.mapping().submission(mapped);
        let (remembered, outcome) =
            tokio::join!(remember, self.admission.submit_record(submission));
        remembered?;
        let outcome = match outcome {
            Err(AdmitError::Refused(Refusal::IdempotencyKeyReused)) => Ok(RecordOutcome::Replayed),
            other => other,
        };
        telemetry::inbound_record(&label, outcome_label(outcome.as_ref()));
        Ok(match outcome? {
            RecordOutcome::Accepted { id, .. } => KintoneAnswer {
                result: KintoneResult::Queued,
                message_id: Some(id.to_string()),
                reason: None,
                error: None,
            },
            RecordOutcome::Rejected { id, refusal } => KintoneAnswer {
                result: KintoneResult::Rejected,
                message_id: Some(id.to_string()),
                reason: None,
                error: Some(KintoneRefusal {
                    code: refusal.code().to_string(),
                    message: refusal.to_string(),
                }),
            },
            RecordOutcome::Replayed => KintoneAnswer::because(
                KintoneResult::Duplicate,
                "this record revision was taken before; nothing more is sent".into(),
            ),
        })
    }
}

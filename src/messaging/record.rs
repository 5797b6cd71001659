//! CRM records: a record a rule refuses is stored as a `rejected` message with the refusal's
//! code and reason, so it shows over the API and is written back, never dropped.

use super::{Admission, AdmitError, Admitted, Dedupe, Refusal, Submission};
use crate::{
    domain::{
        ids::MessageId,
        phone::{PhoneNumber, SenderId},
        source::Source,
        state::JobState,
    },
    store::{Acceptance, IdempotencyRecord, RejectedMessage},
    telemetry,
};

/// What became of a CRM record.
#[derive(Clone, Debug)]
pub enum RecordOutcome {
    /// Stored for delivery.
    Accepted {
        /// The message.
        id: MessageId,
        /// `queued` or `scheduled`.
        status: JobState,
    },
    /// Refused by a rule and stored as a `rejected` message that carries the refusal.
    Rejected {
        /// The rejected message.
        id: MessageId,
        /// Why.
        refusal: Refusal,
    },
    /// Its dedupe key was seen before: the record was handled then, nothing new is stored.
    Replayed,
}

/// The parts of a refused record that are kept.
struct Refused {
    source: Source,
    to: Option<PhoneNumber>,
    from: Option<String>,
    metadata: Option<serde_json::Value>,
    dedupe: Option<Dedupe>,
}

impl Admission {
    /// Admit a CRM record through [`Admission::submit`]; a refusal that settles the record is
    /// stored as a `rejected` message (with the dedupe key, so a redelivery stores nothing
    /// more). Only an unavailable store or dependency is an error: retrying may succeed.
    pub async fn submit_record(&self, submission: Submission) -> Result<RecordOutcome, AdmitError> {
        let kept = Refused {
            source: submission.source.clone(),
            to: PhoneNumber::parse(&submission.to).ok(),
            from: submission.from.clone(),
            metadata: submission.metadata.clone(),
            dedupe: submission.dedupe.clone(),
        };
        let mut status = None;
        let admitted = self
            .submit(submission, |m| {
                status = Some(m.status);
                answer(&m.id, m.status)
            })
            .await;
        match admitted {
            Ok(Admitted::Stored { id, .. }) => Ok(RecordOutcome::Accepted {
                id,
                status: status.unwrap_or(JobState::Queued),
            }),
            Ok(Admitted::Replayed { .. }) => Ok(RecordOutcome::Replayed),
            Err(AdmitError::Refused(refusal)) if refusal.settles_the_record() => {
                self.keep_refused(kept, refusal).await
            }
            Err(e) => Err(e),
        }
    }

    /// Store a CRM record refused before it could become a submission (no mapping for its
    /// object type) as a `rejected` message, once per dedupe key.
    pub async fn reject_record(
        &self,
        source: Source,
        dedupe: Option<Dedupe>,
        refusal: Refusal,
    ) -> Result<RecordOutcome, AdmitError> {
        let refused = Refused {
            source,
            to: None,
            from: None,
            metadata: None,
            dedupe,
        };
        self.keep_refused(refused, refusal).await
    }

    async fn keep_refused(
        &self,
        r: Refused,
        refusal: Refusal,
    ) -> Result<RecordOutcome, AdmitError> {
        let id = MessageId::new();
        let now = self.clock.now();
        let record = r.dedupe.map(|d| {
            let (status, response) = answer(&id, JobState::Rejected);
            IdempotencyRecord {
                scope: d.scope,
                key: d.key,
                request_hash: d.request_hash,
                status,
                response,
            }
        });
        let from = r
            .from
            .and_then(|f| SenderId::parse(&f).ok())
            .unwrap_or_else(|| self.default_from.clone());
        let message = RejectedMessage {
            id: id.clone(),
            to: r.to,
            from: from.as_str().to_string(),
            source: r.source,
            detail: format!("{}: {refusal}", refusal.code()),
            metadata: r.metadata,
            created_at: now,
        };
        match self.store.reject(message, record).await? {
            Acceptance::Stored => {
                telemetry::state_entered(JobState::Rejected, now, None);
                Ok(RecordOutcome::Rejected { id, refusal })
            }
            Acceptance::Replayed { .. } => Ok(RecordOutcome::Replayed),
            Acceptance::KeyReused => Err(Refusal::IdempotencyKeyReused.into()),
            // A rejected message goes to no one, so no list is consulted and none refuses it.
            Acceptance::Blocked(reason) => Err(Refusal::NumberBlocked {
                field: "to".into(),
                reason,
            }
            .into()),
        }
    }
}

/// What a dedupe key keeps for a record: the message it became and its status.
fn answer(id: &MessageId, status: JobState) -> (u16, String) {
    let body = serde_json::json!({"message_id": id.as_str(), "status": status.as_str()});
    (200, body.to_string())
}

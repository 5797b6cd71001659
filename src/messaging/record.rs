//! CRM records: a record a rule refuses is stored as a `rejected` message with the refusal's
//! code and reason, so it shows over the API and is written back, never dropped.

use super::{Admission, AdmitError, Admitted, Refusal, Submission};
use crate::{
    domain::{
        ids::MessageId,
        phone::{PhoneNumber, SenderId},
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

impl Admission {
    /// Admit a CRM record through [`Admission::submit`]; a refusal that settles the record is
    /// stored as a `rejected` message (with the dedupe key, so a redelivery stores nothing
    /// more). Only an unavailable store or dependency is an error: retrying may succeed.
    pub async fn submit_record(&self, submission: Submission) -> Result<RecordOutcome, AdmitError> {
        let kept = submission.clone();
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
                self.reject(kept, refusal).await
            }
            Err(e) => Err(e),
        }
    }

    async fn reject(&self, s: Submission, refusal: Refusal) -> Result<RecordOutcome, AdmitError> {
        let id = MessageId::new();
        let now = self.clock.now();
        let record = s.dedupe.map(|d| {
            let (status, response) = answer(&id, JobState::Rejected);
            IdempotencyRecord {
                scope: d.scope,
                key: d.key,
                request_hash: d.request_hash,
                status,
                response,
            }
        });
        let from = s
            .from
            .and_then(|f| SenderId::parse(&f).ok())
            .unwrap_or_else(|| self.default_from.clone());
        let message = RejectedMessage {
            id: id.clone(),
            to: PhoneNumber::parse(&s.to).ok(),
            from: from.as_str().to_string(),
            source: s.source,
            detail: format!("{}: {refusal}", refusal.code()),
            metadata: s.metadata,
            created_at: now,
        };
        match self.store.reject(message, record).await? {
            Acceptance::Stored => {
                telemetry::state_entered(JobState::Rejected, now);
                Ok(RecordOutcome::Rejected { id, refusal })
            }
            Acceptance::Replayed { .. } => Ok(RecordOutcome::Replayed),
            Acceptance::KeyReused => Err(Refusal::IdempotencyKeyReused.into()),
            // A rejected message goes to no one, so no list is consulted and none refuses it.
            Acceptance::Blocked(reason) => Err(Refusal::NumberBlocked {
                field: s.to_field,
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

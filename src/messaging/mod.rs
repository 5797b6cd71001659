//! The one admission path: a submission from the API, an OTP or a CRM record becomes a stored
//! message or a typed refusal. Every caller gets the same rules and the same codes.

mod checks;
mod otp;
mod record;
mod refusal;

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use chrono_tz::Tz;
use tokio::sync::Notify;
use tracing::Instrument;

pub use self::{
    checks::{compile, phone_number, plain_text, MAX_METADATA_BYTES, MAX_SCHEDULE_DAYS},
    otp::{CodeRequest, OtpSettings},
    record::RecordOutcome,
    refusal::Refusal,
};
use crate::{
    clock::Clock,
    domain::{
        idempotency::{judge_key, KeyUse},
        ids::MessageId,
        phone::{NumberPolicy, SenderId},
        source::Source,
        state::JobState,
        template::Rules,
    },
    links::LinkRules,
    numbers::NumberHistory,
    store::{Acceptance, Hygiene, IdempotencyRecord, NewMessage, Store, StoreError},
    telemetry,
};

/// What to send: a finished text, or a template with the values of its fields.
#[derive(Clone, Debug)]
pub enum Content {
    /// The text as it goes out.
    Body(String),
    /// Merge fields filled from `vars`; values are data, never template source.
    Template {
        /// The template source.
        source: String,
        /// Values for its fields: strings, numbers or booleans.
        vars: BTreeMap<String, serde_json::Value>,
        /// The zone `date` shows times in, and reads a CRM's shown local times in.
        time_zone: Tz,
    },
}

/// A key that makes a submission happen once: the API's `Idempotency-Key`, a CRM's event id.
#[derive(Clone, Debug)]
pub struct Dedupe {
    /// Whose key space (one per API key, or per CRM connection).
    pub scope: String,
    /// The key.
    pub key: String,
    /// Hash of the request, so the same key with another request is told apart.
    pub request_hash: String,
}

/// A message someone asks to send, fields still as they were given.
#[derive(Clone, Debug)]
pub struct Submission {
    /// Who asks.
    pub source: Source,
    /// The recipient, as typed.
    pub to: String,
    /// The name refusals give the recipient: `to` for the API, a CRM record's phone field.
    pub to_field: String,
    /// The text or template.
    pub content: Content,
    /// A sender id; the default when absent.
    pub from: Option<String>,
    /// RFC 3339 time to send at.
    pub send_at: Option<String>,
    /// Client data returned with the message.
    pub metadata: Option<serde_json::Value>,
    /// When the CRM last confirmed the number (YYYY-MM-DD): enables the cancellation-history check.
    pub number_confirmed_on: Option<String>,
    /// Why the CRM record says not to message it (its opt-out field is checked): refused as
    /// `number_blocked`.
    pub opted_out: Option<String>,
    /// Makes the submission happen once.
    pub dedupe: Option<Dedupe>,
    /// Not advertising (a reminder, a receipt): opted-out numbers still get it where the
    /// `[opt_outs]` policy exempts such messages.
    pub transactional: bool,
    /// Replace links by short links that count clicks; `[links] shorten` when absent.
    pub shorten_links: Option<bool>,
    /// RFC 3339 time the short links stop working; `[links] expire_after_days` when absent.
    pub links_expire_at: Option<String>,
    /// RFC 3339 time after which the message is not worth sending; none when absent.
    pub expires_at: Option<String>,
}

/// A submission that was accepted, now or before.
#[derive(Clone, Debug)]
pub enum Admitted {
    /// Stored now; `response` is what was recorded for replays.
    Stored {
        /// The stored message's id.
        id: MessageId,
        /// The status and body recorded with the dedupe key.
        response: (u16, String),
    },
    /// The dedupe key was seen with the same request: the original answer.
    Replayed {
        /// Its status.
        status: u16,
        /// Its body.
        response: String,
    },
}

/// Why a submission did not go through.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// A rule refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store could not answer; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the rules need, built once at start.
pub struct Admission {
    /// Where accepted messages go.
    pub store: Arc<dyn Store>,
    /// The cancellation-history lookup.
    pub history: Arc<dyn NumberHistory>,
    /// Woken when a job is accepted.
    pub wake: Arc<Notify>,
    /// How far ahead the dispatcher's next look at the queue reaches: a message due later is
    /// found by that look, so accepting it wakes nothing.
    pub wake_ahead: std::time::Duration,
    /// Who ordinary messages may go to.
    pub policy: NumberPolicy,
    /// The sender id when a submission names none.
    pub default_from: SenderId,
    /// The sender ids a submission may name (canonical forms); empty: any.
    pub senders: Vec<String>,
    /// Longest text, in characters.
    pub max_characters: usize,
    /// The list rules checked as each message is stored.
    pub hygiene: Hygiene,
    /// Which messages opted-out numbers still get.
    pub opt_outs: crate::config::OptOutsConfig,
    /// Which domains texts may link to, and how links are shortened.
    pub links: LinkRules,
    /// Send anyway when the history lookup fails (`numbers.history.on_error = "allow"`).
    pub allow_on_history_error: bool,
    /// One-time passwords.
    pub otp: OtpSettings,
    /// Time for schedules, expiry, cool-downs and the breaker.
    pub clock: Arc<dyn Clock>,
}

impl Admission {
    /// Admit a message: a replayed dedupe key is answered first, from what was stored, so rules
    /// or a lookup that changed since cannot refuse a request that was already accepted; then
    /// every rule; then one commit. `respond` makes the answer recorded with the dedupe key.
    pub async fn submit(
        &self,
        submission: Submission,
        respond: impl FnOnce(&NewMessage) -> (u16, String),
    ) -> Result<Admitted, AdmitError> {
        let started = Instant::now();
        if let Some(dedupe) = &submission.dedupe {
            if let Some(earlier) = self.store.idempotency(&dedupe.scope, &dedupe.key).await? {
                return replay(earlier, &dedupe.request_hash);
            }
        }
        let dedupe = submission.dedupe.clone();
        let to_field = submission.to_field.clone();
        let hygiene = Hygiene {
            honour_opt_outs: !(submission.transactional && self.opt_outs.exempt_transactional),
            ..self.hygiene
        };
        let message = self.check(submission).await?;
        let response = respond(&message);
        let record = dedupe.map(|d| IdempotencyRecord {
            scope: d.scope,
            key: d.key,
            request_hash: d.request_hash,
            status: response.0,
            response: response.1.clone(),
        });
        let id = message.id.clone();
        // A message due after the dispatcher's next look at the queue is found by that look;
        // waking it now would only have it find nothing due.
        let due_soon = message
            .send_at
            .is_none_or(|at| at <= self.clock.now() + self.wake_ahead);
        let span = tracing::info_span!("accept", message_id = %id);
        let accepted = self
            .store
            .accept(message, record, hygiene)
            .instrument(span)
            .await?;
        match accepted {
            Acceptance::Stored => {
                telemetry::accepted(started.elapsed().as_secs_f64());
                if due_soon {
                    self.wake.notify_one();
                }
                Ok(Admitted::Stored { id, response })
            }
            Acceptance::Replayed { status, response } => {
                Ok(Admitted::Replayed { status, response })
            }
            Acceptance::Blocked(reason) => Err(Refusal::NumberBlocked {
                field: to_field,
                reason: format!("not sent: {reason}"),
            }
            .into()),
            Acceptance::KeyReused => Err(Refusal::IdempotencyKeyReused.into()),
        }
    }

    /// Every rule but the lists (checked in the accepting commit), in the order a caller fixes
    /// them: recipient, text, length, sender, schedule, metadata, then the history lookup.
    async fn check(&self, s: Submission) -> Result<NewMessage, Refusal> {
        let now = self.clock.now();
        if let Some(reason) = s.opted_out {
            return Err(Refusal::NumberBlocked {
                field: s.to_field,
                reason: format!("not sent: {reason}"),
            });
        }
        let to = checks::recipient(&s.to, &s.to_field, &self.policy)?;
        let text_field = match s.content {
            Content::Body(_) => "body",
            Content::Template { .. } => "template",
        };
        let text = match s.content {
            Content::Body(body) => {
                checks::plain_text(&body, "body")?;
                body
            }
            Content::Template {
                source,
                vars,
                time_zone,
            } => {
                // The template first: a refused template is refused whatever the values hold.
                let template = checks::compile(&source, &Rules::default())?;
                let vars = checks::var_texts(&vars)?;
                checks::render(&template, &vars, time_zone, self.max_characters)?
            }
        };
        // Links are rewritten before the text is measured: segments count what is sent.
        let mut rewritten = checks::links(
            &self.links,
            text,
            s.shorten_links.unwrap_or(self.links.shorten_by_default),
            text_field,
            now,
        )?;
        let text = rewritten.text;
        let segmentation = checks::length(&text, "body", self.max_characters)?;
        let from = checks::sender(s.from.as_deref(), &self.default_from, &self.senders)?;
        let send_at = checks::send_at(s.send_at.as_deref(), now)?;
        // A link's life starts when its message goes out, not when it was scheduled.
        let expire_at = checks::links_expire_at(s.links_expire_at.as_deref(), send_at, now)?
            .or_else(|| {
                self.links
                    .expire_after
                    .map(|after| send_at.unwrap_or(now) + after)
            });
        if let Some(at) = expire_at {
            rewritten
                .links
                .iter_mut()
                .for_each(|l| l.expires_at = Some(at));
        }
        let expires_at = checks::expires_at(s.expires_at.as_deref(), send_at, now)?;
        checks::metadata(s.metadata.as_ref())?;
        checks::history(
            self.history.as_ref(),
            &to,
            s.number_confirmed_on.as_deref(),
            self.allow_on_history_error,
        )
        .await?;
        Ok(NewMessage {
            id: MessageId::new(),
            to,
            from: from.as_str().to_string(),
            body: text,
            segmentation,
            status: if send_at.is_some() {
                JobState::Scheduled
            } else {
                JobState::Queued
            },
            source: s.source,
            metadata: s.metadata,
            created_at: now,
            send_at,
            expires_at,
            links: rewritten.links,
        })
    }
}

/// The answer to a dedupe key seen before: the original response for the same request, a
/// refusal for another.
fn replay(earlier: IdempotencyRecord, request_hash: &str) -> Result<Admitted, AdmitError> {
    let stored = (
        earlier.request_hash.as_str(),
        (earlier.status, earlier.response.clone()),
    );
    match judge_key(Some(stored), request_hash) {
        KeyUse::Replay((status, response)) => Ok(Admitted::Replayed { status, response }),
        KeyUse::Reused | KeyUse::First => Err(Refusal::IdempotencyKeyReused.into()),
    }
}

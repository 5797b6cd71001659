//! How providers report back: delivery receipts and inbound messages, recorded through the store
//! whichever provider (or HTTP callback) brings them.
//!
//! A receipt can come before its message's id is known: a fast carrier reports delivery before
//! the `sent` that carries the id commits, or a part's receipt before the parts are recorded.
//! Such receipts are kept in the store and tried again (soon at first, then less often) until
//! they match, for a week; none is dropped on arrival.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::parts;
use crate::{
    clock::Clock,
    domain::{
        consent::{Consent, Keywords, Reading},
        ids::MessageId,
        phone::SenderId,
        source::Source,
    },
    store::{
        InboundPart, JoinedParts, KeptReceipt, NewReply, PartOutcome, PartReceipt, PartsKey,
        Receipt, ReceiptOutcome, ReplyRecord, Store, StoreResult, Unmatched,
    },
    telemetry,
};

/// How long a part of a long inbound message waits for the rest.
pub const PARTS_KEPT: chrono::Duration = chrono::Duration::minutes(10);
/// How long a receipt that matches no message is kept and tried again.
pub const KEEP_UNMATCHED: chrono::Duration = chrono::Duration::days(7);
/// Longest wait between two tries of a kept receipt.
const MAX_RETRY_WAIT: chrono::Duration = chrono::Duration::hours(1);
/// How often kept receipts due for a try are looked for.
const RETRY_POLL: Duration = Duration::from_secs(1);
/// Kept receipts tried per look.
const RETRY_BATCH: u32 = 256;

/// The provider event path, shared by providers' background work and their inbound routes.
#[derive(Clone)]
pub struct Events {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keywords: Keywords,
    connection_keywords: Arc<HashMap<String, Keywords>>,
}

impl Events {
    /// Events recorded in `store`, dated by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            keywords: Keywords::default(),
            connection_keywords: Arc::default(),
        }
    }

    /// The same, reading replies by `keywords`.
    pub fn with_keywords(self, keywords: Keywords) -> Self {
        Self { keywords, ..self }
    }

    /// Read replies to a CRM connection's messages by its own rules, by source name
    /// (`salesforce:prod`), where it has them.
    pub fn with_connection_keywords(self, keywords: HashMap<String, Keywords>) -> Self {
        Self {
            connection_keywords: Arc::new(keywords),
            ..self
        }
    }

    /// Apply delivery receipts in one commit; one for no known message is kept and tried again.
    pub async fn receipts(&self, receipts: Vec<Receipt>) -> StoreResult<Vec<ReceiptOutcome>> {
        let outcomes = self.apply(receipts.clone()).await?;
        let unmatched: Vec<Unmatched> = receipts
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, ReceiptOutcome::Unknown))
            .map(|(r, _)| Unmatched::Whole {
                provider_message_id: r.provider_message_id,
                status: r.status,
                detail: r.detail,
            })
            .collect();
        self.keep(unmatched).await?;
        Ok(outcomes)
    }

    /// Record as sent, with `provider_message_id`, a message waiting to be sent again after a
    /// send in doubt, once the provider names it (a callback): it is then not sent twice.
    pub async fn settle_doubt(
        &self,
        message_id: &MessageId,
        provider_message_id: &str,
    ) -> StoreResult<bool> {
        self.store
            .settle_doubt(message_id, provider_message_id, self.now())
            .await
    }

    /// Record the provider's ids for every part of a message sent in several, in order (a
    /// message sent whole needs none: its part receipt finds it by its provider id).
    pub async fn parts_sent(
        &self,
        message_id: &MessageId,
        part_ids: Vec<String>,
    ) -> StoreResult<()> {
        self.store.parts_sent(message_id, part_ids).await
    }

    /// Record part receipts; a message whose every part now has one takes their combined
    /// outcome. A receipt for a part not (yet) known is kept and tried again.
    pub async fn part_receipts(&self, receipts: Vec<PartReceipt>) -> StoreResult<()> {
        let unmatched = self.apply_parts(receipts).await?;
        self.keep(unmatched.into_iter().map(Unmatched::Part).collect())
            .await
    }

    /// Record a message a handset sent, linked to the latest message of its conversation; an
    /// opt-out or opt-in keyword (STOP, 停止, START…) changes the number's consent for the
    /// sender it answered in the same commit, and a request to stop inside a sentence is held
    /// for review.
    pub async fn inbound(&self, reply: NewReply) -> StoreResult<ReplyRecord> {
        let reading = self.reading(&reply).await?;
        self.inbound_read(reply, reading).await
    }

    /// How a reply reads: by the rules of the CRM connection whose message it answers, where
    /// that connection has its own and they read it otherwise (CANCEL, 解除); only then is the
    /// conversation looked up.
    async fn reading(&self, reply: &NewReply) -> StoreResult<Reading> {
        let reading = self.keywords.read(&reply.body);
        let flipped = Keywords {
            ambiguous_opt_out: !self.keywords.ambiguous_opt_out,
        };
        if self.connection_keywords.is_empty() || flipped.read(&reply.body) == reading {
            return Ok(reading);
        }
        let sender = canonical_sender(&reply.to);
        let source = self.store.conversation_source(&reply.from, &sender).await?;
        let keywords = match &source {
            Some(Source::Crm { connection, .. }) => self.connection_keywords.get(connection),
            _ => None,
        };
        Ok(keywords.unwrap_or(&self.keywords).read(&reply.body))
    }

    /// Record a reply as `inbound` does, read as its provider says (Twilio's `OptOutType`
    /// matches the keywords configured on its side, which tsunagi's list may not know).
    pub async fn inbound_read(
        &self,
        mut reply: NewReply,
        reading: Reading,
    ) -> StoreResult<ReplyRecord> {
        reply.to = canonical_sender(&reply.to);
        let record = match reading {
            Reading::Keyword(consent) => self.store.record_reply(reply, Some(consent)).await?,
            Reading::Plain => self.store.record_reply(reply, None).await?,
            Reading::Review => self.store.hold_reply(reply).await?,
        };
        let label = match reading {
            Reading::Keyword(Consent::OptOut) => "opt_out",
            Reading::Keyword(Consent::OptIn) => "opt_in",
            Reading::Review => "review",
            Reading::Plain => "none",
        };
        metrics::counter!("tsunagi_replies_total", "consent" => label).increment(1);
        match reading {
            Reading::Keyword(consent) => {
                tracing::info!(from = %record.from, ?consent, "consent changed by reply")
            }
            Reading::Review => {
                metrics::counter!("tsunagi_replies_held_for_review_total").increment(1);
                tracing::info!(from = %record.from, "a reply asking to stop held for review");
            }
            Reading::Plain => {}
        }
        Ok(record)
    }

    /// Keep one part of a long message a handset sent; all its parts once the last is in.
    /// A part waiting longer than `PARTS_KEPT` for the rest is given up.
    pub async fn inbound_part(&self, part: InboundPart) -> StoreResult<Option<JoinedParts>> {
        let forget_before = self.now() - PARTS_KEPT;
        self.store.inbound_part(part, forget_before).await
    }

    /// Forget the parts of a long inbound message once it is stored.
    pub async fn forget_inbound_parts(&self, key: &PartsKey) -> StoreResult<()> {
        self.store.forget_inbound_parts(key).await
    }

    /// Now, on the service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Try kept receipts again until `shutdown`.
    pub fn start(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let events = self.clone();
        tokio::spawn(async move {
            loop {
                let busy = match events.retry_kept().await {
                    Ok(tried) => tried == RETRY_BATCH as usize,
                    Err(e) => {
                        tracing::warn!(error = %e, "kept receipts not tried; retrying");
                        false
                    }
                };
                if !busy {
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        })
    }

    /// One try of the kept receipts that are due; how many were tried.
    pub async fn retry_kept(&self) -> StoreResult<usize> {
        let now = self.clock.now();
        let due = self.store.kept_receipts(now, RETRY_BATCH).await?;
        let tried = due.len();
        if due.is_empty() {
            return Ok(0);
        }
        let (wholes, part_receipts): (Vec<KeptReceipt>, Vec<KeptReceipt>) = due
            .into_iter()
            .partition(|k| matches!(k.receipt, Unmatched::Whole { .. }));
        let mut still = Vec::new();
        let mut matched = Vec::new();
        let receipts = wholes
            .iter()
            .filter_map(|k| match &k.receipt {
                Unmatched::Whole {
                    provider_message_id,
                    status,
                    detail,
                } => Some(Receipt {
                    message_id: None,
                    provider_message_id: provider_message_id.clone(),
                    status: *status,
                    detail: detail.clone(),
                }),
                Unmatched::Part(_) => None,
            })
            .collect();
        for (kept, outcome) in wholes.iter().zip(self.apply(receipts).await?) {
            match outcome {
                ReceiptOutcome::Unknown => still.push(kept),
                _ => matched.push(kept.id),
            }
        }
        let parts: Vec<PartReceipt> = part_receipts
            .iter()
            .filter_map(|k| match &k.receipt {
                Unmatched::Part(p) => Some(p.clone()),
                Unmatched::Whole { .. } => None,
            })
            .collect();
        let unknown = self.apply_parts(parts).await?;
        for kept in &part_receipts {
            match &kept.receipt {
                Unmatched::Part(p) if unknown.contains(p) => still.push(kept),
                _ => matched.push(kept.id),
            }
        }
        let mut retries = Vec::new();
        for kept in still {
            if now - kept.received_at > KEEP_UNMATCHED {
                tracing::warn!(
                    kept = kept.id,
                    "a receipt matched no message for a week; dropped"
                );
                metrics::counter!("tsunagi_receipts_unmatched_total", "outcome" => "dropped")
                    .increment(1);
                matched.push(kept.id);
            } else {
                retries.push((kept.id, now + retry_wait(kept.tries)));
            }
        }
        if !matched.is_empty() {
            self.store.forget_receipts(matched).await?;
        }
        if !retries.is_empty() {
            self.store.retry_receipts(retries).await?;
        }
        Ok(tried)
    }

    /// Apply whole-message receipts, logging each outcome.
    async fn apply(&self, receipts: Vec<Receipt>) -> StoreResult<Vec<ReceiptOutcome>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = self
            .store
            .apply_receipts(receipts, self.clock.now())
            .await?;
        for outcome in &outcomes {
            match outcome {
                ReceiptOutcome::Applied {
                    state,
                    created_at,
                    route,
                    ..
                } => telemetry::state_entered(*state, *created_at, route.as_deref()),
                ReceiptOutcome::Overtaken(id) => {
                    tracing::debug!(message_id = %id, "receipt for a message already final")
                }
                ReceiptOutcome::Unknown => {}
            }
        }
        Ok(outcomes)
    }

    /// Record part receipts and apply the messages they complete; the receipts that matched
    /// no part. A message sent whole records no parts, so a receipt no part knows is tried as
    /// one for a whole message by its provider id.
    async fn apply_parts(&self, receipts: Vec<PartReceipt>) -> StoreResult<Vec<PartReceipt>> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = self.store.part_receipts(receipts.clone()).await?;
        let mut complete = Vec::new();
        let mut unknown = Vec::new();
        for (receipt, outcome) in receipts.into_iter().zip(outcomes) {
            match outcome {
                PartOutcome::Recorded {
                    message_id,
                    first_part,
                    parts,
                } => {
                    if let Some((status, detail)) = parts::combined(&parts) {
                        complete.push(Receipt {
                            message_id: Some(message_id),
                            provider_message_id: first_part,
                            status,
                            detail,
                        });
                    }
                }
                PartOutcome::Unknown => unknown.push(receipt),
            }
        }
        self.apply(complete).await?;
        if unknown.is_empty() {
            return Ok(unknown);
        }
        let wholes = unknown
            .iter()
            .map(|p| Receipt {
                message_id: None,
                provider_message_id: p.part_id.clone(),
                status: p.status,
                detail: p.detail.clone(),
            })
            .collect();
        let outcomes = self.apply(wholes).await?;
        Ok(unknown
            .into_iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, ReceiptOutcome::Unknown))
            .map(|(p, _)| p)
            .collect())
    }

    /// Keep receipts that matched nothing, to try again.
    async fn keep(&self, unmatched: Vec<Unmatched>) -> StoreResult<()> {
        if unmatched.is_empty() {
            return Ok(());
        }
        tracing::info!(
            receipts = unmatched.len(),
            "receipts for no known message yet; kept to try again"
        );
        metrics::counter!("tsunagi_receipts_unmatched_total", "outcome" => "kept")
            .increment(unmatched.len() as u64);
        self.store.keep_receipts(unmatched, self.clock.now()).await
    }
}

/// The sender id a reply was sent to, in the form messages store it: carriers give numbers
/// without the '+' (SMPP's international TON), and the same short code or name as sent.
fn canonical_sender(to: &str) -> String {
    let to = to.trim();
    let international =
        to.len() >= 8 && !to.starts_with('0') && to.bytes().all(|b| b.is_ascii_digit());
    let candidate = if international {
        format!("+{to}")
    } else {
        to.to_string()
    };
    SenderId::parse(&candidate)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| to.to_string())
}

/// The wait before the next try of a receipt tried `tries` times: a second at first (the
/// usual case is a commit a moment behind), doubling up to an hour.
fn retry_wait(tries: u32) -> chrono::Duration {
    chrono::Duration::seconds(1i64 << tries.min(12)).min(MAX_RETRY_WAIT)
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::*;
    use crate::{
        clock::ShiftedClock,
        domain::hygiene::Hygiene,
        domain::{phone::PhoneNumber, segment::Segmentation, source::Source, state::JobState},
        store::{NewMessage, ReceiptStatus, SqliteStore, Transition},
    };

    /// Events on a fresh store with a message claimed; the directory must outlive them.
    async fn claimed() -> (Events, Arc<ShiftedClock>, MessageId, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("e.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        let clock = Arc::new(ShiftedClock::default());
        let id = MessageId::new();
        let m = NewMessage {
            id: id.clone(),
            to: PhoneNumber::parse("09012345678").unwrap(),
            from: "TSUNAGI".into(),
            body: "hello".into(),
            segmentation: Segmentation::of("hello"),
            status: JobState::Queued,
            source: Source::Api,
            metadata: None,
            created_at: clock.now(),
            send_at: None,
            expires_at: None,
            links: Vec::new(),
        };
        store.accept(m, None, Hygiene::default()).await.unwrap();
        store
            .claim("w", 1, StdDuration::from_secs(60), clock.now())
            .await
            .unwrap();
        (Events::new(store, clock.clone()), clock, id, dir)
    }

    async fn sent(events: &Events, id: &MessageId, provider_id: &str) {
        let t = Transition {
            message_id: id.clone(),
            to: JobState::Sent,
            detail: None,
            provider_message_id: Some(provider_id.into()),
            retry_at: None,
            refund_attempt: false,
            route: None,
            progress: None,
        };
        events.store.transition(t, events.now()).await.unwrap();
    }

    async fn state(events: &Events, id: &MessageId) -> JobState {
        events.store.message(id).await.unwrap().unwrap().status
    }

    #[tokio::test]
    async fn a_receipt_that_beats_its_sent_is_applied_once_the_message_has_its_id() {
        let (events, clock, id, _dir) = claimed().await;
        let early = Receipt {
            message_id: None,
            provider_message_id: "SM-1".into(),
            status: ReceiptStatus::Delivered,
            detail: None,
        };
        let outcomes = events.receipts(vec![early]).await.unwrap();
        assert_eq!(outcomes, [ReceiptOutcome::Unknown]);
        assert_eq!(events.store.kept_receipt_count().await.unwrap(), 1);
        assert_eq!(events.retry_kept().await.unwrap(), 1, "tried at once");
        assert_eq!(state(&events, &id).await, JobState::Sending);
        sent(&events, &id, "SM-1").await;
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(events.retry_kept().await.unwrap(), 1);
        assert_eq!(state(&events, &id).await, JobState::Delivered);
        assert_eq!(events.store.kept_receipt_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_kept_receipt_that_still_matches_nothing_is_tried_less_often_then_dropped() {
        let (events, clock, _id, _dir) = claimed().await;
        let stray = Receipt {
            message_id: None,
            provider_message_id: "SM-stray".into(),
            status: ReceiptStatus::Delivered,
            detail: None,
        };
        events.receipts(vec![stray]).await.unwrap();
        assert_eq!(events.retry_kept().await.unwrap(), 1);
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(events.retry_kept().await.unwrap(), 1);
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(
            events.retry_kept().await.unwrap(),
            0,
            "the second wait is longer"
        );
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(events.retry_kept().await.unwrap(), 1);
        clock.advance(KEEP_UNMATCHED);
        assert_eq!(events.retry_kept().await.unwrap(), 1);
        assert_eq!(events.store.kept_receipt_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_long_message_is_final_once_every_part_has_its_receipt() {
        let (events, clock, id, _dir) = claimed().await;
        let part = |id: &str, status| PartReceipt {
            part_id: id.into(),
            status,
            detail: None,
        };
        // The second part's receipt comes before the parts are recorded.
        events
            .part_receipts(vec![part("b", ReceiptStatus::Delivered)])
            .await
            .unwrap();
        events
            .parts_sent(&id, vec!["a".into(), "b".into()])
            .await
            .unwrap();
        sent(&events, &id, "a").await;
        events
            .part_receipts(vec![part("a", ReceiptStatus::Delivered)])
            .await
            .unwrap();
        assert_eq!(state(&events, &id).await, JobState::Sent, "b is not in yet");
        clock.advance(chrono::Duration::seconds(1));
        events.retry_kept().await.unwrap();
        assert_eq!(state(&events, &id).await, JobState::Delivered);
    }

    #[tokio::test]
    async fn a_part_receipt_for_a_message_sent_whole_finds_it_by_its_provider_id() {
        let (events, clock, id, _dir) = claimed().await;
        let receipt = PartReceipt {
            part_id: "only".into(),
            status: ReceiptStatus::Delivered,
            detail: None,
        };
        events.part_receipts(vec![receipt.clone()]).await.unwrap();
        assert_eq!(
            events.store.kept_receipt_count().await.unwrap(),
            1,
            "kept until sent"
        );
        sent(&events, &id, "only").await;
        clock.advance(chrono::Duration::seconds(1));
        events.retry_kept().await.unwrap();
        assert_eq!(state(&events, &id).await, JobState::Delivered);
        assert_eq!(events.store.kept_receipt_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_undelivered_part_makes_the_message_undelivered_and_names_the_part() {
        let (events, _clock, id, _dir) = claimed().await;
        events
            .parts_sent(&id, vec!["a".into(), "b".into()])
            .await
            .unwrap();
        sent(&events, &id, "a").await;
        events
            .part_receipts(vec![
                PartReceipt {
                    part_id: "b".into(),
                    status: ReceiptStatus::Undelivered,
                    detail: Some("stat:EXPIRED".into()),
                },
                PartReceipt {
                    part_id: "a".into(),
                    status: ReceiptStatus::Delivered,
                    detail: None,
                },
            ])
            .await
            .unwrap();
        let m = events.store.message(&id).await.unwrap().unwrap();
        assert_eq!(m.status, JobState::Undelivered);
        assert_eq!(
            m.status_detail.as_deref(),
            Some("part 2 of 2: stat:EXPIRED")
        );
    }

    #[test]
    fn a_reply_names_its_sender_as_messages_store_it() {
        assert_eq!(canonical_sender("819012345678"), "+819012345678");
        assert_eq!(canonical_sender("+819012345678"), "+819012345678");
        assert_eq!(canonical_sender("090-1234-5678"), "+819012345678");
        assert_eq!(canonical_sender("0005012345"), "0005012345");
        assert_eq!(canonical_sender("TSUNAGI"), "TSUNAGI");
        assert_eq!(canonical_sender("not a sender!"), "not a sender!");
    }

    #[test]
    fn kept_receipts_are_tried_soon_then_at_most_hourly() {
        assert_eq!(retry_wait(0), chrono::Duration::seconds(1));
        assert_eq!(retry_wait(3), chrono::Duration::seconds(8));
        assert_eq!(retry_wait(40), MAX_RETRY_WAIT);
    }
}

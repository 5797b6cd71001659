//! What every backend must do, as checks that take a fresh store. A backend runs them all with
//! one line in its tests, `contract_tests!(fresh);`, one named test per check.

use std::{sync::Arc, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::{
    domain::hygiene::Hygiene,
    domain::{
        consent::Consent,
        ids::{ListEntryId, MessageId, VerificationId},
        phone::PhoneNumber,
        segment::{Encoding, Segmentation},
        source::Source,
        state::JobState,
    },
    otp::{
        check::{CheckOutcome, VerificationState},
        rules::OtpLimits,
    },
};

/// One `#[tokio::test]` per check against the stores `$fresh().await` opens; it returns the
/// store and whatever must live as long as it (a temporary directory, a test database).
///
/// `contract_tests!(optional fresh)` is for a backend that needs a server the machine may lack:
/// there `$fresh().await` returns an `Option`, and a check given `None` passes without running
/// (`fresh` says why on stderr).
macro_rules! contract_tests {
    (optional $fresh:path) => {
        $crate::store::contract::contract_tests!(@checks [optional] $fresh);
    };
    ($fresh:path) => {
        $crate::store::contract::contract_tests!(@checks [required] $fresh);
    };
    (@checks $mode:tt $fresh:path) => {
        $crate::store::contract::contract_tests!(@each $mode $fresh;
            an_accepted_message_reads_back_as_accepted,
            a_crm_source_reads_back_with_its_record,
            the_same_key_and_body_replay_the_first_answer,
            a_key_reused_with_another_body_is_refused,
            a_used_key_is_looked_up_in_its_scope_only,
            the_lists_refuse_denied_and_unlisted_recipients,
            messages_are_listed_newest_first_by_status_and_page,
            only_a_scheduled_message_can_be_canceled,
            purged_idempotency_keys_can_be_used_again,
            a_reply_is_linked_to_the_latest_message_of_the_conversation,
            a_conversations_source_is_its_latest_messages,
            a_stop_reply_opts_the_number_out_of_its_sender_until_it_opts_back_in,
            a_reply_delivered_twice_under_one_provider_id_is_stored_once,
            an_opt_out_for_every_sender_refuses_them_all_and_lists_newest_first,
            a_reply_held_for_review_is_open_until_settled_once,
            a_leased_job_is_not_claimed_again_while_its_worker_renews,
            an_expired_lease_is_claimed_by_another_worker,
            a_send_in_doubt_is_claimed_again_with_its_route_and_progress,
            a_send_in_doubt_the_provider_names_is_settled_as_sent_once,
            claims_take_due_jobs_oldest_first_up_to_the_limit,
            a_claimed_job_carries_its_messages_expiry,
            a_scheduled_job_waits_for_its_time,
            a_leased_job_is_not_what_falls_due_next,
            a_long_reply_joins_once_every_part_is_in_whatever_their_order,
            parts_of_a_long_reply_are_forgotten_when_old_or_once_stored,
            a_transition_the_state_does_not_allow_changes_nothing,
            transitions_are_logged_as_events_with_their_details,
            a_retry_is_due_again_at_its_time,
            the_queue_counts_waiting_and_leased_jobs_until_they_leave,
            a_repeated_sandbox_send_keeps_the_first_id,
            due_receipts_are_reported_once_and_later_ones_wait,
            receipts_apply_once_by_either_id,
            a_send_overtaken_by_its_receipt_still_records_its_route,
            part_receipts_answer_with_every_part_of_their_message,
            kept_receipts_come_back_when_due_until_forgotten,
            a_handset_inbox_shows_delivered_texts_newest_first,
            a_started_verification_reads_back_pending_with_its_sms,
            a_new_code_cancels_the_pending_one,
            a_resend_within_the_cooldown_is_refused_and_stores_nothing,
            window_limits_count_codes_per_number_ip_and_device,
            listed_numbers_are_refused_or_skip_the_limits,
            a_burst_to_one_block_pauses_the_block,
            a_range_whose_codes_are_not_verified_is_paused,
            wrong_codes_count_down_to_exhaustion,
            the_right_code_approves_once_and_counts_as_converted,
            an_expired_or_unknown_code_is_refused_without_counting,
            listing_a_number_again_keeps_its_id_and_updates_its_reason,
            an_entry_is_found_and_removed_by_id_or_by_number,
            a_list_is_read_newest_first_up_to_the_limit,
            the_outbox_holds_changes_and_replies_of_crm_messages_only,
            written_back_entries_leave_the_outbox,
            outbox_entries_are_read_per_connection,
            one_owner_at_a_time_holds_a_connections_writeback_lease,
            a_released_writeback_lease_is_taken_at_once,
            a_poll_start_mark_is_kept_from_the_first_ask,
            a_poll_id_mark_only_rises,
            a_records_message_is_unwritten_until_written_back,
            a_refused_writeback_is_shown_on_its_message,
            dry_run_calls_are_listed_newest_first_per_connection_and_kept_a_week,
            a_kintone_notification_keeps_its_first_answer_per_connection,
            kintone_notifications_are_purged_after_30_days,
            own_writes_are_recognised_per_connection_record_and_revision_for_a_week,
            the_latest_known_revision_of_a_record_is_kept_per_connection,
            a_rejected_record_reads_back_with_its_reason_and_feeds_the_outbox,
            a_rejected_record_without_a_number_is_kept,
            a_rejected_record_is_kept_once_per_dedupe_key,
            a_messages_links_lead_to_their_urls_and_its_clicks_are_summed,
            the_first_click_on_a_crm_message_enters_the_outbox_once,
            usage_counts_final_messages_per_quarter_hour_and_state,
            delivery_facts_page_through_finished_messages_with_clicks_replies_and_opt_outs,
            api_keys_are_found_by_hash_and_counted,
            an_api_key_hash_is_kept_once,
            the_secret_is_made_once,
            a_kept_refresh_token_is_replaced_per_connection,
            a_fresh_store_is_ready,
        );
    };
    (@each [required] $fresh:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (store, _keep) = $fresh().await;
                $crate::store::contract::$check(store).await;
            }
        )*
    };
    (@each [optional] $fresh:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some((store, _keep)) = $fresh().await else {
                    return;
                };
                $crate::store::contract::$check(store).await;
            }
        )*
    };
}
pub(crate) use contract_tests;

/// Now, at the millisecond precision stores keep.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

/// A Japanese mobile number ending in `last`.
fn number(last: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("090-1234-{last:04}")).unwrap()
}

fn crm() -> Source {
    Source::Crm {
        connection: "salesforce:prod".into(),
        record: "003xx000004TmiQAAS".into(),
    }
}

fn message_at(source: Source, to: PhoneNumber, at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        to,
        from: "TSUNAGI".into(),
        body: "hello".into(),
        segmentation: Segmentation::of("hello"),
        status: JobState::Queued,
        source,
        metadata: None,
        created_at: at,
        send_at: None,
        expires_at: None,
        links: Vec::new(),
    }
}

fn message(source: Source) -> NewMessage {
    message_at(source, number(5678), now())
}

fn scheduled(at: DateTime<Utc>, send_at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        status: JobState::Scheduled,
        send_at: Some(send_at),
        ..message_at(Source::Api, number(5678), at)
    }
}

fn to(id: &MessageId, state: JobState) -> Transition {
    Transition {
        message_id: id.clone(),
        to: state,
        detail: None,
        provider_message_id: None,
        retry_at: None,
        refund_attempt: false,
        route: None,
        progress: None,
    }
}

fn key(scope: &str, hash: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: scope.into(),
        key: "order-1042".into(),
        request_hash: hash.into(),
        status: 202,
        response: format!("{{\"for\":\"{hash}\"}}"),
    }
}

async fn accept(store: &dyn Store, m: &NewMessage) {
    let accepted = store
        .accept(m.clone(), None, Hygiene::default())
        .await
        .unwrap();
    assert_eq!(accepted, Acceptance::Stored);
}

async fn status(store: &dyn Store, id: &MessageId) -> JobState {
    store.message(id).await.unwrap().unwrap().status
}

/// Accept `m`, claim it and record it sent.
async fn sent(store: &dyn Store, m: &NewMessage) {
    accept(store, m).await;
    let claimed = store
        .claim("w", 1, StdDuration::from_secs(60), m.created_at)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .transition(to(&m.id, JobState::Sent), m.created_at)
        .await
        .unwrap()
        .unwrap();
}

/// Limits that stay out of the way unless a check turns one on.
fn lax() -> OtpLimits {
    OtpLimits {
        cooldown_seconds: 0,
        per_number: 100,
        per_ip: 100,
        per_device: 100,
        window_seconds: 600,
        pumping_window_seconds: 3600,
        pumping_grace_seconds: 120,
        pumping_min_sends: 1000,
        pumping_min_conversion: 0.3,
        pumping_block_seconds: 43200,
        burst_max_sends: 0,
        burst_window_seconds: 60,
    }
}

/// The code every verification here is sent (its "hash").
const CODE: &[u8] = b"483920";

fn verification(to: PhoneNumber, at: DateTime<Utc>) -> NewVerification {
    NewVerification {
        id: VerificationId::new(),
        code_hash: CODE.to_vec(),
        prefix: to.national_prefix(4),
        burst_prefix: to.burst_prefix().to_string(),
        max_checks: 3,
        expires_at: at + Duration::minutes(5),
        client_ip: None,
        device_id: None,
        created_at: at,
        message: message_at(Source::Otp, to, at),
    }
}

async fn start(store: &dyn Store, v: &NewVerification, limits: &OtpLimits) -> OtpStart {
    store
        .otp_start(v.clone(), limits.clone(), Hygiene::default())
        .await
        .unwrap()
}

async fn check(store: &dyn Store, id: &VerificationId, code: &'static [u8]) -> CheckOutcome {
    check_at(store, id, code, now()).await
}

async fn check_at(
    store: &dyn Store,
    id: &VerificationId,
    code: &'static [u8],
    at: DateTime<Utc>,
) -> CheckOutcome {
    store
        .otp_check(id, Box::new(move |stored| stored == code), at)
        .await
        .unwrap()
}

fn limited(start: OtpStart) -> (String, i64, bool) {
    match start {
        OtpStart::Limited {
            reason,
            retry_after,
            tripped,
        } => (reason, retry_after, tripped),
        other => panic!("not limited: {other:?}"),
    }
}

// Messages.

/// Every field of an accepted message reads back, with acceptance as its first event.
pub async fn an_accepted_message_reads_back_as_accepted(store: Arc<dyn Store>) {
    let at = now();
    let m = NewMessage {
        body: "ご予約は12月1日です".into(),
        segmentation: Segmentation::of("ご予約は12月1日です"),
        metadata: Some(serde_json::json!({"order": 1042})),
        ..scheduled(at, at + Duration::hours(1))
    };
    accept(store.as_ref(), &m).await;
    let got = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(got.id, m.id);
    assert_eq!(got.to, Some(m.to.clone()));
    assert_eq!(got.from, "TSUNAGI");
    assert_eq!((got.status, got.status_detail), (JobState::Scheduled, None));
    assert_eq!(got.encoding, Encoding::Ucs2);
    assert_eq!((got.characters, got.segments), (11, 1));
    assert_eq!(got.source, Source::Api);
    assert_eq!(got.metadata, m.metadata);
    assert_eq!((got.created_at, got.send_at), (at, m.send_at));
    let events: Vec<_> = got.events.iter().map(|e| (e.status, e.at)).collect();
    assert_eq!(events, [(JobState::Scheduled, at)]);
    assert!(got.replies.is_empty());
    assert!(store.message(&MessageId::new()).await.unwrap().is_none());
}

/// A CRM source keeps its connection and record.
pub async fn a_crm_source_reads_back_with_its_record(store: Arc<dyn Store>) {
    let m = message(crm());
    accept(store.as_ref(), &m).await;
    assert_eq!(store.message(&m.id).await.unwrap().unwrap().source, crm());
    let listed = store
        .messages(ListQuery {
            status: None,
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(listed[0].source, crm());
}

/// The same key with the same body answers what it answered first, and stores nothing more;
/// keys are scoped.
pub async fn a_used_key_is_looked_up_in_its_scope_only(store: Arc<dyn Store>) {
    assert!(store
        .idempotency("a", "order-1042")
        .await
        .unwrap()
        .is_none());
    store
        .accept(
            message(Source::Api),
            Some(key("a", "h1")),
            Hygiene::default(),
        )
        .await
        .unwrap();
    let found = store.idempotency("a", "order-1042").await.unwrap().unwrap();
    assert_eq!(
        (
            found.request_hash.as_str(),
            found.status,
            found.response.as_str()
        ),
        ("h1", 202, "{\"for\":\"h1\"}")
    );
    assert!(store
        .idempotency("b", "order-1042")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .idempotency("a", "order-1043")
        .await
        .unwrap()
        .is_none());
}

pub async fn the_same_key_and_body_replay_the_first_answer(store: Arc<dyn Store>) {
    let first = message(Source::Api);
    let stored = store
        .accept(first.clone(), Some(key("a", "h1")), Hygiene::default())
        .await
        .unwrap();
    assert_eq!(stored, Acceptance::Stored);
    let again = store
        .accept(
            message(Source::Api),
            Some(key("a", "h1")),
            Hygiene::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        Acceptance::Replayed {
            status: 202,
            response: "{\"for\":\"h1\"}".into(),
        }
    );
    let other_scope = store
        .accept(
            message(Source::Api),
            Some(key("b", "h1")),
            Hygiene::default(),
        )
        .await
        .unwrap();
    assert_eq!(other_scope, Acceptance::Stored);
    let all = store
        .messages(ListQuery {
            status: None,
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

/// The same key with another body is refused and stores nothing.
pub async fn a_key_reused_with_another_body_is_refused(store: Arc<dyn Store>) {
    store
        .accept(
            message(Source::Api),
            Some(key("a", "h1")),
            Hygiene::default(),
        )
        .await
        .unwrap();
    let other = message(Source::Api);
    let reused = store
        .accept(other.clone(), Some(key("a", "h2")), Hygiene::default())
        .await
        .unwrap();
    assert_eq!(reused, Acceptance::KeyReused);
    assert!(store.message(&other.id).await.unwrap().is_none());
}

/// A denied number is refused; with only the allow list receiving, so is an unlisted one.
pub async fn the_lists_refuse_denied_and_unlisted_recipients(store: Arc<dyn Store>) {
    store
        .list_add(NumberList::Deny, &number(1), None)
        .await
        .unwrap();
    store
        .list_add(NumberList::Allow, &number(2), None)
        .await
        .unwrap();
    let only = Hygiene {
        allow_list_only: true,
        ..Hygiene::default()
    };
    let denied = message_at(Source::Api, number(1), now());
    let refused = store
        .accept(denied.clone(), None, Hygiene::default())
        .await
        .unwrap();
    assert_eq!(
        refused,
        Acceptance::Blocked("the number is on the deny list".into())
    );
    assert!(store.message(&denied.id).await.unwrap().is_none());
    let unlisted = store
        .accept(message_at(Source::Api, number(3), now()), None, only)
        .await
        .unwrap();
    assert!(matches!(unlisted, Acceptance::Blocked(r) if r.contains("allow_list_only")));
    let allowed = store
        .accept(message_at(Source::Api, number(2), now()), None, only)
        .await
        .unwrap();
    assert_eq!(allowed, Acceptance::Stored);
}

/// The list is newest first, filtered by state and paged by `seq`.
pub async fn messages_are_listed_newest_first_by_status_and_page(store: Arc<dyn Store>) {
    let at = now();
    let (a, b) = (message(Source::Api), message(Source::Api));
    let c = scheduled(at, at + Duration::hours(1));
    for m in [&a, &b, &c] {
        accept(store.as_ref(), m).await;
    }
    let page = |status, limit, before| ListQuery {
        status,
        limit,
        before,
    };
    let first = store.messages(page(None, 2, None)).await.unwrap();
    let ids: Vec<_> = first.iter().map(|m| &m.id).collect();
    assert_eq!(ids, [&c.id, &b.id]);
    assert!(first.iter().all(|m| m.events.is_empty()));
    let rest = store
        .messages(page(None, 2, Some(first[1].seq)))
        .await
        .unwrap();
    let ids: Vec<_> = rest.iter().map(|m| &m.id).collect();
    assert_eq!(ids, [&a.id]);
    let waiting = store
        .messages(page(Some(JobState::Scheduled), 10, None))
        .await
        .unwrap();
    let ids: Vec<_> = waiting.iter().map(|m| &m.id).collect();
    assert_eq!(ids, [&c.id]);
}

/// Canceling applies to a scheduled message only, and takes it out of the queue.
pub async fn only_a_scheduled_message_can_be_canceled(store: Arc<dyn Store>) {
    let at = now();
    let later = scheduled(at, at + Duration::hours(1));
    accept(store.as_ref(), &later).await;
    assert_eq!(
        store.cancel(&later.id, at).await.unwrap(),
        CancelOutcome::Canceled
    );
    let got = store.message(&later.id).await.unwrap().unwrap();
    assert_eq!(got.status, JobState::Canceled);
    assert_eq!(
        got.events.last().unwrap().detail.as_deref(),
        Some("canceled by the client")
    );
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    assert_eq!(
        store.cancel(&later.id, at).await.unwrap(),
        CancelOutcome::NotCancelable(JobState::Canceled)
    );
    let queued = message(Source::Api);
    accept(store.as_ref(), &queued).await;
    store
        .claim("w", 1, StdDuration::from_secs(60), queued.created_at)
        .await
        .unwrap();
    assert_eq!(
        store.cancel(&queued.id, at).await.unwrap(),
        CancelOutcome::NotCancelable(JobState::Sending)
    );
    assert_eq!(
        store.cancel(&MessageId::new(), at).await.unwrap(),
        CancelOutcome::NotFound
    );
}

/// Keys older than the purge are forgotten; newer ones stay.
pub async fn purged_idempotency_keys_can_be_used_again(store: Arc<dyn Store>) {
    let at = now();
    store
        .accept(
            message_at(Source::Api, number(1), at),
            Some(key("a", "h1")),
            Hygiene::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.purge_idempotency(at).await.unwrap(), 0);
    assert_eq!(
        store
            .purge_idempotency(at + Duration::milliseconds(1))
            .await
            .unwrap(),
        1
    );
    let again = store
        .accept(
            message(Source::Api),
            Some(key("a", "h2")),
            Hygiene::default(),
        )
        .await
        .unwrap();
    assert_eq!(again, Acceptance::Stored);
}

/// A reply belongs to the latest message from its sender id to its handset; one that matches
/// none is kept unlinked.
pub async fn a_reply_is_linked_to_the_latest_message_of_the_conversation(store: Arc<dyn Store>) {
    let (older, newer) = (message(Source::Api), message(Source::Api));
    accept(store.as_ref(), &older).await;
    accept(store.as_ref(), &newer).await;
    let at = now();
    let reply = store
        .record_reply(
            NewReply {
                from: newer.to.clone(),
                to: "TSUNAGI".into(),
                body: "はい".into(),
                at,
                provider_id: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(reply.message_id.as_ref(), Some(&newer.id));
    let got = store.message(&newer.id).await.unwrap().unwrap();
    let replies: Vec<_> = got
        .replies
        .iter()
        .map(|r| (r.from.clone(), r.to.as_str(), r.body.as_str(), r.at))
        .collect();
    assert_eq!(replies, [(newer.to.clone(), "TSUNAGI", "はい", at)]);
    assert!(store
        .message(&older.id)
        .await
        .unwrap()
        .unwrap()
        .replies
        .is_empty());
    let stray = store
        .record_reply(
            NewReply {
                from: number(9),
                to: "TSUNAGI".into(),
                body: "?".into(),
                at,
                provider_id: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(stray.message_id, None);
}

/// The conversation a reply would answer is the latest message from the sender to the number.
pub async fn a_conversations_source_is_its_latest_messages(store: Arc<dyn Store>) {
    let s = store.as_ref();
    assert_eq!(
        s.conversation_source(&number(5678), "TSUNAGI")
            .await
            .unwrap(),
        None
    );
    accept(s, &message(Source::Api)).await;
    accept(s, &message(crm())).await;
    assert_eq!(
        s.conversation_source(&number(5678), "TSUNAGI")
            .await
            .unwrap(),
        Some(crm())
    );
    accept(s, &message(Source::Api)).await;
    assert_eq!(
        s.conversation_source(&number(5678), "TSUNAGI")
            .await
            .unwrap(),
        Some(Source::Api)
    );
    assert_eq!(
        s.conversation_source(&number(1), "TSUNAGI").await.unwrap(),
        None
    );
    assert_eq!(
        s.conversation_source(&number(5678), "OTHER").await.unwrap(),
        None
    );
}

// The queue.

/// A leased job stays with its worker until the lease is released, then goes out again as the
/// next attempt.
pub async fn a_leased_job_is_not_claimed_again_while_its_worker_renews(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    accept(store.as_ref(), &m).await;
    let at = now();
    let lease = StdDuration::from_secs(10);
    let first = store.claim("a", 10, lease, at).await.unwrap();
    assert_eq!((first.len(), first[0].attempt), (1, 1));
    assert!(store.claim("b", 10, lease, at).await.unwrap().is_empty());
    // Worker a lives on and renews: past the first lease, its job is still its own.
    let renewed = store
        .renew_leases("a", at + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    assert_eq!(
        store.renew_leases("b", at).await.unwrap(),
        0,
        "b holds none"
    );
    let later = at + Duration::seconds(20);
    assert!(store.claim("b", 10, lease, later).await.unwrap().is_empty());
    // Worker a dies: once the renewed lease runs out, b takes the job over.
    let taken = store
        .claim("b", 10, lease, at + Duration::seconds(31))
        .await
        .unwrap();
    assert_eq!((taken.len(), taken[0].attempt), (1, 2));
    // A job that left the queue is no longer renewed.
    store
        .transition(to(&m.id, JobState::Sent), at + Duration::seconds(32))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .renew_leases("b", at + Duration::seconds(60))
            .await
            .unwrap(),
        0
    );
}

/// A lease that ran out lets another worker take the job, in doubt (the first worker may have
/// sent it), and its `sending` event says so.
pub async fn a_send_in_doubt_is_claimed_again_with_its_route_and_progress(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    accept(store.as_ref(), &m).await;
    let at = now();
    let lease = StdDuration::from_secs(60);
    let first = store.claim("w", 1, lease, at).await.unwrap();
    assert_eq!(
        (
            first[0].in_doubt_on.as_deref(),
            first[0].progress.as_deref()
        ),
        (None, None)
    );
    let in_doubt = Transition {
        route: Some("smpp-a".into()),
        progress: Some("{\"reference\":7}".into()),
        ..to(&m.id, JobState::Queued)
    };
    store.transition(in_doubt, at).await.unwrap().unwrap();
    // Waiting for the route (no attempt spent) says nothing of the progress: it is kept.
    let again = store.claim("w", 1, lease, at).await.unwrap();
    assert_eq!(again[0].in_doubt_on.as_deref(), Some("smpp-a"));
    assert_eq!(again[0].progress.as_deref(), Some("{\"reference\":7}"));
    let waiting = Transition {
        refund_attempt: true,
        ..to(&m.id, JobState::Queued)
    };
    store.transition(waiting, at).await.unwrap().unwrap();
    let third = store.claim("w", 1, lease, at).await.unwrap();
    assert_eq!(third[0].in_doubt_on.as_deref(), Some("smpp-a"));
    assert_eq!(third[0].progress.as_deref(), Some("{\"reference\":7}"));
    let sent = Transition {
        provider_message_id: Some("p-1".into()),
        ..to(&m.id, JobState::Sent)
    };
    store.transition(sent, at).await.unwrap().unwrap();
    let read = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(read.status, JobState::Sent);
}

/// A message waiting in doubt is settled as sent when the provider names it: it leaves the
/// queue with the provider's id; one not in doubt, or settled already, is left alone.
pub async fn a_send_in_doubt_the_provider_names_is_settled_as_sent_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (doubt, plain) = (message(Source::Api), message(Source::Api));
    accept(s, &doubt).await;
    accept(s, &plain).await;
    let at = now();
    let lease = StdDuration::from_secs(60);
    assert_eq!(s.claim("w", 2, lease, at).await.unwrap().len(), 2);
    let later = at + Duration::seconds(30);
    let in_doubt = Transition {
        route: Some("twilio".into()),
        retry_at: Some(later),
        ..to(&doubt.id, JobState::Queued)
    };
    s.transition(in_doubt, at).await.unwrap().unwrap();
    let retry = Transition {
        retry_at: Some(later),
        ..to(&plain.id, JobState::Queued)
    };
    s.transition(retry, at).await.unwrap().unwrap();

    assert!(!s.settle_doubt(&plain.id, "SM-plain", at).await.unwrap());
    assert!(s.settle_doubt(&doubt.id, "SM-1", at).await.unwrap());
    assert!(
        !s.settle_doubt(&doubt.id, "SM-2", at).await.unwrap(),
        "once"
    );
    let read = s.message(&doubt.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.provider_message_id.as_deref()),
        (JobState::Sent, Some("SM-1"))
    );
    // Only the plain retry is still due.
    let due = s.claim("w", 10, lease, later).await.unwrap();
    let ids: Vec<_> = due.iter().map(|j| &j.message_id).collect();
    assert_eq!(ids, [&plain.id]);
}

pub async fn an_expired_lease_is_claimed_by_another_worker(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    accept(store.as_ref(), &m).await;
    let at = now();
    let first = store
        .claim("a", 10, StdDuration::from_millis(10), at)
        .await
        .unwrap();
    assert!(!first[0].in_doubt, "a first claim is not in doubt");
    let later = at + Duration::milliseconds(50);
    let taken = store
        .claim("b", 10, StdDuration::from_secs(60), later)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(taken[0].in_doubt, "a job taken over is in doubt");
    let events = store.message(&m.id).await.unwrap().unwrap().events;
    let details: Vec<_> = events
        .iter()
        .map(|e| (e.status, e.detail.as_deref()))
        .collect();
    assert_eq!(
        details,
        [
            (JobState::Queued, None),
            (JobState::Sending, None),
            (JobState::Sending, Some(IN_DOUBT)),
        ]
    );
}

/// Claims take the jobs due longest first, no more than asked, with what the send needs.
pub async fn claims_take_due_jobs_oldest_first_up_to_the_limit(store: Arc<dyn Store>) {
    let at = now();
    let jobs: Vec<_> = (0..3)
        .map(|i| {
            message_at(
                Source::Api,
                number(i),
                at + Duration::milliseconds(i.into()),
            )
        })
        .collect();
    for m in jobs.iter().rev() {
        accept(store.as_ref(), m).await;
    }
    let lease = StdDuration::from_secs(60);
    let claimed = store
        .claim("w", 2, lease, at + Duration::seconds(1))
        .await
        .unwrap();
    // Which jobs, not in what order: a batch goes out at once.
    let mut ids: Vec<_> = claimed.iter().map(|j| &j.message_id).collect();
    ids.sort();
    let mut oldest = [&jobs[0].id, &jobs[1].id];
    oldest.sort();
    assert_eq!(ids, oldest);
    let job = claimed.iter().find(|j| j.message_id == jobs[0].id).unwrap();
    assert_eq!(
        (
            &job.to,
            job.from.as_str(),
            job.body.as_str(),
            job.attempt,
            job.created_at
        ),
        (&jobs[0].to, "TSUNAGI", "hello", 1, at)
    );
    assert_eq!(status(store.as_ref(), &jobs[0].id).await, JobState::Sending);
}

/// A claim hands over when each message expires, whether accepted alone or with others, or as
/// an OTP's SMS, so the dispatcher and the providers can honour it.
pub async fn a_claimed_job_carries_its_messages_expiry(store: Arc<dyn Store>) {
    let at = now();
    let expiring = NewMessage {
        expires_at: Some(at + Duration::minutes(5)),
        ..message_at(Source::Api, number(1), at)
    };
    let lasting = message_at(Source::Api, number(2), at);
    let mut code = verification(number(3), at);
    code.message.expires_at = Some(code.expires_at);
    accept(store.as_ref(), &expiring).await;
    accept(store.as_ref(), &lasting).await;
    assert_eq!(
        start(store.as_ref(), &code, &lax()).await,
        OtpStart::Started
    );
    let claimed = store
        .claim(
            "w",
            10,
            StdDuration::from_secs(60),
            at + Duration::seconds(1),
        )
        .await
        .unwrap();
    let expiry_of = |id: &MessageId| {
        claimed
            .iter()
            .find(|j| &j.message_id == id)
            .map(|j| j.expires_at)
    };
    assert_eq!(expiry_of(&expiring.id), Some(expiring.expires_at));
    assert_eq!(expiry_of(&lasting.id), Some(None));
    assert_eq!(expiry_of(&code.message.id), Some(Some(code.expires_at)));
}

/// A scheduled job is not claimed before its time, which `next_due` reports.
pub async fn a_scheduled_job_waits_for_its_time(store: Arc<dyn Store>) {
    let at = now();
    assert_eq!(store.next_due().await.unwrap(), None);
    let send_at = at + Duration::hours(1);
    let m = scheduled(at, send_at);
    accept(store.as_ref(), &m).await;
    let lease = StdDuration::from_secs(60);
    assert!(store.claim("w", 10, lease, at).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), Some(send_at));
    assert_eq!(store.claim("w", 10, lease, send_at).await.unwrap().len(), 1);
}

/// A job under a lease is not waiting, so only waiting jobs make `next_due`.
pub async fn a_leased_job_is_not_what_falls_due_next(store: Arc<dyn Store>) {
    let at = now();
    accept(store.as_ref(), &message_at(Source::Api, number(1), at)).await;
    let lease = StdDuration::from_secs(60);
    assert_eq!(store.claim("w", 10, lease, at).await.unwrap().len(), 1);
    assert_eq!(store.next_due().await.unwrap(), None);
    let later = at + Duration::hours(1);
    accept(store.as_ref(), &scheduled(at, later)).await;
    let soon = at + Duration::seconds(5);
    accept(store.as_ref(), &scheduled(at, soon)).await;
    assert_eq!(store.next_due().await.unwrap(), Some(soon));
}

fn inbound_part(
    reference: u16,
    total: u8,
    seq: u8,
    payload: &str,
    at: DateTime<Utc>,
) -> InboundPart {
    InboundPart {
        key: PartsKey {
            from: "+819012345678".into(),
            reference,
            total,
        },
        seq,
        data_coding: 8,
        payload: payload.as_bytes().to_vec(),
        at,
    }
}

/// The parts of a long reply join in order once the last is in; a part delivered twice
/// replaces its copy; another message's parts (another reference) stay apart.
pub async fn a_long_reply_joins_once_every_part_is_in_whatever_their_order(store: Arc<dyn Store>) {
    let at = now();
    let long_ago = at - Duration::minutes(10);
    let offer = |part: InboundPart| {
        let store = store.clone();
        async move { store.inbound_part(part, long_ago).await.unwrap() }
    };
    assert_eq!(offer(inbound_part(7, 3, 3, "c", at)).await, None);
    assert_eq!(offer(inbound_part(8, 3, 2, "other", at)).await, None);
    let later = at + Duration::seconds(1);
    assert_eq!(offer(inbound_part(7, 3, 1, "x", later)).await, None);
    assert_eq!(offer(inbound_part(7, 3, 1, "a", later)).await, None);
    let joined = offer(inbound_part(7, 3, 2, "b", later)).await.unwrap();
    let texts: Vec<&[u8]> = joined.parts.iter().map(|p| p.payload.as_slice()).collect();
    assert_eq!(texts, [b"a", b"b", b"c"]);
    assert_eq!(
        joined.parts.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(joined.first_at, at, "dated by its first part");
    assert_eq!(joined.parts[0].data_coding, 8);
}

/// Parts older than the cut-off are forgotten, and a stored message's parts are forgotten, so
/// a later message under the same reference starts afresh.
pub async fn parts_of_a_long_reply_are_forgotten_when_old_or_once_stored(store: Arc<dyn Store>) {
    let at = now();
    let old = at - Duration::minutes(20);
    assert_eq!(
        store
            .inbound_part(inbound_part(1, 2, 1, "a", old), old)
            .await
            .unwrap(),
        None
    );
    let cutoff = at - Duration::minutes(10);
    assert_eq!(
        store
            .inbound_part(inbound_part(1, 2, 2, "b", at), cutoff)
            .await
            .unwrap(),
        None,
        "the first part was too old to join"
    );
    let joined = store
        .inbound_part(inbound_part(1, 2, 1, "a", at), cutoff)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(joined.parts.len(), 2);
    store
        .forget_inbound_parts(&joined.parts[0].key)
        .await
        .unwrap();
    assert_eq!(
        store
            .inbound_part(inbound_part(1, 2, 2, "B", at), cutoff)
            .await
            .unwrap(),
        None,
        "a later message under the same reference waits for its own parts"
    );
}

/// A change the current state does not allow is not applied.
pub async fn a_transition_the_state_does_not_allow_changes_nothing(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    accept(store.as_ref(), &m).await;
    assert!(store
        .transition(to(&m.id, JobState::Delivered), now())
        .await
        .unwrap()
        .is_none());
    let got = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(got.status, JobState::Queued);
    assert_eq!(got.events.len(), 1);
    assert!(store
        .transition(to(&MessageId::new(), JobState::Sent), now())
        .await
        .unwrap()
        .is_none());
}

/// Every applied change is an event, with its detail, after acceptance.
pub async fn transitions_are_logged_as_events_with_their_details(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    sent(store.as_ref(), &m).await;
    let undelivered = Transition {
        detail: Some("handset unreachable".into()),
        provider_message_id: Some("sbx_1".into()),
        ..to(&m.id, JobState::Undelivered)
    };
    let applied = store.transition(undelivered, now()).await.unwrap().unwrap();
    assert_eq!(applied.created_at, m.created_at);
    let got = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(got.status_detail.as_deref(), Some("handset unreachable"));
    let events: Vec<_> = got
        .events
        .iter()
        .map(|e| (e.status, e.detail.as_deref()))
        .collect();
    assert_eq!(
        events,
        [
            (JobState::Queued, None),
            (JobState::Sending, None),
            (JobState::Sent, None),
            (JobState::Undelivered, Some("handset unreachable")),
        ]
    );
}

/// A retry puts the job back, due at the retry time, as its next attempt.
pub async fn a_retry_is_due_again_at_its_time(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    accept(store.as_ref(), &m).await;
    let lease = StdDuration::from_secs(60);
    store.claim("w", 1, lease, m.created_at).await.unwrap();
    let retry_at = m.created_at + Duration::seconds(10);
    let retry = Transition {
        detail: Some("provider busy".into()),
        retry_at: Some(retry_at),
        refund_attempt: false,
        route: None,
        progress: None,
        ..to(&m.id, JobState::Queued)
    };
    store
        .transition(retry, m.created_at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(retry_at));
    assert!(store
        .claim("w", 1, lease, m.created_at)
        .await
        .unwrap()
        .is_empty());
    let again = store.claim("w", 1, lease, retry_at).await.unwrap();
    assert_eq!(again[0].attempt, 2);
    assert!(!again[0].in_doubt, "a retry's outcome was recorded");
}

/// The depth counts jobs waiting, scheduled or leased; a sent or final message leaves it.
pub async fn the_queue_counts_waiting_and_leased_jobs_until_they_leave(store: Arc<dyn Store>) {
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    let at = now();
    let (a, b) = (
        message_at(Source::Api, number(1), at),
        scheduled(at, at + Duration::hours(1)),
    );
    accept(store.as_ref(), &a).await;
    accept(store.as_ref(), &b).await;
    assert_eq!(store.queue_depth().await.unwrap(), 2);
    store
        .claim("w", 10, StdDuration::from_secs(60), at)
        .await
        .unwrap();
    assert_eq!(store.queue_depth().await.unwrap(), 2);
    store
        .transition(to(&a.id, JobState::Sent), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.queue_depth().await.unwrap(), 1);
}

// The sandbox.

fn sandbox_send(m: &NewMessage, outcome: JobState, at: DateTime<Utc>) -> SandboxSend {
    SandboxSend {
        message_id: m.id.clone(),
        provider_message_id: format!("sbx_{}", ulid::Ulid::new()),
        from: m.from.clone(),
        to: m.to.clone(),
        body: m.body.clone(),
        outcome,
        detail: None,
        at,
        report_due: at,
    }
}

/// Sending the same message again (after a crash) returns the first send's id, counts the
/// repeat, and `sandbox_sent` finds the send.
pub async fn a_repeated_sandbox_send_keeps_the_first_id(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    assert_eq!(store.sandbox_sent(&m.id).await.unwrap(), None);
    let first = sandbox_send(&m, JobState::Delivered, now());
    let id = store.sandbox_send(first.clone()).await.unwrap();
    assert_eq!(id, first.provider_message_id);
    assert_eq!(store.sandbox_inbox(&m.to, 10).await.unwrap()[0].sends, 1);
    assert_eq!(store.sandbox_sent(&m.id).await.unwrap(), Some(id.clone()));
    let again = store
        .sandbox_send(sandbox_send(&m, JobState::Delivered, now()))
        .await
        .unwrap();
    assert_eq!(again, id);
    let inbox = store.sandbox_inbox(&m.to, 10).await.unwrap();
    assert_eq!(
        (inbox.len(), inbox[0].sends),
        (1, 2),
        "one entry that counts both sends"
    );
}

/// Due receipts are applied once; later ones wait, and `sandbox_next_report` says until when.
pub async fn due_receipts_are_reported_once_and_later_ones_wait(store: Arc<dyn Store>) {
    let at = now();
    let (due, later, done) = (
        message_at(Source::Api, number(1), at),
        message_at(Source::Api, number(2), at),
        message_at(Source::Api, number(3), at),
    );
    for m in [&due, &later, &done] {
        sent(store.as_ref(), m).await;
    }
    store
        .transition(to(&done.id, JobState::Failed), at)
        .await
        .unwrap()
        .unwrap();
    store
        .sandbox_send(sandbox_send(&due, JobState::Delivered, at))
        .await
        .unwrap();
    store
        .sandbox_send(sandbox_send(&done, JobState::Delivered, at))
        .await
        .unwrap();
    let in_an_hour = at + Duration::hours(1);
    store
        .sandbox_send(SandboxSend {
            report_due: in_an_hour,
            ..sandbox_send(&later, JobState::Undelivered, at)
        })
        .await
        .unwrap();
    assert_eq!(store.sandbox_next_report().await.unwrap(), Some(at));
    let due_now = store.sandbox_due(at, 10).await.unwrap();
    let mut got: Vec<_> = due_now
        .iter()
        .map(|r| (r.message_id.clone().unwrap(), r.status))
        .collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    let mut expected = vec![
        (due.id.clone(), ReceiptStatus::Delivered),
        (done.id.clone(), ReceiptStatus::Delivered),
    ];
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, expected);
    // Reading does not report: they stay due until marked.
    assert_eq!(store.sandbox_due(at, 10).await.unwrap().len(), 2);
    store
        .sandbox_mark_reported(vec![due.id.clone(), done.id.clone()])
        .await
        .unwrap();
    assert!(store.sandbox_due(at, 10).await.unwrap().is_empty());
    assert_eq!(store.sandbox_next_report().await.unwrap(), Some(in_an_hour));
    let last = store.sandbox_due(in_an_hour, 10).await.unwrap();
    assert_eq!(
        (last.len(), last[0].status),
        (1, ReceiptStatus::Undelivered)
    );
    store
        .sandbox_mark_reported(vec![later.id.clone()])
        .await
        .unwrap();
    assert_eq!(store.sandbox_next_report().await.unwrap(), None);
}

/// A receipt recorded before its send's own outcome keeps its state, and the send still records
/// the route it went by and the provider's id.
pub async fn a_send_overtaken_by_its_receipt_still_records_its_route(store: Arc<dyn Store>) {
    let at = now();
    let m = message_at(Source::Api, number(7), at);
    accept(store.as_ref(), &m).await;
    store
        .claim("w", 1, StdDuration::from_secs(60), at)
        .await
        .unwrap();
    let receipt = Receipt {
        message_id: Some(m.id.clone()),
        provider_message_id: "SM-fast".into(),
        status: ReceiptStatus::Delivered,
        detail: None,
    };
    store.apply_receipts(vec![receipt], at).await.unwrap();
    let late = Transition {
        provider_message_id: Some("SM-fast".into()),
        route: Some("smpp-a".into()),
        progress: None,
        ..to(&m.id, JobState::Sent)
    };
    assert!(
        store.transition(late, at).await.unwrap().is_none(),
        "the receipt stands"
    );
    assert_eq!(status(store.as_ref(), &m.id).await, JobState::Delivered);
    let facts = store
        .delivery_facts(
            at - Duration::minutes(1),
            at + Duration::minutes(1),
            None,
            10,
        )
        .await
        .unwrap();
    let routes: Vec<_> = facts.iter().map(|f| f.route.as_deref()).collect();
    assert_eq!(routes, [Some("smpp-a")], "the route that sent it");
}

/// Receipts find their message by our id or the provider's, enter its final state once, and
/// are told apart when the message is already final or unknown.
pub async fn receipts_apply_once_by_either_id(store: Arc<dyn Store>) {
    let at = now();
    let (by_ours, by_theirs, failed) = (
        message_at(Source::Api, number(1), at),
        message_at(Source::Api, number(2), at),
        message_at(Source::Api, number(3), at),
    );
    for m in [&by_ours, &failed] {
        sent(store.as_ref(), m).await;
    }
    accept(store.as_ref(), &by_theirs).await;
    store
        .claim("w", 1, StdDuration::from_secs(60), at)
        .await
        .unwrap();
    store
        .transition(
            Transition {
                provider_message_id: Some("SM-theirs".into()),
                ..to(&by_theirs.id, JobState::Sent)
            },
            at,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .transition(to(&failed.id, JobState::Failed), at)
        .await
        .unwrap()
        .unwrap();
    let receipt = |id: Option<&MessageId>, theirs: &str, status| Receipt {
        message_id: id.cloned(),
        provider_message_id: theirs.into(),
        status,
        detail: None,
    };
    let outcomes = store
        .apply_receipts(
            vec![
                receipt(Some(&by_ours.id), "SM-ours", ReceiptStatus::Delivered),
                receipt(None, "SM-theirs", ReceiptStatus::Undelivered),
                receipt(Some(&failed.id), "SM-late", ReceiptStatus::Delivered),
                receipt(None, "SM-nobody", ReceiptStatus::Delivered),
            ],
            at,
        )
        .await
        .unwrap();
    assert!(matches!(
        &outcomes[0],
        ReceiptOutcome::Applied { message_id, state: JobState::Delivered, .. } if *message_id == by_ours.id
    ));
    assert!(matches!(
        &outcomes[1],
        ReceiptOutcome::Applied { message_id, state: JobState::Undelivered, .. } if *message_id == by_theirs.id
    ));
    assert_eq!(outcomes[2], ReceiptOutcome::Overtaken(failed.id.clone()));
    assert_eq!(outcomes[3], ReceiptOutcome::Unknown);
    assert_eq!(
        status(store.as_ref(), &by_ours.id).await,
        JobState::Delivered
    );
    assert_eq!(
        status(store.as_ref(), &by_theirs.id).await,
        JobState::Undelivered
    );
    assert_eq!(status(store.as_ref(), &failed.id).await, JobState::Failed);
    // The same receipt again changes nothing.
    let again = store
        .apply_receipts(
            vec![receipt(
                Some(&by_ours.id),
                "SM-ours",
                ReceiptStatus::Delivered,
            )],
            at,
        )
        .await
        .unwrap();
    assert_eq!(again, vec![ReceiptOutcome::Overtaken(by_ours.id.clone())]);
}

/// A reply's consent is stored in its commit: the number is opted out of the sender it
/// answered (refused when the policy honours opt-outs), the CRM record hears of it, and START
/// opts it back in.
pub async fn a_stop_reply_opts_the_number_out_of_its_sender_until_it_opts_back_in(
    store: Arc<dyn Store>,
) {
    let at = now();
    let m = message_at(crm(), number(5678), at);
    accept(store.as_ref(), &m).await;
    let reply = |body: &str| NewReply {
        from: number(5678),
        to: "TSUNAGI".into(),
        body: body.into(),
        at,
        provider_id: None,
    };
    store
        .record_reply(reply("STOP"), Some(Consent::OptOut))
        .await
        .unwrap();
    let listed = store.opt_outs(Some(&number(5678)), 10).await.unwrap();
    assert_eq!(
        listed,
        [OptOut {
            number: number(5678),
            sender: "TSUNAGI".into(),
            at,
            via: OptOutVia::Reply,
            keyword: Some("STOP".into()),
            message_id: Some(m.id.clone()),
        }]
    );
    let honouring = Hygiene {
        honour_opt_outs: true,
        ..Hygiene::default()
    };
    let again = message_at(crm(), number(5678), at);
    let refused = store.accept(again.clone(), None, honouring).await.unwrap();
    assert!(
        matches!(&refused, Acceptance::Blocked(reason) if reason.contains("opted out")),
        "{refused:?}"
    );
    let other_sender = NewMessage {
        from: "OTHER".into(),
        ..message_at(crm(), number(5678), at)
    };
    assert_eq!(
        store.accept(other_sender, None, honouring).await.unwrap(),
        Acceptance::Stored
    );
    assert_eq!(
        store.accept(again, None, Hygiene::default()).await.unwrap(),
        Acceptance::Stored,
        "an exempt message goes through"
    );
    store
        .record_reply(reply("START"), Some(Consent::OptIn))
        .await
        .unwrap();
    assert!(store
        .opt_outs(Some(&number(5678)), 10)
        .await
        .unwrap()
        .is_empty());
    let back = message_at(crm(), number(5678), at);
    assert_eq!(
        store.accept(back, None, honouring).await.unwrap(),
        Acceptance::Stored
    );
    let consents: Vec<serde_json::Value> = store
        .outbox_pending("salesforce:prod", 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == OutboxKind::Consent)
        .map(|e| e.payload["opted_out"].clone())
        .collect();
    assert_eq!(
        consents,
        [serde_json::json!(true), serde_json::json!(false)]
    );
}

/// A reply the provider delivers again under the same id is stored, and written back, once.
pub async fn a_reply_delivered_twice_under_one_provider_id_is_stored_once(store: Arc<dyn Store>) {
    let at = now();
    let m = message_at(crm(), number(5678), at);
    accept(store.as_ref(), &m).await;
    let reply = NewReply {
        from: number(5678),
        to: "TSUNAGI".into(),
        body: "STOP".into(),
        at,
        provider_id: Some("SM0123".into()),
    };
    let first = store
        .record_reply(reply.clone(), Some(Consent::OptOut))
        .await
        .unwrap();
    let again = store
        .record_reply(
            NewReply {
                at: at + Duration::seconds(15),
                ..reply
            },
            Some(Consent::OptOut),
        )
        .await
        .unwrap();
    assert_eq!(again.message_id, Some(m.id.clone()));
    assert_eq!(again.at, first.at, "answered as first stored");
    let shown = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(shown.replies.len(), 1);
    let entries = store.outbox_pending("salesforce:prod", 100).await.unwrap();
    let kinds: Vec<OutboxKind> = entries
        .iter()
        .map(|e| e.kind)
        .filter(|k| *k != OutboxKind::Status)
        .collect();
    assert_eq!(kinds, [OutboxKind::Reply, OutboxKind::Consent]);
}

/// A reply held for review is stored (and written back) as a reply with its review in one
/// commit, once per provider id, and opts nothing out; opting it out opts the number out of
/// the sender it answered and tells the CRM; a review is settled once; lists page newest first.
pub async fn a_reply_held_for_review_is_open_until_settled_once(store: Arc<dyn Store>) {
    let at = now();
    let m = message_at(crm(), number(5678), at);
    accept(store.as_ref(), &m).await;
    let reply = |n: u32, body: &str, sid: &str| NewReply {
        from: number(n),
        to: "TSUNAGI".into(),
        body: body.into(),
        at,
        provider_id: Some(sid.into()),
    };
    let held = store
        .hold_reply(reply(5678, "停止してください", "SM1"))
        .await
        .unwrap();
    assert_eq!(held.message_id, Some(m.id.clone()));
    store
        .hold_reply(reply(5678, "停止してください", "SM1"))
        .await
        .unwrap();
    store
        .hold_reply(reply(1111, "please stop", "SM2"))
        .await
        .unwrap();
    assert_eq!(
        store.open_reviews().await.unwrap(),
        2,
        "the redelivery is one"
    );
    let query = |open, limit, before| ReviewQuery {
        open,
        limit,
        before,
    };
    let all = store.reviews(query(None, 10, None)).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].number, number(1111), "newest first");
    let first = all[1].clone();
    assert_eq!(
        first,
        Review {
            id: first.id,
            number: number(5678),
            sender: "TSUNAGI".into(),
            body: "停止してください".into(),
            message_id: Some(m.id.clone()),
            at,
            settled: None,
        }
    );
    let next = store
        .reviews(query(None, 1, Some(all[0].id)))
        .await
        .unwrap();
    assert_eq!(next, std::slice::from_ref(&first));
    assert!(store
        .opt_outs(Some(&number(5678)), 10)
        .await
        .unwrap()
        .is_empty());

    let settled_at = at + Duration::seconds(30);
    let opted = Review {
        settled: Some((settled_at, Settlement::OptOut)),
        ..first.clone()
    };
    assert_eq!(
        store
            .settle_review(first.id, Settlement::OptOut, settled_at)
            .await
            .unwrap(),
        SettleOutcome::Settled(opted.clone())
    );
    assert_eq!(
        store
            .settle_review(first.id, Settlement::Dismiss, settled_at)
            .await
            .unwrap(),
        SettleOutcome::AlreadySettled(opted.clone())
    );
    assert_eq!(
        store
            .settle_review(all[0].id + 1000, Settlement::Dismiss, settled_at)
            .await
            .unwrap(),
        SettleOutcome::NotFound
    );
    assert_eq!(
        store.opt_outs(Some(&number(5678)), 10).await.unwrap(),
        [OptOut {
            number: number(5678),
            sender: "TSUNAGI".into(),
            at: settled_at,
            via: OptOutVia::Reply,
            keyword: Some("停止してください".into()),
            message_id: Some(m.id.clone()),
        }]
    );
    assert_eq!(store.open_reviews().await.unwrap(), 1);
    let open = store.reviews(query(Some(true), 10, None)).await.unwrap();
    assert_eq!(open, [all[0].clone()]);
    let settled = store.reviews(query(Some(false), 10, None)).await.unwrap();
    assert_eq!(settled, [opted]);
    let kinds: Vec<(OutboxKind, serde_json::Value)> = store
        .outbox_pending("salesforce:prod", 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != OutboxKind::Status)
        .map(|e| (e.kind, e.payload["opted_out"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (OutboxKind::Reply, serde_json::Value::Null),
            (OutboxKind::Consent, serde_json::json!(true))
        ]
    );
}

/// An opt-out a client adds for every sender refuses messages from any of them; opting in
/// removes it once; the list reads newest first.
pub async fn an_opt_out_for_every_sender_refuses_them_all_and_lists_newest_first(
    store: Arc<dyn Store>,
) {
    let at = now();
    let entry = |n: u32, sender: &str, at| OptOut {
        number: number(n),
        sender: sender.into(),
        at,
        via: OptOutVia::Api,
        keyword: Some("asked by phone".into()),
        message_id: None,
    };
    store
        .opt_out(entry(1234, EVERY_SENDER, at - Duration::seconds(5)))
        .await
        .unwrap();
    store.opt_out(entry(4321, "TSUNAGI", at)).await.unwrap();
    let honouring = Hygiene {
        honour_opt_outs: true,
        ..Hygiene::default()
    };
    for sender in ["TSUNAGI", "0005012345678"] {
        let m = NewMessage {
            from: sender.into(),
            ..message_at(Source::Api, number(1234), at)
        };
        assert!(matches!(
            store.accept(m, None, honouring).await.unwrap(),
            Acceptance::Blocked(_)
        ));
    }
    let listed = store.opt_outs(None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|o| o.number.clone()).collect::<Vec<_>>(),
        [number(4321), number(1234)]
    );
    assert_eq!(store.opt_outs(None, 1).await.unwrap().len(), 1);
    assert!(store.opt_in(&number(1234), EVERY_SENDER).await.unwrap());
    assert!(!store.opt_in(&number(1234), EVERY_SENDER).await.unwrap());
    let m = message_at(Source::Api, number(1234), at);
    assert_eq!(
        store.accept(m, None, honouring).await.unwrap(),
        Acceptance::Stored
    );
}

/// A part receipt is recorded on the newest part with its id and answers with the parts of
/// its message in order; a message sent again gets new parts in place of the old.
pub async fn part_receipts_answer_with_every_part_of_their_message(store: Arc<dyn Store>) {
    let m = message(Source::Api);
    sent(store.as_ref(), &m).await;
    let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    store
        .parts_sent(&m.id, ids(&["p1", "p2", "p3"]))
        .await
        .unwrap();
    // Sent in more parts than its one segment (a coding the route needed): it counts three.
    let read = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(read.segments, 3);
    let part = |id: &str, status, detail: Option<&str>| PartReceipt {
        part_id: id.into(),
        status,
        detail: detail.map(str::to_string),
    };
    let outcomes = store
        .part_receipts(vec![
            part("p2", ReceiptStatus::Delivered, None),
            part("p3", ReceiptStatus::Undelivered, Some("stat:EXPIRED")),
            part("nobody", ReceiptStatus::Delivered, None),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes[1],
        PartOutcome::Recorded {
            message_id: m.id.clone(),
            first_part: "p1".into(),
            parts: vec![
                None,
                Some((ReceiptStatus::Delivered, None)),
                Some((ReceiptStatus::Undelivered, Some("stat:EXPIRED".into()))),
            ],
        }
    );
    assert!(matches!(&outcomes[0], PartOutcome::Recorded { parts, .. } if parts[0].is_none()));
    assert_eq!(outcomes[2], PartOutcome::Unknown);
    store.parts_sent(&m.id, ids(&["q1", "q2"])).await.unwrap();
    let again = store
        .part_receipts(vec![
            part("p1", ReceiptStatus::Delivered, None),
            part("q2", ReceiptStatus::Delivered, None),
        ])
        .await
        .unwrap();
    assert_eq!(again[0], PartOutcome::Unknown);
    assert_eq!(
        again[1],
        PartOutcome::Recorded {
            message_id: m.id.clone(),
            first_part: "q1".into(),
            parts: vec![None, Some((ReceiptStatus::Delivered, None))],
        }
    );
}

/// Kept receipts read back as kept, only once due, and counted until forgotten.
pub async fn kept_receipts_come_back_when_due_until_forgotten(store: Arc<dyn Store>) {
    let at = now();
    let whole = Unmatched::Whole {
        provider_message_id: "SM-early".into(),
        status: ReceiptStatus::Delivered,
        detail: None,
    };
    let part = Unmatched::Part(PartReceipt {
        part_id: "p9".into(),
        status: ReceiptStatus::Failed,
        detail: Some("stat:REJECTD".into()),
    });
    store
        .keep_receipts(vec![whole.clone(), part.clone()], at)
        .await
        .unwrap();
    assert_eq!(store.kept_receipt_count().await.unwrap(), 2);
    assert!(store
        .kept_receipts(at - Duration::seconds(1), 10)
        .await
        .unwrap()
        .is_empty());
    let kept = store.kept_receipts(at, 10).await.unwrap();
    assert_eq!(
        kept.iter().map(|k| &k.receipt).collect::<Vec<_>>(),
        [&whole, &part]
    );
    assert!(kept.iter().all(|k| k.received_at == at && k.tries == 0));
    store
        .retry_receipts(vec![(kept[0].id, at + Duration::seconds(10))])
        .await
        .unwrap();
    let due = store.kept_receipts(at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].receipt, part);
    let later = store
        .kept_receipts(at + Duration::seconds(10), 1)
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "the limit holds");
    assert_eq!((later[0].receipt.clone(), later[0].tries), (whole, 1));
    store
        .forget_receipts(kept.iter().map(|k| k.id).collect())
        .await
        .unwrap();
    assert_eq!(store.kept_receipt_count().await.unwrap(), 0);
}

/// A handset's inbox holds what was delivered to it, newest first.
pub async fn a_handset_inbox_shows_delivered_texts_newest_first(store: Arc<dyn Store>) {
    let at = now();
    let handset = number(1);
    let texts: Vec<_> = (0..3)
        .map(|i| NewMessage {
            body: format!("text {i}"),
            ..message_at(Source::Api, handset.clone(), at)
        })
        .collect();
    for (i, (m, outcome)) in texts
        .iter()
        .zip([
            JobState::Delivered,
            JobState::Delivered,
            JobState::Undelivered,
        ])
        .enumerate()
    {
        let sent_at = at + Duration::seconds(i as i64);
        store
            .sandbox_send(sandbox_send(m, outcome, sent_at))
            .await
            .unwrap();
    }
    let elsewhere = message_at(Source::Api, number(2), at);
    store
        .sandbox_send(sandbox_send(&elsewhere, JobState::Delivered, at))
        .await
        .unwrap();
    let inbox = store.sandbox_inbox(&handset, 10).await.unwrap();
    let got: Vec<_> = inbox
        .iter()
        .map(|e| (&e.message_id, e.body.as_str(), e.from.as_str(), &e.to))
        .collect();
    assert_eq!(
        got,
        [
            (&texts[1].id, "text 1", "TSUNAGI", &handset),
            (&texts[0].id, "text 0", "TSUNAGI", &handset),
        ]
    );
    assert_eq!(inbox[0].at, at + Duration::seconds(1));
    assert_eq!(store.sandbox_inbox(&handset, 1).await.unwrap().len(), 1);
}

// One-time passwords.

/// A started verification is pending with its checks, expiry and SMS, which is queued.
pub async fn a_started_verification_reads_back_pending_with_its_sms(store: Arc<dyn Store>) {
    let v = verification(number(1), now());
    assert_eq!(start(store.as_ref(), &v, &lax()).await, OtpStart::Started);
    let got = store.otp_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(got.id, v.id);
    assert_eq!(got.to, number(1));
    assert_eq!(got.status, VerificationState::Pending);
    assert_eq!((got.checks, got.max_checks), (0, 3));
    assert_eq!(
        (got.expires_at, got.created_at),
        (v.expires_at, v.created_at)
    );
    assert_eq!(got.message_id, v.message.id);
    let sms = store.message(&v.message.id).await.unwrap().unwrap();
    assert_eq!((sms.status, sms.source), (JobState::Queued, Source::Otp));
    assert!(store
        .otp_verification(&VerificationId::new())
        .await
        .unwrap()
        .is_none());
}

/// A new code to a number cancels the one still pending.
pub async fn a_new_code_cancels_the_pending_one(store: Arc<dyn Store>) {
    let at = now();
    let first = verification(number(1), at);
    let second = verification(number(1), at + Duration::seconds(1));
    start(store.as_ref(), &first, &lax()).await;
    assert_eq!(
        start(store.as_ref(), &second, &lax()).await,
        OtpStart::Started
    );
    let got = store.otp_verification(&first.id).await.unwrap().unwrap();
    assert_eq!(got.status, VerificationState::Canceled);
    assert_eq!(
        check(store.as_ref(), &first.id, CODE).await,
        CheckOutcome::Canceled
    );
    assert_eq!(
        check(store.as_ref(), &second.id, CODE).await,
        CheckOutcome::Approved
    );
}

/// A second code within the cool-down is refused until it ends, and nothing of it is stored.
pub async fn a_resend_within_the_cooldown_is_refused_and_stores_nothing(store: Arc<dyn Store>) {
    let limits = OtpLimits {
        cooldown_seconds: 30,
        ..lax()
    };
    let at = now();
    start(store.as_ref(), &verification(number(1), at), &limits).await;
    let resend = verification(number(1), at + Duration::seconds(10));
    let (reason, retry_after, tripped) = limited(start(store.as_ref(), &resend, &limits).await);
    assert_eq!(reason, "a code was sent to this number less than 30 s ago");
    assert_eq!((retry_after, tripped), (20, false));
    assert!(store.otp_verification(&resend.id).await.unwrap().is_none());
    assert!(store.message(&resend.message.id).await.unwrap().is_none());
    let after = verification(number(1), at + Duration::seconds(30));
    assert_eq!(
        start(store.as_ref(), &after, &limits).await,
        OtpStart::Started
    );
}

/// Codes are counted per number, per client IP and per device within the window.
pub async fn window_limits_count_codes_per_number_ip_and_device(store: Arc<dyn Store>) {
    let limits = OtpLimits {
        per_number: 2,
        per_ip: 2,
        per_device: 2,
        ..lax()
    };
    let at = now();
    let s = store.as_ref();
    for i in 0..2 {
        start(
            s,
            &verification(number(1), at + Duration::seconds(i)),
            &limits,
        )
        .await;
    }
    let third = verification(number(1), at + Duration::seconds(100));
    let (reason, retry_after, _) = limited(start(s, &third, &limits).await);
    assert_eq!(reason, "this number was sent 2 codes in the last 600 s");
    assert_eq!(retry_after, 500, "until the oldest code leaves the window");
    let by_ip = |n, secs| NewVerification {
        client_ip: Some("203.0.113.7".into()),
        ..verification(number(n), at + Duration::seconds(secs))
    };
    start(s, &by_ip(10, 0), &limits).await;
    start(s, &by_ip(11, 1), &limits).await;
    let (reason, _, _) = limited(start(s, &by_ip(12, 2), &limits).await);
    assert!(
        reason.starts_with("this client_ip was sent 2 codes"),
        "{reason}"
    );
    let by_device = |n, secs| NewVerification {
        device_id: Some("device-1".into()),
        ..verification(number(n), at + Duration::seconds(secs))
    };
    start(s, &by_device(20, 0), &limits).await;
    start(s, &by_device(21, 1), &limits).await;
    let (reason, _, _) = limited(start(s, &by_device(22, 2), &limits).await);
    assert!(
        reason.starts_with("this device_id was sent 2 codes"),
        "{reason}"
    );
    let next_window = verification(number(1), at + Duration::seconds(601));
    assert_eq!(start(s, &next_window, &limits).await, OtpStart::Started);
}

/// A denied number gets no code; an allow-listed one skips the limits.
pub async fn listed_numbers_are_refused_or_skip_the_limits(store: Arc<dyn Store>) {
    let s = store.as_ref();
    s.list_add(NumberList::Deny, &number(1), None)
        .await
        .unwrap();
    s.list_add(NumberList::Allow, &number(2), None)
        .await
        .unwrap();
    let limits = OtpLimits {
        cooldown_seconds: 30,
        ..lax()
    };
    let denied = verification(number(1), now());
    assert_eq!(
        start(s, &denied, &limits).await,
        OtpStart::Blocked("the number is on the deny list".into())
    );
    assert!(s.otp_verification(&denied.id).await.unwrap().is_none());
    let at = now();
    for i in 0..3 {
        let v = verification(number(2), at + Duration::milliseconds(i));
        assert_eq!(start(s, &v, &limits).await, OtpStart::Started);
    }
    let only = Hygiene {
        allow_list_only: true,
        ..Hygiene::default()
    };
    let unlisted = s
        .otp_start(verification(number(3), at), limits, only)
        .await
        .unwrap();
    assert!(matches!(unlisted, OtpStart::Blocked(r) if r.contains("allow_list_only")));
}

/// Codes to one block of 10,000 numbers past the burst limit pause the block, not its
/// neighbours, for the block period.
pub async fn a_burst_to_one_block_pauses_the_block(store: Arc<dyn Store>) {
    let limits = OtpLimits {
        burst_max_sends: 3,
        ..lax()
    };
    let at = now();
    let s = store.as_ref();
    for i in 0..3 {
        let v = verification(number(i), at + Duration::seconds(i.into()));
        assert_eq!(start(s, &v, &limits).await, OtpStart::Started);
    }
    let fourth = verification(number(3), at + Duration::seconds(5));
    let (reason, retry_after, tripped) = limited(start(s, &fourth, &limits).await);
    assert!(
        reason.contains("pumping") && reason.contains("last four digits"),
        "{reason}"
    );
    assert_eq!((retry_after, tripped), (43200, true));
    assert_eq!(s.otp_blocked_prefixes(at).await.unwrap(), 1);
    let next = verification(number(4), at + Duration::seconds(120));
    let (reason, retry_after, tripped) = limited(start(s, &next, &limits).await);
    assert!(reason.contains("paused"), "{reason}");
    assert_eq!((retry_after, tripped), (43200 - 115, false));
    let neighbour = verification(
        PhoneNumber::parse("090-1235-0000").unwrap(),
        at + Duration::seconds(120),
    );
    assert_eq!(start(s, &neighbour, &limits).await, OtpStart::Started);
    let over = at + Duration::seconds(5 + 43200);
    assert_eq!(s.otp_blocked_prefixes(over).await.unwrap(), 0);
    let back = verification(number(5), over);
    assert_eq!(start(s, &back, &limits).await, OtpStart::Started);
}

/// A number range whose judged codes are not verified is paused; codes in the grace period are
/// not judged.
pub async fn a_range_whose_codes_are_not_verified_is_paused(store: Arc<dyn Store>) {
    let limits = OtpLimits {
        pumping_min_sends: 3,
        pumping_grace_seconds: 60,
        pumping_min_conversion: 0.5,
        ..lax()
    };
    let at = now();
    let s = store.as_ref();
    let sent: Vec<_> = (0..3)
        .map(|i| verification(number(i), at + Duration::seconds(i.into())))
        .collect();
    for v in &sent {
        assert_eq!(start(s, v, &limits).await, OtpStart::Started);
    }
    let young = verification(number(10), at + Duration::seconds(30));
    assert_eq!(
        start(s, &young, &limits).await,
        OtpStart::Started,
        "codes in the grace period are not judged"
    );
    assert_eq!(
        check_at(s, &sent[0].id, CODE, at + Duration::seconds(40)).await,
        CheckOutcome::Approved
    );
    let judged = verification(number(20), at + Duration::seconds(90));
    let (reason, retry_after, tripped) = limited(start(s, &judged, &limits).await);
    assert_eq!(
        reason,
        "codes to this number range are paused: 1 of 4 codes verified (25%) in the last 3600 s (suspected SMS pumping)"
    );
    assert_eq!((retry_after, tripped), (43200, true));
    assert_eq!(
        s.otp_blocked_prefixes(at + Duration::seconds(90))
            .await
            .unwrap(),
        1
    );
}

/// Each wrong code uses a check; the last one exhausts the verification, even for the right code.
pub async fn wrong_codes_count_down_to_exhaustion(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let v = verification(number(1), now());
    start(s, &v, &lax()).await;
    for left in [2, 1, 0] {
        assert_eq!(
            check(s, &v.id, b"000000").await,
            CheckOutcome::Incorrect(left)
        );
    }
    assert_eq!(check(s, &v.id, CODE).await, CheckOutcome::Exhausted);
    let got = s.otp_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.checks),
        (VerificationState::MaxAttemptsReached, 3)
    );
}

/// The right code approves once; approved codes count as converted.
pub async fn the_right_code_approves_once_and_counts_as_converted(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let (v, other) = (verification(number(1), at), verification(number(2), at));
    start(s, &v, &lax()).await;
    start(s, &other, &lax()).await;
    assert_eq!(check(s, &v.id, b"000000").await, CheckOutcome::Incorrect(2));
    assert_eq!(check(s, &v.id, CODE).await, CheckOutcome::Approved);
    assert_eq!(check(s, &v.id, CODE).await, CheckOutcome::AlreadyUsed);
    let got = s.otp_verification(&v.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.checks), (VerificationState::Approved, 2));
    let since = at - Duration::seconds(1);
    assert_eq!(s.otp_conversion(since).await.unwrap(), (2, 1));
    assert_eq!(s.otp_conversion(at).await.unwrap(), (0, 0));
}

/// A code past its expiry, or one that does not exist, is refused and nothing is counted.
pub async fn an_expired_or_unknown_code_is_refused_without_counting(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let v = verification(number(1), now());
    start(s, &v, &lax()).await;
    assert_eq!(
        check_at(s, &v.id, CODE, v.expires_at).await,
        CheckOutcome::Expired
    );
    let got = s.otp_verification(&v.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.checks), (VerificationState::Pending, 0));
    assert_eq!(
        check(s, &VerificationId::new(), CODE).await,
        CheckOutcome::NotFound
    );
}

// Number lists.

/// Listing a number again updates its reason and keeps its id and time.
pub async fn listing_a_number_again_keeps_its_id_and_updates_its_reason(store: Arc<dyn Store>) {
    let first = store
        .list_add(NumberList::Deny, &number(1), Some("opted out".into()))
        .await
        .unwrap();
    assert_eq!(
        (&first.number, first.reason.as_deref()),
        (&number(1), Some("opted out"))
    );
    let again = store
        .list_add(NumberList::Deny, &number(1), Some("cancelled".into()))
        .await
        .unwrap();
    assert_eq!(
        (&again.id, again.created_at, again.reason.as_deref()),
        (&first.id, first.created_at, Some("cancelled"))
    );
    let listed = store.list_numbers(NumberList::Deny, 10).await.unwrap();
    assert_eq!(listed, [again]);
}

/// An entry is found and removed by its id or by the number, on its own list only.
pub async fn an_entry_is_found_and_removed_by_id_or_by_number(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let denied = s
        .list_add(NumberList::Deny, &number(1), None)
        .await
        .unwrap();
    let by_id = ListKey::Id(denied.id.clone());
    let by_number = ListKey::Number(number(1));
    assert_eq!(
        s.listed(NumberList::Deny, &by_id).await.unwrap(),
        Some(denied.clone())
    );
    assert_eq!(
        s.listed(NumberList::Deny, &by_number).await.unwrap(),
        Some(denied.clone())
    );
    assert_eq!(s.listed(NumberList::Allow, &by_number).await.unwrap(), None);
    assert!(!s.list_remove(NumberList::Allow, &by_id).await.unwrap());
    assert!(s.list_remove(NumberList::Deny, &by_id).await.unwrap());
    assert!(!s.list_remove(NumberList::Deny, &by_id).await.unwrap());
    assert_eq!(s.listed(NumberList::Deny, &by_number).await.unwrap(), None);
    s.list_add(NumberList::Deny, &number(2), None)
        .await
        .unwrap();
    assert!(s
        .list_remove(NumberList::Deny, &ListKey::Number(number(2)))
        .await
        .unwrap());
    assert!(s
        .listed(NumberList::Deny, &ListKey::Id(ListEntryId::new()))
        .await
        .unwrap()
        .is_none());
}

/// A list reads newest first, up to the limit.
pub async fn a_list_is_read_newest_first_up_to_the_limit(store: Arc<dyn Store>) {
    for i in 0..3 {
        store
            .list_add(NumberList::Allow, &number(i), None)
            .await
            .unwrap();
        // Entries are ordered by the time they were listed, kept to the millisecond.
        tokio::time::sleep(StdDuration::from_millis(3)).await;
    }
    let listed = store.list_numbers(NumberList::Allow, 2).await.unwrap();
    let numbers: Vec<_> = listed.iter().map(|e| e.number.clone()).collect();
    assert_eq!(numbers, [number(2), number(1)]);
    assert!(store
        .list_numbers(NumberList::Deny, 10)
        .await
        .unwrap()
        .is_empty());
}

// The outbox.

/// Every change and reply of a CRM message is in the outbox, with its source; an API or OTP
/// message never is.
pub async fn the_outbox_holds_changes_and_replies_of_crm_messages_only(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let api = message_at(Source::Api, number(1), at);
    let otp = message_at(Source::Otp, number(2), at);
    let crm_message = message_at(crm(), number(3), at);
    for m in [&api, &otp, &crm_message] {
        sent(s, m).await;
        let undelivered = Transition {
            detail: Some("handset unreachable".into()),
            ..to(&m.id, JobState::Undelivered)
        };
        s.transition(undelivered, at).await.unwrap().unwrap();
        s.record_reply(
            NewReply {
                from: m.to.clone(),
                to: "TSUNAGI".into(),
                body: "はい".into(),
                at,
                provider_id: None,
            },
            None,
        )
        .await
        .unwrap();
    }
    let pending = s.outbox_pending("salesforce:prod", 100).await.unwrap();
    assert!(pending
        .iter()
        .all(|e| e.message_id == crm_message.id && e.source == crm()));
    let at_ms = at.timestamp_millis();
    let got: Vec<_> = pending
        .iter()
        .map(|e| (e.kind, e.payload.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                OutboxKind::Status,
                serde_json::json!({"status": "sending", "detail": null, "at": at_ms})
            ),
            (
                OutboxKind::Status,
                serde_json::json!({"status": "sent", "detail": null, "at": at_ms})
            ),
            (
                OutboxKind::Status,
                serde_json::json!({"status": "undelivered", "detail": "handset unreachable", "at": at_ms})
            ),
            (
                OutboxKind::Reply,
                serde_json::json!({"body": "はい", "at": at_ms})
            ),
        ]
    );
}

/// Entries are read oldest first up to the limit, and leave once handled; only a write that
/// reached the record stamps the message as written back.
pub async fn written_back_entries_leave_the_outbox(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let m = message(crm());
    sent(s, &m).await;
    let first = s.outbox_pending("salesforce:prod", 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].payload["status"], "sending");
    s.outbox_done(vec![first[0].id], now()).await.unwrap();
    let stored = s.message(&m.id).await.unwrap().unwrap();
    assert_eq!(
        stored.written_back_at, None,
        "refused or skipped is not written"
    );
    let rest = s.outbox_pending("salesforce:prod", 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].id > first[0].id);
    assert_eq!(rest[0].payload["status"], "sent");
    let at = now();
    s.outbox_written(vec![rest[0].id], at).await.unwrap();
    let stored = s.message(&m.id).await.unwrap().unwrap();
    assert_eq!(stored.written_back_at, Some(at));
    assert!(s
        .outbox_pending("salesforce:prod", 10)
        .await
        .unwrap()
        .is_empty());
}

/// Each connection's write-back reads its own entries only.
pub async fn outbox_entries_are_read_per_connection(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let kintone = Source::Crm {
        connection: "kintone:sales".into(),
        record: "12/7".into(),
    };
    let (a, b) = (message(crm()), message_at(kintone, number(2), now()));
    sent(s, &a).await;
    sent(s, &b).await;
    let of = |entries: Vec<OutboxEntry>| -> Vec<MessageId> {
        entries.into_iter().map(|e| e.message_id).collect()
    };
    let salesforce = s.outbox_pending("salesforce:prod", 10).await.unwrap();
    assert_eq!(of(salesforce), [a.id.clone(), a.id.clone()]);
    let kintone = s.outbox_pending("kintone:sales", 10).await.unwrap();
    assert_eq!(of(kintone), [b.id.clone(), b.id.clone()]);
    assert!(s
        .outbox_pending("salesforce:dev", 10)
        .await
        .unwrap()
        .is_empty());
}

/// A connection's write-back lease has one owner at a time: its owner renews it, another
/// takes it only once it ran out.
pub async fn one_owner_at_a_time_holds_a_connections_writeback_lease(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let until = at + Duration::seconds(30);
    assert!(s
        .writeback_lease("salesforce:prod", "a", until, at)
        .await
        .unwrap());
    assert!(!s
        .writeback_lease("salesforce:prod", "b", until, at)
        .await
        .unwrap());
    assert!(
        s.writeback_lease("kintone:sales", "b", until, at)
            .await
            .unwrap(),
        "leases are per connection"
    );
    let later = at + Duration::seconds(20);
    assert!(s
        .writeback_lease("salesforce:prod", "a", later + Duration::seconds(30), later)
        .await
        .unwrap());
    assert!(
        !s.writeback_lease("salesforce:prod", "b", until, at + Duration::seconds(40))
            .await
            .unwrap(),
        "the renewal holds it"
    );
    let expired = later + Duration::seconds(31);
    assert!(s
        .writeback_lease(
            "salesforce:prod",
            "b",
            expired + Duration::seconds(30),
            expired
        )
        .await
        .unwrap());
}

/// A CRM record has an unwritten message from its message's acceptance until a write-back of it.
pub async fn a_records_message_is_unwritten_until_written_back(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let record = "003xx000004TmiQAAS";
    assert!(!s
        .unwritten_message_for("salesforce:prod", record)
        .await
        .unwrap());
    let m = message(crm());
    sent(s, &m).await;
    assert!(s
        .unwritten_message_for("salesforce:prod", record)
        .await
        .unwrap());
    assert!(!s
        .unwritten_message_for("salesforce:other", record)
        .await
        .unwrap());
    assert!(!s
        .unwritten_message_for("salesforce:prod", "003xx000004TmiRAAS")
        .await
        .unwrap());
    let entries = s.outbox_pending("salesforce:prod", 10).await.unwrap();
    assert!(!entries.is_empty());
    s.outbox_written(entries.iter().map(|e| e.id).collect(), now())
        .await
        .unwrap();
    assert!(!s
        .unwritten_message_for("salesforce:prod", record)
        .await
        .unwrap());
}

/// A connection's poll start mark is made once and kept, per connection.
pub async fn a_poll_start_mark_is_kept_from_the_first_ask(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let first = now();
    let later = first + Duration::hours(1);
    assert_eq!(
        s.poll_start_mark("kintone:sales", first).await.unwrap(),
        first
    );
    assert_eq!(
        s.poll_start_mark("kintone:sales", later).await.unwrap(),
        first
    );
    assert_eq!(
        s.poll_start_mark("kintone:other", later).await.unwrap(),
        later
    );
}

/// A connection's record id mark starts unset and only rises, per connection.
pub async fn a_poll_id_mark_only_rises(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    assert_eq!(s.poll_id_mark("kintone:sales").await.unwrap(), None);
    s.poll_start_mark("kintone:sales", at).await.unwrap();
    assert_eq!(s.poll_id_mark("kintone:sales").await.unwrap(), None);
    s.raise_poll_id_mark("kintone:sales", 300, at)
        .await
        .unwrap();
    s.raise_poll_id_mark("kintone:sales", 120, at)
        .await
        .unwrap();
    assert_eq!(s.poll_id_mark("kintone:sales").await.unwrap(), Some(300));
    s.raise_poll_id_mark("kintone:other", 7, at).await.unwrap();
    assert_eq!(s.poll_id_mark("kintone:other").await.unwrap(), Some(7));
    assert_eq!(
        s.poll_start_mark("kintone:other", at + Duration::hours(1))
            .await
            .unwrap(),
        at,
        "raising the id mark starts polling"
    );
    assert_eq!(s.poll_id_mark("kintone:sales").await.unwrap(), Some(300));
}

/// A released lease is free for another owner at once; only its owner releases it.
pub async fn a_released_writeback_lease_is_taken_at_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let until = at + Duration::seconds(30);
    assert!(s
        .writeback_lease("salesforce:prod", "a", until, at)
        .await
        .unwrap());
    s.writeback_release("salesforce:prod", "b").await.unwrap();
    assert!(
        !s.writeback_lease("salesforce:prod", "b", until, at)
            .await
            .unwrap(),
        "another owner cannot release it"
    );
    s.writeback_release("salesforce:prod", "a").await.unwrap();
    assert!(s
        .writeback_lease("salesforce:prod", "b", until, at)
        .await
        .unwrap());
}

/// The revisions our writes gave are recognised exactly, and forgotten after a week.
/// The highest revision seen of each record is kept, per connection, for a week.
pub async fn the_latest_known_revision_of_a_record_is_kept_per_connection(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let seen = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(r, v)| (r.to_string(), *v)).collect()
    };
    s.remember_revisions("kintone:sales", seen(&[("12/1", 3), ("12/2", 5)]), at)
        .await
        .unwrap();
    s.remember_revisions("kintone:sales", seen(&[("12/1", 2), ("12/2", 6)]), at)
        .await
        .unwrap();
    s.remember_revisions("kintone:other", seen(&[("12/1", 9)]), at)
        .await
        .unwrap();
    let records = vec!["12/1".to_string(), "12/2".into(), "12/3".into()];
    let known = s
        .known_revisions("kintone:sales", records.clone())
        .await
        .unwrap();
    let known: Vec<_> = known.into_iter().collect();
    assert_eq!(
        known,
        seen(&[("12/1", 3), ("12/2", 6)]),
        "an older one never wins"
    );
    // A week later, what was not seen again is forgotten.
    let later = at + chrono::Duration::days(8);
    s.remember_revisions("kintone:sales", seen(&[("12/3", 1)]), later)
        .await
        .unwrap();
    let known = s.known_revisions("kintone:sales", records).await.unwrap();
    assert_eq!(known.into_iter().collect::<Vec<_>>(), seen(&[("12/3", 1)]));
}

pub async fn own_writes_are_recognised_per_connection_record_and_revision_for_a_week(
    store: Arc<dyn Store>,
) {
    let s = store.as_ref();
    let at = now();
    let writes = vec![("12/7".to_string(), 4), ("12/8".to_string(), 2)];
    s.remember_own_writes("kintone:sales", writes.clone(), at)
        .await
        .unwrap();
    s.remember_own_writes("kintone:sales", writes, at)
        .await
        .unwrap();
    assert!(s.is_own_write("kintone:sales", "12/7", 4).await.unwrap());
    assert!(s.is_own_write("kintone:sales", "12/8", 2).await.unwrap());
    assert!(
        !s.is_own_write("kintone:sales", "12/7", 5).await.unwrap(),
        "a person's edit"
    );
    assert!(!s.is_own_write("kintone:other", "12/7", 4).await.unwrap());
    let later = at + OWN_WRITES_KEPT + Duration::seconds(1);
    s.remember_own_writes("kintone:sales", vec![("12/9".to_string(), 1)], later)
        .await
        .unwrap();
    assert!(
        !s.is_own_write("kintone:sales", "12/7", 4).await.unwrap(),
        "forgotten"
    );
    assert!(s.is_own_write("kintone:sales", "12/9", 1).await.unwrap());
    s.forget_own_writes("kintone:sales", vec![("12/9".to_string(), 1)])
        .await
        .unwrap();
    assert!(
        !s.is_own_write("kintone:sales", "12/9", 1).await.unwrap(),
        "a write that did not happen is forgotten"
    );
}

/// A change the CRM refused for good is shown on its message.
pub async fn a_refused_writeback_is_shown_on_its_message(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (a, b) = (message(crm()), message_at(crm(), number(2), now()));
    accept(s, &a).await;
    accept(s, &b).await;
    let detail = "ENTITY_IS_DELETED: entity is deleted";
    s.writeback_failed(vec![(a.id.clone(), detail.to_string())])
        .await
        .unwrap();
    let got = s.message(&a.id).await.unwrap().unwrap();
    assert_eq!(got.writeback_error.as_deref(), Some(detail));
    assert_eq!(
        s.message(&b.id).await.unwrap().unwrap().writeback_error,
        None
    );
}

/// Dry-run write-back calls read back with their exact bodies, newest first, by connection and
/// page; those older than a week are forgotten at the next write.
pub async fn dry_run_calls_are_listed_newest_first_per_connection_and_kept_a_week(
    store: Arc<dyn Store>,
) {
    let s = store.as_ref();
    let at = now();
    let call = |connection: &str, n: u64, at: DateTime<Utc>| NewWritebackCall {
        connection: connection.into(),
        method: "PATCH".into(),
        path: "/services/data/v67.0/composite/sobjects".into(),
        body: serde_json::json!({"allOrNone": false, "records": [{"n": n, "名前": "様"}]}),
        message_ids: vec![format!("msg_{n}")],
        at,
    };
    let first = vec![call("salesforce:prod", 1, at), call("kintone:sales", 2, at)];
    s.log_writebacks(first, at).await.unwrap();
    s.log_writebacks(vec![call("salesforce:prod", 3, at)], at)
        .await
        .unwrap();
    let all = |connection: Option<&str>, limit, before| WritebackQuery {
        connection: connection.map(Into::into),
        limit,
        before,
    };
    let listed = s.writebacks(all(None, 10, None)).await.unwrap();
    let calls: Vec<&NewWritebackCall> = listed.iter().map(|c| &c.call).collect();
    assert_eq!(
        calls,
        [
            &call("salesforce:prod", 3, at),
            &call("kintone:sales", 2, at),
            &call("salesforce:prod", 1, at)
        ]
    );
    let prod = s
        .writebacks(all(Some("salesforce:prod"), 1, None))
        .await
        .unwrap();
    assert_eq!(prod.len(), 1);
    assert_eq!(prod[0].call.body["records"][0]["n"], 3);
    let next = s
        .writebacks(all(Some("salesforce:prod"), 1, Some(prod[0].seq)))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].call, call("salesforce:prod", 1, at));
    let later = at + WRITEBACKS_KEPT + Duration::seconds(1);
    s.log_writebacks(vec![call("kintone:sales", 4, later)], later)
        .await
        .unwrap();
    let kept = s.writebacks(all(None, 10, None)).await.unwrap();
    assert_eq!(kept.len(), 1, "a week's calls are forgotten");
    assert_eq!(kept[0].call, call("kintone:sales", 4, later));
}

// Answered kintone notifications.

fn notification(
    connection: &str,
    id: &str,
    at: DateTime<Utc>,
    answer: serde_json::Value,
) -> KintoneNotification {
    KintoneNotification {
        connection: connection.into(),
        notification_id: id.into(),
        received_at: at,
        event: "ADD_RECORD".into(),
        record_id: Some("7".into()),
        answer,
    }
}

/// A notification reads back as it was recorded, under its own connection only; the same id
/// again keeps the first answer.
pub async fn a_kintone_notification_keeps_its_first_answer_per_connection(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let id = "1f0c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    let queued = serde_json::json!({"result": "queued", "message_id": "msg_1"});
    let first = notification("kintone:sales", id, at, queued);
    s.record_notification(first.clone()).await.unwrap();
    let duplicate = serde_json::json!({"result": "duplicate", "reason": "taken before"});
    let again = KintoneNotification {
        record_id: None,
        ..notification("kintone:sales", id, at + Duration::seconds(1), duplicate)
    };
    s.record_notification(again).await.unwrap();
    assert_eq!(
        s.notification("kintone:sales", id).await.unwrap(),
        Some(first),
        "the first answer is kept"
    );
    assert_eq!(s.notification("kintone:us", id).await.unwrap(), None);
    assert_eq!(
        s.notification("kintone:sales", "other").await.unwrap(),
        None
    );
    let ignored = KintoneNotification {
        event: "DELETE_RECORD".into(),
        record_id: None,
        ..notification(
            "kintone:us",
            id,
            at,
            serde_json::json!({"result": "ignored", "reason": "carries no record"}),
        )
    };
    s.record_notification(ignored.clone()).await.unwrap();
    assert_eq!(
        s.notification("kintone:us", id).await.unwrap(),
        Some(ignored)
    );
}

/// Notifications received before the purge's cut-off are forgotten, later ones kept.
pub async fn kintone_notifications_are_purged_after_30_days(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let now = now();
    let answer = serde_json::json!({"result": "ignored", "reason": "not a trigger"});
    let old = notification(
        "kintone:sales",
        "old",
        now - NOTIFICATIONS_KEPT,
        answer.clone(),
    );
    let recent = notification(
        "kintone:sales",
        "recent",
        now - NOTIFICATIONS_KEPT + Duration::seconds(1),
        answer,
    );
    s.record_notification(old).await.unwrap();
    s.record_notification(recent.clone()).await.unwrap();
    let cut = now - NOTIFICATIONS_KEPT + Duration::milliseconds(1);
    assert_eq!(s.purge_notifications(cut).await.unwrap(), 1);
    assert_eq!(s.notification("kintone:sales", "old").await.unwrap(), None);
    assert_eq!(
        s.notification("kintone:sales", "recent").await.unwrap(),
        Some(recent)
    );
    assert_eq!(s.purge_notifications(cut).await.unwrap(), 0);
}

// Rejected CRM records.

/// Every stored message in `status` (all when `None`), newest first.
async fn stored(store: &dyn Store, status: Option<JobState>) -> Vec<MessageRecord> {
    let query = ListQuery {
        status,
        limit: 100,
        before: None,
    };
    store.messages(query).await.unwrap()
}

fn rejected(to: Option<PhoneNumber>, at: DateTime<Utc>) -> RejectedMessage {
    RejectedMessage {
        id: MessageId::new(),
        to,
        from: "TSUNAGI".into(),
        source: crm(),
        detail: "number_type_not_allowed: `MobilePhone` is a number of type voip".into(),
        metadata: None,
        created_at: at,
    }
}

/// A refused record is a `rejected` message saying why, never a job, and its refusal waits in
/// the outbox for write-back.
pub async fn a_rejected_record_reads_back_with_its_reason_and_feeds_the_outbox(
    store: Arc<dyn Store>,
) {
    let s = store.as_ref();
    let at = now();
    let r = rejected(Some(number(7)), at);
    assert_eq!(s.reject(r.clone(), None).await.unwrap(), Acceptance::Stored);
    let got = s.message(&r.id).await.unwrap().unwrap();
    assert_eq!(got.status, JobState::Rejected);
    assert_eq!(got.to, Some(number(7)));
    assert_eq!(got.source, crm());
    assert_eq!(got.status_detail.as_deref(), Some(r.detail.as_str()));
    let events: Vec<_> = got
        .events
        .iter()
        .map(|e| (e.status, e.detail.clone()))
        .collect();
    assert_eq!(events, [(JobState::Rejected, Some(r.detail.clone()))]);
    assert!(s
        .claim("w", 10, StdDuration::from_secs(60), at + Duration::hours(1))
        .await
        .unwrap()
        .is_empty());
    let pending = s.outbox_pending("salesforce:prod", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (&pending[0].message_id, &pending[0].source),
        (&r.id, &crm())
    );
    assert_eq!(
        pending[0].payload,
        serde_json::json!({"status": "rejected", "detail": r.detail, "at": at.timestamp_millis()})
    );
}

/// A record refused for a missing or unreadable number is kept all the same, with no number.
pub async fn a_rejected_record_without_a_number_is_kept(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let r = rejected(None, now());
    assert_eq!(s.reject(r.clone(), None).await.unwrap(), Acceptance::Stored);
    let got = s.message(&r.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.to), (JobState::Rejected, None));
    assert_eq!(stored(s, Some(JobState::Rejected)).await.len(), 1);
}

/// A redelivered record stores nothing more: its dedupe key replays, before or after an
/// accepted message took it.
pub async fn a_rejected_record_is_kept_once_per_dedupe_key(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let first = rejected(None, now());
    let key = key("salesforce:prod", "h");
    assert_eq!(
        s.reject(first.clone(), Some(key.clone())).await.unwrap(),
        Acceptance::Stored
    );
    let again = s.reject(rejected(None, now()), Some(key.clone())).await;
    assert!(matches!(
        again.unwrap(),
        Acceptance::Replayed { status: 202, .. }
    ));
    let accepted = s
        .accept(message(crm()), Some(key.clone()), Hygiene::default())
        .await
        .unwrap();
    assert!(matches!(accepted, Acceptance::Replayed { .. }));
    let other = IdempotencyRecord {
        request_hash: "other".into(),
        ..key
    };
    let reused = s.reject(rejected(None, now()), Some(other)).await.unwrap();
    assert_eq!(reused, Acceptance::KeyReused);
    assert_eq!(stored(s, None).await.len(), 1);
    assert_eq!(
        s.outbox_pending("salesforce:prod", 10).await.unwrap().len(),
        1
    );
}

// Keys and the secret.

/// A key is found by its hash, and counted.
pub async fn api_keys_are_found_by_hash_and_counted(store: Arc<dyn Store>) {
    assert_eq!(store.count_api_keys().await.unwrap(), 0);
    store.create_api_key("default", "hash-1").await.unwrap();
    store.create_api_key("ci", "hash-2").await.unwrap();
    assert!(store.api_key_exists("hash-1").await.unwrap());
    assert!(!store.api_key_exists("hash-3").await.unwrap());
    assert_eq!(store.count_api_keys().await.unwrap(), 2);
}

/// Keeping a hash already kept is a conflict, and keeps nothing.
pub async fn an_api_key_hash_is_kept_once(store: Arc<dyn Store>) {
    store.create_api_key("default", "hash-1").await.unwrap();
    let again = store.create_api_key("other", "hash-1").await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.count_api_keys().await.unwrap(), 1);
}

/// The secret is made on first use and the same ever after.
pub async fn the_secret_is_made_once(store: Arc<dyn Store>) {
    let secret = store.secret().await.unwrap();
    assert!(secret.len() >= 32);
    assert_eq!(store.secret().await.unwrap(), secret);
}

/// A connection's kept refresh token is the last one kept for it, and no other's.
pub async fn a_kept_refresh_token_is_replaced_per_connection(store: Arc<dyn Store>) {
    let kept = |fingerprint: &str, sealed: &str| KeptRefreshToken {
        config_fingerprint: fingerprint.into(),
        sealed: sealed.into(),
    };
    assert_eq!(
        store.kept_refresh_token("salesforce:dev").await.unwrap(),
        None
    );
    let at = Utc::now();
    store
        .keep_refresh_token("salesforce:dev", &kept("f1", "sealed-1"), at)
        .await
        .unwrap();
    store
        .keep_refresh_token("salesforce:acme", &kept("f9", "sealed-9"), at)
        .await
        .unwrap();
    store
        .keep_refresh_token("salesforce:dev", &kept("f2", "sealed-2"), at)
        .await
        .unwrap();
    assert_eq!(
        store.kept_refresh_token("salesforce:dev").await.unwrap(),
        Some(kept("f2", "sealed-2"))
    );
    assert_eq!(
        store.kept_refresh_token("salesforce:acme").await.unwrap(),
        Some(kept("f9", "sealed-9"))
    );
}

// Health.

/// A freshly opened store is ready.
pub async fn a_fresh_store_is_ready(store: Arc<dyn Store>) {
    store.ready().await.unwrap();
}

fn link(code: &str, url: &str, expires_at: Option<DateTime<Utc>>) -> NewLink {
    NewLink {
        code: code.into(),
        url: url.into(),
        expires_at,
    }
}

fn click(code: &str, m: &NewMessage, at: DateTime<Utc>) -> NewClick {
    NewClick {
        code: code.into(),
        message_id: m.id.clone(),
        at,
        user_agent: Some("Mozilla/5.0 (iPhone)".into()),
    }
}

/// A message's links are stored with it and lead to their URLs; clicks are summed on it.
pub async fn a_messages_links_lead_to_their_urls_and_its_clicks_are_summed(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let expiry = at + Duration::days(30);
    let m = NewMessage {
        links: vec![
            link("AbCdEf1234", "https://example.jp/a?b=1&c=2", Some(expiry)),
            link("ZyXwVu9876", "https://example.jp/b", None),
        ],
        ..message_at(Source::Api, number(1), at)
    };
    accept(s, &m).await;
    assert_eq!(
        s.link("AbCdEf1234").await.unwrap(),
        Some(LinkTarget {
            message_id: m.id.clone(),
            url: "https://example.jp/a?b=1&c=2".into(),
            expires_at: Some(expiry),
        })
    );
    assert_eq!(
        s.link("ZyXwVu9876").await.unwrap().unwrap().expires_at,
        None
    );
    assert_eq!(
        s.link("abcdef1234").await.unwrap(),
        None,
        "codes are case-sensitive"
    );
    assert_eq!(
        s.message(&m.id).await.unwrap().unwrap().clicks,
        ClickSummary::default()
    );
    let (first, last) = (at + Duration::seconds(5), at + Duration::seconds(90));
    s.record_clicks(vec![
        click("ZyXwVu9876", &m, at + Duration::seconds(30)),
        click("AbCdEf1234", &m, first),
    ])
    .await
    .unwrap();
    s.record_clicks(vec![click("AbCdEf1234", &m, last)])
        .await
        .unwrap();
    let expected = ClickSummary {
        count: 3,
        first_at: Some(first),
        last_at: Some(last),
    };
    assert_eq!(s.message(&m.id).await.unwrap().unwrap().clicks, expected);
    let listed = stored(s, None).await;
    assert_eq!(listed[0].clicks, expected, "lists show clicks too");
}

/// The first click on a CRM message enters the outbox with its URL; later clicks do not, and an
/// API message's clicks never do.
pub async fn the_first_click_on_a_crm_message_enters_the_outbox_once(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let at = now();
    let crm_message = NewMessage {
        links: vec![link("CrmLink0001", "https://example.jp/r", None)],
        ..message_at(crm(), number(1), at)
    };
    let api = NewMessage {
        links: vec![link("ApiLink0001", "https://example.jp/a", None)],
        ..message_at(Source::Api, number(2), at)
    };
    accept(s, &crm_message).await;
    accept(s, &api).await;
    let later = at + Duration::seconds(10);
    s.record_clicks(vec![
        click("CrmLink0001", &crm_message, at),
        click("ApiLink0001", &api, at),
        click("CrmLink0001", &crm_message, later),
    ])
    .await
    .unwrap();
    s.record_clicks(vec![click("CrmLink0001", &crm_message, later)])
        .await
        .unwrap();
    let pending = s.outbox_pending("salesforce:prod", 100).await.unwrap();
    let clicks: Vec<_> = pending
        .iter()
        .filter(|e| e.kind == OutboxKind::Click)
        .map(|e| (e.message_id.clone(), e.payload.clone()))
        .collect();
    assert_eq!(
        clicks,
        [(
            crm_message.id.clone(),
            serde_json::json!({"url": "https://example.jp/r", "at": at.timestamp_millis()})
        )]
    );
}

/// Accept `m` and take it to `state` at `finished`.
async fn finished(store: &dyn Store, m: &NewMessage, state: JobState, finished: DateTime<Utc>) {
    sent(store, m).await;
    store
        .transition(to(&m.id, state), finished)
        .await
        .unwrap()
        .unwrap();
}

/// Usage counts messages and segments per quarter hour of their final state, and leaves out
/// messages that are not final or finished outside the range.
pub async fn usage_counts_final_messages_per_quarter_hour_and_state(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let day = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let long = |last, at| NewMessage {
        body: "あ".repeat(100),
        segmentation: Segmentation::of(&"あ".repeat(100)),
        ..message_at(Source::Api, number(last), at)
    };
    let created = day - Duration::minutes(1);
    let delivered_short = message_at(Source::Api, number(1), created);
    let delivered_long = long(2, created);
    let undelivered = message_at(Source::Api, number(3), created);
    let before = message_at(Source::Api, number(4), created);
    let pending = message_at(Source::Api, number(5), created);
    finished(
        s,
        &delivered_short,
        JobState::Delivered,
        day + Duration::minutes(1),
    )
    .await;
    finished(
        s,
        &delivered_long,
        JobState::Delivered,
        day + Duration::minutes(14),
    )
    .await;
    finished(
        s,
        &undelivered,
        JobState::Undelivered,
        day + Duration::minutes(15),
    )
    .await;
    finished(s, &before, JobState::Delivered, day - Duration::seconds(1)).await;
    sent(s, &pending).await;
    let buckets = s.usage(day, day + Duration::days(1)).await.unwrap();
    assert_eq!(
        buckets,
        [
            UsageBucket {
                start: day,
                status: JobState::Delivered,
                messages: 2,
                segments: 1 + delivered_long.segmentation.segments as i64,
            },
            UsageBucket {
                start: day + Duration::minutes(15),
                status: JobState::Undelivered,
                messages: 1,
                segments: 1,
            },
        ]
    );
}

/// Delivery facts come in finish order, page by page, with what happened after each message.
pub async fn delivery_facts_page_through_finished_messages_with_clicks_replies_and_opt_outs(
    store: Arc<dyn Store>,
) {
    let s = store.as_ref();
    let at = now();
    let clicked = NewMessage {
        links: vec![link("FactLink001", "https://example.jp/f", None)],
        ..message_at(crm(), number(1), at)
    };
    let replied = message_at(Source::Api, number(2), at);
    let scheduled_for = at + Duration::minutes(5);
    let later = NewMessage {
        send_at: Some(scheduled_for),
        status: JobState::Scheduled,
        ..message_at(Source::Otp, number(3), at)
    };
    finished(s, &clicked, JobState::Delivered, at + Duration::seconds(2)).await;
    finished(
        s,
        &replied,
        JobState::Undelivered,
        at + Duration::seconds(3),
    )
    .await;
    accept(s, &later).await;
    s.claim("w", 1, StdDuration::from_secs(60), scheduled_for)
        .await
        .unwrap();
    let on_route = Transition {
        route: Some("twilio-b".into()),
        progress: None,
        ..to(&later.id, JobState::Sent)
    };
    s.transition(on_route, scheduled_for).await.unwrap();
    s.transition(
        to(&later.id, JobState::Delivered),
        scheduled_for + Duration::seconds(4),
    )
    .await
    .unwrap()
    .unwrap();
    s.record_clicks(vec![click("FactLink001", &clicked, at)])
        .await
        .unwrap();
    s.record_reply(
        NewReply {
            from: replied.to.clone(),
            to: "TSUNAGI".into(),
            body: "停止".into(),
            at,
            provider_id: None,
        },
        Some(Consent::OptOut),
    )
    .await
    .unwrap();
    let range = (at, at + Duration::hours(1));
    let first = s.delivery_facts(range.0, range.1, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let cursor = first.last().map(|f| (f.finished_at, f.seq));
    let rest = s.delivery_facts(range.0, range.1, cursor, 2).await.unwrap();
    let facts: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|f| {
            (
                f.source.clone(),
                f.status,
                f.due_at,
                f.finished_at,
                f.clicked,
                f.replied,
                f.opted_out,
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            (
                crm(),
                JobState::Delivered,
                at,
                at + Duration::seconds(2),
                true,
                false,
                false
            ),
            (
                Source::Api,
                JobState::Undelivered,
                at,
                at + Duration::seconds(3),
                false,
                true,
                true
            ),
            (
                Source::Otp,
                JobState::Delivered,
                scheduled_for,
                scheduled_for + Duration::seconds(4),
                false,
                false,
                false
            ),
        ]
    );
    assert!(first.iter().chain(&rest).all(|f| f.sender == "TSUNAGI"));
    let routes: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|f| f.route.as_deref())
        .collect();
    assert_eq!(
        routes,
        [None, None, Some("twilio-b")],
        "the route that sent it"
    );
    assert!(s
        .delivery_facts(at + Duration::hours(1), at + Duration::hours(2), None, 10)
        .await
        .unwrap()
        .is_empty());
}

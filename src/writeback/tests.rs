use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::*;
use crate::{
    clock::SystemClock,
    domain::hygiene::Hygiene,
    domain::{
        ids::MessageId, phone::PhoneNumber, segment::Segmentation, source::Source, state::JobState,
    },
    store::{NewMessage, SqliteStore, Transition},
};

const CONNECTION: &str = "salesforce:prod";

/// A CRM that records every call and answers with the outcomes it is given.
#[derive(Default)]
struct FakeCrm {
    calls: Mutex<Vec<Vec<RecordUpdate>>>,
    /// Outcome per record; `Written` for any other.
    outcomes: Mutex<Vec<(String, Outcome)>>,
    /// Fail whole calls with this, while set.
    failing: Mutex<Option<SinkError>>,
}

#[async_trait]
impl Sink for FakeCrm {
    fn max_batch(&self) -> usize {
        200
    }

    async fn write(&self, updates: &[RecordUpdate]) -> Result<Vec<Outcome>, SinkError> {
        self.calls.lock().unwrap().push(updates.to_vec());
        if let Some(e) = self.failing.lock().unwrap().clone() {
            return Err(e);
        }
        let outcomes = self.outcomes.lock().unwrap();
        Ok(updates
            .iter()
            .map(|u| {
                outcomes
                    .iter()
                    .find(|(record, _)| *record == u.record)
                    .map_or(Outcome::Written, |(_, o)| o.clone())
            })
            .collect())
    }
}

impl FakeCrm {
    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Records written per call, with the state each showed.
    fn last_call(&self) -> Vec<(String, Option<JobState>)> {
        self.calls
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .iter()
            .map(|u| (u.record.clone(), u.status.as_ref().map(|s| s.status)))
            .collect()
    }
}

struct Setup {
    store: Arc<dyn Store>,
    crm: Arc<FakeCrm>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    Setup {
        store: Arc::new(SqliteStore::open(&url).await.unwrap()),
        crm: Arc::new(FakeCrm::default()),
        _dir: dir,
    }
}

impl Setup {
    fn worker(&self, settle: Duration) -> Worker {
        let timing = Timing {
            settle,
            fill_wait: Duration::ZERO,
            ..Timing::default()
        };
        Worker::new(
            self.store.clone(),
            self.crm.clone(),
            CONNECTION,
            timing,
            Arc::new(SystemClock),
        )
    }

    /// One message for each record, taken through `sending` to `last`.
    async fn messages(&self, records: &[String], last: JobState) -> Vec<MessageId> {
        let now = Utc::now();
        let mut ids = Vec::new();
        for record in records {
            let m = NewMessage {
                id: MessageId::new(),
                to: PhoneNumber::parse("09012345678").unwrap(),
                from: "TSUNAGI".into(),
                body: "hello".into(),
                segmentation: Segmentation::of("hello"),
                status: JobState::Queued,
                source: Source::Crm {
                    connection: CONNECTION.into(),
                    record: record.clone(),
                },
                metadata: None,
                created_at: now,
                send_at: None,
                expires_at: None,
                links: Vec::new(),
            };
            self.store
                .accept(m.clone(), None, Hygiene::default())
                .await
                .unwrap();
            ids.push(m.id);
        }
        let claimed = self
            .store
            .claim("w", records.len(), Duration::from_secs(60), now)
            .await
            .unwrap();
        assert_eq!(claimed.len(), records.len());
        for id in &ids {
            let t = Transition {
                message_id: id.clone(),
                to: last,
                detail: None,
                provider_message_id: None,
                retry_at: None,
                refund_attempt: false,
                route: None,
                progress: None,
            };
            self.store.transition(t, now).await.unwrap().unwrap();
        }
        ids
    }

    async fn pending(&self) -> usize {
        self.store
            .outbox_pending(CONNECTION, 10_000)
            .await
            .unwrap()
            .len()
    }
}

fn records(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Contact/003xx{i:013}")).collect()
}

#[tokio::test]
async fn two_hundred_fifty_delivered_records_take_two_calls_and_leave_nothing_pending() {
    let s = setup().await;
    s.messages(&records(250), JobState::Delivered).await;
    assert_eq!(s.pending().await, 500, "sending and delivered for each");
    let round = s.worker(Duration::from_secs(10)).round().await.unwrap();
    assert_eq!(round, Round::Drained);
    assert_eq!(s.crm.calls(), 2, "200 and 50 records, one write each");
    assert!(s
        .crm
        .last_call()
        .iter()
        .all(|(_, status)| *status == Some(JobState::Delivered)));
    assert_eq!(s.pending().await, 0);
}

#[tokio::test]
async fn a_state_still_settling_is_held_and_written_once_it_settles() {
    let s = setup().await;
    s.messages(&records(3), JobState::Sent).await;
    let clock = Arc::new(crate::clock::ShiftedClock::default());
    let timing = Timing {
        settle: Duration::from_secs(10),
        fill_wait: Duration::ZERO,
        ..Timing::default()
    };
    let worker = Worker::new(
        s.store.clone(),
        s.crm.clone(),
        CONNECTION,
        timing,
        clock.clone(),
    );
    worker.round().await.unwrap();
    assert_eq!(
        s.crm.calls(),
        0,
        "sent may soon be delivered: nothing written yet"
    );
    assert_eq!(s.pending().await, 6);
    clock.advance(chrono::Duration::seconds(11));
    worker.round().await.unwrap();
    assert_eq!(s.crm.calls(), 1);
    assert_eq!(s.pending().await, 0);
}

#[tokio::test]
async fn a_record_refused_for_good_is_shown_on_its_message_and_does_not_block_the_rest() {
    let s = setup().await;
    let names = records(3);
    let ids = s.messages(&names, JobState::Delivered).await;
    let refusal = "ENTITY_IS_DELETED: entity is deleted";
    s.crm
        .outcomes
        .lock()
        .unwrap()
        .push((names[1].clone(), Outcome::Failed(refusal.into())));
    s.worker(Duration::ZERO).round().await.unwrap();
    assert_eq!(s.pending().await, 0, "the refused record is not retried");
    let refused = s.store.message(&ids[1]).await.unwrap().unwrap();
    assert_eq!(refused.writeback_error.as_deref(), Some(refusal));
    let written = s.store.message(&ids[0]).await.unwrap().unwrap();
    assert_eq!(written.writeback_error, None);
}

#[tokio::test]
async fn a_locked_record_stays_pending_and_alone_is_written_in_the_next_round() {
    let s = setup().await;
    let names = records(3);
    s.messages(&names, JobState::Delivered).await;
    s.crm
        .outcomes
        .lock()
        .unwrap()
        .push((names[2].clone(), Outcome::Retry));
    let worker = s.worker(Duration::ZERO);
    worker.round().await.unwrap();
    assert_eq!(s.pending().await, 2, "the locked record's two entries wait");
    s.crm.outcomes.lock().unwrap().clear();
    worker.round().await.unwrap();
    assert_eq!(
        s.crm.last_call(),
        [(names[2].clone(), Some(JobState::Delivered))]
    );
    assert_eq!(s.pending().await, 0);
}

#[tokio::test]
async fn a_failed_call_acknowledges_nothing_and_says_how_long_to_wait() {
    let s = setup().await;
    s.messages(&records(2), JobState::Delivered).await;
    let limit = SinkError::Pause {
        reason: "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.".into(),
        after: Duration::from_secs(3600),
    };
    *s.crm.failing.lock().unwrap() = Some(limit.clone());
    let worker = s.worker(Duration::ZERO);
    match worker.round().await {
        Err(RoundError::Sink(e)) => assert_eq!(e, limit),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.pending().await, 4, "the queue is kept");
    *s.crm.failing.lock().unwrap() = None;
    worker.round().await.unwrap();
    assert_eq!(s.pending().await, 0, "and written once the CRM takes it");
}

#[tokio::test]
async fn a_second_worker_on_the_same_connection_waits_while_the_first_holds_it() {
    let s = setup().await;
    s.messages(&records(1), JobState::Delivered).await;
    let first = s.worker(Duration::ZERO);
    let second = s.worker(Duration::ZERO);
    assert_eq!(first.round().await.unwrap(), Round::Drained);
    assert_eq!(
        second.round().await.unwrap(),
        Round::Drained,
        "nothing waits: no lease is taken"
    );
    s.messages(&records(1), JobState::Delivered).await;
    assert_eq!(second.round().await.unwrap(), Round::NotOwner);
    assert_eq!(s.crm.calls(), 1);
}

#[tokio::test]
async fn a_full_read_says_more_is_waiting() {
    let s = setup().await;
    s.messages(&records(3), JobState::Delivered).await;
    let worker = Worker::new(
        s.store.clone(),
        s.crm.clone(),
        CONNECTION,
        Timing {
            settle: Duration::ZERO,
            fetch: 4,
            fill_wait: Duration::ZERO,
            ..Timing::default()
        },
        Arc::new(SystemClock),
    );
    assert_eq!(worker.round().await.unwrap(), Round::More);
    assert_eq!(worker.round().await.unwrap(), Round::Drained);
    assert_eq!(s.pending().await, 0);
}

#[tokio::test]
async fn a_part_batch_waits_to_be_filled_until_its_oldest_change_waited_long_enough() {
    let s = setup().await;
    s.messages(&records(250), JobState::Delivered).await;
    let clock = Arc::new(crate::clock::ShiftedClock::default());
    let timing = Timing {
        settle: Duration::ZERO,
        fill_wait: Duration::from_secs(30),
        ..Timing::default()
    };
    let worker = Worker::new(
        s.store.clone(),
        s.crm.clone(),
        CONNECTION,
        timing,
        clock.clone(),
    );
    worker.round().await.unwrap();
    assert_eq!(
        s.crm.calls(),
        1,
        "the full batch goes, the 50 left wait for company"
    );
    assert_eq!(s.pending().await, 100);
    worker.round().await.unwrap();
    assert_eq!(s.crm.calls(), 1);
    clock.advance(chrono::Duration::seconds(31));
    worker.round().await.unwrap();
    assert_eq!(s.crm.calls(), 2, "waited long enough: sent as a part batch");
    assert_eq!(s.pending().await, 0);
}

#[tokio::test]
async fn a_full_read_holds_nothing_back_so_later_changes_are_not_hidden() {
    let s = setup().await;
    s.messages(&records(3), JobState::Sent).await;
    let worker = Worker::new(
        s.store.clone(),
        s.crm.clone(),
        CONNECTION,
        Timing {
            settle: Duration::from_secs(3600),
            fill_wait: Duration::from_secs(3600),
            fetch: 4,
            ..Timing::default()
        },
        Arc::new(SystemClock),
    );
    assert_eq!(worker.round().await.unwrap(), Round::More);
    assert_eq!(
        s.crm.calls(),
        1,
        "written though not final and not a full batch: the read was full"
    );
    assert_eq!(worker.round().await.unwrap(), Round::Drained);
    assert_eq!(s.pending().await, 2, "the last record's entries wait again");
}

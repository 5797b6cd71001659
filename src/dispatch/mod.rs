//! The worker loop: claim due jobs with a lease, send through the provider, record the outcome.
//!
//! Exactly-once: a job is leased and its message marked `sending` in one commit before the
//! provider is called, and the outcome is committed after. Each worker renews its leases while it
//! lives (a heartbeat every third of `lease_seconds`), so a job is taken over only when its worker
//! died, by any instance, once the lease runs out. Such a job is in doubt: its worker may have
//! died before the provider call or after it, before recording the outcome. The new worker asks
//! the provider first (`Provider::already_sent`) and sends only if the provider has not got it.
//! A provider that cannot tell (SMPP, Twilio) is sent the message again, so for those a crash
//! that falls between the call and the commit of its outcome can send one message twice.

mod backoff;

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::{
    sync::{watch, Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    clock::Clock,
    config::DeliveryConfig,
    domain::state::JobState,
    providers::{OutboundSms, Provider, SendError, Sent},
    store::{ClaimedJob, Store, Transition},
    telemetry,
};

/// Jobs claimed per commit at most. One claim is in flight at a time and waits for its commit,
/// which under heavy acceptance carries hundreds of new messages: a small cap here would hold
/// delivery to a cap's worth a commit while acceptance runs ahead (64 held it to 9k/s at 25k/s
/// accepted), so one claim can fill a `concurrency` of several hundred sends.
const CLAIM_BATCH: usize = 512;
/// Jobs claimed ahead of the sends, per send slot (`delivery.concurrency`), up to `CLAIM_BATCH`.
const CLAIM_AHEAD: usize = 4;
/// Longest idle sleep between looks at the queue, unless `with_idle_poll` says otherwise.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// How often a dispatcher whose provider is not ready asks again.
const NOT_READY_POLL: Duration = Duration::from_millis(250);

/// Returns when `wakeups` changes; never without wake-ups, or once their sender is gone (the idle
/// poll still runs).
async fn woken(wakeups: &mut Option<watch::Receiver<()>>) {
    if let Some(receiver) = wakeups {
        if receiver.changed().await.is_ok() {
            return;
        }
        *wakeups = None;
    }
    std::future::pending().await
}

/// Moves jobs from the store to the provider.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    config: DeliveryConfig,
    owner: String,
    wake: Arc<Notify>,
    /// The store's wake-ups from other instances sharing the queue, taken by `run`.
    wakeups: Option<watch::Receiver<()>>,
    idle_poll: Duration,
    rate: DefaultDirectRateLimiter,
    clock: Arc<dyn Clock>,
    /// Unix milliseconds until which the heartbeat last renewed every lease of this worker.
    renewed_until: AtomicI64,
    /// Outcomes sent and not yet committed, at most `RECORDING_PER_SEND` a send slot.
    recording: Arc<Semaphore>,
}

/// Outcomes that may wait for their commit for each send slot (`delivery.concurrency`).
const RECORDING_PER_SEND: usize = 4;

impl Dispatcher {
    /// A dispatcher; `wake` is notified whenever a job is accepted in this process, the store's
    /// `wakeups` when one is accepted by another; due times are read on `clock`. Call inside a
    /// Tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        config: DeliveryConfig,
        wake: Arc<Notify>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let per_second = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let recording = Arc::new(Semaphore::new(config.concurrency * RECORDING_PER_SEND));
        Self {
            recording,
            wakeups: store.wakeups(),
            store,
            provider,
            config,
            owner: format!("worker-{}", ulid::Ulid::new()),
            wake,
            idle_poll: IDLE_POLL,
            rate: RateLimiter::direct(Quota::per_second(per_second)),
            clock,
            renewed_until: AtomicI64::new(0),
        }
    }

    /// Look at the queue at least every `idle_poll` when nothing wakes this dispatcher.
    pub fn with_idle_poll(mut self, idle_poll: Duration) -> Self {
        self.idle_poll = idle_poll;
        self
    }

    /// Run until `shutdown`, then finish the sends in flight.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut wakeups = self.wakeups.take();
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        // Jobs claimed and waiting for a send slot: the next claim is made while the sends of the
        // last are in flight, and takes several windows' worth in one commit, so a small window
        // is kept full even while each commit carries hundreds of acceptances.
        let ahead = Arc::new(Semaphore::new(
            (self.config.concurrency * CLAIM_AHEAD).min(CLAIM_BATCH),
        ));
        let lease = Duration::from_secs(self.config.lease_seconds);
        let me = Arc::new(self);
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(me.clone().heartbeat(lease, heartbeat_stop.clone()));
        let mut in_flight = JoinSet::new();
        while !shutdown.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            let free = me.claim_room(ahead.available_permits());
            if let Err(reason) = me.provider.ready() {
                // Claimed jobs could only come back; they wait in the queue, attempts unspent.
                tracing::debug!(%reason, "provider not ready; claiming nothing");
                tokio::select! {
                    _ = tokio::time::sleep(me.idle_poll.min(NOT_READY_POLL)) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            if free == 0 {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let claimed_at = me.clock.now();
            match me.store.claim(&me.owner, free, lease, claimed_at).await {
                Ok(jobs) if !jobs.is_empty() => {
                    let held_until = claimed_at + lease;
                    // Sends go out in bursts of a claim each, so the store commits each burst's
                    // records together instead of one at a time.
                    let burst = NonZeroU32::new(jobs.len() as u32).unwrap_or(NonZeroU32::MIN);
                    let _ = me.rate.until_n_ready(burst).await;
                    for job in jobs {
                        let Ok(waiting) = ahead.clone().acquire_owned().await else {
                            break;
                        };
                        let (me, permits) = (me.clone(), permits.clone());
                        in_flight.spawn(async move {
                            let Ok(permit) = permits.acquire_owned().await else {
                                return;
                            };
                            drop(waiting);
                            me.deliver_freeing(job, held_until, Some(permit)).await;
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim jobs; retrying"),
            }
            let wait = match me.store.next_due().await {
                Ok(Some(due)) => (due - me.clock.now())
                    .to_std()
                    .unwrap_or_default()
                    .min(me.idle_poll),
                _ => me.idle_poll,
            };
            tokio::select! {
                _ = me.wake.notified() => {}
                _ = woken(&mut wakeups) => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
    }

    /// How many jobs the next claim takes with room for `free` more waiting for a send: never
    /// more than the rate allows at once.
    fn claim_room(&self, free: usize) -> usize {
        free.min(CLAIM_BATCH)
            .min(self.config.rate_per_second as usize)
    }

    /// Renew this worker's leases every third of `lease` until `stop`, so that jobs in flight
    /// (waiting for the rate limit or the provider) stay this worker's for as long as it lives.
    async fn heartbeat(self: Arc<Self>, lease: Duration, stop: CancellationToken) {
        let every = lease / 3;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let until = self.clock.now() + lease;
            match self.store.renew_leases(&self.owner, until).await {
                Ok(_) => {
                    self.renewed_until
                        .fetch_max(until.timestamp_millis(), Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leases not renewed; retrying at the next beat")
                }
            }
        }
    }

    /// For a job in doubt, the provider's id for it if an earlier attempt reached the provider.
    async fn asked_before(
        &self,
        sms: &OutboundSms,
        in_doubt: bool,
    ) -> Result<Option<String>, SendError> {
        if !in_doubt {
            return Ok(None);
        }
        let found = self.provider.already_sent(sms).await?;
        match &found {
            Some(_) => {
                tracing::info!("the provider had it from the worker that stopped; not sent again")
            }
            None => {
                tracing::info!("the provider never got it from the worker that stopped; sending")
            }
        }
        Ok(found)
    }

    /// Whether this worker still holds a job claimed with a lease until `held_until`: a worker
    /// starved long enough for its heartbeat to miss the lease's end may have lost the job to
    /// another, and must not send it as well.
    fn still_holds(&self, held_until: DateTime<Utc>) -> bool {
        let renewed = self.renewed_until.load(Ordering::Relaxed);
        self.clock.now().timestamp_millis() < held_until.timestamp_millis().max(renewed)
    }

    #[cfg(test)]
    async fn deliver(&self, job: ClaimedJob, held_until: DateTime<Utc>) {
        self.deliver_freeing(job, held_until, None).await
    }

    /// Send one job and record its outcome. Its send `permit` is freed once the provider has
    /// answered, before the outcome's commit: a send slot (an SMSC window slot) waiting for a
    /// group commit would hold a small window to one window a commit. The outcomes waiting for
    /// their commit are bounded by `recording` instead.
    async fn deliver_freeing(
        &self,
        job: ClaimedJob,
        held_until: DateTime<Utc>,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let span = tracing::info_span!("deliver", message_id = %job.message_id, attempt = job.attempt, to = %job.to);
        async {
            let sms = OutboundSms {
                message_id: job.message_id.clone(),
                to: job.to.clone(),
                from: job.from.clone(),
                body: job.body.clone(),
                attempt: job.attempt,
                in_doubt_on: job.in_doubt_on.clone(),
                progress: job.progress.clone(),
                expires_at: job.expires_at,
            };
            if !self.still_holds(held_until) {
                tracing::warn!("the lease ran out before the send; the job is left to whoever takes it over");
                return;
            }
            let result = match self.asked_before(&sms, job.in_doubt).await {
                Ok(Some(id)) => Ok(Sent { id, route: None }),
                Ok(None) if sms.expires_at.is_some_and(|at| at <= self.clock.now()) => {
                    return self.record(expired(&job), self.clock.now()).await;
                }
                Ok(None) => self.provider.send_routed(&sms).await,
                Err(e) => Err(e),
            };
            let _recording = self.recording.clone().acquire_owned().await;
            drop(permit);
            let now = self.clock.now();
            let mut refund_attempt = false;
            let mut progress = None;
            // Without routes, the one provider is the route.
            let one_provider = || self.config.provider.to_string();
            let route = match &result {
                Ok(sent) => Some(sent.route.clone().unwrap_or_else(one_provider)),
                Err(SendError::InDoubt { route, .. }) => {
                    Some(route.clone().unwrap_or_else(one_provider))
                }
                Err(_) => None,
            };
            let (to, detail, provider_message_id, retry_at) = match result {
                Ok(sent) => (JobState::Sent, None, Some(sent.id), None),
                Err(SendError::Unavailable(reason)) => {
                    tracing::info!(%reason, "provider unavailable; the job waits for it");
                    refund_attempt = true;
                    // Held to a route that is down while others send, the job would be claimed
                    // again at once, over and over: it waits as a retry would.
                    let wait = job
                        .in_doubt_on
                        .is_some()
                        .then(|| now + backoff::delay(&self.config, job.attempt));
                    (
                        JobState::Queued,
                        Some(format!("waiting for the provider: {reason}")),
                        None,
                        wait,
                    )
                }
                Err(SendError::Transient {
                    reason,
                    retry_after,
                }) if (job.attempt as usize) < self.config.max_attempts => {
                    // The provider's own wait, when it names one, is a floor under the backoff.
                    let delay = backoff::delay(&self.config, job.attempt)
                        .max(retry_after.unwrap_or_default());
                    tracing::info!(%reason, retry_in_ms = delay.as_millis() as u64, "transient provider error");
                    (
                        JobState::Queued,
                        Some(format!("retrying after: {reason}")),
                        None,
                        Some(now + delay),
                    )
                }
                Err(SendError::InDoubt {
                    reason,
                    progress: left,
                    ..
                }) if (job.attempt as usize) < self.config.max_attempts => {
                    let delay = backoff::delay(&self.config, job.attempt);
                    let on = route.as_deref().unwrap_or_default();
                    tracing::warn!(%reason, route = on, retry_in_ms = delay.as_millis() as u64, "the provider may have the message; retrying on the same route only");
                    progress = left;
                    (
                        JobState::Queued,
                        Some(format!(
                            "in doubt, retrying on route {on} only: {reason}"
                        )),
                        None,
                        Some(now + delay),
                    )
                }
                Err(SendError::InDoubt { reason, .. }) => (
                    JobState::Failed,
                    Some(format!(
                        "gave up after {} attempts, the last of which may have been sent: {reason}",
                        job.attempt
                    )),
                    None,
                    None,
                ),
                Err(SendError::Transient { reason, .. }) => (
                    JobState::Failed,
                    Some(format!("gave up after {} attempts: {reason}", job.attempt)),
                    None,
                    None,
                ),
                Err(SendError::Permanent(reason) | SendError::NotOnThisRoute(reason)) => {
                    (JobState::Failed, Some(reason), None, None)
                }
            };
            let t = Transition {
                message_id: job.message_id.clone(),
                to,
                detail,
                provider_message_id,
                retry_at,
                refund_attempt,
                route,
                progress,
            };
            self.record(t, now).await;
        }
        .instrument(span)
        .await
    }

    /// Record a job's outcome.
    async fn record(&self, t: Transition, now: DateTime<Utc>) {
        let to = t.to;
        match self.store.transition(t, now).await {
            Ok(Some(applied)) => {
                tracing::info!(status = %to, "recorded");
                telemetry::state_entered(to, applied.created_at, applied.route.as_deref());
            }
            Ok(None) => tracing::debug!(status = %to, "outcome overtaken by a receipt"),
            // The lease runs out and the job is sent again, under the same message id.
            Err(e) => tracing::error!(error = %e, "outcome not recorded"),
        }
    }
}

/// The detail of a message that expired while it waited to be sent.
pub const EXPIRED: &str = "expired before it was sent";

/// A job whose expiry passed before it reached the provider: `undelivered`, as a message the
/// SMSC let expire (`EXPIRED`) is, so a CRM sees one state for an expiry wherever it happened.
fn expired(job: &ClaimedJob) -> Transition {
    let detail = if job.in_doubt || job.in_doubt_on.is_some() {
        "expired before it could be sent again; an earlier attempt may have reached the provider"
            .to_string()
    } else {
        EXPIRED.to_string()
    };
    tracing::info!(expired_at = ?job.expires_at, "expired before it was sent; not handed over");
    Transition {
        message_id: job.message_id.clone(),
        to: JobState::Undelivered,
        detail: Some(detail),
        provider_message_id: None,
        retry_at: None,
        refund_attempt: false,
        route: None,
        progress: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::{
        clock::ShiftedClock,
        domain::hygiene::Hygiene,
        domain::{ids::MessageId, phone::PhoneNumber, segment::Segmentation, source::Source},
        store::{NewMessage, SqliteStore},
    };

    /// An SQLite store in a directory of its own, kept as long as the directory.
    async fn fresh_store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        (dir, store)
    }

    /// A dispatcher of `store` sending through `provider`, woken by nothing else.
    fn dispatcher(
        store: &Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        config: DeliveryConfig,
        clock: Arc<dyn Clock>,
    ) -> Dispatcher {
        Dispatcher::new(
            store.clone(),
            provider,
            config,
            Arc::new(Notify::new()),
            clock,
        )
    }

    /// Counts sends.
    #[derive(Default)]
    struct Counting(Mutex<usize>);

    #[async_trait]
    impl Provider for Counting {
        async fn send(&self, _sms: &OutboundSms) -> Result<String, SendError> {
            *self.0.lock().unwrap() += 1;
            Ok("p-1".into())
        }
    }

    #[tokio::test]
    async fn a_worker_whose_lease_ran_out_before_the_send_leaves_the_job_unsent() {
        let (_dir, store) = fresh_store().await;
        let clock = Arc::new(ShiftedClock::default());
        let now = clock.now();
        let m = NewMessage {
            id: MessageId::new(),
            to: PhoneNumber::parse("09012345678").unwrap(),
            from: "TSUNAGI".into(),
            body: "hello".into(),
            segmentation: Segmentation::of("hello"),
            status: JobState::Queued,
            source: Source::Api,
            metadata: None,
            created_at: now,
            send_at: None,
            expires_at: None,
            links: Vec::new(),
        };
        store.accept(m, None, Hygiene::default()).await.unwrap();
        let provider = Arc::new(Counting::default());
        let config = DeliveryConfig::default();
        let lease = Duration::from_secs(config.lease_seconds);
        let dispatcher = dispatcher(&store, provider.clone(), config, clock.clone());
        let mut jobs = store.claim(&dispatcher.owner, 1, lease, now).await.unwrap();
        // Starved past its lease: by now another worker may have taken the job.
        clock.advance(chrono::Duration::seconds(61));
        dispatcher.deliver(jobs.remove(0), now + lease).await;
        assert_eq!(
            *provider.0.lock().unwrap(),
            0,
            "sent by a worker that lost it"
        );
    }

    #[tokio::test]
    async fn a_claim_takes_a_job_for_every_free_send_up_to_the_rate() {
        let (_dir, store) = fresh_store().await;
        let dispatcher = |rate_per_second| {
            dispatcher(
                &store,
                Arc::new(Counting::default()),
                DeliveryConfig {
                    concurrency: 1000,
                    rate_per_second,
                    ..DeliveryConfig::default()
                },
                Arc::new(ShiftedClock::default()),
            )
        };
        let fast = dispatcher(100_000);
        assert_eq!(fast.claim_room(500), 500, "a wide window claimed in pieces");
        assert_eq!(fast.claim_room(3), 3);
        assert_eq!(fast.claim_room(1000), CLAIM_BATCH);
        assert_eq!(
            dispatcher(30).claim_room(500),
            30,
            "claimed beyond the rate"
        );
    }

    /// A provider that cannot send at all (not bound) until `bound` is set.
    #[derive(Default)]
    struct Unbound {
        bound: std::sync::atomic::AtomicBool,
        sends: Mutex<usize>,
    }

    #[async_trait]
    impl Provider for Unbound {
        async fn send(&self, _sms: &OutboundSms) -> Result<String, SendError> {
            *self.sends.lock().unwrap() += 1;
            if self.bound.load(Ordering::Relaxed) {
                Ok("p-1".into())
            } else {
                Err(SendError::Unavailable(
                    "bind refused: ESME_RINVPASWD".into(),
                ))
            }
        }

        fn ready(&self) -> Result<(), String> {
            if self.bound.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("bind refused: ESME_RINVPASWD".into())
            }
        }
    }

    async fn one_queued(store: &Arc<dyn Store>, clock: &ShiftedClock) -> MessageId {
        queued(store, clock, None).await
    }

    async fn queued(
        store: &Arc<dyn Store>,
        clock: &ShiftedClock,
        expires_at: Option<DateTime<Utc>>,
    ) -> MessageId {
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
            expires_at,
            links: Vec::new(),
        };
        store.accept(m, None, Hygiene::default()).await.unwrap();
        id
    }

    #[tokio::test]
    async fn a_message_whose_expiry_passed_while_queued_is_never_handed_to_the_provider() {
        let (_dir, store) = fresh_store().await;
        let clock = Arc::new(ShiftedClock::default());
        let expires_at = clock.now() + chrono::Duration::minutes(5);
        let id = queued(&store, &clock, Some(expires_at)).await;
        let provider = Arc::new(Counting::default());
        let config = DeliveryConfig::default();
        let lease = Duration::from_secs(config.lease_seconds);
        let dispatcher = dispatcher(&store, provider.clone(), config, clock.clone());
        clock.advance(chrono::Duration::minutes(5));
        let now = clock.now();
        let mut jobs = store.claim(&dispatcher.owner, 1, lease, now).await.unwrap();
        dispatcher.deliver(jobs.remove(0), now + lease).await;
        assert_eq!(*provider.0.lock().unwrap(), 0, "sent after it expired");
        let m = store.message(&id).await.unwrap().unwrap();
        assert_eq!(
            (m.status, m.status_detail.as_deref()),
            (JobState::Undelivered, Some(EXPIRED))
        );
    }

    #[tokio::test]
    async fn a_provider_that_cannot_send_puts_the_job_back_without_spending_an_attempt() {
        let (_dir, store) = fresh_store().await;
        let clock = Arc::new(ShiftedClock::default());
        let id = one_queued(&store, &clock).await;
        let provider = Arc::new(Unbound::default());
        let config = DeliveryConfig {
            max_attempts: 2,
            ..DeliveryConfig::default()
        };
        let lease = Duration::from_secs(config.lease_seconds);
        let dispatcher = dispatcher(&store, provider.clone(), config, clock.clone());
        // More tries than attempts allowed: none of them counts.
        for _ in 0..3 {
            let now = clock.now();
            let mut jobs = store.claim(&dispatcher.owner, 1, lease, now).await.unwrap();
            let job = jobs.remove(0);
            assert_eq!(job.attempt, 1, "an unavailable provider spent an attempt");
            dispatcher.deliver(job, now + lease).await;
            let m = store.message(&id).await.unwrap().unwrap();
            assert_eq!(m.status, JobState::Queued);
            assert_eq!(
                m.status_detail.as_deref(),
                Some("waiting for the provider: bind refused: ESME_RINVPASWD")
            );
        }
        assert_eq!(*provider.sends.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_job_held_to_a_route_that_cannot_send_waits_instead_of_coming_straight_back() {
        let (_dir, store) = fresh_store().await;
        let clock = Arc::new(ShiftedClock::default());
        one_queued(&store, &clock).await;
        let dispatcher = dispatcher(
            &store,
            Arc::new(Unbound::default()),
            DeliveryConfig::default(),
            clock.clone(),
        );
        let lease = Duration::from_secs(60);
        let now = clock.now();
        let mut job = store
            .claim(&dispatcher.owner, 1, lease, now)
            .await
            .unwrap()
            .remove(0);
        job.in_doubt_on = Some("smpp-a".into());
        dispatcher.deliver(job, now + lease).await;
        let due = store.next_due().await.unwrap().expect("still queued");
        assert!(due > now, "claimed again at once: due {due}, now {now}");
        assert!(store
            .claim(&dispatcher.owner, 1, lease, now)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn nothing_is_claimed_while_the_provider_is_not_ready() {
        let (_dir, store) = fresh_store().await;
        let clock = Arc::new(ShiftedClock::default());
        let id = one_queued(&store, &clock).await;
        let provider = Arc::new(Unbound::default());
        let dispatcher = dispatcher(
            &store,
            provider.clone(),
            DeliveryConfig::default(),
            clock.clone(),
        )
        .with_idle_poll(Duration::from_millis(20));
        let stop = CancellationToken::new();
        let running = tokio::spawn(dispatcher.run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(*provider.sends.lock().unwrap(), 0);
        assert_eq!(
            store.message(&id).await.unwrap().unwrap().status,
            JobState::Queued
        );
        provider.bound.store(true, Ordering::Relaxed);
        let mut sent = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if store.message(&id).await.unwrap().unwrap().status == JobState::Sent {
                sent = true;
                break;
            }
        }
        stop.cancel();
        running.await.unwrap();
        assert!(sent, "not sent once the provider was ready");
        assert_eq!(*provider.sends.lock().unwrap(), 1);
    }
}

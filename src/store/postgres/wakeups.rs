//! Wake-ups from the instances sharing the queue: migration 0002's triggers NOTIFY
//! `tsunagi_jobs` in the transaction that accepts a message or hands a job back for a retry, and
//! each instance LISTENs on one connection of its own (not one of the pool's), feeding a `watch`
//! channel its dispatcher waits on beside its in-process wake and idle poll.
//!
//! Each notification carries the `application_name` of the session that sent it, which names
//! the instance (see `PostgresStore::open_with`); an instance skips its own, since whatever
//! made them woke its dispatcher in process already.
//!
//! The listener starts when the first dispatcher subscribes (a `migrate` or `keys create` run
//! opens none) and stops when the store drops. A lost connection is made again, backing off
//! while the server is unreachable; notifications sent meanwhile are lost, so every (re)connect
//! is itself a wake-up and the dispatcher looks at the queue once more.

use std::{sync::OnceLock, time::Duration};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The channel migration 0002's triggers notify.
pub(super) const CHANNEL: &str = "tsunagi_jobs";
/// First wait before connecting again after a failure; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wake-ups of one store: nothing runs until `subscribe`.
pub(super) struct Wakeups {
    options: PgConnectOptions,
    connect_timeout: Duration,
    /// This instance's `application_name`.
    instance: String,
    running: OnceLock<Running>,
}

struct Running {
    sender: watch::Sender<()>,
    _stop: DropGuard,
}

impl Wakeups {
    /// Wake-ups from the server `options` names, except those of `instance`; a connection
    /// attempt gives up after `connect_timeout` (and is tried again).
    pub(super) fn new(
        options: PgConnectOptions,
        connect_timeout: Duration,
        instance: String,
    ) -> Self {
        Self {
            options,
            connect_timeout,
            instance,
            running: OnceLock::new(),
        }
    }

    /// A receiver that changes whenever work may have joined the queue; starts the listener on
    /// the first call, which must be inside a Tokio runtime.
    pub(super) fn subscribe(&self) -> watch::Receiver<()> {
        self.running
            .get_or_init(|| {
                let (sender, _) = watch::channel(());
                // A pool of one connection, for its reconnecting; the store's pool keeps all of
                // its connections for requests and workers.
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(self.connect_timeout)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_lazy_with(self.options.clone());
                let stop = CancellationToken::new();
                tokio::spawn(listen(
                    pool,
                    self.instance.clone(),
                    sender.clone(),
                    stop.clone(),
                ));
                Running {
                    sender,
                    _stop: stop.drop_guard(),
                }
            })
            .sender
            .subscribe()
    }
}

/// LISTEN until `stop`, passing every notification but `instance`'s own (and every reconnect)
/// on to `sender`.
async fn listen(
    pool: PgPool,
    instance: String,
    sender: watch::Sender<()>,
    stop: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = connect(&pool) => connected,
        };
        match connected {
            Ok(mut listener) => {
                // Whatever was accepted while no one listened is looked for now.
                sender.send_replace(());
                backoff = MIN_BACKOFF;
                loop {
                    let received = tokio::select! {
                        _ = stop.cancelled() => return,
                        received = listener.try_recv() => received,
                    };
                    match received {
                        Ok(Some(notification)) => {
                            if notification.payload() != instance {
                                sender.send_replace(());
                            }
                        }
                        // The connection dropped and was made again: notifications in between
                        // are lost.
                        Ok(None) => {
                            tracing::info!("job wake-ups reconnected");
                            sender.send_replace(());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "job wake-ups lost; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_ms = backoff.as_millis() as u64,
                "cannot listen for job wake-ups; the idle poll finds new jobs meanwhile"
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use chrono::Utc;
    use tokio::sync::{mpsc, Notify};

    use super::{
        super::{tests::TestDatabase, PostgresStore},
        *,
    };
    use crate::{
        clock::SystemClock,
        config::DeliveryConfig,
        dispatch::Dispatcher,
        domain::hygiene::Hygiene,
        domain::{
            ids::MessageId, phone::PhoneNumber, segment::Segmentation, source::Source,
            state::JobState,
        },
        providers::{OutboundSms, Provider, SendError},
        store::{MessageStore, NewMessage, QueueStore, Transition},
    };

    const SOON: Duration = Duration::from_secs(5);

    fn message() -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            to: PhoneNumber::parse("090-1234-5678").unwrap(),
            from: "TSUNAGI".into(),
            body: "hello".into(),
            segmentation: Segmentation::of("hello"),
            status: JobState::Queued,
            source: Source::Api,
            metadata: None,
            created_at: Utc::now(),
            send_at: None,
            expires_at: None,
            links: Vec::new(),
        }
    }

    /// Two instances on one fresh database, or `None` without a server.
    async fn two() -> Option<(PostgresStore, PostgresStore, TestDatabase)> {
        let db = TestDatabase::create().await?;
        let a = PostgresStore::open(db.url()).await.unwrap();
        let b = PostgresStore::open(db.url()).await.unwrap();
        Some((a, b, db))
    }

    /// A receiver of `store`'s wake-ups, once its listener is connected.
    async fn listening(store: &PostgresStore) -> watch::Receiver<()> {
        let mut wakeups = store.wakeups().unwrap();
        // Connecting is itself a wake-up: whatever came before it is looked for.
        tokio::time::timeout(SOON, wakeups.changed())
            .await
            .expect("the listener connects")
            .unwrap();
        wakeups
    }

    async fn woken(wakeups: &mut watch::Receiver<()>, within: Duration) -> bool {
        tokio::time::timeout(within, wakeups.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_accept_or_a_retry_wakes_the_other_instances_and_a_claim_does_not() {
        let Some((a, b, _db)) = two().await else {
            return;
        };
        let mut b_wakeups = listening(&b).await;
        let mut a_wakeups = listening(&a).await;

        let m = message();
        a.accept(m.clone(), None, Hygiene::default()).await.unwrap();
        assert!(woken(&mut b_wakeups, SOON).await, "B hears A's accept");
        let quiet = Duration::from_millis(300);
        assert!(
            !woken(&mut a_wakeups, quiet).await,
            "A does not hear itself: its dispatcher was woken in process"
        );

        let later = NewMessage {
            status: JobState::Scheduled,
            send_at: Some(Utc::now() + chrono::Duration::hours(1)),
            ..message()
        };
        a.accept(later, None, Hygiene::default()).await.unwrap();
        assert!(
            !woken(&mut b_wakeups, quiet).await,
            "a message due after the next idle look wakes no one"
        );

        let jobs = b
            .claim("worker-b", 10, Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(!woken(&mut a_wakeups, quiet).await, "a claim wakes no one");

        let retry = Transition {
            message_id: m.id.clone(),
            to: JobState::Queued,
            detail: Some("retrying after: busy".into()),
            provider_message_id: None,
            retry_at: Some(Utc::now() + chrono::Duration::milliseconds(100)),
            refund_attempt: false,
            route: None,
            progress: None,
        };
        b.transition(retry, Utc::now()).await.unwrap().unwrap();
        assert!(woken(&mut a_wakeups, SOON).await, "A hears B's retry");

        let jobs = b
            .claim(
                "worker-b",
                10,
                Duration::from_secs(60),
                Utc::now() + chrono::Duration::seconds(1),
            )
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        let sent = Transition {
            message_id: m.id,
            to: JobState::Sent,
            detail: None,
            provider_message_id: Some("p-1".into()),
            retry_at: None,
            refund_attempt: false,
            route: None,
            progress: None,
        };
        b.transition(sent, Utc::now()).await.unwrap().unwrap();
        assert!(!woken(&mut a_wakeups, quiet).await, "nor does a send");
    }

    /// Hands each message id on to the test.
    struct Recording(mpsc::UnboundedSender<MessageId>);

    #[async_trait]
    impl Provider for Recording {
        async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
            let _ = self.0.send(sms.message_id.clone());
            Ok(format!("p-{}", sms.message_id))
        }
    }

    #[tokio::test]
    async fn a_dispatcher_claims_what_another_instance_accepted_without_waiting_for_its_poll() {
        let Some((a, b, _db)) = two().await else {
            return;
        };
        let (sent, mut sends) = mpsc::unbounded_channel();
        let idle_poll = Duration::from_secs(60);
        let dispatcher = Dispatcher::new(
            Arc::new(b),
            Arc::new(Recording(sent)),
            DeliveryConfig::default(),
            // Nothing in B's process is accepted: only A's NOTIFY can wake it.
            Arc::new(Notify::new()),
            Arc::new(SystemClock),
        )
        .with_idle_poll(idle_poll);
        let stop = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(dispatcher.run(stop.clone()));
        // Let B's dispatcher look at the empty queue (and again once its listener connects) and
        // settle into its idle wait.
        tokio::time::sleep(Duration::from_millis(500)).await;

        for _ in 0..3 {
            let m = message();
            let accepted = std::time::Instant::now();
            a.accept(m.clone(), None, Hygiene::default()).await.unwrap();
            let claimed = tokio::time::timeout(SOON, sends.recv())
                .await
                .expect("B's dispatcher claims well before its 60 s idle poll");
            assert_eq!(claimed, Some(m.id));
            assert!(accepted.elapsed() < SOON);
        }
        stop.cancel();
        running.await.unwrap();
    }
}

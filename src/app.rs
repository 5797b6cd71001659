//! Assemble and run the service: store, dispatcher, provider, HTTP server.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, auth},
    clock::{Clock, SystemClock},
    config::{Config, OnError, Secret},
    dispatch::Dispatcher,
    domain::phone::SenderId,
    inbound,
    links::{ClickRecorder, LinkResolver},
    messaging::{Admission, OtpSettings},
    numbers,
    otp::CodeKey,
    providers::{self, Events, Provider},
    store::{self, Hygiene, Store},
    telemetry,
    writeback::{self, warnings::SetupWarnings},
};

/// How long idempotency keys are kept: the API promises at least 24 h, and Salesforce redelivers
/// an Outbound Message notification (deduplicated on its `Id`) for up to 24 h.
const IDEMPOTENCY_RETENTION: chrono::Duration = chrono::Duration::hours(48);
/// How often recorded histogram samples are folded into their buckets between scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// A started service.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The API key made on first start, when none existed.
    pub created_key: Option<String>,
    http_stop: CancellationToken,
    workers_stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
    wake: Arc<Notify>,
    provider: Arc<dyn Provider>,
    poll_nudges: inbound::reconcile::PollNudges,
}

/// Wraps the configured provider, e.g. to count its calls in a test.
pub type ProviderWrapper = Box<dyn FnOnce(Arc<dyn Provider>) -> Arc<dyn Provider> + Send>;

/// How to start beyond the config: the clock, and a way for tests to wrap the provider.
pub struct Options {
    /// Time for schedules, retries, expiry, cool-downs and the breaker.
    pub clock: Arc<dyn Clock>,
    /// Wraps the configured provider (a test counts its calls).
    pub wrap_provider: Option<ProviderWrapper>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            wrap_provider: None,
        }
    }
}

impl Running {
    /// Make the dispatcher, the provider and the kintone pollers look for due work now (after
    /// the clock moved).
    pub fn nudge(&self) {
        self.wake.notify_one();
        self.provider.nudge();
        self.poll_nudges.clock_moved();
    }

    /// Stop taking requests, finish those in flight, then drain the dispatcher.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.http_stop.cancel();
        self.server.await??;
        self.workers_stop.cancel();
        for worker in self.workers {
            worker.await?;
        }
        Ok(())
    }
}

/// Create and keep a new API key, returning it (the only time it is seen).
pub async fn create_key(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    let key = auth::generate_key();
    store.create_api_key(name, &auth::hash_key(&key)).await?;
    Ok(key)
}

/// Open the store, start the workers and serve HTTP.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, Options::default()).await
}

/// `start`, with the clock and provider `options` give.
pub async fn start_with(config: Config, options: Options) -> anyhow::Result<Running> {
    let clock = options.clock;
    telemetry::metrics_handle();
    let store = store::open_with(&config.database_url, &config.database.connections())
        .await
        .with_context(|| format!("opening the store at {}", config.database()))?;
    let created_key = if config.api.keys.is_empty() && store.count_api_keys().await? == 0 {
        Some(create_key(store.as_ref(), "default").await?)
    } else {
        None
    };
    let listener = TcpListener::bind(config.listen_addr())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;

    let http_stop = CancellationToken::new();
    let workers_stop = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let mut provider = providers::from_config(&config, store.clone(), clock.clone())?;
    if let Some(wrap) = options.wrap_provider {
        provider = wrap(provider);
    }
    let events = Events::new(store.clone(), clock.clone())
        .with_keywords(config.opt_outs.keywords())
        .with_connection_keywords(config.connection_keywords());
    let mut workers = provider.start(events.clone(), workers_stop.clone());
    workers.push(events.start(workers_stop.clone()));
    let dispatcher = Dispatcher::new(
        store.clone(),
        provider.clone(),
        config.delivery.clone(),
        wake.clone(),
        clock.clone(),
    );
    workers.push(tokio::spawn(dispatcher.run(workers_stop.clone())));
    workers.push(tokio::spawn(purge_expired(
        store.clone(),
        clock.clone(),
        workers_stop.clone(),
    )));
    workers.push(tokio::spawn(metrics_upkeep(workers_stop.clone())));
    let secret = match &config.secret {
        Some(secret) => secret.expose().to_string(),
        None => store.secret().await?,
    };
    let setup_warnings = SetupWarnings::default();
    workers.extend(
        writeback::connections::start(
            &config,
            &store,
            &clock,
            &secret,
            &setup_warnings,
            &workers_stop,
        )
        .await?,
    );

    let default_from = SenderId::parse(config.default_sender())
        .context("the default sender is not a sender id")?;
    let senders = config
        .delivery
        .senders
        .iter()
        .map(|s| SenderId::parse(s).map(|id| id.as_str().to_string()))
        .collect::<Result<Vec<_>, _>>()
        .context("delivery.senders holds a bad sender id")?;
    let history = numbers::from_config(&config.numbers.history, store.clone())?;
    let admission = Admission {
        store: store.clone(),
        history,
        wake: wake.clone(),
        wake_ahead: crate::dispatch::IDLE_POLL,
        policy: config.numbers.policy(),
        default_from,
        senders,
        max_characters: config.delivery.max_characters,
        hygiene: Hygiene {
            allow_list_only: config.numbers.allow_list_only,
            honour_opt_outs: true,
        },
        opt_outs: config.opt_outs.clone(),
        links: config.links.rules(&config.public_base_url),
        allow_on_history_error: config.numbers.history.on_error == OnError::Allow,
        otp: OtpSettings {
            config: config.otp.clone(),
            policy: config.otp.policy(),
            key: CodeKey::new(&secret),
        },
        clock,
    };
    let (clicks, recorder) = ClickRecorder::start(store.clone(), workers_stop.clone());
    let links = LinkResolver::new(store.clone());
    workers.push(recorder);
    let poll_nudges = inbound::reconcile::PollNudges::for_config(&config);
    let state = api::AppState::new(api::Shared {
        store,
        keys: auth::KeyRing::new(config.api.keys.iter().map(Secret::expose)),
        config,
        admission: Arc::new(admission),
        events,
        provider: provider.clone(),
        clicks,
        links,
        setup_warnings,
        poll_nudges,
    });
    let poller_parts = inbound::reconcile::PollerParts {
        intake: inbound::kintone_intake::KintoneIntake::of(&state),
        store: state.store.clone(),
        events: state.events.clone(),
        warnings: state.setup_warnings.clone(),
        nudges: state.poll_nudges.clone(),
    };
    workers.extend(inbound::reconcile::start(
        &state.config.kintone,
        &poller_parts,
        &workers_stop,
    )?);
    let poll_nudges = state.poll_nudges.clone();
    let app = api::router(state);
    let stop = http_stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(Running {
        addr,
        created_key,
        http_stop,
        workers_stop,
        server,
        workers,
        wake,
        provider,
        poll_nudges,
    })
}

/// Hourly, forget what is kept for a while only: idempotency keys, and the answers kintone
/// notifications were given.
async fn purge_expired(store: Arc<dyn Store>, clock: Arc<dyn Clock>, stop: CancellationToken) {
    loop {
        let now = clock.now();
        match store.purge_idempotency(now - IDEMPOTENCY_RETENTION).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency keys removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency keys not purged"),
        }
        match store
            .purge_notifications(now - store::NOTIFICATIONS_KEPT)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired kintone notifications removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "kintone notifications not purged"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// The recorder keeps every histogram sample (24 bytes with its timestamp) until it is folded into
/// buckets, otherwise only at a scrape: without a scraper, memory would grow with every message.
async fn metrics_upkeep(stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(METRICS_UPKEEP) => telemetry::metrics_handle().run_upkeep(),
        }
    }
}

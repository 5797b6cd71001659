//! The HTTP surface: router, authentication, one file per resource.

pub mod auth;
pub(crate) mod body;
pub mod links;
pub mod messages;
pub mod numbers;
pub mod openapi;
mod ops;
pub mod opt_outs;
pub mod otp;
mod paging;
pub mod problem;
pub mod reports;
pub mod sandbox;
pub mod usage;
pub mod writebacks;

use std::{ops::Deref, sync::Arc};

use axum::{
    extract::DefaultBodyLimit,
    middleware,
    routing::{delete, get, post},
    Router,
};

use crate::{
    config::Config,
    inbound::{
        external_services, kintone, kintone_notifications, record_action, salesforce, twilio,
    },
    messaging::Admission,
    providers::{Events, Provider},
    store::Store,
};

/// What every handler shares; one pointer to clone per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The shared parts.
pub struct Shared {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The validated configuration.
    pub config: Config,
    /// Known API keys.
    pub keys: auth::KeyRing,
    /// The one admission path for messages and codes.
    pub admission: Arc<Admission>,
    /// Where receipts and inbound messages are recorded (the sandbox's simulated replies too).
    pub events: Events,
    /// The provider that sends, asked by `/readyz` whether it can.
    pub provider: Arc<dyn Provider>,
    /// Where short-link clicks are queued for their commit.
    pub clicks: crate::links::ClickRecorder,
    /// Where short links lead.
    pub links: crate::links::LinkResolver,
    /// What the CRM connections' setup checks found, shown by `/readyz`.
    pub setup_warnings: crate::writeback::warnings::SetupWarnings,
    /// What wakes each kintone connection's poller when its webhooks come.
    pub poll_nudges: crate::inbound::reconcile::PollNudges,
}

impl AppState {
    /// Share `shared` between handlers.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Largest request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let mut v1 = Router::new()
        .route("/v1/messages", post(messages::create).get(messages::list))
        .route(
            "/v1/messages/{id}",
            get(messages::show).delete(messages::cancel),
        )
        .route("/v1/otp", post(otp::start))
        .route("/v1/otp/{id}", get(otp::show))
        .route("/v1/otp/{id}/check", post(otp::check))
        .route("/v1/otp/{id}/verify", post(otp::verify))
        .route("/v1/numbers/{list}", get(numbers::list).post(numbers::add))
        .route("/v1/opt-outs", get(opt_outs::list).post(opt_outs::add))
        .route("/v1/opt-outs/{number}", delete(opt_outs::remove))
        .route("/v1/opt-outs/review", get(opt_outs::reviews))
        .route("/v1/opt-outs/review/{id}", post(opt_outs::settle))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/reports/delivery", get(reports::delivery))
        .route("/v1/writebacks", get(writebacks::list))
        .route(
            "/v1/salesforce/{name}/records",
            post(record_action::send_for_record),
        )
        .route(
            "/v1/inbound/kintone/{name}/notifications/{id}",
            get(kintone_notifications::show),
        )
        .route(
            "/v1/numbers/{list}/{number}",
            get(numbers::show).delete(numbers::remove),
        );
    if state.config.delivery.provider == crate::config::Provider::Sandbox {
        v1 = v1
            .route("/v1/sandbox/inbox", get(sandbox::inbox))
            .route("/v1/sandbox/reply", post(sandbox::reply));
    }
    let v1 = v1.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_api_key,
    ));
    // Inbound routes carry their secret in the path, so they sit outside the API-key layer; each
    // takes bodies as large as its sender sends. The External Services document holds no secret
    // and needs none.
    let inbound = Router::new()
        .route(
            "/v1/inbound/salesforce/{name}/outbound-message/{inbound_token}",
            post(salesforce::outbound_message)
                .layer(DefaultBodyLimit::max(salesforce::OUTBOUND_MESSAGE_LIMIT)),
        )
        .route(
            "/v1/inbound/salesforce/{name}/flow/{inbound_token}",
            post(salesforce::flow).layer(DefaultBodyLimit::max(salesforce::FLOW_LIMIT)),
        )
        .route(
            "/v1/inbound/salesforce/{name}/openapi.json",
            get(external_services::openapi),
        )
        .route(
            "/v1/inbound/kintone/{name}/{inbound_token}",
            post(kintone::webhook).layer(DefaultBodyLimit::max(kintone::WEBHOOK_LIMIT)),
        )
        // Twilio signs these instead; without [providers.twilio] they answer 404.
        .route(
            "/v1/inbound/twilio/status",
            post(twilio::status).layer(DefaultBodyLimit::max(twilio::CALLBACK_LIMIT)),
        )
        .route(
            "/v1/inbound/twilio/sms",
            post(twilio::sms).layer(DefaultBodyLimit::max(twilio::CALLBACK_LIMIT)),
        );
    Router::new()
        .merge(v1)
        .merge(inbound)
        .route("/s/{code}", get(links::redirect))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

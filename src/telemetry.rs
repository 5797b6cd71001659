//! Prometheus metrics (all prefixed `tsunagi_`) and the log subscriber.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::state::JobState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

/// Write-back takes seconds, not milliseconds: its latency has buckets of its own.
const WRITEBACK_BUCKETS: [f64; 13] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// The process-wide recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // A full name is matched before a suffix.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("buckets are not empty")
            .set_buckets_for_metric(
                Matcher::Full("tsunagi_writeback_latency_seconds".into()),
                &WRITEBACK_BUCKETS,
            )
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // A second install (another server in the same test process) keeps the first recorder.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// A message was accepted, taking `seconds` from request to durable commit.
pub fn accepted(seconds: f64) {
    metrics::counter!("tsunagi_messages_accepted_total").increment(1);
    metrics::histogram!("tsunagi_ingest_seconds").record(seconds);
}

/// A message entered `state`; `created_at` dates its acceptance, `route` names the route that
/// sent it, once one did.
pub fn state_entered(state: JobState, created_at: DateTime<Utc>, route: Option<&str>) {
    metrics::counter!("tsunagi_message_outcomes_total", "status" => state.as_str()).increment(1);
    if state.is_final() || state == JobState::Sent {
        let seconds = (Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("tsunagi_delivery_seconds", "status" => state.as_str()).record(seconds);
        if let (Some(route), true) = (route, state.is_final()) {
            let route = route.to_string();
            metrics::counter!("tsunagi_route_outcomes_total", "route" => route.clone(), "status" => state.as_str())
                .increment(1);
            metrics::histogram!("tsunagi_route_delivery_seconds", "route" => route, "status" => state.as_str())
                .record(seconds);
        }
    }
}

/// Figures read from the store at scrape time.
#[derive(Debug, Default)]
pub struct ScrapeGauges {
    /// Jobs waiting or in flight.
    pub queue_depth: Option<i64>,
    /// Verified share of the last hour's codes, when any were sent.
    pub otp_conversion: Option<f64>,
    /// Number ranges the pumping breaker has paused.
    pub otp_blocked_prefixes: Option<i64>,
    /// Replies held for review and not yet settled.
    pub opt_out_reviews_open: Option<i64>,
}

/// The Prometheus text with `gauges` set.
pub fn render(gauges: ScrapeGauges) -> String {
    // Gauges are process-wide: setting and rendering under one lock keeps two stores scraped
    // at once (several servers in one test process) from showing each other's figures.
    static SCRAPE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SCRAPE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(depth) = gauges.queue_depth {
        metrics::gauge!("tsunagi_queue_depth").set(depth as f64);
    }
    if let Some(conversion) = gauges.otp_conversion {
        metrics::gauge!("tsunagi_otp_conversion_ratio").set(conversion);
    }
    if let Some(blocked) = gauges.otp_blocked_prefixes {
        metrics::gauge!("tsunagi_otp_blocked_prefixes").set(blocked as f64);
    }
    if let Some(open) = gauges.opt_out_reviews_open {
        metrics::gauge!("tsunagi_opt_out_reviews_open").set(open as f64);
    }
    metrics_handle().render()
}

/// A CRM record came in on `connection` (`salesforce:prod`) and ended as `outcome`: accepted,
/// rejected, replayed (a redelivery) or unavailable (not taken; the sender retries).
pub fn inbound_record(connection: &str, outcome: &'static str) {
    metrics::counter!(
        "tsunagi_inbound_records_total",
        "connection" => connection.to_string(),
        "outcome" => outcome
    )
    .increment(1);
}

/// A hook counting a kintone connection's requests by API path, in
/// `tsunagi_kintone_api_calls_total{connection, api}`: kintone allows 10,000 a day per app.
pub fn kintone_calls(connection: &str) -> tsunagi_kintone::CallHook {
    let connection = connection.to_string();
    tsunagi_kintone::CallHook::new(move |api| {
        let api = api.trim_end_matches(".json").to_string();
        metrics::counter!("tsunagi_kintone_api_calls_total", "connection" => connection.clone(), "api" => api)
            .increment(1);
    })
}

/// An OTP was sent.
pub fn otp_sent() {
    metrics::counter!("tsunagi_otp_sends_total").increment(1);
}

/// An OTP send was refused by a limit.
pub fn otp_refused() {
    metrics::counter!("tsunagi_otp_refused_total").increment(1);
}

/// The pumping breaker paused a number range.
pub fn otp_breaker_tripped() {
    metrics::counter!("tsunagi_otp_breaker_trips_total").increment(1);
}

/// An OTP check ended with `outcome` (never the code itself).
pub fn otp_checked(outcome: &'static str) {
    metrics::counter!("tsunagi_otp_checks_total", "outcome" => outcome).increment(1);
}

/// Log to stderr; `RUST_LOG` filters, `info` by default.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

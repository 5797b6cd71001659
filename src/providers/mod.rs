//! Who actually sends: one `Provider` trait, one file per provider, chosen by `from_config`.

mod events;
mod parts;
pub mod routes;
pub mod sandbox;
pub mod smpp;
pub mod twilio;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::events::Events;
pub use crate::store::PartReceipt;
use crate::{
    clock::Clock,
    config::{self, Config},
    domain::{ids::MessageId, phone::PhoneNumber},
    store::Store,
};

/// A message handed to a provider.
#[derive(Clone, Debug)]
pub struct OutboundSms {
    /// Our id; providers that take an idempotency key get this one.
    pub message_id: MessageId,
    /// Recipient.
    pub to: PhoneNumber,
    /// Sender id.
    pub from: String,
    /// Body.
    pub body: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The route an earlier attempt may have reached (`SendError::InDoubt`): the message goes
    /// on that route only, never to another.
    pub in_doubt_on: Option<String>,
    /// What that attempt left for the provider to resume from (`SendError::InDoubt`'s
    /// `progress`), such as the parts already accepted.
    pub progress: Option<String>,
    /// When the message stops being worth delivering: providers ask the network to drop it
    /// then (SMPP `validity_period`, Twilio `ValidityPeriod`), so a code never arrives expired.
    pub expires_at: Option<DateTime<Utc>>,
}

impl OutboundSms {
    /// A first attempt at sending `body` from `from` to `to`.
    pub fn new(message_id: MessageId, to: PhoneNumber, from: String, body: String) -> Self {
        Self {
            message_id,
            to,
            from,
            body,
            attempt: 1,
            in_doubt_on: None,
            progress: None,
            expires_at: None,
        }
    }
}

impl OutboundSms {
    /// How long from `now` the message stays worth delivering, rounded up to whole seconds
    /// (zero once past); `None` when it never expires.
    pub fn time_left(&self, now: DateTime<Utc>) -> Option<Duration> {
        let left = (self.expires_at? - now).num_milliseconds().max(0) as u64;
        Some(Duration::from_secs(left.div_ceil(1000)))
    }
}

/// Why a provider did not take a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (throttled, timed out, 5xx).
    #[error("{reason}")]
    Transient {
        /// What went wrong, in words.
        reason: String,
        /// How long the provider asked us to wait (`Retry-After`, a throttle), if it said.
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (refused number, bad sender).
    #[error("{0}")]
    Permanent(String),
    /// The provider cannot take any message now (not bound, bind refused, account down): the
    /// message waits without using up an attempt until the provider is `ready` again.
    #[error("{0}")]
    Unavailable(String),
    /// This route cannot send this message (a region its account may not send to), though
    /// another route may: it certainly did not take it. Alone, it is as final as `Permanent`.
    #[error("{0}")]
    NotOnThisRoute(String),
    /// The provider may have taken the message, or part of it (an answer that never came, a
    /// 5xx after the request was read): it is retried on the same route only, never failed
    /// over, resuming from `progress`.
    #[error("{reason}")]
    InDoubt {
        /// What went wrong, in words.
        reason: String,
        /// The route that may have it, filled in by `Routes`.
        route: Option<String>,
        /// What the provider needs to resume without sending again what it knows was taken.
        progress: Option<String>,
    },
}

impl SendError {
    /// A transient error with no wait named by the provider.
    pub fn transient(reason: impl Into<String>) -> Self {
        SendError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A send that may have reached the provider, with nothing to resume from.
    pub fn in_doubt(reason: impl Into<String>) -> Self {
        SendError::InDoubt {
            reason: reason.into(),
            route: None,
            progress: None,
        }
    }

    /// Whether the provider certainly did not take the message, so another route may.
    pub fn certainly_not_taken(&self) -> bool {
        !matches!(self, SendError::InDoubt { .. } | SendError::Permanent(_))
    }
}

/// A message a provider took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id for it.
    pub id: String,
    /// The `[[delivery.routes]]` route that took it, when the provider is several.
    pub route: Option<String>,
}

/// Sends SMS; reports receipts and inbound messages later through [`Events`].
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Hand one message over; `Ok` carries the provider's id for it.
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError>;

    /// `send`, saying which route took the message (reports group deliveries by it).
    async fn send_routed(&self, sms: &OutboundSms) -> Result<Sent, SendError> {
        self.send(sms).await.map(|id| Sent { id, route: None })
    }

    /// Whether an earlier `send` of this message reached the provider, asked before sending
    /// again a message whose last attempt died with its worker: `Ok(Some(id))` it did (so it
    /// is not sent twice), `Ok(None)` it did not or the provider cannot tell (it is sent again).
    async fn already_sent(&self, _sms: &OutboundSms) -> Result<Option<String>, SendError> {
        Ok(None)
    }

    /// Whether the provider can take messages now; `Err` says why not (shown by `/readyz`),
    /// and the dispatcher claims nothing until it is ready again.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// What works only in part while the provider can still send (shown by `/readyz`, which
    /// stays ready), such as receipts that cannot reach it.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Start the provider's own background work (binds, receipt polling) until `shutdown`;
    /// receipts and inbound messages it learns of go to `events`.
    fn start(&self, _events: Events, _shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        Vec::new()
    }

    /// Look for work now rather than at the next poll (after a test moved the clock).
    fn nudge(&self) {}
}

/// The provider `delivery.provider` names, or the `[[delivery.routes]]` tried in order.
pub fn from_config(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Provider>> {
    let shared = &config.providers;
    if config.delivery.routes.is_empty() {
        let accounts = Accounts {
            smpp: shared.smpp.as_ref(),
            twilio: shared.twilio.as_ref(),
        };
        return one(
            config.delivery.provider,
            accounts,
            None,
            config,
            store,
            clock,
        );
    }
    let routes = config
        .delivery
        .routes
        .iter()
        .map(|r| {
            let accounts = Accounts {
                smpp: r.smpp_account(shared),
                twilio: r.twilio_account(shared),
            };
            Ok(routes::Route {
                name: r.name.clone(),
                provider: one(
                    r.provider,
                    accounts,
                    Some(&r.name),
                    config,
                    store.clone(),
                    clock.clone(),
                )?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let resting = routes::Resting {
        after_errors: config.delivery.route_rest_after_errors,
        period: Duration::from_secs(config.delivery.route_rest_seconds),
    };
    Ok(Arc::new(routes::Routes::new(routes, resting)))
}

/// The accounts a provider may send with.
#[derive(Clone, Copy)]
struct Accounts<'a> {
    smpp: Option<&'a config::SmppConfig>,
    twilio: Option<&'a config::TwilioConfig>,
}

/// One provider of `kind`, sending with `accounts`, as `route` when it is one of several.
fn one(
    kind: config::Provider,
    accounts: Accounts<'_>,
    route: Option<&str>,
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn Provider>> {
    match kind {
        config::Provider::Sandbox => Ok(Arc::new(
            sandbox::Sandbox::new(
                store,
                Duration::from_millis(config.delivery.sandbox_latency_ms),
                clock,
            )
            .answering_after(Duration::from_millis(config.delivery.sandbox_answer_ms)),
        )),
        config::Provider::Smpp => {
            let account = accounts
                .smpp
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("an SMPP provider without its account"))?;
            let smpp = match route {
                Some(name) => smpp::Smpp::for_route(account, name),
                None => smpp::Smpp::new(account),
            };
            Ok(Arc::new(smpp.with_clock(clock)))
        }
        config::Provider::Twilio => {
            let account = accounts
                .twilio
                .ok_or_else(|| anyhow::anyhow!("a Twilio provider without its account"))?;
            Ok(Arc::new(
                twilio::Twilio::new(account, &config.public_base_url)?.with_clock(clock),
            ))
        }
    }
}

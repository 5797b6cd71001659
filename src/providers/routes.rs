//! Several providers tried in order (`[[delivery.routes]]`): a message goes to the first route
//! that can take it. A route that is not ready (refused bind, account down) or that answers
//! "cannot take any message now" is passed over for the next; one failing again and again
//! (throttling, errors) is rested for a while so its messages go to the next. A message is
//! handed to another route only when the first certainly did not take it, so failover never
//! sends one twice: one a route may have taken (`SendError::InDoubt`) is tried again on that
//! route alone.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Events, OutboundSms, Provider, SendError, Sent};

/// One provider in the order.
pub struct Route {
    /// Its name, in logs and metrics.
    pub name: String,
    /// Who sends for it.
    pub provider: std::sync::Arc<dyn Provider>,
}

/// When a route that keeps failing is rested.
#[derive(Clone, Copy, Debug)]
pub struct Resting {
    /// Transient errors in a row that rest a route.
    pub after_errors: u32,
    /// How long it rests before it is tried again.
    pub period: Duration,
}

#[derive(Default)]
struct Health {
    errors_in_a_row: u32,
    resting_until: Option<Instant>,
}

/// Providers tried in order.
pub struct Routes {
    routes: Vec<Route>,
    health: Vec<Mutex<Health>>,
    resting: Resting,
}

impl Routes {
    /// Routes tried in the order given.
    pub fn new(routes: Vec<Route>, resting: Resting) -> Self {
        let health = routes.iter().map(|_| Mutex::default()).collect();
        Self {
            routes,
            health,
            resting,
        }
    }

    /// Why route `i` is passed over now, if it is.
    fn passed_over(&self, i: usize) -> Option<String> {
        if let Err(reason) = self.routes[i].provider.ready() {
            return Some(reason);
        }
        let health = self.health[i].lock().expect("route health");
        match health.resting_until {
            Some(until) if Instant::now() < until => Some(format!(
                "resting after {} errors in a row",
                self.resting.after_errors
            )),
            _ => None,
        }
    }

    /// Send a message an earlier attempt on route `name` may have delivered: on that route
    /// alone, waiting while it cannot send.
    async fn send_again_on(&self, name: &str, sms: &OutboundSms) -> Result<Sent, SendError> {
        let Some(i) = self.routes.iter().position(|r| r.name == name) else {
            return Err(SendError::Permanent(format!(
                "an earlier attempt may have reached route {name}, which is no longer configured; not sent on another"
            )));
        };
        if let Some(reason) = self.passed_over(i) {
            return Err(SendError::Unavailable(format!(
                "waiting for route {name}, which may already have it: {reason}"
            )));
        }
        let started = Instant::now();
        let result = self.routes[i].provider.send(sms).await;
        self.record(i, &result, started.elapsed());
        match result {
            Ok(id) => Ok(Sent {
                id,
                route: Some(name.to_string()),
            }),
            Err(SendError::InDoubt {
                reason, progress, ..
            }) => Err(SendError::InDoubt {
                reason,
                route: Some(name.to_string()),
                progress,
            }),
            // The earlier attempt may still have gone out: no other route takes it.
            Err(SendError::NotOnThisRoute(reason)) => Err(SendError::Permanent(reason)),
            Err(other) => Err(other),
        }
    }

    /// Note how a send on route `i` went.
    fn record(&self, i: usize, result: &Result<String, SendError>, took: Duration) {
        let route = self.routes[i].name.clone();
        let outcome = match result {
            Ok(_) => "sent",
            Err(SendError::Transient { .. }) => "transient",
            Err(SendError::Permanent(_)) => "refused",
            Err(SendError::Unavailable(_)) => "unavailable",
            Err(SendError::NotOnThisRoute(_)) => "not_on_this_route",
            Err(SendError::InDoubt { .. }) => "in_doubt",
        };
        metrics::counter!("tsunagi_route_sends_total", "route" => route.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("tsunagi_route_send_seconds", "route" => route.clone())
            .record(took.as_secs_f64());
        let mut health = self.health[i].lock().expect("route health");
        match result {
            Err(SendError::Transient { .. } | SendError::InDoubt { .. }) => {
                health.errors_in_a_row += 1;
                if health.errors_in_a_row >= self.resting.after_errors {
                    tracing::warn!(%route, errors = health.errors_in_a_row, "route rested");
                    health.resting_until = Some(Instant::now() + self.resting.period);
                    health.errors_in_a_row = 0;
                }
            }
            _ => {
                health.errors_in_a_row = 0;
                health.resting_until = None;
            }
        }
    }
}

#[async_trait]
impl Provider for Routes {
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        self.send_routed(sms).await.map(|sent| sent.id)
    }

    async fn send_routed(&self, sms: &OutboundSms) -> Result<Sent, SendError> {
        if let Some(name) = &sms.in_doubt_on {
            return self.send_again_on(name, sms).await;
        }
        let mut passed = Vec::new();
        let (mut waiting, mut transient) = (false, None);
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(reason) = self.passed_over(i) {
                metrics::counter!("tsunagi_route_skips_total", "route" => route.name.clone())
                    .increment(1);
                passed.push(format!("{}: {reason}", route.name));
                waiting = true;
                continue;
            }
            let started = Instant::now();
            let result = route.provider.send(sms).await;
            self.record(i, &result, started.elapsed());
            match result {
                Ok(id) => {
                    if !passed.is_empty() {
                        tracing::info!(route = %route.name, passed_over = %passed.join("; "), "sent on a later route");
                    }
                    return Ok(Sent {
                        id,
                        route: Some(route.name.clone()),
                    });
                }
                // It certainly did not take the message: the next route may.
                Err(e) if e.certainly_not_taken() => {
                    passed.push(format!("{}: {e}", route.name));
                    match e {
                        SendError::Unavailable(_) => waiting = true,
                        SendError::Transient { retry_after, .. } => {
                            transient = Some(retry_after.max(transient.flatten()))
                        }
                        _ => {}
                    }
                }
                Err(SendError::InDoubt {
                    reason, progress, ..
                }) => {
                    return Err(SendError::InDoubt {
                        reason,
                        route: Some(route.name.clone()),
                        progress,
                    })
                }
                Err(refused) => return Err(refused),
            }
        }
        let passed = passed.join("; ");
        // A route that may take it later decides: retried after an error, waiting for a route
        // that is down, refused only when every route cannot send it at all.
        Err(match (transient, waiting) {
            (Some(retry_after), _) => SendError::Transient {
                reason: format!("no route took it: {passed}"),
                retry_after,
            },
            (None, true) => SendError::Unavailable(format!("no route can send: {passed}")),
            (None, false) => SendError::Permanent(format!("no route can send it: {passed}")),
        })
    }

    async fn already_sent(&self, sms: &OutboundSms) -> Result<Option<String>, SendError> {
        for route in &self.routes {
            if let Some(id) = route.provider.already_sent(sms).await? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn ready(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        for route in &self.routes {
            match route.provider.ready() {
                Ok(()) => return Ok(()),
                Err(reason) => reasons.push(format!("{}: {reason}", route.name)),
            }
        }
        Err(format!("no route can send: {}", reasons.join("; ")))
    }

    fn warnings(&self) -> Vec<String> {
        self.routes
            .iter()
            .flat_map(|r| {
                r.provider
                    .warnings()
                    .into_iter()
                    .map(move |w| format!("{}: {w}", r.name))
            })
            .collect()
    }

    fn start(&self, events: Events, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        self.routes
            .iter()
            .flat_map(|r| r.provider.start(events.clone(), shutdown.clone()))
            .collect()
    }

    fn nudge(&self) {
        for route in &self.routes {
            route.provider.nudge();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    };

    use super::*;
    use crate::domain::{ids::MessageId, phone::PhoneNumber};

    /// A provider whose answers a test sets.
    #[derive(Default)]
    struct Scripted {
        down: AtomicBool,
        unavailable: AtomicBool,
        transient: AtomicBool,
        in_doubt: AtomicBool,
        not_here: AtomicBool,
        sends: AtomicUsize,
    }

    #[async_trait]
    impl Provider for Scripted {
        async fn send(&self, _sms: &OutboundSms) -> Result<String, SendError> {
            let n = self.sends.fetch_add(1, Ordering::SeqCst);
            if self.unavailable.load(Ordering::SeqCst) {
                Err(SendError::Unavailable("not bound".into()))
            } else if self.transient.load(Ordering::SeqCst) {
                Err(SendError::transient("ESME_RSYSERR"))
            } else if self.in_doubt.load(Ordering::SeqCst) {
                Err(SendError::in_doubt("no answer within 10 s"))
            } else if self.not_here.load(Ordering::SeqCst) {
                Err(SendError::NotOnThisRoute("error 21408".into()))
            } else {
                Ok(format!("id-{n}"))
            }
        }

        fn ready(&self) -> Result<(), String> {
            if self.down.load(Ordering::SeqCst) {
                Err("bind refused".into())
            } else {
                Ok(())
            }
        }
    }

    fn sms() -> OutboundSms {
        OutboundSms::new(
            MessageId::new(),
            PhoneNumber::parse("09012345678").unwrap(),
            "TSUNAGI".into(),
            "hello".into(),
        )
    }

    fn routes(a: &Arc<Scripted>, b: &Arc<Scripted>) -> Routes {
        Routes::new(
            vec![
                Route {
                    name: "a".into(),
                    provider: a.clone(),
                },
                Route {
                    name: "b".into(),
                    provider: b.clone(),
                },
            ],
            Resting {
                after_errors: 2,
                period: Duration::from_secs(60),
            },
        )
    }

    fn sends(p: &Scripted) -> usize {
        p.sends.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn the_first_route_sends_while_it_can() {
        let (a, b) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let r = routes(&a, &b);
        assert!(r.send(&sms()).await.is_ok());
        assert_eq!((sends(&a), sends(&b)), (1, 0));
    }

    #[tokio::test]
    async fn a_route_that_is_down_or_cannot_take_a_message_passes_it_to_the_next_once() {
        let (a, b) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let r = routes(&a, &b);
        a.down.store(true, Ordering::SeqCst);
        assert!(r.send(&sms()).await.is_ok());
        assert_eq!((sends(&a), sends(&b)), (0, 1), "a down route is not asked");
        a.down.store(false, Ordering::SeqCst);
        a.unavailable.store(true, Ordering::SeqCst);
        assert!(r.send(&sms()).await.is_ok());
        assert_eq!(
            (sends(&a), sends(&b)),
            (1, 2),
            "each route got it at most once"
        );
        assert_eq!(r.ready(), Ok(()));
    }

    #[tokio::test]
    async fn a_send_in_doubt_is_not_failed_over_and_goes_again_on_its_route_alone() {
        let (a, b) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let r = routes(&a, &b);
        a.in_doubt.store(true, Ordering::SeqCst);
        let mut message = sms();
        match r.send_routed(&message).await {
            Err(SendError::InDoubt { route, .. }) => assert_eq!(route.as_deref(), Some("a")),
            other => panic!("{other:?}"),
        }
        assert_eq!(sends(&b), 0, "a message route a may have was failed over");
        message.in_doubt_on = Some("a".into());
        a.in_doubt.store(false, Ordering::SeqCst);
        a.down.store(true, Ordering::SeqCst);
        assert!(matches!(
            r.send_routed(&message).await,
            Err(SendError::Unavailable(_))
        ));
        assert_eq!(sends(&b), 0, "sent elsewhere while its route was down");
        a.down.store(false, Ordering::SeqCst);
        let sent = r.send_routed(&message).await.unwrap();
        assert_eq!(sent.route.as_deref(), Some("a"));
        assert_eq!((sends(&a), sends(&b)), (2, 0));
        message.in_doubt_on = Some("gone".into());
        assert!(matches!(
            r.send_routed(&message).await,
            Err(SendError::Permanent(_))
        ));
    }

    #[tokio::test]
    async fn a_route_that_certainly_did_not_take_it_fails_over_and_a_failing_route_is_rested() {
        let (a, b) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let r = routes(&a, &b);
        a.transient.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!(
                r.send_routed(&sms()).await.unwrap().route.as_deref(),
                Some("b")
            );
        }
        assert!(r.send(&sms()).await.is_ok());
        assert_eq!(
            (sends(&a), sends(&b)),
            (2, 3),
            "the rested route is passed over"
        );
        b.transient.store(true, Ordering::SeqCst);
        assert!(matches!(
            r.send(&sms()).await,
            Err(SendError::Transient { .. })
        ));
    }

    #[tokio::test]
    async fn a_message_no_route_may_send_is_refused_once_every_route_said_so() {
        let (a, b) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let r = routes(&a, &b);
        a.not_here.store(true, Ordering::SeqCst);
        assert_eq!(
            r.send_routed(&sms()).await.unwrap().route.as_deref(),
            Some("b")
        );
        b.not_here.store(true, Ordering::SeqCst);
        match r.send(&sms()).await {
            Err(SendError::Permanent(reason)) => assert!(reason.contains("21408"), "{reason}"),
            other => panic!("{other:?}"),
        }
        b.down.store(true, Ordering::SeqCst);
        assert!(
            matches!(r.send(&sms()).await, Err(SendError::Unavailable(_))),
            "refused while a route that might send it is down"
        );
    }

    #[tokio::test]
    async fn with_every_route_down_the_message_waits_and_readiness_says_why() {
        let (a, b) = (Arc::new(Scripted::default()), Arc::new(Scripted::default()));
        let r = routes(&a, &b);
        a.down.store(true, Ordering::SeqCst);
        b.unavailable.store(true, Ordering::SeqCst);
        match r.send(&sms()).await {
            Err(SendError::Unavailable(reason)) => {
                assert_eq!(reason, "no route can send: a: bind refused; b: not bound")
            }
            other => panic!("{other:?}"),
        }
        b.down.store(true, Ordering::SeqCst);
        assert_eq!(
            r.ready(),
            Err("no route can send: a: bind refused; b: bind refused".into())
        );
    }
}

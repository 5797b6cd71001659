//! `[[delivery.routes]]`: several provider accounts tried in order, each named, each with its own
//! account or the one under `[providers.*]`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Problem, Provider, ProvidersConfig, SmppConfig, TwilioConfig};

/// One route: a provider and the account it sends with.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in logs and metrics: letters, digits, `-`, `_`.
    pub name: String,
    /// Which provider sends on it.
    pub provider: Provider,
    /// Its own SMPP account (`provider = "smpp"`); `[providers.smpp]` when absent.
    pub smpp: Option<SmppConfig>,
    /// Its own Twilio account (`provider = "twilio"`); `[providers.twilio]` when absent.
    pub twilio: Option<TwilioConfig>,
}

impl RouteConfig {
    /// The SMPP account this route sends with, if it is an SMPP route with one.
    pub fn smpp_account<'a>(&'a self, shared: &'a ProvidersConfig) -> Option<&'a SmppConfig> {
        self.smpp.as_ref().or(shared.smpp.as_ref())
    }

    /// The Twilio account this route sends with, if it is a Twilio route with one.
    pub fn twilio_account<'a>(&'a self, shared: &'a ProvidersConfig) -> Option<&'a TwilioConfig> {
        self.twilio.as_ref().or(shared.twilio.as_ref())
    }
}

/// Check every route, naming each problem's key path (`delivery.routes[1].smpp`).
pub(super) fn validate(
    routes: &[RouteConfig],
    shared: &ProvidersConfig,
    problems: &mut Vec<Problem>,
) {
    for (i, route) in routes.iter().enumerate() {
        let at = |key: &str| format!("delivery.routes[{i}].{key}");
        let named = (1..=64).contains(&route.name.len())
            && route
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !named {
            problems.push(Problem::new(
                at("name"),
                "must be 1-64 letters, digits, `-` or `_`",
            ));
        } else if routes[..i].iter().any(|r| r.name == route.name) {
            problems.push(Problem::new(
                at("name"),
                format!("{:?} names another route too", route.name),
            ));
        }
        match route.provider {
            Provider::Smpp if route.smpp_account(shared).is_none() => problems.push(Problem::new(
                at("smpp"),
                "an SMPP route needs its account here or in [providers.smpp]",
            )),
            Provider::Twilio if route.twilio_account(shared).is_none() => {
                problems.push(Problem::new(
                    at("twilio"),
                    "a Twilio route needs its account here or in [providers.twilio]",
                ))
            }
            Provider::Sandbox if routes[..i].iter().any(|r| r.provider == Provider::Sandbox) => {
                problems.push(Problem::new(at("provider"), "there is one sandbox"))
            }
            _ => {}
        }
        if route.smpp.is_some() && route.provider != Provider::Smpp {
            problems.push(Problem::new(at("smpp"), "only for provider = \"smpp\""));
        }
        if route.twilio.is_some() && route.provider != Provider::Twilio {
            problems.push(Problem::new(at("twilio"), "only for provider = \"twilio\""));
        }
        if let Some(smpp) = &route.smpp {
            let mut own = Vec::new();
            smpp.validate(&mut own);
            problems.extend(own.into_iter().map(|p| {
                Problem::new(p.path.replacen("providers.smpp", &at("smpp"), 1), p.message)
            }));
        }
        if let Some(twilio) = &route.twilio {
            let mut own = Vec::new();
            twilio.validate(&mut own);
            problems.extend(own.into_iter().map(|p| {
                Problem::new(
                    p.path.replacen("providers.twilio", &at("twilio"), 1),
                    p.message,
                )
            }));
        }
    }
}

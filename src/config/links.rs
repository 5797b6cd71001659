//! `[links]`: short links with click tracking, and the domains texts may link to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Problem;
use crate::links::LinkRules;

/// `[links]`: off by default; a request's `shorten_links` overrides `shorten`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LinksConfig {
    /// Replace every http(s) URL in a text by `{public_base_url}/s/{code}`, which counts clicks,
    /// when a request does not say.
    pub shorten: bool,
    /// Domains texts may link to, each with its subdomains (`example.jp` allows
    /// `www.example.jp`); a text linking anywhere else is refused with
    /// `link_domain_not_allowed`, shortened or not. Empty: any domain.
    pub allowed_domains: Vec<String>,
    /// Days a short link works; after that it answers 404. 0: for good.
    pub expire_after_days: u32,
}

/// Longest life a short link may be given.
const MAX_EXPIRE_AFTER_DAYS: u32 = 3660;

impl LinksConfig {
    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        for (i, domain) in self.allowed_domains.iter().enumerate() {
            if !is_domain(domain) {
                problems.push(Problem::new(
                    format!("links.allowed_domains[{i}]"),
                    format!("{domain:?} is not a domain name such as example.jp"),
                ));
            }
        }
        if self.expire_after_days > MAX_EXPIRE_AFTER_DAYS {
            problems.push(Problem::new(
                "links.expire_after_days",
                format!("must be at most {MAX_EXPIRE_AFTER_DAYS}; 0 keeps links for good"),
            ));
        }
    }

    /// The rules admission applies, with links served under `public_base_url`.
    pub fn rules(&self, public_base_url: &str) -> LinkRules {
        LinkRules {
            base_url: public_base_url.trim_end_matches('/').to_string(),
            shorten_by_default: self.shorten,
            allowed_domains: self
                .allowed_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            expire_after: (self.expire_after_days > 0)
                .then(|| chrono::Duration::days(self.expire_after_days.into())),
        }
    }
}

/// An ASCII host name of two or more labels (internationalised names in their `xn--` form).
fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    text.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_domains_must_be_host_names() {
        let config = LinksConfig {
            allowed_domains: vec![
                "example.jp".into(),
                "https://example.jp".into(),
                "localhost".into(),
            ],
            expire_after_days: 4000,
            ..LinksConfig::default()
        };
        let mut problems = Vec::new();
        config.validate(&mut problems);
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "links.allowed_domains[1]",
                "links.allowed_domains[2]",
                "links.expire_after_days"
            ]
        );
    }

    #[test]
    fn rules_serve_links_under_the_base_url_without_a_trailing_slash() {
        let config = LinksConfig {
            allowed_domains: vec!["Example.JP".into()],
            expire_after_days: 30,
            ..LinksConfig::default()
        };
        let rules = config.rules("https://t.example/");
        assert_eq!(rules.base_url, "https://t.example");
        assert_eq!(rules.allowed_domains, ["example.jp"]);
        assert_eq!(rules.expire_after, Some(chrono::Duration::days(30)));
    }
}

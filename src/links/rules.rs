//! What a message's links may be, and how they are rewritten.

use chrono::{DateTime, Duration, Utc};
use rand::{distr::Alphanumeric, Rng};

use super::urls::{find_links, FoundLink, LinkForm};
use crate::store::NewLink;

/// Characters in a short link's code: 62^10 codes, too many to guess one that is in use.
const CODE_CHARS: usize = 10;

/// The link rules, from `[links]` and `public_base_url`.
#[derive(Clone, Debug, Default)]
pub struct LinkRules {
    /// Where `/s/{code}` is served, without a trailing slash.
    pub base_url: String,
    /// Whether links are shortened when a submission does not say.
    pub shorten_by_default: bool,
    /// Domains links may point to (each with its subdomains), lowercase; empty: any.
    pub allowed_domains: Vec<String>,
    /// How long a short link works; `None`: for good.
    pub expire_after: Option<Duration>,
}

/// A link to a domain the allow-list does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the text links to {url}, which is not in an allowed domain (links.allowed_domains)")]
pub struct DisallowedLink {
    /// The link as written in the text.
    pub url: String,
}

/// A text with its links replaced, and the links to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The text as it goes out.
    pub text: String,
    /// One per replaced URL, in order.
    pub links: Vec<NewLink>,
}

impl LinkRules {
    /// Whether the allow-list lets `host` (or a domain it is under) be linked.
    fn allows(&self, host: Option<&str>) -> bool {
        if self.allowed_domains.is_empty() {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        self.allowed_domains.iter().any(|domain| {
            host == domain
                || host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }

    /// Refuse a text that links outside the allowed domains; otherwise, with `shorten`, replace
    /// each `http(s)://` URL by a short link of its own.
    pub fn apply(
        &self,
        text: String,
        shorten: bool,
        now: DateTime<Utc>,
    ) -> Result<Rewritten, DisallowedLink> {
        let found = find_links(&text);
        if let Some(link) = found.iter().find(|l| !self.allows(l.host.as_deref())) {
            return Err(DisallowedLink {
                url: text[link.span.clone()].to_string(),
            });
        }
        let urls: Vec<&FoundLink> = found
            .iter()
            .filter(|l| shorten && l.form == LinkForm::Url && l.host.is_some())
            .collect();
        if urls.is_empty() {
            return Ok(Rewritten {
                text,
                links: Vec::new(),
            });
        }
        let mut out = String::with_capacity(text.len());
        let mut links = Vec::with_capacity(urls.len());
        let mut copied = 0;
        for link in urls {
            let code = new_code();
            out.push_str(&text[copied..link.span.start]);
            out.push_str(&self.base_url);
            out.push_str("/s/");
            out.push_str(&code);
            copied = link.span.end;
            links.push(NewLink {
                code,
                url: text[link.span.clone()].to_string(),
                expires_at: self.expire_after.map(|after| now + after),
            });
        }
        out.push_str(&text[copied..]);
        Ok(Rewritten { text: out, links })
    }
}

/// A random code of URL-safe letters and digits.
fn new_code() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(CODE_CHARS)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str]) -> LinkRules {
        LinkRules {
            base_url: "https://t.example".into(),
            shorten_by_default: false,
            allowed_domains: allowed.iter().map(|d| d.to_string()).collect(),
            expire_after: Some(Duration::days(30)),
        }
    }

    #[test]
    fn each_url_gets_its_own_code_and_the_text_around_it_is_kept() {
        let now = Utc::now();
        let text = "予約 https://a.example.jp/x?y=1 と https://a.example.jp/x?y=1。".to_string();
        let out = rules(&[]).apply(text, true, now).unwrap();
        assert_eq!(out.links.len(), 2);
        assert_ne!(out.links[0].code, out.links[1].code);
        assert!(out
            .links
            .iter()
            .all(|l| l.url == "https://a.example.jp/x?y=1"
                && l.code.len() == CODE_CHARS
                && l.expires_at == Some(now + Duration::days(30))));
        assert_eq!(
            out.text,
            format!(
                "予約 https://t.example/s/{} と https://t.example/s/{}。",
                out.links[0].code, out.links[1].code
            )
        );
    }

    #[test]
    fn without_shortening_the_text_is_unchanged() {
        let text = "https://a.example.jp/x".to_string();
        let out = rules(&[]).apply(text.clone(), false, Utc::now()).unwrap();
        assert_eq!((out.text, out.links), (text, vec![]));
    }

    #[test]
    fn a_link_outside_the_allowed_domains_is_refused_naming_it() {
        let r = rules(&["example.jp"]);
        for ok in [
            "https://example.jp/a",
            "https://www.shop.example.jp/a",
            "www.example.jp",
        ] {
            assert!(r.apply(ok.into(), true, Utc::now()).is_ok(), "{ok}");
        }
        for (text, url) in [
            (
                "お得 https://evil-example.jp/a です",
                "https://evil-example.jp/a",
            ),
            (
                "https://example.jp.evil.com/a",
                "https://example.jp.evil.com/a",
            ),
            ("詳しくは evil.xyz へ", "evil.xyz"),
            ("https://例え.jp/", "https://例え.jp/"),
            ("http://example.jp@evil.com/", "http://example.jp@evil.com/"),
        ] {
            assert_eq!(
                r.apply(text.into(), false, Utc::now()),
                Err(DisallowedLink { url: url.into() }),
                "{text}"
            );
        }
    }
}

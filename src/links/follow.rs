//! What following a short link comes to: a code that was never made or has expired is gone; a
//! fetch by a link preview or a scanner leads on without counting; anyone else's is a click.

use chrono::{DateTime, Utc};

use super::is_preview;
use crate::store::{LinkTarget, NewClick};

/// Longest code looked up: longer ones were never made.
const MAX_CODE_CHARS: usize = 64;
/// Longest `User-Agent` kept with a click.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Whether `code` can be a short link's: 1-64 ASCII letters and digits. Anything else is gone
/// without a look in the store.
pub fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE_CHARS
        && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Why a link leads nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// No link has the code.
    Unknown,
    /// The link's `links_expire_at` passed.
    Expired,
}

impl Gone {
    /// Its name in `tsunagi_link_redirects_total{outcome}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Gone::Unknown => "unknown",
            Gone::Expired => "expired",
        }
    }
}

/// Where a fetch of a short link goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Nowhere.
    Gone(Gone),
    /// To `url`; `click` is the click to count, `None` for a preview or a scanner.
    To {
        /// The URL the link stands for.
        url: String,
        /// The click, when a person followed it.
        click: Option<NewClick>,
    },
}

/// Where a fetch of `code` (a `HEAD` when `head`, with `user_agent`) at `now` goes, given the
/// link the code names, if any.
pub fn follow(
    code: &str,
    target: Option<LinkTarget>,
    now: DateTime<Utc>,
    head: bool,
    user_agent: Option<&str>,
) -> Follow {
    let Some(target) = target else {
        return Follow::Gone(Gone::Unknown);
    };
    if target.expires_at.is_some_and(|at| at <= now) {
        return Follow::Gone(Gone::Expired);
    }
    let click = (!is_preview(head, user_agent)).then(|| NewClick {
        code: code.to_string(),
        message_id: target.message_id,
        at: now,
        user_agent: user_agent.map(|a| a.chars().take(MAX_USER_AGENT_CHARS).collect()),
    });
    Follow::To {
        url: target.url,
        click,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::MessageId;

    fn target(expires_at: Option<DateTime<Utc>>) -> Option<LinkTarget> {
        Some(LinkTarget {
            message_id: MessageId::new(),
            url: "https://shop.example.jp/r/1".into(),
            expires_at,
        })
    }

    const PHONE: Option<&str> = Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)");

    #[test]
    fn only_short_alphanumeric_codes_are_looked_up() {
        assert!(is_code("aB3xY9"));
        assert!(!is_code(""));
        assert!(!is_code("abc-def"));
        assert!(!is_code(&"a".repeat(65)));
    }

    #[test]
    fn an_unknown_or_expired_link_is_gone_and_a_person_clicks_a_live_one() {
        let now = Utc::now();
        assert_eq!(
            follow("c", None, now, false, PHONE),
            Follow::Gone(Gone::Unknown)
        );
        let expired = target(Some(now));
        assert_eq!(
            follow("c", expired, now, false, PHONE),
            Follow::Gone(Gone::Expired)
        );
        let Follow::To { url, click } = follow("c", target(None), now, false, PHONE) else {
            panic!("a live link leads on");
        };
        assert_eq!(url, "https://shop.example.jp/r/1");
        let click = click.expect("a person's fetch is a click");
        assert_eq!((click.code.as_str(), click.at), ("c", now));
    }

    #[test]
    fn a_preview_leads_on_without_a_click_and_a_long_user_agent_is_cut() {
        let now = Utc::now();
        let Follow::To { click, .. } = follow("c", target(None), now, true, PHONE) else {
            panic!("a HEAD leads on");
        };
        assert_eq!(click, None, "a HEAD is a preview");
        let long = format!("{} {}", PHONE.unwrap(), "x".repeat(1000));
        let Follow::To { click, .. } = follow("c", target(None), now, false, Some(&long)) else {
            panic!("leads on");
        };
        let kept = click
            .expect("a phone's fetch is a click")
            .user_agent
            .unwrap();
        assert_eq!(kept.chars().count(), MAX_USER_AGENT_CHARS);
    }
}

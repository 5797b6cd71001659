//! Finding what a handset would show as a link in a message's text.
//!
//! Japanese text puts no space around a URL (「詳細はhttps://example.jp/aをご覧ください」), so a
//! URL is taken to end at the first character that is not printable ASCII, and trailing
//! punctuation is left out, as handsets do. Besides `http(s)://` URLs, `www.` hosts and bare
//! domains under common top-level domains are found too: handsets make links of them, so the
//! domain allow-list must see them.

use std::ops::Range;

/// How a link is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkForm {
    /// With its `http://` or `https://` scheme: shortened when links are.
    Url,
    /// A host without scheme (`www.example.com/a`, `example.jp`): checked, never rewritten.
    Bare,
}

/// One link in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLink {
    /// Where it is, in bytes.
    pub span: Range<usize>,
    /// How it is written.
    pub form: LinkForm,
    /// Its host, lowercase; `None` when a scheme is followed by no readable host (an
    /// internationalised name, say), which no allow-list can vouch for.
    pub host: Option<String>,
}

/// Top-level domains a handset makes a link of without a scheme, so a bare `name.tld` is a link.
const BARE_TLDS: &[&str] = &[
    "app", "biz", "cc", "click", "cn", "co", "com", "dev", "info", "io", "jp", "link", "live",
    "me", "net", "online", "org", "ru", "shop", "site", "tk", "to", "top", "us", "xyz",
];

/// Characters a URL may hold (RFC 3986 unreserved, reserved and `%`).
fn url_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&c)
}

fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
}

/// Every link in `text`, in order.
pub fn find_links(text: &str) -> Vec<FoundLink> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(scheme) = scheme_at(bytes, i) {
            let host_start = i + scheme;
            let end = url_end(bytes, host_start);
            let authority_end = (host_start..end)
                .find(|&j| matches!(bytes[j], b'/' | b'?' | b'#'))
                .unwrap_or(end);
            // The host follows any `user@` and precedes any `:port`.
            let authority = &text[host_start..authority_end];
            let host = authority.rsplit('@').next().unwrap_or_default();
            let host = host.split(':').next().unwrap_or_default();
            let host = (host.contains('.') && host.bytes().all(host_char))
                .then(|| host.trim_end_matches('.').to_ascii_lowercase());
            // Without a readable host, the link runs to the next space, so a refusal names
            // all of it.
            let end = match host {
                Some(_) => end,
                None => text[host_start..]
                    .find(char::is_whitespace)
                    .map_or(text.len(), |n| host_start + n),
            };
            found.push(FoundLink {
                span: i..end,
                form: LinkForm::Url,
                host,
            });
            i = end;
            continue;
        }
        let starts_word = i == 0 || !(host_char(bytes[i - 1]) || bytes[i - 1] == b'@');
        if starts_word && bytes[i].is_ascii_alphanumeric() {
            if let Some(link) = bare_at(text, i) {
                i = link.span.end;
                found.push(link);
                continue;
            }
        }
        i += 1;
    }
    found
}

/// The length of an `http://` or `https://` scheme at `i`, in any case.
fn scheme_at(bytes: &[u8], i: usize) -> Option<usize> {
    ["https://", "http://"].iter().find_map(|s| {
        bytes
            .get(i..i + s.len())
            .filter(|b| b.eq_ignore_ascii_case(s.as_bytes()))
            .map(|_| s.len())
    })
}

/// Where a URL starting at `from` ends: at the first character a URL cannot hold, less trailing
/// punctuation and closing brackets that were not opened inside it.
fn url_end(bytes: &[u8], from: usize) -> usize {
    let mut end = from;
    while end < bytes.len() && url_char(bytes[end]) {
        end += 1;
    }
    loop {
        let Some(&last) = bytes[from..end].last() else {
            return end;
        };
        let unbalanced = |open: u8, close: u8| {
            last == close && {
                let inside = &bytes[from..end];
                inside.iter().filter(|&&c| c == close).count()
                    > inside.iter().filter(|&&c| c == open).count()
            }
        };
        if b".,;:!?'*".contains(&last) || unbalanced(b'(', b')') || unbalanced(b'[', b']') {
            end -= 1;
        } else {
            return end;
        }
    }
}

/// A host without scheme at `i` (`www.` anything, or a name under a `BARE_TLDS` domain), with
/// its path.
fn bare_at(text: &str, i: usize) -> Option<FoundLink> {
    let bytes = text.as_bytes();
    let mut host_end = i;
    while host_end < bytes.len() && host_char(bytes[host_end]) {
        host_end += 1;
    }
    let host = text[i..host_end].trim_end_matches(['.', '-']);
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let tld = labels.last()?.to_ascii_lowercase();
    let www = labels[0].eq_ignore_ascii_case("www");
    if !www && !BARE_TLDS.contains(&tld.as_str()) {
        return None;
    }
    let host_end = i + host.len();
    let end = match bytes.get(host_end) {
        Some(b'/') => url_end(bytes, host_end),
        _ => host_end,
    };
    Some(FoundLink {
        span: i..end,
        form: LinkForm::Bare,
        host: Some(host.to_ascii_lowercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find_links(text)
            .into_iter()
            .map(|l| &text[l.span])
            .collect()
    }

    #[test]
    fn a_url_ends_where_japanese_text_begins() {
        let text = "ご予約はこちら https://example.com/a?b=1&c=2。詳細はhttps://shop.example.jp/x（本日）まで";
        assert_eq!(
            urls(text),
            ["https://example.com/a?b=1&c=2", "https://shop.example.jp/x"]
        );
    }

    #[test]
    fn trailing_punctuation_and_unopened_brackets_are_not_part_of_a_url() {
        assert_eq!(
            urls("see (https://a.example.com/p), or https://b.example.com/q_(x)."),
            ["https://a.example.com/p", "https://b.example.com/q_(x)"]
        );
    }

    #[test]
    fn hosts_are_read_in_lowercase_without_port_or_credentials() {
        let found =
            find_links("HTTPS://Shop.Example.JP:8443/x and http://example.jp@evil.example/");
        assert_eq!(found[0].host.as_deref(), Some("shop.example.jp"));
        assert_eq!(found[1].host.as_deref(), Some("evil.example"));
    }

    #[test]
    fn a_scheme_without_a_readable_host_is_still_a_link() {
        let found = find_links("こちら https://例え.jp/パス");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].host, None);
    }

    #[test]
    fn bare_domains_a_handset_would_link_are_found_but_emails_and_numbers_are_not() {
        let text = "www.example.org/a と evil.xyz を見て。連絡は a@mail.example.com、円周率は3.14";
        let found = find_links(text);
        let hosts: Vec<_> = found.iter().map(|l| l.host.clone().unwrap()).collect();
        assert_eq!(hosts, ["www.example.org", "evil.xyz"]);
        assert!(found.iter().all(|l| l.form == LinkForm::Bare));
        assert_eq!(&text[found[0].span.clone()], "www.example.org/a");
    }
}

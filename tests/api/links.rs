//! Short links: URLs become `/s/{code}` links counted per recipient, previews are not clicks,
//! and texts may link only to the allowed domains.

use std::time::Duration;

use reqwest::{redirect::Policy, Client, Method};
use serde_json::{json, Value};

use tsunagi::clock::Clock;

use crate::harness::TestServer;

const HANDSET: &str = "090-1111-2222";
/// A handset browser: its requests are clicks.
pub(crate) const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// The codes of the short links in `text`, in order.
fn codes(text: &str) -> Vec<String> {
    text.match_indices("/s/")
        .map(|(i, _)| {
            text[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect()
        })
        .collect()
}

/// Fetch `/s/{code}` without following the redirect.
pub(crate) async fn follow(
    s: &TestServer,
    method: Method,
    code: &str,
    agent: Option<&str>,
) -> reqwest::Response {
    let client = Client::builder().redirect(Policy::none()).build().unwrap();
    let mut request = client.request(method, format!("{}/s/{code}", s.base));
    if let Some(agent) = agent {
        request = request.header("user-agent", agent);
    }
    request.send().await.unwrap()
}

/// Send `body` with short links and return (accepted answer, text the handset received).
async fn send_shortened(s: &TestServer, body: &str) -> (Value, String) {
    let (status, accepted) = s
        .send(json!({"to": HANDSET, "body": body, "shorten_links": true}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let text = s.text_of("09011112222", &accepted["id"]).await;
    (accepted, text)
}

#[tokio::test]
async fn two_urls_in_a_japanese_message_become_two_short_links_and_segments_count_the_sent_text() {
    let s = TestServer::with_delivery("[links]\nallowed_domains = [\"example.jp\"]").await;
    let first = "https://shop.example.jp/reserve?date=2026-12-24&time=10%3A00&utm_source=sms&utm_campaign=winter";
    let second = "https://example.jp/c/very/long/path/to/the/campaign/page/for/winter";
    let body = format!(
        "ご予約ありがとうございます。詳細は{first}をご覧ください。キャンセルは{second}から。"
    );
    let (accepted, text) = send_shortened(&s, &body).await;
    assert!(!text.contains("example.jp"), "{text}");
    let codes = codes(&text);
    assert_eq!(codes.len(), 2, "{text}");
    assert_ne!(codes[0], codes[1]);
    assert!(codes.iter().all(|c| c.len() >= 8), "{codes:?}");
    assert_eq!(
        text,
        format!(
            "ご予約ありがとうございます。詳細はhttp://127.0.0.1:8080/s/{}をご覧ください。キャンセルはhttp://127.0.0.1:8080/s/{}から。",
            codes[0], codes[1]
        )
    );
    let characters = text.chars().count();
    assert_eq!(accepted["characters"], characters);
    assert_eq!(accepted["encoding"], "ucs2");
    let expected_segments = if characters <= 70 {
        1
    } else {
        characters.div_ceil(67)
    };
    assert_eq!(accepted["segments"], expected_segments, "{accepted}");
    assert!(
        expected_segments < body.chars().count().div_ceil(67),
        "the short text needs fewer segments than the original"
    );
    for (code, url) in codes.iter().zip([first, second]) {
        let r = follow(&s, Method::GET, code, Some(IPHONE)).await;
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], url, "query string intact");
    }
    s.stop().await;
}

#[tokio::test]
async fn one_browser_click_is_counted_while_previews_scanners_and_head_requests_are_not() {
    let s = TestServer::start().await;
    let url = "https://example.com/a?x=1&y=%E3%81%82#top";
    let (accepted, text) = send_shortened(&s, &format!("Sale: {url} !")).await;
    let code = &codes(&text)[0];
    for agent in [
        Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        Some("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
        Some("facebookexternalhit/1.1;line-poker/1.0"),
        Some("Twitterbot/1.0"),
        None,
    ] {
        let r = follow(&s, Method::GET, code, agent).await;
        assert_eq!(r.status(), 302, "{agent:?}");
        assert_eq!(r.headers()["location"], url);
    }
    let head = follow(&s, Method::HEAD, code, Some(IPHONE)).await;
    assert_eq!(head.status(), 302);
    let click = follow(&s, Method::GET, code, Some(IPHONE)).await;
    assert_eq!(click.status(), 302);
    assert_eq!(click.headers()["cache-control"], "no-store");

    let id = accepted["id"].as_str().unwrap();
    let show = || async {
        s.get(&format!("/v1/messages/{id}"))
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    for _ in 0..250 {
        if show().await["clicks"] != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a wrongly counted preview time to land too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let message = show().await;
    assert_eq!(message["clicks"], 1, "{message}");
    assert_eq!(message["first_clicked_at"], message["last_clicked_at"]);
    let clicked: Vec<_> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "clicked")
        .collect();
    assert_eq!(clicked.len(), 1, "{message}");
    assert_eq!(clicked[0]["at"], message["first_clicked_at"]);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("tsunagi_link_redirects_total{outcome=\"preview\"} 6"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_or_expired_code_answers_a_404_page_without_a_redirect() {
    let s = TestServer::with_delivery("[links]\nexpire_after_days = 1").await;
    for code in ["NoSuchCode1", "bad-code!", &"x".repeat(200)] {
        let r = follow(&s, Method::GET, code, Some(IPHONE)).await;
        assert_eq!(r.status(), 404, "{code}");
        assert!(r.headers().get("location").is_none());
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let (_, text) = send_shortened(&s, "https://example.com/campaign").await;
    let code = &codes(&text)[0];
    assert_eq!(
        follow(&s, Method::GET, code, Some(IPHONE)).await.status(),
        302
    );
    s.advance(24 * 3600 + 1);
    let expired = follow(&s, Method::GET, code, Some(IPHONE)).await;
    assert_eq!(expired.status(), 404);
    assert!(expired.text().await.unwrap().contains("有効期限"));
    s.stop().await;
}

#[tokio::test]
async fn a_request_can_set_when_its_short_links_expire() {
    let s = TestServer::with_delivery("[links]\nexpire_after_days = 30").await;
    let expire_at = (s.clock.now() + chrono::Duration::hours(2)).to_rfc3339();
    let (status, accepted) = s
        .send(json!({"to": HANDSET, "body": "本日限定 https://example.com/sale", "shorten_links": true, "links_expire_at": expire_at}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let text = s.text_of("09011112222", &accepted["id"]).await;
    let code = &codes(&text)[0];
    s.advance(3600);
    assert_eq!(
        follow(&s, Method::GET, code, Some(IPHONE)).await.status(),
        302
    );
    s.advance(3601);
    assert_eq!(
        follow(&s, Method::GET, code, Some(IPHONE)).await.status(),
        404,
        "expired at the request's time, not after 30 days"
    );
    let past = (s.clock.now() - chrono::Duration::minutes(1)).to_rfc3339();
    let (status, problem) = s
        .send(json!({"to": HANDSET, "body": "https://example.com/x", "shorten_links": true, "links_expire_at": past}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "links_expire_at");
    let (status, problem) = s
        .send(json!({"to": HANDSET, "body": "https://example.com/y", "shorten_links": true, "links_expire_at": "tomorrow"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "links_expire_at");
    assert_eq!(
        s.stored_messages().await,
        1,
        "only the first message was stored"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_scheduled_messages_links_live_from_when_it_is_sent() {
    let s = TestServer::with_delivery("[links]\nexpire_after_days = 1").await;
    let send_at = (s.clock.now() + chrono::Duration::days(2)).to_rfc3339();
    let (status, accepted) = s
        .send(json!({"to": HANDSET, "body": "https://example.com/event", "shorten_links": true, "send_at": send_at}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    s.advance(2 * 24 * 3600 + 1);
    let text = s.text_of("09011112222", &accepted["id"]).await;
    let code = &codes(&text)[0];
    s.advance(12 * 3600);
    assert_eq!(
        follow(&s, Method::GET, code, Some(IPHONE)).await.status(),
        302,
        "a day from the send, not from the acceptance"
    );
    s.advance(12 * 3600);
    assert_eq!(
        follow(&s, Method::GET, code, Some(IPHONE)).await.status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn links_are_sent_as_written_unless_shortening_is_asked_for() {
    let s = TestServer::start().await;
    let (status, accepted) = s
        .send(json!({"to": HANDSET, "body": "https://example.com/a"}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        s.text_of("09011112222", &accepted["id"]).await,
        "https://example.com/a"
    );
    s.stop().await;
    let s = TestServer::with_delivery("[links]\nshorten = true").await;
    let (_, accepted) = s
        .send(json!({"to": HANDSET, "body": "https://example.com/a"}))
        .await;
    let text = s.text_of("09011112222", &accepted["id"]).await;
    assert_eq!(
        codes(&text).len(),
        1,
        "[links] shorten is the default: {text}"
    );
    let (_, kept) = s
        .send(json!({"to": HANDSET, "body": "https://example.com/b", "shorten_links": false}))
        .await;
    assert_eq!(
        s.text_of("09011112222", &kept["id"]).await,
        "https://example.com/b"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_link_outside_the_allowed_domains_is_refused_naming_it() {
    let s = TestServer::with_delivery("[links]\nallowed_domains = [\"example.jp\"]").await;
    let cases = [
        (
            json!({"to": HANDSET, "body": "当選しました https://examp1e.jp.evil.com/win 今すぐ"}),
            "body",
            "https://examp1e.jp.evil.com/win",
        ),
        (
            json!({"to": HANDSET, "body": "詳しくは evil.xyz へ"}),
            "body",
            "evil.xyz",
        ),
        (
            json!({"to": HANDSET, "template": "{{name}}様 {{url}}", "vars": {"name": "山田", "url": "http://example.jp@evil.com/"}}),
            "template",
            "http://example.jp@evil.com/",
        ),
    ];
    for (request, field, url) in cases {
        let (status, problem) = s.send(request).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["code"], "link_domain_not_allowed");
        assert_eq!(problem["field"], field);
        assert!(
            problem["detail"].as_str().unwrap().contains(url),
            "{problem}"
        );
    }
    let (status, ok) = s
        .send(json!({"to": HANDSET, "body": "https://www.example.jp/ok"}))
        .await;
    assert_eq!(status, 202, "{ok}");
    assert_eq!(s.stored_messages().await, 1, "nothing refused was stored");
    s.stop().await;
}

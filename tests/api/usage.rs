//! Usage and delivery reports: only delivered messages are billable, days are Japanese days
//! unless a zone is named, and reports give rates, times, clicks and replies.

use chrono::{Duration, FixedOffset, Utc};
use serde_json::{json, Value};
use tsunagi::clock::Clock;

use crate::{harness::TestServer, links};

/// Send `body` to `to` and wait until it is final.
async fn finished(s: &TestServer, to: &str, body: &str) -> Value {
    let (status, accepted) = s.send(json!({"to": to, "body": body})).await;
    assert_eq!(status, 202, "{accepted}");
    s.wait_for(accepted["id"].as_str().unwrap(), |st| {
        matches!(st, "delivered" | "undelivered" | "failed")
    })
    .await
}

async fn json_of(s: &TestServer, path: &str) -> (u16, Value) {
    let r = s.get(path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Today in Japan, as the service's clock has it.
fn today_in_japan(s: &TestServer) -> String {
    let jst = FixedOffset::east_opt(9 * 3600).unwrap();
    s.clock.now().with_timezone(&jst).date_naive().to_string()
}

#[tokio::test]
async fn only_the_delivered_message_and_its_segments_are_billable() {
    let s = TestServer::start().await;
    let long = "お知らせ".repeat(20);
    let delivered = finished(&s, "090-1234-0001", &long).await;
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["segments"], 2);
    assert_eq!(
        finished(&s, "090-1234-9990", "届かない").await["status"],
        "undelivered"
    );
    assert_eq!(
        finished(&s, "090-1234-9991", "拒否される").await["status"],
        "failed"
    );
    let today = today_in_japan(&s);
    let (status, usage) = json_of(&s, &format!("/v1/usage?from={today}&to={today}")).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["tz"], "Asia/Tokyo");
    assert_eq!(
        (
            usage["billable_messages"].clone(),
            usage["billable_segments"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(
        (usage["messages"].clone(), usage["segments"].clone()),
        (json!(3), json!(4))
    );
    let day = &usage["days"][0];
    assert_eq!(day["date"], today.as_str());
    assert_eq!(
        day["statuses"]["delivered"],
        json!({"messages": 1, "segments": 2})
    );
    assert_eq!(
        day["statuses"]["undelivered"],
        json!({"messages": 1, "segments": 1})
    );
    assert_eq!(
        day["statuses"]["failed"],
        json!({"messages": 1, "segments": 1})
    );
    assert_eq!(
        day["statuses"]["canceled"],
        json!({"messages": 0, "segments": 0})
    );
    s.stop().await;
}

#[tokio::test]
async fn a_message_finished_after_japanese_midnight_counts_on_the_next_day() {
    let s = TestServer::start().await;
    let jst = FixedOffset::east_opt(9 * 3600).unwrap();
    let now = s.clock.now().with_timezone(&jst);
    let midnight = (now.date_naive() + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_local_timezone(jst)
        .unwrap();
    // Just before midnight in Japan, then just after it.
    s.advance((midnight - now).num_seconds() - 30);
    let before = s.clock.now().with_timezone(&jst).date_naive();
    finished(&s, "090-1234-0001", "前日").await;
    s.advance(60);
    finished(&s, "090-1234-0002", "翌日").await;
    let after = before + Duration::days(1);
    let (_, usage) = json_of(&s, &format!("/v1/usage?from={before}&to={after}")).await;
    let billable: Vec<_> = usage["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_string(),
                d["billable_messages"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        billable,
        [(before.to_string(), 1), (after.to_string(), 1)],
        "{usage}"
    );
    // In UTC both fall at 15:00 of one day.
    let utc_day = s.clock.now().with_timezone(&Utc).date_naive();
    let (_, utc) = json_of(&s, &format!("/v1/usage?from={utc_day}&to={utc_day}&tz=UTC")).await;
    assert_eq!(utc["billable_messages"], 2, "{utc}");
    s.stop().await;
}

#[tokio::test]
async fn usage_as_csv_has_a_row_per_day_and_final_state() {
    let s = TestServer::start().await;
    finished(&s, "090-1234-0001", "こんにちは").await;
    let today = today_in_japan(&s);
    let r = s
        .get(&format!("/v1/usage?from={today}&to={today}&format=csv"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "date,status,messages,segments,billable_messages,billable_segments",
            &format!("{today},delivered,1,1,1,1"),
            &format!("{today},undelivered,0,0,0,0"),
            &format!("{today},failed,0,0,0,0"),
            &format!("{today},canceled,0,0,0,0"),
            &format!("{today},rejected,0,0,0,0"),
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_usage_and_report_parameters_are_refused_naming_them() {
    let s = TestServer::start().await;
    for (path, field) in [
        ("/v1/usage?from=2026-13-01", "from"),
        ("/v1/usage?from=2026-12-02&to=2026-12-01", "to"),
        ("/v1/usage?from=2025-01-01&to=2026-12-31", "to"),
        ("/v1/usage?tz=Tokyo", "tz"),
        ("/v1/usage?format=xml", "format"),
        ("/v1/reports/delivery?group_by=hour", "group_by"),
        ("/v1/reports/delivery?from=2026-01-01&to=2026-12-31", "to"),
    ] {
        let (status, problem) = json_of(&s, path).await;
        assert_eq!(status, 422, "{path}: {problem}");
        assert_eq!(problem["code"], "invalid_request");
        assert_eq!(problem["field"], field, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_delivery_report_gives_rates_times_clicks_replies_and_opt_outs_per_source() {
    let s = TestServer::start().await;
    let (_, clicked) = s
        .send(
            json!({"to": "090-1234-0001", "body": "https://example.com/a", "shorten_links": true}),
        )
        .await;
    let text = s.text_of("09012340001", &clicked["id"]).await;
    let code = text.rsplit('/').next().unwrap().to_string();
    s.wait_for(clicked["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    finished(&s, "090-1234-0002", "ご予約").await;
    finished(&s, "090-1234-9990", "届かない").await;
    let (status, _) = s
        .call(
            "/v1/sandbox/reply",
            json!({"from": "090-1234-0002", "to": "TSUNAGI", "body": "停止"}),
        )
        .await;
    assert_eq!(status, 201);
    let android = "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36";
    let r = links::follow(&s, reqwest::Method::GET, &code, Some(android)).await;
    assert_eq!(r.status(), 302);
    let today = today_in_japan(&s);
    let mut report = Value::Null;
    for _ in 0..100 {
        (_, report) = json_of(
            &s,
            &format!("/v1/reports/delivery?from={today}&to={today}&group_by=source"),
        )
        .await;
        if report["total"]["clicked"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(report["group_by"], "source");
    let api = &report["groups"][0];
    assert_eq!(api["key"], "api", "{report}");
    assert_eq!(
        (
            api["messages"].clone(),
            api["delivered"].clone(),
            api["undelivered"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(api["delivery_rate"], 0.6667);
    assert_eq!(api["clicked"], 1);
    assert_eq!(api["click_through_rate"], 0.5);
    assert_eq!(api["replied"], 1);
    assert_eq!(api["reply_rate"], 0.5);
    assert_eq!(api["opt_outs"], 1);
    let median = api["median_seconds_to_delivery"].as_f64().unwrap();
    let p95 = api["p95_seconds_to_delivery"].as_f64().unwrap();
    assert!(median >= 0.0 && median <= p95 && p95 < 10.0, "{api}");
    assert_eq!(report["total"]["messages"], 3);
    let (_, by_day) = json_of(&s, &format!("/v1/reports/delivery?from={today}&to={today}")).await;
    assert_eq!(by_day["groups"][0]["key"], today.as_str());
    let (_, by_sender) = json_of(
        &s,
        &format!("/v1/reports/delivery?from={today}&to={today}&group_by=sender"),
    )
    .await;
    assert_eq!(by_sender["groups"][0]["key"], "TSUNAGI");
    let (_, by_route) = json_of(
        &s,
        &format!("/v1/reports/delivery?from={today}&to={today}&group_by=route"),
    )
    .await;
    assert_eq!(
        by_route["groups"][0]["key"], "sandbox",
        "without routes the provider is the route"
    );
    assert_eq!(by_route["groups"][0]["messages"], 3);
    s.stop().await;
}

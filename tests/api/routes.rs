//! `[[delivery.routes]]`: providers tried in order; a route that cannot send is passed over.

use std::time::Duration;

use fake_smsc::{FakeSmsc, Options, Receipts};
use serde_json::json;

use crate::harness::TestServer;

async fn smsc() -> FakeSmsc {
    FakeSmsc::start(Options {
        receipts: Receipts::Tlv,
        ..Options::new("tsunagi", "secret")
    })
    .await
    .unwrap()
}

/// An SMPP route named `name` to `smsc`, binding with `password`.
fn smpp_route(name: &str, smsc: &FakeSmsc, password: &str) -> String {
    format!(
        r#"
[[delivery.routes]]
name = "{name}"
provider = "smpp"
[delivery.routes.smpp]
host = "127.0.0.1"
port = {port}
system_id = "tsunagi"
password = "{password}"
reconnect_min_ms = 50
reconnect_max_ms = 200
response_timeout_ms = 1000
send_timeout_ms = 2000
"#,
        port = smsc.addr().port()
    )
}

#[tokio::test]
async fn a_route_whose_bind_is_refused_is_passed_over_and_the_next_delivers_once() {
    let (refusing, accepting) = (smsc().await, smsc().await);
    let config = smpp_route("aggregator-a", &refusing, "wrong")
        + &smpp_route("aggregator-b", &accepting, "secret");
    let s = TestServer::with_delivery(&config).await;
    // Until aggregator-a's refusal is known, sends wait for it rather than skip it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, m) = s
            .send(json!({"to": format!("090-5555-000{n}"), "body": "route"}))
            .await;
        assert_eq!(status, 202, "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let m = s.wait_for(id, |st| st == "delivered").await;
        assert_eq!(
            m["status"], "delivered",
            "the second SMSC's receipt found it"
        );
    }
    assert_eq!(refusing.submit_count(), 0);
    assert_eq!(accepting.submit_count(), 5, "each message submitted once");
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 200, "one route can send");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"tsunagi_route_sends_total{route="aggregator-b",outcome="sent"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"tsunagi_route_outcomes_total{route="aggregator-b",status="delivered"} 5"#),
        "deliveries are counted per route: {metrics}"
    );
    assert!(
        metrics.contains(
            r#"tsunagi_route_delivery_seconds_count{route="aggregator-b",status="delivered"} 5"#
        ),
        "{metrics}"
    );
    let report: serde_json::Value = s
        .get("/v1/reports/delivery?group_by=route")
        .await
        .json()
        .await
        .unwrap();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report}");
    assert_eq!(groups[0]["key"], "aggregator-b");
    assert_eq!(groups[0]["delivered"], 5);
    assert_eq!(groups[0]["delivery_rate"], 1.0);
    s.stop().await;
}

#[tokio::test]
async fn with_the_smsc_refusing_the_sandbox_route_takes_the_messages() {
    let refusing = smsc().await;
    let config = smpp_route("smsc", &refusing, "wrong")
        + "\n[[delivery.routes]]\nname = \"backup\"\nprovider = \"sandbox\"\n";
    let s = TestServer::with_delivery(&config).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, m) = s.send(json!({"to": "090-5555-1234", "body": "hi"})).await;
    assert_eq!(status, 202, "{m}");
    let id = m["id"].as_str().unwrap();
    s.wait_for(id, |st| st == "delivered").await;
    assert_eq!(s.text_of("09055551234", &m["id"]).await, "hi");
    assert_eq!(refusing.submit_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn an_smsc_system_error_fails_over_and_a_bad_destination_does_not() {
    let (first, second) = (smsc().await, smsc().await);
    let config =
        smpp_route("carrier-a", &first, "secret") + &smpp_route("carrier-b", &second, "secret");
    let s = TestServer::with_delivery(&config).await;
    first.refuse_submits_with(0x08);
    let (_, m) = s.send(json!({"to": "090-5555-1001", "body": "x"})).await;
    let m = s
        .wait_for(m["id"].as_str().unwrap(), |st| st == "delivered")
        .await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(
        second.submits_to("819055551001").len(),
        1,
        "failed over once"
    );
    first.refuse_submits_with(0x0B);
    let (_, m) = s.send(json!({"to": "090-5555-1002", "body": "x"})).await;
    let m = s
        .wait_for(m["id"].as_str().unwrap(), |st| st == "failed")
        .await;
    assert_eq!(m["status"], "failed");
    assert!(
        second.submits_to("819055551002").is_empty(),
        "a destination the first SMSC refused went to the second"
    );
    s.stop().await;
}

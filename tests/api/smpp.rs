//! The SMPP provider through the real HTTP API, against the fake SMSC over TCP.

use std::time::Duration;

use fake_smsc::{Carriage, FakeSmsc, Options, Receipts};
use serde_json::{json, Value};

use crate::harness::{event_statuses, TestServer};

const SYSTEM_ID: &str = "tsunagi";
const PASSWORD: &str = "secret";

async fn smsc(receipts: Receipts) -> FakeSmsc {
    FakeSmsc::start(Options {
        receipts,
        ..Options::new(SYSTEM_ID, PASSWORD)
    })
    .await
    .unwrap()
}

/// `[delivery]` keys naming the SMPP provider, then its section with short test timings, each
/// unless `extra` sets it.
fn smpp_config(smsc: &FakeSmsc, password: &str, extra: &str) -> String {
    let timings: String = [
        ("reconnect_min_ms", "50"),
        ("reconnect_max_ms", "200"),
        ("throttle_pause_ms", "50"),
        ("response_timeout_ms", "2000"),
        ("send_timeout_ms", "5000"),
        ("rate_per_second", "1000"),
    ]
    .iter()
    .filter(|(key, _)| !extra.contains(&format!("{key} =")))
    .map(|(key, value)| format!("{key} = {value}\n"))
    .collect();
    format!(
        r#"provider = "smpp"
[providers.smpp]
host = "127.0.0.1"
port = {port}
system_id = "{SYSTEM_ID}"
password = "{password}"
{timings}{extra}"#,
        port = smsc.addr().port()
    )
}

async fn server(smsc: &FakeSmsc, extra: &str) -> TestServer {
    TestServer::with_delivery(&smpp_config(smsc, PASSWORD, extra)).await
}

async fn sent(s: &TestServer, body: Value) -> String {
    let (status, b) = s.send(body).await;
    assert_eq!(status, 202, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn message(s: &TestServer, id: &str) -> Value {
    s.get(&format!("/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// A server on `fake` with one message delivered to 090-1234-5678 from 03-1234-5678, so that
/// replies from that handset have a conversation to join; the server and the message's id.
async fn conversation(fake: &FakeSmsc) -> (TestServer, String) {
    let s = server(fake, "").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-5678", "from": "03-1234-5678", "body": "ご予約の確認です"}),
    )
    .await;
    s.wait_for(&id, |st| st == "delivered").await;
    (s, id)
}

/// The message once it shows `count` replies (or as it is after 10 s).
async fn with_replies(s: &TestServer, id: &str, count: usize) -> Value {
    let mut m = Value::Null;
    for _ in 0..500 {
        m = message(s, id).await;
        if m["replies"].as_array().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m
}

fn reply_bodies(m: &Value) -> Vec<&str> {
    m["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect()
}

/// Wait up to 10 s for `done`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_message_is_submitted_over_smpp_and_a_tlv_receipt_delivers_it() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-5678", "body": "Hello {from} SMPP"}),
    )
    .await;
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(
        event_statuses(&m),
        ["queued", "sending", "sent", "delivered"]
    );
    let submits = fake.submits_to("819012345678");
    assert_eq!(submits.len(), 1);
    let sub = &submits[0];
    assert_eq!((sub.dest_ton, sub.dest_npi), (1, 1));
    assert_eq!((sub.source_ton, sub.source_npi), (5, 0));
    assert_eq!(sub.source_addr, "TSUNAGI");
    assert_eq!((sub.data_coding, sub.esm_class), (0, 0));
    assert_eq!(sub.registered_delivery, 1);
    assert_eq!(sub.udh, None);
    assert_eq!(sub.text(), "Hello {from} SMPP");
    assert_eq!(fake.bind_count(), 1);
    eventually("the receipt answered", || fake.deliver_sm_resp_count() == 1).await;
    s.stop().await;
}

#[tokio::test]
async fn a_text_only_receipt_delivers_the_message() {
    let fake = smsc(Receipts::Text).await;
    let s = server(&fake, "").await;
    let id = sent(&s, json!({"to": "090-1234-5678", "body": "text receipt"})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    s.stop().await;
}

#[tokio::test]
async fn a_receipt_naming_a_hex_id_in_decimal_delivers_the_message_when_the_formats_are_set() {
    // The fake's submit ids are hex ("1000"), its receipts give them in decimal ("4096").
    let fake = smsc(Receipts::DecimalText).await;
    let s = server(&fake, "submit_ids = \"hex\"\nreceipt_ids = \"decimal\"").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-5678", "body": "decimal receipt"}),
    )
    .await;
    s.wait_for(&id, |st| st == "delivered").await;
    s.stop().await;

    let fake = smsc(Receipts::DecimalText).await;
    let s = server(&fake, "").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-5678", "body": "decimal receipt"}),
    )
    .await;
    eventually("the receipt answered", || fake.deliver_sm_resp_count() == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        message(&s, &id).await["status"],
        "sent",
        "without the formats the receipt names no message (it is kept, not applied)"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_receipt_whose_text_is_in_message_payload_delivers_the_message() {
    let fake = smsc(Receipts::Payload).await;
    let s = server(&fake, "").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-5678", "body": "payload receipt"}),
    )
    .await;
    s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(fake.deliver_sm_refusal_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_data_sm_receipt_delivers_the_message_and_is_answered_with_data_sm_resp() {
    let fake = smsc(Receipts::DataSm).await;
    let s = server(&fake, "").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-9990", "body": "data_sm receipt"}),
    )
    .await;
    let m = s.wait_for(&id, |st| st == "undelivered").await;
    assert!(
        m["status_detail"].as_str().unwrap().contains("UNDELIV"),
        "{m}"
    );
    eventually("the receipt answered", || fake.data_sm_resp_count() == 1).await;
    assert_eq!(fake.data_sm_refusal_count(), 0);
    assert_eq!(
        fake.deliver_sm_resp_count(),
        0,
        "a data_sm is not answered as a deliver_sm"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_receipt_saying_undeliv_makes_the_message_undelivered() {
    let fake = smsc(Receipts::Both).await;
    let s = server(&fake, "").await;
    let id = sent(&s, json!({"to": "090-1234-9990", "body": "x"})).await;
    let m = s.wait_for(&id, |st| st == "undelivered").await;
    let detail = m["status_detail"].as_str().unwrap();
    assert!(
        detail.contains("UNDELIV") && detail.contains("err:001"),
        "{detail}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_refused_destination_fails_the_message_with_the_status_name() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "").await;
    let id = sent(&s, json!({"to": "090-1234-9991", "body": "x"})).await;
    let m = s.wait_for(&id, |st| st == "failed").await;
    assert_eq!(
        m["status_detail"],
        "SMSC refused: ESME_RINVDSTADR (0x0000000B)"
    );
    assert_eq!(
        s.provider_calls(&id),
        1,
        "a permanent refusal is not retried"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_reply_from_the_handset_is_reassembled_and_shown_on_the_message() {
    let fake = smsc(Receipts::Tlv).await;
    let (s, id) = conversation(&fake).await;
    let reply = format!("{}😀了解しました", "はい、".repeat(30));
    assert!(fake.inject_mo("819012345678", "81312345678", &reply));
    assert!(fake.inject_mo("819012345678", "81312345678", "OK @ 10:00"));
    let m = with_replies(&s, &id, 2).await;
    let bodies = reply_bodies(&m);
    assert_eq!(bodies.len(), 2, "{m}");
    assert!(bodies.contains(&reply.as_str()), "{bodies:?}");
    assert!(bodies.contains(&"OK @ 10:00"), "{bodies:?}");
    assert!(!m["replies"][0]["from"]
        .as_str()
        .unwrap()
        .contains("1234-5678"));
    eventually("every part answered", || fake.deliver_sm_resp_count() >= 4).await;
    s.stop().await;
}

/// A part whose UDH does not fit its payload is refused (`ESME_RX_R_APPN`) and stored as
/// nothing, and the part of another reply kept before it still joins its second part.
#[tokio::test]
async fn a_reply_part_with_a_broken_header_is_refused_and_loses_no_kept_part() {
    let fake = smsc(Receipts::Tlv).await;
    let (s, id) = conversation(&fake).await;
    let ucs2 = |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_be_bytes).collect() };
    let part = |seq: u8, text: &str| [vec![5, 0, 3, 0x42, 2, seq], ucs2(text)].concat();
    let (from, to) = ("819012345678", "81312345678");
    let answered = fake.deliver_sm_resp_count();
    assert!(fake.inject_mo_raw(from, to, 0x40, 8, part(1, "前半と")));
    assert!(fake.inject_mo_raw(from, to, 0x40, 8, vec![9, 0, 3, 0x43, 2, 1]));
    assert!(fake.inject_mo_raw(from, to, 0x40, 8, part(2, "後半")));
    eventually("all three answered", || {
        fake.deliver_sm_resp_count() >= answered + 3
    })
    .await;
    assert_eq!(fake.deliver_sm_refusal_count(), 1, "only the broken part");
    let m = with_replies(&s, &id, 1).await;
    assert_eq!(reply_bodies(&m), ["前半と後半"], "{m}");
    s.stop().await;
}

/// Two instances on one PostgreSQL database, each with a bind to the SMSC: the parts of one
/// long reply arrive at both, yet join into one reply on the message.
#[tokio::test]
async fn a_long_reply_whose_parts_reach_two_instances_is_joined_once() {
    let fake = smsc(Receipts::Tlv).await;
    let config = smpp_config(&fake, PASSWORD, "");
    let Some(a) = TestServer::on_postgres_with(&config).await else {
        return;
    };
    let b = a.another_instance(&config).await;
    let id = sent(
        &a,
        json!({"to": "090-1234-5678", "from": "03-1234-5678", "body": "ご予約の確認です"}),
    )
    .await;
    a.wait_for(&id, |st| st == "delivered").await;
    eventually("both instances bound", || fake.bound_sessions() == 2).await;
    let reply = format!("{}、承知しました", "はい".repeat(100));
    let answered = fake.deliver_sm_resp_count();
    assert!(fake.inject_mo_spread("819012345678", "81312345678", &reply));
    eventually("all four parts answered", || {
        fake.deliver_sm_resp_count() >= answered + 4
    })
    .await;
    let m = with_replies(&a, &id, 1).await;
    assert_eq!(reply_bodies(&m), [reply.as_str()], "{m}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_long_reply_in_data_sm_parts_joined_by_sar_tlvs_is_stored_once_whole() {
    let fake = smsc(Receipts::Tlv).await;
    let (s, id) = conversation(&fake).await;
    let ucs2 = |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_be_bytes).collect() };
    let (first, second) = ("明日の予約ですが、", "配信停止をお願いします");
    let parts = vec![ucs2(first), ucs2(second)];
    let sent = fake.inject_mo_sar(
        Carriage::DataSm,
        ("819012345678", "81312345678"),
        8,
        0x1234,
        parts,
    );
    assert!(sent);
    let m = with_replies(&s, &id, 1).await;
    let whole = format!("{first}{second}");
    assert_eq!(reply_bodies(&m), [whole.as_str()], "{m}");
    eventually("both parts answered", || fake.data_sm_resp_count() == 2).await;
    assert_eq!(fake.data_sm_refusal_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn replies_in_message_payload_by_deliver_sm_or_data_sm_are_stored_on_the_message() {
    let fake = smsc(Receipts::Tlv).await;
    let (s, id) = conversation(&fake).await;
    let ucs2 = |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_be_bytes).collect() };
    let (from, to) = ("819012345678", "81312345678");
    let long = "了解しました、".repeat(30);
    assert!(fake.inject_mo_raw_as(Carriage::Payload, from, to, 0, 8, ucs2(&long)));
    // IA5 (0x01): ASCII, where GSM-7 would read "_" as "§".
    assert!(fake.inject_mo_raw_as(Carriage::DataSm, from, to, 0, 1, b"OK by data_sm".to_vec()));
    let m = with_replies(&s, &id, 2).await;
    let bodies = reply_bodies(&m);
    assert!(bodies.contains(&long.as_str()), "{bodies:?}");
    assert!(bodies.contains(&"OK by data_sm"), "{bodies:?}");
    eventually("the data_sm answered", || fake.data_sm_resp_count() == 1).await;
    assert_eq!(
        fake.data_sm_refusal_count() + fake.deliver_sm_refusal_count(),
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn a_reply_in_jis_saying_teishi_opts_the_number_out() {
    let fake = smsc(Receipts::Tlv).await;
    let (s, _) = conversation(&fake).await;
    // 停止 in ISO-2022-JP, the 7-bit form of JIS X 0208: ESC $ B, row/cell pairs, ESC ( B.
    let teishi = b"\x1b$B\x44\x64\x3b\x5f\x1b(B".to_vec();
    assert!(fake.inject_mo_raw("819012345678", "81312345678", 0, 0x05, teishi));
    let mut listed = Vec::new();
    for _ in 0..500 {
        let page: Value = s
            .get("/v1/opt-outs?to=09012345678")
            .await
            .json()
            .await
            .unwrap();
        listed = page["data"].as_array().unwrap().clone();
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["keyword"], "停止");
    assert_eq!(listed[0]["via"], "reply");
    let (status, p) = s
        .send(json!({"to": "090-1234-5678", "from": "03-1234-5678", "body": "次回のご案内"}))
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("number_blocked")),
        "{p}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_alert_notification_gets_no_answer_and_the_bind_stays_up() {
    let fake = smsc(Receipts::Tlv).await;
    let (s, id) = conversation(&fake).await;
    assert!(fake.send_alert_notification("819012345678", "81312345678"));
    // The connection reads in order: once the reply after the alert is answered, the alert
    // was taken.
    assert!(fake.inject_mo("819012345678", "81312345678", "after the alert"));
    let m = with_replies(&s, &id, 1).await;
    assert_eq!(reply_bodies(&m), ["after the alert"], "{m}");
    eventually("the reply answered", || fake.deliver_sm_resp_count() >= 2).await;
    assert_eq!(
        fake.alert_answer_count(),
        0,
        "alert_notification has no response"
    );
    assert_eq!((fake.bind_count(), fake.bound_sessions()), (1, 1));
    assert!(s
        .metrics()
        .await
        .contains("tsunagi_smpp_alert_notifications_total 1"));
    s.stop().await;
}

#[tokio::test]
async fn a_reply_from_no_valid_number_is_answered_and_not_stored() {
    let fake = smsc(Receipts::None).await;
    let s = server(&fake, "").await;
    let id = sent(
        &s,
        json!({"to": "090-1234-5678", "from": "03-1234-5678", "body": "x"}),
    )
    .await;
    s.wait_for(&id, |st| st == "sent").await;
    assert!(fake.inject_mo("12", "81312345678", "who am I"));
    eventually("the reply answered", || fake.deliver_sm_resp_count() == 1).await;
    let m = message(&s, &id).await;
    assert_eq!(m["replies"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn throttled_submits_are_retried_then_delivered() {
    let fake = smsc(Receipts::Tlv).await;
    fake.throttle_every(2);
    fake.queue_full_every(5);
    let s = server(&fake, "").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let to = format!("090-2222-000{i}");
        ids.push(sent(&s, json!({"to": to, "body": "x"})).await);
    }
    for id in &ids {
        let m = s.wait_for(id, |st| st == "delivered").await;
        assert_eq!(
            event_statuses(&m),
            ["queued", "sending", "sent", "delivered"]
        );
        assert_eq!(s.provider_calls(id), 1, "retried inside one send");
    }
    assert!(fake.throttled_count() >= 3, "{}", fake.throttled_count());
    for i in 0..6 {
        assert_eq!(fake.submits_to(&format!("81902222000{i}")).len(), 1);
    }
    assert!(s.metrics().await.contains("tsunagi_smpp_throttles_total"));

    // A throttling spell: every submit refused for a while, then taken.
    fake.throttle_every(0);
    fake.queue_full_every(0);
    let before = fake.throttled_count();
    fake.throttle_for(Duration::from_millis(300));
    let id = sent(&s, json!({"to": "090-2222-0100", "body": "x"})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    assert!(fake.throttled_count() > before);
    assert_eq!(fake.submits_to("819022220100").len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_connection_dropped_mid_window_then_everything_is_delivered_exactly_once() {
    let fake = smsc(Receipts::Tlv).await;
    fake.drop_after(4);
    let s = server(&fake, "window = 10").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let to = format!("080-3333-00{i:02}");
        ids.push(sent(&s, json!({"to": to, "body": format!("message {i}")})).await);
    }
    for id in &ids {
        s.wait_for(id, |st| st == "delivered").await;
    }
    assert_eq!(fake.unanswered_count(), 4);
    assert!(fake.bind_count() >= 2, "rebound after the drop");
    for i in 0..10 {
        let submits = fake.submits_to(&format!("81803333{:04}", i));
        assert_eq!(submits.len(), 1, "destination {i}");
        assert_eq!(submits[0].text(), format!("message {i}"));
    }
    s.stop().await;
}

#[tokio::test]
async fn a_long_japanese_message_arrives_in_udh_parts_that_join_to_the_original() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "").await;
    // The emoji takes units 67 and 68: a split by units would cut it in half.
    let body = format!("{}😀{}", "あ".repeat(66), "予約確認".repeat(33));
    assert_eq!(body.chars().count(), 199);
    let id = sent(&s, json!({"to": "090-4444-5555", "body": body})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let parts = fake.submits_to("819044445555");
    assert_eq!(parts.len(), 3);
    let reference = parts[0].concat().unwrap().reference;
    for part in &parts {
        assert_eq!((part.esm_class, part.data_coding), (0x40, 0x08));
        let concat = part.concat().unwrap();
        assert_eq!((concat.reference, concat.total), (reference, 3));
        assert!(part.payload.len() <= 134);
    }
    assert_eq!(fake.texts_to("819044445555"), [body]);
    s.stop().await;
}

#[tokio::test]
async fn a_refused_bind_keeps_messages_queued_and_readyz_says_why() {
    let fake = smsc(Receipts::Tlv).await;
    // Slow binds let the messages be claimed before the refusal is known.
    fake.set_bind_delay(Duration::from_millis(1500));
    // The slow bind's answer well inside the wait for it, on a loaded machine too.
    let timings = "response_timeout_ms = 6000\nsend_timeout_ms = 8000\n";
    let s = TestServer::with_delivery(&smpp_config(&fake, "wrong", timings)).await;
    let ids = [
        sent(&s, json!({"to": "090-5555-0001", "body": "a"})).await,
        sent(&s, json!({"to": "090-5555-0002", "body": "b"})).await,
    ];
    let reason = "SMPP bind refused by the SMSC: ESME_RINVPASWD (0x0000000E)";
    for id in &ids {
        let m = s.wait_for(id, |st| st == "queued").await;
        let mut detail = m["status_detail"].clone();
        for _ in 0..250 {
            if detail.as_str().is_some_and(|d| d.contains(reason)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let m = message(&s, id).await;
            detail = m["status_detail"].clone();
        }
        assert_eq!(detail, format!("waiting for the provider: {reason}"));
    }
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(text.contains(reason), "{text}");
    assert_eq!(fake.submit_count(), 0);

    fake.set_bind_delay(Duration::ZERO);
    fake.set_password("wrong");
    for id in &ids {
        s.wait_for(id, |st| st == "delivered").await;
    }
    assert_eq!(fake.submit_count(), 2);
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_unbinds_cleanly() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "binds = 2").await;
    let id = sent(&s, json!({"to": "090-1234-5678", "body": "x"})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(fake.bound_sessions(), 2);
    s.stop().await;
    assert_eq!(fake.unbind_count(), 2);
    assert_eq!(fake.bound_sessions(), 0);
}

#[tokio::test]
async fn senders_get_the_ton_and_npi_of_their_kind() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "short_code_ton = 3\nshort_code_npi = 0").await;
    let senders = [
        ("03-1234-5678", 1, 1, "81312345678"),
        ("MYSHOP", 5, 0, "MYSHOP"),
        ("0005-123-456", 3, 0, "0005123456"),
    ];
    for (i, (from, ..)) in senders.iter().enumerate() {
        let to = format!("090-6666-000{i}");
        let id = sent(&s, json!({"to": to, "from": from, "body": "x"})).await;
        s.wait_for(&id, |st| st == "delivered").await;
    }
    for (i, (_, ton, npi, addr)) in senders.iter().enumerate() {
        let sub = &fake.submits_to(&format!("81906666000{i}"))[0];
        assert_eq!(
            (sub.source_ton, sub.source_npi, sub.source_addr.as_str()),
            (*ton, *npi, *addr)
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn transmitter_and_receiver_binds_carry_submits_and_receipts() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "bind_mode = \"transmitter_receiver\"\nbinds = 2").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(sent(&s, json!({"to": format!("090-7777-000{i}"), "body": "x"})).await);
    }
    for id in &ids {
        s.wait_for(id, |st| st == "delivered").await;
    }
    assert_eq!(fake.bind_count(), 4);
    s.stop().await;
    assert_eq!(fake.unbind_count(), 4);
}

/// Receiver binds refused while transmitters bind: messages still go, and `/readyz` stays ready
/// but warns that receipts and replies wait at the SMSC, until a receiver binds.
#[tokio::test]
async fn a_refused_receiver_bind_is_a_readiness_warning_until_one_binds() {
    let fake = smsc(Receipts::Tlv).await;
    fake.refuse_receiver_binds(true);
    let s = server(&fake, "bind_mode = \"transmitter_receiver\"").await;
    eventually("a receiver bind refused", || fake.refused_bind_count() >= 1).await;
    let id = sent(&s, json!({"to": "090-7777-0001", "body": "x"})).await;
    s.wait_for(&id, |st| st == "sent").await;
    let readyz = || async {
        let r = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    let warning = body["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("no SMPP receiver bind") && warning.contains("ESME_RBINDFAIL"),
        "{body}"
    );
    assert!(s
        .metrics()
        .await
        .contains("tsunagi_smpp_bind_failures_total{reason=\"refused\"}"));

    fake.refuse_receiver_binds(false);
    let mut body = Value::Null;
    for _ in 0..250 {
        body = readyz().await.1;
        if body.get("warnings").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body, json!({"status": "ready"}));
    s.stop().await;
}

#[tokio::test]
async fn a_long_message_to_an_unreachable_handset_is_undelivered_naming_the_part() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "").await;
    let id = sent(&s, json!({"to": "090-1234-9990", "body": "長".repeat(100)})).await;
    let m = s.wait_for(&id, |st| st == "undelivered").await;
    assert_eq!(fake.submits_to("819012349990").len(), 2);
    let detail = m["status_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("part 1 of 2: SMSC receipt: UNDELIV"),
        "{detail}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_idle_bind_checks_the_link_with_enquire_link() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "enquire_link_seconds = 1").await;
    eventually("an enquire_link", || fake.enquire_link_count() >= 1).await;
    let ready = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn the_accounts_source_addr_sends_messages_that_name_no_sender() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "source_addr = \"0005123456\"").await;
    let id = sent(&s, json!({"to": "090-8888-0001", "body": "x"})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let sub = &fake.submits_to("819088880001")[0];
    assert_eq!(
        (sub.source_ton, sub.source_npi, sub.source_addr.as_str()),
        (3, 0, "0005123456")
    );
    s.stop().await;
}

#[tokio::test]
async fn a_long_message_with_one_part_unanswered_resends_that_part_only_with_its_reference() {
    let fake = smsc(Receipts::Tlv).await;
    // The wait for answers runs out before the silent connection is declared dead.
    let s = server(&fake, "response_timeout_ms = 1500\nsend_timeout_ms = 1500").await;
    let body = "あ".repeat(150);
    fake.ignore_submit(2);
    let id = sent(&s, json!({"to": "090-4444-0001", "body": body})).await;
    let m = s.wait_for(&id, |st| st == "delivered").await;
    let submits = fake.submits_to("819044440001");
    let mut seqs: Vec<(u16, u8)> = submits
        .iter()
        .map(|p| {
            let c = p.concat().expect("a part");
            (c.reference, c.seq)
        })
        .collect();
    seqs.sort();
    let reference = seqs[0].0;
    assert_eq!(
        seqs,
        [(reference, 1), (reference, 2), (reference, 3)],
        "each part accepted once, all under one reference"
    );
    assert_eq!(fake.unanswered_count(), 1);
    assert_eq!(fake.texts_to("819044440001"), [body]);
    let details: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("in doubt")),
        "{details:?}"
    );
    s.stop().await;
}

/// A fake SMSC speaking TLS, its CA's PEM in a file for `tls_ca_file`.
async fn tls_smsc() -> (FakeSmsc, tempfile::NamedTempFile) {
    let fake = FakeSmsc::start(Options {
        tls: true,
        ..Options::new(SYSTEM_ID, PASSWORD)
    })
    .await
    .unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), fake.tls_ca_pem().unwrap()).unwrap();
    (fake, ca)
}

/// `/readyz` once its answer mentions `reason` (or as it is after 10 s): status and text.
async fn readyz_saying(s: &TestServer, reason: &str) -> (u16, String) {
    let mut answer = (0, String::new());
    for _ in 0..500 {
        let r = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
        answer = (r.status().as_u16(), r.text().await.unwrap());
        if answer.1.contains(reason) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answer
}

#[tokio::test]
async fn a_message_is_sent_and_delivered_over_a_tls_bind_trusting_the_ca_file() {
    let (fake, ca) = tls_smsc().await;
    let extra = format!("tls = true\ntls_ca_file = {:?}\n", ca.path());
    let s = server(&fake, &extra).await;
    let id = sent(&s, json!({"to": "090-1234-5678", "body": "over TLS"})).await;
    let m = s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(
        event_statuses(&m),
        ["queued", "sending", "sent", "delivered"]
    );
    assert_eq!(fake.texts_to("819012345678"), ["over TLS"]);
    assert_eq!((fake.bind_count(), fake.failed_handshake_count()), (1, 0));
    eventually("the receipt answered", || fake.deliver_sm_resp_count() == 1).await;
    s.stop().await;
}

#[tokio::test]
async fn an_smsc_system_error_is_retried_and_a_bad_destination_is_not() {
    let fake = smsc(Receipts::Tlv).await;
    let s = TestServer::with_delivery(&format!(
        "max_attempts = 2\n{}",
        smpp_config(&fake, PASSWORD, "")
    ))
    .await;
    let busy = sent(&s, json!({"to": "090-4444-9992", "body": "x"})).await;
    let bad = sent(&s, json!({"to": "090-4444-9991", "body": "x"})).await;
    let busy = s.wait_for(&busy, |st| st == "failed").await;
    let bad = s.wait_for(&bad, |st| st == "failed").await;
    let detail = |m: &Value| {
        m["events"].as_array().unwrap().last().unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        detail(&busy).contains("gave up after 2 attempts"),
        "{}",
        detail(&busy)
    );
    assert!(detail(&busy).contains("ESME_RSYSERR"), "{}", detail(&busy));
    assert!(detail(&bad).contains("ESME_RINVDSTADR"), "{}", detail(&bad));
    assert!(!detail(&bad).contains("gave up"), "{}", detail(&bad));
    s.stop().await;
}

#[tokio::test]
async fn a_tls_bind_to_an_smsc_with_an_untrusted_certificate_fails_in_readyz_and_sends_nothing() {
    let (fake, _ca) = tls_smsc().await;
    // Only the public CAs: the fake's private CA is not among them.
    let s = server(&fake, "tls = true\n").await;
    let id = sent(&s, json!({"to": "090-1234-5678", "body": "never sent"})).await;
    let reason = format!(
        "no TLS session with the SMSC at 127.0.0.1:{}: TLS handshake failed: \
         invalid peer certificate: UnknownIssuer",
        fake.addr().port()
    );
    let (status, text) = readyz_saying(&s, &reason).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains(&reason), "{text}");
    assert!(text.contains("tls_ca_file"), "says what to do: {text}");
    assert!(fake.failed_handshake_count() >= 1);
    assert_eq!((fake.bind_count(), fake.submit_count()), (0, 0));
    assert_eq!(message(&s, &id).await["status"], "queued");
    assert!(s
        .metrics()
        .await
        .contains("tsunagi_smpp_bind_failures_total{reason=\"tls\"}"));
    s.stop().await;
}

#[tokio::test]
async fn a_tls_certificate_naming_another_host_than_tls_server_name_is_refused() {
    let (fake, ca) = tls_smsc().await;
    let extra = format!(
        "tls = true\ntls_ca_file = {:?}\ntls_server_name = \"smsc.example.jp\"\n",
        ca.path()
    );
    let s = server(&fake, &extra).await;
    let (status, text) = readyz_saying(&s, "certificate not valid for name").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("\\\"smsc.example.jp\\\""), "{text}");
    assert_eq!(fake.bind_count(), 0);
    s.stop().await;
}

/// Every character of the GSM 03.38 basic table (from the standard, 0x1B left out), then the
/// extension table's but form feed, a control character the API refuses.
const EVERY_GSM7_CHARACTER: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                                    ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\
                                    ^{}\\[~]|€";

#[tokio::test]
async fn a_long_gsm7_message_sent_packed_arrives_whole_and_byte_exact() {
    let fake = FakeSmsc::start(Options {
        gsm_packed: true,
        ..Options::new(SYSTEM_ID, PASSWORD)
    })
    .await
    .unwrap();
    let s = server(&fake, "gsm_packed = true").await;
    // 136 characters, 145 septets; three times over is 435 septets: three parts of up to 153.
    let body = EVERY_GSM7_CHARACTER.repeat(3);
    let id = sent(&s, json!({"to": "090-7777-1234", "body": body})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let parts = fake.submits_to("819077771234");
    assert_eq!(parts.len(), 3);
    for part in &parts {
        assert_eq!((part.esm_class, part.data_coding), (0x40, 0));
        let udh = part.udh.as_ref().unwrap();
        assert!(udh.len() + part.payload.len() <= 140);
        // Packed: 7 octets for every 8 septets, after one fill bit.
        let septets = part.user_data().len();
        assert_eq!(part.payload.len(), (1 + septets * 7).div_ceil(8));
    }
    let septets: Vec<u8> = parts.iter().flat_map(|p| p.user_data()).collect();
    assert_eq!(Some(septets), fake_smsc::text::gsm7_encode(&body));
    assert_eq!(fake.texts_to("819077771234"), [body]);
    s.stop().await;
}

/// Seconds an SMPP relative time (`YYMMDDhhmmss000R`, months and years unused) stands for.
fn relative_seconds(time: &str) -> u64 {
    assert!(time.len() == 16 && time.ends_with("000R"), "{time:?}");
    let field = |i: usize| time[i..i + 2].parse::<u64>().unwrap();
    assert_eq!((field(0), field(2)), (0, 0), "{time:?}");
    field(4) * 86_400 + field(6) * 3600 + field(8) * 60 + field(10)
}

#[tokio::test]
async fn an_otp_is_submitted_with_its_codes_time_to_live_as_validity_period() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "").await;
    let (status, v) = s
        .call(
            "/v1/otp",
            json!({"to": "090-1234-5678", "ttl_seconds": 300}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    eventually("the code submitted", || {
        !fake.submits_to("819012345678").is_empty()
    })
    .await;
    let validity = fake.submits_to("819012345678")[0].validity_period.clone();
    let seconds = relative_seconds(&validity);
    assert!((290..=300).contains(&seconds), "{validity}");

    let id = sent(&s, json!({"to": "090-1234-5679", "body": "no expiry"})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    assert_eq!(fake.submits_to("819012345679")[0].validity_period, "");
    s.stop().await;
}

#[tokio::test]
async fn a_single_gsm7_message_of_159_or_160_characters_sent_packed_is_140_octets() {
    let fake = FakeSmsc::start(Options {
        gsm_packed: true,
        ..Options::new(SYSTEM_ID, PASSWORD)
    })
    .await
    .unwrap();
    let s = server(&fake, "gsm_packed = true").await;
    // 159 septets leave 7 spare bits, which carry a CR: the handset shows no stray '@'.
    for (length, to) in [(160, "090-7777-2345"), (159, "090-7777-2346")] {
        let body = "Your code is 123456. ".repeat(8)[..length].to_string();
        let id = sent(&s, json!({"to": to, "body": body})).await;
        s.wait_for(&id, |st| st == "delivered").await;
        let parts = fake.submits_to(&format!("81{}", to[1..].replace('-', "")));
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].esm_class, parts[0].payload.len()), (0, 140));
        assert_eq!(
            parts[0].payload[139] >> 1,
            if length == 159 { 0x0D } else { b' ' }
        );
        assert_eq!(parts[0].text(), body);
    }
    s.stop().await;
}

#[tokio::test]
async fn an_ia5_account_sends_ascii_as_data_coding_1_and_a_body_with_e_acute_as_ucs2() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "gsm_data_coding = 1").await;
    let ascii = "Hello {name} @ 100$ ~ [ok] | ^_^ \\o/";
    let id = sent(&s, json!({"to": "090-7777-3456", "body": ascii})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let sub = &fake.submits_to("819077773456")[0];
    assert_eq!((sub.data_coding, sub.esm_class), (0x01, 0));
    assert_eq!(sub.payload, ascii.as_bytes());
    // é is GSM-7 but not IA5: the body goes UCS-2, split by its rules (100 characters: 2 parts).
    let accented = format!("Café {}", "a".repeat(95));
    let id = sent(&s, json!({"to": "090-7777-4567", "body": accented})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let parts = fake.submits_to("819077774567");
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.data_coding == 0x08));
    assert_eq!(fake.texts_to("819077774567"), [accented]);
    // It counts, and bills, the two parts it went in, not GSM-7's one segment.
    let m: Value = s
        .get(&format!("/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["segments"], 2, "{m}");
    s.stop().await;
}

#[tokio::test]
async fn a_long_ia5_message_splits_as_gsm7_does_with_the_concatenation_udh() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "gsm_data_coding = 1").await;
    // 80 escapes fill 160 septets; one more character makes two parts, 76 escapes in the first.
    let body = format!("{}!", "{".repeat(80));
    let id = sent(&s, json!({"to": "090-7777-5678", "body": body})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let parts = fake.submits_to("819077775678");
    assert_eq!(parts.len(), 2);
    for part in &parts {
        assert_eq!((part.esm_class, part.data_coding), (0x40, 0x01));
    }
    assert_eq!(parts[0].payload, "{".repeat(76).as_bytes());
    assert_eq!(fake.texts_to("819077775678"), [body]);
    s.stop().await;
}

#[tokio::test]
async fn an_smpp_route_account_sends_with_its_own_gsm_data_coding() {
    let fake = smsc(Receipts::Tlv).await;
    let config = format!(
        r#"
[[delivery.routes]]
name = "ia5"
provider = "smpp"
[delivery.routes.smpp]
host = "127.0.0.1"
port = {port}
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
reconnect_min_ms = 50
gsm_data_coding = 1
"#,
        port = fake.addr().port()
    );
    let s = TestServer::with_delivery(&config).await;
    let id = sent(&s, json!({"to": "090-7777-6789", "body": "route @ IA5"})).await;
    s.wait_for(&id, |st| st == "delivered").await;
    let sub = &fake.submits_to("819077776789")[0];
    assert_eq!(
        (sub.data_coding, sub.payload.as_slice()),
        (0x01, &b"route @ IA5"[..])
    );
    s.stop().await;
}

#[tokio::test]
async fn a_message_whose_expiry_passes_while_it_waits_is_never_submitted() {
    let fake = smsc(Receipts::Tlv).await;
    let s = server(&fake, "").await;
    let send_at = chrono::Utc::now() + chrono::Duration::minutes(1);
    let expires_at = send_at + chrono::Duration::minutes(1);
    let id = sent(
        &s,
        json!({
            "to": "090-1234-5678",
            "body": "セール開始のお知らせ",
            "send_at": send_at.to_rfc3339(),
            "expires_at": expires_at.to_rfc3339(),
        }),
    )
    .await;
    s.advance(180);
    let m = s.wait_for(&id, |st| st == "undelivered").await;
    assert_eq!(m["status_detail"], "expired before it was sent", "{m}");
    assert_eq!(event_statuses(&m), ["scheduled", "sending", "undelivered"]);
    assert!(fake.submits_to("819012345678").is_empty());
    s.stop().await;
}

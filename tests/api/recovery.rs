use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use reqwest::Client;
use serde_json::{json, Value};

use crate::harness::{
    event_statuses, is_final, spawn_service, terminate, PostgresDatabase, ServiceProcess,
    TestDatabase, KEY,
};

async fn post_message(client: &Client, base: &str, body: Value) -> Option<String> {
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .ok()?;
    if r.status() != 202 {
        return None;
    }
    let b: Value = r.json().await.ok()?;
    Some(b["id"].as_str()?.to_string())
}

async fn get_json(client: &Client, url: String) -> Value {
    client
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn message(client: &Client, base: &str, id: &str) -> Value {
    get_json(client, format!("{base}/v1/messages/{id}")).await
}

/// Wait until every message is final; return them.
async fn all_final(client: &Client, base: &str, ids: &[String]) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut done = Vec::new();
    for id in ids {
        loop {
            let m = message(client, base, id).await;
            if is_final(m["status"].as_str().unwrap_or_default()) {
                done.push(m);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never became final: {m}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    done
}

fn count(m: &Value, status: &str) -> usize {
    event_statuses(m).iter().filter(|s| **s == status).count()
}

/// Every accepted message delivered once: the provider asked once (the sandbox counts every
/// send, repeats too), one inbox entry, one `delivered` event and at most one `sent`.
async fn assert_each_sent_once(client: &Client, base: &str, ids: &[String], handset: &str) {
    for m in all_final(client, base, ids).await {
        assert_eq!(m["status"], "delivered", "{m}");
        assert!(count(&m, "sent") <= 1, "sent twice: {m}");
        assert_eq!(count(&m, "delivered"), 1, "{m}");
    }
    let inbox: Vec<Value> = serde_json::from_value(
        get_json(
            client,
            format!("{base}/v1/sandbox/inbox?to={handset}&limit=500"),
        )
        .await,
    )
    .unwrap();
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for entry in &inbox {
        assert_eq!(entry["sends"], 1, "the provider was asked twice: {entry}");
        *per_message
            .entry(entry["message_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            per_message.get(id),
            Some(&1),
            "{id} reached the handset {:?} times",
            per_message.get(id)
        );
    }
    assert_eq!(
        inbox.len(),
        ids.len(),
        "the handset got messages nobody accepted"
    );
}

fn kill9(p: &mut ServiceProcess) {
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_150_in_flight_and_one_scheduled_loses_nothing_and_sends_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::fresh(dir.path()).await;
    let client = Client::new();
    // A slow answer: the kill finds sends at the provider whose outcome was never recorded.
    let mut service = spawn_service(
        dir.path(),
        &db,
        "sandbox_latency_ms = 300\nsandbox_answer_ms = 100\nconcurrency = 8",
    );
    let base = service.base.clone();
    let sends = (0..150).map(|i| {
        post_message(
            &client,
            &base,
            json!({"to": "090-7777-0001", "body": format!("m{i}")}),
        )
    });
    let mut ids: Vec<String> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let send_at = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let scheduled = post_message(
        &client,
        &base,
        json!({"to": "090-7777-0001", "body": "scheduled", "send_at": send_at}),
    )
    .await
    .unwrap();
    kill9(&mut service);

    let restarted = spawn_service(dir.path(), &db, "sandbox_latency_ms = 10");
    let base = restarted.base.clone();
    let m = message(&client, &base, &scheduled).await;
    assert_eq!(
        m["status"], "scheduled",
        "the scheduled message survived the crash"
    );
    ids.push(scheduled.clone());
    assert_each_sent_once(&client, &base, &ids, "09077770001").await;
    let m = message(&client, &base, &scheduled).await;
    let sending_at: chrono::DateTime<Utc> = m["events"][1]["at"].as_str().unwrap().parse().unwrap();
    let due: chrono::DateTime<Utc> = send_at.parse().unwrap();
    assert!(
        sending_at >= due - chrono::Duration::milliseconds(1),
        "fired early: {sending_at} < {due}"
    );
    terminate(&restarted.child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::fresh(dir.path()).await;
    let client = Client::new();
    let mut service = spawn_service(dir.path(), &db, "sandbox_latency_ms = 50");
    let base = service.base.clone();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
            tokio::spawn(async move {
                let id = post_message(
                    &client,
                    &base,
                    json!({"to": "080-7777-0002", "body": format!("m{i}")}),
                )
                .await;
                if id.is_some() {
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                id
            })
        })
        .collect();
    // Kill once some requests are answered and others are still in flight.
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 30 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    kill9(&mut service);
    let mut acknowledged = Vec::new();
    for s in sends {
        if let Some(id) = s.await.unwrap() {
            acknowledged.push(id);
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "the kill came before any acknowledgement; nothing was tested"
    );
    let restarted = spawn_service(dir.path(), &db, "sandbox_latency_ms = 10");
    let base = restarted.base.clone();
    let list = get_json(&client, format!("{base}/v1/messages?limit=100")).await;
    let stored = list["data"].as_array().unwrap().len();
    assert!(
        stored >= acknowledged.len().min(100),
        "acknowledged messages are missing"
    );
    for m in all_final(&client, &base, &acknowledged).await {
        assert!(count(&m, "sent") <= 1, "{m}");
        assert_eq!(m["status"], "delivered", "{m}");
    }
    terminate(&restarted.child);
}

#[test]
fn sigterm_finishes_the_sends_in_flight_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDatabase::fresh(dir.path()));
    // At 5 sends a second the dispatcher claims jobs (marking them `sending`) and then holds
    // them for the rate limiter, so once the first message is out a SIGTERM finds claimed jobs that
    // have not reached the provider yet.
    let mut service = spawn_service(dir.path(), &db, "rate_per_second = 5");
    let client = Client::new();
    // One after the other, so that the first id is the first job claimed.
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..20 {
            let body = json!({"to": "090-7777-0003", "body": format!("m{i}")});
            ids.push(post_message(&client, &service.base, body).await.unwrap());
        }
        ids
    });
    rt.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let first = message(&client, &service.base, &ids[0]).await;
            if !matches!(first["status"].as_str(), Some("queued" | "sending")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never sent: {first}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    terminate(&service.child);
    let status = service.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Before any restart: a job left `sending` was claimed and dropped, not drained (a restart
    // would send it again and hide that).
    let on_disk = rt.block_on(db.stored_statuses());
    assert_eq!(on_disk.get("sending"), None, "not drained: {on_disk:?}");
    assert!(
        on_disk.get("queued").is_some_and(|&n| n > 0) && on_disk.len() > 1,
        "the SIGTERM came before or after the sends, so nothing was in flight: {on_disk:?}"
    );

    // And nothing needed sending twice: one `sending` per message, one copy on the handset.
    let restarted = spawn_service(dir.path(), &db, "");
    rt.block_on(async {
        for m in all_final(&client, &restarted.base, &ids).await {
            assert_eq!(count(&m, "sending"), 1, "sent again after the restart: {m}");
        }
        assert_each_sent_once(&client, &restarted.base, &ids, "09077770003").await;
    });
    terminate(&restarted.child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otp_cooldown_and_a_pending_code_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::fresh(dir.path()).await;
    let client = Client::new();
    let mut service = spawn_service(dir.path(), &db, "");
    let base = service.base.clone();
    let v: Value = client
        .post(format!("{base}/v1/otp"))
        .bearer_auth(KEY)
        .json(&json!({"to": "090-8888-1234"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["verification_id"].as_str().unwrap().to_string();
    let text = loop {
        let inbox = get_json(&client, format!("{base}/v1/sandbox/inbox?to=09088881234")).await;
        if let Some(body) = inbox[0]["body"].as_str() {
            break body.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    kill9(&mut service);

    let restarted = spawn_service(dir.path(), &db, "");
    let base = restarted.base.clone();
    let again = client
        .post(format!("{base}/v1/otp"))
        .bearer_auth(KEY)
        .json(&json!({"to": "09088881234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 429, "the cool-down was forgotten");
    assert!(again.headers().contains_key("retry-after"));
    let checked = client
        .post(format!("{base}/v1/otp/{id}/check"))
        .bearer_auth(KEY)
        .json(&json!({"code": crate::harness::code_in(&text)}))
        .send()
        .await
        .unwrap();
    assert_eq!(checked.status(), 200, "the pending code was forgotten");
    terminate(&restarted.child);
}

/// Post `count` messages numbered from `first`, alternating between `bases`, 16 at a time; the
/// ids of those acknowledged.
async fn post_alternately(
    client: &Client,
    bases: [&str; 2],
    first: usize,
    count: usize,
) -> Vec<String> {
    use futures_util::StreamExt;
    futures_util::stream::iter(first..first + count)
        .map(|i| {
            let base = bases[i % 2].to_string();
            let client = client.clone();
            async move {
                post_message(
                    &client,
                    &base,
                    json!({"to": "090-7777-0005", "body": format!("m{i}")}),
                )
                .await
            }
        })
        .buffered(16)
        .filter_map(|id| async move { id })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_one_killed_half_way_send_each_of_400_messages_once() {
    let Some(database) = PostgresDatabase::create().await else {
        return;
    };
    let db = TestDatabase::Postgres(database);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The provider is slow to answer, so at the kill the victim holds leased jobs already at the
    // provider (whose answer it never records) and others waiting for its rate; their leases run
    // out before the provider's receipts come, so they are taken over in doubt.
    let config = "lease_seconds = 2\nsandbox_latency_ms = 5000\nsandbox_answer_ms = 200\n\
                  rate_per_second = 60\nconcurrency = 16";
    let client = Client::new();
    let mut a = spawn_service(dir_a.path(), &db, config);
    let b = spawn_service(dir_b.path(), &db, config);
    let mut ids = post_alternately(&client, [&a.base, &b.base], 0, 200).await;
    assert_eq!(ids.len(), 200, "both instances accepted every message");
    kill9(&mut a);
    let a = spawn_service(dir_a.path(), &db, config);
    ids.extend(post_alternately(&client, [&a.base, &b.base], 200, 200).await);
    assert_eq!(ids.len(), 400, "the restarted instance accepts again");

    assert_each_sent_once(&client, &b.base, &ids, "09077770005").await;
    let taken_over =
        futures_util::future::join_all(ids.iter().map(|id| message(&client, &a.base, id)))
            .await
            .into_iter()
            .filter(|m| {
                m["events"].as_array().unwrap().iter().any(|e| {
                    e["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("taken over"))
                })
            })
            .count();
    assert!(
        taken_over > 0,
        "the kill found no job in flight, so no take-over was tested"
    );
    terminate(&a.child);
    terminate(&b.child);
}

//! The contract suite and PostgreSQL's own checks, each against a database of its own
//! (`tsunagi_test_<ulid>`, made through the server `TSUNAGI_TEST_POSTGRES_URL` names and dropped
//! after). Without that variable every test here passes without running: a fresh machine may
//! have no PostgreSQL.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sqlx::{Connection, PgConnection};

use super::*;
use crate::{
    domain::hygiene::Hygiene,
    domain::{
        ids::{MessageId, VerificationId},
        phone::PhoneNumber,
        segment::Segmentation,
        source::Source,
        state::JobState,
    },
    otp::{check::CheckOutcome, rules::OtpLimits},
    store::{
        contract::contract_tests, ListStore, MessageStore, NewMessage, NewVerification, OtpStart,
        OtpStore, QueueStore, Store, Transition,
    },
};

const URL_VAR: &str = "TSUNAGI_TEST_POSTGRES_URL";

/// A database of one test's own, dropped (with whatever is still connected) when this drops.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

impl TestDatabase {
    /// A fresh, empty database, or `None` (said once per test on stderr) without a server.
    pub(crate) async fn create() -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            eprintln!("skipped: {URL_VAR} is not set, so no PostgreSQL to test against");
            // In CI a skip would pass a test that never ran.
            assert!(
                std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
                "CI is set but TSUNAGI_TEST_POSTGRES_URL is not: the PostgreSQL tests would not run"
            );
            return None;
        };
        let name = format!(
            "tsunagi_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{URL_VAR}={admin_url}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which must not be blocked on: a thread of its
        // own with a runtime of its own drops the database.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

async fn open() -> Option<(PostgresStore, TestDatabase)> {
    let db = TestDatabase::create().await?;
    let store = PostgresStore::open(db.url()).await.unwrap();
    Some((store, db))
}

async fn fresh() -> Option<(Arc<dyn Store>, TestDatabase)> {
    let (store, db) = open().await?;
    Some((Arc::new(store), db))
}

contract_tests!(optional fresh);

#[test]
fn a_test_database_replaces_only_the_database_of_the_url() {
    for (url, want) in [
        (
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@127.0.0.1:5432/t1",
        ),
        (
            "postgres://u:p@db/test?sslmode=disable",
            "postgres://u:p@db/t1?sslmode=disable",
        ),
        ("postgres://db", "postgres://db/t1"),
    ] {
        assert_eq!(with_database(url, "t1"), want);
    }
}

fn message(source: Source, last: u32) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        to: PhoneNumber::parse(&format!("090-1234-{last:04}")).unwrap(),
        from: "TSUNAGI".into(),
        body: "123456".into(),
        segmentation: Segmentation::of("123456"),
        status: JobState::Queued,
        source,
        metadata: None,
        created_at: Utc::now(),
        send_at: None,
        expires_at: None,
        links: Vec::new(),
    }
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_string();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().unwrap();
        store.ready().await.unwrap();
    }
}

#[tokio::test]
async fn instances_claiming_together_take_each_job_once() {
    let Some((store, _db)) = open().await else {
        return;
    };
    let store = Arc::new(store);
    for i in 0..200 {
        store
            .accept(message(Source::Api, i), None, Hygiene::default())
            .await
            .unwrap();
    }
    let claims: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store
                        .claim(&format!("w{w}"), 7, Duration::from_secs(60), Utc::now())
                        .await
                        .unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.into_iter().map(|j| j.message_id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claims {
        claimed.extend(c.await.unwrap());
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!((total, claimed.len()), (200, 200));
}

/// A code "483920" to 090-1234-5678, sent now, with three checks.
fn verification() -> NewVerification {
    let at = Utc::now();
    let m = NewMessage {
        created_at: at,
        ..message(Source::Otp, 5678)
    };
    NewVerification {
        id: VerificationId::new(),
        code_hash: b"483920".to_vec(),
        prefix: m.to.national_prefix(4),
        burst_prefix: m.to.burst_prefix().to_string(),
        max_checks: 3,
        expires_at: at + chrono::Duration::minutes(5),
        client_ip: None,
        device_id: None,
        created_at: at,
        message: m,
    }
}

/// Limits that stay out of the way but for `per_number`.
fn limits(per_number: i64) -> OtpLimits {
    OtpLimits {
        cooldown_seconds: 0,
        per_number,
        per_ip: 100,
        per_device: 100,
        window_seconds: 600,
        pumping_window_seconds: 3600,
        pumping_grace_seconds: 120,
        pumping_min_sends: 1000,
        pumping_min_conversion: 0.3,
        pumping_block_seconds: 43200,
        burst_max_sends: 0,
        burst_window_seconds: 60,
    }
}

#[tokio::test]
async fn concurrent_codes_to_one_number_do_not_slip_under_its_limit() {
    let Some((store, _db)) = open().await else {
        return;
    };
    let store = Arc::new(store);
    let limits = limits(2);
    let starts: Vec<_> = (0..12)
        .map(|_| {
            let (store, limits) = (store.clone(), limits.clone());
            tokio::spawn(async move {
                store
                    .otp_start(verification(), limits, Hygiene::default())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut started = 0;
    for s in starts {
        if s.await.unwrap() == OtpStart::Started {
            started += 1;
        }
    }
    assert_eq!(started, 2);
}

#[tokio::test]
async fn an_otp_text_is_erased_once_the_provider_has_it() {
    let Some((s, _db)) = open().await else {
        return;
    };
    let (otp, api) = (message(Source::Otp, 5678), message(Source::Api, 5678));
    for m in [&otp, &api] {
        s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
        s.claim("w", 1, Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        let sent = Transition {
            message_id: m.id.clone(),
            to: JobState::Sent,
            detail: None,
            provider_message_id: None,
            retry_at: None,
            refund_attempt: false,
            route: None,
            progress: None,
        };
        s.transition(sent, Utc::now()).await.unwrap().unwrap();
    }
    let body = |id: MessageId| {
        sqlx::query_scalar::<_, String>("SELECT body FROM messages WHERE id = $1")
            .bind(id.as_str().to_string())
            .fetch_one(s.pool())
    };
    assert_eq!(body(otp.id).await.unwrap(), "");
    assert_eq!(body(api.id).await.unwrap(), "123456");
}

#[tokio::test]
async fn a_stored_value_that_does_not_read_back_is_corrupt() {
    let Some((s, _db)) = open().await else {
        return;
    };
    let m = message(Source::Api, 5678);
    s.accept(m.clone(), None, Hygiene::default()).await.unwrap();
    for damage in [
        "UPDATE messages SET to_number = 'not-a-number'",
        "UPDATE messages SET source = 'crm'",
        "UPDATE messages SET encoding = 'utf8'",
        "UPDATE messages SET status = 'lost'",
    ] {
        sqlx::query(damage).execute(s.pool()).await.unwrap();
        let read = s.message(&m.id).await;
        assert!(
            matches!(read, Err(StoreError::Corrupt(_))),
            "{damage}: {read:?}"
        );
        sqlx::query(
            "UPDATE messages SET to_number = '+819012345678', source = 'api', encoding = 'ucs2',
                                 status = 'queued'",
        )
        .execute(s.pool())
        .await
        .unwrap();
    }
    sqlx::query("UPDATE messages SET id = 'msg_nope'")
        .execute(s.pool())
        .await
        .unwrap();
    let claimed = s.claim("w", 1, Duration::from_secs(60), Utc::now()).await;
    assert!(
        matches!(claimed, Err(StoreError::Corrupt(_))),
        "a job whose id does not parse is not sent under a fresh id: {claimed:?}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM messages")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(status, "queued", "the failed claim rolled back");
}

#[tokio::test]
async fn a_postgres_url_opens_the_postgres_store() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    for url in [
        db.url().to_string(),
        db.url().replacen("postgres://", "postgresql://", 1),
    ] {
        let store = crate::store::open(&url).await.unwrap();
        store.ready().await.unwrap();
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'otp_verifications'",
    )
    .fetch_one(&PostgresStore::open(db.url()).await.unwrap().pool)
    .await
    .unwrap();
    assert_eq!(tables, 1, "the schema is in the PostgreSQL database");
}

#[tokio::test]
async fn concurrent_uses_of_one_idempotency_key_store_one_message() {
    let Some((store, _db)) = open().await else {
        return;
    };
    let store = Arc::new(store);
    let accepts: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = crate::store::IdempotencyRecord {
                    scope: "key-1".into(),
                    key: "order-1042".into(),
                    request_hash: "same-body".into(),
                    status: 202,
                    response: "{}".into(),
                };
                store
                    .accept(message(Source::Api, 5678), Some(key), Hygiene::default())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut stored = 0;
    for a in accepts {
        match a.await.unwrap() {
            crate::store::Acceptance::Stored => stored += 1,
            crate::store::Acceptance::Replayed { status, .. } => assert_eq!(status, 202),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stored, 1);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn concurrent_wrong_checks_each_count() {
    let Some((store, _db)) = open().await else {
        return;
    };
    let store = Arc::new(store);
    let v = verification();
    let started = store
        .otp_start(v.clone(), limits(100), Hygiene::default())
        .await
        .unwrap();
    assert_eq!(started, OtpStart::Started);
    let checks: Vec<_> = (0..10)
        .map(|_| {
            let (store, id) = (store.clone(), v.id.clone());
            tokio::spawn(async move {
                store
                    .otp_check(&id, Box::new(|stored| stored == b"000000"), Utc::now())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut left = Vec::new();
    for c in checks {
        match c.await.unwrap() {
            CheckOutcome::Incorrect(n) => left.push(n),
            CheckOutcome::Exhausted => {}
            other => panic!("{other:?}"),
        }
    }
    left.sort();
    assert_eq!(
        left,
        [0, 1, 2],
        "each of the three allowed checks counted once"
    );
    let record = store.otp_verification(&v.id).await.unwrap().unwrap();
    assert_eq!(record.checks, 3);
}

/// Two instances, each with its own writer, taking one key with two different bodies at once:
/// one message is stored, the same body is replayed, the other body is refused, whether the
/// uses meet in one batch or in two instances' batches.
#[tokio::test]
async fn concurrent_uses_of_one_key_by_two_instances_are_judged_in_order() {
    let Some((first, db)) = open().await else {
        return;
    };
    let second = PostgresStore::open(db.url()).await.unwrap();
    let stores = [Arc::new(first), Arc::new(second)];
    let accepts: Vec<_> = (0..40)
        .map(|i| {
            let store = stores[i % 2].clone();
            let hash = if i % 3 == 0 { "body-a" } else { "body-b" };
            tokio::spawn(async move {
                let key = crate::store::IdempotencyRecord {
                    scope: "key-1".into(),
                    key: "order-7".into(),
                    request_hash: hash.into(),
                    status: 202,
                    response: hash.into(),
                };
                let accepted = store
                    .accept(message(Source::Api, 5678), Some(key), Hygiene::default())
                    .await
                    .unwrap();
                (hash, accepted)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for a in accepts {
        answers.push(a.await.unwrap());
    }
    let stored: Vec<_> = answers
        .iter()
        .filter(|(_, a)| *a == crate::store::Acceptance::Stored)
        .map(|(hash, _)| *hash)
        .collect();
    assert_eq!(stored.len(), 1, "{answers:?}");
    for (hash, accepted) in &answers {
        match accepted {
            crate::store::Acceptance::Stored => {}
            crate::store::Acceptance::Replayed { response, .. } => {
                assert_eq!((*hash, response.as_str()), (stored[0], stored[0]))
            }
            crate::store::Acceptance::KeyReused => assert_ne!(*hash, stored[0]),
            other => panic!("{other:?}"),
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
}

/// A message that cannot be stored (its id is taken) fails alone: the others accepted with it
/// are stored.
#[tokio::test]
async fn one_bad_message_does_not_fail_the_others_in_its_commit() {
    let Some((store, _db)) = open().await else {
        return;
    };
    let store = Arc::new(store);
    let taken = message(Source::Api, 1);
    store
        .accept(taken.clone(), None, Hygiene::default())
        .await
        .unwrap();
    let accepts: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            let m = if i == 15 {
                taken.clone()
            } else {
                message(Source::Api, i)
            };
            tokio::spawn(async move { store.accept(m, None, Hygiene::default()).await })
        })
        .collect();
    let mut failed = 0;
    for a in accepts {
        match a.await.unwrap() {
            Ok(accepted) => assert_eq!(accepted, crate::store::Acceptance::Stored),
            Err(crate::store::StoreError::Conflict(_)) => failed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(failed, 1);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 30);
}

/// Accepted together, each message is judged by the lists on its own recipient and its own
/// hygiene; a refused message with a key leaves the key unused.
#[tokio::test]
async fn messages_accepted_together_are_each_judged_by_the_lists() {
    let Some((store, _db)) = open().await else {
        return;
    };
    let store = Arc::new(store);
    let denied = PhoneNumber::parse("090-1234-0001").unwrap();
    let allowed = PhoneNumber::parse("090-1234-0002").unwrap();
    store
        .list_add(crate::store::NumberList::Deny, &denied, None)
        .await
        .unwrap();
    store
        .list_add(crate::store::NumberList::Allow, &allowed, None)
        .await
        .unwrap();
    let accepts: Vec<_> = (0..60u32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let last = i % 3 + 1;
                let only = Hygiene {
                    allow_list_only: i % 2 == 0,
                    ..Hygiene::default()
                };
                let key = crate::store::IdempotencyRecord {
                    scope: "key-1".into(),
                    key: format!("order-{i}"),
                    request_hash: "h".into(),
                    status: 202,
                    response: "{}".into(),
                };
                let accepted = store
                    .accept(message(Source::Api, last), Some(key), only)
                    .await
                    .unwrap();
                (last, only.allow_list_only, accepted)
            })
        })
        .collect();
    let mut stored = 0;
    for a in accepts {
        let (last, only, accepted) = a.await.unwrap();
        match (last, only) {
            (1, _) => assert_eq!(
                accepted,
                crate::store::Acceptance::Blocked("the number is on the deny list".into())
            ),
            (3, true) => assert!(
                matches!(&accepted, crate::store::Acceptance::Blocked(r) if r.contains("allow_list_only"))
            ),
            _ => {
                assert_eq!(accepted, crate::store::Acceptance::Stored);
                stored += 1;
            }
        }
    }
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM idempotency_keys)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(counts, (stored, stored));
}

/// A table grown from empty past its last analysis is analyzed again, so that plans cached
/// while it was empty (full scans) are made afresh for its size.
#[tokio::test]
async fn a_table_grown_from_empty_gets_fresh_statistics() {
    let Some((store, _db)) = open().await else {
        return;
    };
    sqlx::query(
        "INSERT INTO messages (id, to_number, sender, body, encoding, characters, segments,
                               status, source, created_at, updated_at, due_at)
         SELECT 'm' || g, '+819012345678', 'S', 'b', 'gsm7', 1, 1, 'scheduled', 'api', 1, 1, 9
         FROM generate_series(1, 3000) AS g",
    )
    .execute(store.pool())
    .await
    .unwrap();
    // The server counts a backend's changes once that backend is idle, within a second or so.
    let mut analyzed = Vec::new();
    for _ in 0..100 {
        analyzed = statistics::analyze_stale(store.pool()).await.unwrap();
        if !analyzed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(analyzed, ["messages"]);
    let rows: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'messages'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3000.0);
    assert!(statistics::analyze_stale(store.pool())
        .await
        .unwrap()
        .is_empty());
}

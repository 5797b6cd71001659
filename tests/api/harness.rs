//! Start the real service on port 0 with a fresh database, and talk to it over HTTP.
//!
//! The suite runs on SQLite; with `TSUNAGI_TEST_BACKEND=postgres` (and `TSUNAGI_TEST_POSTGRES_URL`
//! naming a server) every server gets a PostgreSQL database of its own instead.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tsunagi::{
    app,
    config::Config,
    providers::{Events, OutboundSms, Provider, SendError, Sent},
};

/// Message ids, one per provider call.
type Calls = Arc<Mutex<Vec<String>>>;

/// Counts the provider's calls, so "sent once" does not lean on the sandbox's own dedupe, and
/// can make each call slow.
struct Counting {
    inner: Arc<dyn Provider>,
    calls: Calls,
    delay: Duration,
}

#[async_trait::async_trait]
impl Provider for Counting {
    async fn send(&self, sms: &OutboundSms) -> Result<String, SendError> {
        self.send_routed(sms).await.map(|sent| sent.id)
    }

    async fn send_routed(&self, sms: &OutboundSms) -> Result<Sent, SendError> {
        self.calls.lock().unwrap().push(sms.message_id.to_string());
        tokio::time::sleep(self.delay).await;
        self.inner.send_routed(sms).await
    }

    async fn already_sent(&self, sms: &OutboundSms) -> Result<Option<String>, SendError> {
        self.inner.already_sent(sms).await
    }

    fn ready(&self) -> Result<(), String> {
        self.inner.ready()
    }

    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    fn start(
        &self,
        events: Events,
        shutdown: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.inner.start(events, shutdown)
    }

    fn nudge(&self) {
        self.inner.nudge()
    }
}

/// The API key every test server accepts.
pub const KEY: &str = "test-key-0123456789abcdef";

/// A service running inside the test's runtime.
pub struct TestServer {
    pub base: String,
    pub client: Client,
    /// Moves OTP time (expiry, cool-downs, the breaker) forward.
    pub clock: std::sync::Arc<tsunagi::clock::ShiftedClock>,
    calls: Calls,
    running: Option<app::Running>,
    _dir: tempfile::TempDir,
    database: Option<Arc<TestDatabase>>,
}

/// The backend the suite runs on, from `TSUNAGI_TEST_BACKEND` (`sqlite`, the default, or
/// `postgres`).
pub fn suite_on_postgres() -> bool {
    match std::env::var("TSUNAGI_TEST_BACKEND").as_deref() {
        Err(_) | Ok("" | "sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("TSUNAGI_TEST_BACKEND={other}: say sqlite or postgres"),
    }
}

/// A test's own database on the suite's backend.
pub enum TestDatabase {
    /// A file in the test's temporary directory.
    Sqlite(PathBuf),
    /// A database of its own on the PostgreSQL server.
    Postgres(PostgresDatabase),
}

impl TestDatabase {
    /// A fresh database on the suite's backend; files go in `dir`.
    pub async fn fresh(dir: &Path) -> TestDatabase {
        if suite_on_postgres() {
            let database = PostgresDatabase::create().await.expect(
                "TSUNAGI_TEST_BACKEND=postgres needs TSUNAGI_TEST_POSTGRES_URL to name a server",
            );
            TestDatabase::Postgres(database)
        } else {
            TestDatabase::Sqlite(dir.join("tsunagi.db"))
        }
    }

    /// The `database_url` that reaches it.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDatabase::Postgres(database) => database.url.clone(),
        }
    }

    /// Messages per status, read straight from the database.
    pub async fn stored_statuses(&self) -> std::collections::HashMap<String, usize> {
        use sqlx::{Connection, Row};
        let query = "SELECT status, count(*) AS n FROM messages GROUP BY status";
        let rows: Vec<(String, i64)> = match self {
            TestDatabase::Sqlite(_) => {
                let mut c = sqlx::SqliteConnection::connect(&self.url()).await.unwrap();
                sqlx::query(query)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            }
            TestDatabase::Postgres(database) => {
                let mut c = sqlx::PgConnection::connect(&database.url).await.unwrap();
                sqlx::query(query)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            }
        };
        rows.into_iter().map(|(s, n)| (s, n as usize)).collect()
    }
}

/// A PostgreSQL database of one test's own, made through the server `TSUNAGI_TEST_POSTGRES_URL`
/// names and dropped (with whatever is still connected) when this drops.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PostgresDatabase {
    /// A fresh database, or `None` (said on stderr) when the variable is unset.
    pub async fn create() -> Option<PostgresDatabase> {
        use sqlx::Connection;
        let Ok(admin_url) = std::env::var("TSUNAGI_TEST_POSTGRES_URL") else {
            eprintln!(
                "skipped: TSUNAGI_TEST_POSTGRES_URL is not set, so no PostgreSQL to test against"
            );
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
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        // The admin URL names its database last, before any options.
        let (base, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
        let server = base.rsplit_once('/').unwrap().0;
        let url = match query {
            "" => format!("{server}/{name}"),
            query => format!("{server}/{name}?{query}"),
        };
        Some(PostgresDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl PostgresDatabase {
    /// Cut the database off as an outage would (refuse new connections and end those open), or
    /// let connections in again; the shared server itself keeps running.
    pub async fn set_reachable(&self, reachable: bool) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {reachable}",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        if !reachable {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        admin.close().await.unwrap();
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        // Not on the test's runtime, which must not be blocked on.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                })
        })
        .join();
    }
}

/// Config text for `database_url`; `extra` adds `[delivery]` keys (overriding the test
/// defaults) and may open further tables.
pub fn config_text(database_url: &str, extra: &str) -> String {
    let defaults: String = [
        ("sandbox_latency_ms", "10"),
        ("retry_base_ms", "20"),
        ("retry_max_ms", "200"),
        // Short leases, renewed by the workers' heartbeat, so a killed service's jobs are taken
        // over within seconds.
        ("lease_seconds", "3"),
    ]
    .iter()
    .filter(|(key, _)| !extra.contains(&format!("{key} =")))
    .map(|(key, value)| format!("{key} = {value}\n"))
    .collect();
    format!(
        r#"listen = "127.0.0.1:0"
database_url = "{database_url}"
[api]
keys = ["{KEY}"]
[delivery]
{defaults}{extra}
"#
    )
}

impl TestServer {
    /// Default test config.
    pub async fn start() -> TestServer {
        Self::with_delivery("").await
    }

    /// Extra keys under `[delivery]` (and any later tables).
    pub async fn with_delivery(extra: &str) -> TestServer {
        Self::with_provider_delay(extra, Duration::ZERO).await
    }

    /// `with_delivery`, with a provider that takes `delay` to answer each send.
    pub async fn with_provider_delay(extra: &str, delay: Duration) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::fresh(dir.path()).await;
        Self::start_on(dir, extra, delay, Arc::new(database)).await
    }

    /// The default test config on a PostgreSQL database of its own, or `None` without a server.
    pub async fn on_postgres() -> Option<TestServer> {
        Self::on_postgres_with("").await
    }

    /// `on_postgres`, with `extra` as in `with_delivery`.
    pub async fn on_postgres_with(extra: &str) -> Option<TestServer> {
        let database = PostgresDatabase::create().await?;
        let dir = tempfile::tempdir().unwrap();
        let database = Arc::new(TestDatabase::Postgres(database));
        Some(Self::start_on(dir, extra, Duration::ZERO, database).await)
    }

    /// Another instance on this server's database, as a second machine behind a load balancer
    /// would be, with `extra` as in `with_delivery`.
    pub async fn another_instance(&self, extra: &str) -> TestServer {
        let database = self.database.clone().expect("a running server");
        Self::start_on(
            tempfile::tempdir().unwrap(),
            extra,
            Duration::ZERO,
            database,
        )
        .await
    }

    /// The PostgreSQL database of a server started `on_postgres`.
    pub fn postgres(&self) -> &PostgresDatabase {
        match self.database.as_deref() {
            Some(TestDatabase::Postgres(database)) => database,
            _ => panic!("a server on PostgreSQL"),
        }
    }

    async fn start_on(
        dir: tempfile::TempDir,
        extra: &str,
        delay: Duration,
        database: Arc<TestDatabase>,
    ) -> TestServer {
        let config = Config::parse(&config_text(&database.url(), extra), |_| None).unwrap();
        let clock = std::sync::Arc::new(tsunagi::clock::ShiftedClock::default());
        let calls = Calls::default();
        let counted = calls.clone();
        let running = app::start_with(
            config,
            app::Options {
                clock: clock.clone(),
                wrap_provider: Some(Box::new(move |inner| {
                    Arc::new(Counting {
                        inner,
                        calls: counted,
                        delay,
                    })
                })),
            },
        )
        .await
        .unwrap();
        TestServer {
            base: format!("http://{}", running.addr),
            client: Client::new(),
            clock,
            calls,
            running: Some(running),
            _dir: dir,
            database: Some(database),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    /// POST /v1/messages and return (status, json).
    pub async fn send(&self, body: Value) -> (u16, Value) {
        let r = self.post("/v1/messages", body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Poll a message until `done` holds for its status or 10 s pass.
    pub async fn wait_for(&self, id: &str, done: impl Fn(&str) -> bool) -> Value {
        self.wait_until(id, |m| done(m["status"].as_str().unwrap_or_default()))
            .await
    }

    /// Poll message `id` until `done` holds for it (up to about 10 s); return it.
    pub async fn wait_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            last = self
                .get(&format!("/v1/messages/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("message {id} never reached the expected state: {last}");
    }

    /// POST a JSON body to `path` and return (status, json).
    pub async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.post(path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The text of message `message_id` as the sandbox handset `to` received it (waits up to 10 s).
    pub async fn text_of(&self, to: &str, message_id: &Value) -> String {
        for _ in 0..500 {
            let inbox: Value = self
                .get(&format!("/v1/sandbox/inbox?to={to}"))
                .await
                .json()
                .await
                .unwrap();
            let found = inbox
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| &entry["message_id"] == message_id);
            if let Some(entry) = found {
                return entry["body"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{to} never received {message_id}");
    }

    /// The opt-outs listed for `to` (any written form, percent-encoded), newest first.
    pub async fn opt_outs_of(&self, to: &str) -> Vec<Value> {
        let page: Value = self
            .get(&format!("/v1/opt-outs?to={to}"))
            .await
            .json()
            .await
            .unwrap();
        page["data"].as_array().unwrap().clone()
    }

    /// The Prometheus text of `/metrics` (no key needed).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// How many messages are stored (up to 100).
    pub async fn stored_messages(&self) -> usize {
        let list: Value = self
            .get("/v1/messages?limit=100")
            .await
            .json()
            .await
            .unwrap();
        list["data"].as_array().unwrap().len()
    }

    /// Move OTP time forward.
    /// Move the service's clock forward and let its workers see the new time at once.
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
        self.running.as_ref().unwrap().nudge();
    }

    /// How many times the provider was asked to send `message_id` (every attempt counts).
    pub fn provider_calls(&self, message_id: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|id| id.as_str() == message_id)
            .count()
    }

    /// Stop the service and start it again on the same database, with `extra` as in
    /// `with_delivery`, as an operator's restart would.
    pub async fn restart(mut self, extra: &str) -> TestServer {
        self.running.take().unwrap().stop().await.unwrap();
        let database = self.database.take().expect("a database");
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        Self::start_on(dir, extra, Duration::ZERO, database).await
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }

    /// Stop the service, then read a CRM connection's write-back outbox straight from its store
    /// (no API shows it yet).
    pub async fn outbox_after_stop(mut self, connection: &str) -> Vec<tsunagi::store::OutboxEntry> {
        self.running.take().unwrap().stop().await.unwrap();
        let url = self.database.as_ref().expect("a database").url();
        let store = tsunagi::store::open(&url).await.unwrap();
        store.outbox_pending(connection, 10_000).await.unwrap()
    }
}

/// The statuses of a message's events, oldest first.
pub fn event_statuses(m: &Value) -> Vec<&str> {
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

/// The states of a delivered message, without `sent`: the provider's receipt may be recorded
/// before the send's own answer (as a carrier's can), and then `sent` is rightly skipped.
/// Asserts it appears at most once, straight before `delivered`.
pub fn delivered_events(m: &Value) -> Vec<&str> {
    let events = event_statuses(m);
    if let Some(i) = events.iter().position(|s| *s == "sent") {
        assert_eq!(events.get(i + 1), Some(&"delivered"), "{m}");
    }
    assert!(events.iter().filter(|s| **s == "sent").count() <= 1, "{m}");
    events.into_iter().filter(|s| *s != "sent").collect()
}

/// The final states.
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "delivered" | "undelivered" | "failed" | "canceled" | "rejected"
    )
}

/// A `tsunagi serve` child process.
pub struct ServiceProcess {
    pub child: Child,
    pub base: String,
}

/// Start the binary on `database` with a config file in `dir` and wait until it listens.
pub fn spawn_service(dir: &Path, database: &TestDatabase, extra: &str) -> ServiceProcess {
    let config = dir.join("tsunagi.toml");
    std::fs::write(&config, config_text(&database.url(), extra)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                panic!("the service exited before listening:\n{log}")
            })
            .unwrap();
        if let Some(addr) = line.strip_prefix("tsunagi listening on ") {
            break addr.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    ServiceProcess { child, base }
}

/// Path of the built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tsunagi"))
}

/// Send SIGTERM, as a service manager would.
pub fn terminate(child: &Child) {
    // SAFETY: kill(2) with a pid we spawned and own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // A failed test must not leave a service running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The digits of the code in an OTP text.
pub fn code_in(text: &str) -> String {
    let start = text.find("認証コード: ").expect("the default OTP text") + "認証コード: ".len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

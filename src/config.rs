//! One typed configuration: TOML file plus `TSUNAGI_*` environment overrides, validated once at start.

mod capture;
mod kintone;
mod links;
mod routes;
mod salesforce;
mod secret;
mod smpp;
mod twilio;

use std::{
    fmt,
    net::SocketAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::{
    capture::CaptureConfig,
    kintone::{KintoneConfig, KintoneEvent},
    links::LinksConfig,
    routes::RouteConfig,
    salesforce::{is_api_name, AuthKind, MappingConfig, SalesforceConfig},
    secret::Secret,
    smpp::{BindMode, IdFormat, SmppConfig},
    twilio::TwilioConfig,
};
use crate::{
    domain::{
        consent::Keywords,
        phone::{NumberKind, NumberPolicy, PhoneError, SenderId, SENDER_FORMS},
    },
    otp,
};

/// Shortest `inbound_token`: it is the only secret in the inbound URLs.
pub const MIN_INBOUND_TOKEN_CHARS: usize = 16;

/// The whole service configuration.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// `sqlite://…` (embedded default, one instance) or `postgres://…` (instances sharing a queue).
    pub database_url: String,
    /// Base URL used in short links and callback URLs.
    pub public_base_url: String,
    /// Server secret for HMACs; generated and kept in the store when absent.
    pub secret: Option<Secret>,
    /// How the store holds its connections to the database `database_url` names.
    pub database: DatabaseConfig,
    /// API authentication.
    pub api: ApiConfig,
    /// Delivery core settings.
    pub delivery: DeliveryConfig,
    /// Which recipients ordinary messages may go to, and number hygiene.
    pub numbers: NumbersConfig,
    /// One-time passwords and their anti-fraud limits.
    pub otp: OtpConfig,
    /// Salesforce orgs whose Flows and Outbound Messages send SMS (`[[salesforce]]`).
    pub salesforce: Vec<SalesforceConfig>,
    /// kintone apps whose webhooks send SMS (`[[kintone]]`).
    pub kintone: Vec<KintoneConfig>,
    /// How status changes and replies are written back to CRM records.
    pub writeback: WritebackConfig,
    /// The accounts of the providers `delivery.provider` may name.
    pub providers: ProvidersConfig,
    /// Which messages a number that replied STOP (or was opted out over the API) still gets.
    pub opt_outs: OptOutsConfig,
    /// Short links with click tracking, and the domains texts may link to.
    pub links: LinksConfig,
    /// Inbound payloads also written as fixture files (off without `capture.dir`).
    pub capture: CaptureConfig,
}

/// `[opt_outs]`: an opted-out number gets no message from that sender, except those exempted
/// here (off by default: the Act on Specified Electronic Mail exempts only what the sender
/// decides is not advertising).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct OptOutsConfig {
    /// Messages sent with `transactional: true` (or from a CRM mapping marked transactional)
    /// still reach opted-out numbers.
    pub exempt_transactional: bool,
    /// One-time passwords still reach opted-out numbers.
    pub exempt_otp: bool,
    /// A reply of just CANCEL or 解除 opts out (as Twilio's list has it). Set false where
    /// messages ask people to reply with them to cancel a booking: they are then plain replies
    /// that reach the CRM.
    pub ambiguous_words_opt_out: bool,
}

impl Default for OptOutsConfig {
    fn default() -> Self {
        Self {
            exempt_transactional: false,
            exempt_otp: false,
            ambiguous_words_opt_out: true,
        }
    }
}

impl OptOutsConfig {
    /// The rules replies are read by.
    pub fn keywords(&self) -> Keywords {
        Keywords {
            ambiguous_opt_out: self.ambiguous_words_opt_out,
        }
    }
}

impl Config {
    /// The rules replies to each CRM connection's messages are read by, where the connection
    /// sets its own, by source name (`salesforce:prod`).
    pub fn connection_keywords(&self) -> std::collections::HashMap<String, Keywords> {
        let own = |kind: &str, name: &str, ambiguous: Option<bool>| {
            ambiguous
                .map(|ambiguous_opt_out| (format!("{kind}:{name}"), Keywords { ambiguous_opt_out }))
        };
        let salesforce = self
            .salesforce
            .iter()
            .filter_map(|c| own("salesforce", &c.name, c.ambiguous_words_opt_out));
        let kintone = self
            .kintone
            .iter()
            .filter_map(|c| own("kintone", &c.name, c.ambiguous_words_opt_out));
        salesforce.chain(kintone).collect()
    }
}

/// `[providers]`: one section per real provider; the one `delivery.provider` names is required.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct ProvidersConfig {
    /// `[providers.twilio]`
    pub twilio: Option<TwilioConfig>,
    /// `[providers.smpp]`
    pub smpp: Option<SmppConfig>,
}

impl ProvidersConfig {
    fn validate(&self, provider: Provider, problems: &mut Vec<Problem>) {
        match provider {
            Provider::Twilio if self.twilio.is_none() => problems.push(Problem::new(
                "providers.twilio",
                "delivery.provider is twilio: this section is required",
            )),
            Provider::Smpp if self.smpp.is_none() => problems.push(Problem::new(
                "providers.smpp",
                "delivery.provider is smpp: this section is required",
            )),
            _ => {}
        }
        if let Some(twilio) = &self.twilio {
            twilio.validate(problems);
        }
        if let Some(smpp) = &self.smpp {
            smpp.validate(problems);
        }
    }
}

/// `[writeback]`: the pace of writing status and replies back to CRM records.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct WritebackConfig {
    /// How often a connection's outbox is looked at: how soon after a change write-back can
    /// act on it. Batching does not depend on it.
    pub interval_ms: u64,
    /// How long a state that is not final (queued, sending, sent) waits for its successor
    /// before it is written: most records are then written once, with their final state.
    pub settle_ms: u64,
    /// The longest a connection's write-back holds its queue when the CRM says nothing will
    /// succeed for a while (a spent daily API allowance); it then tries one call again.
    pub max_pause_ms: u64,
    /// The longest a change waits for others to fill a batch (200 records on Salesforce, 100
    /// on kintone). A part batch goes at once while the connection is quiet and waits only as
    /// changes flow faster, up to this: at 1,000 messages a minute, calls are full.
    pub fill_wait_ms: u64,
}

impl Default for WritebackConfig {
    fn default() -> Self {
        Self {
            interval_ms: 500,
            settle_ms: 10_000,
            max_pause_ms: 15 * 60 * 1000,
            fill_wait_ms: 30_000,
        }
    }
}

impl WritebackConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        within(
            problems,
            "writeback.interval_ms",
            self.interval_ms,
            50..=600_000,
        );
        within(
            problems,
            "writeback.settle_ms",
            self.settle_ms,
            0..=86_400_000,
        );
        within(
            problems,
            "writeback.max_pause_ms",
            self.max_pause_ms,
            100..=86_400_000,
        );
        within(
            problems,
            "writeback.fill_wait_ms",
            self.fill_wait_ms,
            0..=3_600_000,
        );
    }
}

/// `[database]`: the connections to the database `database_url` names.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct DatabaseConfig {
    /// Connections each instance keeps: on PostgreSQL the pool every request and worker shares
    /// (16 when unset; the wake-up listener has one more of its own), on SQLite the readers (4
    /// when unset; the writer has its own).
    pub pool_size: Option<u32>,
    /// PostgreSQL: the longest a request or worker waits for a connection (a free one of the
    /// pool, or a new one to the server) before giving up; while the server is unreachable,
    /// requests answer 503 `unavailable` after at most this long.
    pub connect_timeout_ms: u64,
    /// PostgreSQL: the longest the server runs one statement, or keeps a transaction open with
    /// nothing running in it, before ending it; a hung query then answers 503 `unavailable`
    /// instead of holding its connection and row locks. Migrations are not bounded by it.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            pool_size: None,
            connect_timeout_ms: 5000,
            statement_timeout_ms: 30_000,
        }
    }
}

impl DatabaseConfig {
    /// What the store is opened with.
    pub fn connections(&self) -> crate::store::Connections {
        crate::store::Connections {
            pool_size: self.pool_size,
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms),
            statement_timeout: std::time::Duration::from_millis(self.statement_timeout_ms),
        }
    }

    fn validate(&self, problems: &mut Vec<Problem>) {
        if let Some(size) = self.pool_size {
            within(problems, "database.pool_size", size, 1..=1000);
        }
        within(
            problems,
            "database.connect_timeout_ms",
            self.connect_timeout_ms,
            100..=600_000,
        );
        within(
            problems,
            "database.statement_timeout_ms",
            self.statement_timeout_ms,
            100..=3_600_000,
        );
    }
}

/// `[numbers]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct NumbersConfig {
    /// Calling codes ordinary messages may go to.
    pub allowed_country_codes: Vec<u16>,
    /// Number kinds ordinary messages may go to.
    pub allowed_kinds: Vec<NumberKind>,
    /// Send only to numbers on the managed allow list (a staging safeguard).
    pub allow_list_only: bool,
    /// The cancellation-history check (解約履歴チェック).
    pub history: HistoryConfig,
}

/// `[numbers.history]`: where to ask whether a number may have been cancelled or reassigned.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct HistoryConfig {
    /// An HTTP lookup service; without one, the local deny list answers.
    pub url: Option<String>,
    /// Bearer token sent to the lookup service.
    pub token: Option<Secret>,
    /// How long to wait for it.
    pub timeout_ms: u64,
    /// Whether a send goes ahead when the lookup fails.
    pub on_error: OnError,
}

/// What a send does when the cancellation-history lookup cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the send with 503 `unavailable`.
    #[default]
    Refuse,
    /// Send as if the lookup had found nothing.
    Allow,
}

/// `[otp]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct OtpConfig {
    /// Digits per code when a request names none (6–10).
    pub code_length: u32,
    /// Lifetime of a code when a request names none (180–600 s).
    pub ttl_seconds: u32,
    /// Checks allowed per code (3–5).
    pub max_checks: u32,
    /// The name the default text signs with.
    pub service_name: String,
    /// The text; `{{code}}` (only ever printed whole), `{{minutes}}` and `{{service}}` are filled in.
    pub template: String,
    /// Seconds before the same number may be sent another code.
    pub resend_cooldown_seconds: u32,
    /// Codes per number per `send_window_seconds`.
    pub max_sends_per_number: u32,
    /// Codes per `client_ip` per window.
    pub max_sends_per_ip: u32,
    /// Codes per `device_id` per window.
    pub max_sends_per_device: u32,
    /// The window the three limits above count in.
    pub send_window_seconds: u32,
    /// Calling codes codes may go to.
    pub allowed_country_codes: Vec<u16>,
    /// Number kinds codes may go to.
    pub allowed_kinds: Vec<NumberKind>,
    /// The per-prefix SMS-pumping breaker.
    pub pumping: PumpingConfig,
}

/// `[otp.pumping]`: block a number prefix whose codes stop being verified, or that a burst of
/// codes hits.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct PumpingConfig {
    /// National digits that make a prefix (4: +81 90-12…).
    pub prefix_digits: usize,
    /// How far back sends are counted.
    pub window_seconds: u32,
    /// A code younger than this may still be verified and is not counted yet.
    pub grace_seconds: u32,
    /// Counted sends before the conversion rate is judged.
    pub min_sends: u32,
    /// Verified share of counted sends below which the prefix is blocked.
    pub min_conversion: f64,
    /// How long a tripped prefix stays blocked.
    pub block_seconds: u32,
    /// Codes to numbers that differ only in their last four digits, within `burst_window_seconds`,
    /// that trip the breaker at once whatever the conversion (0 turns the burst rule off).
    pub burst_max_sends: u32,
    /// The window the burst rule counts in.
    pub burst_window_seconds: u32,
}

impl Default for NumbersConfig {
    fn default() -> Self {
        let policy = NumberPolicy::default();
        Self {
            allowed_country_codes: policy.allowed_country_codes,
            allowed_kinds: policy.allowed_kinds,
            allow_list_only: false,
            history: HistoryConfig::default(),
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            timeout_ms: 2000,
            on_error: OnError::Refuse,
        }
    }
}

impl NumbersConfig {
    /// The recipient policy for ordinary messages.
    pub fn policy(&self) -> NumberPolicy {
        NumberPolicy {
            allowed_country_codes: self.allowed_country_codes.clone(),
            allowed_kinds: self.allowed_kinds.clone(),
        }
    }
}

/// The default OTP text: names the service and the expiry, and warns against sharing the code.
pub const DEFAULT_OTP_TEMPLATE: &str =
    "【{{service}}】認証コード: {{code}}\n有効期限は{{minutes}}分です。このコードを他人に教えないでください。";

impl Default for OtpConfig {
    fn default() -> Self {
        let policy = NumberPolicy::default();
        Self {
            code_length: 6,
            ttl_seconds: 300,
            max_checks: 5,
            service_name: "tsunagi".into(),
            template: DEFAULT_OTP_TEMPLATE.into(),
            resend_cooldown_seconds: 30,
            max_sends_per_number: 5,
            max_sends_per_ip: 20,
            max_sends_per_device: 10,
            send_window_seconds: 600,
            allowed_country_codes: policy.allowed_country_codes,
            allowed_kinds: policy.allowed_kinds,
            pumping: PumpingConfig::default(),
        }
    }
}

impl OtpConfig {
    /// The recipient policy for codes.
    pub fn policy(&self) -> NumberPolicy {
        NumberPolicy {
            allowed_country_codes: self.allowed_country_codes.clone(),
            allowed_kinds: self.allowed_kinds.clone(),
        }
    }
}

impl Default for PumpingConfig {
    fn default() -> Self {
        Self {
            prefix_digits: 4,
            window_seconds: 3600,
            grace_seconds: 120,
            min_sends: 20,
            min_conversion: 0.3,
            block_seconds: 12 * 3600,
            burst_max_sends: 10,
            burst_window_seconds: 60,
        }
    }
}

/// `[api]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct ApiConfig {
    /// API keys accepted besides those created with `tsunagi keys create`.
    pub keys: Vec<Secret>,
}

/// `[delivery]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Which provider sends: `sandbox` (the default), `twilio` or `smpp`.
    pub provider: Provider,
    /// Longest body accepted, in characters.
    pub max_characters: usize,
    /// Delay before the sandbox reports a delivery.
    pub sandbox_latency_ms: u64,
    /// How long the sandbox takes to answer each send once the handset has it, as a slow
    /// carrier's submit response would (0: at once).
    pub sandbox_answer_ms: u64,
    /// Sender id used when a request names none (the provider's own `from` or `source_addr`
    /// takes its place when set).
    pub default_from: String,
    /// The sender ids requests may name (numbers, 0005 codes, alphanumeric names); empty: any
    /// well-formed sender id.
    pub senders: Vec<String>,
    /// Sends in flight at once per instance.
    pub concurrency: usize,
    /// Sends per second per instance: the throughput the provider contract allows.
    pub rate_per_second: u32,
    /// How long a claimed job stays leased to a worker before another may take it.
    pub lease_seconds: u64,
    /// Provider attempts before a message is given up as failed.
    pub max_attempts: usize,
    /// Providers tried in order (`[[delivery.routes]]`), used instead of `provider` when given.
    pub routes: Vec<RouteConfig>,
    /// Transient errors in a row after which a route is passed over for `route_rest_seconds`.
    pub route_rest_after_errors: u32,
    /// How long a failing route is passed over.
    pub route_rest_seconds: u64,
    /// First retry delay after a transient provider error; doubles each attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
}

/// `delivery.provider`: who sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The built-in simulator: nothing leaves the process.
    Sandbox,
    /// Twilio's Messages API.
    Twilio,
    /// SMPP 3.4 binds to an SMSC or aggregator.
    Smpp,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Sandbox => "sandbox",
            Provider::Twilio => "twilio",
            Provider::Smpp => "smpp",
        })
    }
}

/// The store `database_url` names.
#[derive(Clone, Debug)]
pub enum Database {
    /// An SQLite file (`sqlite://PATH` or `sqlite:PATH`).
    Sqlite {
        /// The file, as written in the URL.
        path: PathBuf,
    },
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`).
    Postgres {
        /// The whole URL, which usually holds a password.
        url: Secret,
    },
}

impl Database {
    /// Parse a `database_url`, saying what is wrong with it otherwise.
    pub fn parse(url: &str) -> Result<Database, String> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            // Query parameters are sqlx's connection options, not part of the file name.
            let path = rest.split('?').next().unwrap_or(rest);
            Ok(Database::Sqlite { path: path.into() })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres {
                url: Secret::from(url.to_string()),
            })
        } else {
            Err(format!("{url:?} is not a sqlite:// or postgres:// URL"))
        }
    }
}

/// Names the store for messages and logs without the password a URL may hold.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite { path } => write!(f, "{}", path.display()),
            Database::Postgres { url } => write!(f, "{url}"),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://tsunagi.db".into(),
            public_base_url: "http://127.0.0.1:8080".into(),
            secret: None,
            database: DatabaseConfig::default(),
            api: ApiConfig::default(),
            delivery: DeliveryConfig::default(),
            numbers: NumbersConfig::default(),
            otp: OtpConfig::default(),
            salesforce: Vec::new(),
            kintone: Vec::new(),
            writeback: WritebackConfig::default(),
            providers: ProvidersConfig::default(),
            opt_outs: OptOutsConfig::default(),
            links: LinksConfig::default(),
            capture: CaptureConfig::default(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Sandbox,
            max_characters: 660,
            sandbox_latency_ms: 50,
            sandbox_answer_ms: 0,
            default_from: "TSUNAGI".into(),
            senders: Vec::new(),
            concurrency: 32,
            rate_per_second: 500,
            lease_seconds: 60,
            max_attempts: 5,
            routes: Vec::new(),
            route_rest_after_errors: 5,
            route_rest_seconds: 30,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
        }
    }
}

/// One thing wrong with a configuration, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `delivery.max_characters`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The environment variables that override the file, with the key each sets.
const ENV_OVERRIDES: [(&str, &str); 5] = [
    ("TSUNAGI_LISTEN", "listen"),
    ("TSUNAGI_DATABASE_URL", "database_url"),
    ("TSUNAGI_API_KEYS", "api.keys"),
    ("TSUNAGI_PUBLIC_BASE_URL", "public_base_url"),
    ("TSUNAGI_SECRET", "secret"),
];

impl Config {
    /// Load from an optional file path (or `TSUNAGI_CONFIG`) and the environment; every problem is reported.
    pub fn load(path: Option<&Path>) -> Result<Config, Vec<Problem>> {
        Self::load_from(path, |name| std::env::var(name).ok())
    }

    /// `load` with an injectable environment, so tests need not touch the process's.
    pub fn load_from(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<Problem>> {
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| env("TSUNAGI_CONFIG").map(Into::into));
        let text = match &path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                vec![Problem::new(
                    p.display().to_string(),
                    format!("cannot read the config file: {e}"),
                )]
            })?,
            None => String::new(),
        };
        Self::parse(&text, env)
    }

    /// Parse TOML text, apply environment overrides and validate.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![Problem::new(
                "(file)",
                format!("not valid TOML: {}", e.message()),
            )]
        })?;
        for (var, key) in ENV_OVERRIDES {
            if let Some(value) = env(var) {
                let value = if key == "api.keys" {
                    toml::Value::Array(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|k| !k.is_empty())
                            .map(|k| toml::Value::String(k.into()))
                            .collect(),
                    )
                } else {
                    toml::Value::String(value)
                };
                set_path(&mut table, key, value);
            }
        }

        let mut problems = Vec::new();
        // Unknown keys are collected rather than refused, so that all of them are reported.
        let mut unknown = Vec::new();
        // A value of the wrong type is reported and taken out, and the rest parsed again, so
        // that one bad value does not hide the problems of the others.
        let config = loop {
            unknown.clear();
            let mut track = serde_path_to_error::Track::new();
            let parsed = Config::deserialize(serde_ignored::Deserializer::new(
                serde_path_to_error::Deserializer::new(
                    toml::Value::Table(table.clone()),
                    &mut track,
                ),
                &mut |p: serde_ignored::Path<'_>| unknown.push(key_path(&p)),
            ));
            match parsed {
                Ok(c) => break Some(c),
                Err(e) => {
                    let path = track.path();
                    // `message` leaves out toml's "in `key`" suffix: the path says it already.
                    problems.push(Problem::new(path.to_string(), e.message()));
                    if !remove_path(&mut table, &path) {
                        break None;
                    }
                }
            }
        };
        problems.extend(
            unknown
                .into_iter()
                .map(|path| Problem::new(path, "unknown key")),
        );
        if let Some(config) = &config {
            config.validate(&mut problems);
        }
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(problems),
        }
    }

    /// Semantic checks that a type cannot express, section by section.
    fn validate(&self, problems: &mut Vec<Problem>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(Problem::new(
                "listen",
                format!("{:?} is not an address such as 127.0.0.1:8080", self.listen),
            ));
        }
        if let Err(message) = Database::parse(&self.database_url) {
            problems.push(Problem::new("database_url", message));
        }
        if !is_http_url(&self.public_base_url) {
            problems.push(Problem::new(
                "public_base_url",
                "must start with http:// or https://",
            ));
        }
        if let Some(secret) = &self.secret {
            if secret.expose().len() < 16 {
                problems.push(Problem::new("secret", "must be at least 16 characters"));
            }
        }
        self.database.validate(problems);
        self.api.validate(problems);
        self.delivery.validate(problems);
        self.numbers.validate(problems);
        self.otp.validate(problems);
        salesforce::validate(&self.salesforce, problems);
        kintone::validate(&self.kintone, problems);
        self.writeback.validate(problems);
        self.links.validate(problems);
        self.capture.validate(problems);
        if self.delivery.routes.is_empty() {
            self.providers.validate(self.delivery.provider, problems);
        } else {
            self.providers.validate(Provider::Sandbox, problems);
            routes::validate(&self.delivery.routes, &self.providers, problems);
        }
        self.validate_senders(problems);
    }

    /// Every listed sender is a sender id, and the default sender is one of them.
    fn validate_senders(&self, problems: &mut Vec<Problem>) {
        let mut listed = Vec::new();
        for (i, sender) in self.delivery.senders.iter().enumerate() {
            if let Some(id) = sender_id(format!("delivery.senders[{i}]"), sender, problems) {
                listed.push(id.as_str().to_string());
            }
        }
        // Judged where it is written (`default_from`, an account's `from` or `source_addr`).
        let default = SenderId::parse(self.default_sender());
        if let (false, Ok(default)) = (listed.is_empty(), default) {
            if !listed.iter().any(|s| s == default.as_str()) {
                problems.push(Problem::new(
                    "delivery.senders",
                    format!("must include the default sender {default}"),
                ));
            }
        }
    }

    /// What is valid but likely not meant: `check-config` prints these, `serve` logs them.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut warnings = Vec::new();
        let smpp: Vec<&SmppConfig> = if self.delivery.routes.is_empty() {
            match self.delivery.provider {
                Provider::Smpp => self.providers.smpp.iter().collect(),
                _ => Vec::new(),
            }
        } else {
            self.delivery
                .routes
                .iter()
                .filter(|r| r.provider == Provider::Smpp)
                .filter_map(|r| r.smpp_account(&self.providers))
                .collect()
        };
        let widest = smpp
            .iter()
            .max_by_key(|a| a.binds as usize * a.window as usize);
        if let Some(account) = widest {
            let window = account.binds as usize * account.window as usize;
            if self.delivery.concurrency < window {
                warnings.push(Problem::new(
                    "delivery.concurrency",
                    format!(
                        "{} sends at once cannot fill the SMPP window of {} binds x {} = {window}: \
                         raise it to at least {window}, or the window is never used",
                        self.delivery.concurrency, account.binds, account.window
                    ),
                ));
            }
        }
        warnings
    }

    /// JSON Schema of the config file, committed as `schemas/config.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is JSON")
    }

    /// The address to bind; valid once `validate` passed.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }

    /// The sender of messages that name none: the selected provider's own (`[providers.twilio]
    /// from`, `[providers.smpp] source_addr`) when set, else `delivery.default_from`.
    pub fn default_sender(&self) -> &str {
        let (provider, smpp, twilio) = match self.delivery.routes.first() {
            Some(route) => (
                route.provider,
                route.smpp_account(&self.providers),
                route.twilio_account(&self.providers),
            ),
            None => (
                self.delivery.provider,
                self.providers.smpp.as_ref(),
                self.providers.twilio.as_ref(),
            ),
        };
        let own = match provider {
            Provider::Twilio => twilio.and_then(|t| t.from.as_deref()),
            Provider::Smpp => smpp.and_then(|s| s.source_addr.as_deref()),
            Provider::Sandbox => None,
        };
        own.unwrap_or(&self.delivery.default_from)
    }

    /// Every Twilio account configured: `[providers.twilio]` and the routes' own.
    pub fn twilio_accounts(&self) -> Vec<&TwilioConfig> {
        self.providers
            .twilio
            .iter()
            .chain(
                self.delivery
                    .routes
                    .iter()
                    .filter_map(|r| r.twilio.as_ref()),
            )
            .collect()
    }

    /// The store `database_url` names; valid once `validate` passed.
    pub fn database(&self) -> Database {
        Database::parse(&self.database_url).expect("validated at load")
    }
}

/// `text` read as a sender id, or a problem at `path` saying what a sender id (or a 0005 code)
/// looks like.
pub(crate) fn sender_id(path: String, text: &str, problems: &mut Vec<Problem>) -> Option<SenderId> {
    match SenderId::parse(text) {
        Ok(id) => Some(id),
        Err(e @ PhoneError::ShortCodeLength) => {
            problems.push(Problem::new(path, format!("{text:?}: {e}")));
            None
        }
        Err(PhoneError::Invalid) => {
            problems.push(Problem::new(path, format!("must be {SENDER_FORMS}")));
            None
        }
    }
}

impl ApiConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        for (i, key) in self.keys.iter().enumerate() {
            if key.expose().len() < 16 {
                problems.push(Problem::new(
                    format!("api.keys[{i}]"),
                    "an API key must be at least 16 characters",
                ));
            }
        }
    }
}

impl DeliveryConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        within(
            problems,
            "delivery.max_characters",
            self.max_characters,
            1..=10_000,
        );
        sender_id("delivery.default_from".into(), &self.default_from, problems);
        within(
            problems,
            "delivery.sandbox_answer_ms",
            self.sandbox_answer_ms,
            0..=60_000,
        );
        within(problems, "delivery.concurrency", self.concurrency, 1..=1024);
        within(
            problems,
            "delivery.rate_per_second",
            self.rate_per_second,
            1..=100_000,
        );
        if self.lease_seconds == 0 {
            problems.push(Problem::new("delivery.lease_seconds", "must be at least 1"));
        }
        within(problems, "delivery.max_attempts", self.max_attempts, 1..=50);
        within(
            problems,
            "delivery.route_rest_after_errors",
            self.route_rest_after_errors,
            1..=1000,
        );
        within(
            problems,
            "delivery.route_rest_seconds",
            self.route_rest_seconds,
            1..=86_400,
        );
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            problems.push(Problem::new(
                "delivery.retry_max_ms",
                "retry_base_ms must be at least 1 and retry_max_ms at least retry_base_ms",
            ));
        }
    }
}

impl NumbersConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        if self.allowed_country_codes.is_empty() {
            problems.push(Problem::new(
                "numbers.allowed_country_codes",
                "allow at least one country",
            ));
        }
        if self.allowed_kinds.is_empty() {
            problems.push(Problem::new(
                "numbers.allowed_kinds",
                "allow at least one kind",
            ));
        }
        self.history.validate(problems);
    }
}

impl HistoryConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        if self.url.as_deref().is_some_and(|url| !is_http_url(url)) {
            problems.push(Problem::new(
                "numbers.history.url",
                "must start with http:// or https://",
            ));
        }
    }
}

impl OtpConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        within(
            problems,
            "otp.code_length",
            self.code_length,
            otp::CODE_LENGTHS,
        );
        let ttl = otp::TTL_SECONDS;
        if !ttl.contains(&self.ttl_seconds) {
            problems.push(Problem::new(
                "otp.ttl_seconds",
                format!(
                    "must be between {} and {} ({} to {} minutes)",
                    ttl.start(),
                    ttl.end(),
                    ttl.start() / 60,
                    ttl.end() / 60
                ),
            ));
        }
        within(problems, "otp.max_checks", self.max_checks, otp::MAX_CHECKS);
        if let Err(e) = otp::compile_template(&self.template) {
            problems.push(Problem::new("otp.template", e.to_string()));
        }
        if self.allowed_country_codes.is_empty() {
            problems.push(Problem::new(
                "otp.allowed_country_codes",
                "allow at least one country",
            ));
        }
        if self.allowed_kinds.is_empty() {
            problems.push(Problem::new("otp.allowed_kinds", "allow at least one kind"));
        }
        for (key, value) in [
            ("otp.max_sends_per_number", self.max_sends_per_number),
            ("otp.max_sends_per_ip", self.max_sends_per_ip),
            ("otp.max_sends_per_device", self.max_sends_per_device),
            ("otp.send_window_seconds", self.send_window_seconds),
        ] {
            if value == 0 {
                problems.push(Problem::new(key, "must be at least 1"));
            }
        }
        self.pumping.validate(problems);
    }
}

impl PumpingConfig {
    fn validate(&self, problems: &mut Vec<Problem>) {
        for (key, value) in [
            ("otp.pumping.window_seconds", self.window_seconds),
            ("otp.pumping.min_sends", self.min_sends),
            ("otp.pumping.block_seconds", self.block_seconds),
            (
                "otp.pumping.burst_window_seconds",
                self.burst_window_seconds,
            ),
        ] {
            if value == 0 {
                problems.push(Problem::new(key, "must be at least 1"));
            }
        }
        within(
            problems,
            "otp.pumping.prefix_digits",
            self.prefix_digits,
            1..=10,
        );
        within(
            problems,
            "otp.pumping.min_conversion",
            self.min_conversion,
            0.0..=1.0,
        );
    }
}

/// Report `value` at `path` unless it lies in `range`.
fn within<T: PartialOrd + fmt::Display>(
    problems: &mut Vec<Problem>,
    path: &str,
    value: T,
    range: RangeInclusive<T>,
) {
    if !range.contains(&value) {
        problems.push(Problem::new(
            path,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
}

/// An ignored key's path as problems name keys: `salesforce[0].mappings[1].colour`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// What is wrong with a connection's `name`, given the names of the connections of its kind
/// before it: it appears in URLs, so it is URL-safe and unique.
fn connection_name_problem<'a>(
    name: &str,
    mut earlier: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let url_safe = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !url_safe {
        Some(format!(
            "{name:?} must be 1-64 letters, digits, `-` or `_`: it appears in URLs"
        ))
    } else if earlier.any(|other| other == name) {
        Some(format!("{name:?} names another connection too"))
    } else {
        None
    }
}

/// What is wrong with each entry of a `status_values` table, by its key path
/// (`status_values.deliverd`): a state tsunagi does not write, or a value not 1-255 characters.
fn status_values_problems(
    values: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    values
        .iter()
        .filter_map(|(state, value)| {
            let message = if state.parse::<crate::domain::state::JobState>().is_err() {
                "is not a state tsunagi writes (queued, scheduled, sending, sent, delivered, \
                 undelivered, failed, canceled, rejected)"
            } else if value.trim().is_empty() || value.chars().count() > 255 {
                "must be 1 to 255 characters"
            } else {
                return None;
            };
            Some((format!("status_values.{state}"), message.to_string()))
        })
        .collect()
}

/// What is wrong with a connection's `time_zone`, if anything.
fn time_zone_problem(zone: &str) -> Option<String> {
    zone.parse::<chrono_tz::Tz>()
        .is_err()
        .then(|| format!("{zone:?} is not a time zone such as \"Asia/Tokyo\""))
}

/// Take the key a type error was found at out of `table`, so that it falls back to its default;
/// an error inside an array takes the whole array. False when there is nothing to take out.
fn remove_path(table: &mut toml::Table, path: &serde_path_to_error::Path) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map_while(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut current = table;
    for key in parents {
        match current.get_mut(*key).and_then(toml::Value::as_table_mut) {
            Some(next) => current = next,
            None => return false,
        }
    }
    current.remove(*last).is_some()
}

fn set_path(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts = dotted.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.into(), value);
            return;
        }
        let entry = current
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_config_gives_the_documented_defaults() {
        let c = Config::parse("", no_env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://tsunagi.db");
        assert_eq!(c.delivery.provider, Provider::Sandbox);
        assert_eq!(c.delivery.max_characters, 660);
    }

    #[test]
    fn cancel_and_kaijo_opt_out_unless_the_config_gives_them_another_meaning() {
        use crate::domain::consent::{Consent, Reading};
        let default = Config::parse("", no_env).unwrap().opt_outs.keywords();
        assert_eq!(default.read("CANCEL"), Reading::Keyword(Consent::OptOut));
        let text = "[opt_outs]\nambiguous_words_opt_out = false";
        let booking = Config::parse(text, no_env).unwrap().opt_outs.keywords();
        assert_eq!(booking.read("解除"), Reading::Plain);
        assert_eq!(booking.read("CANCEL"), Reading::Plain);
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |name: &str| match name {
            "TSUNAGI_LISTEN" => Some("127.0.0.1:9999".into()),
            "TSUNAGI_API_KEYS" => Some("aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb".into()),
            _ => None,
        };
        let c = Config::parse("listen = \"127.0.0.1:1\"", env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999");
        let keys: Vec<_> = c.api.keys.iter().map(Secret::expose).collect();
        assert_eq!(keys, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
listen = "nowhere"
colour = "blue"
[delivery]
provider = "pigeon"
max_characters = 0
"#;
        let problems = Config::parse(text, no_env).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"listen"), "{problems:?}");
        assert!(paths.contains(&"colour"), "{problems:?}");
        assert!(paths.contains(&"delivery.provider"), "{problems:?}");
        assert!(paths.contains(&"delivery.max_characters"), "{problems:?}");
    }

    #[test]
    fn wrong_type_names_its_key() {
        let problems = Config::parse("[delivery]\nmax_characters = \"lots\"", no_env).unwrap_err();
        assert_eq!(problems[0].path, "delivery.max_characters", "{problems:?}");
    }

    #[test]
    fn an_otp_template_is_checked_like_a_request_template() {
        for template in [
            "hello {{service}}",
            "{% if code == '1' %}x{% endif %}{{code}}",
            "{% for i in [1] %}{{code}}{% endfor %}",
        ] {
            let text = format!("[otp]\ntemplate = {template:?}");
            let problems = Config::parse(&text, no_env).unwrap_err();
            assert_eq!(problems.len(), 1, "{template}: {problems:?}");
            assert_eq!(problems[0].path, "otp.template", "{template}: {problems:?}");
        }
        assert!(Config::parse("[otp]\ntemplate = \"{{ code }}\"", no_env).is_ok());
    }

    #[test]
    fn an_unknown_provider_names_the_key_and_the_providers_that_exist() {
        let problems = Config::parse("[delivery]\nprovider = \"pigeon\"", no_env).unwrap_err();
        assert_eq!(
            problems,
            [Problem::new(
                "delivery.provider",
                "unknown variant `pigeon`, expected one of `sandbox`, `twilio`, `smpp`"
            )]
        );
    }

    #[test]
    fn listed_senders_are_sender_ids_and_include_the_default() {
        let text = "[delivery]\nsenders = [\"SHOP\", \"not a sender!\"]";
        let problems = Config::parse(text, no_env).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["delivery.senders[1]", "delivery.senders"],
            "{problems:?}"
        );
        assert!(problems[1].message.contains("TSUNAGI"), "{problems:?}");
        let text = "[delivery]\ndefault_from = \"SHOP\"\nsenders = [\"SHOP\", \"0005-012-345\"]";
        assert!(Config::parse(text, no_env).is_ok());
    }

    #[test]
    fn a_providers_own_sender_is_the_default_sender() {
        let text = "[delivery]\nprovider = \"twilio\"\n[providers.twilio]\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"+815012345678\"";
        let c = Config::parse(text, no_env).unwrap();
        assert_eq!(c.default_sender(), "+815012345678");
        assert_eq!(Config::default().default_sender(), "TSUNAGI");
    }

    #[test]
    fn routes_are_named_once_and_each_has_its_account() {
        let text = r#"
[[delivery.routes]]
name = "aggregator-a"
provider = "smpp"
smpp = { host = "smsc-a.example", system_id = "a", password = "pw" }
[[delivery.routes]]
name = "aggregator-a"
provider = "twilio"
[[delivery.routes]]
name = "backup"
provider = "sandbox"
smpp = { host = "", system_id = "b", password = "pw" }
"#;
        let problems = Config::parse(text, no_env).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "delivery.routes[1].name",
                "delivery.routes[1].twilio",
                "delivery.routes[2].smpp",
                "delivery.routes[2].smpp.host",
            ],
            "{problems:?}"
        );
        let text = r#"
[providers.twilio]
account_sid = "AC1"
auth_token = "t"
from = "+815012345678"
[[delivery.routes]]
name = "a"
provider = "smpp"
smpp = { host = "smsc-a.example", system_id = "a", password = "pw", source_addr = "SHOP" }
[[delivery.routes]]
name = "b"
provider = "twilio"
"#;
        let c = Config::parse(text, no_env).unwrap();
        assert_eq!(c.default_sender(), "SHOP", "the first route's own sender");
    }

    #[test]
    fn a_real_provider_needs_its_section() {
        for name in ["twilio", "smpp"] {
            let text = format!("[delivery]\nprovider = {name:?}");
            let problems = Config::parse(&text, no_env).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, format!("providers.{name}"));
        }
    }

    #[test]
    fn on_error_reads_the_documented_words() {
        let c = Config::parse("[numbers.history]\non_error = \"allow\"", no_env).unwrap();
        assert_eq!(c.numbers.history.on_error, OnError::Allow);
        let problems =
            Config::parse("[numbers.history]\non_error = \"maybe\"", no_env).unwrap_err();
        assert_eq!(problems[0].path, "numbers.history.on_error", "{problems:?}");
        assert!(problems[0].message.contains("refuse"), "{problems:?}");
    }

    #[test]
    fn each_wrong_type_is_reported_and_does_not_hide_the_other_problems() {
        let text = r#"
listen = 8080
[api]
keys = ["short", 7]
[delivery]
provider = "pigeon"
concurrency = 0
[numbers.history]
on_error = "maybe"
"#;
        let problems = Config::parse(text, no_env).unwrap_err();
        let mut paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "api.keys[1]",
                "delivery.concurrency",
                "delivery.provider",
                "listen",
                "numbers.history.on_error",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn database_url_names_an_sqlite_file_or_a_postgres_server() {
        let c =
            Config::parse("database_url = \"sqlite:///var/lib/t.db?mode=rwc\"", no_env).unwrap();
        assert!(
            matches!(c.database(), Database::Sqlite { path } if path == Path::new("/var/lib/t.db"))
        );
        let env = |name: &str| {
            (name == "TSUNAGI_DATABASE_URL").then(|| "postgres://u:hunter2@db/t".to_string())
        };
        let c = Config::parse("", env).unwrap();
        assert!(
            matches!(c.database(), Database::Postgres { url } if url.expose() == "postgres://u:hunter2@db/t")
        );
        for refused in ["mysql://db", "postgresx://db"] {
            let problems =
                Config::parse(&format!("database_url = \"{refused}\""), no_env).unwrap_err();
            assert_eq!(
                problems[0].message,
                format!("\"{refused}\" is not a sqlite:// or postgres:// URL")
            );
        }
    }

    #[test]
    fn no_secret_reaches_the_debug_output_of_a_config() {
        let text = r#"
secret = "server-secret-0123456789"
[api]
keys = ["api-key-0123456789"]
[numbers.history]
url = "https://lookup.example/h"
token = "bearer-token-0123456789"
"#;
        let c = Config::parse(text, no_env).unwrap();
        let printed = format!("{c:?} {c:#?}");
        for secret in ["server-secret", "api-key", "bearer-token"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert_eq!(
            c.numbers.history.token.unwrap().expose(),
            "bearer-token-0123456789"
        );
        let postgres = Database::parse("postgres://u:hunter2@db/t").unwrap();
        assert!(!format!("{postgres:?} {postgres}").contains("hunter2"));
    }

    #[test]
    fn the_otp_bounds_are_the_ones_the_api_enforces() {
        let at = |key: &str, value: u32| Config::parse(&format!("[otp]\n{key} = {value}"), no_env);
        for (key, range) in [
            ("code_length", otp::CODE_LENGTHS),
            ("ttl_seconds", otp::TTL_SECONDS),
            ("max_checks", otp::MAX_CHECKS),
        ] {
            assert!(at(key, *range.start()).is_ok() && at(key, *range.end()).is_ok());
            assert!(at(key, range.start() - 1).is_err() && at(key, range.end() + 1).is_err());
        }
        let problems = Config::parse("[otp]\nttl_seconds = 60", no_env).unwrap_err();
        assert_eq!(
            problems[0].message,
            "must be between 180 and 600 (3 to 10 minutes)"
        );
    }

    #[test]
    fn database_connections_are_read_and_checked_with_their_key_paths() {
        let c = Config::parse("", no_env).unwrap();
        assert_eq!(
            c.database.connections(),
            crate::store::Connections::default()
        );
        assert_eq!(
            c.database.connections().connect_timeout,
            std::time::Duration::from_millis(5000)
        );
        let c = Config::parse(
            "[database]\npool_size = 32\nconnect_timeout_ms = 250\nstatement_timeout_ms = 1500",
            no_env,
        )
        .unwrap();
        let connections = c.database.connections();
        assert_eq!(connections.pool_size, Some(32));
        assert_eq!(
            connections.connect_timeout,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(
            connections.statement_timeout,
            std::time::Duration::from_millis(1500)
        );
        let problems = Config::parse(
            "[database]\npool_size = 0\nconnect_timeout_ms = 10\nstatement_timeout_ms = 0\npool = 3",
            no_env,
        )
        .unwrap_err();
        let mut found: Vec<_> = problems
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                (
                    "database.connect_timeout_ms",
                    "must be between 100 and 600000"
                ),
                ("database.pool", "unknown key"),
                ("database.pool_size", "must be between 1 and 1000"),
                (
                    "database.statement_timeout_ms",
                    "must be between 100 and 3600000"
                ),
            ]
        );
        let problems = Config::parse("[database]\npool_size = \"many\"", no_env).unwrap_err();
        assert_eq!(problems[0].path, "database.pool_size", "{problems:?}");
    }

    #[test]
    fn malformed_toml_is_one_problem() {
        let problems = Config::parse("listen = ", no_env).unwrap_err();
        assert_eq!(problems.len(), 1);
    }
}

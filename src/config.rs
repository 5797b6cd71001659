//! One typed configuration: TOML file plus `TSUNAGI_*` environment overrides, validated once at start.

use std::{net::SocketAddr, path::Path};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::phone::{NumberKind, NumberPolicy, SenderId};

/// The whole service configuration.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// `sqlite://…` (embedded default) or, in a later release, `postgres://…`.
    pub database_url: String,
    /// Base URL used in short links and callback URLs.
    pub public_base_url: String,
    /// Server secret for HMACs; generated and kept in the store when absent.
    pub secret: Option<String>,
    /// API authentication.
    pub api: ApiConfig,
    /// Delivery core settings.
    pub delivery: DeliveryConfig,
    /// Which recipients ordinary messages may go to, and number hygiene.
    pub numbers: NumbersConfig,
    /// One-time passwords and their anti-fraud limits.
    pub otp: OtpConfig,
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
    pub token: Option<String>,
    /// How long to wait for it.
    pub timeout_ms: u64,
    /// `refuse` or `allow` a send when the lookup fails.
    pub on_error: String,
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
            on_error: "refuse".into(),
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
    pub keys: Vec<String>,
}

/// `[delivery]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Which provider sends: only `sandbox` exists in this release.
    pub provider: String,
    /// Longest body accepted, in characters.
    pub max_characters: usize,
    /// Delay before the sandbox reports a delivery.
    pub sandbox_latency_ms: u64,
    /// Sender id used when a request names none.
    pub default_from: String,
    /// Sends in flight at once per instance.
    pub concurrency: usize,
    /// Sends per second per instance: the throughput the provider contract allows.
    pub rate_per_second: u32,
    /// How long a claimed job stays leased to a worker before another may take it.
    pub lease_seconds: u64,
    /// Provider attempts before a message is given up as failed.
    pub max_attempts: usize,
    /// First retry delay after a transient provider error; doubles each attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://tsunagi.db".into(),
            public_base_url: "http://127.0.0.1:8080".into(),
            secret: None,
            api: ApiConfig::default(),
            delivery: DeliveryConfig::default(),
            numbers: NumbersConfig::default(),
            otp: OtpConfig::default(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            provider: "sandbox".into(),
            max_characters: 660,
            sandbox_latency_ms: 50,
            default_from: "TSUNAGI".into(),
            concurrency: 32,
            rate_per_second: 500,
            lease_seconds: 60,
            max_attempts: 5,
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
                vec![Problem {
                    path: p.display().to_string(),
                    message: format!("cannot read the config file: {e}"),
                }]
            })?,
            None => String::new(),
        };
        Self::parse(&text, env)
    }

    /// Parse TOML text, apply environment overrides and validate.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![Problem {
                path: "(file)".into(),
                message: format!("not valid TOML: {}", e.message()),
            }]
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
        let mut track = serde_path_to_error::Track::new();
        let parsed = Config::deserialize(serde_ignored::Deserializer::new(
            serde_path_to_error::Deserializer::new(toml::Value::Table(table), &mut track),
            &mut |p: serde_ignored::Path<'_>| unknown.push(p.to_string()),
        ));
        let config = match parsed {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(Problem {
                    path: track.path().to_string(),
                    message: e.to_string(),
                });
                None
            }
        };
        problems.extend(unknown.into_iter().map(|path| Problem {
            path,
            message: "unknown key".into(),
        }));
        if let Some(config) = &config {
            problems.extend(config.validate());
        }
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(problems),
        }
    }

    /// Semantic checks that a type cannot express.
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |path: &str, message: String| {
            problems.push(Problem {
                path: path.into(),
                message,
            })
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            bad(
                "listen",
                format!("{:?} is not an address such as 127.0.0.1:8080", self.listen),
            );
        }
        if !self.database_url.starts_with("sqlite:") {
            let message = if self.database_url.starts_with("postgres") {
                "the PostgreSQL backend is not available in this release; use sqlite://PATH".into()
            } else {
                format!("{:?} is not a sqlite:// URL", self.database_url)
            };
            bad("database_url", message);
        }
        if !(self.public_base_url.starts_with("http://")
            || self.public_base_url.starts_with("https://"))
        {
            bad(
                "public_base_url",
                "must start with http:// or https://".into(),
            );
        }
        if let Some(secret) = &self.secret {
            if secret.len() < 16 {
                bad("secret", "must be at least 16 characters".into());
            }
        }
        for (i, key) in self.api.keys.iter().enumerate() {
            if key.len() < 16 {
                bad(
                    &format!("api.keys[{i}]"),
                    "an API key must be at least 16 characters".into(),
                );
            }
        }
        let d = &self.delivery;
        if d.provider != "sandbox" {
            let message = if ["twilio", "smpp"].contains(&d.provider.as_str()) {
                format!(
                    "the {} provider is not available in this release",
                    d.provider
                )
            } else {
                format!(
                    "unknown provider {:?}; expected sandbox, twilio or smpp",
                    d.provider
                )
            };
            bad("delivery.provider", message);
        }
        if !(1..=10_000).contains(&d.max_characters) {
            bad(
                "delivery.max_characters",
                "must be between 1 and 10000".into(),
            );
        }
        if SenderId::parse(&d.default_from).is_err() {
            bad(
                "delivery.default_from",
                "must be a phone number, a 0005 short code or 1-11 letters and digits".into(),
            );
        }
        if !(1..=1024).contains(&d.concurrency) {
            bad("delivery.concurrency", "must be between 1 and 1024".into());
        }
        if !(1..=100_000).contains(&d.rate_per_second) {
            bad(
                "delivery.rate_per_second",
                "must be between 1 and 100000".into(),
            );
        }
        if d.lease_seconds == 0 {
            bad("delivery.lease_seconds", "must be at least 1".into());
        }
        if !(1..=50).contains(&d.max_attempts) {
            bad("delivery.max_attempts", "must be between 1 and 50".into());
        }
        if d.retry_base_ms == 0 || d.retry_max_ms < d.retry_base_ms {
            bad(
                "delivery.retry_max_ms",
                "retry_base_ms must be at least 1 and retry_max_ms at least retry_base_ms".into(),
            );
        }
        if self.numbers.allowed_country_codes.is_empty() {
            bad(
                "numbers.allowed_country_codes",
                "allow at least one country".into(),
            );
        }
        if self.numbers.allowed_kinds.is_empty() {
            bad("numbers.allowed_kinds", "allow at least one kind".into());
        }
        let h = &self.numbers.history;
        if let Some(url) = &h.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad(
                    "numbers.history.url",
                    "must start with http:// or https://".into(),
                );
            }
        }
        if !["refuse", "allow"].contains(&h.on_error.as_str()) {
            bad("numbers.history.on_error", "must be refuse or allow".into());
        }
        let o = &self.otp;
        if !(6..=10).contains(&o.code_length) {
            bad("otp.code_length", "must be between 6 and 10".into());
        }
        if !(180..=600).contains(&o.ttl_seconds) {
            bad(
                "otp.ttl_seconds",
                "must be between 180 and 600 (3 to 10 minutes)".into(),
            );
        }
        if !(3..=5).contains(&o.max_checks) {
            bad("otp.max_checks", "must be between 3 and 5".into());
        }
        if let Err(e) = crate::otp::compile_template(&o.template) {
            bad("otp.template", e.to_string());
        }
        if o.allowed_country_codes.is_empty() {
            bad(
                "otp.allowed_country_codes",
                "allow at least one country".into(),
            );
        }
        if o.allowed_kinds.is_empty() {
            bad("otp.allowed_kinds", "allow at least one kind".into());
        }
        for (key, value) in [
            ("otp.max_sends_per_number", o.max_sends_per_number),
            ("otp.max_sends_per_ip", o.max_sends_per_ip),
            ("otp.max_sends_per_device", o.max_sends_per_device),
            ("otp.send_window_seconds", o.send_window_seconds),
            ("otp.pumping.window_seconds", o.pumping.window_seconds),
            ("otp.pumping.min_sends", o.pumping.min_sends),
            ("otp.pumping.block_seconds", o.pumping.block_seconds),
            (
                "otp.pumping.burst_window_seconds",
                o.pumping.burst_window_seconds,
            ),
        ] {
            if value == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        if !(1..=10).contains(&o.pumping.prefix_digits) {
            bad(
                "otp.pumping.prefix_digits",
                "must be between 1 and 10".into(),
            );
        }
        if !(0.0..=1.0).contains(&o.pumping.min_conversion) {
            bad(
                "otp.pumping.min_conversion",
                "must be between 0 and 1".into(),
            );
        }
        problems
    }

    /// JSON Schema of the config file, committed as `schemas/config.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is JSON")
    }

    /// The address to bind; valid once `validate` passed.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }
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
        assert_eq!(c.delivery.provider, "sandbox");
        assert_eq!(c.delivery.max_characters, 660);
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
        assert_eq!(c.api.keys, vec!["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
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
    fn malformed_toml_is_one_problem() {
        let problems = Config::parse("listen = ", no_env).unwrap_err();
        assert_eq!(problems.len(), 1);
    }
}

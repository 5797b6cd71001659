//! `[providers.smpp]`: the SMPP 3.4 account tsunagi binds to when `delivery.provider = "smpp"`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

use super::{Problem, Secret};

/// An SMPP account at an SMSC or aggregator.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct SmppConfig {
    /// The SMSC's host name or address.
    pub host: String,
    /// Its port (2775 by convention).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Speak SMPP inside TLS, as many aggregators require (IANA's port for it is 3550).
    #[serde(default)]
    pub tls: bool,
    /// A PEM file of CA certificates trusted besides the public ones, for an SMSC whose
    /// certificate a private CA issued.
    pub tls_ca_file: Option<PathBuf>,
    /// The name the SMSC's certificate must carry, when it is not `host` (say `host` is an
    /// address and the certificate names the SMSC's domain).
    pub tls_server_name: Option<String>,
    /// The account's `system_id`.
    pub system_id: String,
    /// The account's password (at most 8 characters in SMPP 3.4).
    pub password: Secret,
    /// The sender address used when a message names none.
    pub source_addr: Option<String>,
    /// The `system_type` the bind announces, when the SMSC asks for one (at most 12 characters).
    #[serde(default)]
    pub system_type: String,
    /// One `bind_transceiver` per connection, or a transmitter and a receiver.
    #[serde(default)]
    pub bind_mode: BindMode,
    /// Connections (binds) to keep open; messages are spread over the bound ones.
    #[serde(default = "default_binds")]
    pub binds: u32,
    /// Submits per bind sent and not yet answered.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Submits per second per bind.
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Seconds between `enquire_link`s on an idle bind.
    #[serde(default = "default_enquire_link")]
    pub enquire_link_seconds: u64,
    /// How long a request waits for its response before the connection is taken for dead.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_ms: u64,
    /// How long one message's send waits for a bind and its answers before it goes back to
    /// the queue (without using up an attempt).
    #[serde(default = "default_send_timeout")]
    pub send_timeout_ms: u64,
    /// First wait before reconnecting after a dropped connection or a refused bind.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnection attempts.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// How long a bind pauses its submits after `ESME_RTHROTTLED` or `ESME_RMSGQFUL`.
    #[serde(default = "default_throttle_pause")]
    pub throttle_pause_ms: u64,
    /// TON for 0005 short-code senders (3, network specific, unless the carrier says otherwise).
    #[serde(default = "default_short_code_ton")]
    pub short_code_ton: u8,
    /// NPI for 0005 short-code senders.
    #[serde(default)]
    pub short_code_npi: u8,
    /// Vendor command statuses that mean the SMSC's own trouble, not the message's (e.g.
    /// `0x400`): retried, and failed over to another route, like `ESME_RSYSERR`,
    /// `ESME_RX_T_APPN` and `ESME_RUNKNOWNERR`.
    #[serde(default)]
    pub transient_statuses: Vec<u32>,
    /// How `submit_sm_resp` writes message ids: `text` (compared as written), `hex` or
    /// `decimal`.
    #[serde(default)]
    pub submit_ids: IdFormat,
    /// How delivery receipts write them. Set both to `hex` or `decimal` when the SMSC writes an
    /// id one way in `submit_sm_resp` and the other in its receipts (Kannel's `msg-id-type`).
    #[serde(default)]
    pub receipt_ids: IdFormat,
    /// The data_coding GSM-7 bodies go with: 0 (the SMSC's default alphabet, GSM-7) or 1
    /// (IA5/ASCII, for SMSCs that read 0 as ASCII or Latin-1); with 1, a body holding a GSM-7
    /// character ASCII lacks (£, é, €…) goes as UCS-2.
    #[serde(default)]
    #[schemars(range(max = 1))]
    pub gsm_data_coding: u8,
    /// Pack GSM-7 septets eight into seven octets (only with `gsm_data_coding = 0`); unpacked,
    /// one septet an octet, is what most SMSCs take.
    #[serde(default)]
    pub gsm_packed: bool,
}

/// How an SMSC writes a message id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// As written: compared exactly.
    #[default]
    Text,
    /// A number in hexadecimal.
    Hex,
    /// A number in decimal.
    Decimal,
}

/// How each connection binds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One `bind_transceiver`: submits out, receipts and replies in.
    #[default]
    Transceiver,
    /// A `bind_transmitter` for submits and a `bind_receiver` for receipts and replies.
    TransmitterReceiver,
}

fn default_port() -> u16 {
    2775
}
fn default_binds() -> u32 {
    1
}
fn default_window() -> u32 {
    10
}
fn default_rate() -> u32 {
    100
}
fn default_enquire_link() -> u64 {
    30
}
fn default_response_timeout() -> u64 {
    10_000
}
fn default_send_timeout() -> u64 {
    30_000
}
fn default_reconnect_min() -> u64 {
    1_000
}
fn default_reconnect_max() -> u64 {
    60_000
}
fn default_throttle_pause() -> u64 {
    1_000
}
fn default_short_code_ton() -> u8 {
    3
}

impl SmppConfig {
    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if let Some(source_addr) = &self.source_addr {
            super::sender_id("providers.smpp.source_addr".into(), source_addr, problems);
        }
        let mut problem = |key: &str, message: &str| {
            problems.push(Problem::new(format!("providers.smpp.{key}"), message))
        };
        if self.host.is_empty() {
            problem("host", "must not be empty");
        }
        self.validate_tls(&mut problem);
        if (self.submit_ids == IdFormat::Text) != (self.receipt_ids == IdFormat::Text) {
            problem(
                "receipt_ids",
                "set submit_ids and receipt_ids both to hex or decimal, or leave both text",
            );
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            problem("system_id", "must be 1-15 characters");
        }
        if self.password.expose().len() > 8 {
            problem("password", "must be at most 8 characters");
        }
        if self.system_type.len() > 12 {
            problem("system_type", "must be at most 12 characters");
        }
        if !(1..=32).contains(&self.binds) {
            problem("binds", "must be 1-32");
        }
        if !(1..=1000).contains(&self.window) {
            problem("window", "must be 1-1000");
        }
        if self.rate_per_second == 0 {
            problem("rate_per_second", "must be at least 1");
        }
        if !(1..=3600).contains(&self.enquire_link_seconds) {
            problem("enquire_link_seconds", "must be 1-3600");
        }
        if self.response_timeout_ms < 100 {
            problem("response_timeout_ms", "must be at least 100");
        }
        if self.send_timeout_ms < self.response_timeout_ms {
            problem("send_timeout_ms", "must be at least response_timeout_ms");
        }
        if self.reconnect_min_ms == 0 {
            problem("reconnect_min_ms", "must be at least 1");
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            problem("reconnect_max_ms", "must be at least reconnect_min_ms");
        }
        if self.short_code_ton > 6 {
            problem("short_code_ton", "must be a TON 0-6");
        }
        if self.short_code_npi > 18 {
            problem("short_code_npi", "must be an NPI 0-18");
        }
        if self.gsm_data_coding > 1 {
            problem(
                "gsm_data_coding",
                "must be 0 (SMSC default alphabet) or 1 (IA5/ASCII)",
            );
        } else if self.gsm_packed && self.gsm_data_coding != 0 {
            problem("gsm_packed", "applies only with gsm_data_coding = 0");
        }
    }
}

impl SmppConfig {
    /// The name the SMSC's certificate is checked against: `tls_server_name`, else `host`.
    pub fn tls_name(&self) -> Result<ServerName<'static>, String> {
        let name = self.tls_server_name.as_deref().unwrap_or(&self.host);
        ServerName::try_from(name.to_string())
            .map_err(|_| format!("{name:?} is neither a DNS name nor an IP address"))
    }

    /// The certificates `tls_ca_file` holds (none without one).
    pub fn tls_ca_certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(Vec::new());
        };
        let unreadable = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| unreadable(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&e))?;
        if certificates.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(certificates)
    }

    fn validate_tls(&self, problem: &mut impl FnMut(&str, &str)) {
        if !self.tls {
            for (key, set) in [
                ("tls_ca_file", self.tls_ca_file.is_some()),
                ("tls_server_name", self.tls_server_name.is_some()),
            ] {
                if set {
                    problem(key, "applies only with tls = true");
                }
            }
            return;
        }
        let named = self.tls_server_name.is_some() || !self.host.is_empty();
        if let (true, Err(e)) = (named, self.tls_name()) {
            let key = match self.tls_server_name {
                Some(_) => "tls_server_name",
                None => "host",
            };
            problem(key, &format!("{e}: TLS needs one to check the certificate"));
        }
        if let Err(e) = self.tls_ca_certificates() {
            problem("tls_ca_file", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BindMode;
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const VALID: &str = r#"
[delivery]
provider = "smpp"
[providers.smpp]
host = "smsc.example.jp"
system_id = "tsunagi"
password = "secret1"
"#;

    fn paths(text: &str) -> Vec<String> {
        let problems = Config::parse(text, no_env).unwrap_err();
        let mut paths: Vec<_> = problems.into_iter().map(|p| p.path).collect();
        paths.sort();
        paths
    }

    #[test]
    fn id_formats_are_numbers_on_both_sides_or_text_on_both() {
        assert_eq!(
            paths(&format!("{VALID}receipt_ids = \"decimal\"\n")),
            ["providers.smpp.receipt_ids"]
        );
        let both = format!("{VALID}submit_ids = \"hex\"\nreceipt_ids = \"decimal\"\n");
        assert!(Config::parse(&both, no_env).is_ok());
    }

    #[test]
    fn an_account_reads_with_its_defaults() {
        let c = Config::parse(VALID, no_env).unwrap();
        let s = c.providers.smpp.unwrap();
        assert_eq!(s.port, 2775);
        assert_eq!(s.bind_mode, BindMode::Transceiver);
        assert_eq!((s.binds, s.window, s.enquire_link_seconds), (1, 10, 30));
        assert_eq!((s.short_code_ton, s.short_code_npi), (3, 0));
        assert!(!format!("{s:?}").contains("secret1"));
    }

    #[test]
    fn transmitter_receiver_is_a_bind_mode() {
        let c = Config::parse(
            &format!("{VALID}bind_mode = \"transmitter_receiver\"\n"),
            no_env,
        )
        .unwrap();
        assert_eq!(
            c.providers.smpp.unwrap().bind_mode,
            BindMode::TransmitterReceiver
        );
        assert_eq!(
            paths(&format!("{VALID}bind_mode = \"receiver\"\n")),
            ["providers.smpp.bind_mode"]
        );
    }

    #[test]
    fn every_problem_names_its_key_path() {
        let text = VALID.replace("secret1", "much-too-long")
            + "system_type = \"thirteen-char\"\nbinds = 0\nwindow = 0\nrate_per_second = 0\n\
               enquire_link_seconds = 0\nresponse_timeout_ms = 50\nsend_timeout_ms = 10\n\
               reconnect_min_ms = 0\nreconnect_max_ms = 0\nshort_code_ton = 7\nshort_code_npi = 19\n";
        assert_eq!(
            paths(&text),
            [
                "providers.smpp.binds",
                "providers.smpp.enquire_link_seconds",
                "providers.smpp.password",
                "providers.smpp.rate_per_second",
                "providers.smpp.reconnect_min_ms",
                "providers.smpp.response_timeout_ms",
                "providers.smpp.send_timeout_ms",
                "providers.smpp.short_code_npi",
                "providers.smpp.short_code_ton",
                "providers.smpp.system_type",
                "providers.smpp.window",
            ]
        );
    }

    #[test]
    fn a_source_addr_is_a_sender_id_and_a_0005_code_has_8_to_10_digits() {
        for ok in [
            "00051234",
            "0005123456",
            "0005-123-456",
            "SHOP",
            "+81312345678",
        ] {
            let text = format!("{VALID}source_addr = \"{ok}\"\n");
            assert!(Config::parse(&text, no_env).is_ok(), "{ok}");
        }
        for bad in ["0005123", "00051234567", "000512345678"] {
            let text = format!("{VALID}source_addr = \"{bad}\"\n");
            let problems = Config::parse(&text, no_env).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].path, "providers.smpp.source_addr");
            assert!(
                problems[0].message.contains("0005 and 4 to 6 more digits"),
                "{}",
                problems[0].message
            );
        }
    }

    #[test]
    fn a_concurrency_below_binds_times_window_is_warned_of_not_refused() {
        let narrow = format!("{VALID}binds = 4\nwindow = 100\n");
        let c = Config::parse(&narrow, no_env).unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].path, "delivery.concurrency");
        assert!(
            warnings[0].message.contains("4 binds x 100 = 400"),
            "{}",
            warnings[0].message
        );
        let wide = narrow.replace("[delivery]\n", "[delivery]\nconcurrency = 400\n");
        assert!(Config::parse(&wide, no_env).unwrap().warnings().is_empty());
        assert!(Config::parse(VALID, no_env).unwrap().warnings().is_empty());
    }

    #[test]
    fn tls_keys_apply_only_with_tls() {
        let text =
            format!("{VALID}tls_ca_file = \"ca.pem\"\ntls_server_name = \"smsc.example.jp\"\n");
        assert_eq!(
            paths(&text),
            [
                "providers.smpp.tls_ca_file",
                "providers.smpp.tls_server_name"
            ]
        );
    }

    #[test]
    fn a_tls_account_checks_its_ca_file_and_server_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let problem = |extra: String| {
            let problems =
                Config::parse(&format!("{VALID}tls = true\n{extra}"), no_env).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            (problems[0].path.clone(), problems[0].message.clone())
        };
        let (path, message) = problem(format!("tls_ca_file = {missing:?}"));
        assert_eq!(path, "providers.smpp.tls_ca_file");
        assert!(message.starts_with("cannot read "), "{message}");
        let (_, message) = problem(format!("tls_ca_file = {empty:?}"));
        assert!(message.ends_with("holds no PEM certificate"), "{message}");
        let (path, message) = problem("tls_server_name = \"not a name!\"".into());
        assert_eq!(path, "providers.smpp.tls_server_name");
        assert!(
            message.contains("neither a DNS name nor an IP address"),
            "{message}"
        );
    }

    #[test]
    fn a_tls_account_checks_the_certificate_against_the_host_unless_a_name_is_given() {
        let tls = format!("{VALID}tls = true\n");
        let c = Config::parse(&tls, no_env).unwrap().providers.smpp.unwrap();
        assert_eq!(c.tls_name().unwrap().to_str(), "smsc.example.jp");
        let by_ip = tls.replace("smsc.example.jp", "192.0.2.7")
            + "tls_server_name = \"smpp.aggregator.example\"\n";
        let c = Config::parse(&by_ip, no_env)
            .unwrap()
            .providers
            .smpp
            .unwrap();
        assert_eq!(c.tls_name().unwrap().to_str(), "smpp.aggregator.example");
        let ip_only = tls.replace("smsc.example.jp", "192.0.2.7");
        assert!(Config::parse(&ip_only, no_env).is_ok());
    }

    #[test]
    fn gsm_data_coding_is_0_or_1_and_packing_needs_0() {
        let c = Config::parse(VALID, no_env)
            .unwrap()
            .providers
            .smpp
            .unwrap();
        assert_eq!((c.gsm_data_coding, c.gsm_packed), (0, false));
        let ia5 = format!("{VALID}gsm_data_coding = 1\n");
        assert_eq!(
            Config::parse(&ia5, no_env)
                .unwrap()
                .providers
                .smpp
                .unwrap()
                .gsm_data_coding,
            1
        );
        assert!(Config::parse(&format!("{VALID}gsm_packed = true\n"), no_env).is_ok());
        let problems = Config::parse(&format!("{VALID}gsm_data_coding = 3\n"), no_env).unwrap_err();
        assert_eq!(problems[0].path, "providers.smpp.gsm_data_coding");
        assert!(problems[0]
            .message
            .contains("0 (SMSC default alphabet) or 1"));
        assert_eq!(
            paths(&format!("{ia5}gsm_packed = true\n")),
            ["providers.smpp.gsm_packed"]
        );
    }

    #[test]
    fn an_account_inside_a_route_checks_its_gsm_data_coding() {
        let text = r#"
[delivery]
[[delivery.routes]]
name = "ia5"
provider = "smpp"
[delivery.routes.smpp]
host = "smsc.example.jp"
system_id = "tsunagi"
password = "secret1"
gsm_data_coding = 2
"#;
        assert_eq!(paths(text), ["delivery.routes[0].smpp.gsm_data_coding"]);
    }

    #[test]
    fn reconnect_max_must_not_be_below_min() {
        let text = format!("{VALID}reconnect_min_ms = 5000\nreconnect_max_ms = 1000\n");
        assert_eq!(paths(&text), ["providers.smpp.reconnect_max_ms"]);
    }
}

//! `[[kintone]]` connections: one kintone app each, its webhook URL and its SMS fields.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    connection_name_problem, is_http_url, status_values_problems, time_zone_problem, Problem,
    Secret, MIN_INBOUND_TOKEN_CHARS,
};
use crate::{domain::template::Rules, mapping::Mapping, messaging};

/// One kintone app: where its webhooks come in, which events send an SMS, and the fields
/// tsunagi reads and writes back.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct KintoneConfig {
    /// Names the connection in URLs (`/v1/inbound/kintone/NAME/…`): letters, digits, `-`, `_`.
    pub name: String,
    /// The domain, e.g. `https://example.cybozu.com`.
    pub base_url: String,
    /// The app's id; webhooks from other apps are refused.
    pub app: u64,
    /// An API token of the app, for write-back (view and edit permissions).
    pub api_token: Secret,
    /// The secret part of the webhook URL (at least 16 characters).
    pub inbound_token: Secret,
    /// The field code of the recipient's number (a text or link field).
    pub phone_field: String,
    /// The SMS text: merge fields are the record's fields by field code.
    pub template: String,
    /// The webhook events that send an SMS: ADD_RECORD, UPDATE_RECORD, UPDATE_STATUS.
    #[serde(default = "default_trigger_events")]
    pub trigger_events: Vec<KintoneEvent>,
    /// IANA zone date-times in templates are shown in.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The process-management status that sends on UPDATE_STATUS (required when UPDATE_STATUS
    /// is a trigger); ADD_RECORD and UPDATE_RECORD are not filtered by it.
    pub trigger_status: Option<String>,
    /// Written back: queued, sent, delivered, undelivered, failed, rejected.
    pub status_field: String,
    /// Written back: why, e.g. the refusal's code and reason.
    pub status_detail_field: String,
    /// Written back: the latest reply from the handset.
    pub reply_field: String,
    /// A check box field: any option checked means the record opted out (and is refused).
    pub opt_out_field: Option<String>,
    /// Written back: when a person first clicked a short link in the record's message (a
    /// date/time field).
    pub click_field: Option<String>,
    /// The messages are not advertising (reminders, notices): where `[opt_outs]
    /// exempt_transactional` says so, opted-out numbers still get them.
    #[serde(default)]
    pub transactional: bool,
    /// Seconds between looks for records in `trigger_status` that no webhook brought (kintone
    /// drops webhooks past 60 a minute and sends none for imports), and for records added
    /// whose ADD_RECORD webhook was lost; 0 turns the poller off, as does `dry_run`.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: u64,
    /// Write-back makes no call: the calls it would make are kept, with their exact bodies, and
    /// listed at `GET /v1/writebacks`. Revisions are not read, so the `PUT` carries none.
    #[serde(default)]
    pub dry_run: bool,
    /// The most API requests write-back makes a minute for this app: a write of up to 100
    /// records is one `PUT` at the revisions the webhooks told (a read of them first only for a
    /// record no webhook brought, or after someone saved it), so 6 is 8,640 a day flat out,
    /// inside the 10,000 kintone counts a day per app with the poller's 300 beside it.
    #[serde(default = "default_kintone_calls_per_minute")]
    pub writeback_calls_per_minute: u32,
    /// Whether a reply of just CANCEL or 解除 to this connection's messages opts out; unset, as
    /// `[opt_outs] ambiguous_words_opt_out` says. Set false where its messages ask people to
    /// reply with them (to cancel a booking): they then reach the record as replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambiguous_words_opt_out: Option<bool>,
    /// The guest space the app is in, if it is in one: every call goes to
    /// `/k/guest/{id}/v1/…`.
    pub guest_space_id: Option<u64>,
    /// The user of the domain's Basic authentication, where it is switched on (with
    /// `basic_auth_password`): sent as `Authorization: Basic` beside the API token.
    pub basic_auth_user: Option<String>,
    /// That user's password.
    pub basic_auth_password: Option<Secret>,
    /// For a domain with secure access: the client certificate cybozu issued, a PKCS#12 file
    /// (`.p12`/`.pfx`, with `client_certificate_password`) or a PEM file holding the
    /// certificate and its private key. `base_url` is then the `{sub}.s.cybozu.com` host.
    pub client_certificate: Option<String>,
    /// The PKCS#12 file's password.
    pub client_certificate_password: Option<Secret>,
    /// A check box (e.g. 「SMS送信」): a record sends only while one of its options is checked,
    /// and the write-back of its message's first state clears it, so UPDATE_RECORD can send
    /// without sending on every edit.
    pub trigger_field: Option<String>,
    /// The value written to `status_field` for a state, where the field names it otherwise
    /// (`{ delivered = "配信済", undelivered = "不達" }`); other states are written by their
    /// own names. A drop-down or radio button must have each as an option (checked at start).
    #[serde(default)]
    pub status_values: BTreeMap<String, String>,
    /// The option of `opt_out_field` that means opted out (`配信停止`); unset, any checked
    /// option does.
    pub opt_out_option: Option<String>,
    /// A process-management action run on the record once its message is delivered (its name
    /// in the app administrator's language, e.g. `完了にする`).
    pub action_on_delivered: Option<String>,
}

fn default_kintone_calls_per_minute() -> u32 {
    6
}

fn default_poll_interval() -> u64 {
    60
}

/// `kintone[].trigger_events`: a kintone webhook event `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KintoneEvent {
    /// A record was added.
    AddRecord,
    /// A record was edited.
    UpdateRecord,
    /// A record moved to another process-management status.
    UpdateStatus,
    /// A record was deleted: carries no record, so it cannot send.
    DeleteRecord,
    /// A comment was posted: carries no record, so it cannot send.
    AddRecordComment,
}

impl KintoneEvent {
    /// The event's `type` as kintone sends it.
    pub fn as_str(self) -> &'static str {
        match self {
            KintoneEvent::AddRecord => "ADD_RECORD",
            KintoneEvent::UpdateRecord => "UPDATE_RECORD",
            KintoneEvent::UpdateStatus => "UPDATE_STATUS",
            KintoneEvent::DeleteRecord => "DELETE_RECORD",
            KintoneEvent::AddRecordComment => "ADD_RECORD_COMMENT",
        }
    }

    /// Whether the event's payload carries the record, which a send needs.
    fn carries_record(self) -> bool {
        matches!(
            self,
            KintoneEvent::AddRecord | KintoneEvent::UpdateRecord | KintoneEvent::UpdateStatus
        )
    }
}

/// A new record sends: the one event every app's webhook settings offer without process
/// management.
fn default_trigger_events() -> Vec<KintoneEvent> {
    vec![KintoneEvent::AddRecord]
}

fn default_time_zone() -> String {
    "Asia/Tokyo".into()
}

impl KintoneConfig {
    /// The zone templates show date-times in; valid once `validate` passed.
    pub fn zone(&self) -> Tz {
        self.time_zone.parse().expect("validated at load")
    }

    /// The status the reconciliation poller looks for, when it runs.
    pub fn polled_status(&self) -> Option<&str> {
        let polls = self.poll_interval_seconds > 0
            && !self.dry_run
            && self.trigger_events.contains(&KintoneEvent::UpdateStatus);
        self.trigger_status.as_deref().filter(|_| polls)
    }

    /// Whether the reconciliation poller runs: for a status trigger, a trigger check box, or new
    /// records, whichever the connection sends on; never for a dry run, which calls nothing.
    pub fn polls(&self) -> bool {
        self.poll_interval_seconds > 0
            && !self.dry_run
            && (self.polled_status().is_some()
                || self.trigger_field.is_some()
                || self.trigger_events.contains(&KintoneEvent::AddRecord))
    }

    /// Whether webhooks of this `type` may send.
    pub fn triggers_on(&self, type_name: &str) -> bool {
        self.trigger_events.iter().any(|e| e.as_str() == type_name)
    }

    /// How the app's records become messages.
    pub fn mapping(&self) -> Mapping<'_> {
        Mapping {
            phone_field: &self.phone_field,
            template: &self.template,
            opt_out_field: self.opt_out_field.as_deref(),
            opt_out_option: self.opt_out_option.as_deref(),
            transactional: self.transactional,
        }
    }
}

/// Check every connection, naming each problem's key path (`kintone[0].app`).
pub(super) fn validate(connections: &[KintoneConfig], problems: &mut Vec<Problem>) {
    for (i, c) in connections.iter().enumerate() {
        let mut problem = |key: &str, message: String| {
            problems.push(Problem::new(format!("kintone[{i}].{key}"), message));
        };
        let earlier = connections[..i].iter().map(|other| other.name.as_str());
        if let Some(message) = connection_name_problem(&c.name, earlier) {
            problem("name", message);
        }
        if !is_http_url(&c.base_url) {
            problem(
                "base_url",
                "must start with https:// (http:// only for a local test server)".into(),
            );
        }
        if c.app == 0 {
            problem("app", "must be the app's id, 1 or more".into());
        }
        if c.api_token.expose().trim().is_empty() {
            problem("api_token", "must not be empty".into());
        }
        if c.inbound_token.expose().chars().count() < MIN_INBOUND_TOKEN_CHARS {
            problem(
                "inbound_token",
                format!("must be at least {MIN_INBOUND_TOKEN_CHARS} characters"),
            );
        }
        if c.trigger_events.is_empty() {
            problem(
                "trigger_events",
                "list at least one of ADD_RECORD, UPDATE_RECORD, UPDATE_STATUS".into(),
            );
        }
        for (j, event) in c.trigger_events.iter().enumerate() {
            if !event.carries_record() {
                problem(
                    &format!("trigger_events[{j}]"),
                    format!(
                        "{} carries no record, so it cannot send an SMS; use ADD_RECORD, \
                         UPDATE_RECORD or UPDATE_STATUS",
                        event.as_str()
                    ),
                );
            }
        }
        let status_triggers = c.trigger_events.contains(&KintoneEvent::UpdateStatus);
        match c.trigger_status.as_deref() {
            None if status_triggers => problem(
                "trigger_status",
                "is required when UPDATE_STATUS is in trigger_events".into(),
            ),
            Some(status) if status.trim().is_empty() => {
                problem("trigger_status", "must not be empty".into())
            }
            _ => {}
        }
        if let Some(message) = time_zone_problem(&c.time_zone) {
            problem("time_zone", message);
        }
        if !(1..=10_000).contains(&c.writeback_calls_per_minute) {
            problem(
                "writeback_calls_per_minute",
                "must be between 1 and 10000".into(),
            );
        }
        if c.poll_interval_seconds > 86_400 {
            problem(
                "poll_interval_seconds",
                "must be at most 86400 (a day); 0 turns the poller off".into(),
            );
        }
        let fields = [
            ("phone_field", Some(&c.phone_field)),
            ("status_field", Some(&c.status_field)),
            ("status_detail_field", Some(&c.status_detail_field)),
            ("reply_field", Some(&c.reply_field)),
            ("opt_out_field", c.opt_out_field.as_ref()),
            ("click_field", c.click_field.as_ref()),
            ("trigger_field", c.trigger_field.as_ref()),
        ];
        for (key, value) in fields {
            if let Some(code) = value.filter(|code| !is_field_code(code)) {
                problem(key, format!("{code:?} is not a kintone field code"));
            }
        }
        if let Err(refusal) = messaging::compile(&c.template, &Rules::default()) {
            problem("template", refusal.to_string());
        }
        for (key, message) in status_values_problems(&c.status_values) {
            problem(&key, message);
        }
        locked_down_problems(c, &mut problem);
        let blank = |value: &Option<String>| value.as_ref().is_some_and(|v| v.trim().is_empty());
        if blank(&c.opt_out_option) {
            problem("opt_out_option", "must not be empty".into());
        } else if c.opt_out_option.is_some() && c.opt_out_field.is_none() {
            problem(
                "opt_out_option",
                "names an option of opt_out_field, which is not set".into(),
            );
        }
        if blank(&c.action_on_delivered) {
            problem("action_on_delivered", "must not be empty".into());
        }
    }
}

/// The problems of a connection's guest space, Basic authentication and client certificate.
fn locked_down_problems(c: &KintoneConfig, problem: &mut impl FnMut(&str, String)) {
    if c.guest_space_id == Some(0) {
        problem(
            "guest_space_id",
            "must be the guest space's id, 1 or more".into(),
        );
    }
    match (&c.basic_auth_user, &c.basic_auth_password) {
        (Some(user), _) if user.is_empty() || user.contains(':') => problem(
            "basic_auth_user",
            "must be a user name, not empty and without `:`".into(),
        ),
        (Some(_), None) => problem(
            "basic_auth_password",
            "is required with basic_auth_user".into(),
        ),
        (None, Some(_)) => problem(
            "basic_auth_user",
            "is required with basic_auth_password".into(),
        ),
        _ => {}
    }
    match &c.client_certificate {
        Some(path) if path.trim().is_empty() => {
            problem("client_certificate", "must be a file path".into())
        }
        Some(_) if !is_secure_access_host(&c.base_url) => problem(
            "base_url",
            "with a client certificate must be the secure access host, \
             https://{subdomain}.s.cybozu.com"
                .into(),
        ),
        None if c.client_certificate_password.is_some() => problem(
            "client_certificate_password",
            "is the password of client_certificate, which is not set".into(),
        ),
        _ => {}
    }
}

/// Whether `base_url` can take a client certificate: cybozu's secure access hosts have `.s.`
/// before the domain (`example.s.cybozu.com`); another host (a local test server) is left be.
fn is_secure_access_host(base_url: &str) -> bool {
    let host = base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    ["cybozu.com", "kintone.com", "cybozu.cn"]
        .iter()
        .all(|domain| !host.ends_with(domain) || host.ends_with(&format!(".s.{domain}")))
}

/// A kintone field code: 1-128 characters, letters (Japanese too), digits, `_`, `・`, `$` and
/// `￥` (and their full-width forms), not starting with a digit.
fn is_field_code(code: &str) -> bool {
    (1..=128).contains(&code.chars().count())
        && !code.starts_with(|c: char| c.is_ascii_digit())
        && code
            .chars()
            .all(|c| c.is_alphanumeric() || "_・$￥＿＄".contains(c))
}

#[cfg(test)]
mod tests {
    use super::KintoneEvent;
    use crate::{config::Config, domain::state::JobState};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const VALID: &str = r#"
[[kintone]]
name = "sales"
base_url = "https://example.cybozu.com"
app = 12
api_token = "BuBNIwbRRaUvr33nWXcfUZ5VhaFsJxN0xH4NPN92"
inbound_token = "0123456789abcdef"
phone_field = "電話番号"
template = "{{氏名}}様 ご予約は{{予約日}}です"
status_field = "sms_status"
status_detail_field = "sms_status_detail"
reply_field = "sms_reply"
"#;

    fn paths(text: &str) -> Vec<String> {
        let problems = Config::parse(text, no_env).unwrap_err();
        let mut paths: Vec<_> = problems.into_iter().map(|p| p.path).collect();
        paths.sort();
        paths
    }

    #[test]
    fn a_connection_reads_with_its_defaults() {
        let c = Config::parse(VALID, no_env).unwrap();
        let k = &c.kintone[0];
        assert_eq!(k.trigger_events, [KintoneEvent::AddRecord]);
        assert_eq!(k.zone(), chrono_tz::Asia::Tokyo);
        assert!(k.triggers_on("ADD_RECORD") && !k.triggers_on("UPDATE_STATUS"));
        assert_eq!(k.mapping().phone_field, "電話番号");
        let printed = format!("{c:?}");
        assert!(!printed.contains("0123456789abcdef") && !printed.contains("BuBNIw"));
    }

    #[test]
    fn the_write_back_budget_is_6_a_minute_and_zero_is_refused() {
        let c = Config::parse(VALID, no_env).unwrap();
        assert_eq!(c.kintone[0].writeback_calls_per_minute, 6);
        let text = format!("{VALID}writeback_calls_per_minute = 0\n");
        assert_eq!(paths(&text), ["kintone[0].writeback_calls_per_minute"]);
    }

    #[test]
    fn every_problem_names_its_key_path() {
        let text = VALID
            .replace("\"sales\"", "\"sa les\"")
            .replace("https://example", "ftp://example")
            .replace("app = 12", "app = 0")
            .replace("0123456789abcdef", "short")
            .replace("\"電話番号\"", "\"電話 番号\"")
            .replace("{{氏名}}様", "{% for x in y %}{% endfor %}")
            .replace("\"sms_reply\"", "\"1reply\"")
            + "time_zone = \"Asia/Nowhere\"\n";
        assert_eq!(
            paths(&text),
            [
                "kintone[0].app",
                "kintone[0].base_url",
                "kintone[0].inbound_token",
                "kintone[0].name",
                "kintone[0].phone_field",
                "kintone[0].reply_field",
                "kintone[0].template",
                "kintone[0].time_zone",
            ]
        );
    }

    #[test]
    fn update_status_needs_a_trigger_status() {
        let text = format!("{VALID}trigger_events = [\"ADD_RECORD\", \"UPDATE_STATUS\"]\n");
        assert_eq!(paths(&text), ["kintone[0].trigger_status"]);
        let with_status = format!("{text}trigger_status = \"SMS送信\"\n");
        let c = Config::parse(&with_status, no_env).unwrap();
        assert!(c.kintone[0].triggers_on("UPDATE_STATUS"));
    }

    #[test]
    fn only_events_that_carry_a_record_trigger() {
        let text = format!("{VALID}trigger_events = [\"ADD_RECORD\", \"DELETE_RECORD\"]\n");
        assert_eq!(paths(&text), ["kintone[0].trigger_events[1]"]);
        let none = format!("{VALID}trigger_events = []\n");
        assert_eq!(paths(&none), ["kintone[0].trigger_events"]);
        let unknown = format!("{VALID}trigger_events = [\"UPDATE_APP\"]\n");
        let problems = Config::parse(&unknown, no_env).unwrap_err();
        assert!(
            problems[0].path.starts_with("kintone[0].trigger_events"),
            "{problems:?}"
        );
    }

    #[test]
    fn locked_down_domains_and_japanese_admins_get_each_key_checked() {
        let text = format!(
            "{VALID}guest_space_id = 0\nbasic_auth_user = \"gate\"\nclient_certificate = \"/etc/k.p12\"\n\
             opt_out_option = \"配信停止\"\nstatus_values = {{ deliverd = \"配信済\" }}\n\
             trigger_field = \"SMS 送信\"\naction_on_delivered = \" \"\n"
        );
        assert_eq!(
            paths(&text),
            [
                "kintone[0].action_on_delivered",
                "kintone[0].base_url",
                "kintone[0].basic_auth_password",
                "kintone[0].guest_space_id",
                "kintone[0].opt_out_option",
                "kintone[0].status_values.deliverd",
                "kintone[0].trigger_field",
            ]
        );
        let fine = format!(
            "{}guest_space_id = 5\nbasic_auth_user = \"gate\"\nbasic_auth_password = \"p\"\n\
             client_certificate = \"/etc/k.p12\"\nclient_certificate_password = \"p\"\n\
             opt_out_field = \"配信\"\nopt_out_option = \"配信停止\"\n\
             status_values = {{ delivered = \"配信済\" }}\ntrigger_field = \"SMS送信\"\n",
            VALID.replace("example.cybozu.com", "example.s.cybozu.com")
        );
        let c = Config::parse(&fine, no_env).unwrap();
        let values = &c.kintone[0].status_values;
        assert_eq!(JobState::Delivered.shown_as(values), "配信済");
        assert_eq!(JobState::Sent.shown_as(values), "sent");
        assert!(!format!("{c:?}").contains("basic_auth_password: Some(\"p\")"));
    }

    #[test]
    fn names_are_unique() {
        let twice = format!("{VALID}{}", VALID.replace("app = 12", "app = 13"));
        assert_eq!(paths(&twice), ["kintone[1].name"]);
    }

    #[test]
    fn japanese_and_system_style_field_codes_are_field_codes() {
        for code in [
            "電話番号",
            "sms_status",
            "顧客No",
            "Record_number",
            "携帯・自宅",
        ] {
            assert!(super::is_field_code(code), "{code}");
        }
        for code in ["", "1番", "電話 番号", "a.b", "a-b"] {
            assert!(!super::is_field_code(code), "{code}");
        }
    }
}

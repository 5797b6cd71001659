//! `[[salesforce]]` connections and their `[[salesforce.mappings]]`.

use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tsunagi_salesforce::OrgId;

use super::{
    connection_name_problem, is_http_url, time_zone_problem, Problem, Secret,
    MIN_INBOUND_TOKEN_CHARS,
};
use crate::{domain::template::Rules, mapping::Mapping, messaging};

/// One Salesforce org: where its Flows and Outbound Messages come in, and how tsunagi signs in
/// to write status back.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct SalesforceConfig {
    /// Names the connection in URLs (`/v1/inbound/salesforce/NAME/…`): letters, digits, `-`, `_`.
    pub name: String,
    /// The org's id (`00D…`, 15 or 18 characters); Outbound Messages from other orgs are refused.
    pub organization_id: String,
    /// The secret part of the inbound URLs (at least 16 characters).
    pub inbound_token: Secret,
    /// Where tokens for write-back are minted: `https://login.salesforce.com`,
    /// `https://test.salesforce.com` or the org's My Domain.
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// The OAuth grant write-back signs in with.
    pub auth: AuthKind,
    /// The connected app's consumer key.
    pub client_id: String,
    /// The connected app's consumer secret (`client_credentials`, `refresh_token`).
    pub client_secret: Option<Secret>,
    /// The integration user (`jwt_bearer`).
    pub username: Option<String>,
    /// PEM file of the key that signs JWT assertions (`jwt_bearer`).
    pub private_key_path: Option<String>,
    /// The org is a sandbox (`jwt_bearer`): its JWTs name `https://test.salesforce.com` as their
    /// audience. When unset, read from `login_url` (`test.salesforce.com` or a
    /// `*.sandbox.my.salesforce.com` My Domain).
    pub sandbox: Option<bool>,
    /// The JWT's `aud` (`jwt_bearer`), when it is neither generic login host (an Experience
    /// Cloud site's URL); a My Domain URL is never one.
    pub audience: Option<String>,
    /// The refresh token (`refresh_token`).
    pub refresh_token: Option<Secret>,
    /// REST API version, e.g. `67.0`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// IANA zone datetimes in templates are shown in.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// How each sObject's records become messages.
    #[serde(default)]
    pub mappings: Vec<MappingConfig>,
    /// Write-back makes no call: the calls it would make are kept, with their exact bodies, and
    /// listed at `GET /v1/writebacks` (no token is asked for either).
    #[serde(default)]
    pub dry_run: bool,
    /// The most API calls write-back makes a minute for this org: 30 is 43,200 a day flat out,
    /// under half the smallest Enterprise allowance (100,000 and 1,000 a licence); a quiet org
    /// makes far fewer, since part batches wait longer the more of it the last minute used.
    #[serde(default = "default_salesforce_calls_per_minute")]
    pub writeback_calls_per_minute: u32,
    /// Whether a reply of just CANCEL or 解除 to this connection's messages opts out; unset, as
    /// `[opt_outs] ambiguous_words_opt_out` says. Set false where its messages ask people to
    /// reply with them (to cancel a booking): they then reach the record as replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambiguous_words_opt_out: Option<bool>,
}

fn default_salesforce_calls_per_minute() -> u32 {
    30
}

/// `salesforce[].auth`: the OAuth grant for write-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// Client id and secret, against the org's My Domain.
    ClientCredentials,
    /// An RS256 JWT signed with `private_key_path` for `username`.
    JwtBearer,
    /// A refresh token obtained once by an admin.
    RefreshToken,
}

/// `[[salesforce.mappings]]`: how records of one sObject become messages and where status goes.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct MappingConfig {
    /// The object's API name, exactly (`Contact`, `Appointment__c`, `ns__Visit__c`).
    pub sobject: String,
    /// The field holding the recipient's number.
    pub phone_field: String,
    /// The SMS text: merge fields are the record's fields by API name.
    pub template: String,
    /// Written back: queued, sent, delivered, undelivered, failed, rejected.
    pub status_field: String,
    /// Written back: why, e.g. the refusal's code and reason.
    pub status_detail_field: String,
    /// Written back: the latest reply from the handset.
    pub reply_field: String,
    /// A checkbox: checked means the record has opted out (and is refused); set on STOP,
    /// cleared on START.
    pub opt_out_field: Option<String>,
    /// Written back: when a person first clicked a short link in the record's message (a
    /// date/time field).
    pub click_field: Option<String>,
    /// The messages are not advertising (reminders, notices): where `[opt_outs]
    /// exempt_transactional` says so, opted-out numbers still get them.
    #[serde(default)]
    pub transactional: bool,
    /// Optionally, one log record per message (`[salesforce.mappings.message_log]`), so the
    /// record shows its whole SMS history in a related list.
    pub message_log: Option<MessageLogConfig>,
    /// The value written for a state, where the status field (a restricted picklist, say) names
    /// it otherwise: `{ delivered = "配信済", undelivered = "不達" }`; other states are written
    /// by their own names.
    #[serde(default)]
    pub status_values: std::collections::BTreeMap<String, String>,
}

/// `[salesforce.mappings.message_log]`: a custom object upserted per message on an external id.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageLogConfig {
    /// The log object's API name, e.g. `SMS_Message__c`.
    pub object: String,
    /// Its external id field (unique, text): tsunagi's message id.
    pub external_id_field: String,
    /// Its lookup to the record the message was sent for, e.g. `Contact__c`.
    pub record_field: String,
    /// Its field for the message's state.
    pub status_field: String,
    /// Its field for why (optional).
    pub detail_field: Option<String>,
}

fn default_login_url() -> String {
    "https://login.salesforce.com".into()
}

fn default_api_version() -> String {
    "67.0".into()
}

fn default_time_zone() -> String {
    "Asia/Tokyo".into()
}

impl SalesforceConfig {
    /// The `aud` of this connection's JWT assertions: `audience`, or the login host `sandbox`
    /// names, or the one `login_url` implies.
    pub fn jwt_audience(&self) -> String {
        match (&self.audience, self.sandbox) {
            (Some(audience), _) => audience.clone(),
            (None, Some(true)) => tsunagi_salesforce::SANDBOX_LOGIN.into(),
            (None, Some(false)) => tsunagi_salesforce::PRODUCTION_LOGIN.into(),
            (None, None) => tsunagi_salesforce::jwt_audience(&self.login_url).into(),
        }
    }

    /// The org id; valid once `validate` passed.
    pub fn org_id(&self) -> OrgId {
        OrgId::parse(&self.organization_id).expect("validated at load")
    }

    /// The zone templates show datetimes in; valid once `validate` passed.
    pub fn zone(&self) -> Tz {
        self.time_zone.parse().expect("validated at load")
    }

    /// The mapping for records of `sobject` (API names are case-sensitive), if one is configured.
    pub fn mapping(&self, sobject: &str) -> Option<Mapping<'_>> {
        self.mappings
            .iter()
            .find(|m| m.sobject == sobject)
            .map(|m| Mapping {
                phone_field: &m.phone_field,
                template: &m.template,
                opt_out_field: m.opt_out_field.as_deref(),
                opt_out_option: None,
                transactional: m.transactional,
            })
    }
}

/// Check every connection, naming each problem's key path (`salesforce[0].organization_id`).
pub(super) fn validate(connections: &[SalesforceConfig], problems: &mut Vec<Problem>) {
    for (i, c) in connections.iter().enumerate() {
        let at = |key: &str| format!("salesforce[{i}].{key}");
        let mut problem =
            |key: &str, message: String| problems.push(Problem::new(at(key), message));
        let earlier = connections[..i].iter().map(|other| other.name.as_str());
        if let Some(message) = connection_name_problem(&c.name, earlier) {
            problem("name", message);
        }
        if let Err(e) = OrgId::parse(&c.organization_id) {
            problem(
                "organization_id",
                format!("must be the org's 15- or 18-character id (00D…): {e}"),
            );
        }
        if c.inbound_token.expose().chars().count() < MIN_INBOUND_TOKEN_CHARS {
            problem(
                "inbound_token",
                format!("must be at least {MIN_INBOUND_TOKEN_CHARS} characters"),
            );
        }
        if !is_http_url(&c.login_url) {
            problem(
                "login_url",
                "must start with https:// (http:// only for a local test server)".into(),
            );
        }
        if c.auth == AuthKind::ClientCredentials
            && tsunagi_salesforce::is_generic_login(&c.login_url)
        {
            problem(
                "login_url",
                "the client credentials flow works only on the org's My Domain \
                 (https://yourcompany.my.salesforce.com); login.salesforce.com and \
                 test.salesforce.com refuse it"
                    .into(),
            );
        }
        if let Some(audience) = &c.audience {
            if !audience.starts_with("https://") || audience.contains(".my.salesforce.com") {
                problem(
                    "audience",
                    "must be https://login.salesforce.com, https://test.salesforce.com or an \
                     Experience Cloud site's URL, never the My Domain; leave it out to take it \
                     from login_url or sandbox"
                        .into(),
                );
            }
        }
        if c.client_id.trim().is_empty() {
            problem("client_id", "must not be empty".into());
        }
        for (key, present) in required_keys(c) {
            if !present {
                problem(
                    key,
                    format!("is required when auth = {:?}", auth_name(c.auth)),
                );
            }
        }
        if !is_api_version(&c.api_version) {
            problem(
                "api_version",
                format!("{:?} is not a version such as \"67.0\"", c.api_version),
            );
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
        for (j, m) in c.mappings.iter().enumerate() {
            validate_mapping(
                m,
                &c.mappings[..j],
                &at(&format!("mappings[{j}]")),
                problems,
            );
        }
    }
}

fn validate_mapping(
    m: &MappingConfig,
    earlier: &[MappingConfig],
    at: &str,
    problems: &mut Vec<Problem>,
) {
    let mut problem = |key: &str, message: String| {
        problems.push(Problem::new(format!("{at}.{key}"), message));
    };
    if !is_api_name(&m.sobject) {
        problem(
            "sobject",
            format!("{:?} is not an sObject API name", m.sobject),
        );
    } else if earlier.iter().any(|e| e.sobject == m.sobject) {
        problem(
            "sobject",
            format!("{:?} has another mapping too", m.sobject),
        );
    }
    let fields = [
        ("phone_field", Some(&m.phone_field)),
        ("status_field", Some(&m.status_field)),
        ("status_detail_field", Some(&m.status_detail_field)),
        ("reply_field", Some(&m.reply_field)),
        ("opt_out_field", m.opt_out_field.as_ref()),
        ("click_field", m.click_field.as_ref()),
    ];
    let log = m.message_log.as_ref();
    let log_names = [
        ("message_log.object", log.map(|l| &l.object)),
        (
            "message_log.external_id_field",
            log.map(|l| &l.external_id_field),
        ),
        ("message_log.record_field", log.map(|l| &l.record_field)),
        ("message_log.status_field", log.map(|l| &l.status_field)),
        (
            "message_log.detail_field",
            log.and_then(|l| l.detail_field.as_ref()),
        ),
    ];
    let fields = fields.into_iter().chain(log_names);
    for (key, value) in fields {
        if let Some(name) = value.filter(|name| !is_api_name(name)) {
            problem(key, format!("{name:?} is not a field API name"));
        }
    }
    if let Err(refusal) = messaging::compile(&m.template, &Rules::default()) {
        problem("template", refusal.to_string());
    }
    for (key, message) in super::status_values_problems(&m.status_values) {
        problem(&key, message);
    }
}

/// The keys `auth` needs, with whether each is given.
fn required_keys(c: &SalesforceConfig) -> Vec<(&'static str, bool)> {
    let given = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.expose().is_empty());
    match c.auth {
        AuthKind::ClientCredentials => vec![("client_secret", given(&c.client_secret))],
        AuthKind::JwtBearer => vec![
            (
                "username",
                c.username.as_deref().is_some_and(|u| !u.is_empty()),
            ),
            (
                "private_key_path",
                c.private_key_path.as_deref().is_some_and(|p| !p.is_empty()),
            ),
        ],
        AuthKind::RefreshToken => vec![
            ("client_secret", given(&c.client_secret)),
            ("refresh_token", given(&c.refresh_token)),
        ],
    }
}

fn auth_name(auth: AuthKind) -> &'static str {
    match auth {
        AuthKind::ClientCredentials => "client_credentials",
        AuthKind::JwtBearer => "jwt_bearer",
        AuthKind::RefreshToken => "refresh_token",
    }
}

/// A Salesforce API name: a letter, then letters, digits and underscores (`ns__Visit__c`).
pub fn is_api_name(name: &str) -> bool {
    name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_api_version(version: &str) -> bool {
    version.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty()
            && major.len() <= 3
            && major.bytes().all(|b| b.is_ascii_digit())
            && minor == "0"
    })
}

#[cfg(test)]
mod tests {
    use crate::{config::Config, domain::state::JobState};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const VALID: &str = r#"
[[salesforce]]
name = "prod"
organization_id = "00D5j000001aBcD"
inbound_token = "0123456789abcdef"
auth = "client_credentials"
client_id = "3MVG9"
client_secret = "s3cr3t"
login_url = "https://acme.my.salesforce.com"

[[salesforce.mappings]]
sobject = "Contact"
phone_field = "MobilePhone"
template = "{{LastName}}様 ご予約は{{Appointment_Date__c}}です"
status_field = "SMS_Status__c"
status_detail_field = "SMS_Status_Detail__c"
reply_field = "SMS_Last_Reply__c"
"#;

    #[test]
    fn a_connection_reads_with_its_defaults() {
        let c = Config::parse(VALID, no_env).unwrap();
        let sf = &c.salesforce[0];
        assert_eq!(sf.org_id().as_str(), "00D5j000001aBcDEAU");
        assert_eq!(sf.zone(), chrono_tz::Asia::Tokyo);
        assert_eq!(sf.api_version, "67.0");
        assert_eq!(sf.mapping("Contact").unwrap().phone_field, "MobilePhone");
        assert!(
            sf.mapping("contact").is_none(),
            "API names are case-sensitive"
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn every_problem_names_its_key_path() {
        let text = VALID
            .replace("00D5j000001aBcD", "0035j00000Pq7Rs")
            .replace("0123456789abcdef", "short")
            .replace("\"prod\"", "\"pr od\"")
            .replace("{{LastName}}様", "{% for x in y %}{% endfor %}")
            .replace("MobilePhone", "Mobile Phone")
            + "time_zone = \"Asia/Nowhere\"\n";
        // time_zone landed in the mapping table, so it is an unknown key there.
        let problems = Config::parse(&text, no_env).unwrap_err();
        let mut paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "salesforce[0].inbound_token",
                "salesforce[0].mappings[0].phone_field",
                "salesforce[0].mappings[0].template",
                "salesforce[0].mappings[0].time_zone",
                "salesforce[0].name",
                "salesforce[0].organization_id",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn the_write_back_budget_is_30_a_minute_and_zero_is_refused() {
        let c = Config::parse(VALID, no_env).unwrap();
        assert_eq!(c.salesforce[0].writeback_calls_per_minute, 30);
        let text = VALID.replace(
            "client_secret = \"s3cr3t\"",
            "client_secret = \"s3cr3t\"\nwriteback_calls_per_minute = 0",
        );
        let problems = Config::parse(&text, no_env).unwrap_err();
        assert_eq!(
            problems[0].path, "salesforce[0].writeback_calls_per_minute",
            "{problems:?}"
        );
    }

    #[test]
    fn client_credentials_on_a_generic_login_host_is_refused_naming_login_url() {
        for host in [
            "https://login.salesforce.com",
            "https://test.salesforce.com/",
        ] {
            let text = VALID.replace("https://acme.my.salesforce.com", host);
            let problems = Config::parse(&text, no_env).unwrap_err();
            assert_eq!(problems[0].path, "salesforce[0].login_url", "{problems:?}");
            assert!(problems[0].message.contains("My Domain"), "{problems:?}");
        }
        let unset = VALID.replace("login_url = \"https://acme.my.salesforce.com\"\n", "");
        let problems = Config::parse(&unset, no_env).unwrap_err();
        assert_eq!(
            problems[0].path, "salesforce[0].login_url",
            "the default is generic"
        );
    }

    #[test]
    fn the_jwt_audience_is_the_named_one_or_the_login_host_of_the_orgs_kind() {
        let jwt = VALID.replace(
            "auth = \"client_credentials\"",
            "auth = \"jwt_bearer\"\nusername = \"sms@acme.example\"\nprivate_key_path = \"k.pem\"",
        );
        let audience = |extra: &str| {
            let text = jwt.replace("client_secret = \"s3cr3t\"", extra);
            let c = Config::parse(&text, no_env).unwrap();
            c.salesforce[0].jwt_audience()
        };
        assert_eq!(
            audience(""),
            "https://login.salesforce.com",
            "My Domain, production"
        );
        assert_eq!(audience("sandbox = true"), "https://test.salesforce.com");
        let sandbox_domain = jwt
            .replace("client_secret = \"s3cr3t\"", "")
            .replace("acme.my.", "acme--uat.sandbox.my.");
        let c = Config::parse(&sandbox_domain, no_env).unwrap();
        assert_eq!(
            c.salesforce[0].jwt_audience(),
            "https://test.salesforce.com"
        );
        assert_eq!(
            audience("audience = \"https://acme.my.site.com\""),
            "https://acme.my.site.com"
        );
        let text = jwt.replace(
            "client_secret = \"s3cr3t\"",
            "audience = \"https://acme.my.salesforce.com\"",
        );
        let problems = Config::parse(&text, no_env).unwrap_err();
        assert_eq!(problems[0].path, "salesforce[0].audience", "{problems:?}");
    }

    #[test]
    fn status_values_rename_known_states_only() {
        let text = format!(
            "{VALID}\n[salesforce.mappings.status_values]\ndelivered = \"配信済\"\ndeliverd = \"x\"\nfailed = \"\"\n"
        );
        let problems = Config::parse(&text, no_env).unwrap_err();
        let mut paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "salesforce[0].mappings[0].status_values.deliverd",
                "salesforce[0].mappings[0].status_values.failed"
            ]
        );
        let text =
            format!("{VALID}\n[salesforce.mappings.status_values]\ndelivered = \"配信済\"\n");
        let c = Config::parse(&text, no_env).unwrap();
        let values = &c.salesforce[0].mappings[0].status_values;
        assert_eq!(values[JobState::Delivered.as_str()], "配信済");
    }

    #[test]
    fn the_time_zone_must_be_known() {
        let text = VALID.replace(
            "client_secret = \"s3cr3t\"",
            "client_secret = \"s3cr3t\"\ntime_zone = \"Asia/Nowhere\"",
        );
        let problems = Config::parse(&text, no_env).unwrap_err();
        assert_eq!(problems[0].path, "salesforce[0].time_zone", "{problems:?}");
    }

    #[test]
    fn a_message_log_reads_and_its_names_are_checked() {
        let log = "\n[salesforce.mappings.message_log]\nobject = \"SMS_Message__c\"\n\
                   external_id_field = \"Message_Id__c\"\nrecord_field = \"Contact__c\"\n\
                   status_field = \"Status__c\"\n";
        let c = Config::parse(&format!("{VALID}{log}"), no_env).unwrap();
        let read = c.salesforce[0].mappings[0].message_log.as_ref().unwrap();
        assert_eq!(read.object, "SMS_Message__c");
        assert_eq!(read.detail_field, None);
        let bad = format!("{VALID}{}", log.replace("Contact__c", "Contact c"));
        let problems = Config::parse(&bad, no_env).unwrap_err();
        assert_eq!(
            problems[0].path, "salesforce[0].mappings[0].message_log.record_field",
            "{problems:?}"
        );
    }

    #[test]
    fn each_auth_kind_needs_its_keys() {
        let jwt = VALID.replace("client_credentials", "jwt_bearer");
        let problems = Config::parse(&jwt, no_env).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["salesforce[0].username", "salesforce[0].private_key_path"]
        );
        assert!(problems[0].message.contains("jwt_bearer"));
        let refresh = VALID.replace("client_credentials", "refresh_token");
        let problems = Config::parse(&refresh, no_env).unwrap_err();
        assert_eq!(problems[0].path, "salesforce[0].refresh_token");
        let bare = VALID.replace("client_secret = \"s3cr3t\"", "");
        let problems = Config::parse(&bare, no_env).unwrap_err();
        assert_eq!(problems[0].path, "salesforce[0].client_secret");
    }

    #[test]
    fn names_and_sobjects_are_unique() {
        let twice = format!(
            "{VALID}{}",
            VALID.replace("00D5j000001aBcD", "00D5j000001aBcE")
        );
        let problems = Config::parse(&twice, no_env).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "salesforce[1].name");
        let mapping = &VALID[VALID.find("[[salesforce.mappings]]").unwrap()..];
        let two_mappings = format!("{VALID}{mapping}");
        let problems = Config::parse(&two_mappings, no_env).unwrap_err();
        assert_eq!(problems[0].path, "salesforce[0].mappings[1].sobject");
    }

    #[test]
    fn custom_and_namespaced_objects_are_api_names() {
        for name in ["Contact", "Appointment__c", "ns__Visit__c"] {
            assert!(super::is_api_name(name), "{name}");
        }
        for name in ["", "1Contact", "Con tact", "Contact.Name"] {
            assert!(!super::is_api_name(name), "{name}");
        }
    }
}

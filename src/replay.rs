//! `tsunagi replay FILE…`: post fixture files (captured, or from `tests/fixtures/`) to a running
//! instance's inbound routes, as the CRM or Twilio would, and say what each record became.
//!
//! The route comes from the file: a SOAP envelope is an Outbound Message, JSON with `records` a
//! Flow call, JSON with `type` and `app` a kintone webhook, a `.form` body a Twilio status
//! callback (`MessageStatus`) or incoming SMS. The connection is `--connection`, else the one the
//! file name names (`salesforce_prod_…`), else the only one of its kind in the config; its
//! `inbound_token` goes in the URL. Twilio bodies are signed with the config's auth token for
//! the URL the instance checks (`public_base_url` and the route).

use std::{path::Path, time::Duration};

use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::Value;
use tsunagi_salesforce::flow::FlowResponse;

use crate::{
    config::{Config, Secret},
    inbound::twilio::{signature, SIGNATURE_HEADER},
};

/// How long one post may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Which inbound route a fixture goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/inbound/salesforce/{name}/outbound-message/{token}`.
    OutboundMessage,
    /// `POST /v1/inbound/salesforce/{name}/flow/{token}`.
    Flow,
    /// `POST /v1/inbound/kintone/{name}/{token}`.
    Kintone,
    /// `POST /v1/inbound/twilio/status`.
    TwilioStatus,
    /// `POST /v1/inbound/twilio/sms`.
    TwilioSms,
}

impl Route {
    /// The route a fixture file takes, from its name and its body.
    pub fn of(file_name: &str, body: &[u8]) -> Result<Route, ReplayError> {
        let text = String::from_utf8_lossy(body);
        let start = text.trim_start();
        if file_name.ends_with(".form") || (!start.starts_with(['<', '{']) && start.contains('=')) {
            let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ReplayError::Unknown(format!("not a form body: {e}")))?;
            let has = |name: &str| params.iter().any(|(n, _)| n == name);
            return match () {
                _ if has("MessageStatus") => Ok(Route::TwilioStatus),
                _ if has("Body") && has("From") => Ok(Route::TwilioSms),
                _ => Err(ReplayError::Unknown(
                    "a form with neither MessageStatus nor Body and From".into(),
                )),
            };
        }
        if start.starts_with('<') {
            return match start.contains("notifications") {
                true => Ok(Route::OutboundMessage),
                false => Err(ReplayError::Unknown(
                    "XML, but no Outbound Message envelope".into(),
                )),
            };
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ReplayError::Unknown(format!("neither SOAP, JSON nor a form: {e}")))?;
        match () {
            _ if value.get("records").is_some() => Ok(Route::Flow),
            _ if value.get("type").is_some() && value.get("app").is_some() => Ok(Route::Kintone),
            _ => Err(ReplayError::Unknown(
                "JSON with neither `records` (a Flow call) nor `type` and `app` (a kintone webhook)"
                    .into(),
            )),
        }
    }

    /// The connection kind it needs, as file names start (`salesforce`, `kintone`).
    fn kind(&self) -> Option<&'static str> {
        match self {
            Route::OutboundMessage | Route::Flow => Some("salesforce"),
            Route::Kintone => Some("kintone"),
            Route::TwilioStatus | Route::TwilioSms => None,
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            Route::OutboundMessage => "text/xml; charset=utf-8",
            Route::Flow | Route::Kintone => "application/json",
            Route::TwilioStatus | Route::TwilioSms => "application/x-www-form-urlencoded",
        }
    }
}

/// Why a fixture could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    /// Nothing in it says which route it is for.
    #[error("no inbound route takes it: {0}")]
    Unknown(String),
    /// No connection, or more than one, fits it.
    #[error("{0}")]
    Connection(String),
    /// The instance could not be reached or did not answer.
    #[error("the call failed: {0}")]
    Call(reqwest::Error),
}

impl From<reqwest::Error> for ReplayError {
    fn from(e: reqwest::Error) -> Self {
        // The URL holds the connection's inbound token: never printed.
        ReplayError::Call(e.without_url())
    }
}

/// What became of one record of a fixture (or of the whole fixture).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Which record, when the route answers per record.
    pub record: Option<String>,
    /// What it became, in words: `queued msg_…`, `rejected invalid_phone_number: …`.
    pub outcome: String,
    /// Whether it was refused (exit non-zero).
    pub refused: bool,
}

impl Line {
    fn taken(record: Option<String>, outcome: String) -> Line {
        Line {
            record,
            outcome,
            refused: false,
        }
    }

    fn refused(record: Option<String>, outcome: String) -> Line {
        Line {
            record,
            outcome,
            refused: true,
        }
    }
}

/// Where and as whom fixtures are posted.
pub struct Replayer<'a> {
    config: &'a Config,
    base: String,
    connection: Option<String>,
    http: reqwest::Client,
}

impl<'a> Replayer<'a> {
    /// Post to `to` (else the config's `public_base_url`), as `connection` when given.
    pub fn new(
        config: &'a Config,
        to: Option<String>,
        connection: Option<String>,
    ) -> Result<Self, ReplayError> {
        let base = to.unwrap_or_else(|| config.public_base_url.clone());
        let http = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(Self {
            config,
            base: base.trim_end_matches('/').to_string(),
            connection,
            http,
        })
    }

    /// Post one fixture file; one line per record it carried.
    pub async fn replay(&self, path: &Path) -> Result<Vec<Line>, ReplayError> {
        let body = std::fs::read(path)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let route = Route::of(&file_name, &body)?;
        let url_path = self.url_path(&route, &file_name)?;
        let mut request = self
            .http
            .post(format!("{}{url_path}", self.base))
            .header(CONTENT_TYPE, route.content_type());
        if route.kind().is_none() {
            request = request.header(SIGNATURE_HEADER, self.twilio_signature(&url_path, &body)?);
        }
        let response = request.body(body.clone()).send().await?;
        let status = response.status();
        let results = response
            .headers()
            .get(crate::inbound::salesforce::RESULTS_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer = response.bytes().await?;
        if !status.is_success() {
            return Ok(vec![refusal(status.as_u16(), &answer)]);
        }
        Ok(match route {
            Route::OutboundMessage => acknowledged(&body, &answer, results.as_deref()),
            Route::Flow => flow_lines(&answer),
            Route::Kintone => vec![kintone_line(&answer)],
            Route::TwilioStatus => vec![Line::taken(None, "status callback recorded".into())],
            Route::TwilioSms => vec![Line::taken(None, "incoming SMS stored".into())],
        })
    }

    /// The route's path with the connection's name and inbound token.
    fn url_path(&self, route: &Route, file_name: &str) -> Result<String, ReplayError> {
        let Some(kind) = route.kind() else {
            return Ok(match route {
                Route::TwilioStatus => "/v1/inbound/twilio/status".into(),
                _ => "/v1/inbound/twilio/sms".into(),
            });
        };
        let connections: Vec<(&str, &Secret)> = match kind {
            "salesforce" => self
                .config
                .salesforce
                .iter()
                .map(|c| (c.name.as_str(), &c.inbound_token))
                .collect(),
            _ => self
                .config
                .kintone
                .iter()
                .map(|c| (c.name.as_str(), &c.inbound_token))
                .collect(),
        };
        let (name, token) = pick(&connections, kind, self.connection.as_deref(), file_name)?;
        Ok(match route {
            Route::OutboundMessage => format!(
                "/v1/inbound/salesforce/{name}/outbound-message/{}",
                token.expose()
            ),
            Route::Flow => format!("/v1/inbound/salesforce/{name}/flow/{}", token.expose()),
            _ => format!("/v1/inbound/kintone/{name}/{}", token.expose()),
        })
    }

    /// `X-Twilio-Signature` over the URL the instance checks: its `public_base_url` and the route.
    fn twilio_signature(&self, url_path: &str, body: &[u8]) -> Result<String, ReplayError> {
        let account = self.config.twilio_accounts().into_iter().next().ok_or_else(|| {
            ReplayError::Connection(
                "Twilio fixtures are signed with the instance's auth token: the config has no [providers.twilio]".into(),
            )
        })?;
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ReplayError::Unknown(format!("not a form body: {e}")))?;
        let url = format!(
            "{}{url_path}",
            self.config.public_base_url.trim_end_matches('/')
        );
        Ok(signature(account.auth_token.expose(), &url, &params))
    }
}

/// The connection a fixture goes to: the one asked for, else the one its file name names, else
/// the only one of its kind.
fn pick<'c>(
    connections: &[(&'c str, &'c Secret)],
    kind: &str,
    asked: Option<&str>,
    file_name: &str,
) -> Result<(&'c str, &'c Secret), ReplayError> {
    if let Some(asked) = asked {
        return connections
            .iter()
            .find(|(name, _)| *name == asked)
            .copied()
            .ok_or_else(|| {
                ReplayError::Connection(format!("the config has no {kind} connection {asked:?}"))
            });
    }
    // The longest name that fits, so `prod` does not take `prod_eu`'s files.
    let named = connections
        .iter()
        .filter(|(name, _)| file_name.starts_with(&format!("{kind}_{name}_")))
        .max_by_key(|(name, _)| name.len());
    match (named, connections) {
        (Some(found), _) => Ok(*found),
        (None, [only]) => Ok(*only),
        (None, []) => Err(ReplayError::Connection(format!(
            "the config has no {kind} connection"
        ))),
        (None, _) => Err(ReplayError::Connection(format!(
            "the file name names none of the {kind} connections; say which with --connection"
        ))),
    }
}

/// A refused call: the problem's code and detail, or the SOAP fault's text.
fn refusal(status: u16, answer: &[u8]) -> Line {
    #[derive(Deserialize)]
    struct Problem {
        code: String,
        detail: String,
    }
    let outcome = match serde_json::from_slice::<Problem>(answer) {
        Ok(p) => format!("refused {status} {}: {}", p.code, p.detail),
        Err(_) => {
            let text = String::from_utf8_lossy(answer);
            let fault = text
                .split_once("<faultstring>")
                .and_then(|(_, rest)| rest.split_once("</faultstring>"))
                .map_or(text.trim(), |(fault, _)| fault);
            format!(
                "refused {status}: {}",
                fault.chars().take(300).collect::<String>()
            )
        }
    };
    Line::refused(None, outcome)
}

/// An acknowledged Outbound Message: one line per notification, with what the instance said it
/// became (`results`, its `tsunagi-results` header); a notification stored as rejected is refused.
fn acknowledged(body: &[u8], answer: &[u8], results: Option<&str>) -> Vec<Line> {
    if !String::from_utf8_lossy(answer).contains("<Ack>true</Ack>") {
        return vec![Line::refused(None, "answered without Ack true".into())];
    }
    let became = |id: &str| {
        results?
            .split(", ")
            .find_map(|entry| entry.strip_prefix(id)?.strip_prefix('='))
    };
    match tsunagi_salesforce::outbound::parse(body) {
        Ok(message) => message
            .notifications
            .iter()
            .map(|n| {
                let record = Some(format!("{}/{}", n.sobject.object_type, n.sobject.id));
                let Some((message_id, outcome)) = became(&n.id).and_then(|e| e.split_once(' '))
                else {
                    return Line::taken(record, format!("acknowledged (notification {})", n.id));
                };
                match outcome.strip_prefix("rejected ") {
                    Some(code) => Line::refused(record, format!("rejected {message_id} {code}")),
                    None => Line::taken(record, format!("{outcome} {message_id}")),
                }
            })
            .collect(),
        Err(_) => vec![Line::taken(None, "acknowledged".into())],
    }
}

/// A Flow call's answer: one line per record.
fn flow_lines(answer: &[u8]) -> Vec<Line> {
    let Ok(response) = serde_json::from_slice::<FlowResponse>(answer) else {
        return vec![Line::refused(
            None,
            "the answer is not a Flow response".into(),
        )];
    };
    response
        .results
        .into_iter()
        .map(|r| {
            let message = r.message_id.as_deref().unwrap_or("(no message)");
            match r.error {
                Some(e) => Line::refused(
                    Some(r.id),
                    format!("{} {message} {}: {}", r.status, e.code, e.message),
                ),
                None => Line::taken(Some(r.id), format!("{} {message}", r.status)),
            }
        })
        .collect()
}

/// A kintone webhook's answer.
fn kintone_line(answer: &[u8]) -> Line {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return Line::refused(None, "the answer is not JSON".into());
    };
    let text = |key: &str| answer[key].as_str().unwrap_or_default().to_string();
    let result = text("result");
    let message = text("message_id");
    match result.as_str() {
        "rejected" => Line::refused(
            None,
            format!(
                "rejected {message} {}: {}",
                answer["error"]["code"].as_str().unwrap_or_default(),
                answer["error"]["message"].as_str().unwrap_or_default()
            ),
        ),
        "queued" => Line::taken(None, format!("queued {message}")),
        _ => Line::taken(None, format!("{result}: {}", text("reason"))),
    }
}

/// Replay `files` in order, writing one line per record to `out` (`FILE [RECORD]: OUTCOME`);
/// whether every record was taken (none refused, no call failed).
pub async fn replay_all(
    replayer: &Replayer<'_>,
    files: &[std::path::PathBuf],
    out: &mut impl std::io::Write,
) -> std::io::Result<bool> {
    let mut all_taken = true;
    for file in files {
        let name = file.display();
        match replayer.replay(file).await {
            Ok(lines) => {
                for line in lines {
                    all_taken &= !line.refused;
                    match &line.record {
                        Some(record) => writeln!(out, "{name} [{record}]: {}", line.outcome)?,
                        None => writeln!(out, "{name}: {}", line.outcome)?,
                    }
                }
            }
            Err(e) => {
                all_taken = false;
                writeln!(out, "{name}: not replayed: {e}")?;
            }
        }
    }
    Ok(all_taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_comes_from_the_body_and_the_file_name() {
        let route = |name: &str, body: &str| Route::of(name, body.as_bytes()).ok();
        let soap =
            "<soapenv:Envelope><soapenv:Body><notifications/></soapenv:Body></soapenv:Envelope>";
        assert_eq!(route("a.xml", soap), Some(Route::OutboundMessage));
        assert_eq!(route("a.json", r#"{"records": []}"#), Some(Route::Flow));
        let webhook = r#"{"id": "1", "type": "ADD_RECORD", "app": {"id": "12"}}"#;
        assert_eq!(route("a.json", webhook), Some(Route::Kintone));
        let status = "MessageSid=SM1&MessageStatus=delivered";
        assert_eq!(route("x.form", status), Some(Route::TwilioStatus));
        assert_eq!(route("x.txt", status), Some(Route::TwilioStatus));
        let sms = "MessageSid=SM1&From=%2B819012345678&To=%2B815055550100&Body=hi";
        assert_eq!(route("x.form", sms), Some(Route::TwilioSms));
        assert_eq!(route("a.json", r#"{"type": "ADD_RECORD"}"#), None);
        assert_eq!(route("a.xml", "<html></html>"), None);
    }

    #[test]
    fn the_connection_is_the_one_asked_for_else_the_file_names_else_the_only_one() {
        let (a, b) = (
            Secret::from("token-a".to_string()),
            Secret::from("token-b".to_string()),
        );
        let two = [("prod", &a), ("prod_eu", &b)];
        let name = |asked, file| pick(&two, "salesforce", asked, file).map(|(n, _)| n).ok();
        assert_eq!(
            name(None, "salesforce_prod_eu_flow_x.json"),
            Some("prod_eu")
        );
        assert_eq!(name(None, "salesforce_prod_flow_x.json"), Some("prod"));
        assert_eq!(
            name(Some("prod"), "salesforce_prod_eu_flow_x.json"),
            Some("prod")
        );
        assert_eq!(name(None, "flow_request_contacts.json"), None);
        assert_eq!(name(Some("dev"), "salesforce_prod_flow_x.json"), None);
        let one = [("prod", &a)];
        let only = pick(&one, "salesforce", None, "flow_request_contacts.json");
        assert_eq!(only.map(|(n, _)| n).ok(), Some("prod"));
    }
}

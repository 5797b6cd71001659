//! REST client for `https://{domain}/k/v1/` (or a guest space's `/k/guest/{space}/v1/`): read a
//! record, write up to 100 records with revisions, comment, and bulk requests.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::error::{classify, ErrorClass, KintoneError};
use crate::field::{number_text, Record};
use crate::form::Form;
use crate::http::{describe, read_capped, BodyError};
use crate::secret::Secret;

/// Most records one `PUT records.json` takes.
pub const MAX_UPDATE_RECORDS: usize = 100;

/// Most requests one `bulkRequest.json` takes.
pub const MAX_BULK_REQUESTS: usize = 20;

/// Longest comment kintone accepts, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_535;

/// Default time allowed for one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on a response body; a record with large rich text and tables stays well below.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Header carrying API tokens.
pub const API_TOKEN_HEADER: &str = "X-Cybozu-API-Token";

/// Longest excerpt of an unreadable error body kept in an error.
const EXCERPT_CHARS: usize = 200;

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// One or more API tokens, sent comma-joined (extra tokens for lookup source apps).
    ApiTokens(Vec<Secret>),
    /// An OAuth 2.0 access token, sent as `Authorization: Bearer`.
    Bearer(Secret),
}

impl Auth {
    /// A single API token.
    pub fn api_token(token: impl Into<Secret>) -> Self {
        Self::ApiTokens(vec![token.into()])
    }

    /// An OAuth access token.
    pub fn bearer(token: impl Into<Secret>) -> Self {
        Self::Bearer(token.into())
    }

    fn header(&self) -> Result<(&'static str, HeaderValue), ClientError> {
        let (name, text) = match self {
            Self::ApiTokens(tokens) => {
                if tokens.is_empty() || tokens.iter().any(|t| t.expose().contains(',')) {
                    return Err(ClientError::InvalidConfig(
                        "API tokens must be one or more, without commas".to_owned(),
                    ));
                }
                let joined: Vec<&str> = tokens.iter().map(Secret::expose).collect();
                (API_TOKEN_HEADER, joined.join(","))
            }
            Self::Bearer(token) => (AUTHORIZATION.as_str(), format!("Bearer {}", token.expose())),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            ClientError::InvalidConfig("a token holds characters a header cannot".to_owned())
        })?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}

/// One record to write: its id, the revision it was read at (`None` = unchecked), and the fields
/// to set by code (plain values; the client wraps each as `{"value": …}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdate {
    /// Record id (`$id`).
    pub id: u64,
    /// Expected revision; a mismatch fails the whole call with `GAIA_CO02`.
    pub revision: Option<u64>,
    /// Field values by code.
    pub record: Map<String, Value>,
}

impl RecordUpdate {
    /// An update of record `id` with no fields and no revision check.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            revision: None,
            record: Map::new(),
        }
    }

    /// Fails the write if the record is no longer at `revision`.
    pub fn with_revision(mut self, revision: u64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Sets one field (`"text"`, `["A","B"]`, `[{"code":"sato"}]`…).
    pub fn set(mut self, code: impl Into<String>, value: impl Into<Value>) -> Self {
        self.record.insert(code.into(), value.into());
        self
    }
}

impl Serialize for RecordUpdate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields: Map<String, Value> = self
            .record
            .iter()
            .map(|(code, value)| (code.clone(), json!({ "value": value })))
            .collect();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        if let Some(revision) = self.revision {
            map.serialize_entry("revision", &revision)?;
        }
        map.serialize_entry("record", &fields)?;
        map.end()
    }
}

/// A record written, with the revision the write gave it (remember it to spot echoes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatedRecord {
    /// Record id.
    pub id: u64,
    /// Revision after the write.
    pub revision: u64,
}

/// The domain's concurrent-request counters, from `X-ConcurrencyLimit-Limit` / `-Running`
/// (present on every response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    /// Concurrent requests the domain allows (100).
    pub limit: u32,
    /// Requests running when this one was answered.
    pub running: u32,
}

impl Concurrency {
    fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Self> {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse().ok();
        Some(Self {
            limit: number("x-concurrencylimit-limit")?,
            running: number("x-concurrencylimit-running")?,
        })
    }
}

/// HTTP method of a bulk request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BulkMethod {
    /// Create.
    Post,
    /// Update.
    Put,
    /// Delete.
    Delete,
}

/// One request inside a `bulkRequest.json` call.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequest {
    /// Method.
    pub method: BulkMethod,
    /// The API relative to the version root (`records.json`); the client adds `/k/v1/` or the
    /// guest-space path.
    pub api: String,
    /// The request body.
    pub payload: Value,
}

impl BulkRequest {
    /// Any request.
    pub fn new(method: BulkMethod, api: impl Into<String>, payload: Value) -> Self {
        Self {
            method,
            api: api.into(),
            payload,
        }
    }

    /// `PUT records.json` for up to 100 records.
    pub fn update_records(app: u64, updates: &[RecordUpdate]) -> Result<Self, ClientError> {
        check_update_count(updates)?;
        Ok(Self::new(
            BulkMethod::Put,
            "records.json",
            json!({ "app": app, "records": updates }),
        ))
    }

    /// `POST record/comment.json`.
    pub fn add_comment(app: u64, record: u64, text: &str) -> Result<Self, ClientError> {
        check_comment(text)?;
        Ok(Self::new(
            BulkMethod::Post,
            "record/comment.json",
            json!({ "app": app, "record": record, "comment": { "text": text } }),
        ))
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// More records than one call takes; nothing was sent.
    #[error("{count} records, more than the {limit} one call takes")]
    TooManyRecords {
        /// Records passed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More bulk requests than one call takes; nothing was sent.
    #[error("{count} bulk requests, more than the {limit} one call takes")]
    TooManyRequests {
        /// Requests passed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A comment over kintone's length limit; nothing was sent.
    #[error("comment of {chars} characters, over the {limit} kintone takes")]
    CommentTooLong {
        /// Characters in the comment.
        chars: usize,
        /// The limit.
        limit: usize,
    },
    /// A domain or token that cannot be used.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// kintone refused the request.
    #[error("kintone answered HTTP {status}: {}", summary(error.as_deref(), excerpt.as_deref()))]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body, when readable (boxed: it is large and errors travel often).
        error: Option<Box<KintoneError>>,
        /// For bulkRequest: the index of the failing request.
        bulk_index: Option<usize>,
        /// The start of an unreadable body.
        excerpt: Option<String>,
        /// The concurrency counters, when sent: how crowded the domain was.
        concurrency: Option<Concurrency>,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("request to kintone failed: {message}")]
    Network {
        /// What went wrong.
        message: String,
    },
    /// The response body passed the cap.
    #[error("response body over {limit} bytes")]
    ResponseTooLarge {
        /// The cap.
        limit: usize,
    },
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// A success status with a body of the wrong shape.
    #[error("unreadable response: {0}")]
    InvalidResponse(String),
}

fn summary(error: Option<&KintoneError>, excerpt: Option<&str>) -> String {
    match (error, excerpt) {
        (Some(e), _) => format!("{}: {}", e.code, e.message),
        (None, Some(text)) => text.to_owned(),
        (None, None) => "no error details".to_owned(),
    }
}

impl ClientError {
    /// How the caller should react.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { status, error, .. } => classify(*status, error.as_deref()),
            Self::Network { .. } => ErrorClass::Retryable,
            Self::TooManyRecords { .. }
            | Self::TooManyRequests { .. }
            | Self::CommentTooLong { .. }
            | Self::InvalidConfig(_)
            | Self::ResponseTooLarge { .. }
            | Self::Encode(_)
            | Self::InvalidResponse(_) => ErrorClass::Final,
        }
    }

    /// The kintone error body, if kintone sent one.
    pub fn kintone_error(&self) -> Option<&KintoneError> {
        match self {
            Self::Api { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// The kintone error code (`GAIA_CO02`…), if any.
    pub fn code(&self) -> Option<&str> {
        self.kintone_error().map(|e| e.code.as_str())
    }
}

fn check_update_count(updates: &[RecordUpdate]) -> Result<(), ClientError> {
    if updates.len() > MAX_UPDATE_RECORDS {
        return Err(ClientError::TooManyRecords {
            count: updates.len(),
            limit: MAX_UPDATE_RECORDS,
        });
    }
    Ok(())
}

fn check_comment(text: &str) -> Result<(), ClientError> {
    let chars = text.chars().count();
    if chars > MAX_COMMENT_CHARS {
        return Err(ClientError::CommentTooLong {
            chars,
            limit: MAX_COMMENT_CHARS,
        });
    }
    Ok(())
}

/// Told of every request a client makes, by its API path (`records.json`): kintone counts
/// requests a day per app, and the embedder may want to as well.
#[derive(Clone)]
pub struct CallHook(std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl CallHook {
    /// A hook calling `f` with each request's API path.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for CallHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallHook")
    }
}

/// kintone REST client for one domain (and optionally one guest space).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    origin: String,
    guest_space: Option<u64>,
    auth: Auth,
    basic: Option<HeaderValue>,
    timeout: Duration,
    max_response_bytes: usize,
    on_call: Option<CallHook>,
}

impl Client {
    /// A client for `domain` (`example.cybozu.com`, or a full `https://…` origin).
    pub fn new(domain: &str, auth: Auth) -> Result<Self, ClientError> {
        Self::with_client(reqwest::Client::new(), domain, auth)
    }

    /// Like [`Client::new`], sharing an existing HTTP client.
    pub fn with_client(
        http: reqwest::Client,
        domain: &str,
        auth: Auth,
    ) -> Result<Self, ClientError> {
        let origin = if domain.contains("://") {
            domain.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", domain.trim_end_matches('/'))
        };
        let url = Url::parse(&origin)
            .map_err(|e| ClientError::InvalidConfig(format!("domain {domain:?}: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") || url.path() != "/" || url.query().is_some() {
            return Err(ClientError::InvalidConfig(format!(
                "domain {domain:?} must be a host name or an http(s) origin"
            )));
        }
        auth.header()?;
        Ok(Self {
            http,
            origin,
            guest_space: None,
            auth,
            basic: None,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            on_call: None,
        })
    }

    /// Tells `hook` of every request made, before it is sent.
    pub fn with_call_hook(mut self, hook: CallHook) -> Self {
        self.on_call = Some(hook);
        self
    }

    /// Sends every call to guest space `space` (`/k/guest/{space}/v1/`).
    pub fn with_guest_space(mut self, space: u64) -> Self {
        self.guest_space = Some(space);
        self
    }

    /// Sends the domain's Basic authentication (`Authorization: Basic`) beside the API token,
    /// for a domain that has it switched on; OAuth takes `Authorization` itself, so not with it.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Result<Self, ClientError> {
        if matches!(self.auth, Auth::Bearer(_)) {
            return Err(ClientError::InvalidConfig(
                "Basic authentication goes beside an API token, not OAuth".to_owned(),
            ));
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
            ClientError::InvalidConfig(
                "the Basic authentication holds characters a header cannot".to_owned(),
            )
        })?;
        value.set_sensitive(true);
        self.basic = Some(value);
        Ok(self)
    }

    /// Sets the time allowed for one request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the cap on response bodies.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The path prefix of every API (`/k/v1/` or `/k/guest/{space}/v1/`).
    pub fn api_root(&self) -> String {
        match self.guest_space {
            Some(space) => format!("/k/guest/{space}/v1/"),
            None => "/k/v1/".to_owned(),
        }
    }

    /// `GET record.json`: one record.
    pub async fn get_record(&self, app: u64, id: u64) -> Result<Record, ClientError> {
        #[derive(Deserialize)]
        struct Reply {
            record: Record,
        }
        let query = [("app", app.to_string()), ("id", id.to_string())];
        let body = self.call(Method::GET, "record.json", &query, None).await?;
        let reply: Reply = decode(&body)?;
        Ok(reply.record)
    }

    /// The app's form: every field's type by code (`GET app/form/fields.json`).
    pub async fn form(&self, app: u64) -> Result<Form, ClientError> {
        let query = [("app", app.to_string())];
        let body = self
            .call(Method::GET, "app/form/fields.json", &query, None)
            .await?;
        decode(&body)
    }

    /// The code of the app's process-management STATUS field (`GET app/form/fields.json`), or
    /// `None` when process management is off. Its code is a display name that differs by
    /// language, so it is found by its type.
    pub async fn status_field_code(&self, app: u64) -> Result<Option<String>, ClientError> {
        let query = [("app", app.to_string())];
        let body = self
            .call(Method::GET, "app/form/fields.json", &query, None)
            .await?;
        let reply: Value = decode(&body)?;
        Ok(reply["properties"].as_object().and_then(|fields| {
            fields.iter().find_map(|(code, field)| {
                (field["type"] == "STATUS" && field["enabled"] != false).then(|| code.clone())
            })
        }))
    }

    /// The options of a check box field, in the order the form shows them (`GET
    /// app/form/fields.json`), or `None` when the app has no check box with that code.
    pub async fn check_box_options(
        &self,
        app: u64,
        code: &str,
    ) -> Result<Option<Vec<String>>, ClientError> {
        let query = [("app", app.to_string())];
        let body = self
            .call(Method::GET, "app/form/fields.json", &query, None)
            .await?;
        let reply: Value = decode(&body)?;
        let field = &reply["properties"][code];
        if field["type"] != "CHECK_BOX" {
            return Ok(None);
        }
        let Some(options) = field["options"].as_object() else {
            return Ok(None);
        };
        let mut ordered: Vec<(u64, String)> = options
            .iter()
            .map(|(name, option)| {
                let index = match &option["index"] {
                    Value::String(s) => s.parse().unwrap_or(u64::MAX),
                    other => other.as_u64().unwrap_or(u64::MAX),
                };
                let label = option["label"].as_str().unwrap_or(name);
                (index, label.to_string())
            })
            .collect();
        ordered.sort();
        Ok(Some(ordered.into_iter().map(|(_, label)| label).collect()))
    }

    /// `GET records.json`: the records `query` selects (kintone's query language, at most 500
    /// by its `limit`), with only `fields` when any are named.
    pub async fn get_records(
        &self,
        app: u64,
        query: &str,
        fields: &[&str],
    ) -> Result<Vec<Record>, ClientError> {
        #[derive(Deserialize)]
        struct Reply {
            records: Vec<Record>,
        }
        let mut params = vec![("app", app.to_string()), ("query", query.to_owned())];
        let names: Vec<String> = (0..fields.len()).map(|i| format!("fields[{i}]")).collect();
        params.extend(
            names
                .iter()
                .map(String::as_str)
                .zip(fields.iter().map(|f| f.to_string())),
        );
        let body = self
            .call(Method::GET, "records.json", &params, None)
            .await?;
        let reply: Reply = decode(&body)?;
        Ok(reply.records)
    }

    /// `PUT records.json`: up to 100 records, each with its optional revision; more are refused
    /// without a call. kintone sends no webhook for this multi-record API (normally).
    pub async fn update_records(
        &self,
        app: u64,
        updates: &[RecordUpdate],
    ) -> Result<Vec<UpdatedRecord>, ClientError> {
        // The count is checked first: too many records are refused without a call.
        let payload = BulkRequest::update_records(app, updates)?.payload;
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        tracing::debug!(app, records = updates.len(), "kintone PUT records.json");
        let body = self
            .call(Method::PUT, "records.json", &[], Some(&payload))
            .await?;
        let reply: Value = decode(&body)?;
        let written = parse_updated(&reply)?;
        // Callers match revisions to records by id, so every record sent must come back.
        if let Some(missing) = updates
            .iter()
            .find(|u| !written.iter().any(|w| w.id == u.id))
        {
            return Err(ClientError::InvalidResponse(format!(
                "records reply lacks record {}",
                missing.id
            )));
        }
        Ok(written)
    }

    /// `PUT records/status.json`: run the process-management `action` (its name in the token's
    /// language) on up to 100 records, unchecked by revision; returns their new revisions. Like
    /// `records.json`, this multi-record API sends no webhook.
    pub async fn run_action(
        &self,
        app: u64,
        action: &str,
        ids: &[u64],
    ) -> Result<Vec<UpdatedRecord>, ClientError> {
        if ids.len() > MAX_UPDATE_RECORDS {
            return Err(ClientError::TooManyRecords {
                count: ids.len(),
                limit: MAX_UPDATE_RECORDS,
            });
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "action": action}))
            .collect();
        let payload = json!({"app": app, "records": records});
        let body = self
            .call(Method::PUT, "records/status.json", &[], Some(&payload))
            .await?;
        parse_updated(&decode(&body)?)
    }

    /// `POST record/comment.json`; returns the new comment's id.
    pub async fn add_comment(
        &self,
        app: u64,
        record: u64,
        text: &str,
    ) -> Result<String, ClientError> {
        check_comment(text)?;
        let payload = json!({ "app": app, "record": record, "comment": { "text": text } });
        let body = self
            .call(Method::POST, "record/comment.json", &[], Some(&payload))
            .await?;
        let reply: Value = decode(&body)?;
        reply
            .get("id")
            .and_then(number_text)
            .ok_or_else(|| ClientError::InvalidResponse("comment reply has no id".to_owned()))
    }

    /// The body of a `bulkRequest.json` call running `requests`, each API under this client's
    /// root, as sent.
    pub fn bulk_request_body(&self, requests: &[BulkRequest]) -> Value {
        let root = self.api_root();
        let requests: Vec<Value> = requests
            .iter()
            .map(|r| {
                json!({
                    "method": r.method,
                    "api": format!("{root}{}", r.api.trim_start_matches('/')),
                    "payload": r.payload,
                })
            })
            .collect();
        json!({ "requests": requests })
    }

    /// `POST bulkRequest.json`: up to 20 requests run in order, all or nothing; returns each
    /// request's result. On failure the error names the failing request's index.
    pub async fn bulk_request(&self, requests: &[BulkRequest]) -> Result<Vec<Value>, ClientError> {
        if requests.len() > MAX_BULK_REQUESTS {
            return Err(ClientError::TooManyRequests {
                count: requests.len(),
                limit: MAX_BULK_REQUESTS,
            });
        }
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let payload = self.bulk_request_body(requests);
        let body = self
            .call(Method::POST, "bulkRequest.json", &[], Some(&payload))
            .await?;
        #[derive(Deserialize)]
        struct Reply {
            results: Vec<Value>,
        }
        let reply: Reply = decode(&body)?;
        if reply.results.len() != requests.len() {
            return Err(ClientError::InvalidResponse(format!(
                "sent {} requests but got {} results",
                requests.len(),
                reply.results.len()
            )));
        }
        Ok(reply.results)
    }

    async fn call(
        &self,
        method: Method,
        api: &str,
        query: &[(&str, String)],
        payload: Option<&Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{}{}", self.origin, self.api_root(), api);
        let (auth_name, auth_value) = self.auth.header()?;
        if let Some(hook) = &self.on_call {
            (hook.0)(api);
        }
        let mut request = self
            .http
            .request(method, url)
            .timeout(self.timeout)
            .header(auth_name, auth_value)
            .header(ACCEPT, "application/json");
        if let Some(basic) = &self.basic {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        // kintone refuses a JSON content type on a bodiless GET, so only bodies get one.
        if let Some(payload) = payload {
            let bytes =
                serde_json::to_vec(payload).map_err(|e| ClientError::Encode(e.to_string()))?;
            request = request.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let response = request.send().await.map_err(|e| ClientError::Network {
            message: describe(e),
        })?;
        let status = response.status();
        let concurrency = Concurrency::from_headers(response.headers());
        let body = read_capped(response, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => ClientError::ResponseTooLarge { limit },
                BodyError::Network(e) => ClientError::Network {
                    message: describe(e),
                },
            })?;
        if status.is_success() {
            return Ok(body);
        }
        let parsed = KintoneError::parse(&body);
        let excerpt = (parsed.is_none() && !body.is_empty()).then(|| {
            String::from_utf8_lossy(&body)
                .chars()
                .take(EXCERPT_CHARS)
                .collect()
        });
        let (error, bulk_index) = match parsed {
            Some((error, index)) => (Some(Box::new(error)), index),
            None => (None, None),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            error,
            bulk_index,
            excerpt,
            concurrency,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::InvalidResponse(e.to_string()))
}

/// `{"records":[{"id":"7","revision":"5"}]}`; ids and revisions come as strings.
fn parse_updated(reply: &Value) -> Result<Vec<UpdatedRecord>, ClientError> {
    let invalid = || ClientError::InvalidResponse("records reply without ids and revisions".into());
    reply
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?
        .iter()
        .map(|item| {
            let number = |key: &str| item.get(key).and_then(number_text)?.parse().ok();
            Some(UpdatedRecord {
                id: number("id")?,
                revision: number("revision")?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::test_support::fixture;

    fn json_reply(status: u16, name: &str) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .insert_header("content-type", "application/json")
            .insert_header("X-ConcurrencyLimit-Limit", "100")
            .insert_header("X-ConcurrencyLimit-Running", "1")
            .set_body_bytes(fixture(name))
    }

    fn client(server: &MockServer) -> Client {
        Client::new(&server.uri(), Auth::api_token("token-a")).unwrap()
    }

    fn updates(n: u64) -> Vec<RecordUpdate> {
        (1..=n)
            .map(|id| {
                RecordUpdate::new(id)
                    .with_revision(id + 1)
                    .set("SMS状態", "delivered")
            })
            .collect()
    }

    async fn requests(server: &MockServer) -> usize {
        server.received_requests().await.unwrap().len()
    }

    #[tokio::test]
    async fn the_status_field_is_found_by_its_type_and_absent_when_disabled() {
        let server = MockServer::start().await;
        let fields = |enabled: bool| {
            serde_json::json!({"properties": {
                "氏名": {"type": "SINGLE_LINE_TEXT", "code": "氏名", "label": "氏名"},
                "ステータス": {"type": "STATUS", "code": "ステータス", "label": "ステータス", "enabled": enabled},
            }, "revision": "7"})
        };
        Mock::given(method("GET"))
            .and(path("/k/v1/app/form/fields.json"))
            .and(query_param("app", "12"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fields(true)))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/k/v1/app/form/fields.json"))
            .and(query_param("app", "3"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fields(false)))
            .mount(&server)
            .await;
        let client = client(&server);
        assert_eq!(
            client.status_field_code(12).await.unwrap().as_deref(),
            Some("ステータス")
        );
        assert_eq!(client.status_field_code(3).await.unwrap(), None);
    }

    #[tokio::test]
    async fn check_box_options_come_in_form_order_and_only_for_a_check_box() {
        let server = MockServer::start().await;
        let fields = crate::test_support::fixture("form_fields_opt_out_check_box.json");
        Mock::given(method("GET"))
            .and(path("/k/v1/app/form/fields.json"))
            .and(query_param("app", "12"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(fields, "application/json"))
            .mount(&server)
            .await;
        let client = client(&server);
        assert_eq!(
            client.check_box_options(12, "sms_opt_out").await.unwrap(),
            Some(vec!["配信停止".to_string(), "受け取る".to_string()])
        );
        assert_eq!(
            client.check_box_options(12, "電話番号").await.unwrap(),
            None
        );
        assert_eq!(client.check_box_options(12, "nothing").await.unwrap(), None);
    }

    #[tokio::test]
    async fn get_records_sends_the_query_and_the_fields_asked_for() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/k/v1/records.json"))
            .and(query_param("app", "12"))
            .and(query_param("query", "$id in (7, 8) limit 100"))
            .and(query_param("fields[0]", "$id"))
            .and(query_param("fields[1]", "$revision"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "records": [
                    {"$id": {"type": "__ID__", "value": "7"}, "$revision": {"type": "__REVISION__", "value": "3"}},
                    {"$id": {"type": "__ID__", "value": "8"}, "$revision": {"type": "__REVISION__", "value": "12"}}
                ],
                "totalCount": null
            })))
            .expect(1)
            .mount(&server)
            .await;
        let records = client(&server)
            .get_records(12, "$id in (7, 8) limit 100", &["$id", "$revision"])
            .await
            .unwrap();
        let read: Vec<_> = records.iter().map(|r| (r.id(), r.revision())).collect();
        assert_eq!(read, [(Some(7), Some(3)), (Some(8), Some(12))]);
    }

    #[tokio::test]
    async fn get_record_sends_the_api_token_header_and_reads_the_record() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/k/v1/record.json"))
            .and(query_param("app", "12"))
            .and(query_param("id", "7"))
            .and(header(API_TOKEN_HEADER, "token-a"))
            .respond_with(json_reply(200, "record_every_field_type.json"))
            .expect(1)
            .mount(&server)
            .await;
        let record = client(&server).get_record(12, 7).await.unwrap();
        assert_eq!((record.id(), record.revision()), (Some(7), Some(3)));
        let sent = &server.received_requests().await.unwrap()[0];
        assert!(
            sent.headers.get("content-type").is_none(),
            "a bodiless GET has no JSON type"
        );
    }

    #[tokio::test]
    async fn several_api_tokens_are_comma_joined_and_oauth_is_a_bearer() {
        let server = MockServer::start().await;
        // wiremock's `header` matcher splits values on commas, so the joined token is read back
        // from the recorded request instead.
        Mock::given(method("GET"))
            .and(wiremock::matchers::header_exists(API_TOKEN_HEADER))
            .respond_with(json_reply(200, "record_every_field_type.json"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(header("authorization", "Bearer oauth-1"))
            .respond_with(json_reply(200, "record_every_field_type.json"))
            .expect(1)
            .mount(&server)
            .await;
        let tokens = Auth::ApiTokens(vec!["token-a".into(), "token-b".into()]);
        Client::new(&server.uri(), tokens)
            .unwrap()
            .get_record(1, 7)
            .await
            .unwrap();
        let sent = &server.received_requests().await.unwrap()[0];
        assert_eq!(sent.headers[API_TOKEN_HEADER], "token-a,token-b");
        Client::new(&server.uri(), Auth::bearer("oauth-1"))
            .unwrap()
            .get_record(1, 7)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_domain_behind_basic_authentication_gets_it_beside_the_api_token() {
        let server = MockServer::start().await;
        // "user:pass" in base64.
        Mock::given(method("GET"))
            .and(path("/k/guest/5/v1/record.json"))
            .and(header(API_TOKEN_HEADER, "token-a"))
            .and(header("authorization", "Basic dXNlcjpwYXNz"))
            .respond_with(json_reply(200, "record_every_field_type.json"))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server)
            .with_guest_space(5)
            .with_basic_auth("user", "pass")
            .unwrap();
        client.get_record(12, 7).await.unwrap();
        let oauth = Client::new(&server.uri(), Auth::bearer("oauth-1")).unwrap();
        assert!(oauth.with_basic_auth("user", "pass").is_err());
        assert!(!format!("{client:?}").contains("dXNlcjpwYXNz"), "sensitive");
    }

    #[tokio::test]
    async fn a_guest_space_client_uses_the_guest_path() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/k/guest/5/v1/record.json"))
            .respond_with(json_reply(200, "record_every_field_type.json"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/k/guest/5/v1/bulkRequest.json"))
            .and(body_json(json!({"requests": [{
                "method": "POST",
                "api": "/k/guest/5/v1/record/comment.json",
                "payload": {"app": 12, "record": 7, "comment": {"text": "返信"}},
            }]})))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"results": [{"id": "4"}]})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let guest = client(&server).with_guest_space(5);
        guest.get_record(12, 7).await.unwrap();
        let comment = BulkRequest::add_comment(12, 7, "返信").unwrap();
        let results = guest.bulk_request(&[comment]).await.unwrap();
        assert_eq!(results, vec![json!({"id": "4"})]);
    }

    #[tokio::test]
    async fn update_records_sends_revisions_and_reads_revisions_by_id() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/k/v1/records.json"))
            .and(header("content-type", "application/json"))
            .and(body_json(json!({"app": 12, "records": [
                {"id": 7, "revision": 4, "record": {"SMS状態": {"value": "delivered"}}},
                {"id": 92, "record": {"SMS詳細": {"value": "ok"}}},
            ]})))
            .respond_with(json_reply(200, "records_update_response.json"))
            .expect(1)
            .mount(&server)
            .await;
        let written = client(&server)
            .update_records(
                12,
                &[
                    RecordUpdate::new(7)
                        .with_revision(4)
                        .set("SMS状態", "delivered"),
                    RecordUpdate::new(92).set("SMS詳細", "ok"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            written,
            vec![
                UpdatedRecord { id: 7, revision: 5 },
                UpdatedRecord {
                    id: 92,
                    revision: 1
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_reply_missing_a_sent_record_is_an_error() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .respond_with(json_reply(200, "records_update_response.json"))
            .mount(&server)
            .await;
        let error = client(&server)
            .update_records(12, &[RecordUpdate::new(7), RecordUpdate::new(8)])
            .await
            .unwrap_err();
        assert_eq!(
            error,
            ClientError::InvalidResponse("records reply lacks record 8".into())
        );
    }

    #[tokio::test]
    async fn more_than_a_hundred_records_are_refused_without_a_call() {
        let server = MockServer::start().await;
        let client = client(&server);
        assert_eq!(
            client.update_records(12, &updates(101)).await.unwrap_err(),
            ClientError::TooManyRecords {
                count: 101,
                limit: 100
            }
        );
        assert!(BulkRequest::update_records(12, &updates(101)).is_err());
        let too_many: Vec<BulkRequest> = (0..21)
            .map(|_| BulkRequest::update_records(12, &updates(1)).unwrap())
            .collect();
        assert!(matches!(
            client.bulk_request(&too_many).await,
            Err(ClientError::TooManyRequests {
                count: 21,
                limit: 20
            })
        ));
        let long = "あ".repeat(MAX_COMMENT_CHARS + 1);
        assert!(matches!(
            client.add_comment(12, 7, &long).await,
            Err(ClientError::CommentTooLong { .. })
        ));
        assert_eq!(client.update_records(12, &[]).await.unwrap(), vec![]);
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn a_revision_conflict_is_the_conflict_class() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .respond_with(json_reply(409, "error_revision_conflict.json"))
            .mount(&server)
            .await;
        let error = client(&server)
            .update_records(12, &updates(2))
            .await
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Conflict);
        assert_eq!(error.code(), Some("GAIA_CO02"));
        assert!(error.to_string().contains("HTTP 409: GAIA_CO02"), "{error}");
    }

    #[tokio::test]
    async fn a_validation_error_exposes_its_field_map() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .respond_with(json_reply(400, "error_validation.json"))
            .mount(&server)
            .await;
        let error = client(&server)
            .update_records(12, &updates(1))
            .await
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Final);
        let body = error.kintone_error().unwrap();
        assert_eq!(body.code, "CB_VA01");
        assert_eq!(
            body.errors["records[0].SMS状態.value"],
            vec!["\"配信済\"は選択肢にありません。"]
        );
        assert!(body.field_errors().contains_key("SMS状態"));
    }

    #[tokio::test]
    async fn an_invalid_token_is_final() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(json_reply(400, "error_invalid_token.json"))
            .mount(&server)
            .await;
        let error = client(&server).get_record(12, 7).await.unwrap_err();
        assert_eq!(error.code(), Some("GAIA_IA02"));
        assert_eq!(error.class(), ErrorClass::Final);
    }

    #[tokio::test]
    async fn too_many_requests_and_server_errors_are_retryable() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/k/v1/record/comment.json"))
            .respond_with(json_reply(429, "error_too_many_requests.json"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/k/v1/record/comment.json"))
            .respond_with(ResponseTemplate::new(503).set_body_string("<html>maintenance</html>"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/k/v1/record/comment.json"))
            .and(body_json(
                json!({"app": 12, "record": 7, "comment": {"text": "はい"}}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 3})))
            .mount(&server)
            .await;
        let client = client(&server);
        let limited = client.add_comment(12, 7, "はい").await.unwrap_err();
        assert_eq!(limited.class(), ErrorClass::Retryable);
        assert_eq!(limited.code(), Some("GAIA_TO04"));
        assert!(
            matches!(
                limited,
                ClientError::Api {
                    concurrency: Some(Concurrency {
                        limit: 100,
                        running: 1
                    }),
                    ..
                }
            ),
            "{limited:?}"
        );
        let down = client.add_comment(12, 7, "はい").await.unwrap_err();
        assert_eq!(down.class(), ErrorClass::Retryable);
        assert!(
            matches!(&down, ClientError::Api { excerpt: Some(e), .. } if e.contains("maintenance"))
        );
        // A comment id comes as a number here, as a string elsewhere.
        assert_eq!(client.add_comment(12, 7, "はい").await.unwrap(), "3");
    }

    #[tokio::test]
    async fn a_failing_bulk_request_names_its_index() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/k/v1/bulkRequest.json"))
            .respond_with(ResponseTemplate::new(409).set_body_json(json!({"results": [
                {},
                {"code": "GAIA_CO02", "id": "x", "message": "The revision is not the latest."},
            ]})))
            .mount(&server)
            .await;
        let requests = [
            BulkRequest::update_records(12, &updates(1)).unwrap(),
            BulkRequest::update_records(12, &updates(2)).unwrap(),
        ];
        let error = client(&server).bulk_request(&requests).await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Api {
                    bulk_index: Some(1),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.class(), ErrorClass::Conflict);
    }

    #[tokio::test]
    async fn oversized_and_slow_responses_are_bounded() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("[".repeat(4096)))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(
                json_reply(200, "record_every_field_type.json").set_delay(Duration::from_secs(5)),
            )
            .mount(&server)
            .await;
        let client = client(&server)
            .with_max_response_bytes(1024)
            .with_timeout(Duration::from_millis(100));
        assert_eq!(
            client.get_record(1, 1).await.unwrap_err(),
            ClientError::ResponseTooLarge { limit: 1024 }
        );
        let slow = client.get_record(1, 1).await.unwrap_err();
        assert!(matches!(slow, ClientError::Network { .. }), "{slow:?}");
        assert_eq!(slow.class(), ErrorClass::Retryable);
    }

    #[test]
    fn bad_domains_and_tokens_are_refused_up_front() {
        assert!(Client::new("example.cybozu.com", Auth::api_token("t")).is_ok());
        assert!(Client::new("https://example.cybozu.com/", Auth::api_token("t")).is_ok());
        for domain in [
            "",
            "ftp://example.cybozu.com",
            "https://example.cybozu.com/k/v1",
        ] {
            assert!(
                matches!(
                    Client::new(domain, Auth::api_token("t")),
                    Err(ClientError::InvalidConfig(_))
                ),
                "{domain:?}"
            );
        }
        for auth in [
            Auth::ApiTokens(vec![]),
            Auth::api_token("a,b"),
            Auth::bearer("line\nbreak"),
        ] {
            assert!(Client::new("example.cybozu.com", auth).is_err());
        }
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let client = Client::new("example.cybozu.com", Auth::api_token("very-secret")).unwrap();
        assert!(!format!("{client:?}").contains("very-secret"));
    }
}

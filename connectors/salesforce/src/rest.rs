//! REST client for sObject Collections (`{instance_url}/services/data/vNN.N/composite/sobjects`),
//! the batching that keeps write-backs within the org's scarce daily API allowance.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::describe::{SObjectDescribe, MAX_DESCRIBE_BYTES};
use crate::http::{describe, read_capped, BodyError};
use crate::oauth::{AccessToken, TokenError, TokenSource};

/// API version used unless [`RestClient::with_api_version`] says otherwise.
pub const DEFAULT_API_VERSION: &str = "67.0";

/// Most records one sObject Collections call takes.
pub const MAX_COLLECTION_RECORDS: usize = 200;

/// Chunks (runs of records of one object type) one collections call processes at most.
pub const MAX_COLLECTION_CHUNKS: usize = 10;

/// The chunks Salesforce cuts `records` into: one per run of records of one type, so
/// `{account1, account2, contact1, account3}` is three.
pub fn chunks(records: &[SObject]) -> usize {
    records
        .iter()
        .enumerate()
        .filter(|(i, r)| *i == 0 || records[i - 1].object_type != r.object_type)
        .count()
}

/// Default time allowed for one REST request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on a response body; 200 results take a few tens of KiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Longest excerpt of an unreadable error body kept in an error.
const EXCERPT_CHARS: usize = 200;

/// A record to create, update or upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct SObject {
    /// Object API name, sent as `attributes.type`.
    pub object_type: String,
    /// Record id; required by update, absent for create and upsert.
    pub id: Option<String>,
    /// Field values by API name; keys `attributes` and, when `id` is set, `Id` are not sent.
    pub fields: Map<String, Value>,
}

impl SObject {
    /// A record of `object_type` with no id and no fields.
    pub fn new(object_type: impl Into<String>) -> Self {
        Self {
            object_type: object_type.into(),
            id: None,
            fields: Map::new(),
        }
    }

    /// Sets the record id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets one field.
    pub fn set(mut self, field: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(field.into(), value.into());
        self
    }
}

impl Serialize for SObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Salesforce rejects duplicate keys, so the reserved ones come only from their own slots.
        let reserved = |key: &str| {
            key.eq_ignore_ascii_case("attributes")
                || (self.id.is_some() && key.eq_ignore_ascii_case("id"))
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(
            "attributes",
            &serde_json::json!({ "type": self.object_type }),
        )?;
        if let Some(id) = &self.id {
            map.serialize_entry("id", id)?;
        }
        for (key, value) in self.fields.iter().filter(|(key, _)| !reserved(key)) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct CollectionRequest<'a> {
    #[serde(rename = "allOrNone")]
    all_or_none: bool,
    records: &'a [SObject],
}

/// The result for one record; results come in request order, which is the only reliable match
/// (a record refused for a malformed id has no `id`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordResult {
    /// Record id, when Salesforce could tell it.
    #[serde(default)]
    pub id: Option<String>,
    /// Whether the record was written.
    pub success: bool,
    /// For upsert: whether the record was created rather than updated.
    #[serde(default)]
    pub created: Option<bool>,
    /// Why the record was not written.
    #[serde(default)]
    pub errors: Vec<RecordError>,
}

impl RecordResult {
    /// Whether a later retry may write the record (a row lock held by another transaction).
    pub fn is_retryable(&self) -> bool {
        !self.success && self.errors.iter().any(RecordError::is_retryable)
    }
}

/// A per-record error (`statusCode`, unlike whole-request errors).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordError {
    /// `FIELD_CUSTOM_VALIDATION_EXCEPTION`, `MALFORMED_ID`, `UNABLE_TO_LOCK_ROW`…
    #[serde(rename = "statusCode", alias = "errorCode", default)]
    pub status_code: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// Fields involved.
    #[serde(default)]
    pub fields: Vec<String>,
}

impl RecordError {
    /// Whether the error clears by itself (`UNABLE_TO_LOCK_ROW`).
    pub fn is_retryable(&self) -> bool {
        self.status_code == "UNABLE_TO_LOCK_ROW"
    }

    /// Whether the error says the org is set up so that the written fields cannot take the
    /// value on any record (field-level security, a restricted picklist without the value, a
    /// field too short): the admin must fix it, and the record is not at fault.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self.status_code.as_str(),
            "INVALID_FIELD_FOR_INSERT_UPDATE"
                | "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
                | "STRING_TOO_LONG"
        )
    }
}

/// A whole-request error (`errorCode`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// `INVALID_SESSION_ID`, `REQUEST_LIMIT_EXCEEDED`…
    #[serde(rename = "errorCode", alias = "statusCode", default)]
    pub error_code: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// Fields involved, when given.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Results of one collections call, with the org's API usage reported alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionResponse {
    /// One result per request record, in request order.
    pub results: Vec<RecordResult>,
    /// The `Sforce-Limit-Info` header, when present.
    pub limits: Option<LimitInfo>,
}

/// API calls used against an allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Calls used in the last 24 hours.
    pub used: u64,
    /// The allowance.
    pub limit: u64,
}

impl Usage {
    /// Calls left in the allowance.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The connected app's own share of the allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUsage {
    /// Calls used and allowed for the app.
    pub usage: Usage,
    /// The connected app's name.
    pub app_name: String,
}

/// `Sforce-Limit-Info: api-usage=18/5000; per-app-api-usage=17/250(appName=x)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitInfo {
    /// Org-wide daily usage.
    pub api_usage: Option<Usage>,
    /// The connected app's usage, when it has its own limit.
    pub per_app_api_usage: Option<AppUsage>,
}

impl LimitInfo {
    /// Parses the header value; `None` if it holds nothing recognisable.
    pub fn parse(header: &str) -> Option<Self> {
        let mut info = Self::default();
        for part in header.split([';', ',']) {
            let Some((key, value)) = part.trim().split_once('=') else {
                continue;
            };
            match key.trim() {
                "api-usage" => info.api_usage = parse_usage(value),
                "per-app-api-usage" => {
                    let (usage, rest) = value.split_once('(').unwrap_or((value, ""));
                    let app_name = rest
                        .trim_end_matches(')')
                        .strip_prefix("appName=")
                        .unwrap_or_default();
                    info.per_app_api_usage = parse_usage(usage).map(|usage| AppUsage {
                        usage,
                        app_name: app_name.to_owned(),
                    });
                }
                _ => {}
            }
        }
        (info != Self::default()).then_some(info)
    }
}

fn parse_usage(value: &str) -> Option<Usage> {
    let (used, limit) = value.trim().split_once('/')?;
    Some(Usage {
        used: used.trim().parse().ok()?,
        limit: limit.trim().parse().ok()?,
    })
}

/// What the caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Back off briefly and retry: 5xx, 429, concurrency limit, network trouble.
    Retryable,
    /// The org's daily API allowance is spent: hold the queue for hours and alert.
    LongPause,
    /// The session was refused even with a freshly minted token: retry later, alert if it lasts.
    Session,
    /// Retrying the same request cannot help.
    Final,
}

/// Why a REST call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// More records than one collections call takes.
    #[error("{count} records, more than the {limit} one call takes")]
    TooManyRecords {
        /// Records passed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Records in more runs of one type than one collections call processes.
    #[error(
        "{count} chunks (runs of records of one type), more than the {limit} one call processes"
    )]
    TooManyChunks {
        /// Chunks passed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An object or field name that is not an API name.
    #[error("{0:?} is not an API name")]
    InvalidName(String),
    /// An API version not of the form `67.0`.
    #[error("{0:?} is not an API version like 67.0")]
    InvalidApiVersion(String),
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Salesforce refused the whole request.
    #[error("Salesforce answered HTTP {status}: {}", summary(errors))]
    Api {
        /// HTTP status.
        status: u16,
        /// The errors in the body (array or bare object); empty if unreadable.
        errors: Vec<ApiError>,
        /// The start of an unreadable body.
        excerpt: Option<String>,
        /// The `Sforce-Limit-Info` header, when present.
        limits: Option<LimitInfo>,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("request to Salesforce failed: {message}")]
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
    /// The records could not be encoded as JSON.
    #[error("cannot encode the records: {0}")]
    Encode(String),
    /// A success status with a body of the wrong shape.
    #[error("unreadable response: {0}")]
    InvalidResponse(String),
    /// Fewer or more results than records, so results cannot be matched by position.
    #[error("sent {sent} records but got {received} results")]
    ResultCountMismatch {
        /// Records sent.
        sent: usize,
        /// Results received.
        received: usize,
    },
}

fn summary(errors: &[ApiError]) -> String {
    if errors.is_empty() {
        return "no error details".to_owned();
    }
    errors
        .iter()
        .map(|e| format!("{}: {}", e.error_code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl RestError {
    /// How the caller should react.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { status, errors, .. } => classify(*status, errors),
            Self::Token(e) if e.is_transient() => ErrorClass::Retryable,
            Self::Network { .. } => ErrorClass::Retryable,
            Self::Token(_)
            | Self::TooManyRecords { .. }
            | Self::TooManyChunks { .. }
            | Self::InvalidName(_)
            | Self::InvalidApiVersion(_)
            | Self::ResponseTooLarge { .. }
            | Self::Encode(_)
            | Self::InvalidResponse(_)
            | Self::ResultCountMismatch { .. } => ErrorClass::Final,
        }
    }
}

fn classify(status: u16, errors: &[ApiError]) -> ErrorClass {
    let has = |code: &str| errors.iter().any(|e| e.error_code == code);
    match status {
        401 if errors
            .iter()
            .any(|e| e.message.contains("not valid for use with the REST API")) =>
        {
            ErrorClass::Final
        }
        401 => ErrorClass::Session,
        403 if has("REQUEST_LIMIT_EXCEEDED") => {
            // Concurrency limits clear in seconds; TotalRequests (the daily allowance) and any
            // limit we cannot tell apart are treated as the costly kind.
            let concurrent = errors.iter().any(|e| {
                e.error_code == "REQUEST_LIMIT_EXCEEDED" && e.message.contains("Concurrent")
            });
            if concurrent {
                ErrorClass::Retryable
            } else {
                ErrorClass::LongPause
            }
        }
        429 | 500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Final,
    }
}

/// Parses a whole-request error body: usually an array, sometimes a bare object.
pub fn parse_api_errors(body: &[u8]) -> Option<Vec<ApiError>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Body {
        Many(Vec<ApiError>),
        One(ApiError),
    }
    match serde_json::from_slice(body).ok()? {
        Body::Many(errors) => Some(errors),
        Body::One(error) => Some(vec![error]),
    }
}

struct Reply {
    status: StatusCode,
    limits: Option<LimitInfo>,
    body: Vec<u8>,
}

/// sObject Collections client; re-mints an expired token once per call through its
/// [`TokenSource`].
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
    api_version: String,
    timeout: Duration,
    max_response_bytes: usize,
}

impl RestClient {
    /// A client using `tokens`, with default version, timeout and body cap.
    pub fn new(tokens: Arc<TokenSource>) -> Self {
        Self::with_client(reqwest::Client::new(), tokens)
    }

    /// Like [`RestClient::new`], sharing an existing HTTP client.
    pub fn with_client(http: reqwest::Client, tokens: Arc<TokenSource>) -> Self {
        Self {
            http,
            tokens,
            api_version: DEFAULT_API_VERSION.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Pins the API version (`67.0`; a leading `v` is accepted).
    pub fn with_api_version(mut self, version: &str) -> Result<Self, RestError> {
        let bare = version.strip_prefix('v').unwrap_or(version);
        let valid = bare.split_once('.').is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
        if !valid {
            return Err(RestError::InvalidApiVersion(version.to_owned()));
        }
        self.api_version = bare.to_owned();
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

    /// The URL path of an API relative to the version root (`composite/sobjects`), from the
    /// instance URL on: `/services/data/v67.0/composite/sobjects`.
    pub fn api_path(&self, path: &str) -> String {
        format!("/services/data/v{}/{}", self.api_version, path)
    }

    /// Updates up to 200 records by id (`PATCH composite/sobjects`, `allOrNone` false).
    pub async fn update(&self, records: &[SObject]) -> Result<CollectionResponse, RestError> {
        self.collection(Method::PATCH, "composite/sobjects".to_owned(), records)
            .await
    }

    /// Creates up to 200 records (`POST composite/sobjects`, `allOrNone` false).
    pub async fn create(&self, records: &[SObject]) -> Result<CollectionResponse, RestError> {
        self.collection(Method::POST, "composite/sobjects".to_owned(), records)
            .await
    }

    /// Upserts up to 200 records of `object` matched on `external_id_field`
    /// (`PATCH composite/sobjects/{object}/{field}`); each record carries that field.
    pub async fn upsert(
        &self,
        object: &str,
        external_id_field: &str,
        records: &[SObject],
    ) -> Result<CollectionResponse, RestError> {
        let path = upsert_path(object, external_id_field)?;
        self.collection(Method::PATCH, path, records).await
    }

    /// The describe of `object` (`GET sobjects/{object}/describe`): its fields' types, lengths,
    /// write access and picklist values. One API call; answers run to megabytes, so cache them.
    pub async fn describe(&self, object: &str) -> Result<SObjectDescribe, RestError> {
        let path = format!("sobjects/{}/describe", api_name(object)?);
        let reader = self
            .clone()
            .with_max_response_bytes(self.max_response_bytes.max(MAX_DESCRIBE_BYTES));
        let reply = reader.send(Method::GET, &path, Vec::new()).await?;
        serde_json::from_slice(&reply.body).map_err(|e| RestError::InvalidResponse(e.to_string()))
    }

    /// The records a SOQL query finds (`GET query?q=`), each as its fields by API name (with
    /// `attributes`), following `nextRecordsUrl` until `max_records` are read.
    pub async fn query(
        &self,
        soql: &str,
        max_records: usize,
    ) -> Result<Vec<Map<String, Value>>, RestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            records: Vec<Map<String, Value>>,
            #[serde(default)]
            next_records_url: Option<String>,
        }
        let query = serde_urlencoded::to_string([("q", soql)])
            .map_err(|e| RestError::Encode(e.to_string()))?;
        let mut path = format!("query?{query}");
        let mut records = Vec::new();
        loop {
            let reply = self.send(Method::GET, &path, Vec::new()).await?;
            let page: Page = serde_json::from_slice(&reply.body)
                .map_err(|e| RestError::InvalidResponse(e.to_string()))?;
            records.extend(page.records);
            let root = self.api_path("");
            let next = page
                .next_records_url
                .as_deref()
                .and_then(|url| url.strip_prefix(root.as_str()));
            match next {
                Some(next) if records.len() < max_records => path = next.to_owned(),
                _ => break,
            }
        }
        records.truncate(max_records);
        Ok(records)
    }

    async fn collection(
        &self,
        method: Method,
        path: String,
        records: &[SObject],
    ) -> Result<CollectionResponse, RestError> {
        if records.len() > MAX_COLLECTION_RECORDS {
            return Err(RestError::TooManyRecords {
                count: records.len(),
                limit: MAX_COLLECTION_RECORDS,
            });
        }
        if chunks(records) > MAX_COLLECTION_CHUNKS {
            return Err(RestError::TooManyChunks {
                count: chunks(records),
                limit: MAX_COLLECTION_CHUNKS,
            });
        }
        if records.is_empty() {
            return Ok(CollectionResponse {
                results: Vec::new(),
                limits: None,
            });
        }
        let payload = collection_body(records)?;
        tracing::debug!(%method, %path, records = records.len(), "sObject Collections call");
        let reply = self.send(method, &path, payload).await?;
        let results: Vec<RecordResult> = serde_json::from_slice(&reply.body)
            .map_err(|e| RestError::InvalidResponse(e.to_string()))?;
        if results.len() != records.len() {
            return Err(RestError::ResultCountMismatch {
                sent: records.len(),
                received: results.len(),
            });
        }
        Ok(CollectionResponse {
            results,
            limits: reply.limits,
        })
    }

    /// One call; an expired session gets exactly one re-mint and one retry, never more.
    async fn send(&self, method: Method, path: &str, payload: Vec<u8>) -> Result<Reply, RestError> {
        let token = self.tokens.token().await?;
        let reply = self
            .execute(&token, method.clone(), path, payload.clone())
            .await?;
        let error = match into_error(reply) {
            Ok(reply) => return Ok(reply),
            Err(error) => error,
        };
        if error.class() != ErrorClass::Session {
            return Err(error);
        }
        tracing::info!("Salesforce session expired; minting a new token and retrying once");
        self.tokens.invalidate(&token).await;
        let token = self.tokens.token().await?;
        into_error(self.execute(&token, method, path, payload).await?)
    }

    async fn execute(
        &self,
        token: &AccessToken,
        method: Method,
        path: &str,
        payload: Vec<u8>,
    ) -> Result<Reply, RestError> {
        let url = format!("{}{}", token.instance_url, self.api_path(path));
        let response = self
            .http
            .request(method, url)
            .timeout(self.timeout)
            .bearer_auth(token.access_token.expose())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|e| RestError::Network {
                message: describe(e),
            })?;
        let status = response.status();
        let limits = response
            .headers()
            .get("sforce-limit-info")
            .and_then(|value| value.to_str().ok())
            .and_then(LimitInfo::parse);
        let body = read_capped(response, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => RestError::ResponseTooLarge { limit },
                BodyError::Network(e) => RestError::Network {
                    message: describe(e),
                },
            })?;
        Ok(Reply {
            status,
            limits,
            body,
        })
    }
}

/// The body of an sObject Collections call (`allOrNone` false) carrying `records`, as sent.
pub fn collection_body(records: &[SObject]) -> Result<Vec<u8>, RestError> {
    serde_json::to_vec(&CollectionRequest {
        all_or_none: false,
        records,
    })
    .map_err(|e| RestError::Encode(e.to_string()))
}

/// `value` as a SOQL string literal: quoted, with backslashes, quotes and line breaks escaped.
pub fn soql_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `name` if it is an object or field API name, for building SOQL from configured names.
pub fn soql_name(name: &str) -> Result<&str, RestError> {
    api_name(name)
}

/// The path, relative to the version root, of an upsert of `object` on `external_id_field`.
pub fn upsert_path(object: &str, external_id_field: &str) -> Result<String, RestError> {
    Ok(format!(
        "composite/sobjects/{}/{}",
        api_name(object)?,
        api_name(external_id_field)?
    ))
}

fn into_error(reply: Reply) -> Result<Reply, RestError> {
    if reply.status.is_success() {
        return Ok(reply);
    }
    let errors = parse_api_errors(&reply.body);
    let excerpt = (errors.is_none() && !reply.body.is_empty()).then(|| {
        String::from_utf8_lossy(&reply.body)
            .chars()
            .take(EXCERPT_CHARS)
            .collect()
    });
    Err(RestError::Api {
        status: reply.status.as_u16(),
        errors: errors.unwrap_or_default(),
        excerpt,
        limits: reply.limits,
    })
}

fn api_name(name: &str) -> Result<&str, RestError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(name)
    } else {
        Err(RestError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::oauth::Grant;
    use crate::test_support::fixture;

    const COLLECTIONS: &str = "/services/data/v67.0/composite/sobjects";
    const FIRST_TOKEN: &str =
        "Bearer 00D2x000000XyZa!AQ4AQClientCredentialsTokenForTestsOnly.abc123";
    const SECOND_TOKEN: &str = "Bearer 00D2x000000XyZa!AQ4AQJwtBearerTokenForTestsOnly.def456";

    fn json(status: u16, name: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_raw(fixture(name), "application/json")
    }

    /// A token fixture whose `instance_url` points at the mock server.
    fn token(server: &MockServer, name: &str) -> ResponseTemplate {
        let mut body: Value = serde_json::from_slice(&fixture(name)).unwrap();
        body["instance_url"] = Value::from(server.uri());
        ResponseTemplate::new(200).set_body_json(body)
    }

    /// A server whose token endpoint hands out a first token once, then a second one.
    async fn server_with_tokens() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(token(&server, "token_client_credentials.json"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(token(&server, "token_jwt_bearer.json"))
            .mount(&server)
            .await;
        server
    }

    fn client(server: &MockServer) -> RestClient {
        let tokens = TokenSource::new(&server.uri(), Grant::client_credentials("id", "secret"));
        RestClient::new(Arc::new(tokens))
    }

    async fn token_requests(server: &MockServer) -> usize {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/services/oauth2/token")
            .count()
    }

    fn contacts(n: usize) -> Vec<SObject> {
        (0..n)
            .map(|i| {
                SObject::new("Contact")
                    .with_id(format!("0035j00000Pq7R{i}"))
                    .set("SMS_Status__c", "sent")
            })
            .collect()
    }

    #[test]
    fn sobject_serializes_with_attributes_and_without_duplicate_keys() {
        let record = SObject::new("Contact")
            .with_id("0035j00000Pq7RsAAJ")
            .set("Id", "ignored")
            .set("attributes", "ignored")
            .set("SMS_Status__c", "delivered")
            .set("SMS_Opt_Out__c", true)
            .set("Notes__c", Value::Null);
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            serde_json::json!({
                "attributes": {"type": "Contact"},
                "id": "0035j00000Pq7RsAAJ",
                "SMS_Status__c": "delivered",
                "SMS_Opt_Out__c": true,
                "Notes__c": null
            })
        );
    }

    #[test]
    fn limit_info_header_is_parsed() {
        assert_eq!(
            LimitInfo::parse("api-usage=18/5000"),
            Some(LimitInfo {
                api_usage: Some(Usage {
                    used: 18,
                    limit: 5000
                }),
                per_app_api_usage: None
            })
        );
        let both =
            LimitInfo::parse("api-usage=25/5000; per-app-api-usage=17/250(appName=sms-bridge)")
                .unwrap();
        assert_eq!(both.api_usage.unwrap().remaining(), 4975);
        assert_eq!(
            both.per_app_api_usage,
            Some(AppUsage {
                usage: Usage {
                    used: 17,
                    limit: 250
                },
                app_name: "sms-bridge".into()
            })
        );
        assert_eq!(LimitInfo::parse("garbage"), None);
        assert_eq!(LimitInfo::parse("api-usage=x/5000"), None);
    }

    #[test]
    fn error_bodies_parse_as_array_or_bare_object() {
        for name in [
            "error_invalid_session_expired.json",
            "error_invalid_session_rest_api.json",
            "error_request_limit_total_requests.json",
            "error_request_limit_concurrent.json",
            "error_json_parser.json",
        ] {
            let errors = parse_api_errors(&fixture(name)).unwrap();
            assert_eq!(errors.len(), 1, "{name}");
            assert!(!errors[0].error_code.is_empty(), "{name}");
        }
        let bare = parse_api_errors(&fixture("error_bare_object.json")).unwrap();
        assert_eq!(bare[0].error_code, "NOT_FOUND");
        assert_eq!(parse_api_errors(b"<html>"), None);
    }

    #[test]
    fn error_classes_follow_the_kind_of_failure() {
        let class = |status, name| classify(status, &parse_api_errors(&fixture(name)).unwrap());
        assert_eq!(
            class(401, "error_invalid_session_expired.json"),
            ErrorClass::Session
        );
        assert_eq!(
            class(401, "error_invalid_session_rest_api.json"),
            ErrorClass::Final
        );
        assert_eq!(
            class(403, "error_request_limit_total_requests.json"),
            ErrorClass::LongPause
        );
        assert_eq!(
            class(403, "error_request_limit_concurrent.json"),
            ErrorClass::Retryable
        );
        assert_eq!(class(400, "error_json_parser.json"), ErrorClass::Final);
        assert_eq!(class(404, "error_bare_object.json"), ErrorClass::Final);
        assert_eq!(classify(503, &[]), ErrorClass::Retryable);
        assert_eq!(classify(429, &[]), ErrorClass::Retryable);
        assert_eq!(classify(403, &[]), ErrorClass::Final);
    }

    #[test]
    fn collection_fixtures_parse() {
        let mixed: Vec<RecordResult> =
            serde_json::from_slice(&fixture("collections_update_mixed_errors.json")).unwrap();
        assert_eq!(mixed.len(), 4);
        assert_eq!(mixed[2].id, None);
        assert_eq!(mixed[1].errors[0].fields, vec!["SMS_Status__c".to_owned()]);
        assert!(mixed[3].is_retryable());
        assert!(!mixed[1].is_retryable());
        let upsert: Vec<RecordResult> =
            serde_json::from_slice(&fixture("collections_upsert_created.json")).unwrap();
        assert_eq!(upsert[0].created, Some(true));
        assert_eq!(upsert[1].created, Some(false));
        let created: Vec<RecordResult> =
            serde_json::from_slice(&fixture("collections_create_success.json")).unwrap();
        assert!(created[0].success);
    }

    #[test]
    fn api_version_is_validated() {
        let server_uri = "http://127.0.0.1:9";
        let tokens = Arc::new(TokenSource::new(
            server_uri,
            Grant::client_credentials("a", "b"),
        ));
        assert!(RestClient::new(Arc::clone(&tokens))
            .with_api_version("v66.0")
            .is_ok());
        for bad in ["66", "66.x", "../66.0", ""] {
            assert_eq!(
                RestClient::new(Arc::clone(&tokens))
                    .with_api_version(bad)
                    .err(),
                Some(RestError::InvalidApiVersion(bad.to_owned()))
            );
        }
    }

    #[tokio::test]
    async fn a_query_follows_next_records_url_up_to_the_cap() {
        let server = server_with_tokens().await;
        let soql = "SELECT Id, MobilePhone FROM Contact WHERE MobilePhone IN ('090-1234-5678')";
        Mock::given(method("GET"))
            .and(path("/services/data/v67.0/query"))
            .and(wiremock::matchers::query_param("q", soql))
            .respond_with(json(200, "query_contacts_by_phone.json"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/services/data/v67.0/query/01gD0000002HU6KIAW-2"))
            .respond_with(json(200, "query_contacts_by_phone_next.json"))
            .mount(&server)
            .await;
        let records = client(&server).query(soql, 100).await.unwrap();
        let ids: Vec<&str> = records.iter().map(|r| r["Id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "0035j00000Pq7RsAAJ",
                "0035j00000Pq7RtAAJ",
                "0035j00000Pq7RuAAJ"
            ]
        );
        assert_eq!(records[2]["MobilePhone"], "０９０１２３４５６７８");
        // The cap stops before the next page is asked for.
        assert_eq!(client(&server).query(soql, 2).await.unwrap().len(), 2);
        let pages = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().contains("/query"))
            .count();
        assert_eq!(pages, 3);
    }

    #[tokio::test]
    async fn an_unreadable_describe_or_query_answer_is_an_invalid_response() {
        let server = server_with_tokens().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
            .mount(&server)
            .await;
        let client = client(&server);
        assert!(matches!(
            client.describe("Contact").await,
            Err(RestError::InvalidResponse(_))
        ));
        assert!(matches!(
            client.query("SELECT Id FROM Contact", 10).await,
            Err(RestError::InvalidResponse(_))
        ));
    }

    #[test]
    fn soql_literals_escape_what_would_end_or_bend_them() {
        assert_eq!(soql_literal("090-1234-5678"), "'090-1234-5678'");
        assert_eq!(soql_literal(r"O'Brien\"), r"'O\'Brien\\'");
        assert_eq!(soql_literal("a\nb"), "'a\\nb'");
        assert!(soql_name("MobilePhone").is_ok());
        assert!(soql_name("Phone) OR (Id").is_err());
    }

    #[tokio::test]
    async fn describe_reads_an_objects_fields_with_one_get() {
        let server = server_with_tokens().await;
        Mock::given(method("GET"))
            .and(path("/services/data/v67.0/sobjects/Contact/describe"))
            .and(header("authorization", FIRST_TOKEN))
            .respond_with(json(200, "describe_contact.json"))
            .expect(1)
            .mount(&server)
            .await;
        let described = client(&server).describe("Contact").await.unwrap();
        assert_eq!(described.field("SMS_Status_Detail__c").unwrap().length, 100);
        assert!(matches!(
            client(&server).describe("Contact/x").await,
            Err(RestError::InvalidName(_))
        ));
        server.verify().await;
    }

    #[tokio::test]
    async fn update_matches_results_by_position_and_reports_limits() {
        let server = server_with_tokens().await;
        let records = vec![
            SObject::new("Contact")
                .with_id("0035j00000Pq7RsAAJ")
                .set("SMS_Status__c", "delivered"),
            SObject::new("Contact")
                .with_id("0035j00000Pq7RtAAJ")
                .set("SMS_Status__c", "bogus"),
            SObject::new("Contact")
                .with_id("0035j00000Pq7")
                .set("SMS_Status__c", "sent"),
            SObject::new("Contact")
                .with_id("0035j00000Pq7RuAAJ")
                .set("SMS_Status__c", "sent"),
        ];
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .and(header("authorization", FIRST_TOKEN))
            .and(body_json(serde_json::json!({
                "allOrNone": false,
                "records": serde_json::to_value(&records).unwrap()
            })))
            .respond_with(
                json(200, "collections_update_mixed_errors.json").insert_header(
                    "Sforce-Limit-Info",
                    "api-usage=18/5000; per-app-api-usage=17/250(appName=sms-bridge)",
                ),
            )
            .expect(1)
            .mount(&server)
            .await;
        let response = client(&server).update(&records).await.unwrap();
        assert_eq!(response.results.len(), 4);
        assert!(response.results[0].success);
        assert_eq!(
            response.results[1].errors[0].status_code,
            "FIELD_CUSTOM_VALIDATION_EXCEPTION"
        );
        assert_eq!(response.results[2].id, None);
        assert_eq!(response.results[2].errors[0].status_code, "MALFORMED_ID");
        assert!(response.results[3].is_retryable());
        let limits = response.limits.unwrap();
        assert_eq!(
            limits.api_usage,
            Some(Usage {
                used: 18,
                limit: 5000
            })
        );
        assert_eq!(limits.per_app_api_usage.unwrap().app_name, "sms-bridge");
        server.verify().await;
    }

    #[tokio::test]
    async fn create_posts_and_upsert_patches_the_external_id_path() {
        let server = server_with_tokens().await;
        Mock::given(method("POST"))
            .and(path(COLLECTIONS))
            .respond_with(json(200, "collections_create_success.json"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(format!(
                "{COLLECTIONS}/tsg__SMS_Message__c/tsg__Provider_Id__c"
            )))
            .respond_with(json(200, "collections_upsert_created.json"))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server);
        let created = client
            .create(&[SObject::new("tsg__SMS_Message__c").set("tsg__Body__c", "hello")])
            .await
            .unwrap();
        assert!(created.results[0].success);
        let message = |id: &str| {
            SObject::new("tsg__SMS_Message__c")
                .set("tsg__Provider_Id__c", id)
                .set("tsg__Status__c", "delivered")
        };
        let upserted = client
            .upsert(
                "tsg__SMS_Message__c",
                "tsg__Provider_Id__c",
                &[message("SM1"), message("SM2")],
            )
            .await
            .unwrap();
        assert_eq!(upserted.results[0].created, Some(true));
        assert_eq!(upserted.results[1].created, Some(false));
        assert_eq!(token_requests(&server).await, 1);
        server.verify().await;
    }

    #[tokio::test]
    async fn more_than_two_hundred_records_are_refused_without_a_call() {
        let server = server_with_tokens().await;
        let error = client(&server).update(&contacts(201)).await.unwrap_err();
        assert_eq!(
            error,
            RestError::TooManyRecords {
                count: 201,
                limit: 200
            }
        );
        assert_eq!(error.class(), ErrorClass::Final);
        let empty = client(&server).update(&[]).await.unwrap();
        assert!(empty.results.is_empty());
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn more_than_ten_runs_of_one_type_are_refused_without_a_call() {
        let server = server_with_tokens().await;
        // Contact, Lead, Contact, … : every record starts a chunk.
        let interleaved: Vec<SObject> = (0..11)
            .map(|i| SObject::new(["Contact", "Lead"][i % 2]).with_id(format!("003{i:012}")))
            .collect();
        assert_eq!(chunks(&interleaved), 11);
        let error = client(&server).update(&interleaved).await.unwrap_err();
        assert_eq!(
            error,
            RestError::TooManyChunks {
                count: 11,
                limit: 10
            }
        );
        let mut grouped = interleaved.clone();
        grouped.sort_by(|a, b| a.object_type.cmp(&b.object_type));
        assert_eq!(chunks(&grouped), 2);
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn invalid_names_are_refused_before_any_call() {
        let server = server_with_tokens().await;
        let error = client(&server)
            .upsert("Contact/../x", "Ext__c", &contacts(1))
            .await
            .unwrap_err();
        assert_eq!(error, RestError::InvalidName("Contact/../x".into()));
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_expired_session_is_reminted_once_and_the_call_succeeds() {
        let server = server_with_tokens().await;
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .and(header("authorization", FIRST_TOKEN))
            .respond_with(json(401, "error_invalid_session_expired.json"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .and(header("authorization", SECOND_TOKEN))
            .respond_with(json(200, "collections_create_success.json"))
            .expect(1)
            .mount(&server)
            .await;
        let response = client(&server).update(&contacts(1)).await.unwrap();
        assert!(response.results[0].success);
        assert_eq!(token_requests(&server).await, 2);
        server.verify().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_hitting_an_expired_session_share_one_remint() {
        let server = server_with_tokens().await;
        Mock::given(method("PATCH"))
            .and(header("authorization", FIRST_TOKEN))
            .respond_with(
                json(401, "error_invalid_session_expired.json")
                    .set_delay(Duration::from_millis(100)),
            )
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(header("authorization", SECOND_TOKEN))
            .respond_with(json(200, "collections_create_success.json"))
            .mount(&server)
            .await;
        let client = client(&server);
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.update(&contacts(1)).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(token_requests(&server).await, 2);
    }

    #[tokio::test]
    async fn a_session_still_expired_after_one_remint_is_not_retried_again() {
        let server = server_with_tokens().await;
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .respond_with(json(401, "error_invalid_session_expired.json"))
            .expect(2)
            .mount(&server)
            .await;
        let error = client(&server).update(&contacts(1)).await.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Session);
        assert_eq!(token_requests(&server).await, 2);
        server.verify().await;
    }

    #[tokio::test]
    async fn a_session_not_valid_for_rest_is_final_without_a_new_token() {
        let server = server_with_tokens().await;
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .respond_with(json(401, "error_invalid_session_rest_api.json"))
            .expect(1)
            .mount(&server)
            .await;
        let error = client(&server).update(&contacts(1)).await.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Final);
        assert!(error
            .to_string()
            .contains("not valid for use with the REST API"));
        assert_eq!(token_requests(&server).await, 1);
        server.verify().await;
    }

    #[tokio::test]
    async fn request_limit_kinds_are_classified_differently() {
        for (name, expected) in [
            (
                "error_request_limit_total_requests.json",
                ErrorClass::LongPause,
            ),
            ("error_request_limit_concurrent.json", ErrorClass::Retryable),
        ] {
            let server = server_with_tokens().await;
            Mock::given(method("PATCH"))
                .and(path(COLLECTIONS))
                .respond_with(
                    json(403, name).insert_header("Sforce-Limit-Info", "api-usage=5001/5000"),
                )
                .expect(1)
                .mount(&server)
                .await;
            let error = client(&server).update(&contacts(1)).await.unwrap_err();
            assert_eq!(error.class(), expected, "{name}");
            let RestError::Api { status, limits, .. } = &error else {
                panic!("{error:?}");
            };
            assert_eq!(*status, 403);
            assert_eq!(limits.as_ref().unwrap().api_usage.unwrap().remaining(), 0);
            server.verify().await;
        }
    }

    #[tokio::test]
    async fn unavailable_and_rate_limited_are_retryable_and_a_bare_object_error_is_read() {
        for (template, expected) in [
            (ResponseTemplate::new(503), ErrorClass::Retryable),
            (ResponseTemplate::new(429), ErrorClass::Retryable),
            (json(400, "error_bare_object.json"), ErrorClass::Final),
            (
                ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"),
                ErrorClass::Retryable,
            ),
        ] {
            let server = server_with_tokens().await;
            Mock::given(method("PATCH"))
                .respond_with(template)
                .expect(1)
                .mount(&server)
                .await;
            let error = client(&server).update(&contacts(1)).await.unwrap_err();
            assert_eq!(error.class(), expected, "{error:?}");
            if let RestError::Api {
                status: 400,
                errors,
                ..
            } = &error
            {
                assert_eq!(errors[0].error_code, "NOT_FOUND");
            }
            if let RestError::Api {
                status: 502,
                excerpt,
                ..
            } = &error
            {
                assert_eq!(excerpt.as_deref(), Some("<html>Bad gateway</html>"));
            }
        }
    }

    #[tokio::test]
    async fn a_result_count_that_differs_from_the_records_is_an_error() {
        let server = server_with_tokens().await;
        Mock::given(method("PATCH"))
            .respond_with(json(200, "collections_create_success.json"))
            .mount(&server)
            .await;
        assert_eq!(
            client(&server).update(&contacts(2)).await.unwrap_err(),
            RestError::ResultCountMismatch {
                sent: 2,
                received: 1
            }
        );
    }

    #[tokio::test]
    async fn oversized_and_slow_responses_are_bounded() {
        let server = server_with_tokens().await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(200).set_body_string("[".repeat(4096)))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .respond_with(
                json(200, "collections_create_success.json").set_delay(Duration::from_secs(5)),
            )
            .mount(&server)
            .await;
        let client = client(&server)
            .with_max_response_bytes(1024)
            .with_timeout(Duration::from_millis(100));
        assert_eq!(
            client.update(&contacts(1)).await.unwrap_err(),
            RestError::ResponseTooLarge { limit: 1024 }
        );
        let slow = client.update(&contacts(1)).await.unwrap_err();
        assert!(matches!(slow, RestError::Network { .. }), "{slow:?}");
        assert_eq!(slow.class(), ErrorClass::Retryable);
    }

    #[tokio::test]
    async fn a_permanent_token_failure_is_final_and_sends_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(json(400, "token_error_invalid_client.json"))
            .mount(&server)
            .await;
        let error = client(&server).update(&contacts(1)).await.unwrap_err();
        assert!(matches!(error, RestError::Token(_)), "{error:?}");
        assert_eq!(error.class(), ErrorClass::Final);
        let requests = server.received_requests().await.unwrap();
        assert!(requests
            .iter()
            .all(|r| r.url.path() == "/services/oauth2/token"));
    }
}

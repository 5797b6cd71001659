//! REST client for `https://{domain}/k/v1/` (or a guest space's `/k/guest/{space}/v1/`): read a
//! record, write up to 100 records with revisions, comment, and bulk requests.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::error::{classify, ErrorClass, KintoneError};
use crate::field::{number_text, Record};
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
    #[error("kintone answered HTTP {status}: {}", summary(error.as_ref(), excerpt.as_deref()))]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body, when readable.
        error: Option<KintoneError>,
        /// For bulkRequest: the index of the failing request.
        bulk_index: Option<usize>,
        /// The start of an unreadable body.
        excerpt: Option<String>,
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
            Self::Api { status, error, .. } => classify(*status, error.as_ref()),
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
            Self::Api { error, .. } => error.as_ref(),
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

/// kintone REST client for one domain (and optionally one guest space).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    origin: String,
    guest_space: Option<u64>,
    auth: Auth,
    timeout: Duration,
    max_response_bytes: usize,
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
        if !matches!(url.scheme(), "https" | "http") || url.path() != "/" || url.query().is_some()
        {
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
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Sends every call to guest space `space` (`/k/guest/{space}/v1/`).
    pub fn with_guest_space(mut self, space: u64) -> Self {
        self.guest_space = Some(space);
        self
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

    /// `PUT records.json`: up to 100 records, each with its optional revision; more are refused
    /// without a call. kintone sends no webhook for this multi-record API (normally).
    pub async fn update_records(
        &self,
        app: u64,
        updates: &[RecordUpdate],
    ) -> Result<Vec<UpdatedRecord>, ClientError> {
        check_update_count(updates)?;
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let payload = json!({ "app": app, "records": updates });
        tracing::debug!(app, records = updates.len(), "kintone PUT records.json");
        let body = self
            .call(Method::PUT, "records.json", &[], Some(&payload))
            .await?;
        let reply: Value = decode(&body)?;
        parse_updated(&reply)
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
        let payload = json!({ "requests": requests });
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
        let mut request = self
            .http
            .request(method, url)
            .timeout(self.timeout)
            .header(auth_name, auth_value)
            .header(ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        // kintone refuses a JSON content type on a bodiless GET, so only bodies get one.
        if let Some(payload) = payload {
            let bytes = serde_json::to_vec(payload).map_err(|e| ClientError::Encode(e.to_string()))?;
            request = request.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let response = request.send().await.map_err(|e| ClientError::Network {
            message: describe(e),
        })?;
        let status = response.status();
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
        let excerpt = (parsed.is_none() && !body.is_empty())
            .then(|| String::from_utf8_lossy(&body).chars().take(EXCERPT_CHARS).collect());
        let (error, bulk_index) = match parsed {
            Some((error, index)) => (Some(error), index),
            None => (None, None),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            error,
            bulk_index,
            excerpt,
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

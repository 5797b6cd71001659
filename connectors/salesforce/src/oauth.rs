//! Server-to-server OAuth against `{login_url}/services/oauth2/token`, and a shared token cache.
//!
//! Salesforce never says when a token expires (no `expires_in`; the session times out after
//! inactivity), so a token is kept until a request fails with it and [`TokenSource::invalidate`]
//! drops it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::http::{describe, read_capped, BodyError};
use crate::secret::Secret;

/// Default time allowed for one token request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest token response read; real ones are under 2 KiB.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Salesforce refuses assertions whose `exp` is more than 3 minutes ahead; stay well inside.
const JWT_LIFETIME_SECS: i64 = 150;

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Where the refresh token in force is kept, so a restart, or another instance sharing the
/// grant, signs in with the one Salesforce last issued: with rotation on, each refresh revokes
/// the token it used.
#[async_trait::async_trait]
pub trait RefreshTokenKeeper: Send + Sync + 'static {
    /// Keep `token`, just issued; called before the access token it came with is handed out.
    async fn keep(&self, token: &Secret);
    /// The token kept last, if any.
    async fn kept(&self) -> Option<Secret>;
}

/// An RSA private key for signing JWT bearer assertions (RS256).
#[derive(Clone)]
pub struct SigningKey(EncodingKey);

impl SigningKey {
    /// Reads a PEM RSA private key (PKCS#1 or PKCS#8).
    pub fn from_rsa_pem(pem: &[u8]) -> Result<Self, TokenError> {
        EncodingKey::from_rsa_pem(pem)
            .map(Self)
            .map_err(|e| TokenError::InvalidKey(e.to_string()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// How tokens are obtained.
#[derive(Debug, Clone)]
pub enum Grant {
    /// `client_credentials`, with the id and secret in the body; needs the My Domain host.
    ClientCredentials {
        /// Connected app consumer key.
        client_id: String,
        /// Connected app consumer secret.
        client_secret: Secret,
    },
    /// JWT bearer: an RS256 assertion for `username`, signed with the app's certificate key.
    JwtBearer {
        /// Connected app consumer key (`iss`).
        client_id: String,
        /// Integration user (`sub`).
        username: String,
        /// Key matching the certificate uploaded to the connected app.
        key: SigningKey,
        /// `aud` claim; `jwt_audience` of the login URL when `None`.
        audience: Option<String>,
    },
    /// `refresh_token`; a rotated refresh token in a response replaces this one.
    RefreshToken {
        /// Connected app consumer key.
        client_id: String,
        /// Consumer secret, when the app requires it for refresh.
        client_secret: Option<Secret>,
        /// The current refresh token.
        refresh_token: Secret,
    },
}

impl Grant {
    /// A client-credentials grant.
    pub fn client_credentials(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self::ClientCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// A JWT bearer grant signed with a PEM RSA private key; `aud` is `jwt_audience` of the
    /// login URL unless `with_audience` names one.
    pub fn jwt_bearer(
        client_id: impl Into<String>,
        username: impl Into<String>,
        private_key_pem: &[u8],
    ) -> Result<Self, TokenError> {
        Ok(Self::JwtBearer {
            client_id: client_id.into(),
            username: username.into(),
            key: SigningKey::from_rsa_pem(private_key_pem)?,
            audience: None,
        })
    }

    /// The same grant with `aud` = `audience` (a JWT bearer grant; others have no audience).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        if let Self::JwtBearer { audience: aud, .. } = &mut self {
            *aud = Some(audience.into());
        }
        self
    }

    /// A refresh-token grant.
    pub fn refresh_token(
        client_id: impl Into<String>,
        client_secret: Option<Secret>,
        refresh_token: impl Into<Secret>,
    ) -> Self {
        Self::RefreshToken {
            client_id: client_id.into(),
            client_secret,
            refresh_token: refresh_token.into(),
        }
    }
}

/// The login host of production orgs and Developer Editions: a JWT's `aud` for them.
pub const PRODUCTION_LOGIN: &str = "https://login.salesforce.com";
/// The login host of sandboxes: a JWT's `aud` for them.
pub const SANDBOX_LOGIN: &str = "https://test.salesforce.com";

/// The `aud` a JWT bearer assertion must carry for an org signed in at `login_url`: the generic
/// login host of its kind, never a My Domain URL (Salesforce answers "audience is invalid").
/// A sandbox is `test.salesforce.com` or a `*.sandbox.my.salesforce.com` My Domain.
pub fn jwt_audience(login_url: &str) -> &'static str {
    match host_of(login_url) {
        Some(host)
            if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") =>
        {
            SANDBOX_LOGIN
        }
        _ => PRODUCTION_LOGIN,
    }
}

/// Whether `login_url` is a generic login host (`login.salesforce.com`, `test.salesforce.com`)
/// rather than the org's My Domain: the client credentials flow works only on the latter.
pub fn is_generic_login(login_url: &str) -> bool {
    host_of(login_url).is_some_and(|h| h == "login.salesforce.com" || h == "test.salesforce.com")
}

fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

/// A minted access token and where to use it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessToken {
    /// The bearer token.
    pub access_token: Secret,
    /// Base URL of the org's REST API host, without a trailing slash.
    pub instance_url: String,
    /// Identity URL (`…/id/{org}/{user}`).
    pub id: Option<String>,
    /// `Bearer` when announced.
    pub token_type: Option<String>,
    /// Granted scopes, space separated.
    pub scope: Option<String>,
    /// When Salesforce issued the token, when announced.
    pub issued_at: Option<DateTime<Utc>>,
    /// `opaque` for client credentials, when announced.
    pub token_format: Option<String>,
}

/// OAuth error codes Salesforce returns from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// Bad assertion, user not approved, wrong host for the flow, revoked refresh token.
    InvalidGrant,
    /// Wrong client secret.
    InvalidClient,
    /// Unknown consumer key.
    InvalidClientId,
    /// Malformed request.
    InvalidRequest,
    /// The grant type is not enabled for the app.
    UnsupportedGrantType,
    /// The app may not use this flow.
    UnauthorizedClient,
    /// A scope the app does not have.
    InvalidScope,
    /// The user is frozen or inactive.
    InactiveUser,
    /// The org is locked or inactive.
    InactiveOrg,
    /// Too many token requests.
    RateLimitExceeded,
    /// Anything else, as sent.
    Other(String),
}

impl OAuthErrorCode {
    fn parse(code: &str) -> Self {
        match code {
            "invalid_grant" => Self::InvalidGrant,
            "invalid_client" => Self::InvalidClient,
            "invalid_client_id" => Self::InvalidClientId,
            "invalid_request" => Self::InvalidRequest,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "unauthorized_client" => Self::UnauthorizedClient,
            "invalid_scope" => Self::InvalidScope,
            "inactive_user" => Self::InactiveUser,
            "inactive_org" => Self::InactiveOrg,
            "rate_limit_exceeded" => Self::RateLimitExceeded,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidClient => "invalid_client",
            Self::InvalidClientId => "invalid_client_id",
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::InvalidScope => "invalid_scope",
            Self::InactiveUser => "inactive_user",
            Self::InactiveOrg => "inactive_org",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused with an OAuth error.
    #[error("token request refused (HTTP {status}): {code}: {description}")]
    OAuth {
        /// HTTP status.
        status: u16,
        /// The `error` field.
        code: OAuthErrorCode,
        /// The `error_description` field.
        description: String,
    },
    /// A failure status without an OAuth error body.
    #[error("token endpoint answered HTTP {status}")]
    Http {
        /// HTTP status.
        status: u16,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("token request failed: {message}")]
    Network {
        /// What went wrong.
        message: String,
    },
    /// A success status with a body that is not a token response.
    #[error("unreadable token response: {0}")]
    InvalidResponse(String),
    /// The JWT assertion could not be signed.
    #[error("cannot sign the JWT assertion: {0}")]
    Jwt(String),
    /// The private key is not a usable RSA PEM key.
    #[error("invalid RSA private key: {0}")]
    InvalidKey(String),
}

impl TokenError {
    /// Whether trying again later may succeed (network trouble, 5xx, rate limiting); otherwise
    /// the configuration must change first.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Http { status } => *status >= 500 || *status == 429,
            Self::OAuth { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(code, OAuthErrorCode::RateLimitExceeded)
                    || matches!(code, OAuthErrorCode::Other(c)
                        if c == "server_error" || c == "temporarily_unavailable")
            }
            Self::InvalidResponse(_) | Self::Jwt(_) | Self::InvalidKey(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    instance_url: String,
    id: Option<String>,
    token_type: Option<String>,
    scope: Option<String>,
    issued_at: Option<String>,
    token_format: Option<String>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// Parses a successful token response; the second value is a new refresh token, if sent.
pub fn parse_token_response(body: &[u8]) -> Result<(AccessToken, Option<Secret>), TokenError> {
    let raw: RawToken =
        serde_json::from_slice(body).map_err(|e| TokenError::InvalidResponse(e.to_string()))?;
    if raw.access_token.is_empty() || raw.instance_url.is_empty() {
        return Err(TokenError::InvalidResponse(
            "empty access_token or instance_url".to_owned(),
        ));
    }
    let issued_at = raw
        .issued_at
        .as_deref()
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis);
    let token = AccessToken {
        access_token: Secret::new(raw.access_token),
        instance_url: raw.instance_url.trim_end_matches('/').to_owned(),
        id: raw.id,
        token_type: raw.token_type,
        scope: raw.scope,
        issued_at,
        token_format: raw.token_format,
    };
    Ok((token, raw.refresh_token.map(Secret::new)))
}

/// Turns a failed token response into a typed error.
pub fn parse_token_error(status: u16, body: &[u8]) -> TokenError {
    match serde_json::from_slice::<RawError>(body) {
        Ok(raw) => TokenError::OAuth {
            status,
            code: OAuthErrorCode::parse(&raw.error),
            description: raw.error_description,
        },
        Err(_) => TokenError::Http { status },
    }
}

struct State {
    grant: Grant,
    current: Option<Arc<AccessToken>>,
    /// The last failed mint and its number in `finished_mints`, handed to callers that waited on it.
    last_failure: Option<(u64, TokenError)>,
}

/// One cached token shared by concurrent callers; minting is single-flight.
pub struct TokenSource {
    http: reqwest::Client,
    login_url: String,
    timeout: Duration,
    /// Mints finished so far; a caller that waited through a failed one gets its error.
    finished_mints: AtomicU64,
    keeper: Option<Arc<dyn RefreshTokenKeeper>>,
    state: Mutex<State>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("login_url", &self.login_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `login_url` (`https://login.salesforce.com`, `https://test.salesforce.com`
    /// or the My Domain URL).
    pub fn new(login_url: &str, grant: Grant) -> Self {
        Self::with_client(reqwest::Client::new(), login_url, grant)
    }

    /// Like [`TokenSource::new`], sharing an existing HTTP client.
    pub fn with_client(http: reqwest::Client, login_url: &str, grant: Grant) -> Self {
        Self {
            http,
            login_url: login_url.trim_end_matches('/').to_owned(),
            timeout: DEFAULT_TIMEOUT,
            finished_mints: AtomicU64::new(0),
            keeper: None,
            state: Mutex::new(State {
                grant,
                current: None,
                last_failure: None,
            }),
        }
    }

    /// Sets the time allowed for one token request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps every rotated refresh token with `keeper`, and signs in with its token when
    /// Salesforce refuses the one in force as revoked (another instance rotated it).
    pub fn with_keeper(mut self, keeper: Arc<dyn RefreshTokenKeeper>) -> Self {
        self.keeper = Some(keeper);
        self
    }

    /// The cached token, or a new one. Concurrent callers share one token request, and share
    /// its failure too.
    pub async fn token(&self) -> Result<Arc<AccessToken>, TokenError> {
        let seen = self.finished_mints.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(token) = &state.current {
            return Ok(Arc::clone(token));
        }
        if let Some((finished, error)) = &state.last_failure {
            if *finished > seen {
                return Err(error.clone());
            }
        }
        let result = self.mint(&mut state.grant).await;
        let finished = self.finished_mints.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(token) => {
                let token = Arc::new(token);
                state.current = Some(Arc::clone(&token));
                state.last_failure = None;
                Ok(token)
            }
            Err(error) => {
                tracing::warn!(%error, transient = error.is_transient(), "Salesforce token request failed");
                state.last_failure = Some((finished, error.clone()));
                Err(error)
            }
        }
    }

    /// Drops the cached token if it is still `failed`, so the next [`TokenSource::token`] mints
    /// anew; a token minted since by another caller is kept.
    pub async fn invalidate(&self, failed: &AccessToken) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|current| current.access_token == failed.access_token)
        {
            state.current = None;
        }
    }

    /// The refresh token in force (rotated ones included), to persist it; `None` for other grants.
    pub async fn refresh_token(&self) -> Option<Secret> {
        match &self.state.lock().await.grant {
            Grant::RefreshToken { refresh_token, .. } => Some(refresh_token.clone()),
            _ => None,
        }
    }

    async fn mint(&self, grant: &mut Grant) -> Result<AccessToken, TokenError> {
        let error = match self.request(grant).await {
            Ok(token) => return Ok(token),
            Err(error) => error,
        };
        let revoked = matches!(
            &error,
            TokenError::OAuth {
                code: OAuthErrorCode::InvalidGrant,
                ..
            }
        );
        let (Grant::RefreshToken { refresh_token, .. }, Some(keeper), true) =
            (&mut *grant, &self.keeper, revoked)
        else {
            return Err(error);
        };
        match keeper.kept().await {
            Some(kept) if kept != *refresh_token => {
                tracing::info!("signing in with the refresh token kept since this one was issued");
                *refresh_token = kept;
                self.request(grant).await
            }
            _ => Err(error),
        }
    }

    async fn request(&self, grant: &mut Grant) -> Result<AccessToken, TokenError> {
        let form = self.form(grant)?;
        let response = self
            .http
            .post(format!("{}/services/oauth2/token", self.login_url))
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Network {
                message: describe(e),
            })?;
        let status = response.status();
        let body = read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::Network(e) => TokenError::Network {
                    message: describe(e),
                },
                BodyError::TooLarge { limit } => {
                    TokenError::InvalidResponse(format!("body over {limit} bytes"))
                }
            })?;
        if !status.is_success() {
            return Err(parse_token_error(status.as_u16(), &body));
        }
        let (token, rotated) = parse_token_response(&body)?;
        if let (Grant::RefreshToken { refresh_token, .. }, Some(rotated)) = (grant, rotated) {
            if rotated != *refresh_token {
                tracing::info!("Salesforce rotated the refresh token");
                if let Some(keeper) = &self.keeper {
                    keeper.keep(&rotated).await;
                }
                *refresh_token = rotated;
            }
        }
        tracing::debug!(instance_url = %token.instance_url, "minted a Salesforce access token");
        Ok(token)
    }

    fn form(&self, grant: &Grant) -> Result<Vec<(&'static str, String)>, TokenError> {
        Ok(match grant {
            Grant::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().to_owned()),
            ],
            Grant::JwtBearer {
                client_id,
                username,
                key,
                audience,
            } => {
                let claims = Claims {
                    iss: client_id,
                    sub: username,
                    aud: audience
                        .as_deref()
                        .unwrap_or_else(|| jwt_audience(&self.login_url)),
                    exp: Utc::now().timestamp() + JWT_LIFETIME_SECS,
                };
                let assertion =
                    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.0)
                        .map_err(|e| TokenError::Jwt(e.to_string()))?;
                vec![
                    ("grant_type", JWT_BEARER_GRANT.to_owned()),
                    ("assertion", assertion),
                ]
            }
            Grant::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("client_id", client_id.clone()),
                    ("refresh_token", refresh_token.expose().to_owned()),
                ];
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.expose().to_owned()));
                }
                form
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use jsonwebtoken::{DecodingKey, Validation};
    use wiremock::matchers::{body_string_contains, header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use super::*;
    use crate::test_support::{fixture, fixture_str};

    fn json(name: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(fixture(name), "application/json")
    }

    fn form_of(request: &Request) -> HashMap<String, String> {
        serde_urlencoded::from_bytes(&request.body).unwrap()
    }

    #[test]
    fn every_token_fixture_parses() {
        let (cc, refresh) =
            parse_token_response(&fixture("token_client_credentials.json")).unwrap();
        assert_eq!(cc.token_format.as_deref(), Some("opaque"));
        assert_eq!(cc.instance_url, "https://acme.my.salesforce.com");
        assert_eq!(
            cc.issued_at.map(|t| t.timestamp_millis()),
            Some(1_765_432_109_876)
        );
        assert!(refresh.is_none());

        let (jwt, refresh) = parse_token_response(&fixture("token_jwt_bearer.json")).unwrap();
        assert_eq!(jwt.issued_at, None);
        assert_eq!(jwt.token_type.as_deref(), Some("Bearer"));
        assert!(refresh.is_none());

        let (rotated, refresh) =
            parse_token_response(&fixture("token_refresh_rotated.json")).unwrap();
        assert_eq!(rotated.token_type, None);
        assert_eq!(
            refresh.map(|r| r.expose().to_owned()).as_deref(),
            Some("5Aep861RotatedRefreshTokenForTestsOnly")
        );

        assert_eq!(
            parse_token_error(400, &fixture("token_error_invalid_grant.json")),
            TokenError::OAuth {
                status: 400,
                code: OAuthErrorCode::InvalidGrant,
                description: "user hasn't approved this consumer".into()
            }
        );
        assert_eq!(
            parse_token_error(400, &fixture("token_error_invalid_client.json")),
            TokenError::OAuth {
                status: 400,
                code: OAuthErrorCode::InvalidClient,
                description: "invalid client credentials".into()
            }
        );
    }

    #[test]
    fn tokens_and_grants_do_not_show_secrets_in_debug() {
        let (token, _) = parse_token_response(&fixture("token_client_credentials.json")).unwrap();
        let grant = Grant::client_credentials("3MVG9", "very-secret");
        let jwt = Grant::jwt_bearer(
            "3MVG9",
            "sms@acme.example",
            &fixture("jwt_test_only_private_key.pem"),
        )
        .unwrap();
        for text in [
            format!("{token:?}"),
            format!("{grant:?}"),
            format!("{jwt:?}"),
        ] {
            assert!(!text.contains("!AQ4AQ"), "{text}");
            assert!(!text.contains("very-secret"), "{text}");
            assert!(!text.contains("PRIVATE"), "{text}");
        }
    }

    #[test]
    fn errors_are_classified_transient_or_permanent() {
        assert!(!parse_token_error(400, &fixture("token_error_invalid_grant.json")).is_transient());
        assert!(
            !parse_token_error(400, &fixture("token_error_invalid_client.json")).is_transient()
        );
        assert!(parse_token_error(503, b"<html>down</html>").is_transient());
        assert!(parse_token_error(500, br#"{"error":"server_error"}"#).is_transient());
        assert!(parse_token_error(400, br#"{"error":"rate_limit_exceeded"}"#).is_transient());
        assert!(!TokenError::Http { status: 404 }.is_transient());
        assert!(TokenError::Network {
            message: "timed out".into()
        }
        .is_transient());
    }

    #[test]
    fn a_key_that_is_not_rsa_pem_is_refused() {
        assert!(matches!(
            Grant::jwt_bearer("id", "user", b"not a key"),
            Err(TokenError::InvalidKey(_))
        ));
    }

    #[tokio::test]
    async fn client_credentials_posts_id_and_secret_in_the_form() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string_contains("grant_type=client_credentials"))
            .respond_with(json("token_client_credentials.json"))
            .expect(1)
            .mount(&server)
            .await;
        let source = TokenSource::new(&server.uri(), Grant::client_credentials("3MVG9", "s3cr&t"));
        let token = source.token().await.unwrap();
        assert!(token.access_token.expose().contains("ClientCredentials"));
        let requests = server.received_requests().await.unwrap();
        let form = form_of(&requests[0]);
        assert_eq!(form["client_id"], "3MVG9");
        assert_eq!(form["client_secret"], "s3cr&t");
    }

    /// The claims of the JWT assertion `grant` sends to a token endpoint at `login_url` (the
    /// mock server, with `suffix`), checked for the signature, `issuer` and `audience`.
    async fn sent_claims(
        grant: Grant,
        suffix: &str,
        audience: &str,
    ) -> (HashMap<String, serde_json::Value>, Arc<AccessToken>) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(json("token_jwt_bearer.json"))
            .mount(&server)
            .await;
        let source = TokenSource::new(&format!("{}{suffix}", server.uri()), grant);
        let token = source.token().await.unwrap();
        let requests = server.received_requests().await.unwrap();
        let form = form_of(&requests[0]);
        assert_eq!(form["grant_type"], JWT_BEARER_GRANT);
        let key = DecodingKey::from_rsa_pem(fixture_str("jwt_test_only_public_key.pem").as_bytes())
            .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["3MVG9consumer"]);
        let claims = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(
            &form["assertion"],
            &key,
            &validation,
        )
        .unwrap()
        .claims;
        (claims, token)
    }

    fn jwt_grant() -> Grant {
        Grant::jwt_bearer(
            "3MVG9consumer",
            "sms@acme.example",
            &fixture("jwt_test_only_private_key.pem"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn jwt_bearer_sends_a_signed_assertion_with_the_expected_claims() {
        // The generic login host, though the token URL is the org's own (a My Domain here).
        let (claims, token) = sent_claims(jwt_grant(), "/", PRODUCTION_LOGIN).await;
        assert_eq!(token.issued_at, None);
        assert_eq!(claims["sub"], "sms@acme.example");
        let exp = claims["exp"].as_i64().unwrap();
        let now = Utc::now().timestamp();
        assert!(exp > now && exp <= now + 180, "exp {exp} now {now}");
    }

    #[test]
    fn the_jwt_audience_is_the_generic_login_host_of_the_orgs_kind() {
        for (login_url, audience) in [
            ("https://login.salesforce.com", PRODUCTION_LOGIN),
            ("https://acme.my.salesforce.com", PRODUCTION_LOGIN),
            ("https://acme.develop.my.salesforce.com/", PRODUCTION_LOGIN),
            ("https://test.salesforce.com", SANDBOX_LOGIN),
            ("https://ACME--uat.sandbox.my.salesforce.com", SANDBOX_LOGIN),
            ("http://127.0.0.1:9", PRODUCTION_LOGIN),
        ] {
            assert_eq!(jwt_audience(login_url), audience, "{login_url}");
        }
        assert!(is_generic_login("https://login.salesforce.com/"));
        assert!(is_generic_login("https://TEST.salesforce.com"));
        assert!(!is_generic_login("https://acme.my.salesforce.com"));
    }

    #[tokio::test]
    async fn an_audience_named_for_the_grant_is_the_jwts_aud() {
        let grant = jwt_grant().with_audience(SANDBOX_LOGIN);
        let (claims, _) = sent_claims(grant, "", SANDBOX_LOGIN).await;
        assert_eq!(claims["aud"], SANDBOX_LOGIN);
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_replaces_the_old_one() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("refresh_token=5Aep861Original"))
            .respond_with(json("token_refresh_rotated.json"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_string_contains(
                "refresh_token=5Aep861RotatedRefreshTokenForTestsOnly",
            ))
            .respond_with(json("token_jwt_bearer.json"))
            .expect(1)
            .mount(&server)
            .await;
        let source = TokenSource::new(
            &server.uri(),
            Grant::refresh_token("3MVG9", None, "5Aep861Original"),
        );
        let first = source.token().await.unwrap();
        assert_eq!(
            source.refresh_token().await.unwrap().expose(),
            "5Aep861RotatedRefreshTokenForTestsOnly"
        );
        source.invalidate(&first).await;
        let second = source.token().await.unwrap();
        assert_ne!(first.access_token, second.access_token);
    }

    /// Keeps tokens in memory, as the service keeps them in its store.
    #[derive(Default)]
    struct Kept(std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl RefreshTokenKeeper for Kept {
        async fn keep(&self, token: &Secret) {
            self.0.lock().unwrap().push(token.expose().to_owned());
        }
        async fn kept(&self) -> Option<Secret> {
            self.0
                .lock()
                .unwrap()
                .last()
                .map(|t| Secret::new(t.as_str()))
        }
    }

    /// Salesforce's answer to a refresh token it revoked.
    fn revoked() -> ResponseTemplate {
        ResponseTemplate::new(400).set_body_raw(
            fixture("token_error_refresh_token_revoked.json"),
            "application/json",
        )
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_is_kept_before_its_access_token_is_used() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(json("token_refresh_rotated.json"))
            .mount(&server)
            .await;
        let kept = Arc::new(Kept::default());
        let source = TokenSource::new(
            &server.uri(),
            Grant::refresh_token("3MVG9", None, "5Aep861Original"),
        )
        .with_keeper(kept.clone());
        let first = source.token().await.unwrap();
        assert_eq!(
            *kept.0.lock().unwrap(),
            ["5Aep861RotatedRefreshTokenForTestsOnly"]
        );
        // The same token again is no rotation: nothing more to keep.
        source.invalidate(&first).await;
        source.token().await.unwrap();
        assert_eq!(kept.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refresh_token_revoked_by_another_instances_rotation_gives_way_to_the_kept_one() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("refresh_token=5Aep861Original"))
            .respond_with(revoked())
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_string_contains("refresh_token=5Aep861ByTheOtherOne"))
            .respond_with(json("token_client_credentials.json"))
            .expect(1)
            .mount(&server)
            .await;
        let kept = Arc::new(Kept::default());
        kept.keep(&Secret::new("5Aep861ByTheOtherOne")).await;
        let source = TokenSource::new(
            &server.uri(),
            Grant::refresh_token("3MVG9", None, "5Aep861Original"),
        )
        .with_keeper(kept);
        source.token().await.unwrap();
        assert_eq!(
            source.refresh_token().await.unwrap().expose(),
            "5Aep861ByTheOtherOne"
        );
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_with_nothing_newer_kept_fails_as_refused() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(revoked())
            .expect(1)
            .mount(&server)
            .await;
        let kept = Arc::new(Kept::default());
        kept.keep(&Secret::new("5Aep861Original")).await;
        let source = TokenSource::new(
            &server.uri(),
            Grant::refresh_token("3MVG9", None, "5Aep861Original"),
        )
        .with_keeper(kept);
        let error = source.token().await.unwrap_err();
        assert!(matches!(
            error,
            TokenError::OAuth {
                code: OAuthErrorCode::InvalidGrant,
                ..
            }
        ));
        assert!(!error.is_transient());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_concurrent_callers_cause_one_token_request() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                json("token_client_credentials.json").set_delay(Duration::from_millis(200)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let source = Arc::new(TokenSource::new(
            &server.uri(),
            Grant::client_credentials("id", "secret"),
        ));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let source = Arc::clone(&source);
                tokio::spawn(async move { source.token().await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        server.verify().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_failure() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(200)))
            .expect(1)
            .mount(&server)
            .await;
        let source = Arc::new(TokenSource::new(
            &server.uri(),
            Grant::client_credentials("id", "secret"),
        ));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let source = Arc::clone(&source);
                tokio::spawn(async move { source.token().await })
            })
            .collect();
        for task in tasks {
            let error = task.await.unwrap().unwrap_err();
            assert_eq!(error, TokenError::Http { status: 503 });
            assert!(error.is_transient());
        }
        server.verify().await;
    }

    #[tokio::test]
    async fn invalidating_a_stale_token_keeps_the_fresh_one() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(json("token_client_credentials.json"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(json("token_jwt_bearer.json"))
            .expect(1)
            .mount(&server)
            .await;
        let source = TokenSource::new(&server.uri(), Grant::client_credentials("id", "secret"));
        let stale = source.token().await.unwrap();
        source.invalidate(&stale).await;
        let fresh = source.token().await.unwrap();
        assert!(!Arc::ptr_eq(&stale, &fresh));
        source.invalidate(&stale).await;
        assert!(Arc::ptr_eq(&fresh, &source.token().await.unwrap()));
        server.verify().await;
    }

    #[tokio::test]
    async fn invalid_grant_is_a_permanent_typed_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_raw(
                fixture("token_error_invalid_grant.json"),
                "application/json",
            ))
            .mount(&server)
            .await;
        let source = TokenSource::new(&server.uri(), Grant::client_credentials("id", "secret"));
        let error = source.token().await.unwrap_err();
        assert!(matches!(
            &error,
            TokenError::OAuth {
                code: OAuthErrorCode::InvalidGrant,
                ..
            }
        ));
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn a_slow_or_unreachable_endpoint_is_a_transient_network_error() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(json("token_client_credentials.json").set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let source = TokenSource::new(&server.uri(), Grant::client_credentials("id", "secret"))
            .with_timeout(Duration::from_millis(100));
        let error = source.token().await.unwrap_err();
        assert!(matches!(error, TokenError::Network { .. }), "{error:?}");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn an_oversized_token_response_is_refused() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(100 * 1024)))
            .mount(&server)
            .await;
        let source = TokenSource::new(&server.uri(), Grant::client_credentials("id", "secret"));
        assert!(matches!(
            source.token().await,
            Err(TokenError::InvalidResponse(_))
        ));
    }
}

//! API keys (only their hashes), the server secret and the CRM refresh tokens it seals.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Credentials the server keeps. Every method commits before it returns.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The server secret, made and kept on first use when the config gives none.
    async fn secret(&self) -> StoreResult<String>;
    /// Keep a new API key's hash; a hash already kept is a conflict.
    async fn create_api_key(&self, name: &str, key_hash: &str) -> StoreResult<()>;
    /// Whether a key with this hash exists.
    async fn api_key_exists(&self, key_hash: &str) -> StoreResult<bool>;
    /// How many keys are stored.
    async fn count_api_keys(&self) -> StoreResult<i64>;
    /// Keep `token` as the refresh token `connection` signs in with, replacing the one kept.
    async fn keep_refresh_token(
        &self,
        connection: &str,
        token: &KeptRefreshToken,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The refresh token kept for `connection`.
    async fn kept_refresh_token(&self, connection: &str) -> StoreResult<Option<KeptRefreshToken>>;
}

/// A refresh token Salesforce issued in place of the configured one, sealed by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRefreshToken {
    /// Fingerprint of the configured token it replaced: a new one in the config wins.
    pub config_fingerprint: String,
    /// The token, sealed with a key from the server secret.
    pub sealed: String,
}

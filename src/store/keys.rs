//! API keys (only their hashes) and the server secret.

use async_trait::async_trait;

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
}

//! Bearer API keys: only SHA-256 hashes are kept, in memory and in the store.

use std::{collections::HashSet, sync::RwLock};

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};

use super::{problem::ApiError, AppState};
use crate::store::Store;

/// Which key space a request belongs to (idempotency keys are per API key).
#[derive(Clone, Debug)]
pub struct KeyScope(pub String);

/// Hashes of the keys known to be valid.
#[derive(Default)]
pub struct KeyRing {
    known: RwLock<HashSet<String>>,
}

impl KeyRing {
    /// A ring holding the configured keys.
    pub fn new<'a>(configured: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            known: RwLock::new(configured.into_iter().map(hash_key).collect()),
        }
    }

    /// The key's scope if it is valid; keys made with `tsunagi keys create` are found in the store.
    pub async fn check(&self, key: &str, store: &dyn Store) -> Result<KeyScope, ApiError> {
        let hash = hash_key(key);
        let scope = KeyScope(hash[..16].to_string());
        if self.known.read().expect("not poisoned").contains(&hash) {
            return Ok(scope);
        }
        if store.api_key_exists(&hash).await? {
            self.known.write().expect("not poisoned").insert(hash);
            return Ok(scope);
        }
        Err(ApiError::unauthorized())
    }
}

/// Hex SHA-256 of a key; keys are long random strings, so no slow hash is needed.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random API key.
pub fn generate_key() -> String {
    format!("tsk_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// Refuse requests without a valid `Authorization: Bearer` key.
pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let scope = state.keys.check(key, state.store.as_ref()).await?;
    request.extensions_mut().insert(scope);
    Ok(next.run(request).await)
}

//! Salesforce refresh tokens kept in the store, sealed: with rotation on, Salesforce revokes a
//! refresh token once it issues the next, so the config's token is good for one sign-in only.

use std::sync::Arc;

use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::{aead, hmac};
use tsunagi_salesforce::{RefreshTokenKeeper, Secret};

use crate::{
    clock::Clock,
    store::{KeptRefreshToken, Store},
};

/// Marks the sealing scheme, so a later one can tell its own apart.
const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;

/// Keeps one connection's rotated refresh tokens in the store, sealed with AES-256-GCM under a key
/// derived from the server secret and bound to the connection's name.
pub struct StoredRefreshTokens {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    connection: String,
    key: aead::LessSafeKey,
    config_fingerprint: String,
}

impl StoredRefreshTokens {
    /// The keeper of `connection`, whose config gives `configured`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        connection: &str,
        server_secret: &str,
        configured: &str,
    ) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, server_secret.as_bytes());
        let derive = |purpose: &str| hmac::sign(&root, purpose.as_bytes());
        let seal = derive("tsunagi salesforce refresh token seal v1");
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, seal.as_ref())
            .expect("an HMAC-SHA256 output is an AES-256 key");
        let fingerprint_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive("tsunagi salesforce refresh token fingerprint v1").as_ref(),
        );
        let config_fingerprint = hex::encode(hmac::sign(&fingerprint_key, configured.as_bytes()));
        Self {
            store,
            clock,
            connection: connection.to_string(),
            key: aead::LessSafeKey::new(key),
            config_fingerprint,
        }
    }

    fn seal(&self, token: &Secret) -> String {
        let nonce = rand::random::<[u8; NONCE_LEN]>();
        let mut sealed = token.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(self.connection.as_bytes()),
                &mut sealed,
            )
            .expect("a refresh token is far below AES-GCM's length limit");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    fn open(&self, sealed: &str) -> Option<Secret> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEALED_PREFIX)?)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut rest = rest.to_vec();
        let plain = self
            .key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(nonce).ok()?,
                aead::Aad::from(self.connection.as_bytes()),
                &mut rest,
            )
            .ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

#[async_trait]
impl RefreshTokenKeeper for StoredRefreshTokens {
    async fn keep(&self, token: &Secret) {
        let kept = KeptRefreshToken {
            config_fingerprint: self.config_fingerprint.clone(),
            sealed: self.seal(token),
        };
        if let Err(error) = self
            .store
            .keep_refresh_token(&self.connection, &kept, self.clock.now())
            .await
        {
            tracing::error!(
                connection = %self.connection, %error,
                "the rotated refresh token is not kept: after a restart, sign-in needs a new one in the config"
            );
        }
    }

    /// The kept token, unless the config now names another one than the token it replaced.
    async fn kept(&self) -> Option<Secret> {
        let kept = match self.store.kept_refresh_token(&self.connection).await {
            Ok(kept) => kept?,
            Err(error) => {
                tracing::warn!(connection = %self.connection, %error, "kept refresh token not read");
                return None;
            }
        };
        if kept.config_fingerprint != self.config_fingerprint {
            return None;
        }
        let token = self.open(&kept.sealed);
        if token.is_none() {
            tracing::warn!(
                connection = %self.connection,
                "the kept refresh token does not open with this server secret: the config's is used"
            );
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::SystemClock, store};

    const SECRET: &str = "server-secret-0123456789";

    fn keeper(
        store: &Arc<dyn Store>,
        connection: &str,
        secret: &str,
        configured: &str,
    ) -> StoredRefreshTokens {
        StoredRefreshTokens::new(
            store.clone(),
            Arc::new(SystemClock),
            connection,
            secret,
            configured,
        )
    }

    /// A store in a directory kept for the test's length.
    async fn temporary() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = store::open(&url).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_kept_token_is_stored_sealed_and_opens_for_its_connection_and_config() {
        let (_dir, store) = temporary().await;
        let dev = keeper(&store, "salesforce:dev", SECRET, "5Aep861A");
        dev.keep(&Secret::new("5Aep861Rotated")).await;
        let stored = store
            .kept_refresh_token("salesforce:dev")
            .await
            .unwrap()
            .unwrap();
        assert!(
            !stored.sealed.contains("5Aep861Rotated"),
            "{}",
            stored.sealed
        );
        assert!(!stored.config_fingerprint.contains("5Aep861A"));
        assert_eq!(dev.kept().await.unwrap().expose(), "5Aep861Rotated");
        // A fresh keeper (a restart) reads it back.
        let again = keeper(&store, "salesforce:dev", SECRET, "5Aep861A");
        assert_eq!(again.kept().await.unwrap().expose(), "5Aep861Rotated");
    }

    #[tokio::test]
    async fn a_new_token_in_the_config_wins_over_the_kept_one() {
        let (_dir, store) = temporary().await;
        let dev = keeper(&store, "salesforce:dev", SECRET, "5Aep861A");
        dev.keep(&Secret::new("5Aep861Rotated")).await;
        let changed = keeper(&store, "salesforce:dev", SECRET, "5Aep861B");
        assert!(changed.kept().await.is_none());
    }

    #[tokio::test]
    async fn a_kept_token_does_not_open_under_another_secret_or_connection() {
        let (_dir, store) = temporary().await;
        let dev = keeper(&store, "salesforce:dev", SECRET, "5Aep861A");
        dev.keep(&Secret::new("5Aep861Rotated")).await;
        let other_secret = keeper(
            &store,
            "salesforce:dev",
            "another-secret-0123456789",
            "5Aep861A",
        );
        assert!(other_secret.kept().await.is_none());
        // A sealed token copied to another connection's row does not open there.
        let stored = store
            .kept_refresh_token("salesforce:dev")
            .await
            .unwrap()
            .unwrap();
        let acme = keeper(&store, "salesforce:acme", SECRET, "5Aep861A");
        store
            .keep_refresh_token("salesforce:acme", &stored, chrono::Utc::now())
            .await
            .unwrap();
        assert!(acme.kept().await.is_none());
    }
}

//! `KeyStore` on PostgreSQL: API key hashes and the server secret.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{decode::millis, KeptRefreshToken, KeyStore, StoreResult};

#[async_trait]
impl KeyStore for PostgresStore {
    async fn secret(&self) -> StoreResult<String> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        // Instances racing to make it: the first insert wins, every one reads the winner's.
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('secret', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(fresh)
        .execute(&mut *tx)
        .await?;
        let secret = sqlx::query_scalar("SELECT value FROM settings WHERE key = 'secret'")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(secret)
    }

    async fn create_api_key(&self, name: &str, key_hash: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO api_keys (name, key_hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(key_hash)
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn api_key_exists(&self, key_hash: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM api_keys WHERE key_hash = $1")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn count_api_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn keep_refresh_token(
        &self,
        connection: &str,
        token: &KeptRefreshToken,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO kept_refresh_tokens (connection, config_fingerprint, sealed, kept_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (connection) DO UPDATE SET \
             config_fingerprint = excluded.config_fingerprint, sealed = excluded.sealed, \
             kept_at = excluded.kept_at",
        )
        .bind(connection)
        .bind(&token.config_fingerprint)
        .bind(&token.sealed)
        .bind(millis(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn kept_refresh_token(&self, connection: &str) -> StoreResult<Option<KeptRefreshToken>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT config_fingerprint, sealed FROM kept_refresh_tokens WHERE connection = $1",
        )
        .bind(connection)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(config_fingerprint, sealed)| KeptRefreshToken {
            config_fingerprint,
            sealed,
        }))
    }
}

//! `KeyStore` on SQLite: API key hashes and the server secret.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use crate::store::{decode::millis, KeptRefreshToken, KeyStore, StoreResult};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn secret(&self) -> StoreResult<String> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO settings (key, value) VALUES ('secret', ?)",
                    params![fresh],
                )?;
                Ok(
                    conn.query_row("SELECT value FROM settings WHERE key = 'secret'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
    }

    async fn create_api_key(&self, name: &str, key_hash: &str) -> StoreResult<()> {
        let (name, hash) = (name.to_string(), key_hash.to_string());
        self.writer
            .run_statement(move |conn| {
                conn.execute(
                    "INSERT INTO api_keys (name, key_hash, created_at) VALUES (?, ?, ?)",
                    params![name, hash, millis(Utc::now())],
                )?;
                Ok(())
            })
            .await
    }

    async fn api_key_exists(&self, key_hash: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    async fn count_api_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.read)
            .await?)
    }

    async fn keep_refresh_token(
        &self,
        connection: &str,
        token: &KeptRefreshToken,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (connection, token) = (connection.to_string(), token.clone());
        self.writer
            .run_statement(move |conn| {
                conn.execute(
                    "INSERT INTO kept_refresh_tokens (connection, config_fingerprint, sealed, kept_at) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (connection) DO UPDATE SET \
                     config_fingerprint = excluded.config_fingerprint, sealed = excluded.sealed, \
                     kept_at = excluded.kept_at",
                    params![connection, token.config_fingerprint, token.sealed, millis(at)],
                )?;
                Ok(())
            })
            .await
    }

    async fn kept_refresh_token(&self, connection: &str) -> StoreResult<Option<KeptRefreshToken>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT config_fingerprint, sealed FROM kept_refresh_tokens WHERE connection = ?",
        )
        .bind(connection)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|(config_fingerprint, sealed)| KeptRefreshToken {
            config_fingerprint,
            sealed,
        }))
    }
}

//! `ListStore` on PostgreSQL.

use async_trait::async_trait;
use chrono::Utc;

use super::PostgresStore;
use crate::store::rows;
use crate::{
    domain::{ids::ListEntryId, phone::PhoneNumber},
    store::{decode::millis, ListKey, ListStore, ListedNumber, NumberList, StoreResult},
};

#[async_trait]
impl ListStore for PostgresStore {
    async fn list_add(
        &self,
        list: NumberList,
        number: &PhoneNumber,
        reason: Option<String>,
    ) -> StoreResult<ListedNumber> {
        let row = sqlx::query(
            "INSERT INTO number_lists (list, number, reason, created_at, id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (list, number) DO UPDATE SET reason = excluded.reason
             RETURNING number, reason, created_at, id",
        )
        .bind(list.as_str())
        .bind(number.e164())
        .bind(reason)
        .bind(millis(Utc::now()))
        .bind(ListEntryId::new().as_str())
        .fetch_one(&self.pool)
        .await?;
        rows::listed(&row)
    }

    async fn list_remove(&self, list: NumberList, key: &ListKey) -> StoreResult<bool> {
        let (column, value) = rows::list_key(key);
        Ok(sqlx::query(&format!(
            "DELETE FROM number_lists WHERE list = $1 AND {column} = $2"
        ))
        .bind(list.as_str())
        .bind(value)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    async fn list_numbers(&self, list: NumberList, limit: u32) -> StoreResult<Vec<ListedNumber>> {
        sqlx::query(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = $1
             ORDER BY created_at DESC, number LIMIT $2",
        )
        .bind(list.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::listed)
        .collect()
    }

    async fn listed(&self, list: NumberList, key: &ListKey) -> StoreResult<Option<ListedNumber>> {
        let (column, value) = rows::list_key(key);
        sqlx::query(&format!(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = $1 AND {column} = $2"
        ))
        .bind(list.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(rows::listed)
        .transpose()
    }
}

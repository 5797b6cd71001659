//! `ListStore` on PostgreSQL.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{postgres::PgRow, Row};

use super::PostgresStore;
use crate::{
    domain::{ids::ListEntryId, phone::PhoneNumber},
    store::{
        decode::{self, millis},
        ListKey, ListStore, ListedNumber, NumberList, StoreResult,
    },
};

fn listed_from_row(r: &PgRow) -> StoreResult<ListedNumber> {
    Ok(ListedNumber {
        number: decode::number(r.try_get(0)?)?,
        reason: r.try_get(1)?,
        created_at: decode::time(r.try_get(2)?)?,
        id: decode::id(r.try_get(3)?)?,
    })
}

/// The column and value that find a list entry.
fn list_key(key: &ListKey) -> (&'static str, String) {
    match key {
        ListKey::Number(number) => ("number", number.e164().to_string()),
        ListKey::Id(id) => ("id", id.as_str().to_string()),
    }
}

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
        listed_from_row(&row)
    }

    async fn list_remove(&self, list: NumberList, key: &ListKey) -> StoreResult<bool> {
        let (column, value) = list_key(key);
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
        .map(listed_from_row)
        .collect()
    }

    async fn listed(&self, list: NumberList, key: &ListKey) -> StoreResult<Option<ListedNumber>> {
        let (column, value) = list_key(key);
        sqlx::query(&format!(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = $1 AND {column} = $2"
        ))
        .bind(list.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(listed_from_row)
        .transpose()
    }
}

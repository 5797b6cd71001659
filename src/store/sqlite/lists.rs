//! `ListStore` on SQLite.

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::params;

use super::SqliteStore;
use crate::store::rows;
use crate::{
    domain::{ids::ListEntryId, phone::PhoneNumber},
    store::{
        decode::{self, millis},
        ListKey, ListStore, ListedNumber, NumberList, StoreResult,
    },
};

#[async_trait]
impl ListStore for SqliteStore {
    async fn list_add(
        &self,
        list: NumberList,
        number: &PhoneNumber,
        reason: Option<String>,
    ) -> StoreResult<ListedNumber> {
        let number = number.clone();
        self.writer
            .run_statement(move |conn| {
                let (id, reason, created_at): (String, Option<String>, i64) = conn
                    .prepare_cached(
                        "INSERT INTO number_lists (list, number, reason, created_at, id)
                         VALUES (?, ?, ?, ?, ?)
                         ON CONFLICT (list, number) DO UPDATE SET reason = excluded.reason
                         RETURNING id, reason, created_at",
                    )?
                    .query_row(
                        params![
                            list.as_str(),
                            number.e164(),
                            reason,
                            millis(Utc::now()),
                            ListEntryId::new().as_str()
                        ],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )?;
                Ok(ListedNumber {
                    id: decode::id(&id)?,
                    number,
                    reason,
                    created_at: decode::time(created_at)?,
                })
            })
            .await
    }

    async fn list_remove(&self, list: NumberList, key: &ListKey) -> StoreResult<bool> {
        let (column, value) = rows::list_key(key);
        self.writer
            .run_statement(move |conn| {
                Ok(conn.execute(
                    &format!("DELETE FROM number_lists WHERE list = ? AND {column} = ?"),
                    params![list.as_str(), value],
                )? > 0)
            })
            .await
    }

    async fn list_numbers(&self, list: NumberList, limit: u32) -> StoreResult<Vec<ListedNumber>> {
        sqlx::query(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = ?
             ORDER BY created_at DESC, number LIMIT ?",
        )
        .bind(list.as_str())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::listed)
        .collect()
    }

    async fn listed(&self, list: NumberList, key: &ListKey) -> StoreResult<Option<ListedNumber>> {
        let (column, value) = rows::list_key(key);
        sqlx::query(&format!(
            "SELECT number, reason, created_at, id FROM number_lists WHERE list = ? AND {column} = ?"
        ))
        .bind(list.as_str())
        .bind(value)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(rows::listed)
        .transpose()
    }
}

//! `LinkStore` on PostgreSQL: links are written with their message, a batch of clicks in one
//! transaction of three statements whatever its size.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{outbox, PostgresStore};
use crate::store::{
    decode::{self, millis},
    rows, LinkStore, LinkTarget, NewClick, NewLink, NewOutboxEntry, StoreResult,
};

/// Store the short links of messages (`message_id`, link) in one statement, inside the
/// transaction that stores the messages.
pub(super) async fn insert(
    conn: &mut PgConnection,
    links: &[(&str, &NewLink)],
    at: &[DateTime<Utc>],
) -> StoreResult<()> {
    if links.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO links (code, message_id, url, created_at, expires_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[])",
    )
    .bind(
        links
            .iter()
            .map(|(_, l)| l.code.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(links.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(
        links
            .iter()
            .map(|(_, l)| l.url.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(at.iter().map(|t| millis(*t)).collect::<Vec<_>>())
    .bind(
        links
            .iter()
            .map(|(_, l)| l.expires_at.map(millis))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl LinkStore for PostgresStore {
    async fn link(&self, code: &str) -> StoreResult<Option<LinkTarget>> {
        sqlx::query("SELECT message_id, url, expires_at FROM links WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::link_target)
            .transpose()
    }

    async fn record_clicks(&self, clicks: Vec<NewClick>) -> StoreResult<()> {
        let codes: Vec<&str> = clicks.iter().map(|c| c.code.as_str()).collect();
        let ids: Vec<&str> = clicks.iter().map(|c| c.message_id.as_str()).collect();
        let ats: Vec<i64> = clicks.iter().map(|c| millis(c.at)).collect();
        let agents: Vec<Option<&str>> = clicks.iter().map(|c| c.user_agent.as_deref()).collect();
        let mut tx = self.pool.begin().await?;
        // The first click of each message that had none, with what its outbox entry needs.
        let firsts = sqlx::query(
            "SELECT DISTINCT ON (c.message_id) c.message_id, c.at, m.source, m.source_record, l.url
             FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS c(code, message_id, at)
             JOIN links l ON l.code = c.code
             JOIN messages m ON m.id = c.message_id
             WHERE NOT EXISTS (SELECT 1 FROM clicks k WHERE k.message_id = c.message_id)
             ORDER BY c.message_id, c.at",
        )
        .bind(&codes)
        .bind(&ids)
        .bind(&ats)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO clicks (code, message_id, at, user_agent)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[])",
        )
        .bind(&codes)
        .bind(&ids)
        .bind(&ats)
        .bind(&agents)
        .execute(&mut *tx)
        .await?;
        for row in &firsts {
            let source = decode::source(row.try_get("source")?, row.try_get("source_record")?)?;
            let at = decode::time(row.try_get("at")?)?;
            if let Some(entry) = NewOutboxEntry::click(&source, row.try_get("url")?, at) {
                outbox::add(&mut tx, row.try_get("message_id")?, &source, entry).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

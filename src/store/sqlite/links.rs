//! `LinkStore` on SQLite: links are written with their message, clicks in the writer's group
//! commit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{outbox, SqliteStore};
use crate::store::{
    decode::{self, millis},
    rows, LinkStore, LinkTarget, NewClick, NewLink, NewOutboxEntry, StoreResult,
};

/// Store a message's short links, inside the transaction that stores the message.
pub(super) fn insert(
    conn: &Connection,
    message_id: &str,
    links: &[NewLink],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO links (code, message_id, url, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )?;
    for link in links {
        insert.execute(params![
            link.code,
            message_id,
            link.url,
            millis(at),
            link.expires_at.map(millis)
        ])?;
    }
    Ok(())
}

/// Count one click; the first on its message goes into the outbox for a source that feeds it.
fn record(conn: &Connection, click: &NewClick) -> StoreResult<()> {
    let first = conn
        .prepare_cached("SELECT 1 FROM clicks WHERE message_id = ? LIMIT 1")?
        .query_row(params![click.message_id.as_str()], |_| Ok(()))
        .optional()?
        .is_none();
    conn.prepare_cached(
        "INSERT INTO clicks (code, message_id, at, user_agent) VALUES (?, ?, ?, ?)",
    )?
    .execute(params![
        click.code,
        click.message_id.as_str(),
        millis(click.at),
        click.user_agent
    ])?;
    if !first {
        return Ok(());
    }
    let clicked: Option<(String, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT m.source, m.source_record, l.url FROM links l JOIN messages m ON m.id = l.message_id
             WHERE l.code = ?",
        )?
        .query_row(params![click.code], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((name, record, url)) = clicked {
        let source = decode::source(&name, record.as_deref())?;
        if let Some(entry) = NewOutboxEntry::click(&source, &url, click.at) {
            outbox::add(conn, click.message_id.as_str(), &source, entry)?;
        }
    }
    Ok(())
}

#[async_trait]
impl LinkStore for SqliteStore {
    async fn link(&self, code: &str) -> StoreResult<Option<LinkTarget>> {
        sqlx::query("SELECT message_id, url, expires_at FROM links WHERE code = ?")
            .bind(code)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(rows::link_target)
            .transpose()
    }

    async fn record_clicks(&self, clicks: Vec<NewClick>) -> StoreResult<()> {
        self.writer
            .run(move |conn| clicks.iter().try_for_each(|click| record(conn, click)))
            .await
    }
}

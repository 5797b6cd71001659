//! `ConsentStore` on SQLite, and the consent a reply gives, inside the reply's commit.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::SqliteStore;
use crate::{
    domain::{consent::Consent, phone::PhoneNumber},
    store::{
        decode::millis,
        rows::{self, OPT_OUT_COLUMNS},
        ConsentStore, OptOut, StoreResult, EVERY_SENDER,
    },
};

/// Opt a number out (replacing an older entry for the same sender) in the writer's transaction.
pub(super) fn opt_out(conn: &Connection, entry: &OptOut) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO opt_outs (number, sender, at, via, keyword, message_id)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (number, sender) DO UPDATE SET at = excluded.at, via = excluded.via,
             keyword = excluded.keyword, message_id = excluded.message_id",
    )?
    .execute(params![
        entry.number.e164(),
        entry.sender,
        millis(entry.at),
        entry.via.as_str(),
        entry.keyword,
        entry.message_id.as_ref().map(|id| id.as_str()),
    ])?;
    Ok(())
}

/// Opt a number back in for `sender` in the writer's transaction; whether it was out.
pub(super) fn opt_in(conn: &Connection, number: &PhoneNumber, sender: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM opt_outs WHERE number = ? AND sender = ?")?
        .execute(params![number.e164(), sender])?
        > 0)
}

/// The change a reply's consent makes: out of its sender, or back in for it and for every sender
/// (the person's own word outweighs a block that named every sender).
pub(super) fn apply(conn: &Connection, consent: Consent, entry: &OptOut) -> StoreResult<()> {
    match consent {
        Consent::OptOut => opt_out(conn, entry),
        Consent::OptIn => {
            opt_in(conn, &entry.number, &entry.sender)?;
            opt_in(conn, &entry.number, EVERY_SENDER)?;
            Ok(())
        }
    }
}

#[async_trait]
impl ConsentStore for SqliteStore {
    async fn opt_out(&self, entry: OptOut) -> StoreResult<()> {
        self.writer.run(move |conn| opt_out(conn, &entry)).await
    }

    async fn opt_in(&self, number: &PhoneNumber, sender: &str) -> StoreResult<bool> {
        let (number, sender) = (number.clone(), sender.to_string());
        self.writer
            .run(move |conn| opt_in(conn, &number, &sender))
            .await
    }

    async fn opt_outs(&self, number: Option<&PhoneNumber>, limit: u32) -> StoreResult<Vec<OptOut>> {
        sqlx::query(&format!(
            "SELECT {OPT_OUT_COLUMNS} FROM opt_outs WHERE ?1 IS NULL OR number = ?1
             ORDER BY at DESC, number LIMIT ?2"
        ))
        .bind(number.map(|n| n.e164().to_string()))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::opt_out)
        .collect()
    }
}

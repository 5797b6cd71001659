//! `ConsentStore` on PostgreSQL, and the consent a reply gives, inside the reply's transaction.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::PostgresStore;
use crate::{
    domain::{consent::Consent, phone::PhoneNumber},
    store::{
        decode::millis,
        rows::{self, OPT_OUT_COLUMNS},
        ConsentStore, OptOut, StoreResult, EVERY_SENDER,
    },
};

/// Opt a number out (replacing an older entry for the same sender) in the caller's transaction.
async fn opt_out(conn: &mut PgConnection, entry: &OptOut) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO opt_outs (number, sender, at, via, keyword, message_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (number, sender) DO UPDATE SET at = excluded.at, via = excluded.via,
             keyword = excluded.keyword, message_id = excluded.message_id",
    )
    .bind(entry.number.e164())
    .bind(&entry.sender)
    .bind(millis(entry.at))
    .bind(entry.via.as_str())
    .bind(&entry.keyword)
    .bind(entry.message_id.as_ref().map(|id| id.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Opt a number back in for the senders given, in the caller's transaction; whether it was out.
async fn opt_in(
    conn: &mut PgConnection,
    number: &PhoneNumber,
    senders: &[&str],
) -> StoreResult<bool> {
    Ok(
        sqlx::query("DELETE FROM opt_outs WHERE number = $1 AND sender = ANY($2)")
            .bind(number.e164())
            .bind(senders)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}

/// The change a reply's consent makes: out of its sender, or back in for it and for every sender
/// (the person's own word outweighs a block that named every sender).
pub(super) async fn apply(
    conn: &mut PgConnection,
    consent: Consent,
    entry: &OptOut,
) -> StoreResult<()> {
    match consent {
        Consent::OptOut => opt_out(conn, entry).await,
        Consent::OptIn => {
            opt_in(conn, &entry.number, &[&entry.sender, EVERY_SENDER]).await?;
            Ok(())
        }
    }
}

#[async_trait]
impl ConsentStore for PostgresStore {
    async fn opt_out(&self, entry: OptOut) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        opt_out(&mut conn, &entry).await
    }

    async fn opt_in(&self, number: &PhoneNumber, sender: &str) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        opt_in(&mut conn, number, &[sender]).await
    }

    async fn opt_outs(&self, number: Option<&PhoneNumber>, limit: u32) -> StoreResult<Vec<OptOut>> {
        sqlx::query(&format!(
            "SELECT {OPT_OUT_COLUMNS} FROM opt_outs WHERE $1::text IS NULL OR number = $1
             ORDER BY at DESC, number LIMIT $2"
        ))
        .bind(number.map(|n| n.e164().to_string()))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::opt_out)
        .collect()
    }
}

//! PostgreSQL backend, for several instances sharing one queue. A pool of connections; every
//! write is one transaction of its own, except acceptance, which one writer task group-commits
//! (`writer.rs`). Claims skip rows another instance has locked, and OTP sends to one number are
//! serialised by an advisory lock, so instances never both slip under a limit. One file per
//! concern implements that concern's trait; this one opens, migrates and holds what they share.

mod consent;
mod inbound_parts;
mod keys;
mod kintone_notifications;
mod links;
mod lists;
mod messages;
mod otp;
mod outbox;
mod queue;
mod receipts;
mod reports;
mod sandbox;
mod statistics;
mod wakeups;
mod writeback_log;
mod writer;

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    ConnectOptions as _, Connection as _, PgConnection, PgPool,
};

use self::wakeups::Wakeups;
use super::{Connections, HealthStore, StoreError, StoreResult};
use crate::{domain::hygiene::Listing, domain::phone::PhoneNumber};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// Connections each instance keeps to the server unless `[database] pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// The PostgreSQL store. Any number of instances may open the same database.
pub struct PostgresStore {
    pool: PgPool,
    wakeups: Wakeups,
    /// Group commit for acceptance.
    writer: writer::Writer,
    /// Stops the task keeping planner statistics up with growing tables.
    _statistics: tokio_util::sync::DropGuard,
}

impl PostgresStore {
    /// Connect to the database a `postgres://…` URL names and migrate it.
    ///
    /// sqlx's migrator takes `pg_advisory_lock` (a key derived from the database name) around
    /// the whole run on PostgreSQL, so instances starting together apply each migration once:
    /// the others wait for the first and then find everything applied. The migrations run on a
    /// connection of their own, closed after, so a failed run cannot leave that session lock
    /// held by a pooled connection.
    pub async fn open(url: &str) -> StoreResult<PostgresStore> {
        Self::open_with(url, &Connections::default()).await
    }

    /// `open`, with the pool's size and how long to wait for a connection from `connections`.
    ///
    /// Every query waits at most `connect_timeout` for a connection (a free one of the pool, or a
    /// new one to the server), so while the server is unreachable requests fail fast with
    /// `Unavailable` (503) instead of hanging; the pool connects again by itself once it is back.
    pub async fn open_with(url: &str, connections: &Connections) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)?;
        let timeout = connections.connect_timeout;
        let mut migrator_conn = tokio::time::timeout(timeout, options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no connection to PostgreSQL within {} ms",
                    timeout.as_millis()
                ))
            })??;
        MIGRATOR.run_direct(&mut migrator_conn).await?;
        migrator_conn.close().await?;
        // A frozen instance's open transaction would otherwise keep its claimed rows locked
        // (and skipped by every other instance) for as long as its connection lives.
        let bound = connections.statement_timeout.as_millis().to_string();
        // A name of this instance's own on each of its sessions: its wake-ups carry it, so it
        // can skip its own, and pg_stat_activity tells the instances apart.
        let instance = format!("tsunagi-{}", ulid::Ulid::new().to_string().to_lowercase());
        let options = options
            .options([
                ("statement_timeout", bound.as_str()),
                ("idle_in_transaction_session_timeout", bound.as_str()),
            ])
            .application_name(&instance);
        let pool = PgPoolOptions::new()
            .max_connections(connections.pool_size.unwrap_or(DEFAULT_POOL_SIZE))
            .acquire_timeout(timeout)
            .connect_with(options.clone())
            .await?;
        let writer = writer::Writer::start(pool.clone());
        Ok(PostgresStore {
            _statistics: statistics::keep_up(pool.clone()),
            pool,
            wakeups: Wakeups::new(options, timeout, instance),
            writer,
        })
    }

    /// The pool, for tests that look under the traits.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Where a number stands on the lists, read inside the caller's transaction.
async fn listing(conn: &mut PgConnection, to: &PhoneNumber, sender: &str) -> StoreResult<Listing> {
    let mut listing = Listing::default();
    let lists: Vec<String> = sqlx::query_scalar(
        "SELECT list FROM number_lists WHERE list IN ('allow', 'deny') AND number = $1
         UNION ALL
         SELECT 'opt_out' FROM opt_outs WHERE number = $1 AND sender IN ($2, '*')",
    )
    .bind(to.e164())
    .bind(sender)
    .fetch_all(conn)
    .await?;
    for list in lists {
        match list.as_str() {
            "deny" => listing.denied = true,
            "opt_out" => listing.opted_out = true,
            _ => listing.allowed = true,
        }
    }
    Ok(listing)
}

#[async_trait]
impl HealthStore for PostgresStore {
    async fn ready(&self) -> StoreResult<()> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        match MIGRATOR.iter().find(|m| !applied.contains(&m.version)) {
            Some(m) => Err(StoreError::Unavailable(format!(
                "migration {} ({}) is not applied",
                m.version, m.description
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

//! Planner statistics that keep up with tables growing from empty. PostgreSQL keeps the plan of
//! each prepared statement until a table's statistics change, and plans made while a table was
//! empty scan it whole (a claim, `next_due`, a lookup by id) however large it has grown since;
//! autovacuum analyzes only at its next round, a minute later by default, by which time a
//! burst into a new database has made every claim a full scan. So this task analyzes any of
//! the store's tables whose changes since its last analysis reach its size (at least
//! `MIN_CHANGES`): each table's statistics stay within a factor of two of the truth, which costs
//! a logarithmic number of analyses as it grows. Autovacuum goes on as configured.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often the tables' change counts are looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Changes below this never call for an analysis: a small table's plans hardly matter.
const MIN_CHANGES: i64 = 1000;

/// Start analyzing stale tables of `pool`'s schema every `EVERY`, until the guard drops.
pub(super) fn keep_up(pool: PgPool) -> DropGuard {
    let stop = CancellationToken::new();
    tokio::spawn(run(pool, stop.clone()));
    stop.drop_guard()
}

async fn run(pool: PgPool, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if let Err(e) = analyze_stale(&pool).await {
            tracing::debug!(error = %e, "planner statistics not refreshed; trying again later");
        }
    }
}

/// Analyze every table of the current schema whose changes since its last analysis reach its
/// size; the names of those analyzed.
pub(super) async fn analyze_stale(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    // `reltuples` is -1 for a table never analyzed, so MIN_CHANGES decides for it.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.schemaname = current_schema()
           AND s.n_mod_since_analyze >= GREATEST($1, c.reltuples)",
    )
    .bind(MIN_CHANGES)
    .fetch_all(pool)
    .await?;
    for table in &stale {
        // SKIP_LOCKED: a table another instance or autovacuum is analyzing is left to it.
        let sql = format!("ANALYZE (SKIP_LOCKED) \"{}\"", table.replace('"', "\"\""));
        sqlx::raw_sql(&sql).execute(pool).await?;
        tracing::debug!(table, "planner statistics refreshed");
    }
    Ok(stale)
}

//! `OtpStore` on PostgreSQL. The facts the OTP rules judge are counted and the code stored in
//! one transaction, serialised by transaction-scoped advisory locks on what the hard limits
//! count by (the number, its burst block, the client IP, the device): two instances sending to
//! the same number, block, IP or device take turns, so neither slips under a limit. The locks
//! are taken in one order (sorted keys), so two sends cannot deadlock on them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{listing, messages, PostgresStore};
use crate::{
    domain::hygiene::Hygiene,
    domain::ids::VerificationId,
    otp::{
        check::{judge_check, CheckFacts, CheckOutcome, VerificationState},
        rules::{judge_send, OtpLimits, Paused, SendFacts, Verdict, WindowCount},
    },
    store::{
        decode::{self, millis},
        rows::{self, VERIFICATION_COLUMNS},
        CodeMatcher, NewVerification, OtpStart, OtpStore, StoreResult, VerificationRecord,
    },
};

/// Take, until the transaction ends, the advisory locks serialising sends that count the same
/// facts as `v`.
async fn lock_send(conn: &mut PgConnection, v: &NewVerification) -> StoreResult<()> {
    let mut keys = vec![
        format!("otp:number:{}", v.message.to.e164()),
        format!("otp:block:{}", v.burst_prefix),
    ];
    keys.extend(v.client_ip.as_ref().map(|ip| format!("otp:ip:{ip}")));
    keys.extend(v.device_id.as_ref().map(|d| format!("otp:device:{d}")));
    keys.sort();
    keys.dedup();
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How many codes went to `column = value` after `after`, and when the oldest of them did.
async fn sent_after(
    conn: &mut PgConnection,
    column: &str,
    value: &str,
    after: DateTime<Utc>,
) -> StoreResult<WindowCount> {
    let sql = format!(
        "SELECT COUNT(*), MIN(created_at) FROM otp_verifications WHERE {column} = $1 AND created_at > $2"
    );
    let (count, oldest): (i64, Option<i64>) = sqlx::query_as(&sql)
        .bind(value)
        .bind(millis(after))
        .fetch_one(conn)
        .await?;
    Ok(WindowCount {
        count,
        oldest: oldest.map(decode::time).transpose()?,
    })
}

/// What the send rules judge, read in the caller's transaction.
async fn send_facts(
    conn: &mut PgConnection,
    v: &NewVerification,
    limits: &OtpLimits,
    allow_listed: bool,
) -> StoreResult<SendFacts> {
    let now = v.created_at;
    let to = v.message.to.e164();
    let windows = limits.windows(now);
    let paused_until: Option<i64> =
        sqlx::query_scalar("SELECT MAX(until) FROM otp_blocked_prefixes WHERE prefix IN ($1, $2)")
            .bind(&v.prefix)
            .bind(&v.burst_prefix)
            .fetch_one(&mut *conn)
            .await?;
    let last_sent: Option<i64> =
        sqlx::query_scalar("SELECT MAX(created_at) FROM otp_verifications WHERE to_number = $1")
            .bind(to)
            .fetch_one(&mut *conn)
            .await?;
    let client_ip = match v.client_ip.as_deref() {
        Some(ip) => Some(sent_after(&mut *conn, "client_ip", ip, windows.sends_after).await?),
        None => None,
    };
    let device_id = match v.device_id.as_deref() {
        Some(d) => Some(sent_after(&mut *conn, "device_id", d, windows.sends_after).await?),
        None => None,
    };
    let (judged, verified): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = $1) FROM otp_verifications
         WHERE prefix = $2 AND created_at > $3 AND created_at <= $4",
    )
    .bind(VerificationState::Approved.as_str())
    .bind(&v.prefix)
    .bind(millis(windows.judged_after))
    .bind(millis(windows.judged_until))
    .fetch_one(&mut *conn)
    .await?;
    Ok(SendFacts {
        allow_listed,
        paused_until: paused_until.map(decode::time).transpose()?,
        last_sent: last_sent.map(decode::time).transpose()?,
        to_number: sent_after(&mut *conn, "to_number", to, windows.sends_after).await?,
        client_ip,
        device_id,
        burst: sent_after(
            &mut *conn,
            "burst_prefix",
            &v.burst_prefix,
            windows.burst_after,
        )
        .await?
        .count,
        judged,
        verified,
    })
}

/// Refuse by the lists, judge the limits, then cancel the number's pending codes and store the
/// new one with its SMS.
async fn start(
    conn: &mut PgConnection,
    v: &NewVerification,
    limits: &OtpLimits,
    hygiene: Hygiene,
) -> StoreResult<OtpStart> {
    let now = v.created_at;
    let to = v.message.to.e164();
    let listed = listing(&mut *conn, &v.message.to, &v.message.from).await?;
    if let Some(reason) = hygiene.refusal(listed) {
        return Ok(OtpStart::Blocked(reason));
    }
    lock_send(&mut *conn, v).await?;
    let facts = send_facts(&mut *conn, v, limits, listed.allowed).await?;
    match judge_send(&facts, limits, now) {
        Verdict::Send => {}
        Verdict::Refuse(refusal) => return Ok(refusal.into()),
        Verdict::Trip {
            prefix,
            until,
            cause,
            refusal,
        } => {
            let prefix = match prefix {
                Paused::Range => &v.prefix,
                Paused::BurstBlock => &v.burst_prefix,
            };
            sqlx::query(
                "INSERT INTO otp_blocked_prefixes (prefix, until, reason, created_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (prefix) DO UPDATE SET until = excluded.until,
                     reason = excluded.reason, created_at = excluded.created_at",
            )
            .bind(prefix)
            .bind(millis(until))
            .bind(cause)
            .bind(millis(now))
            .execute(&mut *conn)
            .await?;
            return Ok(refusal.into());
        }
    }
    sqlx::query(
        "UPDATE otp_verifications SET status = $1, updated_at = $2 WHERE to_number = $3 AND status = $4",
    )
    .bind(VerificationState::Canceled.as_str())
    .bind(millis(now))
    .bind(to)
    .bind(VerificationState::Pending.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO otp_verifications (id, to_number, prefix, burst_prefix, code_hash, status,
             max_checks, message_id, client_ip, device_id, created_at, expires_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(v.id.as_str())
    .bind(to)
    .bind(&v.prefix)
    .bind(&v.burst_prefix)
    .bind(&v.code_hash)
    .bind(VerificationState::Pending.as_str())
    .bind(i64::from(v.max_checks))
    .bind(v.message.id.as_str())
    .bind(&v.client_ip)
    .bind(&v.device_id)
    .bind(millis(now))
    .bind(millis(v.expires_at))
    .bind(millis(now))
    .execute(&mut *conn)
    .await?;
    messages::insert(conn, &v.message).await?;
    Ok(OtpStart::Started)
}

/// Count one check of `id` at `now`; the row is locked so concurrent checks count one by one.
async fn check(
    conn: &mut PgConnection,
    id: &VerificationId,
    matches: CodeMatcher,
    now: DateTime<Utc>,
) -> StoreResult<CheckOutcome> {
    let row: Option<(Vec<u8>, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT code_hash, status, checks, max_checks, expires_at FROM otp_verifications
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((hash, state, checks, max_checks, expires_at)) = row else {
        return Ok(CheckOutcome::NotFound);
    };
    let facts = CheckFacts {
        state: decode::parsed("verification state", &state)?,
        checks: rows::count(checks)?,
        max_checks: rows::count(max_checks)?,
        expires_at: decode::time(expires_at)?,
    };
    let checked = judge_check(facts, now, matches(&hash));
    if let Some((state, checks)) = checked.record {
        sqlx::query(
            "UPDATE otp_verifications SET checks = $1, status = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(i64::from(checks))
        .bind(state.as_str())
        .bind(millis(now))
        .bind(id.as_str())
        .execute(conn)
        .await?;
    }
    Ok(checked.outcome)
}

#[async_trait]
impl OtpStore for PostgresStore {
    async fn otp_start(
        &self,
        v: NewVerification,
        limits: OtpLimits,
        hygiene: Hygiene,
    ) -> StoreResult<OtpStart> {
        let mut tx = self.pool.begin().await?;
        let started = start(&mut tx, &v, &limits, hygiene).await?;
        tx.commit().await?;
        Ok(started)
    }

    async fn otp_check(
        &self,
        id: &VerificationId,
        matches: CodeMatcher,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = check(&mut tx, id, matches, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn otp_verification(
        &self,
        id: &VerificationId,
    ) -> StoreResult<Option<VerificationRecord>> {
        sqlx::query(&format!(
            "SELECT {VERIFICATION_COLUMNS} FROM otp_verifications WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| rows::verification(&r, id))
        .transpose()
    }

    async fn otp_blocked_prefixes(&self, now: DateTime<Utc>) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM otp_blocked_prefixes WHERE until > $1")
                .bind(millis(now))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn otp_conversion(&self, since: DateTime<Utc>) -> StoreResult<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = $1) FROM otp_verifications
             WHERE created_at > $2",
        )
        .bind(VerificationState::Approved.as_str())
        .bind(millis(since))
        .fetch_one(&self.pool)
        .await?)
    }
}

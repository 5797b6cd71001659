//! `OtpStore` on SQLite. The facts the OTP rules judge are counted and the code stored in the
//! same commit, so two concurrent sends cannot both slip under a limit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::Row;

use super::{listing, messages, SqliteStore};
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

/// How many codes went to `column = value` after `after`, and when the oldest of them did.
fn sent_after(
    conn: &Connection,
    column: &str,
    value: &str,
    after: DateTime<Utc>,
) -> StoreResult<WindowCount> {
    let sql = format!(
        "SELECT COUNT(*), MIN(created_at) FROM otp_verifications WHERE {column} = ? AND created_at > ?"
    );
    let (count, oldest): (i64, Option<i64>) = conn
        .prepare_cached(&sql)?
        .query_row(params![value, millis(after)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(WindowCount {
        count,
        oldest: oldest.map(decode::time).transpose()?,
    })
}

/// What the send rules judge, read in the writer's transaction.
fn send_facts(
    conn: &Connection,
    v: &NewVerification,
    limits: &OtpLimits,
    allow_listed: bool,
) -> StoreResult<SendFacts> {
    let now = v.created_at;
    let to = v.message.to.e164();
    let windows = limits.windows(now);
    // Two probes of the key rather than `prefix IN (?, ?)`, which SQLite walks through a
    // temporary b-tree built for every run.
    let paused_until: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(until) FROM (
                 SELECT until FROM otp_blocked_prefixes WHERE prefix = ?1
                 UNION ALL SELECT until FROM otp_blocked_prefixes WHERE prefix = ?2)",
        )?
        .query_row(params![v.prefix, v.burst_prefix], |r| r.get(0))?;
    let last_sent: Option<i64> = conn
        .prepare_cached("SELECT MAX(created_at) FROM otp_verifications WHERE to_number = ?")?
        .query_row(params![to], |r| r.get(0))?;
    let counted = |column, value: Option<&str>| {
        value
            .map(|value| sent_after(conn, column, value, windows.sends_after))
            .transpose()
    };
    let (judged, verified): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(status = ?), 0) FROM otp_verifications
             WHERE prefix = ? AND created_at > ? AND created_at <= ?",
        )?
        .query_row(
            params![
                VerificationState::Approved.as_str(),
                v.prefix,
                millis(windows.judged_after),
                millis(windows.judged_until)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    Ok(SendFacts {
        allow_listed,
        paused_until: paused_until.map(decode::time).transpose()?,
        last_sent: last_sent.map(decode::time).transpose()?,
        to_number: sent_after(conn, "to_number", to, windows.sends_after)?,
        client_ip: counted("client_ip", v.client_ip.as_deref())?,
        device_id: counted("device_id", v.device_id.as_deref())?,
        burst: sent_after(conn, "burst_prefix", &v.burst_prefix, windows.burst_after)?.count,
        judged,
        verified,
    })
}

/// Refuse by the lists, judge the limits, then cancel the number's pending codes and store the
/// new one with its SMS.
fn start(
    conn: &Connection,
    v: &NewVerification,
    limits: &OtpLimits,
    hygiene: Hygiene,
) -> StoreResult<OtpStart> {
    let now = v.created_at;
    let to = v.message.to.e164();
    let listed = listing(conn, &v.message.to, &v.message.from)?;
    if let Some(reason) = hygiene.refusal(listed) {
        return Ok(OtpStart::Blocked(reason));
    }
    match judge_send(&send_facts(conn, v, limits, listed.allowed)?, limits, now) {
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
            conn.prepare_cached(
                "INSERT INTO otp_blocked_prefixes (prefix, until, reason, created_at)
                 VALUES (?, ?, ?, ?)
                 ON CONFLICT (prefix) DO UPDATE SET until = excluded.until,
                     reason = excluded.reason, created_at = excluded.created_at",
            )?
            .execute(params![prefix, millis(until), cause, millis(now)])?;
            return Ok(refusal.into());
        }
    }
    conn.prepare_cached(
        "UPDATE otp_verifications SET status = ?, updated_at = ? WHERE to_number = ? AND status = ?",
    )?
    .execute(params![
        VerificationState::Canceled.as_str(),
        millis(now),
        to,
        VerificationState::Pending.as_str()
    ])?;
    conn.prepare_cached(
        "INSERT INTO otp_verifications (id, to_number, prefix, burst_prefix, code_hash, status,
             max_checks, message_id, client_ip, device_id, created_at, expires_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        v.id.as_str(),
        to,
        v.prefix,
        v.burst_prefix,
        v.code_hash,
        VerificationState::Pending.as_str(),
        v.max_checks,
        v.message.id.as_str(),
        v.client_ip,
        v.device_id,
        millis(now),
        millis(v.expires_at),
        millis(now),
    ])?;
    messages::insert(conn, &v.message)?;
    Ok(OtpStart::Started)
}

/// Count one check of `id` at `now`.
fn check(
    conn: &Connection,
    id: &VerificationId,
    matches: CodeMatcher,
    now: DateTime<Utc>,
) -> StoreResult<CheckOutcome> {
    let row: Option<(Vec<u8>, String, u32, u32, i64)> = conn
        .prepare_cached(
            "SELECT code_hash, status, checks, max_checks, expires_at FROM otp_verifications WHERE id = ?",
        )?
        .query_row(params![id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((hash, state, checks, max_checks, expires_at)) = row else {
        return Ok(CheckOutcome::NotFound);
    };
    let facts = CheckFacts {
        state: decode::parsed("verification state", &state)?,
        checks,
        max_checks,
        expires_at: decode::time(expires_at)?,
    };
    let checked = judge_check(facts, now, matches(&hash));
    if let Some((state, checks)) = checked.record {
        conn.prepare_cached(
            "UPDATE otp_verifications SET checks = ?, status = ?, updated_at = ? WHERE id = ?",
        )?
        .execute(params![checks, state.as_str(), millis(now), id.as_str()])?;
    }
    Ok(checked.outcome)
}

#[async_trait]
impl OtpStore for SqliteStore {
    async fn otp_start(
        &self,
        v: NewVerification,
        limits: OtpLimits,
        hygiene: Hygiene,
    ) -> StoreResult<OtpStart> {
        self.writer
            .run(move |conn| start(conn, &v, &limits, hygiene))
            .await
    }

    async fn otp_check(
        &self,
        id: &VerificationId,
        matches: CodeMatcher,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckOutcome> {
        let id = id.clone();
        self.writer
            .run(move |conn| check(conn, &id, matches, now))
            .await
    }

    async fn otp_verification(
        &self,
        id: &VerificationId,
    ) -> StoreResult<Option<VerificationRecord>> {
        sqlx::query(&format!(
            "SELECT {VERIFICATION_COLUMNS} FROM otp_verifications WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await?
        .map(|r| rows::verification(&r, id))
        .transpose()
    }

    async fn otp_blocked_prefixes(&self, now: DateTime<Utc>) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM otp_blocked_prefixes WHERE until > ?")
                .bind(millis(now))
                .fetch_one(&self.read)
                .await?,
        )
    }

    async fn otp_conversion(&self, since: DateTime<Utc>) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(status = ?), 0) FROM otp_verifications
             WHERE created_at > ?",
        )
        .bind(VerificationState::Approved.as_str())
        .bind(millis(since))
        .fetch_one(&self.read)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

//! One-time passwords inside the writer's transaction: every limit is counted and the code
//! stored in the same commit, so two concurrent sends cannot both slip under a limit.

use rusqlite::{params, Connection, OptionalExtension};

use super::{accept, millis, refusal};
use crate::{
    domain::ids::VerificationId,
    store::{
        Acceptance, CheckOutcome, CodeMatcher, Hygiene, NewVerification, OtpLimits, OtpStart,
        StoreResult,
    },
};

/// A limit that refuses, with the seconds until it would not.
fn limited(reason: impl Into<String>, retry_after_ms: i64) -> OtpStart {
    OtpStart::Limited {
        reason: reason.into(),
        retry_after: (retry_after_ms + 999).div_euclid(1000).max(1),
        tripped: false,
    }
}

/// How many codes went to `column = value` since `since`, and when the oldest of them did.
fn sent_since(
    conn: &Connection,
    column: &str,
    value: &str,
    since: i64,
) -> StoreResult<(i64, Option<i64>)> {
    let sql = format!(
        "SELECT COUNT(*), MIN(created_at) FROM otp_verifications WHERE {column} = ? AND created_at > ?"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![value, since], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

fn over_window_limit(
    conn: &Connection,
    column: &str,
    value: Option<&str>,
    max: i64,
    window_ms: i64,
    now: i64,
) -> StoreResult<Option<i64>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let (count, oldest) = sent_since(conn, column, value, now - window_ms)?;
    Ok((count >= max).then(|| oldest.unwrap_or(now) + window_ms - now))
}

/// Check lists, limits and the pumping breaker; then cancel the number's pending codes and store
/// the new one with its SMS.
pub(super) fn start(
    conn: &Connection,
    v: &NewVerification,
    limits: &OtpLimits,
    hygiene: Hygiene,
) -> StoreResult<OtpStart> {
    let now = millis(v.created_at);
    let to = v.message.to.e164();
    if let Some(reason) = refusal(conn, &v.message.to, hygiene)? {
        return Ok(OtpStart::Blocked(reason));
    }
    let allow_listed = conn
        .prepare_cached("SELECT 1 FROM number_lists WHERE list = 'allow' AND number = ?")?
        .exists(params![to])?;
    // Allow-listed numbers (test handsets, staff) skip velocity limits and the breaker.
    if !allow_listed {
        if let Some(result) = refuse_by_limits(conn, v, limits, now)? {
            return Ok(result);
        }
    }
    conn.prepare_cached(
        "UPDATE otp_verifications SET status = 'canceled', updated_at = ?
         WHERE to_number = ? AND status = 'pending'",
    )?
    .execute(params![now, to])?;
    conn.prepare_cached(
        "INSERT INTO otp_verifications (id, to_number, prefix, burst_prefix, code_hash, status,
             max_checks, message_id, client_ip, device_id, created_at, expires_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        v.id.as_str(),
        to,
        v.prefix,
        v.burst_prefix,
        v.code_hash,
        v.max_checks,
        v.message.id.as_str(),
        v.client_ip,
        v.device_id,
        now,
        millis(v.expires_at),
        now,
    ])?;
    match accept(conn, &v.message, None, hygiene)? {
        Acceptance::Blocked(reason) => Ok(OtpStart::Blocked(reason)),
        _ => Ok(OtpStart::Started),
    }
}

fn refuse_by_limits(
    conn: &Connection,
    v: &NewVerification,
    limits: &OtpLimits,
    now: i64,
) -> StoreResult<Option<OtpStart>> {
    let to = v.message.to.e164();
    let blocked_until: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(until) FROM otp_blocked_prefixes WHERE prefix IN (?, ?) AND until > ?",
        )?
        .query_row(params![v.prefix, v.burst_prefix, now], |r| r.get(0))?;
    if let Some(until) = blocked_until {
        return Ok(Some(limited(
            "codes to this number range are paused: its codes stopped being verified (suspected SMS pumping)",
            until - now,
        )));
    }
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(created_at) FROM otp_verifications WHERE to_number = ?")?
        .query_row(params![to], |r| r.get(0))?;
    let cooldown_ms = limits.cooldown_seconds * 1000;
    if let Some(last) = last.filter(|last| now - last < cooldown_ms) {
        return Ok(Some(limited(
            format!(
                "a code was sent to this number less than {} s ago",
                limits.cooldown_seconds
            ),
            last + cooldown_ms - now,
        )));
    }
    let window_ms = limits.window_seconds * 1000;
    let checks = [
        ("to_number", Some(to), limits.per_number, "this number"),
        (
            "client_ip",
            v.client_ip.as_deref(),
            limits.per_ip,
            "this client_ip",
        ),
        (
            "device_id",
            v.device_id.as_deref(),
            limits.per_device,
            "this device_id",
        ),
    ];
    for (column, value, max, what) in checks {
        if let Some(wait) = over_window_limit(conn, column, value, max, window_ms, now)? {
            return Ok(Some(limited(
                format!(
                    "{what} was sent {max} codes in the last {} s",
                    limits.window_seconds
                ),
                wait,
            )));
        }
    }
    // A burst to one block of numbers is pumping however the older codes converted: waiting for
    // the grace period would let the whole burst out.
    if limits.burst_max_sends > 0 {
        let (burst, _) = sent_since(
            conn,
            "burst_prefix",
            &v.burst_prefix,
            now - limits.burst_window_seconds * 1000,
        )?;
        if burst >= limits.burst_max_sends {
            let reason = format!(
                "{burst} codes to numbers sharing all but their last four digits in the last {} s",
                limits.burst_window_seconds
            );
            return Ok(Some(trip(conn, &v.burst_prefix, &reason, limits, now)?));
        }
    }
    // Codes younger than the grace period may still be verified, so they are not judged yet.
    let (judged, verified): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(status = 'approved'), 0) FROM otp_verifications
             WHERE prefix = ? AND created_at > ? AND created_at <= ?",
        )?
        .query_row(
            params![
                v.prefix,
                now - limits.pumping_window_seconds * 1000,
                now - limits.pumping_grace_seconds * 1000
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    let conversion = if judged == 0 {
        1.0
    } else {
        verified as f64 / judged as f64
    };
    if judged >= limits.pumping_min_sends && conversion < limits.pumping_min_conversion {
        let reason = format!(
            "{verified} of {judged} codes verified ({:.0}%) in the last {} s",
            conversion * 100.0,
            limits.pumping_window_seconds
        );
        return Ok(Some(trip(conn, &v.prefix, &reason, limits, now)?));
    }
    Ok(None)
}

/// Pause codes to `prefix` for the block period, and say why.
fn trip(
    conn: &Connection,
    prefix: &str,
    reason: &str,
    limits: &OtpLimits,
    now: i64,
) -> StoreResult<OtpStart> {
    conn.prepare_cached(
        "INSERT INTO otp_blocked_prefixes (prefix, until, reason, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (prefix) DO UPDATE SET until = excluded.until, reason = excluded.reason,
                                            created_at = excluded.created_at",
    )?
    .execute(params![
        prefix,
        now + limits.pumping_block_seconds * 1000,
        reason,
        now
    ])?;
    Ok(OtpStart::Limited {
        reason: format!("codes to this number range are paused: {reason} (suspected SMS pumping)"),
        retry_after: limits.pumping_block_seconds,
        tripped: true,
    })
}

/// Count one check of `id` at `now`.
pub(super) fn check(
    conn: &Connection,
    id: &VerificationId,
    matches: CodeMatcher,
    now: i64,
) -> StoreResult<CheckOutcome> {
    let row: Option<(Vec<u8>, String, i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT code_hash, status, checks, max_checks, expires_at FROM otp_verifications WHERE id = ?",
        )?
        .query_row(params![id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((hash, status, checks, max_checks, expires_at)) = row else {
        return Ok(CheckOutcome::NotFound);
    };
    match status.as_str() {
        "approved" => return Ok(CheckOutcome::AlreadyUsed),
        "canceled" => return Ok(CheckOutcome::Canceled),
        "max_attempts_reached" => return Ok(CheckOutcome::Exhausted),
        _ => {}
    }
    if now >= expires_at {
        return Ok(CheckOutcome::Expired);
    }
    if checks >= max_checks {
        return Ok(CheckOutcome::Exhausted);
    }
    let checks = checks + 1;
    let (status, outcome) = if matches(&hash) {
        ("approved", CheckOutcome::Approved)
    } else if checks >= max_checks {
        ("max_attempts_reached", CheckOutcome::Incorrect(0))
    } else {
        (
            "pending",
            CheckOutcome::Incorrect((max_checks - checks) as u32),
        )
    };
    conn.prepare_cached(
        "UPDATE otp_verifications SET checks = ?, status = ?, updated_at = ? WHERE id = ?",
    )?
    .execute(params![checks, status, now, id.as_str()])?;
    Ok(outcome)
}

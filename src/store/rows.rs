//! Records read back from query rows, shared by every sqlx backend: the columns are the same in
//! each dialect, so one reader per record serves SQLite and PostgreSQL alike.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    decode, ClickSummary, DeliveryFact, InboxEntry, KeptReceipt, LinkTarget, ListKey, ListedNumber,
    MessageRecord, OptOut, OutboxEntry, PartReceipt, Review, StoreError, StoreResult, Unmatched,
    UsageBucket, VerificationRecord,
};
use crate::domain::ids::VerificationId;

/// The columns `message` reads, in a `SELECT` list.
pub(super) const MESSAGE_COLUMNS: &str = "seq, id, to_number, sender, status, status_detail, encoding, characters, segments, source, source_record, metadata, created_at, send_at, expires_at, writeback_error, written_back_at, provider_message_id, \
    (SELECT count(*) FROM clicks WHERE clicks.message_id = messages.id) AS clicks, \
    (SELECT min(at) FROM clicks WHERE clicks.message_id = messages.id) AS first_click_at, \
    (SELECT max(at) FROM clicks WHERE clicks.message_id = messages.id) AS last_click_at";

/// A message (without its events and replies) from a row of `MESSAGE_COLUMNS`.
pub(super) fn message<'r, R>(row: &'r R) -> StoreResult<MessageRecord>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(MessageRecord {
        seq: row.try_get("seq")?,
        id: decode::id(row.try_get("id")?)?,
        to: row
            .try_get::<Option<&str>, _>("to_number")?
            .map(decode::number)
            .transpose()?,
        from: row.try_get::<&str, _>("sender")?.to_string(),
        status: decode::state(row.try_get("status")?)?,
        status_detail: row
            .try_get::<Option<&str>, _>("status_detail")?
            .map(str::to_string),
        encoding: decode::encoding(row.try_get("encoding")?)?,
        characters: row.try_get("characters")?,
        segments: row.try_get("segments")?,
        source: decode::source(row.try_get("source")?, row.try_get("source_record")?)?,
        metadata: row
            .try_get::<Option<&str>, _>("metadata")?
            .map(decode::json)
            .transpose()?,
        created_at: decode::time(row.try_get("created_at")?)?,
        send_at: optional_time(row.try_get("send_at")?)?,
        expires_at: optional_time(row.try_get("expires_at")?)?,
        writeback_error: row
            .try_get::<Option<&str>, _>("writeback_error")?
            .map(str::to_string),
        written_back_at: optional_time(row.try_get("written_back_at")?)?,
        provider_message_id: row
            .try_get::<Option<&str>, _>("provider_message_id")?
            .map(str::to_string),
        events: Vec::new(),
        replies: Vec::new(),
        clicks: ClickSummary {
            count: row.try_get("clicks")?,
            first_at: optional_time(row.try_get("first_click_at")?)?,
            last_at: optional_time(row.try_get("last_click_at")?)?,
        },
    })
}

fn optional_time(millis: Option<i64>) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
    millis.map(decode::time).transpose()
}

/// A list entry from a row of `number, reason, created_at, id`.
pub(super) fn listed<'r, R>(row: &'r R) -> StoreResult<ListedNumber>
where
    R: Row,
    usize: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ListedNumber {
        number: decode::number(row.try_get(0)?)?,
        reason: row.try_get::<Option<&str>, _>(1)?.map(str::to_string),
        created_at: decode::time(row.try_get(2)?)?,
        id: decode::id(row.try_get(3)?)?,
    })
}

/// The column and value that find a list entry.
pub(super) fn list_key(key: &ListKey) -> (&'static str, String) {
    match key {
        ListKey::Number(number) => ("number", number.e164().to_string()),
        ListKey::Id(id) => ("id", id.as_str().to_string()),
    }
}

/// The columns `inbox_entry` reads, in a `SELECT` list of `sandbox_sends`.
pub(super) const INBOX_COLUMNS: &str = "message_id, sender, to_number, body, at, sends";

/// What a sandbox handset received, from a row of `INBOX_COLUMNS`.
pub(super) fn inbox_entry<'r, R>(row: &'r R) -> StoreResult<InboxEntry>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(InboxEntry {
        message_id: decode::id(row.try_get("message_id")?)?,
        from: row.try_get::<&str, _>("sender")?.to_string(),
        to: decode::number(row.try_get("to_number")?)?,
        body: row.try_get::<&str, _>("body")?.to_string(),
        at: decode::time(row.try_get("at")?)?,
        sends: u32::try_from(row.try_get::<i64, _>("sends")?).unwrap_or(u32::MAX),
    })
}

/// The columns `outbox_entry` reads, in a `SELECT` list of `outbox`.
pub(super) const OUTBOX_COLUMNS: &str = "id, message_id, source, source_record, kind, payload";

/// A pending outbox entry, from a row of `OUTBOX_COLUMNS`.
pub(super) fn outbox_entry<'r, R>(row: &'r R) -> StoreResult<OutboxEntry>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        message_id: decode::id(row.try_get("message_id")?)?,
        source: decode::source(row.try_get("source")?, row.try_get("source_record")?)?,
        kind: decode::parsed("outbox kind", row.try_get("kind")?)?,
        payload: decode::json(row.try_get("payload")?)?,
    })
}

/// A kept receipt, from a row of `id, provider_message_id, is_part, status, detail,
/// received_at, tries`.
pub(super) fn kept_receipt<'r, R>(row: &'r R) -> StoreResult<KeptReceipt>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    Option<&'r str>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: &str = row.try_get("provider_message_id")?;
    let status = decode::receipt_status(row.try_get("status")?)?;
    let detail = row
        .try_get::<Option<&str>, _>("detail")?
        .map(str::to_string);
    let receipt = if row.try_get("is_part")? {
        Unmatched::Part(PartReceipt {
            part_id: id.to_string(),
            status,
            detail,
        })
    } else {
        Unmatched::Whole {
            provider_message_id: id.to_string(),
            status,
            detail,
        }
    };
    Ok(KeptReceipt {
        id: row.try_get("id")?,
        receipt,
        received_at: decode::time(row.try_get("received_at")?)?,
        tries: row.try_get::<i64, _>("tries")? as u32,
    })
}

/// The columns `opt_out` reads.
pub(super) const OPT_OUT_COLUMNS: &str = "number, sender, at, via, keyword, message_id";

/// An opt-out, from a row of `OPT_OUT_COLUMNS`.
pub(super) fn opt_out<'r, R>(row: &'r R) -> StoreResult<OptOut>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<&'r str>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(OptOut {
        number: decode::number(row.try_get("number")?)?,
        sender: row.try_get::<&str, _>("sender")?.to_string(),
        at: decode::time(row.try_get("at")?)?,
        via: decode::parsed("opt-out origin", row.try_get("via")?)?,
        keyword: row
            .try_get::<Option<&str>, _>("keyword")?
            .map(str::to_string),
        message_id: row
            .try_get::<Option<&str>, _>("message_id")?
            .map(decode::id)
            .transpose()?,
    })
}

/// The columns `review` reads, in a `SELECT` list of `opt_out_reviews`.
pub(super) const REVIEW_COLUMNS: &str =
    "id, number, sender, body, message_id, received_at, settled_at, outcome";

/// A held reply, from a row of `REVIEW_COLUMNS`.
pub(super) fn review<'r, R>(row: &'r R) -> StoreResult<Review>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<&'r str>: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let settled_at: Option<i64> = row.try_get("settled_at")?;
    let outcome: Option<&str> = row.try_get("outcome")?;
    Ok(Review {
        id: row.try_get("id")?,
        number: decode::number(row.try_get("number")?)?,
        sender: row.try_get::<&str, _>("sender")?.to_string(),
        body: row.try_get::<&str, _>("body")?.to_string(),
        message_id: row
            .try_get::<Option<&str>, _>("message_id")?
            .map(decode::id)
            .transpose()?,
        at: decode::time(row.try_get("received_at")?)?,
        settled: match (settled_at, outcome) {
            (Some(at), Some(outcome)) => Some((
                decode::time(at)?,
                decode::parsed("review outcome", outcome)?,
            )),
            _ => None,
        },
    })
}

/// The columns `verification` reads, in a `SELECT` list of `otp_verifications`.
pub(super) const VERIFICATION_COLUMNS: &str =
    "to_number, status, checks, max_checks, expires_at, created_at, message_id";

/// Verification `id`, from a row of `VERIFICATION_COLUMNS`.
pub(super) fn verification<'r, R>(
    row: &'r R,
    id: &VerificationId,
) -> StoreResult<VerificationRecord>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(VerificationRecord {
        id: id.clone(),
        to: decode::number(row.try_get("to_number")?)?,
        status: decode::parsed("verification state", row.try_get("status")?)?,
        checks: count(row.try_get("checks")?)?,
        max_checks: count(row.try_get("max_checks")?)?,
        expires_at: decode::time(row.try_get("expires_at")?)?,
        created_at: decode::time(row.try_get("created_at")?)?,
        message_id: decode::id(row.try_get("message_id")?)?,
    })
}

/// A stored count, which no valid row makes negative or huge.
pub(super) fn count(n: i64) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("stored count {n} is out of range")))
}

/// The statuses a message ends in, as PostgreSQL's `messages_finished` and its report queries
/// name them (SQLite's spell them out: see `sqlite/reports.rs`).
pub(super) const FINAL_STATUSES: &str =
    "('delivered', 'undelivered', 'failed', 'canceled', 'rejected')";

/// A usage bucket from a row of `bucket, status, messages, segments`.
pub(super) fn usage_bucket<'r, R>(row: &'r R) -> StoreResult<UsageBucket>
where
    R: Row,
    usize: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(UsageBucket {
        start: decode::time(row.try_get(0)?)?,
        status: decode::state(row.try_get(1)?)?,
        messages: row.try_get(2)?,
        segments: row.try_get(3)?,
    })
}

/// The columns `delivery_fact` reads, in a `SELECT` list of `messages`.
pub(super) const FACT_COLUMNS: &str = "seq, updated_at, coalesce(send_at, created_at) AS due_at, sender, source, source_record, status, route, \
    EXISTS (SELECT 1 FROM clicks WHERE clicks.message_id = messages.id) AS clicked, \
    EXISTS (SELECT 1 FROM replies WHERE replies.message_id = messages.id) AS replied, \
    EXISTS (SELECT 1 FROM opt_outs WHERE opt_outs.message_id = messages.id) AS opted_out";

/// A delivery fact from a row of `FACT_COLUMNS`.
pub(super) fn delivery_fact<'r, R>(row: &'r R) -> StoreResult<DeliveryFact>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(DeliveryFact {
        seq: row.try_get("seq")?,
        finished_at: decode::time(row.try_get("updated_at")?)?,
        due_at: decode::time(row.try_get("due_at")?)?,
        sender: row.try_get::<&str, _>("sender")?.to_string(),
        source: decode::source(row.try_get("source")?, row.try_get("source_record")?)?,
        status: decode::state(row.try_get("status")?)?,
        route: row.try_get::<Option<&str>, _>("route")?.map(str::to_string),
        clicked: row.try_get("clicked")?,
        replied: row.try_get("replied")?,
        opted_out: row.try_get("opted_out")?,
    })
}

/// A link target from a row of `message_id, url, expires_at`.
pub(super) fn link_target<'r, R>(row: &'r R) -> StoreResult<LinkTarget>
where
    R: Row,
    usize: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(LinkTarget {
        message_id: decode::id(row.try_get(0)?)?,
        url: row.try_get::<&str, _>(1)?.to_string(),
        expires_at: optional_time(row.try_get(2)?)?,
    })
}

//! Records read back from query rows, shared by every sqlx backend: the columns are the same in
//! each dialect, so one reader per record serves SQLite and PostgreSQL alike.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{decode, InboxEntry, ListKey, ListedNumber, MessageRecord, StoreResult};

/// The columns `message` reads, in a `SELECT` list.
pub(super) const MESSAGE_COLUMNS: &str = "seq, id, to_number, sender, status, status_detail, encoding, characters, segments, source, source_record, metadata, created_at, send_at, writeback_error";

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
        send_at: row
            .try_get::<Option<i64>, _>("send_at")?
            .map(decode::time)
            .transpose()?,
        writeback_error: row
            .try_get::<Option<&str>, _>("writeback_error")?
            .map(str::to_string),
        events: Vec::new(),
        replies: Vec::new(),
    })
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

//! A list's page as its query writes it: `limit` (1 to 100, 20 when absent) and `cursor` (a
//! `next_cursor` from the previous page, a position in the list).

use super::{messages::invalid, problem::ApiError};

/// Entries on a page when the query names no `limit`.
const DEFAULT_LIMIT: u32 = 20;

/// The page `limit` and `cursor` ask for, or the error naming the one that is wrong.
pub(super) fn page(
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<(u32, Option<i64>), ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| invalid("limit", "`limit` must be a number from 1 to 100"))?,
    };
    let before = cursor
        .map(|c| {
            c.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
                invalid(
                    "cursor",
                    "`cursor` must be a `next_cursor` from a previous page",
                )
            })
        })
        .transpose()?;
    Ok((limit, before))
}

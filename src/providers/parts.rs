//! How the receipts of a long message's parts make the message's own: final once every part's
//! receipt came, delivered only if every part was, otherwise the worst part's outcome.

use crate::store::{PartState, ReceiptStatus};

/// The message's outcome from its parts', once every part has one.
pub fn combined(parts: &[PartState]) -> Option<(ReceiptStatus, Option<String>)> {
    let known: Vec<&(ReceiptStatus, Option<String>)> = parts.iter().flatten().collect();
    if known.len() < parts.len() || parts.is_empty() {
        return None;
    }
    let worst = |status: ReceiptStatus| {
        parts.iter().enumerate().find_map(|(i, p)| match p {
            Some((s, detail)) if *s == status => Some((i, detail)),
            _ => None,
        })
    };
    for status in [ReceiptStatus::Failed, ReceiptStatus::Undelivered] {
        if let Some((i, detail)) = worst(status) {
            let words = match detail {
                Some(d) => format!("part {} of {}: {d}", i + 1, parts.len()),
                None => format!("part {} of {} {}", i + 1, parts.len(), status.as_str()),
            };
            return Some((status, Some(words)));
        }
    }
    Some((ReceiptStatus::Delivered, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(status: ReceiptStatus, detail: Option<&str>) -> PartState {
        Some((status, detail.map(str::to_string)))
    }

    #[test]
    fn a_message_waits_for_every_part() {
        let parts = [part(ReceiptStatus::Delivered, None), None];
        assert_eq!(combined(&parts), None);
        assert_eq!(combined(&[]), None);
    }

    #[test]
    fn a_message_is_delivered_only_when_every_part_is() {
        let parts = [
            part(ReceiptStatus::Delivered, None),
            part(ReceiptStatus::Delivered, None),
        ];
        assert_eq!(combined(&parts), Some((ReceiptStatus::Delivered, None)));
    }

    #[test]
    fn the_worst_part_decides_and_is_named() {
        let parts = [
            part(ReceiptStatus::Delivered, None),
            part(ReceiptStatus::Undelivered, Some("stat:EXPIRED")),
            part(ReceiptStatus::Failed, Some("stat:REJECTD err:011")),
        ];
        assert_eq!(
            combined(&parts),
            Some((
                ReceiptStatus::Failed,
                Some("part 3 of 3: stat:REJECTD err:011".into())
            ))
        );
        let parts = [
            part(ReceiptStatus::Undelivered, None),
            part(ReceiptStatus::Delivered, None),
        ];
        assert_eq!(
            combined(&parts),
            Some((
                ReceiptStatus::Undelivered,
                Some("part 1 of 2 undelivered".into())
            ))
        );
    }
}

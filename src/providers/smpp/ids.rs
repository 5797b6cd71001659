//! Message ids as the store keeps them. Most SMSCs write an id the same way in `submit_sm_resp`
//! and in its receipt; some write it in hex in one and in decimal in the other (Kannel's
//! `msg-id-type`). With `submit_ids` and `receipt_ids` set to `hex` or `decimal`, both are read
//! as numbers and kept in decimal, so a receipt finds its message whatever the SMSC's habit.

use crate::config::IdFormat;

/// How ids are read from each side and kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct MessageIds {
    submit: IdFormat,
    receipt: IdFormat,
}

impl MessageIds {
    /// Ids written as `submit` in `submit_sm_resp` and as `receipt` in receipts.
    pub(super) fn new(submit: IdFormat, receipt: IdFormat) -> Self {
        Self { submit, receipt }
    }

    /// The id `submit_sm_resp` gave, as kept.
    pub(super) fn submitted(&self, id: &str) -> String {
        self.kept(id, self.submit)
    }

    /// The id a receipt names, as kept.
    pub(super) fn receipted(&self, id: &str) -> String {
        self.kept(id, self.receipt)
    }

    fn kept(&self, id: &str, format: IdFormat) -> String {
        let radix = match format {
            IdFormat::Text => return id.to_string(),
            IdFormat::Hex => 16,
            IdFormat::Decimal => 10,
        };
        // An id that is not the number it should be is kept as written; it will match nothing
        // and its receipt is kept, then dropped, as any unknown id's.
        u128::from_str_radix(id.trim(), radix)
            .map(|n| n.to_string())
            .unwrap_or_else(|_| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_submit_id_meets_its_decimal_receipt() {
        let ids = MessageIds::new(IdFormat::Hex, IdFormat::Decimal);
        assert_eq!(ids.submitted("00A1b2"), ids.receipted("41394"));
        assert_eq!(ids.submitted("1000"), "4096");
    }

    #[test]
    fn text_ids_are_kept_as_written() {
        let ids = MessageIds::default();
        assert_eq!(ids.submitted("0A1B"), "0A1B");
        assert_eq!(ids.receipted("0a1b"), "0a1b");
    }

    #[test]
    fn an_id_that_is_not_a_number_is_kept_as_written() {
        let ids = MessageIds::new(IdFormat::Decimal, IdFormat::Decimal);
        assert_eq!(ids.receipted("12ab"), "12ab");
    }
}

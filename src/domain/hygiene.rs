//! Who may receive by the managed lists: never a denied number, and only listed ones when the
//! allow list is all that may receive.

/// The list policy, checked inside the commit that accepts a message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hygiene {
    /// Only numbers on the allow list may receive.
    pub allow_list_only: bool,
    /// The message may not go to a number opted out of its sender (every message but those
    /// the `[opt_outs]` policy exempts).
    pub honour_opt_outs: bool,
}

/// Where a recipient stands on the lists, as a store read it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listing {
    /// On the deny list.
    pub denied: bool,
    /// On the allow list.
    pub allowed: bool,
    /// Opted out of the message's sender, or of every sender.
    pub opted_out: bool,
}

impl Hygiene {
    /// Why the lists refuse a recipient, if they do.
    pub fn refusal(self, listing: Listing) -> Option<String> {
        if listing.denied {
            return Some("the number is on the deny list".into());
        }
        // The allow list lifts limits, never a person's own refusal.
        if self.honour_opt_outs && listing.opted_out {
            return Some("the recipient opted out of messages from this sender".into());
        }
        if self.allow_list_only && !listing.allowed {
            return Some(
                "only numbers on the allow list may receive (numbers.allow_list_only)".into(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_number_is_refused_even_when_also_allowed() {
        let both = Listing {
            denied: true,
            allowed: true,
            ..Listing::default()
        };
        for hygiene in [
            Hygiene::default(),
            Hygiene {
                allow_list_only: true,
                ..Hygiene::default()
            },
        ] {
            assert_eq!(
                hygiene.refusal(both).as_deref(),
                Some("the number is on the deny list")
            );
        }
    }

    #[test]
    fn only_allowed_numbers_receive_when_the_allow_list_is_all() {
        let only = Hygiene {
            allow_list_only: true,
            ..Hygiene::default()
        };
        assert!(only
            .refusal(Listing::default())
            .unwrap()
            .contains("allow_list_only"));
        let allowed = Listing {
            allowed: true,
            ..Listing::default()
        };
        assert_eq!(only.refusal(allowed), None);
        assert_eq!(Hygiene::default().refusal(Listing::default()), None);
    }

    #[test]
    fn an_opted_out_recipient_is_refused_unless_the_message_is_exempt_even_when_allowed() {
        let opted_out = Listing {
            opted_out: true,
            allowed: true,
            ..Listing::default()
        };
        let honouring = Hygiene {
            honour_opt_outs: true,
            ..Hygiene::default()
        };
        assert_eq!(
            honouring.refusal(opted_out).as_deref(),
            Some("the recipient opted out of messages from this sender")
        );
        assert_eq!(Hygiene::default().refusal(opted_out), None);
        assert_eq!(honouring.refusal(Listing::default()), None);
    }
}

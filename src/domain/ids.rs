//! Identifiers handed out to clients: a prefix naming the kind and a ULID, so ids sort by time.

use std::{fmt, str::FromStr};

/// Text that is not an id of the expected kind.
#[derive(Debug, thiserror::Error)]
#[error("not a valid id")]
pub struct BadId;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A fresh id.
            pub fn new() -> Self {
                Self(format!(concat!($prefix, "{}"), ulid::Ulid::new()))
            }

            /// The id as stored and shown.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = BadId;

            fn from_str(s: &str) -> Result<Self, BadId> {
                let ulid = s.strip_prefix($prefix).ok_or(BadId)?;
                ulid::Ulid::from_string(ulid).map_err(|_| BadId)?;
                Ok(Self(s.to_string()))
            }
        }
    };
}

prefixed_id!(
    /// A message's public id: `msg_` and a ULID.
    MessageId,
    "msg_"
);

prefixed_id!(
    /// A one-time-password verification's id: `otp_` and a ULID.
    VerificationId,
    "otp_"
);

prefixed_id!(
    /// An allow- or deny-list entry's id: `num_` and a ULID (the number itself is shown masked).
    ListEntryId,
    "num_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_round_trip_through_parsing() {
        let id = MessageId::new();
        assert_eq!(id.as_str().parse::<MessageId>().unwrap(), id);
        let v = VerificationId::new();
        assert_eq!(v.as_str().parse::<VerificationId>().unwrap(), v);
    }

    #[test]
    fn text_without_prefix_or_ulid_is_not_an_id() {
        assert!("01HZX".parse::<MessageId>().is_err());
        assert!("msg_nope".parse::<MessageId>().is_err());
        assert!(MessageId::new().as_str().parse::<VerificationId>().is_err());
    }
}

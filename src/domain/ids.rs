//! Identifiers handed out to clients.

use std::{fmt, str::FromStr};

/// A message's public id: `msg_` and a ULID, so ids sort by creation time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// A fresh id.
    pub fn new() -> Self {
        Self(format!("msg_{}", ulid::Ulid::new()))
    }

    /// The id as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text that is not a message id.
#[derive(Debug, thiserror::Error)]
#[error("not a message id")]
pub struct BadId;

impl FromStr for MessageId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let ulid = s.strip_prefix("msg_").ok_or(BadId)?;
        ulid::Ulid::from_string(ulid).map_err(|_| BadId)?;
        Ok(Self(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_round_trip_through_parsing() {
        let id = MessageId::new();
        assert_eq!(id.as_str().parse::<MessageId>().unwrap(), id);
    }

    #[test]
    fn text_without_prefix_or_ulid_is_not_an_id() {
        assert!("01HZX".parse::<MessageId>().is_err());
        assert!("msg_nope".parse::<MessageId>().is_err());
    }
}

//! Salesforce ids: the 15-character case-sensitive form and the 18-character case-safe form of
//! the same identifier compare equal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Alphabet of the three checksum characters that turn a 15-character id into 18.
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Key prefix of organization ids.
const ORG_PREFIX: &str = "00D";

/// Why a string is not a Salesforce id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Neither 15 nor 18 characters.
    #[error("a Salesforce id has 15 or 18 characters, not {0}")]
    Length(usize),
    /// A character outside `0-9A-Za-z`.
    #[error("character {character:?} at position {position} is not an ASCII letter or digit")]
    Charset {
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        character: char,
    },
    /// The last three characters of an 18-character id do not match its first fifteen.
    #[error("checksum suffix {found:?} does not match the id (expected {expected:?})")]
    Checksum {
        /// Suffix found in the input.
        found: String,
        /// Suffix computed from the first fifteen characters.
        expected: String,
    },
    /// A valid id that is not an organization id (those start with `00D`).
    #[error("an organization id starts with {ORG_PREFIX}, this one with {0:?}")]
    NotAnOrganization(String),
}

/// Any Salesforce record id, stored in its 18-character form.
///
/// Equality, ordering and hashing use the 18-character form, so the 15- and 18-character
/// spellings of one record are the same value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId([u8; 18]);

impl RecordId {
    /// Parses a 15- or 18-character id, checking the charset and, for 18 characters, the suffix.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let bytes = input.as_bytes();
        if let Some((position, character)) = input
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
        {
            return Err(IdError::Charset {
                position,
                character,
            });
        }
        let mut id = [0u8; 18];
        match bytes.len() {
            15 => {
                id[..15].copy_from_slice(bytes);
                id[15..].copy_from_slice(&checksum(bytes));
            }
            18 => {
                let expected = checksum(&bytes[..15]);
                if !bytes[15..].eq_ignore_ascii_case(&expected) {
                    return Err(IdError::Checksum {
                        found: input[15..].to_owned(),
                        expected: String::from_utf8_lossy(&expected).into_owned(),
                    });
                }
                id[..15].copy_from_slice(&bytes[..15]);
                id[15..].copy_from_slice(&expected);
            }
            n => return Err(IdError::Length(n)),
        }
        Ok(Self(id))
    }

    /// The 18-character, case-safe form.
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The 15-character, case-sensitive form.
    pub fn as_15(&self) -> &str {
        &self.as_str()[..15]
    }

    /// The three-character key prefix naming the object type (`003` Contact, `00D` organization…).
    pub fn key_prefix(&self) -> &str {
        &self.as_str()[..3]
    }

    /// Whether `other` (15 or 18 characters) names the same record; false if it is not an id.
    pub fn same_entity(&self, other: &str) -> bool {
        RecordId::parse(other).is_ok_and(|o| o == *self)
    }
}

/// Whether two strings are valid ids of the same record, in either length.
pub fn same_entity(a: &str, b: &str) -> bool {
    RecordId::parse(a).is_ok_and(|a| a.same_entity(b))
}

/// The checksum suffix: for each 5-character chunk, bit i is set when character i is uppercase.
fn checksum(id15: &[u8]) -> [u8; 3] {
    let mut suffix = [0u8; 3];
    for (slot, chunk) in suffix.iter_mut().zip(id15.chunks(5)) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        *slot = SUFFIX_ALPHABET[bits];
    }
    suffix
}

/// A Salesforce organization id (`00D…`), 15 or 18 characters on input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(RecordId);

impl OrgId {
    /// Parses an organization id, refusing ids of other object types.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let id = RecordId::parse(input)?;
        if id.key_prefix() != ORG_PREFIX {
            return Err(IdError::NotAnOrganization(id.key_prefix().to_owned()));
        }
        Ok(Self(id))
    }

    /// The 18-character form.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The 15-character form, as Salesforce puts it in `EnterpriseUrl` and `PartnerUrl`.
    pub fn as_15(&self) -> &str {
        self.0.as_15()
    }

    /// The organization id as a plain record id.
    pub fn record_id(&self) -> RecordId {
        self.0
    }

    /// Whether `other` (15 or 18 characters) is this organization's id.
    pub fn same_entity(&self, other: &str) -> bool {
        self.0.same_entity(other)
    }
}

macro_rules! string_like {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = IdError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_like!(RecordId);
string_like!(OrgId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_char_id_gets_the_documented_checksum_suffix() {
        // Pairs as Salesforce shows them (CASESAFEID and the 15-character id in the URL).
        for (short, long) in [
            ("001D000000IqhSL", "001D000000IqhSLIAZ"),
            ("00D000000000062", "00D000000000062EAA"),
            ("003000000000000", "003000000000000AAA"),
            ("a0B5g00000ABCde", "a0B5g00000ABCdeEAH"),
        ] {
            let id = RecordId::parse(short).unwrap();
            assert_eq!(id.as_str(), long, "{short}");
            assert_eq!(id.as_15(), short);
        }
    }

    #[test]
    fn fifteen_and_eighteen_char_forms_are_equal() {
        let a = RecordId::parse("001D000000IqhSL").unwrap();
        let b = RecordId::parse("001D000000IqhSLIAZ").unwrap();
        assert_eq!(a, b);
        assert!(a.same_entity("001D000000IqhSLIAZ"));
        assert!(b.same_entity("001D000000IqhSL"));
        assert!(same_entity("001D000000IqhSL", "001D000000IqhSLIAZ"));
    }

    #[test]
    fn ids_differing_only_in_case_are_different_records() {
        assert!(!same_entity("001D000000IqhSL", "001d000000IqhSL"));
        assert!(!same_entity("001D000000IqhSL", "not an id"));
    }

    #[test]
    fn lowercase_checksum_suffix_is_accepted() {
        let id = RecordId::parse("001D000000IqhSLiaz").unwrap();
        assert_eq!(id.as_str(), "001D000000IqhSLIAZ");
    }

    #[test]
    fn wrong_checksum_suffix_is_refused() {
        let err = RecordId::parse("001D000000IqhSLAAA").unwrap_err();
        assert_eq!(
            err,
            IdError::Checksum {
                found: "AAA".into(),
                expected: "IAZ".into()
            }
        );
    }

    #[test]
    fn wrong_length_and_charset_are_refused() {
        assert_eq!(RecordId::parse("001D00"), Err(IdError::Length(6)));
        assert_eq!(RecordId::parse(""), Err(IdError::Length(0)));
        assert_eq!(
            RecordId::parse("001D000000Iq-SL"),
            Err(IdError::Charset {
                position: 12,
                character: '-'
            })
        );
        assert!(matches!(
            RecordId::parse("001D000000IqhSé"),
            Err(IdError::Charset { position: 14, .. })
        ));
    }

    #[test]
    fn org_id_requires_the_00d_prefix() {
        let org = OrgId::parse("00D000000000062").unwrap();
        assert_eq!(org.as_str(), "00D000000000062EAA");
        assert!(org.same_entity("00D000000000062EAA"));
        assert_eq!(
            OrgId::parse("001D000000IqhSL"),
            Err(IdError::NotAnOrganization("001".into()))
        );
    }

    #[test]
    fn ids_serialize_as_their_eighteen_char_form() {
        let id: RecordId = serde_json::from_str("\"001D000000IqhSL\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"001D000000IqhSLIAZ\""
        );
        assert!(serde_json::from_str::<OrgId>("\"001D000000IqhSL\"").is_err());
        assert_eq!(format!("{id:?}"), "RecordId(001D000000IqhSLIAZ)");
    }
}

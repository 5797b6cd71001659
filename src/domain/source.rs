//! Where a message came from: the API, an OTP, or a CRM record (which gets write-back).

use std::fmt;

/// Where a message came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `POST /v1/messages`.
    Api,
    /// `POST /v1/otp`: the text carries a secret, so it never reaches a CRM.
    Otp,
    /// A CRM record, whose status, clicks and replies are written back to it.
    Crm {
        /// The connection, `kind:name`, e.g. `salesforce:prod` or `kintone:sales`.
        connection: String,
        /// The record in that CRM: for Salesforce `Object/Id` with the object's API name and
        /// the 18-character id (`Contact/0035j00000Pq7RsAAJ`), for kintone `app/$id`.
        record: String,
    },
}

/// A stored source that reads back as none of the known ones.
#[derive(Debug, thiserror::Error)]
#[error("not a message source: {0:?}")]
pub struct BadSource(pub String);

impl Source {
    /// The stored and shown name: `api`, `otp` or the CRM connection.
    pub fn name(&self) -> &str {
        match self {
            Source::Api => "api",
            Source::Otp => "otp",
            Source::Crm { connection, .. } => connection,
        }
    }

    /// The CRM record, for a CRM source.
    pub fn record(&self) -> Option<&str> {
        match self {
            Source::Crm { record, .. } => Some(record),
            _ => None,
        }
    }

    /// Whether the message's status changes and replies go to the outbox for CRM write-back.
    pub fn feeds_outbox(&self) -> bool {
        matches!(self, Source::Crm { .. })
    }

    /// Whether the text carries a secret, to be erased once the provider has it.
    pub fn text_is_secret(&self) -> bool {
        matches!(self, Source::Otp)
    }

    /// Rebuild a source from its stored name and record.
    pub fn from_stored(name: &str, record: Option<&str>) -> Result<Source, BadSource> {
        match (name, record) {
            ("api", None) => Ok(Source::Api),
            ("otp", None) => Ok(Source::Otp),
            (connection, Some(record))
                if connection
                    .split_once(':')
                    .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty()) =>
            {
                Ok(Source::Crm {
                    connection: connection.to_string(),
                    record: record.to_string(),
                })
            }
            _ => Err(BadSource(name.to_string())),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crm_sources_feed_the_outbox() {
        assert!(!Source::Api.feeds_outbox());
        assert!(!Source::Otp.feeds_outbox());
        let crm = Source::Crm {
            connection: "salesforce:prod".into(),
            record: "003xx000004TmiQAAS".into(),
        };
        assert!(crm.feeds_outbox());
    }

    #[test]
    fn only_otp_texts_are_secret() {
        assert!(Source::Otp.text_is_secret());
        assert!(!Source::Api.text_is_secret());
        let crm = Source::Crm {
            connection: "kintone:sales".into(),
            record: "12/345".into(),
        };
        assert!(!crm.text_is_secret());
    }

    #[test]
    fn every_source_round_trips_through_its_stored_form() {
        for source in [
            Source::Api,
            Source::Otp,
            Source::Crm {
                connection: "kintone:sales".into(),
                record: "12/345".into(),
            },
            Source::Crm {
                connection: "salesforce:prod".into(),
                record: "ns__Visit__c/a015j00000AbCdEAAV".into(),
            },
        ] {
            assert_eq!(
                Source::from_stored(source.name(), source.record()).unwrap(),
                source
            );
        }
    }

    #[test]
    fn unknown_stored_sources_are_errors() {
        assert!(Source::from_stored("crm", None).is_err());
        assert!(Source::from_stored("salesforce:prod", None).is_err());
        assert!(Source::from_stored("api", Some("x")).is_err());
        assert!(Source::from_stored(":x", Some("1")).is_err());
    }
}

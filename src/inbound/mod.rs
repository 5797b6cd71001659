//! CRMs calling in, one file per source: authenticate the sender, parse with the connector
//! crate, hand typed records to `mapping` and submit them through the one admission path.
//! Nothing else: no rule lives here (kintone's are in `mapping::kintone_rules`). Beside them,
//! `kintone_intake` takes a kintone record whoever brought it, `reconcile` polls kintone for
//! the webhooks it dropped, `external_services` serves the document a CRM imports to call the
//! API itself, and `kintone_notifications` shows what each kintone webhook was answered.

pub mod external_services;
pub mod kintone;
pub mod kintone_intake;
pub mod kintone_notifications;
pub mod reconcile;
pub mod record_action;
pub mod salesforce;
pub mod twilio;

use axum::{body::Bytes, extract::rejection::BytesRejection, http::StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use crate::{
    api::problem::quoted,
    config::{KintoneConfig, SalesforceConfig, Secret},
    messaging::{AdmitError, RecordOutcome},
};

/// Where an inbound call goes: a connection, and the secret that proves the caller is its CRM.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InboundPath {
    /// The connection's `name`.
    pub name: String,
    /// The connection's `inbound_token`.
    pub inbound_token: String,
}

/// Why an inbound call was refused before any record was looked at, or could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// No connection of that kind has this name.
    #[error("no {kind} connection named {name:?}")]
    UnknownConnection {
        /// `salesforce`, `kintone`.
        kind: &'static str,
        /// The name in the URL (quoted, cut short).
        name: String,
    },
    /// The token in the URL is not the connection's.
    #[error("the inbound token in the URL is not this connection's")]
    WrongToken,
    /// The body is not of the media type the route takes.
    #[error("send the body as {expected}")]
    UnsupportedMediaType {
        /// What the route takes, in words.
        expected: &'static str,
    },
    /// The body is larger than the route takes.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The route's limit.
        limit: usize,
    },
    /// The body could not be read to its end.
    #[error("the request body could not be read: {0}")]
    Unreadable(String),
    /// More records than one call may carry, or none.
    #[error("{0}")]
    Records(String),
    /// The body is not what the CRM sends on this route.
    #[error("{0}")]
    Malformed(String),
    /// The body comes from another source than the connection's (another kintone app).
    #[error("{message}")]
    OtherSource {
        /// The body's key that names the source (`app.id`).
        field: &'static str,
        /// Which source the connection takes, and which one this is.
        message: String,
    },
    /// The store could not take the records; those taken are kept, a retry is safe.
    #[error("the records could not be stored; retry later")]
    Unavailable(#[source] AdmitError),
}

/// A configured connection that inbound calls name in their path.
pub trait Connection {
    /// The kind, as errors name it: `Salesforce`, `kintone`.
    const KIND: &'static str;
    /// Its `name`.
    fn name(&self) -> &str;
    /// Its `inbound_token`.
    fn inbound_token(&self) -> &Secret;
}

impl Connection for SalesforceConfig {
    const KIND: &'static str = "Salesforce";

    fn name(&self) -> &str {
        &self.name
    }

    fn inbound_token(&self) -> &Secret {
        &self.inbound_token
    }
}

impl Connection for KintoneConfig {
    const KIND: &'static str = "kintone";

    fn name(&self) -> &str {
        &self.name
    }

    fn inbound_token(&self) -> &Secret {
        &self.inbound_token
    }
}

/// The connection named `name`.
pub fn find<'a, C: Connection>(connections: &'a [C], name: &str) -> Result<&'a C, InboundError> {
    connections
        .iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| InboundError::UnknownConnection {
            kind: C::KIND,
            name: quoted(name),
        })
}

/// The connection the path names, if the path's token is its inbound token.
pub fn authenticate<'a, C: Connection>(
    connections: &'a [C],
    path: &InboundPath,
) -> Result<&'a C, InboundError> {
    let connection = find(connections, &path.name)?;
    if !token_matches(&path.inbound_token, connection.inbound_token().expose()) {
        return Err(InboundError::WrongToken);
    }
    Ok(connection)
}

/// The body, or why it could not be read (over `limit`, cut short).
fn body(read: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, InboundError> {
    read.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => InboundError::TooLarge { limit },
        _ => InboundError::Unreadable(e.body_text()),
    })
}

/// Whether `given` is `expected`, in time that does not depend on where they differ.
pub fn token_matches(given: &str, expected: &str) -> bool {
    // Equal-length digests, compared without an early exit.
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The metric label of a record's outcome.
fn outcome_label(outcome: Result<&RecordOutcome, &AdmitError>) -> &'static str {
    match outcome {
        Ok(RecordOutcome::Accepted { .. }) => "accepted",
        Ok(RecordOutcome::Rejected { .. }) => "rejected",
        Ok(RecordOutcome::Replayed) => "replayed",
        Err(_) => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        assert!(token_matches("0123456789abcdef", "0123456789abcdef"));
        assert!(!token_matches("0123456789abcdeF", "0123456789abcdef"));
        assert!(!token_matches("", "0123456789abcdef"));
        assert!(!token_matches("0123456789abcdef0", "0123456789abcdef"));
    }
}

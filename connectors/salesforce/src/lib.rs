//! Salesforce for a CRM-to-SMS bridge, usable on its own.

pub mod ids;

pub use ids::{same_entity, IdError, OrgId, RecordId};

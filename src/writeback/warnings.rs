//! What each CRM connection's setup check found, shown by `/readyz` until it is fixed.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

/// Setup problems per connection, shared between the checks and `/readyz`.
#[derive(Clone, Default, Debug)]
pub struct SetupWarnings(Arc<RwLock<BTreeMap<String, Vec<String>>>>);

impl SetupWarnings {
    /// Replace what `connection`'s last check found.
    pub fn set(&self, connection: &str, problems: Vec<String>) {
        metrics::gauge!("tsunagi_crm_setup_problems", "connection" => connection.to_string())
            .set(problems.len() as f64);
        let mut all = self.0.write().expect("setup warnings");
        if problems.is_empty() {
            all.remove(connection);
        } else {
            all.insert(connection.to_string(), problems);
        }
    }

    /// Every problem found, each naming its connection.
    pub fn all(&self) -> Vec<String> {
        self.0
            .read()
            .expect("setup warnings")
            .iter()
            .flat_map(|(connection, problems)| {
                problems.iter().map(move |p| format!("{connection}: {p}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_found_fine_again_leaves_no_warning() {
        let warnings = SetupWarnings::default();
        warnings.set("salesforce:dev", vec!["Contact.X__c does not exist".into()]);
        warnings.set("salesforce:acme", Vec::new());
        assert_eq!(
            warnings.all(),
            ["salesforce:dev: Contact.X__c does not exist"]
        );
        warnings.set("salesforce:dev", Vec::new());
        assert!(warnings.all().is_empty());
    }
}

//! What each CRM connection's setup check found, shown by `/readyz` until it is fixed.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

/// Setup problems per connection, shared between the checks and `/readyz`. A connection may
/// have several checks, each keyed `connection#check` (`kintone:sales#poll`), shown together.
#[derive(Clone, Default, Debug)]
pub struct SetupWarnings(Arc<RwLock<BTreeMap<String, Vec<String>>>>);

/// The connection a warning key names.
fn connection_of(key: &str) -> &str {
    key.split_once('#')
        .map_or(key, |(connection, _)| connection)
}

impl SetupWarnings {
    /// Replace what the check `key` (a connection, or `connection#check`) last found.
    pub fn set(&self, key: &str, problems: Vec<String>) {
        let mut all = self.0.write().expect("setup warnings");
        if problems.is_empty() {
            all.remove(key);
        } else {
            all.insert(key.to_string(), problems);
        }
        let connection = connection_of(key);
        let count: usize = all
            .iter()
            .filter(|(k, _)| connection_of(k) == connection)
            .map(|(_, problems)| problems.len())
            .sum();
        metrics::gauge!("tsunagi_crm_setup_problems", "connection" => connection.to_string())
            .set(count as f64);
    }

    /// Every problem found, each naming its connection.
    pub fn all(&self) -> Vec<String> {
        self.0
            .read()
            .expect("setup warnings")
            .iter()
            .flat_map(|(key, problems)| {
                let connection = connection_of(key);
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
        warnings.set("kintone:sales", vec!["a".into()]);
        warnings.set("kintone:sales#poll", vec!["b".into()]);
        assert_eq!(warnings.all(), ["kintone:sales: a", "kintone:sales: b"]);
        warnings.set("kintone:sales#poll", Vec::new());
        assert_eq!(warnings.all(), ["kintone:sales: a"]);
    }
}

//! Finding where a code leads. A link never changes once made, so what was read is kept in
//! memory (bounded) and a link clicked again and again costs no store read; this holds across
//! instances too, since no instance can change a link.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::store::{LinkTarget, Store, StoreResult};

/// Most links kept in memory (each a few hundred bytes); when full, the memory starts over.
const KEPT: usize = 20_000;

/// Reads links through a bounded in-memory copy.
pub struct LinkResolver {
    store: Arc<dyn Store>,
    kept: Mutex<HashMap<String, LinkTarget>>,
}

impl LinkResolver {
    /// Resolve codes from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The link `code` names, if one was made.
    pub async fn resolve(&self, code: &str) -> StoreResult<Option<LinkTarget>> {
        if let Some(target) = self.kept.lock().expect("not poisoned").get(code) {
            return Ok(Some(target.clone()));
        }
        let found = self.store.link(code).await?;
        if let Some(target) = &found {
            let mut kept = self.kept.lock().expect("not poisoned");
            if kept.len() >= KEPT {
                kept.clear();
            }
            kept.insert(code.to_string(), target.clone());
        }
        Ok(found)
    }
}

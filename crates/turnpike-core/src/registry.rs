//! `Registry`: runtime state keyed by a stable id, shared by every snapshot that uses it and dropped with the last.
//!
//! A reload compiles a new snapshot that asks the registry for the state of each upstream, endpoint or policy by its
//! id; entries that are still in use are handed back as they are (counters, pools, health survive the reload), new ids
//! get fresh state, and state no snapshot refers to any more is dropped together with its background tasks.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

/// A map from a stable key to shared runtime state, holding only weak references.
#[derive(Debug)]
pub struct Registry<K, V> {
    entries: Mutex<HashMap<K, Weak<V>>>,
}

impl<K: Eq + Hash + Clone, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V> Registry<K, V> {
    /// Returns the live state for `key`, or creates it with `make` if no snapshot holds it any more.
    pub fn get_or_insert_with(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(live) = entries.get(key).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(make());
        entries.insert(key.clone(), Arc::downgrade(&fresh));
        // Forget entries whose state was dropped, so the map does not grow with every id ever seen.
        entries.retain(|_, weak| weak.strong_count() > 0);
        fresh
    }

    /// Returns the live state for `key`, if some snapshot still holds it.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).and_then(Weak::upgrade)
    }

    /// All live entries (for the admin API and metrics).
    pub fn live(&self) -> Vec<(K, Arc<V>)> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.iter().filter_map(|(k, w)| w.upgrade().map(|v| (k.clone(), v))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn keeps_state_while_a_snapshot_holds_it() {
        let reg: Registry<String, AtomicU32> = Registry::default();
        let a = reg.get_or_insert_with(&"users".to_string(), || AtomicU32::new(0));
        a.fetch_add(5, Ordering::Relaxed);
        let again = reg.get_or_insert_with(&"users".to_string(), || AtomicU32::new(0));
        assert_eq!(again.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn drops_state_no_snapshot_holds() {
        let reg: Registry<String, AtomicU32> = Registry::default();
        let a = reg.get_or_insert_with(&"users".to_string(), || AtomicU32::new(7));
        drop(a);
        assert!(reg.get(&"users".to_string()).is_none());
        let fresh = reg.get_or_insert_with(&"users".to_string(), || AtomicU32::new(0));
        assert_eq!(fresh.load(Ordering::Relaxed), 0);
    }
}

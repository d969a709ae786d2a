//! A map whose entries expire, with a bound on how many it holds: the one
//! cache mechanism behind verified tokens and exchanged tokens.
//!
//! Reads take a shared lock, so concurrent sessions do not queue behind one
//! another on a hit. When the bound is reached, expired entries go first;
//! if every entry is still live, the map starts over rather than grow (the
//! entries are recomputed on their next use).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

/// Entries of type `V` by key `K`, each until its own deadline.
pub struct BoundedCache<K, V> {
    entries: RwLock<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> BoundedCache<K, V> {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The value for `key`, when it has not expired.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(value, _)| value.clone())
    }

    /// Keeps `value` for `key` until `until` (replacing what was there).
    pub fn put(&self, key: K, value: V, until: Instant) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, until));
    }

    /// How many entries are held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = BoundedCache::new(4);
        let now = Instant::now();
        cache.put("live", 1, now + Duration::from_secs(60));
        cache.put("gone", 2, now);
        assert_eq!(cache.get("live"), Some(1));
        assert_eq!(cache.get("gone"), None);
        assert_eq!(cache.get("never"), None);
    }

    #[test]
    fn the_bound_holds_and_expired_entries_go_first() {
        let cache = BoundedCache::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        cache.put(0, 0, Instant::now());
        cache.put(1, 1, later);
        cache.put(2, 2, later);
        cache.put(3, 3, later);
        assert_eq!(cache.len(), 3, "the expired entry made room");
        assert_eq!((cache.get(&1), cache.get(&3)), (Some(1), Some(3)));
        for n in 4..100 {
            cache.put(n, n, later);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&99), Some(99));
        cache.put(99, 100, later);
        assert_eq!(cache.get(&99), Some(100), "replacing does not evict");
    }
}

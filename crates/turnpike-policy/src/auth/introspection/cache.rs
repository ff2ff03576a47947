//! The cache of active tokens: bounded, each entry with its own expiry, oldest evicted first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;
use turnpike_core::Identity;

/// SHA-256 of a token: the cache never holds the token itself.
pub(super) type TokenDigest = [u8; 32];

struct Entry {
    identity: Arc<Identity>,
    expires: Instant,
    /// Which insertion this is, to tell stale entries of `order` from live ones.
    seq: u64,
}

/// Identities of active tokens by token digest.
#[derive(Default)]
pub(super) struct Cache {
    entries: HashMap<TokenDigest, Entry>,
    /// Insertion order, for eviction; may hold stale pairs (replaced or removed entries), compacted now and then.
    order: VecDeque<(TokenDigest, u64)>,
    next_seq: u64,
}

impl Cache {
    /// The identity cached for `key`, unless it expired (it is then dropped).
    pub(super) fn get(&mut self, key: &TokenDigest, now: Instant) -> Option<Arc<Identity>> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.identity.clone());
        }
        self.entries.remove(key);
        None
    }

    /// Caches `identity` for `key` until `expires`, keeping at most `max_entries` entries.
    pub(super) fn insert(&mut self, key: TokenDigest, identity: Arc<Identity>, expires: Instant, max_entries: usize) {
        if max_entries == 0 {
            return;
        }
        self.entries.remove(&key);
        while self.entries.len() >= max_entries {
            if !self.evict_oldest() {
                break;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(key, Entry { identity, expires, seq });
        self.order.push_back((key, seq));
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Removes the oldest live entry; `false` if there was none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }

    /// How many tokens are cached (expired ones included until they are looked up or evicted).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use turnpike_core::IdentitySource;

    use super::*;

    fn identity(n: u8) -> Arc<Identity> {
        Arc::new(Identity::new(IdentitySource::Introspection, Some(Arc::from(n.to_string()))))
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_and_the_oldest_go_first_when_full() {
        let mut cache = Cache::default();
        let now = Instant::now();
        cache.insert([1; 32], identity(1), now + Duration::from_secs(10), 2);
        cache.insert([2; 32], identity(2), now + Duration::from_secs(1), 2);
        assert!(cache.get(&[2; 32], Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&[2; 32], Instant::now()).is_none(), "expired");
        assert!(cache.get(&[1; 32], Instant::now()).is_some());

        cache.insert([3; 32], identity(3), Instant::now() + Duration::from_secs(10), 2);
        cache.insert([4; 32], identity(4), Instant::now() + Duration::from_secs(10), 2);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[1; 32], Instant::now()).is_none(), "the oldest was evicted");
        assert!(cache.get(&[4; 32], Instant::now()).is_some());

        // Replacing an entry over and over does not grow the eviction queue without bound.
        for _ in 0..1000 {
            cache.insert([4; 32], identity(4), Instant::now() + Duration::from_secs(10), 2);
        }
        assert!(cache.order.len() <= 2 * cache.len() + 65);
        assert_eq!(cache.len(), 2);

        cache.insert([5; 32], identity(5), Instant::now() + Duration::from_secs(10), 0);
        assert!(cache.get(&[5; 32], Instant::now()).is_none(), "max_entries 0 caches nothing");
    }
}

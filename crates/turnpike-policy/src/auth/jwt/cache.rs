//! The verified-token cache: SHA-256 of a token to the identity it proved, until the token's `exp` (or the
//! configured `max_ttl`, whichever comes first). Sharded mutexes, bounded, eviction O(1) amortized.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;
use turnpike_core::Identity;

const SHARDS: usize = 16;

/// A cache key: SHA-256 over the policy's settings digest and the token.
pub(crate) type CacheKey = [u8; 32];

struct Entry {
    identity: Arc<Identity>,
    expires: Instant,
}

/// Verified tokens. Only tokens that passed every check go in.
pub(crate) struct TokenCache {
    shards: Vec<Mutex<HashMap<CacheKey, Entry>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("entries", &self.len()).finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl TokenCache {
    fn shard(&self, key: &CacheKey) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        self.shards[usize::from(key[0]) % SHARDS].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The identity of a token verified before, if its entry has not expired at `now`.
    pub(crate) fn get(&self, key: &CacheKey, now: Instant) -> Option<Arc<Identity>> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(entry) if entry.expires > now => Some(entry.identity.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `identity` until `expires`, with about `max_entries` entries in all. A full shard first drops its
    /// expired entries and, if that freed less than an eighth of it, arbitrary ones down to seven eighths: the
    /// next sweep is then at least an eighth of a shard of inserts away.
    pub(crate) fn insert(
        &self,
        key: CacheKey,
        identity: Arc<Identity>,
        expires: Instant,
        max_entries: usize,
        now: Instant,
    ) {
        if max_entries == 0 {
            return;
        }
        let per_shard = max_entries.div_ceil(SHARDS);
        let mut shard = self.shard(&key);
        if shard.len() >= per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.expires > now);
            let keep = per_shard - per_shard.div_ceil(8);
            if shard.len() > keep {
                let excess: Vec<CacheKey> = shard.keys().take(shard.len() - keep).copied().collect();
                for k in excess {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(key, Entry { identity, expires });
    }

    /// Forgets every token (a key was removed from the key set: tokens it signed must be checked again).
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// The number of entries, expired ones included.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

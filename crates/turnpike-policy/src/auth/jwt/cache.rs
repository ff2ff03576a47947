//! The verified-token cache: a token to the identity it proved, until the token's `exp` (or the configured
//! `max_ttl`, whichever comes first). Sharded mutexes, bounded, eviction O(1) amortized.
//!
//! Entries are found by a keyed hash (SipHash with a per-process random key) of the token's tail — its signature,
//! which differs between any two tokens — and hold the whole token, compared byte for byte on a hit, with the
//! settings digest it was verified under. A hit therefore costs a short hash and one comparison instead of a
//! SHA-256 over the whole token (the difference is a fifth of a proxied request), and only the exact token that
//! was verified ever matches: a forged token sharing a cached token's signature misses and is verified (and
//! refused). Only verified tokens are inserted, so a client cannot fill a bucket. Like Envoy's JWT cache, this
//! keeps verified tokens in memory until they expire (`cache.max_entries: 0` turns the cache off).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;
use turnpike_core::Identity;

const SHARDS: usize = 16;

/// How many bytes of the token's end are hashed: the tail of its signature.
const HASHED_TAIL: usize = 48;

/// A cache key: the keyed hash of the token's tail.
type CacheKey = u64;

struct Entry {
    token: Box<str>,
    /// The digest of the settings the token was verified under (a reload that changes them must not be served
    /// identities computed under the old ones).
    salt: [u8; 32],
    identity: Arc<Identity>,
    expires: Instant,
}

/// Verified tokens. Only tokens that passed every check go in.
pub(crate) struct TokenCache {
    shards: Vec<Mutex<HashMap<CacheKey, Entry>>>,
    hasher: RandomState,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("entries", &self.len()).finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }
}

impl TokenCache {
    fn key(&self, token: &str) -> CacheKey {
        let bytes = token.as_bytes();
        let mut h = self.hasher.build_hasher();
        h.write_usize(bytes.len());
        h.write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
        h.finish()
    }

    fn shard(&self, key: CacheKey) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        // The low bits pick the bucket inside the shard's map; the high ones pick the shard.
        let index = usize::try_from(key >> 60).unwrap_or(0) % SHARDS;
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The identity `token` proved when it was verified under the settings `salt`, if that has not expired at
    /// `now`.
    pub(crate) fn get(&self, token: &str, salt: &[u8; 32], now: Instant) -> Option<Arc<Identity>> {
        let key = self.key(token);
        let mut shard = self.shard(key);
        match shard.get(&key) {
            Some(entry) if *entry.token != *token || entry.salt != *salt => None,
            Some(entry) if entry.expires > now => Some(entry.identity.clone()),
            Some(_) => {
                shard.remove(&key);
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
        token: &str,
        salt: [u8; 32],
        identity: Arc<Identity>,
        expires: Instant,
        max_entries: usize,
        now: Instant,
    ) {
        if max_entries == 0 {
            return;
        }
        let per_shard = max_entries.div_ceil(SHARDS);
        let key = self.key(token);
        let mut shard = self.shard(key);
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
        shard.insert(key, Entry { token: token.into(), salt, identity, expires });
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

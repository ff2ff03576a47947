//! The in-process store: counters of one limit in shards of hash maps, each behind its own mutex (held for one
//! decision: a few dozen nanoseconds), keyed by a keyed 64-bit hash of the request's key. Memory stays bounded
//! under any number of distinct keys: a shard that doubled since its last sweep forgets counters that are back to
//! their initial state, and past `max_keys` the least recently used go.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::algorithm::{Algorithm, Counter, Nanos, Quota, Verdict};

/// Shards per store: enough that two to a few dozen cores rarely meet on one lock.
const SHARDS: usize = 64;

/// A shard sweeps when it has grown to this many keys at least.
const MIN_SWEEP: usize = 64;

/// One limit's counters.
#[derive(Debug)]
pub struct LocalStore {
    shards: Box<[Mutex<Shard>]>,
    /// Keys per shard before the least recently used are dropped.
    max_per_shard: usize,
    /// Keys the request keys into 64 bits (random per process: clients cannot aim for collisions).
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
    /// Sweep when the map reaches this size.
    sweep_at: usize,
}

#[derive(Debug)]
struct Entry {
    counter: Counter,
    touched: Nanos,
}

/// The keys are hashes already.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl LocalStore {
    /// An empty store keeping at most about `max_keys` keys.
    pub fn new(max_keys: u64) -> Self {
        let max_per_shard = usize::try_from(max_keys.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { map: HashMap::default(), sweep_at: MIN_SWEEP })).collect(),
            max_per_shard,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// A hasher for a request key (feed it the key parts, then [`Hasher::finish`]).
    pub(crate) fn key_hasher(&self) -> impl Hasher + use<> {
        self.hasher.build_hasher()
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        // Bits the map does not use for buckets (low) or control bytes (high).
        let index = (key >> 32) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides a request for `key` and takes its cost if allowed. `idle` is the loosest quota any caller of this
    /// limit can have (used to tell when a counter may be forgotten).
    pub fn take(&self, algorithm: &Algorithm, quota: Quota, idle: Quota, key: u64, now: Nanos, cost: u64) -> Verdict {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.map.get_mut(&key) {
            entry.touched = now;
            return algorithm.take(quota, &mut entry.counter, now, cost);
        }
        let mut counter = algorithm.fresh(quota);
        let verdict = algorithm.take(quota, &mut counter, now, cost);
        if shard.map.len() >= shard.sweep_at {
            self.sweep(&mut shard, algorithm, idle, now);
        }
        shard.map.insert(key, Entry { counter, touched: now });
        verdict
    }

    /// Gives back what a `take` at `taken_at` took (another limit refused the request, or a concurrency slot was
    /// released).
    pub fn give_back(&self, algorithm: &Algorithm, quota: Quota, key: u64, now: Nanos, taken_at: Nanos, cost: u64) {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.map.get_mut(&key) {
            algorithm.give_back(quota, &mut entry.counter, now, taken_at, cost);
        }
    }

    /// Forgets idle counters; then, if the shard is still over 3/4 of its cap, the least recently used down to
    /// 3/4 (so the next sweep is at least a quarter of the cap's inserts away: sweeping stays O(1) per insert).
    fn sweep(&self, shard: &mut Shard, algorithm: &Algorithm, idle: Quota, now: Nanos) {
        shard.map.retain(|_, entry| !algorithm.is_idle(idle, &entry.counter, now));
        let keep = self.max_per_shard - self.max_per_shard / 4;
        if shard.map.len() > keep {
            let cut = shard.map.len() - keep;
            let mut touched: Vec<Nanos> = shard.map.values().map(|e| e.touched).collect();
            let (_, &mut threshold, _) = touched.select_nth_unstable(cut - 1);
            let mut to_drop = cut;
            shard.map.retain(|_, entry| {
                if to_drop > 0 && entry.touched <= threshold {
                    to_drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        let floor = MIN_SWEEP.min(self.max_per_shard);
        shard.sweep_at = (shard.map.len() * 2).clamp(floor, self.max_per_shard);
        if shard.map.capacity() > shard.map.len() * 4 && shard.map.capacity() > MIN_SWEEP * 4 {
            shard.map.shrink_to(shard.map.len() * 2);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the maps (table memory; a sliding log's entries are counted on top).
    pub fn memory_bytes(&self) -> usize {
        let slot = size_of::<(u64, Entry)>() + 1;
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                let logs: usize = shard
                    .map
                    .values()
                    .map(|e| match &e.counter {
                        Counter::Log(log) => log.capacity() * size_of::<(Nanos, u32)>(),
                        _ => 0,
                    })
                    .sum();
                shard.map.capacity() * slot + logs
            })
            .sum::<usize>()
            + size_of::<Self>()
    }
}

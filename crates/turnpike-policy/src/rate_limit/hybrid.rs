//! The hybrid store: units are taken from the shared Redis counter in batches (`batch`), and each instance spends
//! its batch locally, so only about one request in `batch` costs a round trip.
//!
//! **Bounds.** Units are taken from Redis before they are spent, so over the life of a counter no more are spent
//! than Redis granted. What a batch changes is *when*: units granted in one window may be spent early in the next
//! (a lease lives at most [`LEASE_TTL`], and never past the end of the fixed window it was taken in), so per window
//! an instance may let through up to `batch - 1` units more than the limit (the overshoot: at most
//! `instances x (batch - 1)` per window), and units leased by one instance are not available to another until
//! their lease expires unused (the undershoot: they are dropped, not given back).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::algorithm::{Algorithm, Nanos, SECOND, Verdict};
use super::redis::{RedisStore, RedisTake, StoreError};

/// The longest an instance keeps leased units.
pub const LEASE_TTL: Nanos = SECOND;

/// Leases of one limit, by key.
#[derive(Debug, Default)]
pub struct HybridStore {
    leases: Mutex<Leases>,
}

#[derive(Debug, Default)]
struct Leases {
    map: HashMap<String, Lease>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Units left to spend.
    left: u64,
    /// When the unspent units are dropped.
    expires: Nanos,
    /// What Redis said when the units were taken (remaining after them, reset).
    shared: Verdict,
}

impl HybridStore {
    /// Spends `cost` units of `key` from the lease, or takes a batch from Redis first.
    pub async fn take(
        &self,
        redis: &RedisStore,
        item: &RedisTake<'_>,
        batch: u64,
        now: Nanos,
    ) -> Result<Verdict, StoreError> {
        if let Some(verdict) = self.spend(item.key, item.cost, now) {
            return Ok(verdict);
        }
        let want = batch.max(item.cost);
        let (granted, shared) = redis.take_batch(item, want).await?;
        // Into the lease first: requests of this instance that fetched at the same time pool what they got, so a
        // burst that sent several fetches strands nothing (a request Redis gave too little may find enough there).
        self.store(item.key, granted, now, item.algorithm, shared.verdict);
        if let Some(verdict) = self.spend(item.key, item.cost, now) {
            return Ok(verdict);
        }
        let mut refused = shared.verdict;
        refused.allowed = false;
        if refused.retry_after == 0 {
            refused.retry_after = SECOND;
        }
        Ok(refused)
    }

    /// Spends `cost` units of `key` from a live lease with enough left; `None` when Redis must be asked.
    pub fn spend(&self, key: &str, cost: u64, now: Nanos) -> Option<Verdict> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let lease = leases.map.get_mut(key)?;
        if lease.expires <= now || lease.left < cost {
            return None;
        }
        lease.left -= cost;
        Some(Verdict { allowed: true, remaining: lease.shared.remaining + lease.left, ..lease.shared })
    }

    fn store(&self, key: &str, left: u64, now: Nanos, algorithm: &Algorithm, shared: Verdict) {
        let mut ttl = LEASE_TTL;
        if let Algorithm::FixedWindow(span) = algorithm {
            // Never spend units of one fixed window in the next: that is where the overshoot would grow.
            ttl = ttl.min(span.bounds(now).1 - now);
        }
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.map.len() >= leases.sweep_at {
            leases.map.retain(|_, lease| lease.expires > now && lease.left > 0);
            leases.sweep_at = (leases.map.len() * 2).max(64);
        }
        match leases.map.get_mut(key) {
            Some(lease) if lease.expires > now => {
                lease.left += left;
                lease.shared = shared;
            }
            _ => {
                leases.map.insert(key.to_string(), Lease { left, expires: now + ttl, shared });
            }
        }
    }

    /// Returns units a refused request took from the lease.
    pub fn give_back(&self, key: &str, cost: u64) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lease) = leases.map.get_mut(key) {
            lease.left += cost;
        }
    }
}

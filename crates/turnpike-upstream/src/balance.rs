//! Load balancing: which endpoint of an upstream gets the next request.
//!
//! The algorithm is a setting (in the snapshot); its position — the round-robin counter, the smooth weighted
//! round-robin's current weights — is state, kept across reloads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::WeightedEndpoint;

/// How an upstream spreads requests over its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each endpoint in turn, ignoring weights.
    RoundRobin,
    /// nginx's smooth weighted round robin: endpoints in proportion to their weights, interleaved (5,1,1 gives
    /// a a b a c a a, not a a a a a b c).
    WeightedRoundRobin,
    /// The endpoint with the fewest requests in flight relative to its weight; ties go round robin.
    LeastInFlight,
    /// Two endpoints at random, the one with fewer requests in flight relative to its weight wins
    /// ("power of two choices": nearly as good as least-in-flight, O(1), no herding).
    PowerOfTwoChoices,
    /// Power of two choices on expected latency: the response-time EWMA times (requests in flight + 1), relative
    /// to the weight (Finagle's and Linkerd's "peak EWMA"). Slow or overloaded endpoints get less traffic.
    Ewma,
}

/// A balancer's position, per upstream.
#[derive(Debug, Default)]
pub struct BalancerState {
    next: AtomicUsize,
    smooth: Mutex<Vec<i64>>,
}

impl BalancerState {
    /// Picks the index of an endpoint for which `usable` holds, or `None` when there is none.
    pub fn pick(
        &self,
        balance: Balance,
        endpoints: &[WeightedEndpoint],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match endpoints.len() {
            0 => return None,
            1 => return usable(0).then_some(0),
            _ => {}
        }
        match balance {
            Balance::RoundRobin => self.round_robin(endpoints.len(), usable),
            Balance::WeightedRoundRobin => self.smooth_weighted(endpoints, usable),
            Balance::LeastInFlight => self.least_in_flight(endpoints, usable),
            Balance::PowerOfTwoChoices => two_choices(endpoints, usable, less_loaded),
            Balance::Ewma => two_choices(endpoints, usable, cheaper),
        }
    }

    fn round_robin(&self, n: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|step| (start + step) % n).find(|&i| usable(i))
    }

    fn smooth_weighted(&self, endpoints: &[WeightedEndpoint], usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.smooth.lock().unwrap_or_else(|p| p.into_inner());
        if current.len() != endpoints.len() {
            // The endpoint list changed in a reload: start the cycle again.
            current.clear();
            current.resize(endpoints.len(), 0);
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, e) in endpoints.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            total += i64::from(e.weight);
            current[i] += i64::from(e.weight);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }

    fn least_in_flight(&self, endpoints: &[WeightedEndpoint], usable: impl Fn(usize) -> bool) -> Option<usize> {
        // Start the scan at a rotating offset so ties spread instead of always landing on the first endpoint.
        let n = endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<usize> = None;
        for step in 0..n {
            let i = (start + step) % n;
            if usable(i) && best.is_none_or(|b| less_loaded(&endpoints[i], &endpoints[b])) {
                best = Some(i);
            }
        }
        best
    }
}

/// Two distinct endpoints at random; `better(a, b)` says whether `a` should win over `b`. When either is not
/// usable, the two candidates are the first usable endpoints from a random starting point instead.
fn two_choices(
    endpoints: &[WeightedEndpoint],
    usable: impl Fn(usize) -> bool,
    better: fn(&WeightedEndpoint, &WeightedEndpoint) -> bool,
) -> Option<usize> {
    let n = endpoints.len() as u64;
    let r = crate::fast_random();
    let a = (r % n) as usize;
    let mut b = ((r >> 32) % (n - 1)) as usize;
    if b >= a {
        b += 1;
    }
    let (a, b) = match (usable(a), usable(b)) {
        (true, true) => (a, b),
        _ => {
            let mut found = (0..endpoints.len()).map(|step| (a + step) % endpoints.len()).filter(|&i| usable(i));
            let first = found.next()?;
            match found.next() {
                Some(second) => (first, second),
                None => return Some(first),
            }
        }
    };
    Some(if better(&endpoints[b], &endpoints[a]) { b } else { a })
}

/// `a` carries less load than `b` relative to their weights (in_flight / weight, compared without division).
fn less_loaded(a: &WeightedEndpoint, b: &WeightedEndpoint) -> bool {
    u64::from(a.endpoint.in_flight()) * u64::from(b.weight) < u64::from(b.endpoint.in_flight()) * u64::from(a.weight)
}

/// `a` is expected to answer sooner than `b`: EWMA x (in flight + 1) / weight. An endpoint without a sample yet
/// counts as fast, so new endpoints are tried.
fn cheaper(a: &WeightedEndpoint, b: &WeightedEndpoint) -> bool {
    let cost = |e: &WeightedEndpoint, other_weight: u32| {
        u128::from(e.endpoint.health.ewma_us()) * u128::from(e.endpoint.in_flight() + 1) * u128::from(other_weight)
    };
    let (ca, cb) = (cost(a, b.weight), cost(b, a.weight));
    ca < cb || (ca == cb && less_loaded(a, b))
}

/// A Maglev lookup table (Google's Maglev, NSDI 2016): keys hash to endpoints so that every endpoint gets an
/// equal share (by weight) and removing one endpoint moves little more than that endpoint's keys. The table is
/// built from the endpoints' addresses only, so every gateway instance maps a key to the same endpoint.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table for `endpoints` (named by `names`, in the same order); `None` when there are none.
    pub fn new(names: &[String], weights: &[u32]) -> Option<Self> {
        let n = names.len();
        if n == 0 {
            return None;
        }
        let size = table_size(n);
        let max_weight = f64::from(weights.iter().copied().max().unwrap_or(1).max(1));
        let perms: Vec<(u64, u64)> = names
            .iter()
            .map(|name| {
                let h = stable_hash(name.as_bytes());
                let offset = h % size;
                let skip = (mix(h ^ 0x9e37_79b9_7f4a_7c15) % (size - 1)) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut credit = vec![0f64; n];
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        'fill: loop {
            for i in 0..n {
                credit[i] += f64::from(weights[i].max(1)) / max_weight;
                while credit[i] >= 1.0 {
                    credit[i] -= 1.0;
                    let (offset, skip) = perms[i];
                    let mut slot = (offset + next[i] * skip) % size;
                    while table[slot as usize] != u32::MAX {
                        next[i] += 1;
                        slot = (offset + next[i] * skip) % size;
                    }
                    table[slot as usize] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Some(Self { table })
    }

    /// The endpoint for `key_hash` for which `usable` holds: its own slot, or the next slots of the table when
    /// that endpoint cannot be used (so its keys spread over the others, and come back when it does).
    pub fn pick(&self, key_hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let size = self.table.len();
        let start = (mix(key_hash) % size as u64) as usize;
        (0..size).map(|step| self.table[(start + step) % size] as usize).find(|&i| usable(i))
    }
}

/// A prime comfortably above 100 entries per endpoint (Maglev's guidance for an even spread).
fn table_size(endpoints: usize) -> u64 {
    const PRIMES: [u64; 6] = [5_003, 65_537, 131_071, 262_147, 524_287, 1_048_573];
    let wanted = endpoints as u64 * 100;
    PRIMES.into_iter().find(|&p| p >= wanted).unwrap_or(PRIMES[PRIMES.len() - 1])
}

/// FNV-1a, then a finalizer: stable across processes and versions (consistent hashing must agree between
/// gateway instances), well spread for similar keys.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, Protocol};
    use std::sync::Arc;

    fn endpoints(weights: &[u32]) -> Vec<WeightedEndpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| WeightedEndpoint {
                endpoint: Arc::new(Endpoint::new(([127, 0, 0, 1], 9000 + i as u16).into(), Protocol::Http1)),
                weight,
            })
            .collect()
    }

    #[test]
    fn round_robin_visits_each_endpoint_in_turn() {
        let eps = endpoints(&[1, 1, 1]);
        let state = BalancerState::default();
        let picks: Vec<_> = (0..6).map(|_| state.pick(Balance::RoundRobin, &eps, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves_by_weight() {
        let eps = endpoints(&[5, 1, 1]);
        let state = BalancerState::default();
        let picks: Vec<_> = (0..7).map(|_| state.pick(Balance::WeightedRoundRobin, &eps, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_in_flight_avoids_busy_endpoints() {
        let eps = endpoints(&[1, 1, 1]);
        let settings = crate::PoolSettings {
            tls: None,
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_idle: 1,
        };
        let _busy0 = eps[0].endpoint.begin(settings.clone());
        let _busy2 = eps[2].endpoint.begin(settings);
        let state = BalancerState::default();
        for _ in 0..5 {
            assert_eq!(state.pick(Balance::LeastInFlight, &eps, |_| true), Some(1));
        }
    }

    #[test]
    fn power_of_two_choices_never_picks_the_busiest_of_two() {
        let eps = endpoints(&[1, 1]);
        let settings = crate::PoolSettings {
            tls: None,
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_idle: 1,
        };
        let _busy = eps[0].endpoint.begin(settings);
        for _ in 0..50 {
            assert_eq!(two_choices(&eps, |_| true, less_loaded), Some(1));
        }
    }

    #[test]
    fn power_of_two_choices_spreads_idle_load() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[two_choices(&eps, |_| true, less_loaded).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "uneven spread: {seen:?}");
    }

    #[test]
    fn unusable_endpoints_are_skipped_by_every_algorithm() {
        let eps = endpoints(&[1, 2, 1, 1]);
        let state = BalancerState::default();
        for balance in [
            Balance::RoundRobin,
            Balance::WeightedRoundRobin,
            Balance::LeastInFlight,
            Balance::PowerOfTwoChoices,
            Balance::Ewma,
        ] {
            for _ in 0..50 {
                let i = state.pick(balance, &eps, |i| i == 1 || i == 3).unwrap();
                assert!(i == 1 || i == 3, "{balance:?} picked {i}");
            }
            assert_eq!(state.pick(balance, &eps, |_| false), None, "{balance:?}");
        }
    }

    #[test]
    fn ewma_prefers_the_faster_endpoint() {
        let eps = endpoints(&[1, 1]);
        eps[0].endpoint.health.observe_latency(std::time::Duration::from_millis(50));
        eps[1].endpoint.health.observe_latency(std::time::Duration::from_millis(5));
        let state = BalancerState::default();
        for _ in 0..20 {
            assert_eq!(state.pick(Balance::Ewma, &eps, |_| true), Some(1));
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    #[test]
    fn maglev_spreads_keys_evenly() {
        let table = Maglev::new(&names(5), &[1; 5]).unwrap();
        let mut seen = [0u32; 5];
        for k in 0..50_000u64 {
            seen[table.pick(stable_hash(format!("user-{k}").as_bytes()), |_| true).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (9_000..11_000).contains(&n)), "{seen:?}");
    }

    #[test]
    fn maglev_moves_few_keys_when_an_endpoint_goes() {
        let all = names(10);
        let before = Maglev::new(&all, &[1; 10]).unwrap();
        let mut fewer = all.clone();
        fewer.remove(4);
        let after = Maglev::new(&fewer, &[1; 9]).unwrap();
        let keys = 20_000u64;
        let mut moved = 0;
        for k in 0..keys {
            let h = stable_hash(format!("session-{k}").as_bytes());
            let a = &all[before.pick(h, |_| true).unwrap()];
            let b = &fewer[after.pick(h, |_| true).unwrap()];
            if a != b {
                moved += 1;
            }
        }
        // The removed endpoint's tenth must move; Maglev moves a little more than that, not much.
        let share = moved as f64 / keys as f64;
        assert!((0.09..0.13).contains(&share), "moved {share}");
    }

    #[test]
    fn maglev_skips_an_unusable_endpoint_and_honours_weights() {
        let table = Maglev::new(&names(3), &[3, 1, 1]).unwrap();
        let mut seen = [0u32; 3];
        for k in 0..30_000u64 {
            let i = table.pick(stable_hash(&k.to_le_bytes()), |i| i != 2).unwrap();
            seen[i] += 1;
        }
        assert_eq!(seen[2], 0);
        let ratio = f64::from(seen[0]) / f64::from(seen[1]);
        assert!((2.5..3.5).contains(&ratio), "{seen:?}");
    }
}

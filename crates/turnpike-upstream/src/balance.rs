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
}

/// A balancer's position, per upstream.
#[derive(Debug, Default)]
pub struct BalancerState {
    next: AtomicUsize,
    smooth: Mutex<Vec<i64>>,
}

impl BalancerState {
    /// Picks the index of an endpoint, or `None` when there are none.
    pub fn pick(&self, balance: Balance, endpoints: &[WeightedEndpoint]) -> Option<usize> {
        match endpoints.len() {
            0 => return None,
            1 => return Some(0),
            _ => {}
        }
        Some(match balance {
            Balance::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len(),
            Balance::WeightedRoundRobin => self.smooth_weighted(endpoints),
            Balance::LeastInFlight => self.least_in_flight(endpoints),
            Balance::PowerOfTwoChoices => power_of_two(endpoints),
        })
    }

    fn smooth_weighted(&self, endpoints: &[WeightedEndpoint]) -> usize {
        let mut current = self.smooth.lock().unwrap_or_else(|p| p.into_inner());
        if current.len() != endpoints.len() {
            // The endpoint list changed in a reload: start the cycle again.
            current.clear();
            current.resize(endpoints.len(), 0);
        }
        let total: i64 = endpoints.iter().map(|e| i64::from(e.weight)).sum();
        let mut best = 0;
        for (i, e) in endpoints.iter().enumerate() {
            current[i] += i64::from(e.weight);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }

    fn least_in_flight(&self, endpoints: &[WeightedEndpoint]) -> usize {
        // Start the scan at a rotating offset so ties spread instead of always landing on the first endpoint.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        let mut best = start;
        for step in 1..endpoints.len() {
            let i = (start + step) % endpoints.len();
            if less_loaded(&endpoints[i], &endpoints[best]) {
                best = i;
            }
        }
        best
    }
}

fn power_of_two(endpoints: &[WeightedEndpoint]) -> usize {
    let n = endpoints.len() as u64;
    let r = crate::fast_random();
    let a = (r % n) as usize;
    let mut b = ((r >> 32) % (n - 1)) as usize;
    if b >= a {
        b += 1;
    }
    if less_loaded(&endpoints[b], &endpoints[a]) { b } else { a }
}

/// `a` carries less load than `b` relative to their weights (in_flight / weight, compared without division).
fn less_loaded(a: &WeightedEndpoint, b: &WeightedEndpoint) -> bool {
    u64::from(a.endpoint.in_flight()) * u64::from(b.weight) < u64::from(b.endpoint.in_flight()) * u64::from(a.weight)
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
        let picks: Vec<_> = (0..6).map(|_| state.pick(Balance::RoundRobin, &eps).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves_by_weight() {
        let eps = endpoints(&[5, 1, 1]);
        let state = BalancerState::default();
        let picks: Vec<_> = (0..7).map(|_| state.pick(Balance::WeightedRoundRobin, &eps).unwrap()).collect();
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
            assert_eq!(state.pick(Balance::LeastInFlight, &eps), Some(1));
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
            assert_eq!(power_of_two(&eps), 1);
        }
    }

    #[test]
    fn power_of_two_choices_spreads_idle_load() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[power_of_two(&eps)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "uneven spread: {seen:?}");
    }
}

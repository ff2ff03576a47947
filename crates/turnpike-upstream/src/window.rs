//! Rolling-window counters: how many events of `K` kinds happened over the last `window`, counted in
//! [`SLICES`] time slices without a lock.
//!
//! The window length is a setting (in the snapshot) and the counts are state: callers pass the length on every
//! call, and a window whose length changed in a reload starts empty. A slice that comes round again is reset by
//! the first caller that sees it stale; an increment racing that reset may be lost, which is fine for
//! thresholds measured in percent over many requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Time slices per window.
pub const SLICES: usize = 10;

#[derive(Debug)]
struct Slice<const K: usize> {
    /// Which slice of time (since the window's origin, in slice widths) the counts belong to; `u64::MAX`: none.
    index: AtomicU64,
    counts: [AtomicU64; K],
}

/// Counts of `K` kinds of events over a rolling window.
#[derive(Debug)]
pub struct Window<const K: usize> {
    origin: Instant,
    /// The slice width in microseconds the slices were counted with.
    width_us: AtomicU64,
    slices: [Slice<K>; SLICES],
}

impl<const K: usize> Default for Window<K> {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl<const K: usize> Window<K> {
    /// An empty window whose time starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            width_us: AtomicU64::new(0),
            slices: std::array::from_fn(|_| Slice {
                index: AtomicU64::new(u64::MAX),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }

    fn width(&self, window: Duration) -> u64 {
        let width = (window.as_micros() as u64 / SLICES as u64).max(1);
        if self.width_us.load(Ordering::Relaxed) != width {
            // The window length changed (or this is the first use): what was counted does not fit the new slices.
            self.width_us.store(width, Ordering::Relaxed);
            for slice in &self.slices {
                slice.index.store(u64::MAX, Ordering::Relaxed);
            }
        }
        width
    }

    fn slice_index(&self, now: Instant, width: u64) -> u64 {
        now.saturating_duration_since(self.origin).as_micros() as u64 / width
    }

    /// Adds `counts` (one per kind) at `now`.
    pub fn add(&self, now: Instant, window: Duration, counts: [u64; K]) {
        let width = self.width(window);
        let index = self.slice_index(now, width);
        let slice = &self.slices[(index % SLICES as u64) as usize];
        let seen = slice.index.load(Ordering::Acquire);
        if seen != index && slice.index.compare_exchange(seen, index, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            for c in &slice.counts {
                c.store(0, Ordering::Relaxed);
            }
        }
        for (c, n) in slice.counts.iter().zip(counts) {
            if n != 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The counts over the window ending at `now`.
    pub fn sum(&self, now: Instant, window: Duration) -> [u64; K] {
        let width = self.width(window);
        let current = self.slice_index(now, width);
        let oldest = current.saturating_sub(SLICES as u64 - 1);
        let mut out = [0u64; K];
        for slice in &self.slices {
            let index = slice.index.load(Ordering::Acquire);
            if index != u64::MAX && (oldest..=current).contains(&index) {
                for (o, c) in out.iter_mut().zip(&slice.counts) {
                    *o += c.load(Ordering::Relaxed);
                }
            }
        }
        out
    }

    /// Forgets every count.
    pub fn clear(&self) {
        for slice in &self.slices {
            slice.index.store(u64::MAX, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_roll_out_of_the_window() {
        let t0 = Instant::now();
        let w: Window<2> = Window::new(t0);
        let window = Duration::from_secs(10);
        w.add(t0, window, [1, 0]);
        w.add(t0 + Duration::from_secs(3), window, [1, 1]);
        assert_eq!(w.sum(t0 + Duration::from_secs(5), window), [2, 1]);
        // Ten seconds on, the first slice has left the window; the second is still in it.
        assert_eq!(w.sum(t0 + Duration::from_millis(10_500), window), [1, 1]);
        assert_eq!(w.sum(t0 + Duration::from_secs(14), window), [0, 0]);
        // A slice that comes round again starts from zero.
        w.add(t0 + Duration::from_secs(20), window, [1, 0]);
        assert_eq!(w.sum(t0 + Duration::from_secs(20), window), [1, 0]);
    }

    #[test]
    fn a_new_window_length_starts_empty() {
        let t0 = Instant::now();
        let w: Window<1> = Window::new(t0);
        w.add(t0, Duration::from_secs(10), [5]);
        assert_eq!(w.sum(t0, Duration::from_secs(10)), [5]);
        assert_eq!(w.sum(t0, Duration::from_secs(60)), [0]);
    }
}

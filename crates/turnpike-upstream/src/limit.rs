//! A concurrency limit per upstream: at most `max_in_flight` requests at once, at most `max_queued` more
//! waiting for a slot (until their deadline); beyond that a request is shed at once instead of piling up.
//! The limits are settings; the counts are state, kept across reloads (a lowered limit applies as requests
//! finish).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Requests in flight at once.
    pub max_in_flight: u32,
    /// Requests waiting for a slot.
    pub max_queued: u32,
}

/// The counts.
#[derive(Debug, Default)]
pub struct Limiter {
    in_flight: AtomicU32,
    queued: AtomicU32,
    freed: Notify,
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue is full.
    QueueFull,
    /// The request's deadline passed while it waited.
    Timeout,
}

/// A slot: held for the request's lifetime (until its response body ends), given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.limiter.freed.notify_one();
    }
}

impl Limiter {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn try_take(&self, max: u32) -> bool {
        self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }

    /// Takes a slot, waiting in the queue until `deadline` when all are taken.
    pub async fn acquire(self: &Arc<Self>, settings: &LimitSettings, deadline: Instant) -> Result<Slot, Shed> {
        if self.try_take(settings.max_in_flight) {
            return Ok(Slot { limiter: self.clone() });
        }
        if self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < settings.max_queued).then_some(n + 1))
            .is_err()
        {
            return Err(Shed::QueueFull);
        }
        let result = async {
            loop {
                let freed = self.freed.notified();
                if self.try_take(settings.max_in_flight) {
                    return Ok(Slot { limiter: self.clone() });
                }
                if tokio::time::timeout_at(deadline, freed).await.is_err() {
                    return Err(Shed::Timeout);
                }
            }
        }
        .await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn sheds_beyond_the_queue_and_serves_the_queue_in_turn() {
        let limiter = Arc::new(Limiter::default());
        let s = LimitSettings { max_in_flight: 1, max_queued: 1 };
        let deadline = Instant::now() + Duration::from_secs(5);
        let first = limiter.acquire(&s, deadline).await.unwrap();
        let waiting = limiter.acquire(&s, deadline);
        tokio::pin!(waiting);
        assert!(futures_poll_once(&mut waiting).await.is_none());
        assert_eq!(limiter.acquire(&s, deadline).await.unwrap_err(), Shed::QueueFull);
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(limiter.in_flight(), 1);
        drop(second);
        let held = limiter.acquire(&s, deadline).await.unwrap();
        assert_eq!(limiter.acquire(&s, Instant::now() + Duration::from_millis(10)).await.unwrap_err(), Shed::Timeout);
        drop(held);
        assert_eq!(limiter.in_flight(), 0);
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }
}

//! Per-connection and server-wide limits (product.md §4.5): the request rate limiter
//! and the client slots behind `max_clients`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bus::Hub;

/// A token bucket: `rate` tokens per second, holding at most `rate` (one second's
/// burst). Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `rate_per_sec` tokens per second.
    pub fn new(rate_per_sec: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes one token if available.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token, for messages.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

/// One of the `max_clients` connection slots; the hub's client counter is the
/// number of live slots. Released on drop.
#[derive(Debug)]
pub struct ClientSlot {
    hub: Arc<Hub>,
}

impl ClientSlot {
    /// Takes a slot unless `max` are already taken.
    pub fn acquire(hub: &Arc<Hub>, max: usize) -> Option<ClientSlot> {
        hub.clients()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientSlot { hub: hub.clone() })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.hub.clients().fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::PcscStatus;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50, t0);
        assert_eq!((0..60).filter(|_| b.take(t0)).count(), 50);
        assert!(!b.take(t0));
        assert!(b.retry_after() > Duration::ZERO);
        // 100 ms later: 5 more tokens.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..10).filter(|_| b.take(t1)).count(), 5);
        // Long idle refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 50);
        // A clock going backwards takes nothing extra.
        assert!(!b.take(t0));
    }

    #[test]
    fn slots_count_on_the_hub_and_free_on_drop() {
        let hub = Hub::new(PcscStatus::Disabled);
        let a = ClientSlot::acquire(&hub, 2).expect("first");
        let b = ClientSlot::acquire(&hub, 2).expect("second");
        assert!(ClientSlot::acquire(&hub, 2).is_none());
        assert_eq!(hub.status().clients, 2);
        drop(a);
        assert_eq!(hub.status().clients, 1);
        let _c = ClientSlot::acquire(&hub, 2).expect("freed");
        drop(b);
        assert_eq!(hub.status().clients, 1);
    }
}

//! Admission control for `POST /v1/run`: at most `max_in_flight` runs at
//! once, at most `queue` more waiting for a slot (each for at most
//! `queue_timeout`), and an immediate refusal beyond that.
//!
//! Back-pressure belongs at the door: a server that accepts every request
//! and lets them pile up behind the LM answers all of them late, spends
//! memory on each and times out at the client anyway. Refusing at once with
//! 503 and `Retry-After` lets a load balancer send the request to another
//! replica and a client back off. The queue absorbs short bursts; its wait
//! is bounded so a queued request never outlives the client's patience.
//!
//! tower's `ConcurrencyLimit` + `LoadShed` layers give limit-or-shed but
//! no bounded queue with a wait limit, which is what a burst needs; this is
//! a semaphore and a counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Every run slot and every queue place was taken.
    QueueFull,
    /// It waited in the queue for the whole queue timeout.
    QueueTimeout,
}

impl Rejected {
    /// The label of the rejection in metrics and error bodies.
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::QueueFull => "queue_full",
            Rejected::QueueTimeout => "queue_timeout",
        }
    }
}

/// The limits (from the command line).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_in_flight: usize,
    pub queue: usize,
    pub queue_timeout: Duration,
}

/// The shared admission state.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: Limits,
}

/// A run slot; released on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Keeps `waiting` right however the wait ends (admitted, timed out, or the
/// request future dropped because the client hung up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            waiting: AtomicUsize::new(0),
            limits,
        }
    }

    /// Take a run slot now, or a queue place and then a slot, or refuse.
    pub async fn admit(&self) -> Result<Slot, Rejected> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: p });
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if before >= self.limits.queue {
            return Err(Rejected::QueueFull);
        }
        match tokio::time::timeout(
            self.limits.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => Ok(Slot { _permit: p }),
            // The semaphore is never closed; treat it like a full queue.
            Ok(Err(_)) => Err(Rejected::QueueFull),
            Err(_) => Err(Rejected::QueueTimeout),
        }
    }

    /// Runs holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.limits.max_in_flight.max(1) - self.slots.available_permits()
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst).min(self.limits.queue)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn full_slots_and_queue_refuse_at_once() {
        let a = Admission::new(Limits {
            max_in_flight: 1,
            queue: 0,
            queue_timeout: Duration::from_secs(5),
        });
        rt().block_on(async {
            let first = a.admit().await.expect("a free slot");
            assert_eq!(a.in_flight(), 1);
            assert_eq!(a.admit().await.unwrap_err(), Rejected::QueueFull);
            drop(first);
            assert_eq!(a.in_flight(), 0);
            assert!(a.admit().await.is_ok());
        });
    }

    #[test]
    fn a_queued_request_gets_the_next_slot_or_times_out() {
        let a = Arc::new(Admission::new(Limits {
            max_in_flight: 1,
            queue: 1,
            queue_timeout: Duration::from_millis(200),
        }));
        rt().block_on(async {
            let first = a.admit().await.unwrap();
            // Nobody frees the slot: the queued request times out.
            assert_eq!(a.admit().await.unwrap_err(), Rejected::QueueTimeout);
            assert_eq!(a.queued(), 0, "a timed-out wait leaves the queue");
            let b = a.clone();
            let waiter = tokio::spawn(async move { b.admit().await.map(|_| ()) });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(a.queued(), 1);
            // The queue's one place is taken: a third request is refused.
            assert_eq!(a.admit().await.unwrap_err(), Rejected::QueueFull);
            drop(first);
            assert_eq!(waiter.await.unwrap(), Ok(()));
        });
    }
}

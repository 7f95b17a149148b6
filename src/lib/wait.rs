//! How a side that cannot proceed (nothing to read, no room to write, no
//! free slot) waits for the other side.

use std::time::{Duration, Instant};

/// How to wait for the other side of a ring or pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitStrategy {
    /// Busy-poll: lowest latency, one core burnt per waiter.
    Spin,
    /// Sleep on a futex at once: no CPU while idle, a wake syscall per message.
    Block,
    /// Spin briefly, then yield, then sleep on a futex (the default).
    #[default]
    Adaptive,
}

/// Longest single sleep, so that waiters re-check goodbye flags and
/// liveness even when no wake arrives.
const MAX_SLEEP: Duration = Duration::from_millis(50);
const SPIN_STEPS: u32 = 200;
const YIELD_STEPS: u32 = 20;

/// One waiter's progress through spinning, yielding and sleeping.
#[derive(Debug)]
pub(crate) struct Backoff {
    strategy: WaitStrategy,
    step: u32,
}

impl Backoff {
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        Backoff { strategy, step: 0 }
    }

    /// What to do next: `None` when the deadline has passed, `Some(None)`
    /// after spinning or yielding once (re-check now), `Some(Some(d))` to
    /// sleep on the futex for at most `d`.
    pub(crate) fn next_step(&mut self, deadline: Option<Instant>) -> Option<Option<Duration>> {
        let now = Instant::now();
        let remaining = match deadline {
            Some(d) if now >= d => return None,
            Some(d) => d - now,
            None => Duration::MAX,
        };
        self.step = self.step.saturating_add(1);
        let sleep = Some(Some(remaining.min(MAX_SLEEP)));
        match self.strategy {
            WaitStrategy::Spin => {
                std::hint::spin_loop();
                Some(None)
            }
            WaitStrategy::Block => sleep,
            WaitStrategy::Adaptive if self.step <= SPIN_STEPS => {
                std::hint::spin_loop();
                Some(None)
            }
            WaitStrategy::Adaptive if self.step <= SPIN_STEPS + YIELD_STEPS => {
                std::thread::yield_now();
                Some(None)
            }
            WaitStrategy::Adaptive => sleep,
        }
    }
}

/// A deadline no wait reaches (about a century away).
pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// A deadline `timeout` from now; `None` waits forever.
pub fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    // shm[verify shm.ring.spsc]
    #[test]
    fn adaptive_spins_then_sleeps() {
        let mut b = Backoff::new(WaitStrategy::Adaptive);
        for _ in 0..SPIN_STEPS + YIELD_STEPS {
            assert_eq!(b.next_step(None), Some(None));
        }
        assert_eq!(b.next_step(None), Some(Some(MAX_SLEEP)));
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn passed_deadline_stops_every_strategy() {
        let past = Instant::now() - Duration::from_millis(1);
        for s in [
            WaitStrategy::Spin,
            WaitStrategy::Block,
            WaitStrategy::Adaptive,
        ] {
            assert_eq!(Backoff::new(s).next_step(Some(past)), None);
        }
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn block_sleeps_no_longer_than_the_deadline() {
        let mut b = Backoff::new(WaitStrategy::Block);
        let soon = Instant::now() + Duration::from_millis(5);
        match b.next_step(Some(soon)) {
            Some(Some(d)) => assert!(d <= Duration::from_millis(5)),
            other => panic!("{other:?}"),
        }
    }
}

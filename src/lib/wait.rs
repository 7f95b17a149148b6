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

impl WaitStrategy {
    /// Every strategy, in a fixed order (also their wire numbering in the
    /// benchmark's control messages).
    pub const ALL: [WaitStrategy; 3] = [
        WaitStrategy::Spin,
        WaitStrategy::Block,
        WaitStrategy::Adaptive,
    ];

    /// The strategy's name: `spin`, `block` or `adaptive`.
    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::Spin => "spin",
            WaitStrategy::Block => "block",
            WaitStrategy::Adaptive => "adaptive",
        }
    }
}

impl std::str::FromStr for WaitStrategy {
    type Err = String;

    /// Parses a name given by [`WaitStrategy::name`].
    fn from_str(text: &str) -> Result<Self, String> {
        WaitStrategy::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| format!("{text:?} is not a wait strategy (spin, block, adaptive)"))
    }
}

/// Longest single sleep, so that waiters re-check goodbye flags and
/// liveness even when no wake arrives.
const MAX_SLEEP: Duration = Duration::from_millis(50);
const SPIN_STEPS: u32 = 2000;
const YIELD_STEPS: u32 = 20;
/// While spinning, the clock and the stop check are consulted only every
/// this many steps: the spin loop itself only re-reads one index.
const CHECK_EVERY: u32 = 64;

/// How long a wait may last. The clock starts at the first wait, so an
/// operation that never has to wait never reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    timeout: Option<Duration>,
    at: Option<Instant>,
}

impl Deadline {
    /// Do not wait at all.
    pub(crate) fn no_wait() -> Self {
        Deadline::after(Some(Duration::ZERO))
    }

    /// Wait up to `timeout` (`None`: without limit).
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Deadline { timeout, at: None }
    }

    /// Whether this deadline forbids waiting.
    pub(crate) fn is_no_wait(&self) -> bool {
        self.timeout == Some(Duration::ZERO)
    }

    /// Time left (`None`: no limit); starts the clock on first use.
    pub(crate) fn remaining(&mut self) -> Option<Duration> {
        let timeout = self.timeout?;
        if timeout.is_zero() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let at = *self.at.get_or_insert_with(|| {
            now.checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(1 << 32))
        });
        Some(at.saturating_duration_since(now))
    }

    /// Whether the time is up.
    pub(crate) fn passed(&mut self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}

/// What a waiter does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Re-check the condition right away (spinning or yielding).
    Again,
    /// Run the stop check, then re-check the condition.
    Check,
    /// Run the stop check, then sleep on the futex for at most this long.
    Sleep(Duration),
    /// The deadline has passed.
    Expired,
}

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

    /// What to do next.
    pub(crate) fn next_step(&mut self, deadline: &mut Deadline) -> Step {
        self.step = self.step.wrapping_add(1);
        let spinning = match self.strategy {
            WaitStrategy::Spin => true,
            WaitStrategy::Block => false,
            WaitStrategy::Adaptive => self.step <= SPIN_STEPS + YIELD_STEPS,
        };
        if spinning && self.step % CHECK_EVERY != 1 && !deadline.is_no_wait() {
            match self.strategy {
                WaitStrategy::Adaptive if self.step > SPIN_STEPS => std::thread::yield_now(),
                // The spin hint (PAUSE on x86) costs up to ~140 cycles, which
                // is added to the latency of noticing the other side; pure
                // spinning asks for the lowest latency, so it re-checks at once.
                WaitStrategy::Spin => {}
                _ => std::hint::spin_loop(),
            }
            return Step::Again;
        }
        let remaining = deadline.remaining().unwrap_or(Duration::MAX);
        if remaining.is_zero() {
            return Step::Expired;
        }
        if spinning {
            Step::Check
        } else {
            Step::Sleep(remaining.min(MAX_SLEEP))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // shm[verify shm.ring.spsc]
    #[test]
    fn adaptive_spins_then_sleeps() {
        let mut b = Backoff::new(WaitStrategy::Adaptive);
        let mut forever = Deadline::after(None);
        let mut checks = 0;
        for _ in 0..SPIN_STEPS + YIELD_STEPS {
            match b.next_step(&mut forever) {
                Step::Again => {}
                Step::Check => checks += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(checks >= (SPIN_STEPS + YIELD_STEPS) / CHECK_EVERY);
        assert_eq!(b.next_step(&mut forever), Step::Sleep(MAX_SLEEP));
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn no_wait_expires_at_once_for_every_strategy() {
        for s in [
            WaitStrategy::Spin,
            WaitStrategy::Block,
            WaitStrategy::Adaptive,
        ] {
            assert_eq!(
                Backoff::new(s).next_step(&mut Deadline::no_wait()),
                Step::Expired
            );
        }
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn block_sleeps_no_longer_than_the_deadline() {
        let mut b = Backoff::new(WaitStrategy::Block);
        let mut soon = Deadline::after(Some(Duration::from_millis(5)));
        match b.next_step(&mut soon) {
            Step::Sleep(d) => assert!(d <= Duration::from_millis(5)),
            other => panic!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(6));
        assert_eq!(b.next_step(&mut soon), Step::Expired);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn the_clock_starts_at_the_first_wait() {
        let mut d = Deadline::after(Some(Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!d.passed(), "time before the first wait does not count");
        std::thread::sleep(Duration::from_millis(30));
        assert!(d.passed());
    }
}

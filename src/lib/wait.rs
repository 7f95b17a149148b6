//! How a side that cannot proceed (nothing to read, no room to write, no
//! free slot) waits for the other side.
//!
//! Every wait in the library has the same two parts:
//!
//! - a *loop* ([`wait_until`]) that re-checks its condition while spinning
//!   or sleeping per the [`WaitStrategy`], runs a stop check (has
//!   the other side gone?) between naps, and gives up at a [`Deadline`];
//! - a *handshake* ([`sleep_unless`] and [`wake_sleepers`]) that makes
//!   sleeping safe: the sleeper announces itself with a sequentially
//!   consistent write, looks once more, and only then sleeps on a futex
//!   word; the other side changes that word with a sequentially consistent
//!   write, then reads the announcement and makes the wake call only when
//!   someone sleeps. Each side writes, then reads what the other wrote, so
//!   at least one of them sees the other: no wake-up is lost, and nobody
//!   pays for a system call when nobody sleeps.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::sync::atomic::AtomicU32;
use crate::sys;

/// How to wait for the other side of a ring or pool.
///
/// Set on a whole host or guest, or on one of their ends; it changes how
/// long a wait takes to notice a message and what it costs meanwhile,
/// never what is received.
///
/// ```
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, WaitStrategy};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
/// // A host that must answer at once spins; a guest that is mostly idle
/// // sleeps until a message comes.
/// host.set_wait_strategy(WaitStrategy::Spin);
/// let mut guest = ShmGuest::attach(host.region())?;
/// guest.set_wait_strategy("block".parse()?);
/// assert_eq!(WaitStrategy::default(), WaitStrategy::Adaptive);
///
/// host.send(guest.peer_id(), Frame::new(MsgDesc::default(), b"wake".to_vec()))?;
/// assert_eq!(guest.recv()?.payload(), b"wake");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum WaitStrategy {
    /// Busy-poll: lowest latency, one core burnt per waiter.
    Spin,
    /// Sleep on a futex at once: no CPU while idle, a wake syscall per message.
    Block,
    /// Spin briefly, then sleep on a futex (the default).
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

/// How long a send or a receive may wait: one argument for every call,
/// where the standard library has a family (`try_recv`, `recv_timeout`,
/// `recv`).
///
/// A `Duration` converts to `After` (zero does not wait), and an
/// `Option<Duration>` too, `None` meaning `Never`, so `Some(d)` and
/// `None` work wherever a timeout is asked for.
///
/// ```
/// use std::time::Duration;
/// use shmhub::Timeout;
///
/// assert_eq!(Timeout::from(Duration::from_millis(5)), Timeout::After(Duration::from_millis(5)));
/// assert_eq!(Timeout::from(None), Timeout::Never);
/// assert_eq!(Timeout::from(Duration::ZERO), Timeout::NoWait);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// Do not wait: if the call cannot go ahead now, it says so at once.
    NoWait,
    /// Wait up to this long.
    After(Duration),
    /// Wait as long as it takes: until the call can go ahead, or the other
    /// side leaves.
    Never,
}

impl From<Duration> for Timeout {
    fn from(timeout: Duration) -> Self {
        if timeout.is_zero() {
            Timeout::NoWait
        } else {
            Timeout::After(timeout)
        }
    }
}

impl From<Option<Duration>> for Timeout {
    fn from(timeout: Option<Duration>) -> Self {
        timeout.map_or(Timeout::Never, Timeout::from)
    }
}

/// Longest single sleep, so that waiters re-check goodbye flags and
/// liveness even when no wake arrives.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Looks an adaptive waiter spins for before it sleeps. It does not yield
/// in between: on a busy machine a waiter that yields stays runnable and
/// takes the CPU from the very process it waits for, one time slice per
/// yield (the stress tests beside two busy loops slowed to a crawl),
/// where a sleeper leaves it the CPU and is woken when there is something
/// to do.
const SPIN_STEPS: u32 = 2000;
/// While spinning, the clock and the stop check are consulted only every
/// this many steps, the first time after this many: the spin loop itself
/// only re-reads one index, and a wait that ends within them (a spinning
/// round trip's) reads no clock at all: a clock read costs as much as a
/// look at the line.
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

    /// Wait as `timeout` says.
    pub(crate) fn of(timeout: Timeout) -> Self {
        Deadline::after(match timeout {
            Timeout::NoWait => Some(Duration::ZERO),
            Timeout::After(d) => Some(d),
            Timeout::Never => None,
        })
    }

    /// Whether this deadline sets no limit at all.
    pub(crate) fn is_unlimited(&self) -> bool {
        self.timeout.is_none()
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
    /// Re-check the condition right away (spinning).
    Again,
    /// Run the stop check, then re-check the condition.
    Check,
    /// Run the stop check, then sleep on the futex for at most this long.
    Sleep(Duration),
    /// The deadline has passed.
    Expired,
}

/// Looks an adaptive waiter spins for at the least: one stretch between
/// two clock reads, so that a waiter whose spins stopped paying off can
/// still find out that they pay again.
const MIN_SPIN_STEPS: u32 = CHECK_EVERY;

/// How many looks this process's adaptive waiters spin for before they
/// sleep, learnt from how their waits end: halved (down to
/// [`MIN_SPIN_STEPS`]) after a wait that had to sleep, doubled (up to
/// [`SPIN_STEPS`]) after one that ended while spinning. A process whose
/// waits are answered within the spin (a round trip with a peer on
/// another CPU) keeps spinning as long as ever; one whose waits outlast
/// it (a guest among a crowd that shares a CPU, woken once per burst)
/// soon spins for a few microseconds only, and leaves the CPU to the
/// processes that have work. A hint, shared by the process's threads and
/// read and written relaxed; under loom it stays at [`SPIN_STEPS`], so
/// that every run of a model spins alike.
#[derive(Debug)]
pub(crate) struct SpinBudget(std::sync::atomic::AtomicU32);

impl SpinBudget {
    /// A budget of [`SPIN_STEPS`].
    pub(crate) const fn new() -> Self {
        SpinBudget(std::sync::atomic::AtomicU32::new(SPIN_STEPS))
    }

    /// The looks the next adaptive wait spins for.
    fn get(&self) -> u32 {
        if cfg!(loom) {
            return SPIN_STEPS;
        }
        self.0.load(Ordering::Relaxed)
    }

    /// A wait ended: after `slept` (its spins did not pay), or while
    /// spinning.
    fn record(&self, slept: bool) {
        let now = self.get();
        let next = if slept {
            (now / 2).max(MIN_SPIN_STEPS)
        } else {
            now.saturating_mul(2).min(SPIN_STEPS)
        };
        if next != now && !cfg!(loom) {
            self.0.store(next, Ordering::Relaxed);
        }
    }
}

/// The spin budget of this process's adaptive waits on one ring or pool.
static SPIN_BUDGET: SpinBudget = SpinBudget::new();

/// The budget of waits that always spin their full count: it is never
/// recorded into.
static FULL_SPINS: SpinBudget = SpinBudget::new();

/// One waiter's progress through spinning and sleeping.
#[derive(Debug)]
pub(crate) struct Backoff {
    strategy: WaitStrategy,
    step: u32,
    /// Looks to spin for before sleeping (adaptive).
    spins: u32,
    /// Whether this wait has come to sleeping.
    slept: bool,
    budget: &'static SpinBudget,
}

impl Backoff {
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        Backoff::with_budget(strategy, &SPIN_BUDGET)
    }

    /// A waiter whose adaptive spins are always [`SPIN_STEPS`] and teach
    /// nothing: the host's wait for any guest, whose guests publish one
    /// after another, each ringing the doorbell of a host that sleeps.
    pub(crate) fn full(strategy: WaitStrategy) -> Self {
        Backoff::with_budget(strategy, &FULL_SPINS)
    }

    /// A waiter whose adaptive spins follow `budget`.
    fn with_budget(strategy: WaitStrategy, budget: &'static SpinBudget) -> Self {
        Backoff {
            strategy,
            step: 0,
            spins: match strategy {
                WaitStrategy::Adaptive => budget.get(),
                _ => 0,
            },
            slept: false,
            budget,
        }
    }

    /// The wait is over, its condition met: an adaptive waiter's budget
    /// learns whether its spins paid (a wait that never waited teaches
    /// nothing).
    pub(crate) fn done(self) {
        let learns = !std::ptr::eq(self.budget, &FULL_SPINS);
        if learns && self.strategy == WaitStrategy::Adaptive && self.step > 0 {
            self.budget.record(self.slept);
        }
    }

    /// Whether the step after the current look may be a sleep: what a
    /// waiter needs to read (the value it would sleep on) only then.
    pub(crate) fn may_sleep_next(&self) -> bool {
        match self.strategy {
            WaitStrategy::Spin => false,
            WaitStrategy::Block => true,
            WaitStrategy::Adaptive => self.step.wrapping_add(1) > self.spins,
        }
    }

    /// What to do next.
    pub(crate) fn next_step(&mut self, deadline: &mut Deadline) -> Step {
        self.step = self.step.wrapping_add(1);
        let spinning = match self.strategy {
            WaitStrategy::Spin => true,
            WaitStrategy::Block => false,
            WaitStrategy::Adaptive => self.step <= self.spins,
        };
        if spinning && self.step % CHECK_EVERY != 0 && !deadline.is_no_wait() {
            // The spin hint (PAUSE on x86) spaces the looks at the line
            // being waited on, so that its writer loses it less often
            // (docs/benchmarks.md has what it gains and costs).
            std::hint::spin_loop();
            return Step::Again;
        }
        let remaining = deadline.remaining().unwrap_or(Duration::MAX);
        if remaining.is_zero() {
            return Step::Expired;
        }
        if spinning {
            Step::Check
        } else {
            self.slept = true;
            Step::Sleep(remaining.min(MAX_SLEEP))
        }
    }
}

/// What a wait may be stopped by: called between naps, it fails once the
/// other side is gone, and its error becomes the operation's result.
pub(crate) type Stop<'a> = &'a mut dyn FnMut() -> Result<()>;

/// How one operation waits: its strategy, until when, and the check that
/// ends a wait once the other side is gone (whose error becomes the
/// operation's result). One value carries all three through the calls of
/// a send or a receive.
pub(crate) struct Waiting<'a> {
    pub(crate) strategy: WaitStrategy,
    pub(crate) deadline: Deadline,
    pub(crate) stop: Stop<'a>,
}

impl<'a> Waiting<'a> {
    /// Waiting per `strategy` until `deadline`, stopped by `stop`.
    pub(crate) fn new(strategy: WaitStrategy, deadline: Deadline, stop: Stop<'a>) -> Self {
        Waiting {
            strategy,
            deadline,
            stop,
        }
    }

    /// The same strategy and check, without waiting: for a step that must
    /// not wait although the operation may.
    pub(crate) fn without_waiting(&mut self) -> Waiting<'_> {
        Waiting {
            strategy: self.strategy,
            deadline: Deadline::no_wait(),
            stop: &mut *self.stop,
        }
    }
}

/// Waits until `ready` yields a value, the deadline passes (`Ok(None)`),
/// or the stop check fails. `ready` is told whether a sleep may follow
/// this look (see [`Backoff::may_sleep_next`]), so that it reads what a
/// sleep needs only then. `sleep` is called to sleep for at most the given
/// time once spinning is over; it should use [`sleep_unless`].
pub(crate) fn wait_until<T>(
    waiting: &mut Waiting<'_>,
    mut ready: impl FnMut(bool) -> Result<Option<T>>,
    mut sleep: impl FnMut(Duration) -> Result<()>,
) -> Result<Option<T>> {
    let mut backoff = Backoff::new(waiting.strategy);
    loop {
        if let Some(value) = ready(backoff.may_sleep_next())? {
            backoff.done();
            return Ok(Some(value));
        }
        match backoff.next_step(&mut waiting.deadline) {
            Step::Again => {}
            Step::Check => (waiting.stop)()?,
            Step::Expired => return Ok(None),
            Step::Sleep(nap) => {
                (waiting.stop)()?;
                sleep(nap)?;
            }
        }
    }
}

/// How a sleeper tells the other side that it sleeps: both are counts of
/// sleepers, since even a word one party sleeps on (a ring end's, the
/// host's doorbell) may have two sleepers in that party's process, a
/// blocking call and the waker thread of a readiness descriptor
/// (`readiness.rs`). The other side only asks whether the count is 0.
#[derive(Clone, Copy)]
pub(crate) enum Announce<'a> {
    /// Sleepers on a word published without a fence (a ring index, the
    /// host's doorbell): the barrier that stands in for the fence runs,
    /// unless the publisher's word (a ring side's `fences`, if the word
    /// has one) says it fences every publication for now.
    Flag(&'a AtomicU32, Option<&'a AtomicU32>),
    /// Sleepers on a word bumped by a read-modify-write (a pool's
    /// releases), a fence of its own.
    Count(&'a AtomicU32),
}

impl Announce<'_> {
    /// Counts the sleeper in; whether the other side's publications are
    /// ordered before the look that follows (see [`sleep_unless`]).
    pub(crate) fn announce(self) -> bool {
        !self.count_in() || sys::fence_publishers()
    }

    /// Counts the sleeper in and says whether the look that follows still
    /// needs the barrier that stands in for the publisher's fence: one
    /// barrier after several counts-in serves them all.
    pub(crate) fn count_in(self) -> bool {
        match self {
            Announce::Flag(count, fences) => {
                count.fetch_add(1, Ordering::SeqCst);
                // A publisher that says it fences needs no barrier: the
                // look after this read sees its publications, or its read
                // after them sees this sleeper (`publish_advertised`).
                // Otherwise the word was published by `publish_unfenced`,
                // which may leave out the store-load fence.
                fences.is_none_or(|f| f.load(Ordering::SeqCst) == 0)
            }
            Announce::Count(count) => {
                count.fetch_add(1, Ordering::SeqCst);
                false
            }
        }
    }

    /// Counts the sleeper out. Saturating: a reclaim zeroes the counts
    /// of an entry whose sleepers may still be on their way out, and a
    /// count wrapped to u32::MAX would cost every later publication a
    /// wake call.
    pub(crate) fn withdraw(self) {
        let (Announce::Flag(count, _) | Announce::Count(count)) = self;
        let mut n = count.load(Ordering::SeqCst);
        while n > 0 {
            match count.compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
    }
}

/// A sleep that a thread other than the party's own may take in its
/// stead (the waker of a readiness descriptor, `readiness.rs`): the word
/// to sleep on, where to announce the sleep, and what the word holds as
/// long as nothing has happened (`None`: something has already).
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
#[derive(Debug, Clone)]
pub(crate) struct Vigil {
    /// The word the other side changes, then wakes sleepers on.
    pub(crate) word: crate::region::Word,
    /// The count of sleepers on `word`.
    pub(crate) sleepers: crate::region::Word,
    /// How `word` is published, which says how a sleep on it is
    /// announced.
    pub(crate) publisher: Publisher,
    /// What `word` holds while nothing has happened; `None`: something has.
    pub(crate) unchanged: Option<u32>,
}

/// How the word of a [`Vigil`] is published.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
#[derive(Debug, Clone)]
pub(crate) enum Publisher {
    /// By a read-modify-write (a pool's releases), a fence of its own
    /// ([`Announce::Count`]).
    Fenced,
    /// Perhaps without a fence (a ring index, the host's doorbell); for a
    /// ring index, the publisher's word that says whether it fences for
    /// now ([`Announce::Flag`]).
    Unfenced(Option<crate::region::Word>),
}

#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
impl Vigil {
    /// The announcement of a sleep on this vigil's word.
    pub(crate) fn announcement(&self) -> Announce<'_> {
        match &self.publisher {
            Publisher::Fenced => Announce::Count(self.sleepers.get()),
            Publisher::Unfenced(fences) => {
                Announce::Flag(self.sleepers.get(), fences.as_ref().map(|f| f.get()))
            }
        }
    }

    /// Whether `other` sleeps on the same word.
    pub(crate) fn same_word(&self, other: &Vigil) -> bool {
        std::ptr::eq(self.word.get(), other.word.get())
    }

    /// Whether the word has moved from what it held when this was made.
    pub(crate) fn moved(&self) -> bool {
        self.unchanged
            .is_none_or(|v| self.word.get().load(Ordering::SeqCst) != v)
    }
}

/// The sleeping half of the handshake: announces the sleeper, asks
/// `nothing_new` whether nothing has happened since the caller last looked (it returns
/// the value `word` must still hold to sleep, or `None` to go on at once),
/// sleeps on `word` for at most `nap`, and withdraws the announcement.
pub(crate) fn sleep_unless(
    announce: Announce<'_>,
    word: &AtomicU32,
    nap: Duration,
    nothing_new: impl FnOnce() -> Result<Option<u32>>,
) -> Result<()> {
    let fenced = announce.announce();
    let nap = if fenced {
        nap
    } else {
        nap.min(sys::UNFENCED_NAP)
    };
    let looked = nothing_new();
    if let Ok(Some(expected)) = looked {
        sys::futex_wait(word, expected, Some(nap));
    }
    announce.withdraw();
    looked.map(drop)
}

/// Publishes `value` in `word` for a side that may sleep on it (a ring
/// index) and then reads what says whether that side sleeps. The two need
/// a store-load fence between them, or the read may pass the write and a
/// wake-up be lost; with `membarrier` on Linux, this process leaves the
/// fence out (a plain release store) and every side that depends on the
/// order runs [`sys::fence_publishers`] instead. Elsewhere the write is a
/// sequentially consistent swap, a full fence.
///
/// shm[impl shm.ring.wake]
#[inline(always)]
pub(crate) fn publish_unfenced(word: &AtomicU32, value: u32) {
    if sys::publishes_without_fence() {
        word.store(value, Ordering::Release);
        // Keeps the compiler from moving the caller's next reads above the
        // store; the processor's reordering is what the barrier covers.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        word.swap(value, Ordering::SeqCst);
    }
}

/// Publications in a row that find nobody asleep after which a publisher
/// that fences goes back to publishing without a fence. (One under loom,
/// so that a model of a few publications goes through every turn.)
#[cfg(not(loom))]
const FENCED_QUIET_RUN: u32 = 64;
#[cfg(loom)]
const FENCED_QUIET_RUN: u32 = 1;

/// What a publisher found of the other side's sleepers after its
/// publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asleep {
    /// Nobody sleeps.
    Nobody,
    /// Somebody sleeps, but waits for more than this publication brought
    /// (a producer waiting for room to reach its `room_at`).
    NotYet,
    /// Somebody sleeps whom this publication must wake.
    Wake,
}

/// Whether anybody counted in `sleepers` sleeps: they are woken by any
/// publication.
#[inline(always)]
pub(crate) fn any_asleep(sleepers: &AtomicU32) -> Asleep {
    if sleepers.load(Ordering::SeqCst) != 0 {
        Asleep::Wake
    } else {
        Asleep::Nobody
    }
}

/// Publishes `value` in `word`, a ring index, and wakes the other side's
/// sleepers if `asleep`, read after the publication, says so; fenced or
/// not as the publisher's `fences` word says, which it alone writes: 0,
/// unfenced ([`publish_unfenced`]); `n > 0`, every publication fenced,
/// `n - 1` of them in a row having found nobody asleep. A publication that
/// finds a sleeper turns fencing on, so that the next sleeper, seeing the
/// word set, needs no barrier; [`FENCED_QUIET_RUN`] quiet ones turn it off
/// again. Both turns are sequentially consistent swaps: a sleeper that
/// read the word set before it was cleared counted itself in before this
/// side's next read of its count.
///
/// shm[impl shm.ring.wake]
#[inline(always)]
pub(crate) fn publish_advertised(
    word: &AtomicU32,
    value: u32,
    fences: &AtomicU32,
    asleep: impl FnOnce() -> Asleep,
) {
    let advertised = fences.load(Ordering::Relaxed);
    if advertised == 0 {
        publish_unfenced(word, value);
    } else {
        word.swap(value, Ordering::SeqCst);
    }
    let found = asleep();
    if found != Asleep::Nobody {
        if advertised != 1 {
            fences.swap(1, Ordering::SeqCst);
        }
        if found == Asleep::Wake {
            sys::futex_wake_all(word);
        }
    } else if advertised >= FENCED_QUIET_RUN {
        fences.swap(0, Ordering::SeqCst);
    } else if advertised != 0 {
        fences.store(advertised + 1, Ordering::Relaxed);
    }
}

/// The other half of [`publish_unfenced`], for a look that must see every
/// publication made before the caller's sequentially consistent write (a
/// guest's move of its entry): [`sys::fence_publishers`], which orders
/// every publisher as a fence of its own would; when the kernel refuses
/// it, waits long enough for any store already made to reach memory
/// (store buffers drain in microseconds) before the caller looks.
pub(crate) fn fence_publishers_or_wait() {
    if !sys::fence_publishers() {
        std::thread::sleep(sys::UNFENCED_NAP);
    }
}

/// The waking half of the handshake, called after the caller changed
/// `word` with [`publish_unfenced`] or a sequentially consistent write:
/// wakes whoever sleeps on `word` if `announced` says anyone does.
pub(crate) fn wake_sleepers(announced: &AtomicU32, word: &AtomicU32) {
    if announced.load(Ordering::SeqCst) != 0 {
        sys::futex_wake_all(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Where the kernel offers `membarrier`, a process publishes without a
    // fence, and the barrier that stands in for it runs; where it does
    // not (a seccomp filter, an old kernel), publications stay fenced.
    // shm[verify shm.ring.wake]
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    #[test]
    fn publishers_leave_the_fence_to_the_barrier_where_the_kernel_has_one() {
        let offered = sys::membarrier_supported();
        assert_eq!(sys::publishes_without_fence(), offered);
        assert_eq!(sys::fence_publishers(), offered);
        let word = AtomicU32::new(0);
        publish_unfenced(&word, 7);
        assert_eq!(word.load(Ordering::Acquire), 7);
    }

    // A publication that finds a sleeper turns fencing on, and a run of
    // quiet ones turns it off; meanwhile a sleeper goes without the
    // barrier.
    // shm[verify shm.ring.wake]
    #[test]
    fn a_publisher_fences_from_a_sleeper_found_until_a_quiet_run() {
        let (index, sleepers, fences) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
        publish_advertised(&index, 1, &fences, || any_asleep(&sleepers));
        assert_eq!(fences.load(Ordering::SeqCst), 0, "nobody asleep: no fence");
        sleepers.store(1, Ordering::SeqCst);
        publish_advertised(&index, 2, &fences, || any_asleep(&sleepers));
        assert_eq!(fences.load(Ordering::SeqCst), 1);
        assert!(Announce::Flag(&sleepers, Some(&fences)).announce());
        Announce::Flag(&sleepers, Some(&fences)).withdraw();
        sleepers.store(0, Ordering::SeqCst);
        for n in 0..FENCED_QUIET_RUN {
            assert_ne!(fences.load(Ordering::SeqCst), 0, "after {n} quiet");
            publish_advertised(&index, 3 + n, &fences, || any_asleep(&sleepers));
        }
        assert_eq!(fences.load(Ordering::SeqCst), 0);
        assert_eq!(index.load(Ordering::SeqCst), 2 + FENCED_QUIET_RUN);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn adaptive_spins_then_sleeps() {
        // A budget of its own: the process's moves with the other tests.
        static FULL: SpinBudget = SpinBudget::new();
        let mut b = Backoff::with_budget(WaitStrategy::Adaptive, &FULL);
        let mut forever = Deadline::after(None);
        let mut checks = 0;
        for _ in 0..SPIN_STEPS {
            match b.next_step(&mut forever) {
                Step::Again => {}
                Step::Check => checks += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(checks >= SPIN_STEPS / CHECK_EVERY);
        assert_eq!(b.next_step(&mut forever), Step::Sleep(MAX_SLEEP));
    }

    // A waiter reads what it sleeps on only when told a sleep may follow:
    // every sleep must have been announced by the look before it.
    // shm[verify shm.ring.spsc]
    #[test]
    fn every_sleep_is_announced_by_the_look_before_it() {
        static FULL: SpinBudget = SpinBudget::new();
        for s in WaitStrategy::ALL {
            let mut b = Backoff::with_budget(s, &FULL);
            let mut forever = Deadline::after(None);
            let mut sleeps = 0;
            for _ in 0..3 * SPIN_STEPS {
                let announced = b.may_sleep_next();
                if let Step::Sleep(_) = b.next_step(&mut forever) {
                    assert!(announced, "{s:?} slept unannounced");
                    sleeps += 1;
                }
            }
            assert_eq!(sleeps > 0, s != WaitStrategy::Spin, "{s:?}");
        }
    }

    /// Waits `steps` looks with a waiter of `budget`, then ends it; how
    /// it ended: whether it slept.
    fn wait_for(budget: &'static SpinBudget, steps: u32) -> bool {
        let mut b = Backoff::with_budget(WaitStrategy::Adaptive, budget);
        let mut forever = Deadline::after(None);
        for _ in 0..steps {
            b.next_step(&mut forever);
        }
        let slept = b.slept;
        b.done();
        slept
    }

    // An adaptive waiter whose waits outlast its spins spins less and
    // less, down to one stretch between clock reads; one whose waits end
    // while it spins spins more again, up to the full count. A wait that
    // never waited changes nothing.
    // shm[verify shm.ring.spsc]
    #[test]
    fn adaptive_spins_less_after_waits_that_slept_and_more_after_ones_that_did_not() {
        static LEARNING: SpinBudget = SpinBudget::new();
        assert_eq!(LEARNING.get(), SPIN_STEPS);
        assert!(wait_for(&LEARNING, SPIN_STEPS + 1));
        assert_eq!(LEARNING.get(), SPIN_STEPS / 2);
        for _ in 0..10 {
            assert!(wait_for(&LEARNING, SPIN_STEPS + 1));
        }
        assert_eq!(LEARNING.get(), MIN_SPIN_STEPS);
        // Spinning for its budget and no more: the next look sleeps.
        let mut b = Backoff::with_budget(WaitStrategy::Adaptive, &LEARNING);
        let mut forever = Deadline::after(None);
        for _ in 0..MIN_SPIN_STEPS {
            assert!(!matches!(b.next_step(&mut forever), Step::Sleep(_)));
        }
        assert!(b.may_sleep_next());
        assert!(matches!(b.next_step(&mut forever), Step::Sleep(_)));
        assert!(!wait_for(&LEARNING, 0));
        assert_eq!(LEARNING.get(), MIN_SPIN_STEPS);
        assert!(!wait_for(&LEARNING, 10));
        assert_eq!(LEARNING.get(), 2 * MIN_SPIN_STEPS);
        for _ in 0..10 {
            assert!(!wait_for(&LEARNING, 10));
        }
        assert_eq!(LEARNING.get(), SPIN_STEPS);
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

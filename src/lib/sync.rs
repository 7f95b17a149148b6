//! The atomic types that [`Region`](crate::Region) hands out for shared
//! memory.
//!
//! Normally these are the standard library's `AtomicU32` and `AtomicU64`.
//! Under `cfg(loom)` (model checking, see `loom_tests.rs`) they are thin
//! wrappers over loom's atomics, so that the real ring and pool code runs
//! under loom's scheduler and memory model unchanged. The wrappers differ
//! from plain loom atomics in two ways:
//!
//! - **`SeqCst` accesses.** loom 0.7 treats a `SeqCst` load, store or
//!   read-modify-write as if it were `AcqRel` (see the comment on
//!   `seq_cst` in loom's `rt/thread.rs`), so a store-buffering pattern such
//!   as the rings' sleep handshake (swap my index, then read your flag;
//!   swap my flag, then read your index) is reported as broken when it is
//!   not. Its `fence(SeqCst)`, on the other hand, is modelled. The wrappers
//!   therefore use the x86-style mapping of `SeqCst` onto fences: a
//!   `SeqCst` store is a `Release` store followed by `fence(SeqCst)`, a
//!   `SeqCst` read-modify-write the `AcqRel` operation followed by
//!   `fence(SeqCst)`, and a `SeqCst` load is an `Acquire` load. This makes
//!   "`SeqCst` write, then `SeqCst` read" (store buffering, which the
//!   handshakes rely on) behave as in C++, while a weakened write (say the
//!   index swap made `AcqRel`) still lets loom find the lost wake-up.
//!   It is not exact in two directions: the fence after a write also
//!   orders the thread's later relaxed accesses (a bug that needs one of
//!   them to move above the write is missed), and `SeqCst` loads alone
//!   get no total order (a pattern that relies only on that, like IRIW,
//!   independent reads of independent writes, would be a false alarm;
//!   the ring and the pool have none). Other orderings are passed
//!   through as they are.
//! - **Futex model.** A 32-bit wrapper carries the list of loom threads
//!   sleeping on it in `futex_wait`, so that `sys::futex_wait` and
//!   `sys::futex_wake_all` can be modelled faithfully (see those functions).

#[cfg(not(loom))]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
}

#[cfg(loom)]
pub(crate) use loom_impl::{futex_wait, futex_wake_all};

#[cfg(loom)]
pub(crate) mod atomic {
    pub(crate) use super::loom_impl::{AtomicU32, AtomicU64};
}

#[cfg(loom)]
mod loom_impl {
    use loom::sync::atomic::fence;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering::{self, AcqRel, Acquire, Release, SeqCst};

    /// `order` for the loom access itself: `SeqCst` is replaced by
    /// `replacement` (and, for writes, a fence after it: see the module
    /// docs).
    fn weaken(order: Ordering, replacement: Ordering) -> Ordering {
        if order == SeqCst { replacement } else { order }
    }

    /// The one-value read-modify-writes, as `std`'s of the same name.
    macro_rules! read_modify_write {
        ($int:ty; $($op:ident),*) => {$(
            #[doc = concat!("As `std`'s `", stringify!($op), "`.")]
            #[track_caller]
            pub fn $op(&self, value: $int, order: Ordering) -> $int {
                self.rmw(order == SeqCst, |a| a.$op(value, weaken(order, AcqRel)))
            }
        )*};
    }

    /// The compare-and-swaps, as `std`'s of the same name (loom never
    /// fails the weak one spuriously).
    macro_rules! compare_exchanges {
        ($int:ty; $($op:ident),*) => {$(
            #[doc = concat!("As `std`'s `", stringify!($op), "`.")]
            #[track_caller]
            pub fn $op(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.rmw(success == SeqCst || failure == SeqCst, |a| {
                    a.$op(current, new, weaken(success, AcqRel), weaken(failure, Acquire))
                })
            }
        )*};
    }

    macro_rules! wrapper {
        ($name:ident, $int:ty) => {
            /// A loom atomic with `SeqCst` modelled with fences (see the
            /// module docs); the API is the subset of the standard one this
            /// crate uses.
            #[derive(Debug)]
            pub struct $name {
                inner: loom::sync::atomic::$name,
                /// Loom threads asleep in [`futex_wait`] on this word
                /// (always empty for 64-bit words: futexes are 32-bit).
                #[allow(dead_code)]
                sleepers: Mutex<Vec<loom::thread::Thread>>,
            }

            #[allow(dead_code)]
            impl $name {
                /// A new atomic holding `value` (inside a loom model only).
                #[track_caller]
                pub fn new(value: $int) -> Self {
                    $name {
                        inner: loom::sync::atomic::$name::new(value),
                        sleepers: Mutex::new(Vec::new()),
                    }
                }

                /// As `std`'s `load`.
                #[track_caller]
                pub fn load(&self, order: Ordering) -> $int {
                    self.inner.load(weaken(order, Acquire))
                }

                /// As `std`'s `store`.
                #[track_caller]
                pub fn store(&self, value: $int, order: Ordering) {
                    self.inner.store(value, weaken(order, Release));
                    if order == SeqCst {
                        fence(SeqCst);
                    }
                }

                /// Runs a read-modify-write, followed by a fence if any of
                /// its orderings is `SeqCst`.
                #[track_caller]
                fn rmw<R>(
                    &self,
                    seq_cst: bool,
                    op: impl FnOnce(&loom::sync::atomic::$name) -> R,
                ) -> R {
                    let result = op(&self.inner);
                    if seq_cst {
                        fence(SeqCst);
                    }
                    result
                }

                read_modify_write!($int; swap, fetch_add, fetch_sub, fetch_and, fetch_or);

                compare_exchanges!($int; compare_exchange, compare_exchange_weak);
            }
        };
    }

    wrapper!(AtomicU32, u32);
    wrapper!(AtomicU64, u64);

    /// Model of `FUTEX_WAIT`: if `word` holds `expected`, the calling loom
    /// thread sleeps until [`futex_wake_all`] is called on the same word.
    ///
    /// Like the kernel, the model queues the caller *before* it reads the
    /// word, with a full barrier in between (the kernel's `smp_mb` after
    /// counting a waiter in the hash bucket): a waker that stores to the
    /// word and then wakes either finds the caller queued, or the caller's
    /// read sees its store. (Reading first and queueing after would let
    /// loom run a whole store-and-wake between the read's scheduling point
    /// and the queueing, and report a wake-up that the real futex cannot
    /// lose.) A caller that finds another value leaves the queue and
    /// returns at once.
    ///
    /// That barrier is part of the futex, and the handshakes may lean on
    /// it: the waiter's last look is the kernel's read of the word.
    ///
    /// The timeout of the real call is not modelled: a sleeper that nobody
    /// wakes sleeps forever, so a lost wake-up shows up as a loom deadlock
    /// (every thread blocked) instead of as one `MAX_SLEEP` of latency. A
    /// caller may return spuriously (a wake aimed at an earlier sleep of
    /// the same thread), which the contract of `sys::futex_wait` allows.
    pub(crate) fn futex_wait(word: &AtomicU32, expected: u32) {
        let me = loom::thread::current();
        let id = me.id();
        let queued = |sleepers: &[loom::thread::Thread]| sleepers.iter().any(|t| t.id() == id);
        word.sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(me);
        fence(SeqCst);
        if word.load(Acquire) != expected {
            word.sleepers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|t| t.id() != id);
            return;
        }
        while queued(&word.sleepers.lock().unwrap_or_else(|e| e.into_inner())) {
            loom::thread::park();
        }
    }

    /// Model of `FUTEX_WAKE` with `INT_MAX`: after a full barrier (the
    /// kernel's, before it looks for waiters), wakes every loom thread
    /// asleep on `word` (waking synchronizes, as the kernel's lock does).
    pub(crate) fn futex_wake_all(word: &AtomicU32) {
        fence(SeqCst);
        let sleepers =
            std::mem::take(&mut *word.sleepers.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in sleepers {
            thread.unpark();
        }
    }
}

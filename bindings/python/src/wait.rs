//! Waiting as Python expects: a `timeout` in seconds (or None), the GIL
//! released while waiting, and Ctrl-C noticed within a slice.
//!
//! The library waits in one call as long as it is told to; a wait here is
//! many calls of at most [`SLICE`] each, with the GIL released during each
//! and Python's signal handlers run between them, so that a
//! `KeyboardInterrupt` ends a wait within [`SLICE`], and other Python
//! threads (and, for a host, other calls on it) get their turn.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use shmhub::{Error, Timeout};

/// The longest one library call waits before Python's signals are looked
/// at: Ctrl-C ends a wait within about this long.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// How long a call may wait, as its `timeout` argument says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    /// `timeout=0`: look once.
    NoWait,
    /// A number of seconds: until this instant.
    Until(Instant),
    /// `timeout=None`: as long as it takes.
    Forever,
}

impl Patience {
    /// From `timeout` in seconds; a negative or NaN timeout is a
    /// `ValueError` (as for `queue.Queue.get`), raised before anything is
    /// done.
    pub(crate) fn from_seconds(timeout: Option<f64>) -> PyResult<Self> {
        let Some(seconds) = timeout else {
            return Ok(Patience::Forever);
        };
        if seconds.is_nan() || seconds < 0.0 {
            return Err(PyValueError::new_err(format!(
                "timeout must be a non-negative number of seconds or None, not {seconds}"
            )));
        }
        if seconds == 0.0 {
            return Ok(Patience::NoWait);
        }
        // Past what an Instant can hold (or infinite): as long as it takes.
        Ok(Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))
            .map_or(Patience::Forever, Patience::Until))
    }

    /// Whether the call waits without limit.
    pub(crate) fn is_forever(self) -> bool {
        matches!(self, Patience::Forever)
    }

    /// The library timeout of the next slice; `None` once the time is up.
    /// The first slice always looks, even if the time is already up.
    fn slice(self, first: bool) -> Option<Timeout> {
        match self {
            Patience::NoWait => first.then_some(Timeout::NoWait),
            Patience::Forever => Some(Timeout::After(SLICE)),
            Patience::Until(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    first.then_some(Timeout::NoWait)
                } else {
                    Some(Timeout::After(left.min(SLICE)))
                }
            }
        }
    }
}

/// The process that made a `Host` or `Guest`: the only one that may use
/// it.
///
/// A child forked while the object exists has a copy of it, whose host or
/// guest is its parent's: in the child the object acts as closed. A call
/// raises `ValueError`, closing or detaching does nothing, and when the
/// child drops the object its library handle is forgotten, not dropped,
/// so that the child neither says goodbye for the parent, nor detaches
/// its entry, nor deletes its file. The object's locks are not touched in
/// the child either: a lock another thread held at the fork stays held
/// there for ever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner(u32);

/// The id of this process, kept here because `getpid` is a system call
/// (glibc caches it no more) and every call on a host or guest asks:
/// set by [`watch_forks`], and again in the child of every fork.
static THIS_PROCESS: AtomicU32 = AtomicU32::new(0);

/// `pthread_atfork`'s child handler: runs in the child, in the only
/// thread there is, before `fork` returns.
extern "C" fn after_fork_in_child() {
    THIS_PROCESS.store(std::process::id(), Ordering::Relaxed);
}

/// Records this process's id and keeps it up to date across forks; called
/// when the module is loaded (the first call does the work).
pub(crate) fn watch_forks() -> PyResult<()> {
    static WATCHING: Once = Once::new();
    let mut failed = 0;
    WATCHING.call_once(|| {
        THIS_PROCESS.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: registers a handler that only stores the result of
        // `getpid` (async-signal-safe) in an atomic; it lives as long as
        // the process (an extension module is never unloaded).
        failed = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    if failed != 0 {
        return Err(PyOSError::new_err(format!(
            "pthread_atfork failed (error {failed}): shmhub cannot follow forks"
        )));
    }
    Ok(())
}

impl Owner {
    /// The calling process.
    pub(crate) fn this_process() -> Self {
        Owner(THIS_PROCESS.load(Ordering::Relaxed))
    }

    /// Whether the calling process is the owner.
    pub(crate) fn is_this_process(self) -> bool {
        self.0 == THIS_PROCESS.load(Ordering::Relaxed)
    }

    /// `end`, locked, in the owner; `Failed::Forked` in a forked child.
    /// Call with the GIL released (see `in_slices`).
    pub(crate) fn lock<T>(self, end: &Mutex<T>) -> Result<MutexGuard<'_, T>, Failed> {
        if !self.is_this_process() {
            return Err(Failed::Forked(self.0));
        }
        Ok(end.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// In a forked child, forgets what `end` holds (see above); in the
    /// owner, does nothing, and `end` is dropped as usual.
    pub(crate) fn forget_in_child<T>(self, end: &mut Mutex<Option<T>>) {
        if !self.is_this_process() {
            let held = end.get_mut().unwrap_or_else(PoisonError::into_inner);
            std::mem::forget(held.take());
        }
    }

    /// The message of `Failed::Forked` for a `what` (a host, a guest).
    pub(crate) fn forked_message(what: &str, owner: u32) -> String {
        format!(
            "this {what} belongs to process {owner}, and this is a child it forked: \
             create or attach anew here"
        )
    }
}

/// Why a wait stopped without what it waited for.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The library said no.
    Lib(Error),
    /// The object was closed (a host) or detached (a guest), perhaps by
    /// another thread during the wait.
    Closed,
    /// The object belongs to the process with this id, and this is a
    /// child it forked (see `Owner`).
    Forked(u32),
    /// A Python signal handler raised (Ctrl-C: `KeyboardInterrupt`).
    Py(PyErr),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Lib(e)
    }
}

/// Calls `attempt` with the timeout of each slice, the GIL released, until
/// it returns `Some` (returned), fails, or the time is up (`None`);
/// between slices, runs Python's signal handlers, whose exception ends
/// the wait.
pub(crate) fn in_slices<T, F>(
    py: Python<'_>,
    patience: Patience,
    mut attempt: F,
) -> Result<Option<T>, Failed>
where
    T: Send,
    F: FnMut(Timeout) -> Result<Option<T>, Failed> + Send,
{
    let mut first = true;
    while let Some(timeout) = patience.slice(first) {
        first = false;
        if let Some(done) = py.detach(|| attempt(timeout))? {
            return Ok(Some(done));
        }
        py.check_signals().map_err(Failed::Py)?;
    }
    Ok(None)
}

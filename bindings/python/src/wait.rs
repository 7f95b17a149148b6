//! Waiting as Python expects: a `timeout` in seconds (or None), the GIL
//! released while waiting, and Ctrl-C noticed within a slice.
//!
//! The library waits in one call as long as it is told to; a wait here is
//! many calls of at most [`SLICE`] each, with the GIL released during each
//! and Python's signal handlers run between them, so that a
//! `KeyboardInterrupt` ends a wait within [`SLICE`], and other Python
//! threads (and, for a host, other calls on it) get their turn.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
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

/// Why a wait stopped without what it waited for.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The library said no.
    Lib(Error),
    /// The object was closed (a host) or detached (a guest), perhaps by
    /// another thread during the wait.
    Closed,
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

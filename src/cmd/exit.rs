//! How a command ends: its outcome, and the exit code of each outcome and
//! of each error.

use super::error::{Interrupted, TimedOut, UsageError};
use super::text::is_broken_pipe;

/// How a command ended, beyond success and error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// Exit 3: timed out, or nothing to receive.
    TimedOut,
    /// Exit with this code (`spawn` passes on its program's status).
    Exit(i32),
}

impl Outcome {
    /// The exit code.
    pub fn code(self) -> i32 {
        match self {
            Outcome::Done => EXIT_DONE,
            Outcome::TimedOut => EXIT_TIMEOUT,
            Outcome::Exit(code) => code,
        }
    }
}

/// Exit code for success.
pub const EXIT_DONE: i32 = 0;
/// Exit code for errors.
pub const EXIT_ERROR: i32 = 1;
/// Exit code for usage errors (the argument parser uses it too).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for timeouts and empty receives.
pub const EXIT_TIMEOUT: i32 = 3;

/// The exit code of a command that failed with `e`.
pub fn code(e: &anyhow::Error) -> i32 {
    // The reader of our output went away (`shmhub inspect x | head -1`):
    // nothing is wrong with the segment, and nobody is left to tell.
    if is_broken_pipe(e) {
        EXIT_DONE
    } else if e.chain().any(|c| c.is::<UsageError>()) {
        EXIT_USAGE
    } else if e.chain().any(|c| c.is::<TimedOut>()) {
        EXIT_TIMEOUT
    } else if let Some(Interrupted(signal)) =
        e.chain().find_map(|c| c.downcast_ref::<Interrupted>())
    {
        128 + signal
    } else {
        EXIT_ERROR
    }
}

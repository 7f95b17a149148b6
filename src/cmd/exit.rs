//! How a command ends: its outcome, and the exit code of each outcome and
//! of each error.

use shmhub::ErrorKind;

use super::error::{Interrupted, SegmentError, UsageError};
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

/// The exit code of a command that failed with `e`: from the command's
/// own marks (a usage error, an interruption) and the kind of a library
/// error, wherever they are in the chain; never from the message.
pub fn code(e: &anyhow::Error) -> i32 {
    let library_kinds = || {
        e.chain().filter_map(|cause| {
            cause
                .downcast_ref::<SegmentError>()
                .map(SegmentError::kind)
                .or_else(|| {
                    cause
                        .downcast_ref::<shmhub::Error>()
                        .map(shmhub::Error::kind)
                })
        })
    };
    // The reader of our output went away (`shmhub inspect x | head -1`):
    // nothing is wrong with the segment, and nobody is left to tell.
    if is_broken_pipe(e) {
        EXIT_DONE
    } else if e.chain().any(|c| c.is::<UsageError>()) {
        EXIT_USAGE
    } else if library_kinds().any(|kind| kind == ErrorKind::Retry) {
        EXIT_TIMEOUT
    } else if let Some(Interrupted(signal)) =
        e.chain().find_map(|c| c.downcast_ref::<Interrupted>())
    {
        128 + signal
    } else {
        EXIT_ERROR
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cmd::error::{seg_err, seg_err_timed};

    #[test]
    fn each_error_has_its_documented_exit_code() {
        let path = Path::new("/dev/shm/x");
        let busy = || shmhub::Error::Busy {
            what: "the host's receiving end".into(),
        };
        let cases: [(anyhow::Error, i32); 8] = [
            (seg_err(path, shmhub::Error::Timeout).into(), EXIT_TIMEOUT),
            (seg_err(path, busy()).into(), EXIT_ERROR),
            (seg_err_timed(path, busy()).into(), EXIT_TIMEOUT),
            (
                seg_err(path, shmhub::Error::HubFull { max_guests: 1 }).into(),
                EXIT_ERROR,
            ),
            (shmhub::Error::Timeout.into(), EXIT_TIMEOUT),
            (
                UsageError("--count must be at least 1".into()).into(),
                EXIT_USAGE,
            ),
            (
                anyhow::Error::new(Interrupted(libc::SIGHUP)).context("x: sent 0 of 1 messages"),
                128 + libc::SIGHUP,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::BrokenPipe).into(),
                EXIT_DONE,
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(code(&e), expected, "{e:#}");
        }
    }

    #[test]
    fn more_words_keep_the_kind() {
        let e = seg_err_timed(Path::new("/dev/shm/x"), shmhub::Error::Timeout)
            .followed_by(" (sent 3 of 9 messages)");
        assert_eq!(
            e.to_string(),
            "/dev/shm/x: timed out (sent 3 of 9 messages)"
        );
        assert_eq!(code(&e.into()), EXIT_TIMEOUT);
    }
}

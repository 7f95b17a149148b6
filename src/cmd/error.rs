//! The command's errors: the marks that give an error its own exit code
//! (a usage error, an interruption, a timeout), and a library error on a
//! segment as one line naming the segment.

use std::fmt;
use std::path::Path;

use anyhow::anyhow;

use super::signals;
use super::text::{account_name, human_bytes};

/// An error that ends the command with exit code 3 (timed out).
#[derive(Debug)]
pub struct TimedOut(pub String);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

/// A termination signal (SIGINT, SIGTERM, SIGHUP) stopped a waiting
/// command before it was done: exit code 128 + the signal number, as a
/// shell reports a process killed by it.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", signals::name(self.0))
    }
}

impl std::error::Error for Interrupted {}

/// An error in how the command was called: exit code 2, like the
/// argument parser's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`].
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::cmd::error::UsageError(format!($($arg)*))))
    };
}

/// Prefixes a library error with the segment path, unless it names the
/// path already.
pub fn seg_err(path: &Path, e: shmhub::Error) -> anyhow::Error {
    use shmhub::Error as E;
    match e {
        E::Io { path, cause } if cause.kind() == std::io::ErrorKind::PermissionDenied => {
            anyhow!("{}: {cause}{}", path.display(), who_may_use(&path))
        }
        E::ForeignOwner { path, .. } => anyhow!(
            "{}: owned by another user{}: refusing to trust a segment another user controls \
             (a squatter could be waiting for guests' data); --allow-foreign-owner opens it anyway",
            path.display(),
            who_may_use(&path)
        ),
        E::NoSpace { path, needed } => anyhow!(
            "{}: no space left on the file system for {}",
            path.display(),
            human_bytes(needed)
        ),
        E::Io { .. }
        | E::Symlink { .. }
        | E::NotAFile { .. }
        | E::TooSmall { .. }
        | E::TooLarge { .. }
        | E::Truncated { .. }
        | E::Replaced { .. }
        | E::Removed { .. } => anyhow!(e),
        E::RingFull { .. }
        | E::PoolExhausted { .. }
        | E::ShareExhausted { .. }
        | E::Timeout
        | E::Changing { .. } => {
            anyhow!(TimedOut(format!("{}: {e}", path.display())))
        }
        e => anyhow!("{}: {e}", path.display()),
    }
}

/// Like [`seg_err`], for a command that waited up to its `--timeout`: a
/// role that another process still held when the time was up is a timeout
/// too (exit 3), so that scripts that retry on 3 catch it.
pub fn seg_err_timed(path: &Path, e: shmhub::Error) -> anyhow::Error {
    match e {
        shmhub::Error::Busy { .. } => anyhow!(TimedOut(format!("{}: {e}", path.display()))),
        e => seg_err(path, e),
    }
}

/// Who may use the file at `path`, for a permission error: its mode and
/// owner, e.g. ` (mode 0600, owner root)`; empty if it cannot be read.
fn who_may_use(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return String::new();
    };
    format!(
        " (mode {:04o}, owner {}, group {})",
        meta.mode() & 0o7777,
        account_name("/etc/passwd", meta.uid()),
        account_name("/etc/group", meta.gid()),
    )
}

//! The command's errors: the marks that give an error its own exit code
//! (a usage error, an interruption), a library error on a segment as one
//! line naming the segment, with the library's kind kept, and the line
//! that says an error, every name in it [`shown`].

use std::fmt;
use std::path::Path;

use shmhub::ErrorKind;

use super::signals;
use super::text::{OneLine, group_text, human_bytes, naming, shown, user_text};

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

/// A library error on a segment, as the user reads it: one line naming
/// the segment and the cause. It keeps what the caller can do about the
/// error, the library's [`ErrorKind`], which the exit code comes from
/// (see `exit::code`), so nobody has to read the line to tell.
#[derive(Debug)]
pub struct SegmentError {
    /// The line, without `error: `.
    text: String,
    /// What can be done about it.
    kind: ErrorKind,
}

impl SegmentError {
    /// What can be done about the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error with `more` written after it: what had been done
    /// when it struck, or what the user can do about it.
    pub fn followed_by(mut self, more: impl fmt::Display) -> Self {
        use std::fmt::Write;
        let _ = write!(self.text, "{more}");
        self
    }
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The library error it came from is not a source: its words are already
/// in the line, and `{:#}` would print them twice.
impl std::error::Error for SegmentError {}

/// A library error on the segment at `path`: its message prefixed with
/// the path (unless it names the path already), and said in the command's
/// words where the library's are not enough (permissions, ownership, a
/// full file system).
pub fn seg_err(path: &Path, e: shmhub::Error) -> SegmentError {
    use shmhub::Error as E;
    let kind = e.kind();
    let text = match e {
        E::Io { path, cause } if cause.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("{}: {cause}{}", shown(&path), who_may_use(&path))
        }
        E::ForeignOwner { path, .. } => format!(
            "{}: owned by another user{}: refusing to trust a segment another user controls \
             (a squatter could be waiting for guests' data); --allow-foreign-owner opens it anyway",
            shown(&path),
            who_may_use(&path)
        ),
        E::NoSpace { path, needed } => format!(
            "{}: no space left on the file system for {}",
            shown(&path),
            human_bytes(needed)
        ),
        // A crash leaves the entry taken until a reclaim: say how, for a
        // send to the dead guest and a receive from it alike.
        e @ E::PeerDied { .. } => format!(
            "{}: {}; `shmhub reclaim {}` frees its entry",
            shown(path),
            library_text(&e),
            shown(path)
        ),
        // These name the file themselves.
        e if e.path().is_some() => library_text(&e),
        e => format!("{}: {}", shown(path), library_text(&e)),
    };
    SegmentError { text, kind }
}

/// A library error as the command prints it: its message, with the file
/// it names [`shown`], as one line.
pub fn library_text(e: &shmhub::Error) -> String {
    let message = e.to_string();
    match e.path() {
        Some(path) => naming(&message, path),
        None => OneLine(&message).to_string(),
    }
}

/// The line that says error `e`, after `error: `: the message of each
/// error in its chain, outermost first, joined by `: ` (as `{:#}` writes
/// them), the library's with the files they name [`shown`], and anything
/// else that is not printable escaped as [`shown`] does (see [`OneLine`]):
/// one line, whatever the names in it.
pub fn error_line(e: &anyhow::Error) -> String {
    let messages: Vec<String> = e
        .chain()
        .map(|cause| match cause.downcast_ref::<shmhub::Error>() {
            Some(library) => library_text(library),
            None => OneLine(&cause.to_string()).to_string(),
        })
        .collect();
    messages.join(": ")
}

/// A library result on a segment, made the command's: its error names the
/// segment, as [`seg_err`] says it.
pub trait OnSegment<T> {
    /// The result, with an error that names the segment at `path`.
    fn on_segment(self, path: &Path) -> Result<T, SegmentError>;
}

impl<T> OnSegment<T> for shmhub::Result<T> {
    fn on_segment(self, path: &Path) -> Result<T, SegmentError> {
        self.map_err(|e| seg_err(path, e))
    }
}

/// Like [`seg_err`], for a command that waited up to its `--timeout`: a
/// role that another process still held when the time was up is a time
/// that ran out too (kind Retry, exit 3), so that scripts that retry on 3
/// catch it.
pub fn seg_err_timed(path: &Path, e: shmhub::Error) -> SegmentError {
    let waited_out = matches!(e, shmhub::Error::Busy { .. });
    let mut err = seg_err(path, e);
    if waited_out {
        err.kind = ErrorKind::Retry;
    }
    err
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
        user_text(meta.uid()),
        group_text(meta.gid()),
    )
}

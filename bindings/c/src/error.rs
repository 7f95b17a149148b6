//! Failures as C sees them: a negative code, and a one-line message kept
//! per thread for [`shmhub_last_error`].

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use shmhub::{Error, ErrorKind};

use crate::shmhub_code::{self, *};
use crate::text::{naming, one_line, shown};

/// A message, owned or shared (a handle keeps its "timed out" line made,
/// so that polling with a timeout of 0 allocates nothing).
#[derive(Debug, Clone)]
pub(crate) enum Message {
    Owned(CString),
    Shared(Arc<CStr>),
}

impl Message {
    fn as_c_str(&self) -> &CStr {
        match self {
            Message::Owned(s) => s,
            Message::Shared(s) => s,
        }
    }
}

/// A failed call: its code and its line.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: shmhub_code,
    pub(crate) message: Message,
}

impl Failure {
    /// A failure with code `code` and `text` as its line.
    pub(crate) fn new(code: shmhub_code, text: impl Into<String>) -> Self {
        Failure {
            code,
            message: Message::Owned(c_string(one_line(&text.into()))),
        }
    }

    /// `SHMHUB_ERR_INVALID`: the argument `what` is NULL.
    pub(crate) fn null(what: &str) -> Self {
        Failure::new(SHMHUB_ERR_INVALID, format!("{what} is NULL"))
    }

    /// A library error on the segment at `path`, worded as the command
    /// words it: the library's message, after the path unless it names the
    /// file itself.
    pub(crate) fn library(path: &Path, e: Error) -> Self {
        let text = match e.path() {
            Some(named) => naming(&e.to_string(), named),
            None => format!("{}: {}", shown(path), one_line(&e.to_string())),
        };
        Failure {
            code: code_of(&e),
            message: Message::Owned(c_string(text)),
        }
    }

    /// A shared line (see [`Message`]).
    pub(crate) fn shared(code: shmhub_code, line: &Arc<CStr>) -> Self {
        Failure {
            code,
            message: Message::Shared(line.clone()),
        }
    }
}

/// A line with no NUL in it (one_line escaped them) as a C string.
pub(crate) fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|&b| b != 0);
        CString::new(bytes).unwrap_or_default()
    })
}

/// The code of a library error: by what a caller can do about it (its
/// kind), with retrying split into "nothing came" and "no room", and
/// invalid arguments into "payload too large" and the rest.
pub(crate) fn code_of(e: &Error) -> shmhub_code {
    match e {
        Error::RingFull { .. } | Error::PoolExhausted { .. } | Error::ShareExhausted { .. } => {
            SHMHUB_ERR_FULL
        }
        Error::PayloadTooLarge { .. } => SHMHUB_ERR_TOO_LARGE,
        e => match e.kind() {
            ErrorKind::Retry => SHMHUB_ERR_TIMED_OUT,
            ErrorKind::Busy => SHMHUB_ERR_BUSY,
            ErrorKind::Gone => SHMHUB_ERR_PEER_GONE,
            ErrorKind::CutOff => SHMHUB_ERR_CUT_OFF,
            ErrorKind::Corrupt => SHMHUB_ERR_CORRUPT,
            ErrorKind::Io => SHMHUB_ERR_IO,
            ErrorKind::Invalid => SHMHUB_ERR_INVALID,
            _ => SHMHUB_ERR_INTERNAL,
        },
    }
}

/// The last failure on this thread.
struct Last {
    code: shmhub_code,
    message: Option<Message>,
}

thread_local! {
    static LAST: RefCell<Last> = const { RefCell::new(Last { code: SHMHUB_OK, message: None }) };
}

fn remember(failure: Failure) -> shmhub_code {
    let code = failure.code;
    // A thread being torn down has no slot left: the code is still returned.
    let _ = LAST.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            last.code = code;
            last.message = Some(failure.message);
        }
    });
    code
}

/// What a call returns to C, made from a value or a failure's code.
pub(crate) trait Returned {
    /// The value for a failure with code `code`.
    fn failed(code: shmhub_code) -> Self;
}

impl Returned for c_int {
    fn failed(code: shmhub_code) -> Self {
        code as c_int
    }
}

impl Returned for i64 {
    fn failed(code: shmhub_code) -> Self {
        code as i64
    }
}

impl<T> Returned for *mut T {
    fn failed(_: shmhub_code) -> Self {
        ptr::null_mut()
    }
}

impl Returned for () {
    fn failed(_: shmhub_code) -> Self {}
}

/// Runs the body of an exported call: its value, or for a failure the
/// failure's return value with the failure remembered for
/// [`shmhub_last_error`]. A panic stops here, reported as
/// `SHMHUB_ERR_INTERNAL`.
pub(crate) fn call<R: Returned>(body: impl FnOnce() -> Result<R, Failure>) -> R {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => return value,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Failure::new(
                SHMHUB_ERR_INTERNAL,
                format!("internal error (a bug in shmhub): {what}"),
            )
        }
    };
    R::failed(remember(failure))
}

/// The message of the last call that failed on the calling thread, on one
/// line, as the `shmhub` command prints it after `error: `: usually the
/// segment's path, a colon, and the cause (`/dev/shm/app: timed out`).
/// An empty string if no call has failed on this thread.
///
/// The string belongs to the library: it stays valid until the next call
/// that fails on the same thread; copy it to keep it longer. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn shmhub_last_error() -> *const c_char {
    // The pointer stays valid after the borrow ends: the message is only
    // replaced (freed) by the next failure on this thread.
    LAST.try_with(|last| match last.try_borrow() {
        Ok(last) => last
            .message
            .as_ref()
            .map_or(c"".as_ptr(), |m| m.as_c_str().as_ptr()),
        Err(_) => c"".as_ptr(),
    })
    .unwrap_or(c"".as_ptr())
}

/// The code of the last call that failed on the calling thread (one of
/// the `SHMHUB_ERR_*` codes), for the calls that return NULL on failure;
/// `SHMHUB_OK` if none has. A call that succeeds does not reset it.
#[unsafe(no_mangle)]
pub extern "C" fn shmhub_last_error_code() -> c_int {
    let code = LAST.try_with(|last| last.try_borrow().map_or(SHMHUB_OK, |l| l.code));
    code.unwrap_or(SHMHUB_OK) as c_int
}

/// A short description of `code` (such as `"timed out"` for
/// `SHMHUB_ERR_TIMED_OUT`), `"success"` for `SHMHUB_OK`, `"unknown error
/// code"` for anything else: a static string.
#[unsafe(no_mangle)]
pub extern "C" fn shmhub_strerror(code: c_int) -> *const c_char {
    let Some(code) = shmhub_code::from_c(code) else {
        return c"unknown error code".as_ptr();
    };
    let text: &'static CStr = match code {
        SHMHUB_OK => c"success",
        SHMHUB_ERR_TIMED_OUT => c"timed out",
        SHMHUB_ERR_FULL => c"no room: ring full or no free slot",
        SHMHUB_ERR_PEER_GONE => c"the other side has left",
        SHMHUB_ERR_TOO_LARGE => c"payload larger than the segment's max payload",
        SHMHUB_ERR_BUFFER_TOO_SMALL => c"message larger than the buffer (it stays queued)",
        SHMHUB_ERR_INVALID => c"invalid argument",
        SHMHUB_ERR_BUSY => c"busy: held by another process or thread, or hub full",
        SHMHUB_ERR_CORRUPT => c"not a usable segment, or a corrupt one",
        SHMHUB_ERR_IO => c"file or system error",
        SHMHUB_ERR_INTERNAL => c"internal error (a bug in shmhub)",
        SHMHUB_ERR_CUT_OFF => c"cut off: the host quarantined this guest",
    };
    text.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> (c_int, String) {
        // SAFETY: shmhub_last_error never returns NULL, and its string
        // lives until the next failure on this thread.
        let text = unsafe { CStr::from_ptr(shmhub_last_error()) };
        (
            shmhub_last_error_code(),
            text.to_string_lossy().into_owned(),
        )
    }

    #[test]
    fn a_panic_is_an_internal_error_not_an_unwind_into_c() {
        let code: c_int = call(|| -> Result<c_int, Failure> { panic!("boom") });
        assert_eq!(code, SHMHUB_ERR_INTERNAL as c_int);
        assert_eq!(
            last(),
            (
                SHMHUB_ERR_INTERNAL as c_int,
                "internal error (a bug in shmhub): boom".to_string()
            )
        );
        let null: *mut u8 = call(|| -> Result<*mut u8, Failure> { panic!("{}", 7) });
        assert!(null.is_null());
        assert_eq!(last().1, "internal error (a bug in shmhub): 7");
    }

    #[test]
    fn library_errors_read_as_the_command_prints_them() {
        let path = Path::new("/dev/shm/x");
        let f = Failure::library(path, Error::Timeout);
        assert_eq!(f.code, SHMHUB_ERR_TIMED_OUT);
        assert_eq!(f.message.as_c_str(), c"/dev/shm/x: timed out");
        // An error that names its file is not prefixed again.
        let f = Failure::library(
            path,
            Error::Removed {
                path: "/dev/shm/x".into(),
            },
        );
        assert_eq!(f.code, SHMHUB_ERR_IO);
        assert_eq!(
            f.message.as_c_str(),
            c"/dev/shm/x: segment file was removed"
        );
        let codes = [
            (Error::HubFull { max_guests: 1 }, SHMHUB_ERR_BUSY),
            (Error::HostGone, SHMHUB_ERR_PEER_GONE),
            (
                Error::PeerGone {
                    peer_id: shmhub::PeerId::new(1).unwrap(),
                },
                SHMHUB_ERR_PEER_GONE,
            ),
            (Error::NotASegment { magic: 0 }, SHMHUB_ERR_CORRUPT),
            (
                Error::PayloadTooLarge { len: 2, max: 1 },
                SHMHUB_ERR_TOO_LARGE,
            ),
            (
                Error::InvalidPeerId {
                    peer_id: 9,
                    max_guests: 1,
                },
                SHMHUB_ERR_INVALID,
            ),
            (
                Error::PoolExhausted {
                    owner: "host".into(),
                },
                SHMHUB_ERR_FULL,
            ),
        ];
        for (e, code) in codes {
            assert_eq!(code_of(&e), code, "{e}");
        }
    }

    #[test]
    fn every_code_has_its_own_description() {
        let mut seen = std::collections::HashSet::new();
        for code in shmhub_code::ALL {
            // SAFETY: shmhub_strerror returns a static C string.
            let text = unsafe { CStr::from_ptr(shmhub_strerror(code as c_int)) };
            assert_ne!(text, c"unknown error code", "{code:?}");
            assert!(seen.insert(text), "{code:?} shares its description");
        }
    }
}
